"""The error responses: one component per wire error code, and the
references an operation lists for the errors it can answer."""

from __future__ import annotations

from crdtkv import limits
from crdtkv.api.openapi.common import SESSION_OUT, Json, camel, ref, schema
from crdtkv.errors import WIRE_ERRORS, CrdtkvError, MethodNotAllowed, Unauthorized
from crdtkv.sessions import WAIT_HEADER

__all__ = ["ERROR_DOCS", "error_refs", "error_response_name", "responses"]

ERROR_DOCS: dict[str, tuple[str, str]] = {
    # code -> (what it means, in a word; the error response's description)
    "bad_request": (
        "malformed body, missing/unknown/wrongly typed field, bad key, bad header",
        "Malformed JSON; a body that is not an object; a missing, unknown or wrongly typed "
        "field; a key that is empty or over the limit; JSON nested deeper than "
        f"{limits.JSON_DEPTH_MAX} levels; an integer outside 64 bits; a counter result outside "
        f"the 64-bit signed range; a session token that does not verify; a bad {WAIT_HEADER}. "
        "Nothing changed.",
    ),
    "unauthorized": (
        "users are configured and the request has no known token",
        "The replica runs with `--auth-token` or `--auth-file` and the request lacks "
        "`Authorization: Bearer <token>` or has a token no user has.",
    ),
    "forbidden": (
        "a read-only user's write",
        "The token is a read-only user's (`--auth-file`) and the request writes (a batch: "
        "any of its ops). Nothing changed.",
    ),
    "not_found": (
        "the key is absent, or the path is unknown",
        "The key does not exist (never written, deleted, expired, a set with no members).",
    ),
    "wrong_type": (
        "the key holds another type",
        "The key holds a value of another type (Redis's WRONGTYPE), or, through the counter "
        "view, a string that is not an integer. Nothing changed.",
    ),
    "method_not_allowed": ("a known path, another method", "A known path with another method."),
    "payload_too_large": (
        "the body is over the limit",
        f"The body is over the limit ({limits.BODY_BYTES_MAX} bytes by default).",
    ),
    "unsupported_media_type": (
        "the body is in another format",
        "The body declares a Content-Type other than the ones this operation takes (a body "
        "without Content-Type is read as JSON).",
    ),
    "session_unavailable": (
        "the session token asks for updates this replica has not applied",
        f"This replica has not applied everything the session token covers within "
        f"{WAIT_HEADER}; try another replica, or later.",
    ),
    "moved": (
        "the key's slot belongs to another shard (a sharded cluster)",
        "This replica serves a sharded cluster (`--cluster-map`) and the key's hash slot "
        "belongs to another shard: ask `url` (the owner's replica in this region, also in the "
        "`X-Crdtkv-Owner` header). Nothing changed.",
    ),
    "ask": (
        "the key's slot is moving to another shard, and this key is asked there",
        "The key's slot is being moved to another shard and this replica has handed it over: "
        "ask `url` once, with the `X-Crdtkv-Asking: 1` header, without updating the map. "
        "Nothing changed.",
    ),
    "cross_slot": (
        "one request's keys hash to different slots",
        "A sharded replica refuses an op whose keys are in different hash slots (Redis's "
        "CROSSSLOT); use hash tags (`{user1}.a`, `{user1}.b`). Nothing changed.",
    ),
    "try_again": (
        "the key's slot is being handed over to another shard right now: retry shortly",
        "The key's slot is moving to another shard and this replica is making its last copy "
        "(a moment): retry the request shortly (Redis's TRYAGAIN). Nothing changed.",
    ),
    "stale_map": (
        "a posted cluster map is older than the one held",
        "`POST /v1/cluster/map` with a map whose epoch is lower than this process's (or "
        "another map of the same epoch): `error.map` is the map it holds. Nothing changed.",
    ),
    "internal": (
        "a storage failure or a bug; the replica's log says which",
        "The replica stopped after a storage failure, or a bug; its log says which.",
    ),
}


def error_response_name(cls: type[CrdtkvError]) -> str:
    return camel(cls.code)


def responses() -> Json:
    """The error responses, by status: each pins its ``code`` and carries the headers its
    status comes with."""
    out: Json = {}
    for cls in sorted(WIRE_ERRORS, key=lambda c: c.status):
        error_schema = {
            "allOf": [schema("Error")],
            "properties": {"error": {"properties": {"code": {"const": cls.code}}}},
        }
        response_headers: Json = dict(SESSION_OUT)
        if cls is Unauthorized:
            response_headers["WWW-Authenticate"] = ref("headers", "WWWAuthenticate")
        if cls is MethodNotAllowed:
            response_headers["Allow"] = ref("headers", "Allow")
        out[error_response_name(cls)] = {
            "description": f"`{cls.code}`: {ERROR_DOCS[cls.code][1]}",
            "headers": response_headers,
            "content": {"application/json": {"schema": error_schema}},
        }
    return out


def error_refs(*classes: type[CrdtkvError]) -> Json:
    """An operation's error responses, by status, as references to the components."""
    return {str(cls.status): ref("responses", error_response_name(cls)) for cls in classes}

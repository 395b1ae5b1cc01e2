"""Build the OpenAPI 3.1 document of crdtkv's public HTTP API (docs/api.md, "HTTP API").

This script is the source of the document; the JSON files are its output::

    python scripts/gen_openapi.py           # write crdtkv/api/openapi.json and docs/openapi.json
    python scripts/gen_openapi.py --check   # exit 1 when either file is not what it would write

``crdtkv/api/openapi.json`` ships in the package and is served at
``GET /openapi.json``; ``docs/openapi.json`` is the same bytes, for readers
of the repository.  tests/api/test_openapi.py fails when either drifts from
this script, when the document is not valid OpenAPI 3.1, or when it and the
app's routes (or docs/api.md) disagree.

Limits come from ``crdtkv.limits``, so the document follows the code.  Two
of them are in UTF-8 bytes while JSON Schema's ``maxLength`` counts
characters: the document states the character bound, which is looser, and
the description names the byte limit the server enforces.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crdtkv import limits  # noqa: E402 - needs the checkout on sys.path

__all__ = ["OUTPUTS", "build", "render"]

OUTPUTS = (ROOT / "crdtkv" / "api" / "openapi.json", ROOT / "docs" / "openapi.json")

Json = dict[str, Any]

SESSION_HEADER = "X-Crdtkv-Session"
WAIT_HEADER = "X-Crdtkv-Wait-Ms"
_REPLICA_ID_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> Json:
    return ref("schemas", name)


def obj(properties: Json, required: list[str] | None = None, **extra: Any) -> Json:
    """A closed object: the server refuses unknown request fields and sends no others."""
    out: Json = {"type": "object"}
    out.update(extra)
    out["properties"] = properties
    out["required"] = list(properties) if required is None else required
    out["additionalProperties"] = False
    return out


# -- schemas ------------------------------------------------------------------------------------

KEY_DESCRIPTION = (
    f"A key: 1 to {limits.KEY_BYTES_MAX} bytes of UTF-8 (the schema bounds characters; "
    "the server counts bytes)."
)
COUNT = {"type": "integer", "minimum": 0}
INT64 = {
    "type": "integer",
    "format": "int64",
    "minimum": limits.INT64_MIN,
    "maximum": limits.INT64_MAX,
}


def _strings(what: str) -> Json:
    return {
        "type": "array",
        "maxItems": limits.MEMBERS_PER_OP_MAX,
        "items": schema("Member"),
        "description": f"{what}: at most {limits.MEMBERS_PER_OP_MAX} strings.",
    }


def _sources() -> Json:
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": limits.HLL_SOURCES_MAX,
        "items": schema("Key"),
        "description": f"Keys of other HLLs: 1 to {limits.HLL_SOURCES_MAX}.",
    }


def _batch_op(op: str, fields: Json, required: list[str], summary: str) -> Json:
    properties: Json = {"op": {"const": op}, "key": schema("Key"), **fields}
    return obj(properties, ["op", "key", *required], description=summary)


BATCH_OPS: dict[str, tuple[str, Json]] = {
    # op -> (component name, schema); one per single-key endpoint, plus counters.decr.
    "registers.set": (
        "RegistersSetOp",
        _batch_op(
            "registers.set",
            {"value": schema("JsonValue"), "ttl_ms": schema("TtlMs")},
            ["value"],
            "PUT /v1/registers/{key}",
        ),
    ),
    "registers.get": (
        "RegistersGetOp",
        _batch_op("registers.get", {}, [], "GET /v1/registers/{key}"),
    ),
    "registers.delete": (
        "RegistersDeleteOp",
        _batch_op("registers.delete", {}, [], "DELETE /v1/registers/{key}"),
    ),
    "counters.incr": (
        "CountersIncrOp",
        _batch_op(
            "counters.incr", {"delta": schema("Int64")}, ["delta"], "POST /v1/counters/{key}"
        ),
    ),
    "counters.decr": (
        "CountersDecrOp",
        _batch_op(
            "counters.decr",
            {"delta": schema("Int64")},
            ["delta"],
            "counters.incr with the delta negated (batch only)",
        ),
    ),
    "counters.get": (
        "CountersGetOp",
        _batch_op("counters.get", {}, [], "GET /v1/counters/{key}"),
    ),
    "counters.delete": (
        "CountersDeleteOp",
        _batch_op("counters.delete", {}, [], "DELETE /v1/counters/{key}"),
    ),
    "sets.add": (
        "SetsAddOp",
        _batch_op(
            "sets.add", {"members": schema("Members")}, ["members"], "POST /v1/sets/{key}/add"
        ),
    ),
    "sets.remove": (
        "SetsRemoveOp",
        _batch_op(
            "sets.remove", {"members": schema("Members")}, ["members"], "POST /v1/sets/{key}/remove"
        ),
    ),
    "sets.get": ("SetsGetOp", _batch_op("sets.get", {}, [], "GET /v1/sets/{key}")),
    "sets.contains": (
        "SetsContainsOp",
        _batch_op(
            "sets.contains",
            {"member": {"type": "string"}},
            ["member"],
            "GET /v1/sets/{key}/members/{member}",
        ),
    ),
    "sets.delete": ("SetsDeleteOp", _batch_op("sets.delete", {}, [], "DELETE /v1/sets/{key}")),
    "hlls.add": (
        "HllsAddOp",
        _batch_op("hlls.add", {"items": schema("Items")}, ["items"], "POST /v1/hlls/{key}/add"),
    ),
    "hlls.count": (
        "HllsCountOp",
        _batch_op(
            "hlls.count",
            {"sources": _sources()},
            [],
            "GET /v1/hlls/{key} (`sources` as the `union` query parameter)",
        ),
    ),
    "hlls.merge": (
        "HllsMergeOp",
        _batch_op("hlls.merge", {"sources": _sources()}, ["sources"], "POST /v1/hlls/{key}/merge"),
    ),
    "hlls.delete": ("HllsDeleteOp", _batch_op("hlls.delete", {}, [], "DELETE /v1/hlls/{key}")),
}

ERROR_CODES: dict[str, str] = {
    "bad_request": "400: malformed body, missing/unknown/wrongly typed field, bad key, bad header",
    "unauthorized": "401: an auth token is configured and the request lacks it",
    "not_found": "404: the key is absent, or the path is unknown",
    "method_not_allowed": "405: a known path, another method",
    "payload_too_large": "413: the body is over the limit",
    "unsupported_media_type": "415: the body is in another format",
    "session_unavailable": "503: the session token asks for updates this replica has not applied",
    "internal": "500: a storage failure or a bug; the replica's log says which",
}


def schemas() -> Json:
    out: Json = {
        "Key": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.KEY_BYTES_MAX,
            "description": KEY_DESCRIPTION,
            "examples": ["user:1"],
        },
        "Member": {
            "type": "string",
            "maxLength": limits.MEMBER_BYTES_MAX,
            "description": f"A set member or HLL item: at most {limits.MEMBER_BYTES_MAX} bytes "
            "of UTF-8.",
        },
        "Members": _strings("Set members"),
        "Items": _strings("HLL items"),
        "Int64": {**INT64, "description": "A 64-bit signed integer."},
        "TtlMs": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": limits.TTL_MS_MAX,
            "description": "Time to live in milliseconds, counted from the write (at most ten "
            "years). Absent or null: the value does not expire.",
        },
        "JsonValue": {
            "description": f"Any JSON value, nested at most {limits.JSON_DEPTH_MAX} levels deep "
            "(the whole body counts), its integers within 64 bits.",
        },
        # -- request bodies
        "RegisterSet": obj(
            {"value": schema("JsonValue"), "ttl_ms": schema("TtlMs")},
            ["value"],
            examples=[{"value": {"name": "ada"}, "ttl_ms": 60000}],
        ),
        "CounterIncr": obj(
            {"delta": schema("Int64")},
            description="A negative delta decrements. A result outside the 64-bit signed range "
            "is refused (400) and changes nothing.",
            examples=[{"delta": 3}],
        ),
        "SetMembers": obj({"members": schema("Members")}, examples=[{"members": ["a", "b"]}]),
        "HllItems": obj({"items": schema("Items")}, examples=[{"items": ["u1", "u2"]}]),
        "HllMerge": obj({"sources": _sources()}, examples=[{"sources": ["visitors:eu"]}]),
        "Batch": obj(
            {
                "ops": {
                    "type": "array",
                    "maxItems": limits.BATCH_OPS_MAX,
                    "items": schema("BatchItem"),
                    "description": f"At most {limits.BATCH_OPS_MAX} ops, applied in order.",
                }
            },
            examples=[
                {
                    "ops": [
                        {"op": "counters.incr", "key": "visits", "delta": 1},
                        {"op": "registers.set", "key": "user:1", "value": {"name": "ada"}},
                        {"op": "registers.get", "key": "user:1"},
                        {"op": "sets.add", "key": "tags", "members": ["a"]},
                        {"op": "hlls.add", "key": "visitors", "items": ["u1"]},
                    ]
                }
            ],
        ),
        "BatchItem": {
            "description": "One op, normally a BatchOp. Anything else (not an object, an unknown "
            "op, a missing, unknown or wrongly typed field) is not an error of the request: its "
            "slot of `results` holds an Error and the other ops still apply.",
            "anyOf": [schema("BatchOp"), {}],
        },
        "BatchOp": {
            "oneOf": [schema(name) for name, _ in BATCH_OPS.values()],
            "discriminator": {
                "propertyName": "op",
                "mapping": {
                    op: f"#/components/schemas/{name}" for op, (name, _) in BATCH_OPS.items()
                },
            },
        },
        # -- response bodies
        "Ok": obj({"ok": {"const": True}}),
        "RegisterValue": obj({"value": schema("JsonValue")}),
        "CounterValue": obj({"value": schema("Int64")}),
        "SetAdded": obj(
            {"added": {**COUNT, "description": "Members that were not present before."}}
        ),
        "SetRemoved": obj({"removed": {**COUNT, "description": "Members that were present."}}),
        "SetView": obj(
            {
                "members": {
                    "type": "array",
                    "items": {"type": "string"},
                    "uniqueItems": True,
                    "description": "Sorted (by Unicode code point).",
                },
                "size": COUNT,
            }
        ),
        "SetPresent": obj({"present": {"type": "boolean"}}),
        "HllChanged": obj(
            {"changed": {"type": "boolean", "description": "Whether the sketch changed."}}
        ),
        "HllCount": obj({"count": {**COUNT, "description": "Estimated distinct items."}}),
        "BatchResults": obj(
            {
                "results": {
                    "type": "array",
                    "items": schema("BatchResult"),
                    "description": "One per op, in order.",
                }
            }
        ),
        "BatchResult": {
            "anyOf": [
                schema(name)
                for name in (
                    "Ok",
                    "RegisterValue",
                    "CounterValue",
                    "SetAdded",
                    "SetRemoved",
                    "SetView",
                    "SetPresent",
                    "HllChanged",
                    "HllCount",
                    "Error",
                )
            ]
        },
        "Health": obj({"status": {"const": "ok"}}),
        "Status": obj(
            {
                "replica_id": {"type": "string", "pattern": _REPLICA_ID_PATTERN},
                "keys": {**COUNT, "description": "Live keys at this replica."},
                "applied": {
                    "type": "object",
                    "additionalProperties": COUNT,
                    "description": "Per actor (a replica id and its incarnation, such as "
                    "`r1~5d81f11f`), the sequence number of the last of its updates this replica "
                    "has applied.",
                },
                "peers": {
                    "type": "object",
                    "additionalProperties": schema("Peer"),
                    "description": "The other replicas, by id; empty without --peer.",
                },
            }
        ),
        "Peer": obj(
            {
                "url": {"type": "string"},
                "acked": {**COUNT, "description": "Last position of our log the peer acked."},
                "lag_ops": {**COUNT, "description": "Updates the peer has not acked yet."},
                "reachable": {"type": "boolean"},
            }
        ),
        "ErrorCode": {
            "enum": list(ERROR_CODES),
            "description": "; ".join(f"`{c}`: {why}" for c, why in ERROR_CODES.items()),
        },
        "Error": obj(
            {
                "error": obj(
                    {"code": schema("ErrorCode"), "message": {"type": "string"}},
                    description="`message` is for humans; match on `code`.",
                )
            },
            examples=[{"error": {"code": "not_found", "message": "register 'user:1' not found"}}],
        ),
    }
    for name, op_schema in BATCH_OPS.values():
        out[name] = op_schema
    return out


# -- parameters, headers, responses ------------------------------------------------------------


def parameters() -> Json:
    return {
        "Key": {
            "name": "key",
            "in": "path",
            "required": True,
            "description": f"{KEY_DESCRIPTION} Percent-encode it: `/` is `%2F`.",
            "schema": schema("Key"),
        },
        "Member": {
            "name": "member",
            "in": "path",
            "required": True,
            "description": "The member to look for, percent-encoded.",
            "schema": {"type": "string"},
        },
        "Union": {
            "name": "union",
            "in": "query",
            "required": False,
            "style": "form",
            "explode": True,
            "description": "Count the union of this HLL and these (repeat the parameter: "
            "`?union=a&union=b`); absent HLLs count as empty and the answer is never 404.",
            "schema": {
                "type": "array",
                "maxItems": limits.HLL_SOURCES_MAX,
                "items": schema("Key"),
            },
        },
        "Session": {
            "name": SESSION_HEADER,
            "in": "header",
            "required": False,
            "description": "A session token returned earlier by any replica of the cluster. "
            "The replica serves the request only once it has applied everything the token "
            f"covers (waiting up to {WAIT_HEADER}), else 503 `session_unavailable`. A token "
            "that does not verify (tampered, another cluster) is 400. Empty means none.",
            "schema": {"type": "string"},
        },
        "WaitMs": {
            "name": WAIT_HEADER,
            "in": "header",
            "required": False,
            "description": "How long to wait for the session token to be covered, in "
            f"milliseconds (1 to 9 digits). Default {limits.WAIT_MS_DEFAULT}; longer waits are "
            f"capped at {limits.WAIT_MS_MAX}.",
            "schema": {
                "type": "string",
                "pattern": "^[0-9]{1,9}$",
                "default": str(limits.WAIT_MS_DEFAULT),
            },
        },
    }


def headers() -> Json:
    return {
        "Session": {
            "description": "The request's session token merged with everything this replica has "
            "applied, including the request's own write. Present on every response, errors "
            "included. Send it with later requests, to any replica, for read-your-writes and "
            "monotonic reads.",
            "required": True,
            "schema": {"type": "string"},
        },
        "Allow": {"description": "The methods the path supports.", "schema": {"type": "string"}},
        "WWWAuthenticate": {
            "description": 'Always `Bearer realm="crdtkv"`.',
            "schema": {"type": "string"},
        },
    }


SESSION_OUT = {SESSION_HEADER: ref("headers", "Session")}

ERROR_RESPONSES: dict[int, tuple[str, str, str]] = {
    # status -> (component name, code, description)
    400: (
        "BadRequest",
        "bad_request",
        "Malformed JSON; a body that is not an object; a missing, unknown or wrongly typed "
        "field; a key that is empty or over the limit; JSON nested deeper than "
        f"{limits.JSON_DEPTH_MAX} levels; an integer outside 64 bits; a counter result outside "
        f"the 64-bit signed range; a session token that does not verify; a bad {WAIT_HEADER}. "
        "Nothing changed.",
    ),
    401: (
        "Unauthorized",
        "unauthorized",
        "The replica runs with an auth token and the request lacks "
        "`Authorization: Bearer <token>` or has another token.",
    ),
    404: (
        "NotFound",
        "not_found",
        "The key does not exist (never written, deleted, expired, a set with no members).",
    ),
    405: ("MethodNotAllowed", "method_not_allowed", "A known path with another method."),
    413: (
        "PayloadTooLarge",
        "payload_too_large",
        f"The body is over the limit ({limits.BODY_BYTES_MAX} bytes by default).",
    ),
    415: (
        "UnsupportedMediaType",
        "unsupported_media_type",
        "The body declares a Content-Type other than the ones this operation takes (a body "
        "without Content-Type is read as JSON).",
    ),
    500: (
        "Internal",
        "internal",
        "The replica stopped after a storage failure, or a bug; its log says which.",
    ),
    503: (
        "SessionUnavailable",
        "session_unavailable",
        f"This replica has not applied everything the session token covers within "
        f"{WAIT_HEADER}; try another replica, or later.",
    ),
}


def responses() -> Json:
    out: Json = {}
    for status, (name, code, description) in ERROR_RESPONSES.items():
        error_schema = {
            "allOf": [schema("Error")],
            "properties": {"error": {"properties": {"code": {"const": code}}}},
        }
        response_headers: Json = dict(SESSION_OUT)
        if status == 401:
            response_headers["WWW-Authenticate"] = ref("headers", "WWWAuthenticate")
        if status == 405:
            response_headers["Allow"] = ref("headers", "Allow")
        out[name] = {
            "description": f"`{code}`: {description}",
            "headers": response_headers,
            "content": {"application/json": {"schema": error_schema}},
        }
    return out


# -- operations -----------------------------------------------------------------------------------


def ok(body_schema: str, description: str, example: Any = None) -> Json:
    media: Json = {"schema": schema(body_schema)}
    if example is not None:
        media["example"] = example
    return {
        "description": description,
        "headers": dict(SESSION_OUT),
        "content": {"application/json": media},
    }


def operation(
    op_id: str,
    tag: str,
    summary: str,
    response: Json,
    *,
    body: str | None = None,
    reads_key: bool = False,
    params: tuple[str, ...] = ("Key",),
    description: str | None = None,
) -> Json:
    """A /v1 operation: auth, session headers and the errors every one of them can answer."""
    out: Json = {"operationId": op_id, "tags": [tag], "summary": summary}
    if description:
        out["description"] = description
    out["parameters"] = [ref("parameters", p) for p in (*params, "Session", "WaitMs")]
    if body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema(body)}},
        }
    statuses = [400, 401]
    if reads_key:
        statuses.append(404)
    if body is not None:
        statuses += [413, 415]
    statuses += [500, 503]
    out["responses"] = {
        "200": response,
        **{str(s): ref("responses", ERROR_RESPONSES[s][0]) for s in statuses},
    }
    return out


def paths() -> Json:
    return {
        "/v1/registers/{key}": {
            "put": operation(
                "registersSet",
                "registers",
                "Write a register (last writer wins), optionally with a TTL",
                ok("Ok", "Written.", {"ok": True}),
                body="RegisterSet",
            ),
            "get": operation(
                "registersGet",
                "registers",
                "Read a register",
                ok("RegisterValue", "The value.", {"value": {"name": "ada"}}),
                reads_key=True,
            ),
            "delete": operation(
                "registersDelete",
                "registers",
                "Delete a register",
                ok("Ok", "Deleted (also when it did not exist).", {"ok": True}),
            ),
        },
        "/v1/counters/{key}": {
            "post": operation(
                "countersIncr",
                "counters",
                "Add a delta to a counter",
                ok("CounterValue", "The value at this replica after the change.", {"value": 3}),
                body="CounterIncr",
            ),
            "get": operation(
                "countersGet",
                "counters",
                "Read a counter",
                ok("CounterValue", "The value at this replica.", {"value": 3}),
                reads_key=True,
            ),
            "delete": operation(
                "countersDelete",
                "counters",
                "Delete a counter (reset it to 0)",
                ok("Ok", "Deleted (also when it did not exist).", {"ok": True}),
            ),
        },
        "/v1/sets/{key}": {
            "get": operation(
                "setsGet",
                "sets",
                "Read a set's members",
                ok("SetView", "Members, sorted.", {"members": ["a", "b"], "size": 2}),
                reads_key=True,
            ),
            "delete": operation(
                "setsDelete",
                "sets",
                "Delete a set (remove every member this replica has seen)",
                ok("Ok", "Deleted (also when it did not exist).", {"ok": True}),
            ),
        },
        "/v1/sets/{key}/add": {
            "post": operation(
                "setsAdd",
                "sets",
                "Add members to a set (add wins over a concurrent remove)",
                ok("SetAdded", "How many were not present before.", {"added": 2}),
                body="SetMembers",
            ),
        },
        "/v1/sets/{key}/remove": {
            "post": operation(
                "setsRemove",
                "sets",
                "Remove members from a set",
                ok("SetRemoved", "How many were present.", {"removed": 1}),
                body="SetMembers",
            ),
        },
        "/v1/sets/{key}/members/{member}": {
            "get": operation(
                "setsContains",
                "sets",
                "Is a member in a set?",
                ok("SetPresent", "Whether it is.", {"present": True}),
                reads_key=True,
                params=("Key", "Member"),
                description="404 when the set itself does not exist.",
            ),
        },
        "/v1/hlls/{key}": {
            "get": operation(
                "hllsCount",
                "hlls",
                "Estimate the distinct items of an HLL, or of a union of HLLs",
                ok("HllCount", "The estimate.", {"count": 2}),
                reads_key=True,
                params=("Key", "Union"),
                description="404 when the HLL does not exist and no `union` is given.",
            ),
            "delete": operation(
                "hllsDelete",
                "hlls",
                "Delete an HLL",
                ok("Ok", "Deleted (also when it did not exist).", {"ok": True}),
            ),
        },
        "/v1/hlls/{key}/add": {
            "post": operation(
                "hllsAdd",
                "hlls",
                "Add items to an HLL",
                ok("HllChanged", "Whether the sketch changed.", {"changed": True}),
                body="HllItems",
            ),
        },
        "/v1/hlls/{key}/merge": {
            "post": operation(
                "hllsMerge",
                "hlls",
                "Make an HLL the union of itself and other HLLs",
                ok("HllCount", "The estimate after the merge.", {"count": 5}),
                body="HllMerge",
                description="Absent sources count as empty.",
            ),
        },
        "/v1/batch": {"post": batch_operation()},
        "/v1/status": {"get": status_operation()},
        "/healthz": {"get": healthz_operation()},
        "/metrics": {"get": metrics_operation()},
        "/openapi.json": {"get": openapi_operation()},
    }


def batch_operation() -> Json:
    out = operation(
        "batch",
        "batch",
        "Apply several ops in one request",
        ok("BatchResults", "One result or error per op, in order."),
        body="Batch",
        params=(),
        description="Each op is one row of the single-key endpoints, as an object with `op`, "
        '`key` and that endpoint\'s body fields (BatchOp). A failing op yields `{"error": '
        "{...}}` in its slot; the others still apply. The endpoint also takes and answers "
        "MessagePack (`application/msgpack`): the answer is in the request's format unless "
        "`Accept` names exactly one of the two.",
    )
    msgpack = {"schema": schema("Batch")}
    out["requestBody"]["content"]["application/msgpack"] = msgpack
    out["responses"]["200"]["content"]["application/msgpack"] = {"schema": schema("BatchResults")}
    out["responses"]["200"]["content"]["application/json"]["example"] = {
        "results": [
            {"value": 1},
            {"ok": True},
            {"value": {"name": "ada"}},
            {"added": 1},
            {"changed": True},
        ]
    }
    return out


def status_operation() -> Json:
    out = operation(
        "status",
        "operations",
        "This replica's id, key count, applied updates and peers",
        ok(
            "Status",
            "The replica's status.",
            {
                "replica_id": "r1",
                "keys": 42,
                "applied": {"r1~5d81f11f": 120, "r2~0c4e1a27": 98},
                "peers": {
                    "r2": {
                        "url": "http://127.0.0.1:7002",
                        "acked": 120,
                        "lag_ops": 0,
                        "reachable": True,
                    }
                },
            },
        ),
        params=(),
        description="Answers without waiting for a session token (it is how one finds a "
        "lagging replica), so never 503.",
    )
    del out["responses"]["503"]
    return out


def healthz_operation() -> Json:
    return {
        "operationId": "healthz",
        "tags": ["operations"],
        "summary": "Liveness: 200 once the replica serves traffic",
        "description": "Never needs the auth token.",
        "security": [],
        "responses": {
            "200": ok("Health", "Serving.", {"status": "ok"}),
            "500": ref("responses", "Internal"),
        },
    }


def metrics_operation() -> Json:
    return {
        "operationId": "metrics",
        "tags": ["operations"],
        "summary": "Prometheus metrics",
        "description": "Requests, errors and latencies by route; keys; delta log size; "
        "replication lag and bytes per peer. Needs the auth token when one is configured.",
        "responses": {
            "200": {
                "description": "The Prometheus text exposition format "
                "(`text/plain; version=...; charset=utf-8`).",
                "headers": dict(SESSION_OUT),
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": ref("responses", "Unauthorized"),
        },
    }


def openapi_operation() -> Json:
    return {
        "operationId": "openapi",
        "tags": ["operations"],
        "summary": "This document",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 document of the API.",
                "headers": dict(SESSION_OUT),
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }


# -- the document ---------------------------------------------------------------------------------

DESCRIPTION = f"""\
The public HTTP API of one crdtkv replica (contract v1). Every value is a CRDT:
registers (last writer wins, optional TTL), counters, sets (add wins) and
HyperLogLogs. Every replica accepts every write; replicas exchange changes in
the background.

- JSON in and out (`Content-Type: application/json`; a body without a
  Content-Type is read as JSON). `/v1/batch` also takes and answers
  MessagePack.
- `{{key}}` is one URL-encoded path segment of 1 to {limits.KEY_BYTES_MAX} UTF-8 bytes.
- Request bodies are objects; unknown fields are refused (400), so a typo is
  not silently ignored. Bodies are at most {limits.BODY_BYTES_MAX} bytes by default (413)
  and nested at most {limits.JSON_DEPTH_MAX} levels.
- Every error is `{{"error": {{"code", "message"}}}}`. An unknown path is 404
  `not_found`, a known path with another method 405 `method_not_allowed`
  (with `Allow`). A bad request changes nothing.
- Every response carries `{SESSION_HEADER}`; see the `Session` header.
- When the replica runs with `--auth-token`, every `/v1` request and
  `/metrics` need `Authorization: Bearer <token>`; `/healthz` and
  `/openapi.json` never do.
"""


def build() -> Json:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crdtkv",
            "version": "1",
            "summary": "A geo-replicated key-value store in which every value is a CRDT.",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:7001", "description": "crdtkv serve's default"}],
        "tags": [
            {"name": "registers", "description": "Last-writer-wins registers of any JSON value"},
            {"name": "counters", "description": "64-bit signed counters (PN-counters)"},
            {"name": "sets", "description": "Sets of strings (add-wins observed-remove sets)"},
            {"name": "hlls", "description": "HyperLogLog distinct counters"},
            {"name": "batch", "description": "Several ops in one request"},
            {"name": "operations", "description": "Health, status, metrics, this document"},
        ],
        # {}: the replica may run without an auth token; then no header is needed.
        "security": [{}, {"bearerAuth": []}],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "headers": headers(),
            "responses": responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The replica's --auth-token, when it runs with one.",
                }
            },
        },
    }


def render(document: Json) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args(argv)
    text = render(build())
    stale = [p for p in OUTPUTS if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python scripts/gen_openapi.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

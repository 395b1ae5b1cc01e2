"""Build the OpenAPI 3.1 document of crdtkv's public HTTP API (docs/api.md, "HTTP API").

This script is the source of the document; the JSON files are its output::

    python scripts/gen_openapi.py           # write crdtkv/api/openapi.json and docs/openapi.json
    python scripts/gen_openapi.py --check   # exit 1 when either file is not what it would write

``crdtkv/api/openapi.json`` ships in the package and is served at
``GET /openapi.json``; ``docs/openapi.json`` is the same bytes, for readers
of the repository.  tests/api/test_openapi.py fails when either drifts from
this script, when the document is not valid OpenAPI 3.1, or when it and the
app's routes (or docs/api.md) disagree.

The operations come from the op table (``crdtkv.ops.table``: routes,
arguments, result shapes, texts), the error codes and statuses from
``crdtkv.errors`` and limits from ``crdtkv.limits``, so the document follows
the code.  Two of the limits are in UTF-8 bytes while JSON Schema's ``maxLength`` counts
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

# These need the checkout on sys.path.
from crdtkv import limits  # noqa: E402
from crdtkv.errors import (  # noqa: E402
    WIRE_ERRORS,
    BadRequest,
    CrdtkvError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    SessionUnavailable,
    StorageError,
    Unauthorized,
    UnsupportedMediaType,
)
from crdtkv.ops.spec import Arg, Field, In, Kind, OpSpec, Out, Shape  # noqa: E402
from crdtkv.ops.table import TABLE  # noqa: E402
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER  # noqa: E402

__all__ = ["OUTPUTS", "build", "render"]

OUTPUTS = (ROOT / "crdtkv" / "api" / "openapi.json", ROOT / "docs" / "openapi.json")

Json = dict[str, Any]

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


def camel(name: str) -> str:
    """``ttl_ms`` -> ``TtlMs``, ``hlls.count`` -> ``HllsCount``."""
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def _unique(items: list[Any]) -> list[Any]:
    """Distinct items by name, first appearance first (the table's order)."""
    out: dict[str, Any] = {}
    for item in items:
        out.setdefault(item.name, item)
    return list(out.values())


ARGS = _unique([arg for spec in TABLE for arg in spec.args])
SHAPES: list[Shape] = _unique([spec.result for spec in TABLE])
BODIES = _unique([spec.body for spec in TABLE if spec.body is not None])


def _is_int64(arg: Arg) -> bool:
    return (arg.lo, arg.hi) == (limits.INT64_MIN, limits.INT64_MAX)


def arg_schema(arg: Arg) -> Json:
    """An argument's schema in a request body or a batch op."""
    if arg.kind is Kind.KEY:
        return schema("Key")
    if arg.kind is Kind.JSON:
        return schema("JsonValue")
    if arg.kind is Kind.INT:
        return schema("Int64" if _is_int64(arg) else camel(arg.name))
    if arg.kind is Kind.STRINGS:
        return schema(camel(arg.name))
    if arg.kind is Kind.KEYS:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": arg.hi,
            "items": schema("Key"),
            "description": f"{arg.doc}: 1 to {arg.hi}.",
        }
    return {"type": "string"}


def arg_components() -> Json:
    """The schemas the arguments refer to, by kind: keys, lists of strings, ints, JSON."""
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
    }
    for arg in (a for a in ARGS if a.kind is Kind.STRINGS):
        out[camel(arg.name)] = {
            "type": "array",
            "maxItems": arg.hi,
            "items": schema("Member"),
            "description": f"{arg.doc}: at most {arg.hi} strings.",
        }
    out["Int64"] = {**INT64, "description": "A 64-bit signed integer."}
    for arg in (a for a in ARGS if a.kind is Kind.INT and not _is_int64(a)):
        out[camel(arg.name)] = {
            "type": "integer" if arg.required else ["integer", "null"],
            "minimum": arg.lo,
            "maximum": arg.hi,
            "description": arg.doc,
        }
    out["JsonValue"] = {
        "description": f"Any JSON value, nested at most {limits.JSON_DEPTH_MAX} levels deep "
        "(the whole body counts), its integers within 64 bits.",
    }
    return out


def _batch_op(spec: OpSpec) -> Json:
    fields = {a.name: arg_schema(a) for a in spec.args[1:]}
    required = [a.name for a in spec.args if a.required]
    if spec.route is None:
        summary = spec.doc.summary
    else:
        summary = f"{spec.route.method} {spec.route.path}"
        for a in spec.args_in(In.QUERY):
            summary += f" (`{a.name}` as the `{a.query}` query parameter)"
    properties: Json = {"op": {"const": spec.name}, "key": arg_schema(spec.args[0]), **fields}
    return obj(properties, ["op", *required], description=summary)


BATCH_OPS: dict[str, tuple[str, Json]] = {
    # op -> (component name, schema); one per op of the table.
    spec.name: (f"{camel(spec.name)}Op", _batch_op(spec))
    for spec in TABLE
}

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
        "an auth token is configured and the request lacks it",
        "The replica runs with an auth token and the request lacks "
        "`Authorization: Bearer <token>` or has another token.",
    ),
    "not_found": (
        "the key is absent, or the path is unknown",
        "The key does not exist (never written, deleted, expired, a set with no members).",
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
    "internal": (
        "a storage failure or a bug; the replica's log says which",
        "The replica stopped after a storage failure, or a bug; its log says which.",
    ),
}


def result_field(f: Field) -> Json:
    described = {"description": f.doc} if f.doc else {}
    if f.kind is Out.OK:
        return {"const": True}
    if f.kind is Out.JSON:
        return schema("JsonValue")
    if f.kind is Out.INT64:
        return schema("Int64")
    if f.kind is Out.COUNT:
        return {**COUNT, **described}
    if f.kind is Out.BOOL:
        return {"type": "boolean", **described}
    return {"type": "array", "items": {"type": "string"}, "uniqueItems": True, **described}


def request_bodies() -> Json:
    out: Json = {}
    for body in BODIES:
        spec = next(s for s in TABLE if s.body is body)
        args = spec.args_in(In.BODY)
        properties = {a.name: arg_schema(a) for a in args}
        required = [a.name for a in args if a.required]
        described = {"description": body.description} if body.description else {}
        out[body.name] = obj(properties, required, **described, examples=[dict(body.example)])
    return out


def schemas() -> Json:
    out: Json = {
        **arg_components(),
        # -- request bodies
        **request_bodies(),
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
        **{shape.name: obj({f.name: result_field(f) for f in shape.fields}) for shape in SHAPES},
        "BatchResults": obj(
            {
                "results": {
                    "type": "array",
                    "items": schema("BatchResult"),
                    "description": "One per op, in order.",
                }
            }
        ),
        "BatchResult": {"anyOf": [*(schema(shape.name) for shape in SHAPES), schema("Error")]},
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
            "enum": [cls.code for cls in WIRE_ERRORS],
            "description": "; ".join(
                f"`{cls.code}`: {cls.status}: {ERROR_DOCS[cls.code][0]}" for cls in WIRE_ERRORS
            ),
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


def param_name(arg: Arg) -> str:
    """The parameter component of a path or query argument."""
    return camel(arg.query if arg.http is In.QUERY and arg.query else arg.name)


def http_parameter(arg: Arg) -> Json:
    if arg.kind is Kind.KEY:
        return {
            "name": arg.name,
            "in": "path",
            "required": True,
            "description": f"{KEY_DESCRIPTION} Percent-encode it: `/` is `%2F`.",
            "schema": schema("Key"),
        }
    if arg.http is In.PATH:
        return {
            "name": arg.name,
            "in": "path",
            "required": True,
            "description": arg.http_doc,
            "schema": arg_schema(arg),
        }
    return {
        "name": arg.query,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": arg.http_doc,
        "schema": {"type": "array", "maxItems": arg.hi, "items": schema("Key")},
    }


def parameters() -> Json:
    return {
        **{
            param_name(arg): http_parameter(arg)
            for spec in TABLE
            for arg in spec.args
            if arg.http is not In.BODY
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


def error_response_name(cls: type[CrdtkvError]) -> str:
    return camel(cls.code)


def responses() -> Json:
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
    return {str(cls.status): ref("responses", error_response_name(cls)) for cls in classes}


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
    errors: list[type[CrdtkvError]] = [BadRequest, Unauthorized]
    if reads_key:
        errors.append(NotFound)
    if body is not None:
        errors += [PayloadTooLarge, UnsupportedMediaType]
    errors += [StorageError, SessionUnavailable]
    out["responses"] = {"200": response, **error_refs(*errors)}
    return out


def op_operation(spec: OpSpec) -> Json:
    """The single-key endpoint of an op of the table."""
    doc = spec.doc
    return operation(
        spec.name[0] + camel(spec.name)[1:],  # registersSet
        spec.namespace,
        doc.summary,
        ok(spec.result.name, doc.result, doc.example),
        body=None if spec.body is None else spec.body.name,
        reads_key=spec.reads,
        params=tuple(param_name(a) for a in spec.args if a.http is not In.BODY),
        description=doc.description or None,
    )


def op_paths() -> Json:
    """Each type's paths: its own resource first, then the deeper ones, in table order."""
    routed = [spec for spec in TABLE if spec.route is not None]
    types = list(dict.fromkeys(spec.namespace for spec in routed))
    order = list(dict.fromkeys(spec.route.path for spec in routed if spec.route))
    out: Json = {}
    for spec in sorted(
        routed,
        key=lambda s: (
            types.index(s.namespace),
            s.route.path.count("/") if s.route else 0,
            order.index(s.route.path) if s.route else 0,
        ),
    ):
        assert spec.route is not None
        out.setdefault(spec.route.path, {})[spec.route.method.lower()] = op_operation(spec)
    return out


def paths() -> Json:
    return {
        **op_paths(),
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
    del out["responses"][str(SessionUnavailable.status)]
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
            **error_refs(StorageError),
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
            **error_refs(Unauthorized),
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

"""The component schemas: arguments, request bodies, batch ops, result
bodies, the operations endpoints' bodies and the error body."""

from __future__ import annotations

from crdtkv import limits
from crdtkv.api.openapi.common import (
    ARGS,
    BODIES,
    COUNT,
    INT64,
    KEY_DESCRIPTION,
    SHAPES,
    Json,
    camel,
    is_int64,
    obj,
    schema,
)
from crdtkv.api.openapi.responses import ERROR_DOCS
from crdtkv.errors import WIRE_ERRORS
from crdtkv.ops.spec import Arg, Field, In, Kind, OpSpec, Out
from crdtkv.ops.table import TABLE

__all__ = ["BATCH_OPS", "arg_schema", "schemas"]

_REPLICA_ID_PATTERN = "^[A-Za-z0-9_.-]{1,64}$"


def arg_schema(arg: Arg) -> Json:
    """An argument's schema in a request body or a batch op."""
    if arg.kind is Kind.KEY:
        return schema("Key")
    if arg.kind is Kind.JSON:
        return schema("JsonValue")
    if arg.kind is Kind.INT:
        return schema("Int64" if is_int64(arg) else camel(arg.name))
    if arg.kind is Kind.STRINGS:
        return schema(camel(arg.name))
    if arg.kind is Kind.FIELD:
        return schema("Field")
    if arg.kind is Kind.FIELDS:
        return {
            "type": "object",
            "minProperties": 1,
            "maxProperties": arg.hi,
            "propertyNames": schema("Field"),
            "additionalProperties": schema("FieldValue"),
            "description": f"{arg.doc}: 1 to {arg.hi} fields.",
        }
    if arg.kind is Kind.FLOAT:
        return {"type": "number", "description": arg.doc}
    if arg.kind is Kind.VECTOR:
        numbers = {"type": "array", "minItems": 1, "maxItems": arg.hi, "items": {"type": "number"}}
        binary = {"type": "string", "contentEncoding": "base64"}
        nullable = [] if arg.required else [{"type": "null"}]
        return {"anyOf": [numbers, binary, *nullable], "description": arg.doc}
    if arg.kind is Kind.KEYS:
        return {
            "type": "array",
            "minItems": 1,
            "maxItems": arg.hi,
            "items": schema("Key"),
            "description": f"{arg.doc}: 1 to {arg.hi}.",
        }
    return _zset_arg_schema(arg)


# A score as text: Redis's spelling of a double (no NaN); a bound may start with "(".
_SCORE_TEXT = (
    r"[+-]?([iI][nN][fF]([iI][nN][iI][tT][yY])?|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)"
)
_SCORE_OUT: Json = {"anyOf": [{"type": "number"}, {"enum": ["inf", "-inf"]}]}


def _zset_arg_schema(arg: Arg) -> Json:
    """The sorted set's argument kinds (and plain strings)."""
    described = {"description": arg.doc} if arg.doc else {}
    if arg.kind is Kind.BOOL:
        return {"type": ["boolean", "null"], **described}
    if arg.kind is Kind.FLOAT:
        return {"type": "number", **described}
    if arg.kind is Kind.SCORES:
        return {
            "type": "object",
            "minProperties": 1,
            "maxProperties": arg.hi,
            "propertyNames": {"maxLength": limits.MEMBER_BYTES_MAX},
            "additionalProperties": schema("Score"),
            **described,
        }
    if arg.kind is Kind.SCORE_BOUND:
        exclusive = {"type": "string", "pattern": f"^\\({_SCORE_TEXT}$"}
        return {"anyOf": [schema("Score"), exclusive], **described}
    if arg.kind is Kind.LEX_BOUND:
        return {"type": "string", "pattern": "^([-+]|[\\[(].*)$", **described}
    out: Json = {"type": "string" if arg.required else ["string", "null"], **described}
    if arg.hi:
        out["maxLength"] = arg.hi
    if arg.choices:
        out["enum"] = list(arg.choices)
    return out


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
    out["Score"] = {
        "anyOf": [{"type": "number"}, {"type": "string", "pattern": f"^{_SCORE_TEXT}$"}],
        "description": 'A sorted set score: a number, or its text as Redis writes it ("1.5", '
        '"-inf", "+inf"); not NaN.',
    }
    out.update(hash_components())
    out["Int64"] = {**INT64, "description": "A 64-bit signed integer."}
    for arg in (a for a in ARGS if a.kind is Kind.INT and not is_int64(a)):
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


def hash_components() -> Json:
    """A hash field's name and value."""
    return {
        "Field": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.MEMBER_BYTES_MAX,
            "description": f"A hash field: 1 to {limits.MEMBER_BYTES_MAX} bytes of UTF-8.",
        },
        "FieldValue": {
            "anyOf": [
                {"type": "string", "maxLength": limits.HASH_VALUE_BYTES_MAX},
                INT64,
                {"type": "number"},
            ],
            "description": "A hash field's value: a string (at most "
            f"{limits.HASH_VALUE_BYTES_MAX} bytes of UTF-8), a 64-bit integer or a finite "
            "number; read back as written.",
        },
    }


def request_bodies() -> Json:
    """The single-key endpoints' request bodies, one per ``Body`` of the table."""
    out: Json = {}
    for body in BODIES:
        spec = next(s for s in TABLE if s.body is body)
        args = spec.args_in(In.BODY)
        properties = {a.name: arg_schema(a) for a in args}
        required = [a.name for a in args if a.required]
        described = {"description": body.description} if body.description else {}
        out[body.name] = obj(properties, required, **described, examples=[dict(body.example)])
    return out


def _batch_op(spec: OpSpec) -> Json:
    fields = {a.name: arg_schema(a) for a in spec.args}  # the key first, unless keyless
    required = [a.name for a in spec.args if a.required]
    if spec.route is None:
        summary = spec.doc.summary
    else:
        summary = f"{spec.route.method} {spec.route.path}"
        for a in spec.args_in(In.QUERY):
            if a.query != a.name:
                summary += f" (`{a.name}` as the `{a.query}` query parameter)"
    properties: Json = {"op": {"const": spec.name}, **fields}
    return obj(properties, ["op", *required], description=summary)


BATCH_OPS: dict[str, tuple[str, Json]] = {
    # op -> (component name, schema); one per op of the table.
    spec.name: (f"{camel(spec.name)}Op", _batch_op(spec))
    for spec in TABLE
}


def batch_schemas() -> Json:
    """The /v1/batch request: its ops, each a BatchOp (or anything, which fails alone)."""
    return {
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
    if f.kind is Out.STRING:
        return {"type": "string", **described}
    if f.kind is Out.SCORE:
        return {"anyOf": [*_SCORE_OUT["anyOf"], {"type": "null"}], **described}
    if f.kind is Out.SCORES:
        score = {"anyOf": [*_SCORE_OUT["anyOf"], {"type": "null"}]}
        return {"type": "array", "items": score, **described}
    if f.kind is Out.RANK:
        return {"type": ["integer", "null"], "minimum": 0, **described}
    if f.kind is Out.ZITEMS:
        pair = {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, *_SCORE_OUT["anyOf"]]},  # member, score
            "minItems": 2,
            "maxItems": 2,
        }
        return {"type": "array", "items": {"anyOf": [{"type": "string"}, pair]}, **described}
    if f.kind is Out.HASH:
        return {"type": "object", "additionalProperties": schema("FieldValue"), **described}
    if f.kind is Out.VALUES:
        items = {"anyOf": [schema("FieldValue"), {"type": "null"}]}
        return {"type": "array", "items": items, **described}
    if f.kind is Out.NUMBER:
        return {"type": "number", **described}
    if f.kind is Out.STRINGS:
        return {"type": "array", "items": {"type": "string"}, **described}
    if f.kind is Out.OPT_STRING:
        return {"type": ["string", "null"], **described}
    if f.kind is Out.INDEXES:
        return {"type": "array", "items": {"type": "integer", "minimum": 0}, **described}
    if f.kind is Out.VECTOR:
        return {"type": ["array", "null"], "items": {"type": "number"}, **described}
    if f.kind is Out.MATCHES:
        match = obj(
            {
                "element": {"type": "string"},
                "score": {"type": "number", "minimum": 0, "maximum": 1},
                "attributes": schema("JsonValue"),
            },
            required=["element", "score"],
        )
        return {"type": "array", "items": match, **described}
    return {"type": "array", "items": {"type": "string"}, "uniqueItems": True, **described}


def result_schemas() -> Json:
    """The result bodies: one per shape of the table, and /v1/batch's list of them."""
    return {
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
    }


def operations_schemas() -> Json:
    """The bodies of /healthz and /v1/status."""
    return {
        "Health": obj({"status": {"const": "ok"}}),
        "Status": obj(
            {
                "replica_id": {"type": "string", "pattern": _REPLICA_ID_PATTERN},
                "release": {"type": "string", "description": "The crdtkv release it runs."},
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
                "cluster": schema("ClusterView"),
            }
        ),
        "ClusterView": {
            "type": "object",
            "description": "This replica's place in a sharded cluster (`--cluster-map`): "
            "`enabled` false when it is not sharded; else its id (`me`), `shard`, `region`, "
            "the map's `epoch`, the `slots` its shard owns (ranges such as `0-5460`) and the "
            "whole `map` (docs/architecture.md, Sharding).",
            "required": ["enabled"],
            "properties": {
                "enabled": {"type": "boolean"},
                "me": {"type": "string"},
                "shard": {"type": "string"},
                "region": {"type": "string"},
                "epoch": COUNT,
                "slots": {"type": "string"},
                "map": schema("ClusterMap"),
            },
        },
        "ClusterMap": {
            "type": "object",
            "description": "A cluster map (docs/architecture.md, Sharding): its `epoch`, "
            "`shards` (each an `id`, its `slots` as ranges and its `replicas`, one per region: "
            "`id`, `region`, `http`, `resp`) and the slots `moving` to another shard.",
            "required": ["epoch", "shards"],
            "properties": {
                "epoch": COUNT,
                "shards": {"type": "array", "items": {"type": "object"}},
                "moving": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "ClusterMapTaken": obj(
            {
                "epoch": {**COUNT, "description": "The epoch this process holds now."},
                "changed": {
                    "type": "boolean",
                    "description": "False: it already held this very map.",
                },
            }
        ),
        "Peer": obj(
            {
                "url": {"type": "string"},
                "acked": {**COUNT, "description": "Last position of our log the peer acked."},
                "lag_ops": {**COUNT, "description": "Updates the peer has not acked yet."},
                "reachable": {"type": "boolean"},
                "release": {
                    "type": ["string", "null"],
                    "description": "The release the peer last named in a replication request "
                    "or reply (`before 0.2.0` for older ones); null until heard.",
                },
                "wire_format": {
                    "type": ["integer", "null"],
                    "description": "The replication wire format it last used; null until heard.",
                },
            }
        ),
    }


def error_schemas() -> Json:
    """The error body and its codes, those of ``crdtkv.errors``."""
    return {
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


def schemas() -> Json:
    """Every component schema, in the document's order: requests, then results, then the
    batch ops each on its own."""
    return {
        **arg_components(),
        **request_bodies(),
        **batch_schemas(),
        **result_schemas(),
        **operations_schemas(),
        **error_schemas(),
        **dict(BATCH_OPS.values()),
    }

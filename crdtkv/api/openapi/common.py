"""What every part of the document shares: JSON helpers, shared schema
fragments, and the table's distinct arguments, result shapes and bodies."""

from __future__ import annotations

from typing import Any

from crdtkv import limits
from crdtkv.ops.spec import Arg, Body, Shape
from crdtkv.ops.table import TABLE
from crdtkv.sessions import SESSION_HEADER

__all__ = [
    "ARGS",
    "BODIES",
    "COUNT",
    "INT64",
    "KEY_DESCRIPTION",
    "SESSION_OUT",
    "SHAPES",
    "Json",
    "camel",
    "is_int64",
    "obj",
    "ref",
    "schema",
]

Json = dict[str, Any]


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


# The response header every answer carries, errors included.
SESSION_OUT = {SESSION_HEADER: ref("headers", "Session")}


def camel(name: str) -> str:
    """``ttl_ms`` -> ``TtlMs``, ``hlls.count`` -> ``HllsCount``."""
    return "".join(part.capitalize() for part in name.replace(".", "_").split("_"))


def is_int64(arg: Arg) -> bool:
    """Whether an integer argument spans all of int64 (it then shares the Int64 schema)."""
    return (arg.lo, arg.hi) == (limits.INT64_MIN, limits.INT64_MAX)


def _unique(items: list[Any]) -> list[Any]:
    """Distinct items by name, first appearance first (the table's order)."""
    out: dict[str, Any] = {}
    for item in items:
        out.setdefault(item.name, item)
    return list(out.values())


ARGS: list[Arg] = _unique([arg for spec in TABLE for arg in spec.args])
SHAPES: list[Shape] = _unique([spec.result for spec in TABLE])
BODIES: list[Body] = _unique([spec.body for spec in TABLE if spec.body is not None])

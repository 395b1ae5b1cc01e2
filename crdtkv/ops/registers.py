"""The register view of string keys: any JSON value, last writer wins, optional TTL.

A string key is a numeric register (``crdtkv.crdts.numeric``): an LWW base
plus the increments it has not observed.  This view writes and reads the
base; the counter view (``crdtkv.ops.counters``) adds increments, so
``PUT /v1/registers/k {"value": 5}`` then ``POST /v1/counters/k`` reads 6.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import KeyMeta, NumericRegister
from crdtkv.errors import NotFound, WrongType
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import META, Key, Replica

__all__ = ["delete", "delete_typed", "get", "set_"]

STRING = "string"


def set_(r: Replica, a: Args, now_ms: int) -> Result:
    """SET: a new base (resetting the increments this replica has seen) and, like
    Redis's SET, a new TTL: ``ttl_ms`` or none at all."""
    name: str = a["key"]
    ttl_ms: int | None = a["ttl_ms"]
    existing = r.prepare_write(name, STRING, now_ms)
    reg = cast(NumericRegister, existing) if existing is not None else NumericRegister()
    ts = r.hlc.now(now_ms)
    delta = reg.assign(r.actor, ts, a["value"])
    extra: dict[Key, KeyMeta]
    if ttl_ms is None:
        extra = r.clear_ttl_delta(name)  # type: ignore[assignment]
    else:
        meta = r.state_for_write((META, name))
        extra = {(META, name): cast(KeyMeta, meta).set_ttl(r.actor, now_ms + ttl_ms)}
    r.commit_write(name, STRING, reg, delta, now_ms, ts, dict(extra))
    return {"ok": True}


def get(r: Replica, a: Args, now_ms: int) -> Result:
    reg = r.read(a["key"], STRING, now_ms)
    if reg is None:
        raise NotFound(f"key {a['key']!r} not found")
    return {"value": cast(NumericRegister, reg).value()}


def delete_typed(r: Replica, name: str, type_: str, now_ms: int) -> bool:
    """DEL through a typed view: 409 when the key holds another type."""
    visible = r.visible_type(name, now_ms)
    if visible is not None and visible != type_:
        raise WrongType(f"key {name!r} holds a {visible}, not a {type_}")
    return r.delete(name, now_ms)


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], STRING, now_ms)
    return {"ok": True}

"""HyperLogLog operations (distinct counters) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import HLL
from crdtkv.errors import NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = ["add", "count", "delete", "merge"]


HLL_TYPE = "hll"


def add(r: Replica, a: Args, now_ms: int) -> Result:
    name: str = a["key"]
    existing = r.prepare_write(name, HLL_TYPE, now_ms)
    h = cast(HLL, existing) if existing is not None else HLL()
    delta = h.add(a["items"])
    changed = delta.has_registers()
    r.commit_write(name, HLL_TYPE, h, delta, now_ms)
    return {"changed": changed}


def _source(r: Replica, name: str, now_ms: int) -> HLL | None:
    return cast(HLL | None, r.read(name, HLL_TYPE, now_ms))


def count(r: Replica, a: Args, now_ms: int) -> Result:
    """One HLL's estimate, or (``sources`` given) that of its union with others.
    A union is never 404: absent HLLs count as empty."""
    h = _source(r, a["key"], now_ms)
    others: list[str] = a["sources"] or []
    if not others:
        if h is None:
            raise NotFound(f"hll {a['key']!r} not found")
        return {"count": h.count()}
    hlls = [x for x in [h, *(_source(r, s, now_ms) for s in others)] if x is not None]
    return {"count": HLL.union_count(hlls)}


def merge(r: Replica, a: Args, now_ms: int) -> Result:
    name: str = a["key"]
    sources = {s: _source(r, s, now_ms) for s in a["sources"] if s != name}
    existing = r.prepare_write(name, HLL_TYPE, now_ms)
    h = cast(HLL, existing) if existing is not None else HLL()
    delta = HLL()
    for src in sources.values():
        if src is not None:
            delta.merge(h.merge_from(src))
    r.commit_write(name, HLL_TYPE, h, delta, now_ms)
    return {"count": h.count()}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], HLL_TYPE, now_ms)
    return {"ok": True}

"""HyperLogLog operations (distinct counters) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import HLL
from crdtkv.errors import NotFound
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica, is_live

__all__ = ["add", "count", "delete", "merge"]


def add(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("hlls", a["key"])
    existing = r.for_update(key)
    h = cast(HLL, existing) if existing is not None else HLL()
    delta = h.add(a["items"])
    changed = delta.has_registers()
    if existing is None and changed:
        r.adopt(key, h)
    r.commit_local({key: delta})
    return {"changed": changed}


def count(r: Replica, a: Args, now_ms: int) -> Result:
    """One HLL's estimate, or (``sources`` given) that of its union with others.

    A union is never 404: absent HLLs count as empty."""
    key = ("hlls", a["key"])
    h = r.get(key)
    others: list[str] = a["sources"] or []
    if not others:
        if h is None or not is_live(h, now_ms):
            raise NotFound(f"hll {key[1]!r} not found")
        return {"count": cast(HLL, h).count()}
    hlls = [cast(HLL, x) for x in [h, *(r.get(("hlls", s)) for s in others)] if x is not None]
    return {"count": HLL.union_count(hlls)}


def merge(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("hlls", a["key"])
    h = cast(HLL, r.state_for_write(key))
    delta = HLL()
    for name in a["sources"]:
        src = r.get(("hlls", name))
        if src is not None and name != key[1]:
            delta.merge(h.merge_from(cast(HLL, src)))
    if h.is_bottom():
        r.drop_empty(key)
    r.commit_local({key: delta})
    return {"count": h.count()}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("hlls", a["key"])
    h = r.for_update(key)
    if h is not None and is_live(h, now_ms):
        r.commit_local({key: cast(HLL, h).clear(r.hlc.now(now_ms))})
    return {"ok": True}

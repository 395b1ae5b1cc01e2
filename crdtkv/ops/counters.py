"""Counter operations (64-bit signed PN-counters) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import PNCounter
from crdtkv.errors import NotFound
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica, is_live

__all__ = ["decr", "delete", "get", "incr"]


def _add(r: Replica, key_name: str, by: int) -> Result:
    key = ("counters", key_name)
    existing = r.for_update(key)
    ctr = cast(PNCounter, existing) if existing is not None else PNCounter()
    delta = ctr.incr(r.actor, by)  # raises CounterOverflow before any change
    if existing is None and not delta.is_bottom():
        r.adopt(key, ctr)
    r.commit_local({key: delta})
    return {"value": ctr.value()}


def incr(r: Replica, a: Args, now_ms: int) -> Result:
    return _add(r, a["key"], a["delta"])


def decr(r: Replica, a: Args, now_ms: int) -> Result:
    return _add(r, a["key"], -a["delta"])


def get(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("counters", a["key"])
    ctr = r.get(key)
    if ctr is None or not is_live(ctr, now_ms):
        raise NotFound(f"counter {key[1]!r} not found")
    return {"value": cast(PNCounter, ctr).value()}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("counters", a["key"])
    ctr = r.for_update(key)
    if ctr is not None:
        r.commit_local({key: cast(PNCounter, ctr).reset()})
    return {"ok": True}

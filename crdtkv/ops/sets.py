"""Set operations (add-wins observed-remove sets of strings) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv import limits
from crdtkv.crdts import ORSet
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = ["add", "contains", "delete", "get", "remove"]


SET = "set"


def add(r: Replica, a: Args, now_ms: int) -> Result:
    name: str = a["key"]
    members: list[str] = a["members"]
    existing = r.prepare_write(name, SET, now_ms)
    s = cast(ORSet, existing) if existing is not None else ORSet()
    if len(s) + len(members) > limits.SET_MEMBERS_MAX:
        new = sum(1 for m in set(members) if not s.contains(m))
        if len(s) + new > limits.SET_MEMBERS_MAX:
            raise BadRequest(f"a set holds at most {limits.SET_MEMBERS_MAX} members")
    delta, added = s.add(r.actor, members)
    r.commit_write(name, SET, s, delta, now_ms)
    return {"added": added}


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    name: str = a["key"]
    if r.read(name, SET, now_ms) is None:
        return {"removed": 0}
    s = cast(ORSet, r.for_update((SET, name)))
    delta, removed = s.remove(a["members"])
    r.commit_write(name, SET, s, delta, now_ms)
    return {"removed": removed}


def _live_set(r: Replica, name: str, now_ms: int) -> ORSet:
    s = r.read(name, SET, now_ms)
    if s is None:
        raise NotFound(f"set {name!r} not found")
    return cast(ORSet, s)


def get(r: Replica, a: Args, now_ms: int) -> Result:
    s = _live_set(r, a["key"], now_ms)
    return {"members": s.members(), "size": len(s)}


def contains(r: Replica, a: Args, now_ms: int) -> Result:
    s = _live_set(r, a["key"], now_ms)
    return {"present": s.contains(a["member"])}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], SET, now_ms)
    return {"ok": True}

"""Set operations (add-wins observed-remove sets of strings) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv import limits
from crdtkv.crdts import ORSet
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Key, Replica

__all__ = ["add", "contains", "delete", "get", "remove"]


def add(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("sets", a["key"])
    members: list[str] = a["members"]
    existing = r.for_update(key)
    s = cast(ORSet, existing) if existing is not None else ORSet()
    if len(s) + len(members) > limits.SET_MEMBERS_MAX:
        new = sum(1 for m in set(members) if not s.contains(m))
        if len(s) + new > limits.SET_MEMBERS_MAX:
            raise BadRequest(f"a set holds at most {limits.SET_MEMBERS_MAX} members")
    delta, added = s.add(r.actor, members)
    if existing is None and members:
        r.adopt(key, s)
    r.commit_local({key: delta})
    return {"added": added}


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("sets", a["key"])
    s = r.for_update(key)
    if s is None:
        return {"removed": 0}
    delta, removed = cast(ORSet, s).remove(a["members"])
    r.commit_local({key: delta})
    return {"removed": removed}


def _live_set(r: Replica, key: Key) -> ORSet:
    s = r.get(key)
    if s is None or not cast(ORSet, s).entries:
        raise NotFound(f"set {key[1]!r} not found")
    return cast(ORSet, s)


def get(r: Replica, a: Args, now_ms: int) -> Result:
    s = _live_set(r, ("sets", a["key"]))
    return {"members": s.members(), "size": len(s)}


def contains(r: Replica, a: Args, now_ms: int) -> Result:
    s = _live_set(r, ("sets", a["key"]))
    return {"present": s.contains(a["member"])}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("sets", a["key"])
    s = r.for_update(key)
    if s is not None and cast(ORSet, s).entries:
        r.commit_local({key: cast(ORSet, s).clear()})
    return {"ok": True}

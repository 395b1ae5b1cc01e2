"""Set operations (add-wins observed-remove sets of strings) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

import heapq
from fnmatch import fnmatchcase
from typing import cast

from crdtkv import limits
from crdtkv.crdts import ORSet
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = ["SCAN_COUNT_DEFAULT", "add", "contains", "delete", "get", "remove", "scan"]


SET = "set"
SCAN_COUNT_DEFAULT = 10  # SSCAN's COUNT when none is given, as Redis's


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


def scan(r: Replica, a: Args, now_ms: int) -> Result:
    """SSCAN: of the ``count`` members after the cursor in code-point order (default
    10), those matching the glob ``match``; and the next cursor: ">" and the last
    member examined, "" when done (a member may be "", so the cursor is never a bare
    member).  A member present for the whole scan is returned exactly once.  O(n log
    count) per call: the set keeps no order, so the scan walks its members."""
    s = _live_set(r, a["key"], now_ms)
    cursor: str = a["cursor"] or ""
    after = cursor.removeprefix(">") if cursor else None
    count: int = a["count"] if a["count"] is not None else SCAN_COUNT_DEFAULT
    match: str | None = a["match"]
    pending = (m for m, dots in s.entries.items() if dots and (after is None or m > after))
    batch = heapq.nsmallest(count + 1, pending)
    page = batch[:count]
    if match is not None and match != "*":
        members = [m for m in page if fnmatchcase(m, match)]
    else:
        members = page
    return {"members": members, "cursor": ">" + page[-1] if len(batch) > count else ""}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], SET, now_ms)
    return {"ok": True}

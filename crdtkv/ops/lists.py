"""List operations (Redis's LPUSH, RPOP, LRANGE, LINSERT, LMOVE, ...) over a ``Replica``.

The state is an ``RList`` (``crdtkv.crdts.rlist``): a sequence CRDT whose
elements have unique, dense positions and an order-statistic index, so
pushes, pops, LINDEX, LSET and LRANGE of k elements cost O(log n) (or
O(log n + k)); LREM, LPOS and LINSERT's pivot search walk the list, O(n), as
in Redis.  An empty list does not exist: its reads answer 404 like an absent
key's, and a write that empties it leaves the key absent.

Under concurrency: pushes at one end by two replicas are both kept, each
replica's run contiguous, in one order everywhere; two replicas that pop the
same element concurrently both return it (at-least-once) and after they sync
it is gone once; a DEL keeps a concurrent push; LSET is last-writer-wins on
the element, and an element removed concurrently stays removed.  LMOVE (and
RPOPLPUSH) is a pop and a push in one delta group: atomic on this replica and
on the wire, but another replica may pop the same element concurrently.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv import limits
from crdtkv.crdts import KeyMeta, RList
from crdtkv.crdts.rlist import elem_value
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result, validate_key
from crdtkv.replica.keyspace import META, Key, Replica

__all__ = [
    "delete",
    "get",
    "index",
    "insert",
    "length",
    "lpop",
    "lpush",
    "move",
    "pos",
    "range_",
    "remove",
    "rpop",
    "rpush",
    "set_",
    "trim",
]

LIST = "list"


def _live(r: Replica, name: str, now_ms: int) -> RList:
    rl = r.read(name, LIST, now_ms)
    if rl is None:
        raise NotFound(f"list {name!r} not found")
    return cast(RList, rl)


def _for_update(r: Replica, name: str, now_ms: int) -> RList | None:
    """The live list for a change in place, or None when the key is absent."""
    if r.read(name, LIST, now_ms) is None:
        return None
    return cast(RList, r.for_update((LIST, name)))


def _check_room(rl: RList, new: int) -> None:
    if len(rl) + new > limits.LIST_ELEMENTS_MAX:
        raise BadRequest(f"a list holds at most {limits.LIST_ELEMENTS_MAX} elements")


def _check_element(value: str) -> None:
    """An element written by LSET or LINSERT: at most MEMBER_BYTES_MAX bytes of UTF-8, as a
    pushed one (the op row's check counts characters)."""
    if len(value) > limits.MEMBER_BYTES_MAX // 4 and (
        len(value.encode("utf-8")) > limits.MEMBER_BYTES_MAX
    ):
        raise BadRequest(f"an element is over {limits.MEMBER_BYTES_MAX} bytes")


def _check_answer(n: int) -> None:
    if n > limits.RANGE_MAX:
        raise BadRequest(
            f"the range holds {n} elements; an answer holds at most {limits.RANGE_MAX} "
            "(ask for a smaller range)"
        )


# -- writes -------------------------------------------------------------------------------------
def _push(r: Replica, a: Args, now_ms: int, left: bool) -> Result:
    name: str = a["key"]
    values: list[str] = a["values"]
    if not values:
        raise BadRequest("give at least one value")
    if a["exists"]:  # LPUSHX / RPUSHX
        rl = _for_update(r, name, now_ms)
        if rl is None:
            return {"length": 0}
    else:
        existing = r.prepare_write(name, LIST, now_ms)
        rl = cast(RList, existing) if existing is not None else RList()
    _check_room(rl, len(values))
    delta = rl.push(r.actor, values, left=left)
    r.commit_write(name, LIST, rl, delta, now_ms)
    return {"length": len(rl)}


def lpush(r: Replica, a: Args, now_ms: int) -> Result:
    """LPUSH (LPUSHX with ``exists``): each value in turn at the head; the new length."""
    return _push(r, a, now_ms, left=True)


def rpush(r: Replica, a: Args, now_ms: int) -> Result:
    """RPUSH (RPUSHX with ``exists``): each value in turn at the tail; the new length."""
    return _push(r, a, now_ms, left=False)


def _pop(r: Replica, a: Args, now_ms: int, left: bool) -> Result:
    name: str = a["key"]
    n: int = 1 if a["pop_count"] is None else a["pop_count"]
    rl = _for_update(r, name, now_ms) if n else None
    if rl is None:
        return {"values": []}
    size = len(rl)
    k = min(n, size)
    pairs = rl.slice(0, k) if left else rl.slice(size - k, size, reverse=True)
    taken = [p for p, _ in pairs]
    values = [elem_value(e) for _, e in pairs]
    delta, _ = rl.remove(taken)
    r.commit_write(name, LIST, rl, delta, now_ms)
    return {"values": values}


def lpop(r: Replica, a: Args, now_ms: int) -> Result:
    """LPOP: up to ``count`` (default 1) from the head, removed; [] for an absent key."""
    return _pop(r, a, now_ms, left=True)


def rpop(r: Replica, a: Args, now_ms: int) -> Result:
    """RPOP: up to ``count`` (default 1) from the tail, last first, removed."""
    return _pop(r, a, now_ms, left=False)


def set_(r: Replica, a: Args, now_ms: int) -> Result:
    """LSET: an LWW write of the element at ``index`` (negative: from the tail)."""
    name: str = a["key"]
    _check_element(a["element"])
    rl = _for_update(r, name, now_ms)
    if rl is None:
        raise NotFound("no such key")
    i = rl.index_of(a["index"])
    if i is None:
        raise BadRequest("index out of range")
    ts = r.hlc.now(now_ms)
    delta = rl.assign(rl.order[i], ts, a["element"])
    r.commit_write(name, LIST, rl, delta, now_ms, ts=ts)
    return {"ok": True}


def _find(rl: RList, value: str) -> int | None:
    for i, (_, e) in enumerate(rl.items()):
        if elem_value(e) == value:
            return i
    return None


def insert(r: Replica, a: Args, now_ms: int) -> Result:
    """LINSERT: ``value`` before or after the first element equal to ``pivot``; the new
    length, -1 when there is no such element, 0 for an absent key."""
    name: str = a["key"]
    _check_element(a["element"])
    rl = _for_update(r, name, now_ms)
    if rl is None:
        return {"length": 0}
    i = _find(rl, a["pivot"])
    if i is None:
        return {"length": -1}
    _check_room(rl, 1)
    delta = rl.insert(r.actor, i if a["where"] == "before" else i + 1, a["element"])
    r.commit_write(name, LIST, rl, delta, now_ms)
    return {"length": len(rl)}


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    """LREM: the first ``count`` elements equal to ``value`` from the head (count > 0),
    from the tail (count < 0), or all of them (0); how many were removed."""
    name: str = a["key"]
    rl = _for_update(r, name, now_ms)
    if rl is None:
        return {"removed": 0}
    count: int = a["rem_count"]
    value: str = a["element"]
    want = abs(count) or len(rl)
    found: list[str] = []
    for p, e in rl.items(reverse=count < 0):
        if elem_value(e) == value:
            found.append(p)
            if len(found) >= want:
                break
    if not found:
        return {"removed": 0}
    delta, removed = rl.remove(found)
    r.commit_write(name, LIST, rl, delta, now_ms)
    return {"removed": removed}


def trim(r: Replica, a: Args, now_ms: int) -> Result:
    """LTRIM: keep the elements from ``start`` to ``stop`` (inclusive, as LRANGE)."""
    name: str = a["key"]
    rl = _for_update(r, name, now_ms)
    if rl is None:
        return {"ok": True}
    first, end = rl.span(a["start"], a["stop"])
    order = rl.order
    gone = list(order.islice(0, first)) + list(order.islice(end, None))
    if gone:
        delta, _ = rl.remove(gone)
        r.commit_write(name, LIST, rl, delta, now_ms)
    return {"ok": True}


def move(r: Replica, a: Args, now_ms: int) -> Result:
    """LMOVE source destination LEFT|RIGHT LEFT|RIGHT: pop one element from the source's
    ``from`` end and push it at the destination's ``to`` end, in one delta group; the
    element, or null when the source is absent."""
    src: str = a["key"]
    dst = validate_key(a["destination"], "destination")
    from_left = a["from_end"] == "left"
    to_left = a["to_end"] == "left"
    source = _for_update(r, src, now_ms)
    if source is None:
        return {"value": None}
    if dst != src:
        existing = r.prepare_write(dst, LIST, now_ms)  # WRONGTYPE before any change
        target = cast(RList, existing) if existing is not None else RList()
        _check_room(target, 1)
    else:
        target = source
    order = source.order
    p = order[0] if from_left else order[-1]
    value = source.value_at(p)
    delta, _ = source.remove([p])
    if dst == src:
        delta.merge(source.push(r.actor, [value], left=to_left))
        r.commit_write(src, LIST, source, delta, now_ms)
        return {"value": value}
    ts = r.hlc.now(now_ms)
    extra: dict[Key, RList | KeyMeta] = {(LIST, dst): target.push(r.actor, [value], left=to_left)}
    if (LIST, dst) not in r.states:
        r.adopt((LIST, dst), target)
    mkey = (META, dst)
    meta = r.for_update(mkey)
    if not isinstance(meta, KeyMeta):
        meta = KeyMeta()
        r.adopt(mkey, meta)
    extra[mkey] = meta.stamp(LIST, ts)
    r.commit_write(src, LIST, source, delta, now_ms, ts=ts, extra=dict(extra))
    return {"value": value}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], LIST, now_ms)
    return {"ok": True}


# -- reads --------------------------------------------------------------------------------------
def get(r: Replica, a: Args, now_ms: int) -> Result:
    rl = _live(r, a["key"], now_ms)
    _check_answer(len(rl))
    return {"values": rl.values(), "length": len(rl)}


def length(r: Replica, a: Args, now_ms: int) -> Result:
    return {"length": len(_live(r, a["key"], now_ms))}


def range_(r: Replica, a: Args, now_ms: int) -> Result:
    """LRANGE start stop: indexes from 0, ``stop`` included, negative from the tail."""
    rl = _live(r, a["key"], now_ms)
    first, end = rl.span(a["start"], a["stop"])
    _check_answer(end - first)
    return {"values": rl.range(a["start"], a["stop"])}


def index(r: Replica, a: Args, now_ms: int) -> Result:
    """LINDEX: the element at ``index`` (negative: from the tail), null out of range."""
    rl = _live(r, a["key"], now_ms)
    i = rl.index_of(a["index"])
    return {"value": None if i is None else rl.value_at_index(i)}


def pos(r: Replica, a: Args, now_ms: int) -> Result:
    """LPOS value [RANK rank] [COUNT num] [MAXLEN len]: the indexes of matching elements
    (the ``rank``-th match first; a negative rank searches from the tail), at most
    ``count`` of them (0: all; absent: one), looking at most ``maxlen`` elements."""
    rl = _live(r, a["key"], now_ms)
    value: str = a["element"]
    rank: int = 1 if a["rank"] is None else a["rank"]
    if rank == 0:
        raise BadRequest(
            "RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
            "or use negative to start from the end of the list"
        )
    count: int = 1 if a["matches"] is None else a["matches"]
    want = count or limits.RANGE_MAX
    maxlen: int = a["maxlen"] or 0
    n = len(rl)
    skip = abs(rank) - 1
    out: list[int] = []
    for seen, (_, e) in enumerate(rl.items(reverse=rank < 0)):
        if maxlen and seen >= maxlen:
            break
        if elem_value(e) == value:
            if skip:
                skip -= 1
                continue
            out.append(n - 1 - seen if rank < 0 else seen)
            if len(out) >= want:
                break
    return {"positions": out}

"""Sorted set operations (Redis's ZADD, ZINCRBY, ZREM, ZRANGE, ...) over a ``Replica``.

The state is a ``ZSet`` (``crdtkv.crdts.zset``): an observed-remove set of
members, each with a numeric-register score (ZADD writes an LWW base,
ZINCRBY adds an increment that concurrent ZINCRBYs sum with), and an ordered
index so that ranks and ranges cost O(log n + k).  An empty sorted set does
not exist: its reads answer 404 like an absent key's.

Redis's option rules hold exactly (ZADD NX/XX/GT/LT/CH/INCR, and its error
texts); ZADD INCR is a ZINCRBY.  ZPOPMIN/ZPOPMAX remove what they return
(a ZREM of it): under concurrency two replicas may pop the same member
(at-least-once), and after they exchange updates it is gone once.
Results show infinite scores as "inf" and "-inf" (JSON has no infinities).

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import Any, cast

from crdtkv import limits
from crdtkv.crdts.zset import ScoreBound, ZSet
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.ops.zset_args import lex_span, member_bytes, score_out
from crdtkv.replica.keyspace import Replica

__all__ = [
    "add",
    "card",
    "count",
    "delete",
    "get",
    "incr",
    "lexcount",
    "member",
    "popmax",
    "popmin",
    "range_",
    "rangebylex",
    "rangebyscore",
    "remove",
    "scan",
    "scores",
]

ZSET = "zset"
SCAN_COUNT_DEFAULT = 10  # ZSCAN's COUNT when none is given, as Redis's
_CURSOR_START = ""  # ZSCAN's first cursor and the cursor of a finished scan, as for keys


def _items(pairs: Iterable[tuple[str, float]], withscores: bool) -> list[Any]:
    if withscores:
        return [[m, score_out(s)] for m, s in pairs]
    return [m for m, _ in pairs]


def _for_write(r: Replica, name: str, now_ms: int) -> ZSet:
    existing = r.prepare_write(name, ZSET, now_ms)
    return cast(ZSet, existing) if existing is not None else ZSet()


def _check_room(z: ZSet, new: int) -> None:
    if new and len(z) + new > limits.ZSET_MEMBERS_MAX:
        raise BadRequest(f"a sorted set holds at most {limits.ZSET_MEMBERS_MAX} members")


def _live(r: Replica, name: str, now_ms: int) -> ZSet:
    z = r.read(name, ZSET, now_ms)
    if z is None:
        raise NotFound(f"sorted set {name!r} not found")
    return cast(ZSet, z)


# -- writes -------------------------------------------------------------------------------------


def _check_options(a: Args) -> None:
    """Redis's refusals of ZADD's option combinations, in Redis's order and words."""
    nx, xx, gt, lt = bool(a["nx"]), bool(a["xx"]), bool(a["gt"]), bool(a["lt"])
    if nx and xx:
        raise BadRequest("XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise BadRequest("GT, LT, and/or NX options at the same time are not compatible")
    if a["incr"] and len(a["scores"]) != 1:
        raise BadRequest("INCR option supports a single increment-element pair")


def add(r: Replica, a: Args, now_ms: int) -> Result:
    """ZADD: ``added`` counts new members (with ``ch``, also those whose score changed);
    ``score`` is ZADD INCR's new score (null when NX/XX/GT/LT stopped it, or no INCR)."""
    _check_options(a)
    name: str = a["key"]
    z = _for_write(r, name, now_ms)
    if a["incr"]:
        return _add_incr(r, a, z, now_ms)
    nx, xx, gt, lt = bool(a["nx"]), bool(a["xx"]), bool(a["gt"]), bool(a["lt"])
    writes: list[tuple[str, float]] = []
    added = changed = 0
    for m, score in cast(dict[str, float], a["scores"]).items():
        cur = z.score(m)
        if cur is None:
            if xx:
                continue
            added += 1
        else:
            if nx or score == cur or (gt and score < cur) or (lt and score > cur):
                continue
            changed += 1
        writes.append((m, score))
    _check_room(z, added)
    if writes:
        ts = r.hlc.now(now_ms)
        delta, _ = z.add(r.actor, ts, writes)
        r.commit_write(name, ZSET, z, delta, now_ms, ts)
    return {"added": added + changed if a["ch"] else added, "score": None}


def _add_incr(r: Replica, a: Args, z: ZSet, now_ms: int) -> Result:
    """ZADD INCR: a ZINCRBY unless NX/XX/GT/LT stop it (then the score is null)."""
    ((m, by),) = cast(dict[str, float], a["scores"]).items()
    cur = z.score(m)
    stopped = {"added": 0, "score": None}
    if cur is None:
        if a["xx"]:
            return stopped
    else:
        new = cur + by
        if math.isnan(new):
            raise BadRequest("resulting score is not a number (NaN)")
        if a["nx"] or (a["gt"] and new <= cur) or (a["lt"] and new >= cur):
            return stopped
    _check_room(z, 1 if cur is None else 0)
    delta, score = z.incr(r.actor, m, by)  # refuses a non-finite increment, changing nothing
    r.commit_write(a["key"], ZSET, z, delta, now_ms)
    added = 1 if cur is None else 0
    changed = 1 if cur is not None and score != cur else 0
    return {"added": added + changed if a["ch"] else added, "score": score_out(score)}


def incr(r: Replica, a: Args, now_ms: int) -> Result:
    """ZINCRBY: an absent member starts from 0; concurrent increments sum."""
    name: str = a["key"]
    m: str = a["member"]
    member_bytes("member", m)
    z = _for_write(r, name, now_ms)
    _check_room(z, 0 if m in z else 1)
    delta, score = z.incr(r.actor, m, a["increment"])
    r.commit_write(name, ZSET, z, delta, now_ms)
    return {"score": score_out(score)}


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    """ZREM: removes what this replica has seen (a concurrent ZADD or ZINCRBY survives)."""
    name: str = a["key"]
    if r.read(name, ZSET, now_ms) is None:
        return {"removed": 0}
    z = cast(ZSet, r.for_update((ZSET, name)))
    delta, removed = z.remove(dict.fromkeys(a["members"]))
    r.commit_write(name, ZSET, z, delta, now_ms)
    return {"removed": removed}


def _pop(r: Replica, a: Args, now_ms: int, highest: bool) -> Result:
    name: str = a["key"]
    n: int = 1 if a["count"] is None else a["count"]
    if n == 0 or r.read(name, ZSET, now_ms) is None:
        return {"items": []}
    z = cast(ZSet, r.for_update((ZSET, name)))
    popped = z.range_by_rank(0, n - 1, reverse=highest)
    delta, _ = z.remove(m for m, _ in popped)
    r.commit_write(name, ZSET, z, delta, now_ms)
    return {"items": _items(popped, True)}


def popmin(r: Replica, a: Args, now_ms: int) -> Result:
    """ZPOPMIN: the lowest ``count`` (default 1), lowest first, removed."""
    return _pop(r, a, now_ms, highest=False)


def popmax(r: Replica, a: Args, now_ms: int) -> Result:
    """ZPOPMAX: the highest ``count`` (default 1), highest first, removed."""
    return _pop(r, a, now_ms, highest=True)


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], ZSET, now_ms)
    return {"ok": True}


# -- reads --------------------------------------------------------------------------------------


def get(r: Replica, a: Args, now_ms: int) -> Result:
    z = _live(r, a["key"], now_ms)
    return {"items": _items(z.value(), True), "size": len(z)}


def card(r: Replica, a: Args, now_ms: int) -> Result:
    return {"size": len(_live(r, a["key"], now_ms))}


def member(r: Replica, a: Args, now_ms: int) -> Result:
    """ZSCORE, ZRANK and ZREVRANK of one member: nulls when it is absent."""
    z = _live(r, a["key"], now_ms)
    m: str = a["member"]
    score = z.score(m)
    if score is None:
        return {"score": None, "rank": None, "rev_rank": None}
    rank = z.rank(m)
    assert rank is not None
    return {"score": score_out(score), "rank": rank, "rev_rank": len(z) - 1 - rank}


def scores(r: Replica, a: Args, now_ms: int) -> Result:
    """ZMSCORE: one score (or null) per member asked, in order."""
    z = _live(r, a["key"], now_ms)
    out = [z.score(m) for m in a["members"]]
    return {"scores": [None if s is None else score_out(s) for s in out]}


def count(r: Replica, a: Args, now_ms: int) -> Result:
    """ZCOUNT: O(log n)."""
    z = _live(r, a["key"], now_ms)
    return {"count": z.count_by_score(a["min"], a["max"])}


def lexcount(r: Replica, a: Args, now_ms: int) -> Result:
    """ZLEXCOUNT."""
    z = _live(r, a["key"], now_ms)
    span = lex_span(a["lex_min"], a["lex_max"])
    return {"count": 0 if span is None else z.count_by_lex(*span)}


def _limit(a: Args) -> int | None:
    """LIMIT's count: None (all) when absent or negative, as Redis reads a negative one."""
    limit: int | None = a["limit"]
    return None if limit is None or limit < 0 else limit


def _check_size(found: int, offset: int, limit: int | None) -> None:
    """Refuse a range answer of more than RANGE_MAX entries (before building it)."""
    size = max(0, found - offset)
    if limit is not None:
        size = min(size, limit)
    if size > limits.RANGE_MAX:
        raise BadRequest(
            f"the range holds {size} members; an answer holds at most {limits.RANGE_MAX} "
            "(page through it with offset and limit)"
        )


def range_(r: Replica, a: Args, now_ms: int) -> Result:
    """ZRANGE start stop [REV] [WITHSCORES], by rank: ranks from 0, ``stop`` included,
    negative ranks count from the end; with ``rev``, rank 0 is the highest score."""
    z = _live(r, a["key"], now_ms)
    start, stop, n = a["start"], a["stop"], len(z)
    first = max(start + n, 0) if start < 0 else start
    last = min(stop + n if stop < 0 else stop, n - 1)
    _check_size(last - first + 1, 0, None)
    return {"items": _items(z.range_by_rank(start, stop, bool(a["rev"])), bool(a["withscores"]))}


def rangebyscore(r: Replica, a: Args, now_ms: int) -> Result:
    """ZRANGE min max BYSCORE [REV] [LIMIT offset limit] [WITHSCORES]; ``min`` is the low
    end whatever the direction; ``offset`` and ``limit`` count in the result's order."""
    z = _live(r, a["key"], now_ms)
    lo: ScoreBound = a["min"]
    hi: ScoreBound = a["max"]
    offset: int = a["offset"] or 0
    limit = _limit(a)
    _check_size(z.count_by_score(lo, hi), offset, limit)
    found = z.range_by_score(lo, hi, bool(a["rev"]), offset, limit)
    return {"items": _items(found, bool(a["withscores"]))}


def rangebylex(r: Replica, a: Args, now_ms: int) -> Result:
    """ZRANGE min max BYLEX [REV] [LIMIT offset limit]: meaningful when every score is
    equal, as in Redis (which has no WITHSCORES with BYLEX)."""
    z = _live(r, a["key"], now_ms)
    span = lex_span(a["lex_min"], a["lex_max"])
    if span is None:
        return {"items": []}
    lo, hi = span
    offset: int = a["offset"] or 0
    limit = _limit(a)
    _check_size(z.count_by_lex(lo, hi), offset, limit)
    return {"items": _items(z.range_by_lex(lo, hi, bool(a["rev"]), offset, limit), False)}


def scan(r: Replica, a: Args, now_ms: int) -> Result:
    """ZSCAN: members in code-point order after the cursor, ``count`` of them (default
    10).  A member present for the whole scan is returned exactly once; the empty
    cursor starts a scan and marks its end.  O(n log count) per call: the index orders
    by score, which moves, so the scan walks the members themselves."""
    z = _live(r, a["key"], now_ms)
    cursor: str = a["cursor"] or _CURSOR_START
    # An answer's cursor is ">" and the last member it returned; any other string
    # but "0" also resumes after itself.
    after = None if not cursor else cursor.removeprefix(">")
    n: int = SCAN_COUNT_DEFAULT if a["count"] is None else max(a["count"], 1)
    pending = (m for m, cell in z.entries.items() if cell and (after is None or m > after))
    batch = heapq.nsmallest(n + 1, pending)
    page = batch[:n]
    more = len(batch) > n
    pairs = [(m, z.score(m)) for m in page]
    return {
        "cursor": ">" + page[-1] if more else _CURSOR_START,
        "items": [[m, score_out(s)] for m, s in pairs if s is not None],
    }

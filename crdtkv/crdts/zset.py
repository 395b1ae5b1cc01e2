"""The Redis sorted set: an observed-remove set of members, each with a numeric-register score.

Conflict rule: ZADD writes a score base (last writer wins, HLC timestamp,
ties by actor) and resets the increments this replica has seen; ZINCRBY adds
a per-replica float increment, so concurrent ZINCRBYs sum and survive a
concurrent ZADD on top of its base; ZREM removes only the entries it
observed, so a concurrent ZADD of the member wins, and a concurrent ZINCRBY
leaves the member with only that unobserved increment ("ZREM racing ZINCRBY
keeps only the unobserved increment": 4.1, then ZREM at A and +2.0 at B,
gives 2.0).  Removed members leave no tombstone (the causal context
remembers them).  Per member the rules are the numeric register's
(``crdtkv.crdts.numeric``), for the map those of ``crdtkv.crdts.causal_map``.

References: Redis Software Active-Active, "Sorted sets in Active-Active
databases"; Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), ORMap with a causal context.

Scores are floats: a base may be -inf or +inf, never NaN; an increment must
be finite (an infinite one could meet the opposite infinity from another
replica and make NaN), and then no sum can be NaN.  A result of ZINCRBY may
overflow to an infinity, as in Redis.

The ordered index, a ``SortedList`` of ``(score, member)``, is kept in step
with the state by every mutation and every merge (``_changed``), so ranks
and ranges cost O(log n + k), not O(n).  Ties of score order by member, and
a member's code-point order is the order of its UTF-8 bytes, Redis's order.
The index is derived: it is not encoded, and ``decode`` rebuilds it (a
narrow delta builds its own only if it is read).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList

from crdtkv.crdts.causal import CausalContext
from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import Cell, cell_value
from crdtkv.errors import CounterOverflow, NotNumeric

__all__ = ["MAX_SCORE", "MIN_SCORE", "LexBound", "ScoreBound", "ZSet"]

_Key = tuple[float, str]  # an index entry: (score, member)
_INF = math.inf


@dataclass(frozen=True, slots=True)
class ScoreBound:
    """One end of a score range (Redis ``1.5``, ``(1.5``, ``-inf``, ``+inf``)."""

    value: float
    exclusive: bool = False

    def __post_init__(self) -> None:
        if math.isnan(self.value):
            raise ValueError("a score bound is not NaN")


@dataclass(frozen=True, slots=True)
class LexBound:
    """One end of a member range (Redis ``[a``, ``(a``; value None is ``-`` or ``+``)."""

    value: str | None
    exclusive: bool = False


MIN_SCORE = ScoreBound(-_INF)
MAX_SCORE = ScoreBound(_INF)


def _score(cell: Cell) -> float:
    v = cell_value(cell)
    assert isinstance(v, float | int), v  # every base and increment of a zset is a float
    return float(v)


def _check_score(score: object) -> float:
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise TypeError(f"a score is a number, not {score!r}")
    try:
        out = float(score)
    except OverflowError as e:
        raise CounterOverflow(f"score {score} is outside the range of a double") from e
    if math.isnan(out):
        raise NotNumeric("score is not a valid float (NaN)")
    return out


@register_type
class ZSet(CausalMap):
    TYPE_TAG = "zset"
    FORMAT_VERSION = 1
    KIND = "zset"
    SCORES_ONLY = True

    __slots__ = ("_index",)

    def __init__(
        self,
        entries: dict[str, Cell] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        super().__init__(entries, ctx, narrow)
        # A full state builds its index now; a narrow delta only when first read (it
        # is usually joined into a state and dropped, so most never need one).
        self._index: SortedList[_Key] | None = None
        if not narrow:
            self._rebuilt()

    # -- the ordered index --------------------------------------------------------------
    @property
    def index(self) -> SortedList[_Key]:
        """The live members as (score, member), in order; read-only for callers."""
        if self._index is None:
            self._rebuilt()
            assert self._index is not None
        return self._index

    def _changed(self, key: str, old: Cell, new: Cell) -> None:
        idx = self._index
        if idx is None:
            return
        if old:
            idx.remove((_score(old), key))
        if new:
            idx.add((_score(new), key))

    def _rebuilt(self) -> None:
        self._index = SortedList((_score(c), k) for k, c in self.entries.items() if c)

    def copy(self) -> ZSet:
        out = ZSet(dict(self.entries), self.ctx.copy(), narrow=True)  # no index built
        out.narrow = self.narrow
        out._index = None if self._index is None else self._index.copy()
        return out

    # -- reads ------------------------------------------------------------------
    def score(self, member: str) -> float | None:
        """ZSCORE: None when the member is absent."""
        cell = self.entries.get(member)
        return _score(cell) if cell else None

    def value(self) -> list[tuple[str, float]]:
        """Every (member, score), by score then member."""
        return [(m, s) for s, m in self.index]

    def rank(self, member: str, reverse: bool = False) -> int | None:
        """ZRANK (ZREVRANK with ``reverse``): O(log n); None when absent."""
        cell = self.entries.get(member)
        if not cell:
            return None
        pos = self.index.index((_score(cell), member))
        return len(self.index) - 1 - pos if reverse else pos

    def range_by_rank(
        self, start: int, stop: int, reverse: bool = False
    ) -> list[tuple[str, float]]:
        """ZRANGE start stop [REV]: ranks from 0, inclusive ``stop``, negative ranks
        count from the end, out-of-range ranks clamp; O(log n + k)."""
        n = len(self.index)
        if start < 0:
            start = max(start + n, 0)
        if stop < 0:
            stop += n
        if start > stop or start >= n:
            return []
        stop = min(stop, n - 1)
        if reverse:
            it = self.index.islice(n - 1 - stop, n - start, reverse=True)
        else:
            it = self.index.islice(start, stop + 1)
        return [(m, s) for s, m in it]

    def range_by_score(
        self,
        lo: ScoreBound,
        hi: ScoreBound,
        reverse: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> list[tuple[str, float]]:
        """ZRANGE lo hi BYSCORE [REV] [LIMIT offset count]: members with lo <= score <= hi
        (bounds as given, whichever the direction); the window of ``offset`` and ``count``
        (None or negative: all) is taken in the direction of the result.  O(log n + k)."""
        first, end = self._score_span(lo, hi)
        return self._window(first, end, reverse, offset, count)

    def count_by_score(self, lo: ScoreBound, hi: ScoreBound) -> int:
        """ZCOUNT: O(log n)."""
        first, end = self._score_span(lo, hi)
        return end - first

    def range_by_lex(
        self,
        lo: LexBound,
        hi: LexBound,
        reverse: bool = False,
        offset: int = 0,
        count: int | None = None,
    ) -> list[tuple[str, float]]:
        """ZRANGE lo hi BYLEX [REV] [LIMIT offset count], as ``range_by_score``.

        As in Redis, meaningful when every score is equal; then O(log n + k).
        With different scores Redis leaves the result unspecified: here the
        positions are found by a binary search on members along the index
        (as Redis's skiplist walk does), O(log^2 n + k)."""
        first, end = self._lex_span(lo, hi)
        return self._window(first, end, reverse, offset, count)

    def count_by_lex(self, lo: LexBound, hi: LexBound) -> int:
        """ZLEXCOUNT."""
        first, end = self._lex_span(lo, hi)
        return end - first

    def _score_span(self, lo: ScoreBound, hi: ScoreBound) -> tuple[int, int]:
        """Index positions [first, end) of the scores within the bounds."""
        idx, n = self.index, len(self.index)
        # ("",) sorts before every member: bisecting on (x, "") finds the first score >= x,
        # and nextafter(x) the first score > x (no double lies between them).
        if not lo.exclusive:
            first = idx.bisect_left((lo.value, ""))
        elif lo.value == _INF:
            first = n
        else:
            first = idx.bisect_left((math.nextafter(lo.value, _INF), ""))
        if hi.exclusive:
            end = idx.bisect_left((hi.value, ""))
        elif hi.value == _INF:
            end = n
        else:
            end = idx.bisect_left((math.nextafter(hi.value, _INF), ""))
        return first, max(first, end)

    def _lex_span(self, lo: LexBound, hi: LexBound) -> tuple[int, int]:
        n = len(self.index)
        if n == 0:
            return 0, 0
        first = 0 if lo.value is None else self._lex_position(lo.value, after=lo.exclusive)
        end = n if hi.value is None else self._lex_position(hi.value, after=not hi.exclusive)
        return first, max(first, end)

    def _lex_position(self, member: str, after: bool) -> int:
        """The first position whose member is > ``member`` (``after``) or >= it."""
        idx = self.index
        low_score = idx[0][0]
        if low_score == idx[-1][0]:  # one score throughout: (score, member) orders by member
            key = (low_score, member)
            return idx.bisect_right(key) if after else idx.bisect_left(key)
        lo, hi = 0, len(idx)
        while lo < hi:
            mid = (lo + hi) // 2
            m = idx[mid][1]
            if m < member or (after and m == member):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _window(
        self, first: int, end: int, reverse: bool, offset: int, count: int | None
    ) -> list[tuple[str, float]]:
        """Positions [first, end), skipping ``offset`` and taking ``count`` in the
        result's direction (a negative offset gives nothing, as in Redis)."""
        if offset < 0:
            return []
        unlimited = count is None or count < 0
        it: Iterator[_Key]
        if reverse:
            top = end - offset
            bottom = first if unlimited else max(first, top - (count or 0))
            if bottom >= top:
                return []
            it = self.index.islice(bottom, top, reverse=True)
        else:
            start = first + offset
            stop = end if unlimited else min(end, start + (count or 0))
            if start >= stop:
                return []
            it = self.index.islice(start, stop)
        return [(m, s) for s, m in it]

    # -- delta-mutators -----------------------------------------------------------
    def add(
        self, actor: str, ts: Timestamp, items: Iterable[tuple[str, float]]
    ) -> tuple[ZSet, int]:
        """ZADD score member [...] at ``ts``: each member gets a new score base and loses
        the increments this replica has seen.  Returns (delta, members added).  Every
        score is checked first (not NaN): a bad one changes nothing."""
        pairs = [(member, _check_score(score)) for member, score in items]
        return self._write(actor, ts, pairs)

    def incr(self, actor: str, member: str, by: float) -> tuple[ZSet, float]:
        """ZINCRBY: returns (delta, new score); an absent member starts from 0.
        Refused (nothing changed) if ``by`` or this replica's sum of increments
        of the member is not finite."""
        delta, result = self._increment(actor, member, _check_score(by), allow_infinite=True)
        return delta, float(result)

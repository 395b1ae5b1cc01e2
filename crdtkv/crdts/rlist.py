"""The Redis list: a sequence CRDT, an observed-remove map position -> element.

Conflict rule: every element has a unique, dense, sortable *position* and the
dot of the push that created it; the list is its live elements in position
order.  A pop, LREM or LTRIM removes the elements it observed (their dots), so
two replicas that pop the same head concurrently both return it
(at-least-once) and after they sync it is gone once; a push concurrent with
a DEL survives.  LSET is a last-writer-wins write (HLC timestamp) of the
element's value; an element removed concurrently with an LSET stays removed
(the LSET does not bring it back, as a concurrent push would not either: the
element is identified by its push's dot, which the removal observed).
Removed elements leave no tombstone: the causal context remembers their dots.

References: Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529) for the dot store with a causal context; Weidner and
Kleppmann, "The Art of the Fugue: Minimizing Interleaving in Collaborative
Text Editing" (arXiv 2305.00583) for non-interleaving positions; Redis
Software Active-Active lists for the rules of concurrent pops and pushes.

Positions are strings whose code-point order is the list order (so they are
also the keys of the element records on disk).  A position is a sequence of
*levels*; a level is ``(major, actor, k)``: an integer, the minting replica's
actor id and ``k`` = +seq or -seq, where ``(actor, seq)`` is the dot of the
element whose position ends with that level.  Levels compare as tuples, a
position as the tuple of its levels (a prefix sorts first).  The encoding
(``level``) is prefix-free, so string order is tuple order.

- RPUSH takes ``(tail.major + 1, me, +seq)`` at the top level, or
  ``(tail.major, me, +seq)`` when the tail's first level is mine: a run of
  pushes by one replica shares one major and orders by its dots' sequence
  numbers, so a run stays contiguous next to another replica's concurrent
  run (it sorts by actor first), never interleaved element by element.
  LPUSH is the mirror image, with ``-seq``.  Pushes at either end therefore
  always make one-level positions: their length is bounded however long the
  run (the integers grow by one per run and per push).
- LINSERT takes a position between its neighbours x < y: a sibling of x
  (``x``'s last level with my actor and +seq) or of y (-seq) when that
  level is mine and it lies between; otherwise x plus a child level (when y
  is not below x) or y's parent plus a level with a smaller major (when it
  is).  Positions only grow under inserts between other replicas' elements.

An order-statistic index (a ``SortedList`` of the live (position, element)
pairs) is kept in step with the entries, so index access, pushes and pops
cost O(log n) and a range of k elements O(log n + k).  It holds the elements
too so that a read by index never looks them up in ``entries``: at a million
elements each lookup in that dict is a cache miss or two, which made an
LRANGE of 100 three times dearer than at a thousand.  It is derived: not
encoded, and rebuilt on decode (a narrow delta builds its own only when
read).

Deltas are narrow, as ``ORSet``'s: a push lists its new elements, a removal
its removed positions (value None) and a context of only those dots, so a
push costs O(1) bytes on the wire and in the log.  A full state, or the
delta of a clear, is not narrow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Self

from sortedcontainers import SortedList

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.errors import CodecError

__all__ = [
    "Elem",
    "Positions",
    "RList",
    "between",
    "dot_of",
    "elem_value",
    "encode_elem",
    "level",
    "levels",
]

Elem = str | tuple[str, Timestamp]
"""An element's value: the pushed string, or (string, timestamp) once an LSET wrote it."""

# -- position strings ----------------------------------------------------------------------------
# An integer: a prefix character giving its sign and digit count, then base-62 digits.
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ascending
_VAL = {c: i for i, c in enumerate(_DIGITS)}
_B = 62
_WIDTH_MAX = 11  # 62**11 > 2**63
_NONNEG = "abcdefghijk"  # L digits: _NONNEG[L - 1]
_NEG = "KJIHGFEDCBA"  # L digits: _NEG[L - 1] (longer negatives are smaller)
_SEP = "!"  # ends the actor: below every character an actor id holds
_INT_MAX = 2**63 - 1


def _digits(v: int, width: int) -> str:
    out = []
    for _ in range(width):
        v, r = divmod(v, _B)
        out.append(_DIGITS[r])
    return "".join(reversed(out))


def _enc_int(n: int) -> str:
    if n >= 0:
        width = 1
        while _B**width <= n:
            width += 1
        return _NONNEG[width - 1] + _digits(n, width)
    width = 1
    while _B**width < -n:
        width += 1
    return _NEG[width - 1] + _digits(_B**width + n, width)


def level(major: int, actor: str, k: int) -> str:
    """One level of a position: ``(major, actor, k)`` as an order-preserving string."""
    return _enc_int(major) + actor + _SEP + _enc_int(k)


def _read_int(s: str, i: int) -> tuple[int, int]:
    c = s[i]
    if "a" <= c <= "k":
        width, neg = ord(c) - ord("a") + 1, False
    elif "A" <= c <= "K":
        width, neg = ord("K") - ord(c) + 1, True
    else:
        raise ValueError("bad integer prefix")
    end = i + 1 + width
    if end > len(s):
        raise ValueError("short integer")
    v = 0
    for ch in s[i + 1 : end]:
        v = v * _B + _VAL[ch]
    if neg:
        v -= _B**width
    return v, end


def _read_level(s: str, i: int) -> tuple[int, str, int, int]:
    """The level starting at ``s[i]``: (major, actor, k, the index after it)."""
    major, i = _read_int(s, i)
    j = s.index(_SEP, i)
    k, end = _read_int(s, j + 1)
    return major, s[i:j], k, end


def levels(pos: str) -> list[tuple[int, str, int]]:
    """The levels of a position; raises ``ValueError`` unless ``pos`` is canonical."""
    out: list[tuple[int, str, int]] = []
    i, n = 0, len(pos)
    if n == 0:
        raise ValueError("empty position")
    try:
        while i < n:
            major, actor, k, i = _read_level(pos, i)
            if not actor or min(actor) <= _SEP or len(actor) > 128:
                raise ValueError("bad actor")
            if k == 0 or not -_INT_MAX <= k <= _INT_MAX or not -_INT_MAX <= major <= _INT_MAX:
                raise ValueError("bad level")
            out.append((major, actor, k))
    except (IndexError, KeyError) as e:
        raise ValueError("malformed position") from e
    if "".join(level(*lv) for lv in out) != pos:
        raise ValueError("position is not canonical")
    return out


def _last_level(pos: str) -> tuple[int, str, int, int]:
    """(major, actor, k, start index) of a (valid) position's last level."""
    i, n = 0, len(pos)
    while True:
        start = i
        major, actor, k, i = _read_level(pos, i)
        if i >= n:
            return major, actor, k, start


def _first_level(pos: str) -> tuple[int, str, int]:
    major, actor, k, _ = _read_level(pos, 0)
    return major, actor, k


def dot_of(pos: str) -> Dot:
    """The dot of the element at ``pos`` (its last level's actor and |k|)."""
    _, actor, k, _ = _last_level(pos)
    return (actor, abs(k))


def between(x: str | None, y: str | None, actor: str, seq: int) -> str:
    """A new position of ``actor``'s element ``seq`` with x < position < y (None: an end)."""
    if x is None and y is None:
        return level(0, actor, seq)
    cands: list[str] = []
    if y is None:
        assert x is not None
        major, a, _ = _first_level(x)
        if a == actor:
            cands.append(level(major, actor, seq))
        cands.append(level(major + 1, actor, seq))
    elif x is None:
        major, a, _ = _first_level(y)
        if a == actor:
            cands.append(level(major, actor, -seq))
        cands.append(level(major - 1, actor, -seq))
    else:
        xm, xa, _, xs = _last_level(x)
        ym, ya, _, ys = _last_level(y)
        if xa == actor:
            cands.append(x[:xs] + level(xm, actor, seq))
        if ya == actor:
            cands.append(y[:ys] + level(ym, actor, -seq))
        if y.startswith(x):
            cands.append(y[:ys] + level(ym - 1, actor, -seq))
        else:
            cands.append(x + level(0, actor, seq))
    for c in cands:
        if (x is None or x < c) and (y is None or c < y):
            return c
    raise AssertionError(f"no position between {x!r} and {y!r}")  # pragma: no cover


# -- element values ------------------------------------------------------------------------------
def elem_value(e: Elem) -> str:
    return e if isinstance(e, str) else e[0]


def _lww(a: Elem, b: Elem) -> Elem:
    """The later write of one element's value: a pushed value loses to any LSET."""
    if a == b:
        return a
    if isinstance(a, str):
        return b if not isinstance(b, str) or b > a else a
    if isinstance(b, str):
        return a
    return a if (a[1], a[0]) > (b[1], b[0]) else b


def encode_elem(e: Elem | None) -> object:
    if e is None or isinstance(e, str):
        return e
    return [e[0], e[1].encode()]


def decode_elem(raw: object) -> Elem:
    """An element's value from its encoding; raises ``CodecError``."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list | tuple) and len(raw) == 2 and isinstance(raw[0], str):
        return (raw[0], Timestamp.decode(raw[1]))
    raise CodecError("list: an element is a string or [string, timestamp]")


def check_position(pos: object) -> Dot:
    """A position from the wire: its element's dot; raises ``CodecError``."""
    if not isinstance(pos, str) or len(pos) > 64 * 1024:
        raise CodecError("list: a position is a string")
    try:
        lv = levels(pos)
    except ValueError as e:
        raise CodecError(f"list: malformed position ({e})") from e
    _, actor, k = lv[-1]
    return (actor, abs(k))


class Positions:
    """The live positions of a list in list order: a read-only view of its index."""

    __slots__ = ("_items",)

    def __init__(self, items: SortedList[tuple[str, Elem]]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i: int) -> str:
        return self._items[i][0]

    def __iter__(self) -> Iterator[str]:
        return (p for p, _ in self._items)

    def __reversed__(self) -> Iterator[str]:
        return (p for p, _ in reversed(self._items))

    def islice(self, start: int | None = None, stop: int | None = None) -> Iterator[str]:
        return (p for p, _ in self._items.islice(start, stop))


@register_type
class RList(CRDT):
    TYPE_TAG = "list"
    FORMAT_VERSION = 1

    __slots__ = ("_order", "ctx", "entries", "narrow", "touched")

    def __init__(
        self,
        entries: dict[str, Elem | None] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        # Position -> element; None only in a narrow delta (a removed position).
        self.entries: dict[str, Elem | None] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        self.narrow = narrow
        # Persistence bookkeeping, as ``ORSet.touched``: positions changed since storage
        # last wrote their records, or None for "any may have".
        self.touched: set[str] | None = None
        self._order: SortedList[tuple[str, Elem]] | None = None
        if not narrow:
            self._rebuilt()

    # -- the order-statistic index ----------------------------------------------------------------
    @property
    def order(self) -> Positions:
        """The live positions, in list order."""
        return Positions(self._index())

    def _index(self) -> SortedList[tuple[str, Elem]]:
        """The live (position, element) pairs, in list order; read-only for callers."""
        if self._order is None:
            self._rebuilt()
            assert self._order is not None
        return self._order

    def _rebuilt(self) -> None:
        self._order = SortedList((p, e) for p, e in self.entries.items() if e is not None)

    def _put(self, pos: str, elem: Elem | None, keep_empty: bool) -> None:
        """Set ``pos`` to ``elem`` (None: remove it, or mark it removed in a delta)."""
        entries = self.entries
        old = entries.get(pos)
        if self.touched is not None:
            self.touched.add(pos)
        index = self._order
        if elem is not None:
            entries[pos] = elem
            if index is not None and old is not elem:
                if old is not None:
                    index.remove((pos, old))
                index.add((pos, elem))
            return
        if old is not None and index is not None:
            index.remove((pos, old))
        if keep_empty:
            entries[pos] = None
        else:
            entries.pop(pos, None)

    # -- reads ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self.narrow:
            return sum(1 for e in self.entries.values() if e is not None)
        return len(self.entries)

    def is_bottom(self) -> bool:
        return self.ctx.is_empty() and not any(e is not None for e in self.entries.values())

    def size(self) -> int:
        return len(self.entries) + self.ctx.size()

    def values(self) -> list[str]:
        return [elem_value(e) for _, e in self._index()]

    def value_at(self, pos: str) -> str:
        e = self.entries[pos]
        assert e is not None
        return elem_value(e)

    def value_at_index(self, i: int) -> str:
        """The value at position index ``i`` (0..len-1): O(log n)."""
        return elem_value(self._index()[i][1])

    def items(self, reverse: bool = False) -> Iterator[tuple[str, Elem]]:
        """The live (position, element) pairs in list order (``reverse``: from the tail)."""
        index = self._index()
        return iter(index) if not reverse else reversed(index)

    def slice(self, first: int, end: int, reverse: bool = False) -> list[tuple[str, Elem]]:
        """The live (position, element) pairs at position indexes [first, end): O(log n + k)."""
        return list(self._index().islice(first, end, reverse=reverse))

    def index_of(self, i: int) -> int | None:
        """A Redis index (negative: from the tail) as a position index; None: out of range."""
        n = len(self._index())
        if i < 0:
            i += n
        return i if 0 <= i < n else None

    def span(self, start: int, stop: int) -> tuple[int, int]:
        """Redis's LRANGE/LTRIM indexes (inclusive, negative from the tail, clamped) as
        [first, end); first >= end when the range is empty."""
        n = len(self._index())
        if start < 0:
            start = max(start + n, 0)
        if stop < 0:
            stop += n
        stop = min(stop, n - 1)
        if start > stop or start >= n:
            return 0, 0
        return start, stop + 1

    def range(self, start: int, stop: int) -> list[str]:
        """LRANGE start stop: O(log n + k)."""
        first, end = self.span(start, stop)
        return [elem_value(e) for _, e in self._index().islice(first, end)]

    def positions(self, reverse: bool = False) -> Iterator[str]:
        return (p for p, _ in self.items(reverse))

    # -- delta-mutators ---------------------------------------------------------------------------
    def _delta(self, entries: dict[str, Elem | None]) -> RList:
        return RList(entries, CausalContext(cloud=[dot_of(p) for p in entries]), narrow=True)

    def push(self, actor: str, values: Iterable[str], left: bool) -> RList:
        """LPUSH (``left``) or RPUSH each value in turn; returns the delta."""
        order = self.order
        seq = self.ctx.max_seq(actor)
        d: dict[str, Elem | None] = {}
        for v in values:
            seq += 1
            if left:
                pos = between(None, order[0] if order else None, actor, seq)
            else:
                pos = between(order[-1] if order else None, None, actor, seq)
            self.ctx.add((actor, seq))
            self._put(pos, v, False)
            d[pos] = v
        return self._delta(d)

    def insert(self, actor: str, index: int, value: str) -> RList:
        """Insert ``value`` so that it is at position index ``index`` (0..len); the delta."""
        order = self.order
        x = order[index - 1] if index > 0 else None
        y = order[index] if index < len(order) else None
        seq = self.ctx.max_seq(actor) + 1
        pos = between(x, y, actor, seq)
        self.ctx.add((actor, seq))
        self._put(pos, value, False)
        return self._delta({pos: value})

    def assign(self, pos: str, ts: Timestamp, value: str) -> RList:
        """LSET of the element at ``pos``: an LWW write at ``ts``; the delta."""
        old = self.entries.get(pos)
        assert old is not None, pos
        new = _lww(old, (value, ts))
        self._put(pos, new, False)
        return self._delta({pos: new})

    def remove(self, positions: Iterable[str]) -> tuple[RList, int]:
        """Remove the elements at ``positions`` (pops, LREM, LTRIM); (delta, removed)."""
        d: dict[str, Elem | None] = {}
        for p in positions:
            if self.entries.get(p) is not None and p not in d:
                self._put(p, None, False)
                d[p] = None
        return self._delta(d), len(d)

    def clear(self) -> RList:
        """Remove every observed element (DEL); a concurrent push survives.  The delta."""
        self.entries = {}
        self.touched = None
        self._rebuilt()
        return RList({}, self.ctx.copy(), narrow=False)

    # -- join -------------------------------------------------------------------------------------
    def merge(self, other: RList) -> None:
        mine, sctx, octx = self.entries, self.ctx, other.ctx
        was_narrow = self.narrow
        keep_empty = was_narrow and other.narrow
        for pos, oe in other.entries.items():
            se = mine.get(pos)
            if oe is None:  # removed by other (its dot is in other's context)
                if se is not None:
                    self._put(pos, None, keep_empty)
                elif keep_empty and pos not in mine:
                    mine[pos] = None
                continue
            if se is not None:
                new = _lww(se, oe)
                if new is not se:
                    self._put(pos, new, False)
            elif not sctx.contains(dot_of(pos)):
                self._put(pos, oe, False)
            elif keep_empty and pos not in mine:
                mine[pos] = None
        if not other.narrow and not octx.is_empty():
            gone = [p for p, e in mine.items() if e is not None and p not in other.entries]
            for p in gone:
                if octx.contains(dot_of(p)):
                    self._put(p, None, keep_empty)
        if was_narrow and not keep_empty:
            for p in [p for p, e in mine.items() if e is None]:
                del mine[p]
        sctx.merge(octx)
        self.narrow = keep_empty

    def copy(self) -> Self:
        out = type(self)(dict(self.entries), self.ctx.copy(), narrow=True)
        out.narrow = self.narrow
        out._order = None if self._order is None else self._order.copy()
        return out

    def _live(self) -> dict[str, Elem]:
        return {p: e for p, e in self.entries.items() if e is not None}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RList):
            return NotImplemented
        return self.ctx == other.ctx and self._live() == other._live()

    def __repr__(self) -> str:
        return f"RList({self.entries!r}, {self.ctx!r}, narrow={self.narrow})"

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self) -> object:
        items = self.entries.items() if self.narrow else self._live().items()
        return [self.ctx.encode(), [[p, encode_elem(e)] for p, e in sorted(items)], self.narrow]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            raise CodecError("list: expected [context, entries, narrow]")
        ctx_raw, entries_raw, narrow = payload
        if not isinstance(narrow, bool):
            raise CodecError("list: narrow must be a bool")
        ctx = CausalContext.decode(ctx_raw)
        if not isinstance(entries_raw, list | tuple):
            raise CodecError("list: entries must be a list")
        entries: dict[str, Elem | None] = {}
        seen: set[Dot] = set()
        for item in entries_raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise CodecError("list: an entry is [position, element]")
            pos, raw = item
            dot = check_position(pos)
            assert isinstance(pos, str)
            if pos in entries:
                raise CodecError("list: duplicate position")
            if dot in seen:
                raise CodecError("list: a dot held by two positions")
            seen.add(dot)
            if not ctx.contains(dot):
                raise CodecError("list: an element's dot is outside the context")
            if raw is None:
                if not narrow:
                    raise CodecError("list: a full state lists only live elements")
                entries[pos] = None
            else:
                entries[pos] = decode_elem(raw)
        return cls(entries, ctx, narrow)

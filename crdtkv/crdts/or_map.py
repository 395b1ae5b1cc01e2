"""The Redis hash: an observed-remove map of field -> numeric register.

Conflict rule: concurrent HSETs of different fields both survive; of one
field, one last-writer-wins base (HLC timestamp, ties by actor); concurrent
HINCRBYs sum, and survive a concurrent HSET on top of its base; HDEL
removes only what it observed, so a concurrent HSET or HINCRBY of that field
wins.  Removed fields leave no tombstone: the map's causal context
remembers their dots.  The per-field rules are the numeric register's
(``crdtkv.crdts.numeric``), the map's those of ``crdtkv.crdts.causal_map``.

References: Redis Software Active-Active, "Hashes in Active-Active
databases" (fields add-wins, values as strings or counters); Almeida,
Shoker, Baquero, "Delta State Replicated Data Types" (arXiv 1603.01529),
ORMap with a causal context.

Every mutator's delta lists only the fields it touched: HSET of one field
of a 1,000,000-field hash costs, in delta bytes and in the time to make and
to join it, what it costs on a small one.  Field existence checks (HSETNX)
are the caller's, local.

The field index, a ``SortedList`` of the live fields, is kept in step with
the state by every mutation and every merge (``_changed``), as the sorted
set's is, so HSCAN pages cost O(log n + count) and HKEYS/HGETALL need no
sort.  It is derived: not encoded, rebuilt by ``decode``; a narrow delta
builds its own only if it is read.
"""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedList

from crdtkv.crdts.causal import CausalContext
from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import Cell, Number, Scalar, cell_scalar, check_scalar, float_step

__all__ = ["ORMap"]


@register_type
class ORMap(CausalMap):
    TYPE_TAG = "hash"
    FORMAT_VERSION = 1
    KIND = "hash"

    __slots__ = ("_index",)

    def __init__(
        self,
        entries: dict[str, Cell] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        super().__init__(entries, ctx, narrow)
        # A full state builds its index now; a narrow delta only when first read.
        self._index: SortedList[str] | None = None
        if not narrow:
            self._rebuilt()

    # -- the field index ----------------------------------------------------------------
    @property
    def index(self) -> SortedList[str]:
        """The live fields in code-point order; read-only for callers."""
        if self._index is None:
            self._rebuilt()
            assert self._index is not None
        return self._index

    def _changed(self, key: str, old: Cell, new: Cell) -> None:
        idx = self._index
        if idx is None or bool(old) == bool(new):
            return  # no index yet, or a value change of a field that stays
        if new:
            idx.add(key)
        else:
            idx.remove(key)

    def _rebuilt(self) -> None:
        self._index = SortedList(k for k, c in self.entries.items() if c)

    def copy(self) -> ORMap:
        out = ORMap(dict(self.entries), self.ctx.copy(), narrow=True)  # no index built
        out.narrow = self.narrow
        out._index = None if self._index is None else self._index.copy()
        return out

    # -- reads ------------------------------------------------------------------
    def get(self, field: str) -> Scalar | None:
        """HGET: the field's value, or None when absent."""
        return cell_scalar(self.entries.get(field, ()))

    def fields(self) -> list[str]:
        """HKEYS, sorted (the same order on every replica)."""
        return list(self.index)

    def value(self) -> dict[str, Scalar]:
        """HGETALL, sorted by field."""
        out: dict[str, Scalar] = {}
        entries = self.entries
        for field in self.index:
            v = cell_scalar(entries[field])
            if v is not None:
                out[field] = v
        return out

    def page(self, after: str, count: int) -> tuple[list[str], bool]:
        """Up to ``count`` live fields after ``after`` ("" from the start) in order,
        and whether fields remain after them: HSCAN's walk, O(log n + count)."""
        idx = self.index
        start = idx.bisect_right(after) if after else 0
        stop = min(len(idx), start + count)
        return list(idx.islice(start, stop)), stop < len(idx)

    # -- delta-mutators -----------------------------------------------------------
    def set(
        self, actor: str, ts: Timestamp, items: Iterable[tuple[str, Scalar]]
    ) -> tuple[ORMap, int]:
        """HSET field value [field value ...] at ``ts``: each field gets a new base and
        loses the increments this replica has seen.  Returns (delta, fields added).
        Every value is checked first (``numeric.check_scalar``): a bad one changes nothing."""
        pairs = [(field, check_scalar(value)) for field, value in items]
        return self._write(actor, ts, pairs)

    def incr(self, actor: str, field: str, by: int) -> tuple[ORMap, Number]:
        """HINCRBY: returns (delta, new value); ``NotNumeric`` or ``CounterOverflow``
        (nothing changed) on a value that is not an integer or on overflow."""
        if isinstance(by, bool) or not isinstance(by, int):
            raise TypeError("an integer increment is an int")
        return self._increment(actor, field, by, allow_infinite=False)

    def incr_float(self, actor: str, field: str, by: float) -> tuple[ORMap, Number]:
        """HINCRBYFLOAT: returns (delta, new value); refused (nothing changed) on a
        value that is not a number, or if the increment or the result is not finite."""
        return self._increment(actor, field, float_step(by), allow_infinite=False)

"""Observed-remove map of numeric registers under one causal context.

The common machinery of the hash (``ORMap``) and the sorted set (``ZSet``):
a map from a key (hash field, set member) to a numeric-register cell
(``crdtkv.crdts.numeric``), with one causal context for the whole map.

Conflict rule: per key, the join of its two cells under the two maps'
contexts (``numeric.join_cells``): an entry survives unless the other side
has seen its dot and dropped it.  A removal drops the dots it observed, so a
concurrent write to that key (whose dot it could not have seen) wins, and
nothing is left behind: the context remembers the removed dots, so there are
no per-key tombstones.  Concurrent writes of different keys both survive;
of one key, the numeric register decides (one LWW base, increments summed).

References: Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), the observed-remove map of dot stores with one causal
context (ORMap, section 7); Bieniusa et al., "An optimized conflict-free
replicated set" (arXiv 1210.3368) for removal without tombstones; Redis
Software Active-Active hashes and sorted sets for the per-type rules.

Deltas are *narrow*, as ``ORSet``'s: a write, increment or removal lists
only the keys it touched (a removed key with an empty cell) and a context of
only their dots, so its size and the cost of joining it into a map of any
size depend on the keys touched, not on the map.  A full state, or the delta
of a clear, is not narrow, and joining it scans every key.

Element dots are minted per map (``ctx.next_dot(actor)``), so in steady
state the context is one version-vector entry per writing replica.
Subclasses see every change of a key's cell through ``_changed`` (the sorted
set keeps its ordered index in step with it) and ``_rebuilt``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import (
    Cell,
    Number,
    Scalar,
    decode_cell,
    encode_cell,
    increment,
    join_cells,
    write,
)
from crdtkv.errors import CodecError

__all__ = ["CausalMap"]


class CausalMap(CRDT):
    """Key -> numeric-register cell, one causal context (see the module docstring)."""

    # True for sorted sets: every base and increment is a float (checked on decode).
    SCORES_ONLY: ClassVar[bool] = False
    KIND: ClassVar[str] = "map"  # names the type in decode errors

    __slots__ = ("ctx", "entries", "narrow", "touched")

    def __init__(
        self,
        entries: dict[str, Cell] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        self.entries: dict[str, Cell] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        # True only for deltas whose context covers dots of listed keys only;
        # such a delta may list a key with an empty cell (a removal).
        self.narrow = narrow
        # Persistence bookkeeping, not state (ignored by ``==`` and the codec): the
        # keys whose cells changed since the storage layer last wrote this map's
        # per-key records, or None for "any may have" (a new, decoded, copied or
        # cleared map).  Only the storage loader and checkpoint writer set it to a
        # set (``crdtkv.replica.records``), so a checkpoint of one changed field
        # of a large hash writes that field, not the hash.
        self.touched: set[str] | None = None

    # -- hooks for subclasses ---------------------------------------------------------
    def _changed(self, key: str, old: Cell, new: Cell) -> None:
        """``key``'s cell went from ``old`` to ``new`` (either may be empty)."""

    def _rebuilt(self) -> None:
        """``entries`` was replaced as a whole (a subclass also calls it from ``__init__``)."""

    # -- reads ------------------------------------------------------------------
    def cell(self, key: str) -> Cell:
        return self.entries.get(key, ())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self.entries.get(key))

    def __len__(self) -> int:
        if self.narrow:
            return sum(1 for cell in self.entries.values() if cell)
        return len(self.entries)

    def is_bottom(self) -> bool:
        return self.ctx.is_empty() and not any(self.entries.values())

    def size(self) -> int:
        return len(self.entries) + self.ctx.size()

    # -- delta-mutators (subclasses name them after their commands) ---------------------
    def _put(self, key: str, old: Cell | None, new: Cell, keep_empty: bool) -> None:
        if self.touched is not None:
            self.touched.add(key)
        if new or keep_empty:
            self.entries[key] = new
        elif old is not None:
            del self.entries[key]
        if old != new and (old or new):
            self._changed(key, old or (), new)

    def _write(
        self, actor: str, ts: Timestamp, items: Iterable[tuple[str, Scalar]]
    ) -> tuple[Self, int]:
        """Write a base for each key (values already checked); returns (delta, keys added).

        A key named twice keeps its last value, as Redis's HSET does.
        """
        d_entries: dict[str, Cell] = {}
        d_dots: list[Dot] = []
        added = 0
        for key, value in items:
            old = self.entries.get(key)
            if not old:
                added += 1
            dot = self.ctx.next_dot(actor)
            new, dots = write(old or (), dot, ts, value)
            self.ctx.add(dot)
            self._put(key, old, new, False)
            d_entries[key] = new
            d_dots.extend(dots)
        return self._delta(d_entries, d_dots), added

    def _increment(
        self, actor: str, key: str, by: int | float, allow_infinite: bool
    ) -> tuple[Self, Number]:
        """Add ``by`` to ``key``'s number; returns (delta, new value).  Refused with
        ``NotNumeric`` or ``CounterOverflow`` before any change (``numeric.increment``)."""
        old = self.entries.get(key)
        dot = self.ctx.next_dot(actor)
        new, entry, dots, result = increment(old or (), dot, by, allow_infinite)
        if by == 0 and old:
            return type(self)(narrow=True), result  # changes nothing: the bottom delta
        self.ctx.add(dot)
        self._put(key, old, new, False)
        return self._delta({key: (entry,)}, dots), result

    def remove(self, keys: Iterable[str]) -> tuple[Self, int]:
        """Remove the observed entries of ``keys``; returns (delta, number removed)."""
        d_entries: dict[str, Cell] = {}
        d_dots: list[Dot] = []
        for key in keys:
            old = self.entries.get(key)
            if old:
                d_entries[key] = ()
                d_dots.extend(e.dot for e in old)
                self._put(key, old, (), False)
        return self._delta(d_entries, d_dots), len(d_entries)

    def clear(self) -> Self:
        """Remove every observed key (DEL); a concurrent write survives.  Returns the delta."""
        self.entries = {}
        self.touched = None
        self._rebuilt()
        return type(self)({}, self.ctx.copy(), narrow=False)

    def _delta(self, entries: dict[str, Cell], dots: list[Dot]) -> Self:
        return type(self)(entries, CausalContext(cloud=dots), narrow=True)

    # -- join ---------------------------------------------------------------------
    def merge(self, other: Self) -> None:
        mine, sctx, octx = self.entries, self.ctx, other.ctx
        was_narrow = self.narrow
        keep_empty = was_narrow and other.narrow
        for key, ocell in other.entries.items():
            scell = mine.get(key)
            keep = join_cells(scell or (), ocell, sctx, octx)
            if keep != scell or (keep_empty and scell is None):
                self._put(key, scell, keep, keep_empty)
        if not other.narrow and not octx.is_empty():
            for key in [k for k in mine if k not in other.entries]:
                scell = mine[key]
                keep = tuple(e for e in scell if e.dot not in octx)
                if len(keep) != len(scell):
                    self._put(key, scell, keep, False)
        if was_narrow and not keep_empty:
            # Only a narrow delta holds empty "touched" markers; a full state never does.
            for key in [k for k, cell in mine.items() if not cell]:
                del mine[key]
        sctx.merge(octx)
        self.narrow = keep_empty

    def copy(self) -> Self:
        # Cells are immutable tuples, so a shallow copy of the map is a full copy.
        return type(self)(dict(self.entries), self.ctx.copy(), self.narrow)

    def _live(self) -> dict[str, Cell]:
        return {k: c for k, c in self.entries.items() if c}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalMap) or type(other) is not type(self):
            return NotImplemented
        return self.ctx == other.ctx and self._live() == other._live()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.entries!r}, {self.ctx!r}, narrow={self.narrow})"

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        items = self.entries.items() if self.narrow else self._live().items()
        return [self.ctx.encode(), [[k, encode_cell(c)] for k, c in sorted(items)], self.narrow]

    @classmethod
    def decode(cls, payload: object) -> Self:
        kind = cls.KIND
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            raise CodecError(f"{kind}: expected [context, entries, narrow]")
        ctx_raw, entries_raw, narrow = payload
        if not isinstance(narrow, bool):
            raise CodecError(f"{kind}: narrow must be a bool")
        ctx = CausalContext.decode(ctx_raw)
        if not isinstance(entries_raw, list | tuple):
            raise CodecError(f"{kind}: entries must be a list")
        entries: dict[str, Cell] = {}
        seen: set[Dot] = set()
        for item in entries_raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise CodecError(f"{kind}: entry must be [key, cell]")
            key, cell_raw = item
            if not isinstance(key, str):
                raise CodecError(f"{kind}: keys must be strings")
            if key in entries:
                raise CodecError(f"{kind}: duplicate key")
            cell = decode_cell(cell_raw, ctx, cls.SCORES_ONLY)
            if not cell and not narrow:
                raise CodecError(f"{kind}: a full state lists only live keys")
            for e in cell:
                if e.dot in seen:
                    raise CodecError(f"{kind}: a dot held by two keys")
                seen.add(e.dot)
            entries[key] = cell
        return cls(entries, ctx, narrow)

"""Add-wins observed-remove set without tombstones (ORSWOT).

Conflict rule: a member is present when some dot that added it has not been
observed by a remove; a remove (or a clear) deletes only the dots it has
observed, so an add concurrent with a remove wins.

References: Bieniusa, Zawirski, Preguiça, Shapiro, Baquero, Balegas, Duarte,
"An optimized conflict-free replicated set" (arXiv 1210.3368, 2012) for the
tombstone-free design (riak_dt_orswot); Almeida, Shoker, Baquero, "Delta
State Replicated Data Types" (arXiv 1603.01529), the add-wins set with
causal context, for the delta-mutators.

State: ``entries`` maps a member to the dots that added it (a sorted tuple:
immutable and cheap for the garbage collector, usually one dot), and
``ctx`` is the per-key causal context of every dot ever observed for this
key.  Element dots are minted per key (``ctx.next_dot(actor)``), so in steady
state the context is one version-vector entry per writing replica.

Join of (E1, C1) and (E2, C2), per member:
    keep dots in E1 ∩ E2, dots of E1 not in C2, dots of E2 not in C1.

Deltas of add and remove are *narrow*: their context covers only dots of the
members they list (a removed member is listed with no dots), so joining a
narrow delta into a set of any size touches only the listed members.  A full
state, or a clear delta, is not narrow, and joining it scans every member.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Self

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_dot
from crdtkv.crdts.codec import register_type
from crdtkv.errors import CodecError

__all__ = ["ORSet"]


@register_type
class ORSet(CRDT):
    TYPE_TAG = "orset"
    FORMAT_VERSION = 1

    __slots__ = ("ctx", "entries", "narrow", "touched")

    def __init__(
        self,
        entries: dict[str, tuple[Dot, ...]] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        self.entries: dict[str, tuple[Dot, ...]] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        # True only for deltas whose context covers dots of listed members only.
        self.narrow = narrow
        # Persistence bookkeeping, not state, as ``CausalMap.touched``: the members
        # whose dots changed since storage last wrote their records (a superset is
        # harmless), or None for "any may have" (new, decoded, copied, cleared).
        self.touched: set[str] | None = None

    # -- reads ------------------------------------------------------------------
    def members(self) -> list[str]:
        return sorted(m for m, dots in self.entries.items() if dots)

    def contains(self, member: str) -> bool:
        return bool(self.entries.get(member))

    def __len__(self) -> int:
        if self.narrow:
            return sum(1 for dots in self.entries.values() if dots)
        return len(self.entries)

    def is_bottom(self) -> bool:
        return not self.ctx.vv and not self.ctx.cloud and not any(self.entries.values())

    def size(self) -> int:
        return len(self.entries) + self.ctx.size()

    # -- delta-mutators -----------------------------------------------------------
    def add(self, actor: str, members: Iterable[str]) -> tuple[ORSet, int]:
        """Add ``members`` as ``actor``; returns (delta, number newly present)."""
        seq = self.ctx.max_seq(actor)
        d_entries: dict[str, tuple[Dot, ...]] = {}
        d_dots: list[Dot] = []
        added = 0
        for m in members:
            if m in d_entries:
                continue
            seq += 1
            dot = (actor, seq)
            old = self.entries.get(m)
            if old:
                d_dots.extend(old)
            else:
                added += 1
            self.entries[m] = (dot,)
            self.ctx.add(dot)
            if self.touched is not None:
                self.touched.add(m)
            d_entries[m] = (dot,)
            d_dots.append(dot)
        return ORSet(d_entries, CausalContext(cloud=d_dots), narrow=True), added

    def remove(self, members: Iterable[str]) -> tuple[ORSet, int]:
        """Remove the observed dots of ``members``; returns (delta, number removed)."""
        d_entries: dict[str, tuple[Dot, ...]] = {}
        d_dots: list[Dot] = []
        for m in members:
            old = self.entries.pop(m, None)
            if old:
                if self.touched is not None:
                    self.touched.add(m)
                d_entries[m] = ()
                d_dots.extend(old)
        return ORSet(d_entries, CausalContext(cloud=d_dots), narrow=True), len(d_entries)

    def clear(self) -> ORSet:
        """Remove every observed member; a concurrent add survives.  Returns the delta."""
        self.entries = {}
        self.touched = None
        return ORSet({}, self.ctx.copy(), narrow=False)

    # -- join ---------------------------------------------------------------------
    def merge(self, other: ORSet) -> None:
        mine, sctx, octx = self.entries, self.ctx, other.ctx
        was_narrow = self.narrow
        keep_empty = was_narrow and other.narrow
        touched = self.touched
        if touched is not None:
            touched.update(other.entries)  # a superset of the members this join changes
        for m, odots in other.entries.items():
            sdots = mine.get(m)
            keep: tuple[Dot, ...]
            if sdots == odots:
                keep = odots
            elif sdots:
                both = {d for d in sdots if d in odots or not octx.contains(d)}
                both.update(d for d in odots if d not in sdots and not sctx.contains(d))
                keep = tuple(sorted(both))
            else:
                keep = tuple(d for d in odots if not sctx.contains(d))
            if keep or (keep_empty and m not in mine):
                mine[m] = keep
            elif sdots is not None:
                if keep_empty:
                    mine[m] = ()
                else:
                    del mine[m]
        if not other.narrow and not octx.is_empty():
            for m in [m for m in mine if m not in other.entries]:
                keep = tuple(d for d in mine[m] if not octx.contains(d))
                if touched is not None and len(keep) != len(mine[m]):
                    touched.add(m)
                if keep:
                    mine[m] = keep
                elif keep_empty:
                    mine[m] = ()
                else:
                    del mine[m]
        if was_narrow and not keep_empty:
            # Only a narrow delta holds empty "touched" markers; a full state never does.
            for m in [m for m, dots in mine.items() if not dots]:
                del mine[m]
        sctx.merge(octx)
        self.narrow = keep_empty

    def copy(self) -> Self:
        # Dot tuples are immutable, so a shallow copy of the map is a full copy.
        return type(self)(dict(self.entries), self.ctx.copy(), self.narrow)

    def _live(self) -> dict[str, tuple[Dot, ...]]:
        return {m: d for m, d in self.entries.items() if d}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ORSet):
            return NotImplemented
        return self.ctx == other.ctx and self._live() == other._live()

    def __repr__(self) -> str:
        return f"ORSet({self.entries!r}, {self.ctx!r}, narrow={self.narrow})"

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        items = self.entries.items() if self.narrow else self._live().items()
        return [
            self.ctx.encode(),
            [[m, [list(d) for d in dots]] for m, dots in sorted(items)],
            self.narrow,
        ]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            raise CodecError("set: expected [context, entries, narrow]")
        ctx_raw, entries_raw, narrow = payload
        if not isinstance(narrow, bool):
            raise CodecError("set: narrow must be a bool")
        ctx = CausalContext.decode(ctx_raw)
        if not isinstance(entries_raw, list | tuple):
            raise CodecError("set: entries must be a list")
        entries: dict[str, tuple[Dot, ...]] = {}
        for item in entries_raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise CodecError("set: entry must be [member, dots]")
            member, dots_raw = item
            if not isinstance(member, str):
                raise CodecError("set: members must be strings")
            if member in entries:
                raise CodecError("set: duplicate member")
            if not isinstance(dots_raw, list | tuple):
                raise CodecError("set: dots must be a list")
            dots = tuple(sorted({decode_dot(d) for d in dots_raw}))
            if len(dots) != len(dots_raw):
                raise CodecError("set: duplicate dot")
            if not dots and not narrow:
                raise CodecError("set: a full state lists only live members")
            for d in dots:
                if not ctx.contains(d):
                    raise CodecError("set: an element dot is outside the context")
            entries[member] = dots
        return cls(entries, ctx, narrow)

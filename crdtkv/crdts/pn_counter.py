"""PN-counter with observed reset.

Conflict rule: every replica's increments P and decrements N, and the reset
floors FP and FN recorded for them, are each joined by maximum; the value is
``sum(P - FP) - sum(N - FN)``, so a reset removes exactly the increments it
observed and any concurrent increment survives it.

References: Shapiro, Preguiça, Baquero, Zawirski, "A comprehensive study of
Convergent and Commutative Replicated Data Types" (INRIA RR-7506, 2011),
PN-Counter; the reset-as-floor construction follows the "resettable
counter" of Baquero, Almeida, Cunha, Ferreira, "Composition in State-based
Replicated Data Types" (Bulletin of the EATCS 123, 2017).

Within a replica a change whose result would leave the 64-bit signed range
is refused with ``CounterOverflow`` before any state changes.
"""

from __future__ import annotations

from typing import Self

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import decode_actor
from crdtkv.crdts.codec import register_type
from crdtkv.errors import CodecError, CounterOverflow

__all__ = ["INT64_MAX", "INT64_MIN", "PNCounter"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
# P and N only grow; they are stored as unsigned 64-bit integers on the wire.
_COMPONENT_MAX = 2**64 - 1

# One entry per replica: [P, N, FP, FN]
_Entry = list[int]


@register_type
class PNCounter(CRDT):
    TYPE_TAG = "ctr"
    FORMAT_VERSION = 1

    __slots__ = ("entries",)

    def __init__(self, entries: dict[str, _Entry] | None = None) -> None:
        self.entries: dict[str, _Entry] = entries if entries is not None else {}

    # -- reads ------------------------------------------------------------------
    def value(self) -> int:
        total = 0
        for p, n, fp, fn in self.entries.values():
            total += (p - fp) - (n - fn)
        return total

    def is_bottom(self) -> bool:
        return not self.entries

    def size(self) -> int:
        return len(self.entries)

    # -- delta-mutators -----------------------------------------------------------
    def incr(self, actor: str, by: int) -> PNCounter:
        """Add ``by`` (negative to decrement); returns the delta.

        Raises ``CounterOverflow`` (nothing changed) if the value would leave
        the int64 range.
        """
        if by == 0:
            return PNCounter()
        result = self.value() + by
        if not INT64_MIN <= result <= INT64_MAX:
            raise CounterOverflow(f"counter result {result} is outside the 64-bit signed range")
        entry = self.entries.get(actor)
        p, n, fp, fn = entry if entry is not None else (0, 0, 0, 0)
        if by > 0:
            p += by
        else:
            n -= by
        if p > _COMPONENT_MAX or n > _COMPONENT_MAX:
            raise CounterOverflow("counter component exhausted; reset the counter")
        new = [p, n, fp, fn]
        self.entries[actor] = new
        return PNCounter({actor: list(new)})

    def reset(self) -> PNCounter:
        """Observed reset: floors := what this replica has seen.  Returns the delta."""
        delta: dict[str, _Entry] = {}
        for actor, e in self.entries.items():
            if e[2] != e[0] or e[3] != e[1]:
                e[2], e[3] = e[0], e[1]
                delta[actor] = list(e)
        return PNCounter(delta)

    # -- join ---------------------------------------------------------------------
    def merge(self, other: PNCounter) -> None:
        mine = self.entries
        for actor, o in other.entries.items():
            e = mine.get(actor)
            if e is None:
                mine[actor] = list(o)
            else:
                if o[0] > e[0]:
                    e[0] = o[0]
                if o[1] > e[1]:
                    e[1] = o[1]
                if o[2] > e[2]:
                    e[2] = o[2]
                if o[3] > e[3]:
                    e[3] = o[3]

    def copy(self) -> Self:
        return type(self)({a: list(e) for a, e in self.entries.items()})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PNCounter):
            return NotImplemented
        return self.entries == other.entries

    def __repr__(self) -> str:
        return f"PNCounter({self.entries!r})"

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        return {a: list(e) for a, e in sorted(self.entries.items())}

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, dict):
            raise CodecError("counter: expected a map of actor -> [P, N, FP, FN]")
        entries: dict[str, _Entry] = {}
        for actor, e in payload.items():
            if not isinstance(e, list | tuple) or len(e) != 4:
                raise CodecError("counter: entry must be [P, N, FP, FN]")
            for v in e:
                if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _COMPONENT_MAX:
                    raise CodecError("counter: components must be unsigned 64-bit ints")
            if e[2] > e[0] or e[3] > e[1]:
                raise CodecError("counter: a reset floor exceeds its component")
            entries[decode_actor(actor)] = list(e)
        return cls(entries)

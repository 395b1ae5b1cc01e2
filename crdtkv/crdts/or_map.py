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
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import Number, Scalar, cell_value, check_scalar, float_step

__all__ = ["ORMap"]


@register_type
class ORMap(CausalMap):
    TYPE_TAG = "hash"
    FORMAT_VERSION = 1
    KIND = "hash"

    __slots__ = ()

    # -- reads ------------------------------------------------------------------
    def get(self, field: str) -> Scalar | None:
        """HGET: the field's value, or None when absent."""
        return cell_value(self.entries.get(field, ()))

    def fields(self) -> list[str]:
        """HKEYS, sorted (the same order on every replica)."""
        return sorted(k for k, cell in self.entries.items() if cell)

    def value(self) -> dict[str, Scalar]:
        """HGETALL, sorted by field."""
        out: dict[str, Scalar] = {}
        for field in self.fields():
            v = cell_value(self.entries[field])
            if v is not None:
                out[field] = v
        return out

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

"""Last-writer-wins register with optional expiry.

Conflict rule: of two writes the one with the larger hybrid-logical-clock
timestamp ``(wall_ms, logical, actor)`` wins whole (value, expiry and
tombstone flag together); timestamps are unique per replica, so replicas
agree on the winner without coordination.

References: Shapiro et al., "A comprehensive study of Convergent and
Commutative Replicated Data Types" (INRIA RR-7506, 2011), LWW-Register;
Kulkarni et al. 2014 for the clock.

A delete is a write of a tombstone.  A time-to-live becomes an absolute
``expires_ms`` carried inside the write, so the later write also decides the
expiry; a read at ``now_ms >= expires_ms`` sees the register as absent.  The
value is any JSON value and is never inspected, except to break the (never
expected) tie of two different writes with the same timestamp, so that the
join stays commutative even then.
"""

from __future__ import annotations

from typing import Any, Self

import msgpack

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.errors import CodecError

__all__ = ["LWWRegister"]


@register_type
class LWWRegister(CRDT):
    TYPE_TAG = "lww"
    FORMAT_VERSION = 1

    __slots__ = ("expires_ms", "tombstone", "ts", "val")

    def __init__(
        self,
        ts: Timestamp = ZERO,
        val: Any = None,
        expires_ms: int | None = None,
        tombstone: bool = False,
    ) -> None:
        self.ts = ts  # the winning write's timestamp; ZERO = never written
        self.val = val  # the JSON value (None when tombstone)
        self.expires_ms = expires_ms  # absolute expiry on the physical clock, or None
        self.tombstone = tombstone  # True when the winning write is a delete

    # -- reads ------------------------------------------------------------------
    def present(self, now_ms: int) -> bool:
        if self.ts == ZERO or self.tombstone:
            return False
        return self.expires_ms is None or now_ms < self.expires_ms

    def value(self, now_ms: int) -> Any:
        """The value, or ``None`` if absent (never written, deleted, expired)."""
        return self.val if self.present(now_ms) else None

    def is_bottom(self) -> bool:
        return self.ts == ZERO

    def size(self) -> int:
        return 0 if self.ts == ZERO else 1

    # -- delta-mutators -----------------------------------------------------------
    def assign(self, ts: Timestamp, val: Any, expires_ms: int | None = None) -> LWWRegister:
        """Write ``val`` at ``ts`` (a fresh HLC timestamp).  Returns the delta."""
        delta = LWWRegister(ts, val, expires_ms, False)
        self.merge(delta)
        return delta

    def delete(self, ts: Timestamp) -> LWWRegister:
        """Write a tombstone at ``ts``.  Returns the delta."""
        delta = LWWRegister(ts, None, None, True)
        self.merge(delta)
        return delta

    # -- join ---------------------------------------------------------------------
    def merge(self, other: LWWRegister) -> None:
        if other.ts > self.ts or (
            other.ts == self.ts and other.ts != ZERO and _tiebreak(other) > _tiebreak(self)
        ):
            self.ts, self.val = other.ts, other.val
            self.expires_ms, self.tombstone = other.expires_ms, other.tombstone

    def copy(self) -> Self:
        return type(self)(self.ts, self.val, self.expires_ms, self.tombstone)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWRegister):
            return NotImplemented
        return self.ts == other.ts and _tiebreak(self) == _tiebreak(other)

    def __repr__(self) -> str:
        return (
            f"LWWRegister(ts={tuple(self.ts)!r}, val={self.val!r}, "
            f"expires_ms={self.expires_ms!r}, tombstone={self.tombstone!r})"
        )

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        return [self.ts.encode(), self.val, self.expires_ms, self.tombstone]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 4:
            raise CodecError("register: expected [ts, value, expires_ms, tombstone]")
        ts_raw, val, expires_ms, tombstone = payload
        ts = Timestamp.decode(ts_raw)
        if expires_ms is not None and (
            not isinstance(expires_ms, int) or isinstance(expires_ms, bool) or expires_ms < 0
        ):
            raise CodecError("register: expires_ms must be a non-negative int or null")
        if not isinstance(tombstone, bool):
            raise CodecError("register: tombstone must be a bool")
        if tombstone and (val is not None or expires_ms is not None):
            raise CodecError("register: a tombstone carries no value or expiry")
        return cls(ts, val, expires_ms, tombstone)


def _tiebreak(reg: LWWRegister) -> bytes:
    """A total order on writes with equal timestamps (only reachable by misuse)."""
    return msgpack.packb([reg.tombstone, reg.expires_ms or 0, reg.val], use_bin_type=True)

"""Hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks
and Consistent Snapshots in Globally Distributed Databases", 2014).

A timestamp is ``(wall_ms, logical, actor)`` and timestamps are totally
ordered as tuples: wall time first, then the logical counter that breaks
ties within one millisecond, then the actor id so that two replicas can
never mint equal timestamps.  The clock never reads time itself: physical
time is an argument (``physical_ms``), so the simulator can skew it.

``max_offset_ms`` bounds how far a remote timestamp may be ahead of local
physical time; a timestamp further ahead is refused with
``ClockOffsetError`` rather than dragging this clock into the future.
"""

from __future__ import annotations

from typing import NamedTuple

from crdtkv.errors import ClockOffsetError, CodecError

__all__ = ["HLC", "ZERO", "Timestamp"]

LOGICAL_MAX = 2**31 - 1


class Timestamp(NamedTuple):
    wall_ms: int  # physical component, milliseconds since the Unix epoch
    logical: int  # tie-break counter within one wall_ms
    actor: str  # the minting replica: final tie-break, makes timestamps unique

    def encode(self) -> list[object]:
        return [self.wall_ms, self.logical, self.actor]

    @classmethod
    def decode(cls, data: object) -> Timestamp:
        if not isinstance(data, list | tuple) or len(data) != 3:
            raise CodecError("timestamp: expected [wall_ms, logical, actor]")
        wall, logical, actor = data
        for part in (wall, logical):
            if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part < 2**63:
                raise CodecError("timestamp: wall_ms and logical must be non-negative ints")
        if not isinstance(actor, str) or len(actor) > 128:
            raise CodecError("timestamp: actor must be a string")
        return cls(wall, logical, actor)


ZERO = Timestamp(0, 0, "")


class HLC:
    """One replica's hybrid logical clock.  Pure: time is passed in."""

    __slots__ = ("actor", "logical", "max_offset_ms", "wall_ms")

    def __init__(self, actor: str, max_offset_ms: int = 500, wall_ms: int = 0, logical: int = 0):
        if max_offset_ms < 0:
            raise ValueError("max_offset_ms must be >= 0")
        self.actor = actor
        self.max_offset_ms = max_offset_ms
        self.wall_ms = wall_ms
        self.logical = logical

    @property
    def last(self) -> Timestamp:
        return Timestamp(self.wall_ms, self.logical, self.actor)

    def now(self, physical_ms: int) -> Timestamp:
        """A new timestamp for a local event, greater than every one before."""
        if physical_ms > self.wall_ms:
            self.wall_ms, self.logical = physical_ms, 0
        else:
            self._tick()
        return Timestamp(self.wall_ms, self.logical, self.actor)

    def check(self, remote: Timestamp, physical_ms: int) -> None:
        """Raise ``ClockOffsetError`` if ``remote`` is too far in the future."""
        if remote.wall_ms - physical_ms > self.max_offset_ms:
            raise ClockOffsetError(
                f"remote timestamp is {remote.wall_ms - physical_ms} ms ahead of local "
                f"physical time (max offset {self.max_offset_ms} ms)"
            )

    def observe(self, remote: Timestamp, physical_ms: int) -> None:
        """Absorb a remote timestamp so later local events order after it."""
        self.check(remote, physical_ms)
        wall = max(self.wall_ms, remote.wall_ms, physical_ms)
        if wall == self.wall_ms == remote.wall_ms:
            self.logical = max(self.logical, remote.logical)
        elif wall == remote.wall_ms:
            self.wall_ms, self.logical = wall, remote.logical
        elif wall != self.wall_ms:
            self.wall_ms, self.logical = wall, 0

    def update(self, remote: Timestamp, physical_ms: int) -> Timestamp:
        """Receive event: absorb ``remote`` and return a timestamp after both."""
        self.observe(remote, physical_ms)
        self._tick()
        return Timestamp(self.wall_ms, self.logical, self.actor)

    def _tick(self) -> None:
        if self.logical >= LOGICAL_MAX:
            # The logical counter is bounded; borrow one millisecond instead of overflowing.
            self.wall_ms, self.logical = self.wall_ms + 1, 0
        else:
            self.logical += 1

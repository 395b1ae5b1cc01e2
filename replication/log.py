"""The in-memory view of a replica's durable delta log, for shipping.

Entries arrive here once they are durable (the node's group commit hands
them over), each with its encoded group so a message never re-encodes.  The
log is bounded in bytes (``bytes_max``): when it grows past the bound the
oldest entries are dropped, and a peer whose acknowledgement is below the
retained floor is caught up by a state sync instead.  It also forgets
entries every peer has acknowledged.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from crdtkv.crdts.causal import Dot

__all__ = ["DeltaLog", "ShippedEntry"]


@dataclass(frozen=True, slots=True)
class ShippedEntry:
    pos: int  # local log position
    origin: str  # who sent the group ("<peer id>~<incarnation>"); "" for local operations
    dot: Dot  # the group's replica-level dot
    blob: bytes  # MessagePack of the group ([dot, deltas]), as shipped on the wire
    at_ms: int  # when it became durable here (replication lag in seconds)


class DeltaLog:
    def __init__(self, bytes_max: int = 64 * 1024 * 1024, floor: int = 0) -> None:
        self.bytes_max = bytes_max  # retained bytes; beyond it peers need a state sync
        self.entries: deque[ShippedEntry] = deque()
        self.bytes = 0
        self.floor = floor  # every entry at or below this position is gone
        self.last_pos = floor  # highest position appended

    def append(self, entry: ShippedEntry) -> None:
        assert entry.pos > self.last_pos, "log positions must increase"
        self.entries.append(entry)
        self.bytes += len(entry.blob)
        self.last_pos = entry.pos
        while self.bytes > self.bytes_max and len(self.entries) > 1:
            self._pop()

    def truncate(self, upto: int) -> int:
        """Forget entries at or below ``upto``; returns how many were dropped."""
        n = 0
        while self.entries and self.entries[0].pos <= upto:
            self._pop()
            n += 1
        self.floor = max(self.floor, min(upto, self.last_pos))
        return n

    def _pop(self) -> None:
        e = self.entries.popleft()
        self.bytes -= len(e.blob)
        self.floor = e.pos

    def covers(self, after: int) -> bool:
        """Can every entry after ``after`` still be shipped from this log?"""
        return after >= self.floor

    def after(self, pos: int) -> Iterator[ShippedEntry]:
        """Entries with position > ``pos``, in order."""
        entries = self.entries
        if not entries or entries[-1].pos <= pos:
            return iter(())
        # Positions are dense except across truncation, so index arithmetic
        # finds the start without scanning the whole deque.
        start = max(0, min(len(entries) - 1, pos - entries[0].pos + 1))
        while start > 0 and entries[start - 1].pos > pos:
            start -= 1
        while start < len(entries) and entries[start].pos <= pos:
            start += 1
        return (entries[i] for i in range(start, len(entries)))

    def __len__(self) -> int:
        return len(self.entries)

"""An in-memory ``Storage`` that models durability, for the simulator and tests.

Every ``write`` appends its batch to an ordered history.  ``sync=True`` makes
that batch and every batch before it durable (fsync semantics: a sync covers
the whole prefix).  Reads see every written batch, synced or not.

``crash(keep_unsynced=k)`` models power loss: the durable prefix survives,
plus the first ``k`` unsynced batches (a prefix of them, never a hole: a
write-ahead log is replayed up to its first missing record), and the rest is
lost.  Afterwards the store is open and readable, as after a reopen.
``wipe()`` models a lost data directory.  ``close()`` models a clean shutdown:
like RocksDB's close, which flushes memtables to synced files, it makes
everything durable.

Deterministic: no time, no randomness; the caller chooses ``keep_unsynced``.
"""

from __future__ import annotations

from collections.abc import Iterator

from crdtkv.errors import StorageError
from crdtkv.storage.base import (
    COLUMN_FAMILIES,
    Delete,
    Op,
    Put,
    Storage,
    WriteBatch,
    check_bytes,
    check_cf,
)

__all__ = ["MemoryStorage"]

_Tables = dict[str, dict[bytes, bytes]]


def _empty() -> _Tables:
    return {cf: {} for cf in COLUMN_FAMILIES}


def _apply(tables: _Tables, ops: tuple[Op, ...]) -> None:
    for op in ops:
        table = tables[op.cf]
        if isinstance(op, Put):
            table[op.key] = op.value
        elif isinstance(op, Delete):
            table.pop(op.key, None)
        else:
            doomed = [k for k in table if op.start <= k < op.end]
            for k in doomed:
                del table[k]


class MemoryStorage(Storage):
    """A ``Storage`` in a dict, with a durable prefix and an unsynced suffix."""

    def __init__(self) -> None:
        self._durable: _Tables = _empty()  # the state after the synced batches
        self._live: _Tables = _empty()  # the state after all batches: what reads see
        self._unsynced: list[tuple[Op, ...]] = []  # batches after the last sync, in order
        self._closed = False
        self._epoch = 0  # bumped by close/crash/wipe: invalidates open iterators

    # -- Storage ---------------------------------------------------------------

    def write(self, batch: WriteBatch, *, sync: bool) -> None:
        self._check_open()
        batch.validate()
        ops = tuple(batch.ops)  # a snapshot: the caller may reuse its batch
        _apply(self._live, ops)
        self._unsynced.append(ops)
        if sync:
            self._make_durable()

    def get(self, cf: str, key: bytes) -> bytes | None:
        self._check_open()
        check_cf(cf)
        check_bytes("key", key)
        return self._live[cf].get(key)

    def items(
        self, cf: str, start: bytes = b"", end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        check_cf(cf)
        check_bytes("start", start)
        if end is not None:
            check_bytes("end", end)
        table = self._live[cf]
        view = sorted((k, v) for k, v in table.items() if start <= k and (end is None or k < end))
        return self._iterate(view, self._epoch)

    def close(self) -> None:
        if not self._closed:
            self._make_durable()
            self._closed = True
            self._epoch += 1

    # -- durability model ------------------------------------------------------

    @property
    def unsynced_batches(self) -> int:
        """How many batches a crash right now could lose."""
        return len(self._unsynced)

    def crash(self, keep_unsynced: int | None = None) -> None:
        """Power loss: keep the durable batches and the first ``keep_unsynced``
        (default 0) unsynced ones, drop the rest, and leave the store open
        and readable, as after a reopen.  The surviving batches are on disk
        and count as durable from now on."""
        keep = 0 if keep_unsynced is None else keep_unsynced
        if not 0 <= keep <= len(self._unsynced):
            raise ValueError(
                f"keep_unsynced must be in [0, {len(self._unsynced)}], got {keep_unsynced}"
            )
        for ops in self._unsynced[:keep]:
            _apply(self._durable, ops)
        self._unsynced.clear()
        self._live = {cf: dict(table) for cf, table in self._durable.items()}
        self._closed = False
        self._epoch += 1

    def wipe(self) -> None:
        """The data directory is lost: everything is gone; the store is open
        and empty, as a fresh directory would be."""
        self._durable = _empty()
        self._live = _empty()
        self._unsynced.clear()
        self._closed = False
        self._epoch += 1

    def reopen(self) -> None:
        """Open again after ``close()`` (a clean restart; nothing is lost)."""
        self._closed = False

    # -- internals -------------------------------------------------------------

    def _make_durable(self) -> None:
        for ops in self._unsynced:
            _apply(self._durable, ops)
        self._unsynced.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("memory storage is closed")

    def _iterate(
        self, view: list[tuple[bytes, bytes]], epoch: int
    ) -> Iterator[tuple[bytes, bytes]]:
        for pair in view:
            if epoch != self._epoch:
                raise StorageError("memory storage was closed during iteration")
            yield pair

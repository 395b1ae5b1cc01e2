"""The storage interface: a bytes-level, column-family key-value store.

The layer above encodes records; this layer only moves bytes.  A store has
four column families (``COLUMN_FAMILIES``):

- ``states``: key states,
- ``fields``: the per-field records of hashes, sorted sets and sets,
- ``log``: the delta log (sequence number -> delta group),
- ``meta``: metadata (replica id and incarnation, counters, HLC bound, acks).

All changes go through ``Storage.write`` with a ``WriteBatch``, which is
applied atomically (all of it or none of it) and in order.  ``sync=True``
makes the batch, and every batch written before it, durable against power
loss before ``write`` returns; ``sync=False`` survives a process crash only.

Two implementations: ``RocksStorage`` (RocksDB through rocksdict) and
``MemoryStorage`` (an in-memory fake that can lose its unsynced suffix).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from crdtkv.errors import StorageError

__all__ = [
    "COLUMN_FAMILIES",
    "Delete",
    "DeleteRange",
    "Op",
    "Put",
    "Storage",
    "StorageLockedError",
    "StorageOpenError",
    "WriteBatch",
    "check_bytes",
    "check_cf",
]

COLUMN_FAMILIES: tuple[str, ...] = ("states", "fields", "log", "meta")


class StorageLockedError(StorageError):
    """The data directory is already open, in this process or another one."""


class StorageOpenError(StorageError):
    """The data directory cannot be opened: missing, not a directory, no
    permission, or not a readable database."""


def check_cf(cf: str) -> None:
    """Raise ValueError unless ``cf`` names one of ``COLUMN_FAMILIES``."""
    if cf not in COLUMN_FAMILIES:
        raise ValueError(f"unknown column family {cf!r}; expected one of {COLUMN_FAMILIES}")


def check_bytes(what: str, value: object) -> None:
    """Raise TypeError unless ``value`` is ``bytes``."""
    if type(value) is not bytes:
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Put:
    cf: str
    key: bytes
    value: bytes

    def __post_init__(self) -> None:
        check_cf(self.cf)
        check_bytes("key", self.key)
        check_bytes("value", self.value)


@dataclass(frozen=True, slots=True)
class Delete:
    cf: str
    key: bytes

    def __post_init__(self) -> None:
        check_cf(self.cf)
        check_bytes("key", self.key)


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """Delete every key in ``[start, end)``; ``start == end`` deletes nothing."""

    cf: str
    start: bytes
    end: bytes

    def __post_init__(self) -> None:
        check_cf(self.cf)
        check_bytes("start", self.start)
        check_bytes("end", self.end)
        if self.start > self.end:
            raise ValueError(f"delete_range: start {self.start!r} is after end {self.end!r}")


Op = Put | Delete | DeleteRange


class WriteBatch:
    """An ordered list of operations, applied atomically by ``Storage.write``.

    Pure data: building a batch touches no storage.  Every operation is
    validated when it is added (unknown column family -> ValueError, a key or
    value that is not ``bytes`` -> TypeError), so a bad operation never gets
    into a batch.  Operations apply in order: a put followed by a
    ``delete_range`` that covers it leaves the key deleted.
    """

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def put(self, cf: str, key: bytes, value: bytes) -> None:
        self.ops.append(Put(cf, key, value))

    def delete(self, cf: str, key: bytes) -> None:
        self.ops.append(Delete(cf, key))

    def delete_range(self, cf: str, start: bytes, end: bytes) -> None:
        """Delete the keys in ``[start, end)`` (as of this point in the batch)."""
        self.ops.append(DeleteRange(cf, start, end))

    def __len__(self) -> int:
        return len(self.ops)

    def __repr__(self) -> str:
        return f"WriteBatch({self.ops!r})"

    def validate(self) -> None:
        """Raise TypeError if ``ops`` was given something that is not an
        operation (``ops`` is a plain list; ``write`` calls this first, so
        such a batch is refused before anything is written)."""
        for op in self.ops:
            if not isinstance(op, Put | Delete | DeleteRange):
                raise TypeError(f"not a storage operation: {op!r}")


class Storage(ABC):
    """A bytes-level store with the column families ``COLUMN_FAMILIES``.

    Every method raises ``StorageError`` once the store is closed, and
    ValueError for an unknown column family.
    """

    @abstractmethod
    def write(self, batch: WriteBatch, *, sync: bool) -> None:
        """Apply ``batch`` atomically: after a crash either all of it or none
        of it is there.  With ``sync=True`` the batch, and every batch before
        it, is durable against power loss when this returns; an empty batch
        with ``sync=True`` is a pure barrier that makes earlier batches
        durable."""

    @abstractmethod
    def get(self, cf: str, key: bytes) -> bytes | None:
        """The value of ``key`` in ``cf``, or None."""

    @abstractmethod
    def items(
        self, cf: str, start: bytes = b"", end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """The ``(key, value)`` pairs of ``cf`` with ``start <= key < end``
        (``end=None``: no upper bound) in ascending bytewise key order.

        The view is taken when ``items`` is called: writes made while the
        iterator is being consumed are not seen by it.  Closing the store
        invalidates the iterator (its next step raises ``StorageError``).
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and release the store.  Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

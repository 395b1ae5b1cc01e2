"""Bytes-level storage: the interface (``base``), RocksDB (``rocks``) and an
in-memory fake that models power loss (``memory``).

``RocksStorage`` is not imported here, so that code which only needs the
interface or the fake (the pure core, the simulator) never loads rocksdict;
import it from ``crdtkv.storage.rocks``.
"""

from crdtkv.storage.base import (
    COLUMN_FAMILIES,
    Delete,
    DeleteRange,
    Op,
    Put,
    Storage,
    StorageLockedError,
    StorageOpenError,
    WriteBatch,
)
from crdtkv.storage.memory import MemoryStorage

__all__ = [
    "COLUMN_FAMILIES",
    "Delete",
    "DeleteRange",
    "MemoryStorage",
    "Op",
    "Put",
    "Storage",
    "StorageLockedError",
    "StorageOpenError",
    "WriteBatch",
]

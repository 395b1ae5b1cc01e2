"""``Storage`` on RocksDB through rocksdict.

One RocksDB database per data directory, with one column family per entry
of ``COLUMN_FAMILIES`` (plus RocksDB's own ``default``, unused).  Keys and
values are raw bytes (rocksdict ``raw_mode``), so RocksDB orders keys
bytewise and the files hold exactly the bytes the layer above wrote.

Facts about rocksdict 0.3.29 this module relies on (found by experiment;
tests/storage/test_rocks.py pins each one that our code depends on):

- ``WriteOptions.sync`` is a plain attribute; the ``set_sync`` method that
  rocksdict's own ``WriteOptions`` docstring shows does not exist
  (AttributeError).  A synced write shows in the
  ``rocksdb.wal.synced`` statistics ticker and as one fdatasync.
- rocksdict raises plain ``Exception`` for RocksDB errors, e.g.
  ``IO error: While lock file: <dir>/LOCK: Resource temporarily
  unavailable`` (another process) or ``IO error: lock hold by current
  process ...`` (same process).
- A *failed* open of a locked directory still changes it: RocksDB rotates
  the info log (``LOG`` -> ``LOG.old.<ts>``) before it takes its lock, and
  rocksdict rewrites ``rocksdict-config.json``.  So we take our own lock,
  ``crdtkv.lock`` (flock, per open file), before RocksDB touches anything:
  a second opener, in this process or another, is refused with
  ``StorageLockedError`` and the directory is left as it was.
- ``Rdict.close()`` only closes the database once nothing else refers to
  it: a live column-family handle, column-family ``Rdict``, iterator or
  snapshot keeps it open (and locked).  ``close()`` therefore drops every
  one of those it handed out, including iterators still being consumed.
- ``ReadOptions.set_iterate_upper_bound`` is unsafe: the bound is not kept
  alive for the iterator, so a bound whose ``ReadOptions`` and bytes object
  are freed early makes the scan stop at a wrong key.  ``items`` checks the
  end bound itself.
"""

from __future__ import annotations

import fcntl
import os
import re
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from rocksdict import (
    BlockBasedOptions,
    Cache,
    ColumnFamily,
    DBCompressionType,
    DBRecoveryMode,
    Options,
    Rdict,
    WriteOptions,
)
from rocksdict import WriteBatch as RocksWriteBatch

from crdtkv.errors import StorageError
from crdtkv.storage.base import (
    COLUMN_FAMILIES,
    Delete,
    Put,
    Storage,
    StorageLockedError,
    StorageOpenError,
    WriteBatch,
    check_bytes,
    check_cf,
)

__all__ = ["LOCK_FILE", "RocksStorage"]

LOCK_FILE = "crdtkv.lock"

_MiB = 1024 * 1024
_TICKER = re.compile(r"^(\S+) COUNT : (\d+)$")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "/LOCK:" in text or "lock hold by current process" in text


# -- options -------------------------------------------------------------------
#
# The workload: many small values (CRDT states of a few bytes to a few KB), a
# delta log that is appended in sequence order and truncated from the front
# with range deletes, and a tiny metadata family.  Every write is a small
# batch (one group commit), usually synced.


def _table_options(cache: Cache) -> BlockBasedOptions:
    table = BlockBasedOptions()
    # One block cache shared by all column families, so memory is bounded in
    # one place rather than per family.
    table.set_block_cache(cache)
    # Point reads of key states: a 10 bits/key bloom filter (~1% false
    # positives) lets a get for an absent key skip the SST files' data blocks.
    table.set_bloom_filter(10, False)
    # Keep index and filter blocks in (and charged to) the block cache, and
    # the level-0 ones pinned, so memory stays bounded as the data grows
    # without making L0 lookups slower.
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    return table


def _cf_options(cf: str, cache: Cache) -> Options:
    opts = Options(raw_mode=True)  # column families need raw mode too
    opts.set_block_based_table_factory(_table_options(cache))
    # Small values compress well in blocks of many of them; LZ4 is cheap on
    # the write path, zstd on the bottom level (most of the data) saves space.
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_bottommost_compression_type(DBCompressionType.zstd())
    if cf == "meta":
        # A handful of keys: a small memtable is plenty.
        opts.set_write_buffer_size(4 * _MiB)
    else:
        # Bigger memtables than RocksDB's 64 MiB default: with small values a
        # memtable holds many versions of hot keys and log entries that a
        # later range delete truncates, so fewer of them reach level 0, and
        # fewer, larger flushes mean less write amplification.  Up to four
        # memtables absorb a burst while one is being flushed.
        opts.set_write_buffer_size(128 * _MiB)
        opts.set_max_write_buffer_number(4)
    return opts


def _db_options(*, create: bool, statistics: bool, cache: Cache) -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(create)
    # A new directory, or one written by an older version, gets the families
    # it lacks.
    opts.create_missing_column_families(True)
    # Bound the memory of all memtables together (3 families x 4 x 128 MiB
    # would otherwise be the ceiling); RocksDB flushes the largest when hit.
    opts.set_db_write_buffer_size(512 * _MiB)
    # A WAL file can only be deleted when every family with data in it has
    # been flushed.  The rarely written ``meta`` family would pin old WAL
    # files forever; capping the total WAL size forces it to flush.
    opts.set_max_total_wal_size(256 * _MiB)
    # After power loss, recover the longest consistent prefix of the WAL (the
    # RocksDB default, stated here because MemoryStorage.crash models exactly
    # this: a prefix of the unsynced batches survives, never a hole).
    opts.set_wal_recovery_mode(DBRecoveryMode.point_in_time())
    # Flushes and compactions in the background, off the write path.
    opts.set_max_background_jobs(4)
    # Write SST files back to disk in 1 MiB steps instead of one big fsync at
    # the end, so a flush does not stall the synced WAL writes behind it.
    opts.set_bytes_per_sync(1 * _MiB)
    # Keep RocksDB's own info log (LOG) from growing without bound.
    opts.set_max_log_file_size(16 * _MiB)
    opts.set_keep_log_file_num(5)
    opts.set_block_based_table_factory(_table_options(cache))
    if statistics:
        # Tickers such as rocksdb.wal.synced; costs a little CPU per write.
        opts.enable_statistics()
    return opts


# -- the lock ------------------------------------------------------------------


def _take_lock(path: Path) -> IO[bytes]:
    """Take ``path/LOCK_FILE`` with an exclusive, non-blocking flock.

    flock locks belong to an open file description, so a second handle in
    the same process conflicts just like another process; the kernel drops
    the lock when the holder exits, however it exits.
    """
    lock_path = path / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StorageOpenError(
            f"cannot open data directory {path}: {lock_path}: {exc.strerror}"
        ) from exc
    lock = os.fdopen(fd, "r+b", buffering=0)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock.read(32).decode("ascii", "replace").strip()
        lock.close()
        by = f" (held by pid {holder})" if holder.isdigit() else ""
        raise StorageLockedError(
            f"data directory {path} is in use by another process or handle{by}"
        ) from None
    except OSError as exc:
        lock.close()
        raise StorageOpenError(
            f"cannot open data directory {path}: cannot lock {lock_path}: {exc.strerror}"
        ) from exc
    # Ours now: record who holds it, for the message a second opener shows.
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n".encode())
    return lock


def _prepare_dir(path: Path, *, create: bool) -> None:
    """Make sure ``path`` is a directory we may open, without changing
    anything unless ``create`` is set and it is missing."""
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StorageOpenError(
                f"cannot open data directory {path}: it exists and is not a directory"
            ) from None
        except OSError as exc:
            raise StorageOpenError(f"cannot open data directory {path}: {exc.strerror}") from exc
    elif not path.exists():
        raise StorageOpenError(f"cannot open data directory {path}: it does not exist")
    if not path.is_dir():
        raise StorageOpenError(f"cannot open data directory {path}: not a directory")
    if not create and not (path / "CURRENT").is_file():
        raise StorageOpenError(f"cannot open data directory {path}: not a database (no CURRENT)")


# -- the store -----------------------------------------------------------------


class _Items(Iterator[tuple[bytes, bytes]]):
    """An iterator over ``[start, end)`` of one family that
    ``RocksStorage.close`` can cut loose from the database (a live rocksdict
    iterator keeps it open).

    The end bound is checked here, not with ``ReadOptions.
    set_iterate_upper_bound``: rocksdict does not keep the bound's bytes
    alive for the iterator's lifetime, so once the ``ReadOptions`` and the
    bound object are garbage the iterator reads freed memory and stops at a
    wrong key (seen: ``[b"a"]`` instead of ``[b"a", b"aa", b"ab", b"b"]``).
    """

    __slots__ = ("__weakref__", "_done", "_end", "_items", "_path")

    def __init__(self, items: Iterator[tuple[Any, Any]], end: bytes | None, path: Path) -> None:
        # rocksdict's RdictItems (not importable): raw mode yields bytes pairs.
        self._items: Iterator[tuple[Any, Any]] | None = items
        self._end = end
        self._path = path
        self._done = False

    def __next__(self) -> tuple[bytes, bytes]:
        items = self._items
        if items is None:
            if self._done:
                raise StopIteration
            raise StorageError(f"data directory {self._path} was closed during iteration")
        try:
            key, value = next(items)
        except StopIteration:
            self._finish()
            raise
        except Exception as exc:
            raise StorageError(f"read failed in {self._path}: {_one_line(exc)}") from exc
        if self._end is not None and key >= self._end:
            self._finish()
            raise StopIteration
        return key, value

    def _finish(self) -> None:
        self._items = None  # release the RocksDB iterator now
        self._done = True

    def _invalidate(self) -> None:
        self._items = None


class RocksStorage(Storage):
    """A ``Storage`` in a RocksDB data directory.

    ``create=False`` refuses a directory that is not already a database.
    ``statistics=True`` enables RocksDB statistics (see ``statistics()``).
    Raises ``StorageLockedError`` if the directory is open elsewhere, and
    ``StorageOpenError`` if it cannot be opened at all.
    """

    def __init__(self, path: str | Path, *, create: bool = True, statistics: bool = False) -> None:
        self._path = Path(os.path.abspath(path))
        self._closed = True
        _prepare_dir(self._path, create=create)
        self._lock: IO[bytes] | None = _take_lock(self._path)
        try:
            self._cache = Cache(64 * _MiB)
            self._options = _db_options(create=create, statistics=statistics, cache=self._cache)
            families = {cf: _cf_options(cf, self._cache) for cf in COLUMN_FAMILIES}
            # RocksDB refuses to open a database without all its families:
            # open any a later version added too, with default options.
            if (self._path / "CURRENT").is_file():
                for name in Rdict.list_cf(str(self._path), Options(raw_mode=True)):
                    if name != "default" and name not in families:
                        families[name] = Options(raw_mode=True)
            db = Rdict(str(self._path), self._options, column_families=families)
        except Exception as exc:
            self._release_lock()
            if _is_lock_error(exc):
                raise StorageLockedError(
                    f"data directory {self._path} is in use by another process ({_one_line(exc)})"
                ) from exc
            raise StorageOpenError(
                f"cannot open data directory {self._path}: {_one_line(exc)}"
            ) from exc
        self._db: Rdict | None = db
        self._handles: dict[str, ColumnFamily] = {
            cf: db.get_column_family_handle(cf) for cf in COLUMN_FAMILIES
        }
        self._families: dict[str, Rdict] = {cf: db.get_column_family(cf) for cf in COLUMN_FAMILIES}
        self._sync = WriteOptions()
        self._sync.sync = True
        self._nosync = WriteOptions()
        self._nosync.sync = False
        self._iterators: weakref.WeakSet[_Items] = weakref.WeakSet()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"RocksStorage({str(self._path)!r}{', closed' if self._closed else ''})"

    # -- Storage ---------------------------------------------------------------

    def write(self, batch: WriteBatch, *, sync: bool) -> None:
        db = self._open_db()
        batch.validate()
        try:
            if not batch.ops:
                if sync:
                    db.flush_wal(True)  # a pure barrier: sync what is in the WAL
                return
            rb = RocksWriteBatch(raw_mode=True)
            handles = self._handles
            for op in batch.ops:
                if isinstance(op, Put):
                    rb.put(op.key, op.value, handles[op.cf])
                elif isinstance(op, Delete):
                    rb.delete(op.key, handles[op.cf])
                else:
                    rb.delete_range(op.start, op.end, handles[op.cf])
            db.write(rb, self._sync if sync else self._nosync)
        except Exception as exc:
            raise StorageError(f"write failed in {self._path}: {_one_line(exc)}") from exc

    def get(self, cf: str, key: bytes) -> bytes | None:
        self._open_db()
        check_cf(cf)
        check_bytes("key", key)
        try:
            value = self._families[cf].get(key)
        except Exception as exc:
            raise StorageError(f"read failed in {self._path}: {_one_line(exc)}") from exc
        assert value is None or type(value) is bytes
        return value

    def items(
        self, cf: str, start: bytes = b"", end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        self._open_db()
        check_cf(cf)
        check_bytes("start", start)
        if end is not None:
            check_bytes("end", end)
        if end is not None and end <= start:
            return iter(())
        try:
            raw = self._families[cf].items(from_key=start or None)
        except Exception as exc:
            raise StorageError(f"read failed in {self._path}: {_one_line(exc)}") from exc
        it = _Items(raw, end, self._path)
        self._iterators.add(it)
        return it

    def close(self) -> None:
        """Sync the WAL, flush the memtables, close RocksDB and release the
        directory.  Iterators still open on it are invalidated."""
        if self._closed:
            return
        self._closed = True
        db = self._db
        try:
            if db is not None:
                try:
                    db.flush_wal(True)
                    for family in self._families.values():
                        family.flush(True)
                finally:
                    # Drop everything that keeps the database alive, then close.
                    for it in list(self._iterators):
                        it._invalidate()
                    self._iterators.clear()
                    self._handles.clear()
                    for family in self._families.values():
                        family.close()
                    self._families.clear()
                    self._db = None
                    db.close()
        except Exception as exc:
            raise StorageError(f"close failed in {self._path}: {_one_line(exc)}") from exc
        finally:
            self._release_lock()

    # -- RocksDB specifics -----------------------------------------------------

    def statistics(self) -> dict[str, int]:
        """RocksDB's ticker counters (``rocksdb.wal.synced``,
        ``rocksdb.wal.bytes``, ...); empty unless opened with
        ``statistics=True``."""
        self._open_db()
        text = self._options.get_statistics() or ""
        tickers: dict[str, int] = {}
        for line in text.splitlines():
            m = _TICKER.match(line)
            if m:
                tickers[m.group(1)] = int(m.group(2))
        return tickers

    # -- internals -------------------------------------------------------------

    def _open_db(self) -> Rdict:
        db = self._db
        if self._closed or db is None:
            raise StorageError(f"data directory {self._path} is closed")
        return db

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the only descriptor drops the flock

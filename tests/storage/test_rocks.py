"""RocksStorage's own behaviour, on a real RocksDB in tmp_path.

The Storage interface it shares with MemoryStorage is tested in
test_contract.py (including a random comparison of the two).  Here: what only
a real database has: batches that survive ``kill -9`` whole or not at all,
the sync flag reaching RocksDB's WAL (its statistics, and ``fdatasync``
under strace), the directory lock against other handles and processes, and
one-line errors for a directory that cannot be opened.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import rocksdict

from crdtkv.errors import StorageError
from crdtkv.storage import (
    COLUMN_FAMILIES,
    StorageLockedError,
    StorageOpenError,
    WriteBatch,
)
from crdtkv.storage.rocks import LOCK_FILE, RocksStorage
from tests.procs import kill9, python_cmd, run, spawn, wait_line
from tests.storage.support import dump


def fingerprint(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, mtime and content hash: any change shows."""
    out = {}
    for p in sorted(directory.iterdir()):
        data = p.read_bytes()
        st_ = p.stat()
        out[p.name] = (st_.st_size, st_.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` with crdtkv importable, stdin/stdout/stderr piped."""
    return spawn(python_cmd(code, *args), stdin=True)


def wait_ready(proc: subprocess.Popen[str]) -> None:
    """The child printed its "ready" line (it holds the database from then on)."""
    wait_line(proc, "ready", what="the child")


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(db_dir: Path) -> Iterator[RocksStorage]:
    s = RocksStorage(db_dir)
    yield s
    s.close()


def test_items_bounds_that_are_garbage_collected_early(store: RocksStorage) -> None:
    # Regression: rocksdict's ReadOptions.set_iterate_upper_bound does not keep
    # the bound alive; with a bound computed at the call (so freed right after
    # it) the scan stopped at a wrong key.  Bounds must work whatever their
    # lifetime, so build them at run time and churn memory before consuming.
    b = WriteBatch()
    for i in range(200):
        b.put("log", b"k%03d" % i, b"v")
    store.write(b, sync=False)
    prefix = b"k"
    for lo, hi in [(10, 50), (0, 199), (150, 151), (42, 100)]:
        it = store.items("log", prefix + b"%03d" % lo, prefix + b"%03d" % hi)
        churn = [os.urandom(8) for _ in range(5000)]
        assert [k for k, _ in it] == [b"k%03d" % i for i in range(lo, hi)]
        del churn


WRITER = """
    import sys
    from crdtkv.storage import WriteBatch
    from crdtkv.storage.rocks import RocksStorage
    store = RocksStorage(sys.argv[1])
    n = 0
    while True:
        b = WriteBatch()
        for i in range(100):  # one batch: 100 puts across all families
            cf = ("states", "log", "meta")[i % 3]
            b.put(cf, b"%08d/%03d" % (n, i), b"x" * 50)
        store.write(b, sync=False)
        n += 1
        if n == 20:
            print("ready", flush=True)
"""


def test_batches_are_all_or_nothing_when_the_process_is_killed(db_dir: Path) -> None:
    proc = python(WRITER, str(db_dir))
    wait_ready(proc)
    kill9(proc)  # mid-stream: some batch is likely in flight
    with RocksStorage(db_dir, create=False) as store:
        per_batch: dict[int, int] = {}
        for cf in COLUMN_FAMILIES:
            for key, _ in store.items(cf):
                n = int(key.split(b"/")[0])
                per_batch[n] = per_batch.get(n, 0) + 1
    assert len(per_batch) >= 20
    assert all(count == 100 for count in per_batch.values()), "a batch was torn"
    assert sorted(per_batch) == list(range(len(per_batch))), "recovered batches are not a prefix"


def test_unsynced_write_survives_process_exit_without_close(db_dir: Path) -> None:
    proc = python(
        """
        import os, sys
        from crdtkv.storage import WriteBatch
        from crdtkv.storage.rocks import RocksStorage
        store = RocksStorage(sys.argv[1])
        b = WriteBatch()
        b.put("states", b"k", b"v")
        store.write(b, sync=False)
        os._exit(0)  # no close, no flush: only the WAL has it
        """,
        str(db_dir),
    )
    proc.communicate(timeout=60)
    assert proc.returncode == 0
    with RocksStorage(db_dir, create=False) as store:
        assert store.get("states", b"k") == b"v"


def test_close_releases_the_directory_even_with_a_live_iterator(db_dir: Path) -> None:
    # A live rocksdict iterator (or column-family handle) keeps RocksDB open
    # after Rdict.close(); RocksStorage.close must cut it loose.
    store = RocksStorage(db_dir)
    b = WriteBatch()
    b.put("states", b"a", b"1")
    b.put("states", b"b", b"2")
    store.write(b, sync=False)
    it = store.items("states")
    assert next(it) == (b"a", b"1")
    store.close()
    with pytest.raises(StorageError, match="closed during iteration"):
        next(it)
    with RocksStorage(db_dir, create=False) as again:
        assert again.get("states", b"b") == b"2"


# -- sync reaches RocksDB ---------------------------------------------------------------


def test_sync_flag_reaches_rocksdb(db_dir: Path) -> None:
    """rocksdb.wal.synced counts WAL syncs: it must move with sync=True only."""
    n = 25
    with RocksStorage(db_dir, statistics=True) as store:

        def tickers() -> tuple[int, int]:
            t = store.statistics()
            return t["rocksdb.wal.synced"], t["rocksdb.wal.bytes"]

        synced0, bytes0 = tickers()
        for i in range(n):
            b = WriteBatch()
            b.put("log", b"%d" % i, b"v")
            store.write(b, sync=False)
        synced1, bytes1 = tickers()
        assert bytes1 > bytes0  # the writes did go through the WAL ...
        assert synced1 == synced0  # ... without a sync
        for i in range(n):
            b = WriteBatch()
            b.put("log", b"%d" % i, b"v")
            store.write(b, sync=True)
        synced2, _ = tickers()
        assert synced2 - synced1 == n  # one WAL sync per synced batch
        store.write(WriteBatch(), sync=False)  # empty: nothing at all
        assert tickers()[0] == synced2
        store.write(WriteBatch(), sync=True)  # empty: a barrier
        assert tickers()[0] == synced2 + 1


def test_rocksdict_write_options_sync_is_an_attribute() -> None:
    # rocksdict's WriteOptions docstring shows write_options.set_sync(...):
    # there is no such method; ``sync`` is a property.
    opts = rocksdict.WriteOptions()
    assert opts.sync is False
    opts.sync = True
    assert opts.sync is True
    assert not hasattr(opts, "set_sync")


def test_statistics_are_empty_unless_enabled(store: RocksStorage) -> None:
    assert store.statistics() == {}


STRACED = """
    import os, sys
    from crdtkv.storage import WriteBatch
    from crdtkv.storage.rocks import RocksStorage
    store = RocksStorage(sys.argv[1])
    sync = sys.argv[2] == "1"
    os.access("/crdtkv-mark-start", os.F_OK)
    for i in range(40):
        b = WriteBatch()
        b.put("log", b"%d" % i, b"v")
        store.write(b, sync=sync)
    os.access("/crdtkv-mark-end", os.F_OK)
    store.close()
"""


def _syncs_between_marks(trace: str) -> int:
    count, inside = 0, False
    for line in trace.splitlines():
        if "crdtkv-mark-start" in line:
            inside = True
        elif "crdtkv-mark-end" in line:
            inside = False
        elif inside and ("fdatasync(" in line or "fsync(" in line):
            count += 1
    return count


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_sync_flag_reaches_the_disk_as_fdatasync(tmp_path: Path) -> None:
    counts = {}
    for sync in ("0", "1"):
        out = tmp_path / f"trace{sync}"
        cmd = python_cmd(STRACED, str(tmp_path / f"db{sync}"), sync)
        trace = ["strace", "-f", "-qq", "-o", str(out), "-e", "trace=fsync,fdatasync,access"]
        done = run([*trace, *cmd])
        if done.returncode != 0 and "ptrace" in done.stderr:
            pytest.skip(f"strace cannot trace here: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        counts[sync] = _syncs_between_marks(out.read_text())
    assert counts["1"] >= 40, counts
    assert counts["0"] <= 2, counts


# -- locking ------------------------------------------------------------------------------


def test_second_handle_in_the_same_process_is_refused(db_dir: Path) -> None:
    store = RocksStorage(db_dir)
    b = WriteBatch()
    b.put("states", b"a", b"1")
    store.write(b, sync=True)
    before = fingerprint(db_dir)
    with pytest.raises(StorageLockedError) as info:
        RocksStorage(db_dir)
    message = str(info.value)
    assert str(db_dir) in message and "\n" not in message
    assert f"pid {os.getpid()}" in message
    assert fingerprint(db_dir) == before  # the failed open changed nothing
    assert store.get("states", b"a") == b"1"  # and the first handle still works
    store.close()
    with RocksStorage(db_dir) as again:
        assert again.get("states", b"a") == b"1"


HOLDER = """
    import sys
    from crdtkv.storage.rocks import RocksStorage
    store = RocksStorage(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    store.close()
    print("closed", flush=True)
"""


def _holder(db_dir: Path) -> subprocess.Popen[str]:
    proc = python(HOLDER, str(db_dir))
    wait_ready(proc)
    return proc


def test_directory_held_by_another_process_is_refused(db_dir: Path) -> None:
    with RocksStorage(db_dir) as store:  # give it some content first
        b = WriteBatch()
        b.put("states", b"a", b"1")
        store.write(b, sync=True)
    proc = _holder(db_dir)
    try:
        before = fingerprint(db_dir)
        with pytest.raises(StorageLockedError) as info:
            RocksStorage(db_dir)
        assert str(db_dir) in str(info.value)
        assert f"pid {proc.pid}" in str(info.value)
        assert fingerprint(db_dir) == before
    finally:
        out, err = proc.communicate("\n", timeout=60)
    assert out == "closed\n", err
    with RocksStorage(db_dir, create=False) as store:
        assert store.get("states", b"a") == b"1"


def test_other_process_is_refused_while_we_hold_the_directory(db_dir: Path) -> None:
    with RocksStorage(db_dir):
        proc = python(
            """
            import sys
            from crdtkv.storage.rocks import RocksStorage
            try:
                RocksStorage(sys.argv[1])
            except Exception as e:
                print(type(e).__name__, e)
            """,
            str(db_dir),
        )
        out, err = proc.communicate(timeout=60)
    assert out.startswith("StorageLockedError data directory"), out + err


def test_lock_of_a_killed_process_is_released(db_dir: Path) -> None:
    proc = _holder(db_dir)
    kill9(proc)
    with RocksStorage(db_dir) as store:
        assert dump(store) == {cf: {} for cf in COLUMN_FAMILIES}


def test_rocksdb_lock_held_without_our_lock_file_is_still_locked_error(db_dir: Path) -> None:
    # Someone opened the database with rocksdict directly (an admin tool):
    # our lock file is free, but RocksDB's own LOCK refuses us.
    with RocksStorage(db_dir):
        pass
    opts = rocksdict.Options(raw_mode=True)
    raw = rocksdict.Rdict(
        str(db_dir),
        opts,
        column_families={cf: rocksdict.Options(raw_mode=True) for cf in COLUMN_FAMILIES},
    )
    try:
        with pytest.raises(StorageLockedError, match="in use"):
            RocksStorage(db_dir)
    finally:
        raw.close()
    with RocksStorage(db_dir):
        pass


def test_lock_file_lives_in_the_data_directory(store: RocksStorage, db_dir: Path) -> None:
    assert (db_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"


# -- open errors ---------------------------------------------------------------------------


def _assert_open_error(path: Path, **kwargs: bool) -> str:
    with pytest.raises(StorageOpenError) as info:
        RocksStorage(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, StorageError) and info.value.status == 500
    return message


@pytest.mark.parametrize("create", [True, False])
def test_regular_file_in_the_way(tmp_path: Path, create: bool) -> None:
    f = tmp_path / "data"
    f.write_bytes(b"not a database")
    assert "not a directory" in _assert_open_error(f, create=create)
    assert f.read_bytes() == b"not a database"


def test_parent_is_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    _assert_open_error(tmp_path / "file" / "data")


def test_missing_directory_without_create(tmp_path: Path) -> None:
    assert "does not exist" in _assert_open_error(tmp_path / "data", create=False)
    assert not (tmp_path / "data").exists()


def test_empty_directory_without_create_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    assert "not a database" in _assert_open_error(tmp_path / "data", create=False)
    assert list((tmp_path / "data").iterdir()) == []  # untouched: no lock file either


def test_corrupt_database(db_dir: Path) -> None:
    with RocksStorage(db_dir) as store:
        b = WriteBatch()
        b.put("states", b"a", b"1")
        store.write(b, sync=True)
    (db_dir / "CURRENT").write_text("garbage\n")
    assert "Corruption" in _assert_open_error(db_dir)
    # The failed open released our lock: a repaired directory opens.
    (db_dir / "CURRENT").unlink()
    manifest = next(p.name for p in db_dir.iterdir() if p.name.startswith("MANIFEST-"))
    (db_dir / "CURRENT").write_text(manifest + "\n")
    with RocksStorage(db_dir) as store:
        assert store.get("states", b"a") == b"1"

"""Storage format 1 -> 2 (``crdtkv.replica.migrate``, ``persist.migrate_format_1``) on
real RocksDB: a format-1 directory written record by record with format 1's own
encodings (``tests/storage/format1.py``) is opened by this build.

- every format-1 type reads back through the replica as it did, and keeps
  working (a counter of 5 plus 1 is 6); deleted and expired registers stay
  absent; the log after the checkpoint is replayed first; names held in
  several namespaces read as one type;
- the directory is format 2 afterwards (log cleared, peers to resync, applied
  context and log positions carried on) and reopens without migrating again;
- any other format (3, garbage, 0 with data) is refused with a message naming
  the format found, the one this build reads and what to do, and nothing
  is written;
- crash safety: a failed write leaves format 1 as it was; a ``kill -9`` at a
  random point of a migration leaves format 1 as it was or format 2 complete;
- the conversion is deterministic and joins sensibly across replicas that
  held different views of a key (the cases ``migrate``'s docstring states).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from crdtkv.crdts import HLL, KeyMeta, NumericRegister
from crdtkv.crdts.hlc import Timestamp
from crdtkv.errors import CodecError, CrdtkvError, NotFound, StorageError
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.replica import migrate as mig
from crdtkv.replica import records as rec
from crdtkv.replica.persist import DataDirMismatch, load_replica, migrate_format_1
from crdtkv.storage import DeleteRange, Put, WriteBatch
from crdtkv.storage.rocks import RocksStorage
from crdtkv.versions import RELEASE
from tests.procs import (
    crdtkv_cmd,
    exited,
    free_port,
    http,
    kill9,
    proc_group,
    python_cmd,
    spawn,
    wait_healthy,
    wait_line,
)
from tests.storage import format1 as f1
from tests.storage.format1 import NOW_MS, A, B
from tests.storage.support import dump

Dump = dict[str, dict[bytes, bytes]]


def write_dir(path: Path, d: f1.Format1Dir) -> Dump:
    with RocksStorage(path) as s:
        d.write(s)
        return dump(s)


def read_dump(path: Path) -> Dump:
    with RocksStorage(path, create=False) as s:
        return dump(s)


def op(r: Replica, name: str, **args: Any) -> Any:
    return apply_op(r, {"op": name, **args}, NOW_MS)


def absent(r: Replica, name: str, **args: Any) -> bool:
    try:
        op(r, name, **args)
    except NotFound:
        return True
    return False


@pytest.fixture
def migrated(tmp_path: Path) -> Any:
    path = tmp_path / "d"
    write_dir(path, f1.sample())
    storage = RocksStorage(path)
    try:
        yield storage, load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
    finally:
        storage.close()


# -- values through the replica --------------------------------------------------------------------


def test_registers_keep_their_values_and_ttl(migrated: Any) -> None:
    _, r = migrated
    assert op(r, "registers.get", key="greeting") == {"value": "hello"}
    assert op(r, "registers.get", key="doc") == {"value": {"a": [1, 2], "b": None}}
    assert op(r, "keys.ttl", key="session") == {"ttl_ms": 3_600_000}
    assert op(r, "keys.ttl", key="greeting") == {"ttl_ms": -1}
    # a deleted register and one whose TTL had passed stay absent
    assert absent(r, "registers.get", key="gone") and absent(r, "registers.get", key="stale")
    assert (
        op(r, "keys.exists", key="gone") == op(r, "keys.exists", key="stale") == {"exists": False}
    )
    # the session still expires when its TTL passes
    later = NOW_MS + 3_600_000
    assert apply_op(r, {"op": "keys.ttl", "key": "session"}, later) == {"ttl_ms": -2}
    # and the register view keeps writing
    op(r, "registers.set", key="greeting", value="hi")
    assert op(r, "registers.get", key="greeting") == {"value": "hi"}


def test_counters_keep_their_values_and_count_on(migrated: Any) -> None:
    _, r = migrated
    assert op(r, "counters.get", key="hits") == {"value": 5}
    assert op(r, "counters.incr", key="hits", delta=1) == {"value": 6}
    assert op(r, "counters.get", key="hits") == {"value": 6}
    assert op(r, "counters.get", key="neg") == {"value": -5}
    assert op(r, "counters.decr", key="neg", delta=2) == {"value": -7}
    # (12 - 10) - 1 from A, 4 from B: the reset increments stay reset
    assert op(r, "counters.get", key="reset") == {"value": 5}
    assert op(r, "counters.incr", key="reset", delta=10) == {"value": 15}
    # every increment reset: absent, as in format 1; a new INCR starts from 0
    assert absent(r, "counters.get", key="zeroed")
    assert op(r, "counters.incr", key="zeroed", delta=3) == {"value": 3}
    # a SET resets the migrated increments too
    op(r, "registers.set", key="hits", value=100)
    assert op(r, "counters.incr", key="hits", delta=1) == {"value": 101}


def test_sets_and_hlls_are_carried_as_they_were(migrated: Any) -> None:
    _, r = migrated
    assert op(r, "sets.get", key="fruits") == {"members": ["apple", "kiwi", "pear"], "size": 3}
    assert op(r, "sets.remove", key="fruits", members=["apple"]) == {"removed": 1}
    # banana was removed in format 1: its dot stays covered, so it cannot come back
    s = r.states[("set", "fruits")]
    assert ("r1~inc1", 2) in s.ctx  # type: ignore[attr-defined]
    expected = HLL()
    expected.add(f1.HLL_ITEMS)
    assert op(r, "hlls.count", key="visitors") == {"count": expected.count()} == {"count": 5}
    assert op(r, "hlls.add", key="visitors", items=["alan"]) == {"changed": True}


def test_the_log_after_the_checkpoint_is_replayed_before_converting(migrated: Any) -> None:
    _, r = migrated
    assert op(r, "registers.get", key="fromlog") == {"value": "logged"}
    assert op(r, "counters.get", key="logctr") == {"value": 7}
    assert "kiwi" in op(r, "sets.get", key="fruits")["members"]
    # the replayed entries' dots are applied; the ones before the checkpoint were
    assert r.applied.vv == {A: 12, B: 6}
    # log positions go on after the old log's last one
    assert r.log_pos == 6
    op(r, "counters.incr", key="hits", delta=1)
    assert [e.pos for e in r.take_pending()] == [7]


def test_names_in_several_namespaces_read_as_one_type(migrated: Any) -> None:
    _, r = migrated
    # register 10 + counter 5 under one name: one string, 15 (as a SET and a
    # concurrent INCR); the set of the same name is kept but hidden
    assert op(r, "keys.type", key="both") == {"type": "string"}
    assert op(r, "registers.get", key="both") == {"value": 15}
    assert op(r, "counters.get", key="both") == {"value": 15}
    assert ("set", "both") in r.states
    # no register: the type names decide (set > hll)
    assert op(r, "keys.type", key="dup") == {"type": "set"}
    for name in ("both", "dup"):
        assert op(r, "keys.delete", key=name) == {"deleted": True}
        assert op(r, "keys.exists", key=name) == {"exists": False}


# -- what is on disk afterwards --------------------------------------------------------------------


def _meta(storage: RocksStorage, key: bytes) -> Any:
    raw = storage.get("meta", key)
    return None if raw is None else msgpack.unpackb(raw, raw=False, strict_map_key=False)


def test_the_directory_is_format_2_afterwards(tmp_path: Path) -> None:
    path = tmp_path / "d"
    before = write_dir(path, f1.sample())
    with RocksStorage(path) as storage:
        m = migrate_format_1(storage, NOW_MS)
        assert _meta(storage, rec.META_FORMAT) == 2
        assert list(storage.items("log")) == []
        keys = [rec.decode_state_key(k) for k, _ in storage.items("states")]
        assert {t for t, _ in keys} == {"string", "set", "hll", "meta"}
        assert len(keys) == sum(m.counts().values()) == 28
        assert _meta(storage, rec.META_PEERS) == {"r2": [-1, "inc2"]}  # resync pending
        assert _meta(storage, rec.META_CHECKPOINT_POS) == 6
        assert _meta(storage, rec.META_APPLIED) == [{A: 12, B: 6}, []]
        assert _meta(storage, rec.META_HLC) >= NOW_MS - 60_000 + 1  # fromlog's write
        # meta it does not own is kept as it was
        for k in (rec.META_REPLICA_ID, rec.META_INCARNATION, rec.META_WAL, rec.META_CLEAN):
            assert storage.get("meta", k) == before["meta"][k]
        assert storage.get("meta", rec.META_SYNCED) == before["meta"][rec.META_SYNCED]
        assert m.carried == {"registers": 5, "counters": 6, "sets": 3, "hlls": 2}
        assert (m.tombstones, m.expired, m.replayed) == (1, 1, 3)
        assert (m.several, m.merged) == (["both", "dup"], ["both"])


def test_reopening_reads_format_2_without_migrating_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d"
    write_dir(path, f1.sample())
    caplog.set_level(logging.INFO, logger="crdtkv.replica.persist")
    with RocksStorage(path) as storage:
        r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
        first = {k: s.copy() for k, s in r.states.items()}
    assert any("migrated from storage format 1 to 2" in m for m in caplog.messages)
    caplog.clear()
    with RocksStorage(path) as storage:
        r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
        assert r.states == first
        assert op(r, "counters.get", key="hits") == {"value": 5}
        peer = r.peer_book.get("r2")
        assert peer is not None and peer.resync
    assert not any("migrated" in m for m in caplog.messages)


def test_the_migration_logs_counts_per_type(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d"
    write_dir(path, f1.sample())
    caplog.set_level(logging.INFO, logger="crdtkv.replica.persist")
    with RocksStorage(path) as storage:
        load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
    line = next(m for m in caplog.messages if "migrated" in m)
    assert "converted 5 registers, 6 counters, 3 sets and 2 hlls" in line
    assert "left out 1 deleted and 1 expired registers; 3 log entries replayed" in line
    assert "wrote 10 string, 3 set, 2 hll and 13 meta states" in line
    assert "1 peers marked to resync by state sync" in line
    several = next(m for m in caplog.messages if "several types" in m)
    assert "2 names live as several types now" in several and "'both', 'dup'" in several
    merged = next(m for m in caplog.messages if "a register and a counter" in m)
    assert "1 names held a register and a counter: one string now" in merged
    assert merged.endswith(": 'both'")


def test_an_unclean_wal_directory_migrates_under_a_new_incarnation(tmp_path: Path) -> None:
    """Not closed cleanly: the log is the write-ahead record, replayed as format 1 did;
    after a `wal` run the usual rule then mints a new incarnation."""
    d = f1.sample()
    d.meta.update({b"clean": None, b"wal": True})
    path = tmp_path / "d"
    write_dir(path, d)
    with RocksStorage(path) as storage:
        r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS, wal=True)
        assert r.incarnation == "new-inc"
        assert op(r, "registers.get", key="fromlog") == {"value": "logged"}
        assert op(r, "counters.incr", key="logctr", delta=1) == {"value": 8}
        assert _meta(storage, rec.META_FORMAT) == 2


def test_an_empty_format_1_directory_migrates(tmp_path: Path) -> None:
    path = tmp_path / "d"
    write_dir(path, f1.Format1Dir())
    with RocksStorage(path) as storage:
        r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
        assert r.states == {} and r.incarnation == "new-inc"  # every start: a new one
        assert _meta(storage, rec.META_FORMAT) == 2


# -- refusals --------------------------------------------------------------------------------------


def _with_meta(tmp_path: Path, **meta: Any) -> tuple[Path, Dump]:
    d = f1.sample()
    d.meta.update({k.encode(): v for k, v in meta.items()})
    path = tmp_path / "d"
    return path, write_dir(path, d)


def _refused(path: Path) -> str:
    with RocksStorage(path) as storage, pytest.raises(DataDirMismatch) as e:
        load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
    return e.value.message


def test_a_newer_format_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path, before = _with_meta(tmp_path, format=3)
    msg = _refused(path)
    assert "storage format 3" in msg and "reads storage format 2" in msg
    assert f"this build (crdtkv {RELEASE})" in msg and "last opened by" not in msg
    assert "migrates format 1" in msg and "newer crdtkv" in msg
    assert read_dump(path) == before


def test_a_newer_format_names_the_release_that_last_opened_it(tmp_path: Path) -> None:
    path, before = _with_meta(tmp_path, format=3, release="9.1.0")
    msg = _refused(path)
    assert "storage format 3, last opened by crdtkv 9.1.0" in msg, msg
    assert f"this build (crdtkv {RELEASE}) reads storage format 2" in msg
    assert read_dump(path) == before


def test_every_start_records_its_release(tmp_path: Path) -> None:
    path, _ = _with_meta(tmp_path, release="0.0.1")
    with RocksStorage(path) as storage:
        load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
        assert rec.unpack(storage.get("meta", rec.META_RELEASE), "release") == RELEASE


@pytest.mark.parametrize(
    "raw",
    [b"\xc1", msgpack.packb("two"), msgpack.packb(-1), msgpack.packb(True), msgpack.packb(2.0)],
    ids=["not-msgpack", "text", "negative", "bool", "float"],
)
def test_a_garbage_format_is_refused_and_left_unchanged(tmp_path: Path, raw: bytes) -> None:
    path, _ = _with_meta(tmp_path)
    with RocksStorage(path) as s:
        b = WriteBatch()
        b.put("meta", rec.META_FORMAT, raw)
        s.write(b, sync=True)
        before = dump(s)
    msg = _refused(path)
    assert f"format record {raw!r}, which is not a format number" in msg
    assert "reads storage format 2" in msg and "--data-dir" in msg
    assert read_dump(path) == before


def test_format_0_with_data_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path, _ = _with_meta(tmp_path, format=None)  # no format record
    before = read_dump(path)
    assert rec.META_FORMAT not in before["meta"]
    msg = _refused(path)
    assert "storage format 0" in msg and "reads storage format 2" in msg
    assert read_dump(path) == before
    # no meta at all, but states: not initialised over either
    path2 = tmp_path / "e"
    with RocksStorage(path2) as s:
        b = WriteBatch()
        b.put("states", b"registers/x", msgpack.packb(["lww", 1, [[1, 0, "a"], 1, None, False]]))
        s.write(b, sync=True)
        before = dump(s)
    assert "storage format 0" in _refused(path2)
    assert read_dump(path2) == before


def test_a_format_1_record_that_does_not_decode_is_refused_and_left_unchanged(
    tmp_path: Path,
) -> None:
    d = f1.sample()
    d.state("counters", "bad", ["ctr", 1, {A: [1, 2, 3, 4]}])  # a floor above its component
    path = tmp_path / "d"
    before = write_dir(path, d)
    with RocksStorage(path) as storage, pytest.raises(CodecError) as e:
        load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
    assert "format-1 state counters/bad" in e.value.message
    assert read_dump(path) == before


# -- crash safety ----------------------------------------------------------------------------------


def test_the_migration_is_one_synced_batch_and_a_failed_one_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole migration is one batch written with sync=True, and nothing is written
    before it: so RocksDB's atomic batches leave format 1 or complete format 2."""
    path = tmp_path / "d"
    before = write_dir(path, f1.sample())
    real_write = RocksStorage.write
    writes: list[tuple[WriteBatch, bool]] = []

    def failing(self: RocksStorage, batch: WriteBatch, *, sync: bool) -> None:
        writes.append((batch, sync))
        raise StorageError("disk full")

    monkeypatch.setattr(RocksStorage, "write", failing)
    with RocksStorage(path) as storage, pytest.raises(StorageError):
        load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
    monkeypatch.setattr(RocksStorage, "write", real_write)
    assert read_dump(path) == before
    [(batch, sync)] = writes
    assert sync
    puts = {(o.cf, o.key): o.value for o in batch.ops if isinstance(o, Put)}
    assert puts[("meta", rec.META_FORMAT)] == rec.pack(2)
    assert puts[("meta", rec.META_PEERS)] == rec.pack({"r2": [-1, "inc2"]})
    assert sum(cf == "states" for cf, _ in puts) == 28
    cleared = {o.cf for o in batch.ops if isinstance(o, DeleteRange)}
    assert cleared == {"states", "fields", "log"}
    with RocksStorage(path) as storage:  # the next start migrates
        r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
        assert op(r, "counters.get", key="hits") == {"value": 5}


CHILD = """
    import sys
    from crdtkv.replica.persist import load_replica
    from crdtkv.storage.rocks import RocksStorage
    storage = RocksStorage(sys.argv[1])
    print("go", flush=True)
    load_replica(storage, "r1", "new-inc", now_ms=int(sys.argv[2]))
    print("done", flush=True)
    storage.close()
"""

# written by the start after a migration (every start is a new incarnation)
# What each start writes of its own (the release too: a kill between the migration
# batch and the start batch leaves it unwritten).
META_OF_THE_RUN = {rec.META_CLEAN, rec.META_WAL, rec.META_INCARNATION, rec.META_RELEASE}


def _migrate_in_child(path: Path, kill_after_s: float | None) -> float:
    """Run a migration in a child process; kill -9 it ``kill_after_s`` after it
    starts (None: let it finish).  Returns the seconds it ran."""
    with proc_group() as procs:
        proc = spawn(python_cmd(CHILD, str(path), str(NOW_MS)))
        procs.append(proc)
        wait_line(proc, "go")
        started = time.monotonic()
        if kill_after_s is None:
            wait_line(proc, "done", timeout_s=120)
            elapsed = time.monotonic() - started
            assert exited(proc)[0] == 0
            return elapsed
        time.sleep(kill_after_s)
        kill9(proc)
        return time.monotonic() - started


def test_kill_9_mid_migration_leaves_format_1_or_complete_format_2(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRDTKV_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    original = tmp_path / "original"
    before = write_dir(original, f1.big(10_000))
    reference = tmp_path / "reference"
    shutil.copytree(original, reference)
    duration_s = _migrate_in_child(reference, None)
    after = read_dump(reference)
    assert after["meta"][rec.META_FORMAT] == rec.pack(2)
    outcomes = []
    for cycle in range(4):
        path = tmp_path / f"cycle-{cycle}"
        shutil.copytree(original, path)
        kill_s = rng.uniform(0, duration_s)
        _migrate_in_child(path, kill_s)
        got = read_dump(path)
        fmt = msgpack.unpackb(got["meta"][rec.META_FORMAT])
        where = f"seed {seed}, cycle {cycle}, killed after {kill_s:.3f} s of {duration_s:.3f} s"
        if fmt == 1:
            assert got == before, where
        else:
            assert fmt == 2, where
            assert got["states"] == after["states"] and got["log"] == {}, where
            mine = {k: v for k, v in got["meta"].items() if k not in META_OF_THE_RUN}
            theirs = {k: v for k, v in after["meta"].items() if k not in META_OF_THE_RUN}
            assert mine == theirs, where
        outcomes.append(fmt)
        with RocksStorage(path) as storage:  # and it opens, migrating if it has not yet
            r = load_replica(storage, "r1", "new-inc", now_ms=NOW_MS)
            assert op(r, "counters.get", key="hits") == {"value": 5}, where
            assert op(r, "registers.get", key="reg-009999") == {"value": "value-9999"}, where
            assert op(r, "counters.get", key="ctr-000041") == {"value": 41}, where
    print(f"kill -9 outcomes (format per cycle): {outcomes}, seed {seed}")


# -- through `crdtkv serve` ------------------------------------------------------------------------


def test_serve_migrates_a_format_1_directory_and_refuses_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "d"
    d = f1.sample()
    d.meta[b"peers"] = {}  # no peers: this replica runs alone
    write_dir(path, d)
    port = free_port()
    args = ["serve", "--replica-id", "r1", "--port", str(port), "--data-dir", str(path)]
    with proc_group() as procs:
        proc = spawn(crdtkv_cmd(*args))
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, [url])
        assert http("GET", f"{url}/v1/registers/greeting") == (200, {"value": "hello"})
        assert http("POST", f"{url}/v1/counters/hits", {"delta": 1}) == (200, {"value": 6})
        assert http("GET", f"{url}/v1/sets/fruits")[1]["members"] == ["apple", "kiwi", "pear"]
        proc.terminate()
        status, err = exited(proc)
        assert status == 0
        assert "migrated from storage format 1 to 2" in err, err

        newer = tmp_path / "newer"
        d = f1.sample()
        d.meta[b"format"] = 3
        before = write_dir(newer, d)
        proc = spawn(crdtkv_cmd("serve", "--replica-id", "r1", "--data-dir", str(newer)))
        procs.append(proc)
        status, err = exited(proc)
        assert status == 1 and len(err.strip().splitlines()) == 1, err
        assert "storage format 3" in err and "reads storage format 2" in err
        assert read_dump(newer) == before


# -- the conversion, pure --------------------------------------------------------------------------


def _string(old: dict[mig.OldKey, mig.OldState]) -> NumericRegister:
    state = mig.convert(old, NOW_MS).states[("string", "k")]
    assert isinstance(state, NumericRegister)
    return state


def _ctr(entries: dict[str, tuple[int, int, int, int]]) -> mig.OldCounter:
    return mig.OldCounter({a: list(e) for a, e in entries.items()})


def test_the_conversion_is_deterministic() -> None:
    sample = f1.sample()
    old = {k: mig.decode_old_state(k[0], v) for k, v in sample.states.items()}
    again = {k: mig.decode_old_state(k[0], v) for k, v in sample.states.items()}
    assert mig.convert(old, NOW_MS).states == mig.convert(again, NOW_MS).states


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ({A: (3, 0, 0, 0)}, {A: (5, 1, 0, 0)}),  # more increments, no reset
        ({A: (5, 0, 0, 0)}, {A: (5, 0, 5, 0)}),  # the reset of what the older view held
        ({A: (5, 0, 0, 0)}, {A: (8, 0, 5, 0)}),  # a reset, then more increments
        ({A: (5, 0, 5, 0)}, {A: (8, 0, 5, 0)}),  # increments after a reset both saw
        ({A: (2, 0, 0, 0), B: (1, 0, 0, 0)}, {A: (2, 0, 2, 0), B: (4, 0, 0, 0)}),
    ],
)
def test_counter_views_one_replica_is_behind_on_join_to_the_newer(
    older: dict[str, tuple[int, int, int, int]], newer: dict[str, tuple[int, int, int, int]]
) -> None:
    """Replicas upgraded while one was behind: after they sync, both read the newer
    view's value, whichever way the join goes."""
    a = _string({("counters", "k"): _ctr(older)})
    b = _string({("counters", "k"): _ctr(newer)})
    expected = sum((p - fp) - (n - fn) for p, n, fp, fn in newer.values())
    for x, y in ((a, b), (b, a)):
        joined = x.joined(y)
        assert (joined.value() or 0) == expected
        assert joined == b.joined(a)


@pytest.mark.parametrize(
    ("seen_by_a", "joined"), [((5, 0, 5, 0), 8), ((7, 0, 5, 0), 10)], ids=["none", "two"]
)
def test_counter_views_with_a_reset_one_did_not_see_join_as_documented(
    seen_by_a: tuple[int, int, int, int], joined: int
) -> None:
    """The loss ``migrate``'s docstring states: 5 increments, a reset seen by A, 3 more
    seen by B only (and ``seen_by_a``): format 1 would read 3."""
    a = _string({("counters", "k"): _ctr({A: seen_by_a})})
    b = _string({("counters", "k"): _ctr({A: (8, 0, 0, 0)})})
    assert a.joined(b).value() == b.joined(a).value() == joined


def test_register_views_join_to_the_later_write() -> None:
    older = mig.OldRegister(Timestamp(NOW_MS - 1_000, 1, A), "old", NOW_MS + 1_000, False)
    newer = mig.OldRegister(Timestamp(NOW_MS - 1_000, 2, B), "new", None, False)
    a, b = (mig.convert({("registers", "k"): r}, NOW_MS) for r in (older, newer))
    sa, sb = a.states[("string", "k")], b.states[("string", "k")]
    assert sa.joined(sb).value() == sb.joined(sa).value() == "new"  # type: ignore[attr-defined]
    # the documented loss: the older write's TTL survives the join
    ma, mb = a.states[("meta", "k")], b.states[("meta", "k")]
    assert isinstance(ma, KeyMeta) and ma.joined(mb).expires_ms() == NOW_MS + 1_000  # type: ignore[arg-type]


def test_a_counter_past_2_63_in_magnitude_keeps_its_value() -> None:
    big = 2**63
    s = _string({("counters", "k"): _ctr({A: (big + 7, big, 0, 0)})})
    assert s.value() == 7
    assert s.joined(s.copy()) == s


def test_conversion_errors_name_the_key() -> None:
    with pytest.raises(CodecError, match=r"'k'.*outside the 64-bit range"):
        _string({("counters", "k"): _ctr({A: (2**63 + 1, 0, 0, 0)})})
    with pytest.raises(CrdtkvError, match="unknown format-1 namespace"):
        mig.decode_old_state("strings", ["num", 1, []])

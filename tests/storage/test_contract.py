"""The Storage interface, one suite run against both implementations.

``MemoryStorage`` (the simulator's fake) and ``RocksStorage`` (a real RocksDB
in tmp_path) must behave the same for everything the replica relies on:
round trips, ordered and bounded scans, batch atomicity, close and reopen.
What only one of them has (the fake's power-loss model; RocksDB's locking,
sync and open errors) is tested in test_memory.py and test_rocks.py.  The
last test drives both with the same random steps and compares every read.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.errors import StorageError
from crdtkv.storage import COLUMN_FAMILIES, MemoryStorage, Storage, WriteBatch
from crdtkv.storage.rocks import RocksStorage
from tests.storage.support import CFS, KEYS, Write, batch_of, batches, dump, replay, scan


class Backend:
    """Opens one implementation, and reopens it as a restarted process would."""

    name = ""

    def open(self) -> Storage:
        raise NotImplementedError

    def reopen(self, store: Storage) -> Storage:
        """Close ``store`` (if open) and open the same data again."""
        raise NotImplementedError


class Memory(Backend):
    name = "memory"

    def open(self) -> Storage:
        return MemoryStorage()

    def reopen(self, store: Storage) -> Storage:
        assert isinstance(store, MemoryStorage)
        store.close()  # a clean close: everything written is durable
        store.reopen()
        return store


@dataclass
class Rocks(Backend):
    path: Path
    name = "rocks"

    def open(self) -> Storage:
        return RocksStorage(self.path)

    def reopen(self, store: Storage) -> Storage:
        store.close()
        return RocksStorage(self.path, create=False)


@pytest.fixture(params=["memory", "rocks"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Memory() if request.param == "memory" else Rocks(tmp_path / "data")


@pytest.fixture
def store(backend: Backend) -> Iterator[Storage]:
    s = backend.open()
    yield s
    s.close()


# -- round trips -------------------------------------------------------------------------------


def test_round_trip_per_column_family(store: Storage) -> None:
    for cf in COLUMN_FAMILIES:
        store.write(
            batch_of(("put", cf, "a", cf), ("put", cf, "b", "2"), ("put", cf, "c", "3")), sync=False
        )
    store.write(
        batch_of(
            ("del", "states", "a"),
            ("range", "log", "a", "c"),
            ("range", "fields", "b", "z"),
            ("del", "meta", "zzz"),  # absent: a no-op
        ),
        sync=True,
    )
    assert dump(store) == {
        "states": {b"b": b"2", b"c": b"3"},
        "fields": {b"a": b"fields"},
        "log": {b"c": b"3"},
        "meta": {b"a": b"meta", b"b": b"2", b"c": b"3"},
    }
    assert store.get("meta", b"a") == b"meta"
    assert store.get("log", b"a") is None
    assert store.get("states", b"a") is None


def test_raw_bytes_including_empty_keys_and_values(store: Storage) -> None:
    b = WriteBatch()
    b.put("states", b"", b"")
    b.put("states", b"\x00\xff", bytes(range(256)))
    store.write(b, sync=False)
    assert store.get("states", b"") == b""
    assert store.get("states", b"\x00\xff") == bytes(range(256))
    assert list(store.items("states")) == [(b"", b""), (b"\x00\xff", bytes(range(256)))]


def test_operations_in_a_batch_apply_in_order(store: Storage) -> None:
    store.write(batch_of(("put", "log", "k", "1"), ("range", "log", "a", "z")), sync=False)
    assert store.get("log", b"k") is None
    store.write(batch_of(("range", "log", "a", "z"), ("put", "log", "k", "2")), sync=False)
    assert store.get("log", b"k") == b"2"
    store.write(
        batch_of(("put", "log", "k", "3"), ("del", "log", "k"), ("put", "log", "k", "4")),
        sync=False,
    )
    assert store.get("log", b"k") == b"4"


@pytest.mark.parametrize("cf", ["nope", "default"])
def test_unknown_column_family_on_read(store: Storage, cf: str) -> None:
    with pytest.raises(ValueError):
        store.get(cf, b"k")
    with pytest.raises(ValueError):
        store.items(cf)


def test_reads_reject_keys_that_are_not_bytes(store: Storage) -> None:
    with pytest.raises(TypeError):
        store.get("states", "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.items("states", "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.items("states", b"a", "b")  # type: ignore[arg-type]


def test_items_are_sorted_and_bounded(store: Storage) -> None:
    keys = [b"b", b"", b"\xff", b"a", b"ab", b"\x00", b"\xff\x00", b"aa"]
    b = WriteBatch()
    for k in keys:
        b.put("log", k, k + b"!")
    b.put("states", b"aa", b"other family")
    store.write(b, sync=False)
    assert [k for k, _ in store.items("log")] == sorted(keys)
    assert list(store.items("log", b"a", b"b")) == [(b"a", b"a!"), (b"aa", b"aa!"), (b"ab", b"ab!")]
    assert [k for k, _ in store.items("log", b"ab")] == [b"ab", b"b", b"\xff", b"\xff\x00"]
    assert [k for k, _ in store.items("log", end=b"a")] == [b"", b"\x00"]
    assert [k for k, _ in store.items("log", b"a\x00", b"ab\x00")] == [b"aa", b"ab"]
    assert list(store.items("log", b"b", b"b")) == []
    assert list(store.items("log", b"c", b"a")) == []


def test_items_is_a_view_taken_at_call_time(store: Storage) -> None:
    store.write(batch_of(("put", "states", "a", "1"), ("put", "states", "b", "2")), sync=False)
    it = store.items("states")
    store.write(batch_of(("put", "states", "c", "3"), ("del", "states", "a")), sync=False)
    assert list(it) == [(b"a", b"1"), (b"b", b"2")]


# -- atomicity, close, reopen ------------------------------------------------------------------


def test_invalid_operation_rejects_whole_batch_before_writing(store: Storage) -> None:
    b = batch_of(("put", "states", "a", "1"), ("put", "log", "b", "2"))
    b.ops.append("garbage")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.write(b, sync=True)
    assert dump(store) == replay([])


def test_close_is_idempotent_and_closed_store_refuses_everything(backend: Backend) -> None:
    store = backend.open()
    store.write(batch_of(("put", "states", "a", "1"), ("put", "states", "b", "2")), sync=False)
    it = store.items("states")
    assert next(it) == (b"a", b"1")
    store.close()
    store.close()
    with pytest.raises(StorageError, match="closed during iteration"):
        next(it)
    with pytest.raises(StorageError, match="closed"):
        store.get("states", b"a")
    with pytest.raises(StorageError, match="closed"):
        store.items("states")
    with pytest.raises(StorageError, match="closed"):
        store.write(WriteBatch(), sync=True)
    store = backend.reopen(store)
    try:
        assert store.get("states", b"a") == b"1"
        assert store.get("states", b"b") == b"2"
    finally:
        store.close()


def test_context_manager_closes(backend: Backend) -> None:
    with backend.open() as store:
        store.write(batch_of(("put", "meta", "id", "r1")), sync=True)
    with pytest.raises(StorageError):
        store.get("meta", b"id")
    with backend.reopen(store) as again:
        assert again.get("meta", b"id") == b"r1"


def test_reopen_keeps_everything(backend: Backend) -> None:
    store = backend.open()
    for cf in COLUMN_FAMILIES:
        b = WriteBatch()
        for i in range(50):
            b.put(cf, b"%03d" % i, cf.encode() * i)
        b.delete_range(cf, b"010", b"020")
        store.write(b, sync=(cf == "meta"))
    before = dump(store)
    store = backend.reopen(store)
    try:
        assert dump(store) == before
        assert len(before["log"]) == 40
    finally:
        store.close()


# -- both implementations, the same random steps ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Read:
    cf: str
    key: bytes
    start: bytes
    end: bytes | None


@dataclass(frozen=True, slots=True)
class Reopen:
    pass


STEPS = st.one_of(
    st.builds(Write, batches(5), st.booleans()),
    st.builds(Write, batches(5), st.booleans()),
    st.builds(Read, CFS, KEYS, KEYS, st.one_of(st.none(), KEYS)),
    st.just(Reopen()),
)


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(STEPS, max_size=30))
def test_rocks_and_memory_agree(steps: list[Write | Read | Reopen]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        memory, rocks_backend = Memory(), Rocks(Path(tmp))
        mem, rocks = memory.open(), rocks_backend.open()
        try:
            for step in steps:
                if isinstance(step, Write):
                    mem.write(step.batch, sync=step.sync)
                    rocks.write(step.batch, sync=step.sync)
                elif isinstance(step, Read):
                    assert rocks.get(step.cf, step.key) == mem.get(step.cf, step.key)
                    assert list(rocks.items(step.cf, step.start, step.end)) == list(
                        mem.items(step.cf, step.start, step.end)
                    )
                else:
                    mem = memory.reopen(mem)
                    rocks = rocks_backend.reopen(rocks)
                assert scan(rocks) == scan(mem)
        finally:
            rocks.close()

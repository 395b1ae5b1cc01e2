"""WriteBatch, and the in-memory fake's durability model (crash, wipe, close)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv.errors import StorageError
from crdtkv.storage import (
    COLUMN_FAMILIES,
    Delete,
    DeleteRange,
    MemoryStorage,
    Put,
    Storage,
    WriteBatch,
)

# -- an independent reference model ----------------------------------------------

Model = dict[str, dict[bytes, bytes]]


def replay(batches: list[WriteBatch]) -> Model:
    """The state after applying ``batches`` in order, computed naively."""
    model: Model = {cf: {} for cf in COLUMN_FAMILIES}
    for batch in batches:
        for op in batch.ops:
            if isinstance(op, Put):
                model[op.cf][op.key] = op.value
            elif isinstance(op, Delete):
                model[op.cf].pop(op.key, None)
            else:
                model[op.cf] = {k: v for k, v in model[op.cf].items() if not op.start <= k < op.end}
    return model


def dump(store: Storage) -> Model:
    return {cf: dict(store.items(cf)) for cf in COLUMN_FAMILIES}


def batch_of(*ops: tuple[str, ...]) -> WriteBatch:
    b = WriteBatch()
    for op in ops:
        if op[0] == "put":
            b.put(op[1], op[2].encode(), op[3].encode())
        elif op[0] == "del":
            b.delete(op[1], op[2].encode())
        else:
            b.delete_range(op[1], op[2].encode(), op[3].encode())
    return b


# -- WriteBatch --------------------------------------------------------------------


def test_write_batch_records_operations_in_order() -> None:
    b = WriteBatch()
    assert len(b) == 0
    b.put("states", b"k", b"v")
    b.delete("log", b"k")
    b.delete_range("meta", b"a", b"z")
    assert len(b) == 3
    assert b.ops == [
        Put("states", b"k", b"v"),
        Delete("log", b"k"),
        DeleteRange("meta", b"a", b"z"),
    ]


@pytest.mark.parametrize("cf", ["", "default", "STATES", "state", "logs"])
def test_write_batch_rejects_unknown_column_family(cf: str) -> None:
    b = WriteBatch()
    with pytest.raises(ValueError, match="unknown column family"):
        b.put(cf, b"k", b"v")
    with pytest.raises(ValueError, match="unknown column family"):
        b.delete(cf, b"k")
    with pytest.raises(ValueError, match="unknown column family"):
        b.delete_range(cf, b"a", b"b")
    assert len(b) == 0


def test_write_batch_rejects_non_bytes() -> None:
    b = WriteBatch()
    with pytest.raises(TypeError):
        b.put("states", "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.put("states", b"k", bytearray(b"v"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.delete("states", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.delete_range("states", b"a", 5)  # type: ignore[arg-type]
    assert len(b) == 0


def test_write_batch_rejects_reversed_range_but_allows_empty_one() -> None:
    b = WriteBatch()
    with pytest.raises(ValueError, match="after end"):
        b.delete_range("log", b"b", b"a")
    b.delete_range("log", b"a", b"a")
    assert len(b) == 1


def test_unknown_column_family_on_read() -> None:
    store = MemoryStorage()
    with pytest.raises(ValueError):
        store.get("nope", b"k")
    with pytest.raises(ValueError):
        store.items("nope")


def test_reads_reject_keys_that_are_not_bytes() -> None:
    store = MemoryStorage()
    with pytest.raises(TypeError):
        store.get("states", "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.items("states", "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.items("states", b"a", "b")  # type: ignore[arg-type]


# -- the Storage contract ---------------------------------------------------------------


def test_round_trip_per_column_family() -> None:
    store = MemoryStorage()
    for cf in COLUMN_FAMILIES:
        store.write(
            batch_of(("put", cf, "a", cf), ("put", cf, "b", "2"), ("put", cf, "c", "3")), sync=False
        )
    store.write(batch_of(("del", "states", "a"), ("range", "log", "a", "c")), sync=True)
    assert dump(store) == {
        "states": {b"b": b"2", b"c": b"3"},
        "log": {b"c": b"3"},
        "meta": {b"a": b"meta", b"b": b"2", b"c": b"3"},
    }
    assert store.get("meta", b"a") == b"meta"
    assert store.get("states", b"a") is None


def test_operations_in_a_batch_apply_in_order() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "k", "1"), ("range", "log", "a", "z")), sync=False)
    assert store.get("log", b"k") is None
    store.write(batch_of(("range", "log", "a", "z"), ("put", "log", "k", "2")), sync=False)
    assert store.get("log", b"k") == b"2"
    store.write(
        batch_of(("put", "log", "k", "3"), ("del", "log", "k"), ("put", "log", "k", "4")),
        sync=False,
    )
    assert store.get("log", b"k") == b"4"


def test_empty_keys_and_values_are_kept() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "", "")), sync=False)
    assert store.get("states", b"") == b""
    assert list(store.items("states")) == [(b"", b"")]


def test_items_are_sorted_and_bounded() -> None:
    store = MemoryStorage()
    keys = [b"b", b"", b"\xff", b"a", b"ab", b"\x00", b"\xff\x00", b"aa"]
    b = WriteBatch()
    for k in keys:
        b.put("log", k, k + b"!")
    store.write(b, sync=False)
    assert [k for k, _ in store.items("log")] == sorted(keys)
    assert list(store.items("log", b"a", b"b")) == [(b"a", b"a!"), (b"aa", b"aa!"), (b"ab", b"ab!")]
    assert [k for k, _ in store.items("log", b"ab")] == [b"ab", b"b", b"\xff", b"\xff\x00"]
    assert [k for k, _ in store.items("log", end=b"a")] == [b"", b"\x00"]
    assert list(store.items("log", b"b", b"b")) == []
    assert list(store.items("log", b"c", b"a")) == []


def test_invalid_operation_rejects_whole_batch_before_writing() -> None:
    store = MemoryStorage()
    b = batch_of(("put", "states", "a", "1"), ("put", "log", "b", "2"))
    b.ops.append("garbage")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.write(b, sync=True)
    assert dump(store) == replay([])
    assert store.unsynced_batches == 0


def test_the_store_keeps_its_own_copy_of_a_batch() -> None:
    store = MemoryStorage()
    b = batch_of(("put", "states", "a", "1"))
    store.write(b, sync=False)
    b.put("states", b"b", b"2")
    store.crash(keep_unsynced=1)
    assert dump(store)["states"] == {b"a": b"1"}


def test_items_is_a_view_taken_at_call_time() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "a", "1"), ("put", "states", "b", "2")), sync=False)
    it = store.items("states")
    store.write(batch_of(("put", "states", "c", "3"), ("del", "states", "a")), sync=False)
    assert list(it) == [(b"a", b"1"), (b"b", b"2")]


def test_close_is_idempotent_and_closed_store_refuses_everything() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "a", "1"), ("put", "states", "b", "2")), sync=False)
    it = store.items("states")
    assert next(it) == (b"a", b"1")
    store.close()
    store.close()
    with pytest.raises(StorageError):
        next(it)
    with pytest.raises(StorageError):
        store.get("states", b"a")
    with pytest.raises(StorageError):
        store.items("states")
    with pytest.raises(StorageError):
        store.write(WriteBatch(), sync=True)
    store.reopen()
    assert store.get("states", b"a") == b"1"


def test_context_manager_closes() -> None:
    with MemoryStorage() as store:
        store.write(batch_of(("put", "meta", "a", "1")), sync=False)
    with pytest.raises(StorageError):
        store.get("meta", b"a")


# -- durability ----------------------------------------------------------------------


def test_reads_see_unsynced_writes_until_a_crash() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "a", "1")), sync=True)
    store.write(batch_of(("put", "states", "b", "2")), sync=False)
    assert store.get("states", b"b") == b"2"
    assert store.unsynced_batches == 1
    store.crash()
    assert store.get("states", b"a") == b"1"
    assert store.get("states", b"b") is None
    assert store.unsynced_batches == 0


def test_a_sync_makes_every_earlier_batch_durable() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "1", "a")), sync=False)
    store.write(batch_of(("put", "log", "2", "b")), sync=False)
    store.write(batch_of(("put", "log", "3", "c")), sync=True)
    store.write(batch_of(("put", "log", "4", "d")), sync=False)
    store.crash()
    assert [k for k, _ in store.items("log")] == [b"1", b"2", b"3"]


def test_empty_synced_batch_is_a_barrier() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "1", "a")), sync=False)
    store.write(WriteBatch(), sync=True)
    assert store.unsynced_batches == 0
    store.crash()
    assert store.get("log", b"1") == b"a"


def test_crash_keeps_a_prefix_of_the_unsynced_batches() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "0", "s")), sync=True)
    for i in range(1, 5):
        store.write(batch_of(("put", "log", str(i), "u")), sync=False)
    store.write(batch_of(("del", "log", "0")), sync=False)
    store.crash(keep_unsynced=2)
    assert [k for k, _ in store.items("log")] == [b"0", b"1", b"2"]
    # What survived a crash is on disk: a second crash keeps it.
    store.write(batch_of(("put", "log", "9", "u")), sync=False)
    store.crash()
    assert [k for k, _ in store.items("log")] == [b"0", b"1", b"2"]


def test_crash_keep_unsynced_must_be_within_the_unsynced_batches() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "1", "a")), sync=False)
    with pytest.raises(ValueError):
        store.crash(keep_unsynced=2)
    with pytest.raises(ValueError):
        store.crash(keep_unsynced=-1)
    store.crash(keep_unsynced=1)
    assert store.get("log", b"1") == b"a"


def test_crash_leaves_the_store_open_and_invalidates_iterators() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "log", "1", "a"), ("put", "log", "2", "b")), sync=True)
    it = store.items("log")
    next(it)
    store.close()
    store.crash()
    with pytest.raises(StorageError):
        next(it)
    assert store.get("log", b"1") == b"a"  # open again, as after a reopen


def test_clean_close_makes_everything_durable() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "a", "1")), sync=False)
    store.close()
    store.crash()
    assert store.get("states", b"a") == b"1"


def test_wipe_loses_everything() -> None:
    store = MemoryStorage()
    store.write(batch_of(("put", "states", "a", "1"), ("put", "meta", "id", "x")), sync=True)
    store.write(batch_of(("put", "log", "1", "a")), sync=False)
    store.wipe()
    assert dump(store) == replay([])
    store.crash()
    assert dump(store) == replay([])


# -- the crash property ------------------------------------------------------------

KEYS = st.lists(st.sampled_from([0x00, 0x61, 0xFF]), max_size=2).map(bytes)  # 13 keys
CFS = st.sampled_from(COLUMN_FAMILIES)


@st.composite
def batches(draw: st.DrawFn) -> WriteBatch:
    b = WriteBatch()
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["put", "put", "delete", "range"]))
        cf = draw(CFS)
        if kind == "put":
            b.put(cf, draw(KEYS), draw(st.binary(max_size=4)))
        elif kind == "delete":
            b.delete(cf, draw(KEYS))
        else:
            lo, hi = sorted((draw(KEYS), draw(KEYS)))
            b.delete_range(cf, lo, hi)
    return b


@dataclass(frozen=True)
class Write:
    batch: WriteBatch
    sync: bool


@dataclass(frozen=True)
class Crash:
    keep: int | None  # None: keep_unsynced left out; else a share of the unsynced batches


SYNC = st.sampled_from([False, False, False, True])  # mostly unsynced: more to lose
EVENTS = st.one_of(
    st.builds(Write, batches(), SYNC),
    st.builds(Write, batches(), SYNC),
    st.builds(Write, batches(), SYNC),
    st.builds(Crash, st.one_of(st.none(), st.integers(0, 6))),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(EVENTS, max_size=25), st.integers(0, 6))
def test_crash_equals_replay_of_synced_batches_plus_first_k_unsynced(
    events: list[Write | Crash], final_keep: int
) -> None:
    store = MemoryStorage()
    survived: list[WriteBatch] = []  # batches that are durable
    pending: list[WriteBatch] = []  # written since the last sync, in order
    for event in [*events, Crash(final_keep)]:
        if isinstance(event, Write):
            store.write(event.batch, sync=event.sync)
            pending.append(event.batch)
            if event.sync:
                survived += pending
                pending = []
            assert dump(store) == replay(survived + pending)  # reads see everything
            assert store.unsynced_batches == len(pending)
        else:
            k = None if event.keep is None else min(event.keep, len(pending))
            store.crash(keep_unsynced=k)
            survived += pending[: k or 0]
            pending = []
            assert dump(store) == replay(survived)
            assert store.unsynced_batches == 0

"""The in-memory fake's own model: power loss (crash, wipe) and close/reopen.

The Storage interface both implementations share is tested in
test_contract.py; what is here exists only in ``MemoryStorage``: unsynced
batches, ``crash(keep_unsynced=k)`` keeping a prefix of them, ``wipe``, and
``reopen`` of the same object.  The last test checks the crash model against
an independent replay of the surviving batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv.errors import StorageError
from crdtkv.storage import MemoryStorage, WriteBatch
from tests.storage.support import Write, batch_of, batches, dump, replay


def test_invalid_operation_leaves_nothing_unsynced() -> None:
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


@dataclass(frozen=True, slots=True)
class Crash:
    keep: int | None  # None: keep_unsynced left out; else a share of the unsynced batches


SYNC = st.sampled_from([False, False, False, True])  # mostly unsynced: more to lose
EVENTS = st.one_of(
    st.builds(Write, batches(4), SYNC),
    st.builds(Write, batches(4), SYNC),
    st.builds(Write, batches(4), SYNC),
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

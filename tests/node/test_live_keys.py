"""Node.live_keys: exact for a small keyspace; past KEYS_EXACT_MAX, the count of a walk
made in slices in the background, so no request counts a million keys at once."""

from __future__ import annotations

import asyncio

import pytest

from crdtkv.node import aio
from crdtkv.node.aio import Node
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.storage.memory import MemoryStorage

NOW = 1_700_000_000_000


def _node(n_keys: int, deleted: int) -> Node:
    replica = Replica("r1", "i1")
    for i in range(n_keys):
        apply_op(replica, {"op": "registers.set", "key": f"k{i}", "value": i}, NOW)
    for i in range(deleted):
        apply_op(replica, {"op": "keys.delete", "key": f"k{i}"}, NOW)
    return Node(replica, MemoryStorage(), clock=lambda: NOW)


async def test_a_small_keyspace_is_counted_exactly() -> None:
    node = _node(30, 10)
    assert node.live_keys() == 20  # deleted keys keep their names, and do not count


async def test_a_large_keyspace_is_counted_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aio, "KEYS_EXACT_MAX", 10)
    monkeypatch.setattr(aio, "KEYS_COUNT_SLICE", 7)  # several slices, loop turns between
    node = _node(50, 15)
    assert node.live_keys() == 50  # before the first walk: the names held, an upper bound
    turns = 0
    while node._key_count_task is not None:
        await asyncio.sleep(0)
        turns += 1
    assert turns >= 50 // 7  # it yielded between slices
    assert node.live_keys() == 35  # the walk's count
    apply_op(node.replica, {"op": "keys.delete", "key": "k20"}, NOW)
    assert node.live_keys() == 35  # a fresh count waits for KEYS_RECOUNT_S
    monkeypatch.setattr(aio, "KEYS_RECOUNT_S", 0.0)
    node.live_keys()
    while node._key_count_task is not None:
        await asyncio.sleep(0)
    assert node.live_keys() in (34, 35)  # counted again (a new walk may be under way)
    assert node._key_count == 34

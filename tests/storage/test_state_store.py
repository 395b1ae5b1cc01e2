"""The replica's state store: small keys held as compact records (cold), decoded on
first use; loading from records without decoding them; the keyspace snapshot."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from crdtkv.crdts import NumericRegister
from crdtkv.crdts.base import CRDT
from crdtkv.errors import CodecError
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.replica import records as rec
from crdtkv.replica.persist import build_batch, load_replica, mark_clean, snapshot_parts
from crdtkv.replica.store import SET_COOL_MAX, StateStore
from crdtkv.storage.base import WriteBatch
from crdtkv.storage.memory import MemoryStorage

NOW = 1_700_000_000_000


def _op(r: Replica, op: dict[str, Any], now: int = NOW) -> Any:
    return apply_op(r, op, now)


def _fill(r: Replica) -> None:
    for i in range(20):
        _op(r, {"op": "registers.set", "key": f"s{i}", "value": f"value-{i}"})
        _op(r, {"op": "counters.incr", "key": f"c{i}", "delta": i + 1})
        _op(r, {"op": "sets.add", "key": f"m{i}", "members": ["a", "b", str(i)]})
    _op(r, {"op": "counters.incrbyfloat", "key": "c0", "increment": 0.5})  # a float increment
    _op(r, {"op": "registers.set", "key": "json", "value": {"x": [1, None, True]}})
    _op(r, {"op": "registers.set", "key": "ttl", "value": "v", "ttl_ms": 60_000})
    big = [f"m{j}" for j in range(SET_COOL_MAX + 1)]
    _op(r, {"op": "sets.add", "key": "big", "members": big})
    _op(r, {"op": "hashes.set", "key": "h", "fields": {"f": "v"}})
    _op(r, {"op": "sets.add", "key": "gone", "members": ["x"]})
    _op(r, {"op": "keys.delete", "key": "gone"})  # leaves a context and metadata


def _checkpoint(r: Replica, storage: MemoryStorage) -> None:
    batch = build_batch(r, r.take_pending(), checkpoint=True, log_floor=r.log_pos)
    storage.write(batch, sync=True)


def _all(r: Replica) -> dict[tuple[str, str], bytes]:
    return {k: rec.encode_state(s) for k, s in r.states.items()}


def test_a_checkpoint_cools_small_keys_and_a_read_thaws_them() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    before = _all(r)
    _checkpoint(r, storage)
    store = r.states
    assert {"s3", "c3", "m3", "json", "gone"} <= set(store.cold)
    for hot in ("ttl", "big", "h"):  # a TTL, a large set, a hash: kept decoded
        assert hot not in store.cold
    assert _all(r) == before  # iteration decodes cold records without thawing them
    assert "s3" in store.cold and store.peek(("string", "s3")) is not None
    assert "s3" in store.cold  # peek does not thaw
    assert _op(r, {"op": "registers.get", "key": "s3"}) == {"value": "value-3"}
    assert "s3" not in store.cold and ("string", "s3") in store.hot  # a read thaws
    c0 = store.get(("string", "c0"))
    assert isinstance(c0, NumericRegister) and c0.value() == 1.5
    assert _op(r, {"op": "sets.get", "key": "m4"})["members"] == ["4", "a", "b"]
    assert _op(r, {"op": "registers.get", "key": "json"}) == {"value": {"x": [1, None, True]}}
    _op(r, {"op": "counters.incr", "key": "c3", "delta": 2})
    assert _op(r, {"op": "counters.get", "key": "c3"})["value"] == 6
    _checkpoint(r, storage)
    assert {"s3", "c3", "m4", "c0"} <= set(store.cold)  # written or read: cooled again
    assert len(store) == len(before)
    again = load_replica(storage, "r1", "i2")
    assert _all(again) == _all(r)


def test_mapping_operations_see_cold_states() -> None:
    r = Replica("r1", "i1")
    _fill(r)
    store = r.states
    store.cool_all()
    assert ("string", "s1") in store and ("set", "s1") not in store
    assert ("meta", "s1") in store and ("string", "nope") not in store
    n = len(store)
    store[("set", "s1")] = store[("string", "s1")].copy()  # thaws the name first
    assert "s1" not in store.cold and len(store) == n + 1
    del store[("set", "s1")]
    assert len(store) == n and store.pop(("string", "s1")) is not None
    with pytest.raises(KeyError):
        store[("string", "s1")]


def test_records_load_undecoded_and_decode_like_the_eager_load() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    _checkpoint(r, storage)
    store = rec.load_store(storage.items("states"), storage.items("fields"))
    eager = dict(rec.load_states(storage.items("states"), storage.items("fields")))
    assert {"s1", "c1", "json"} <= set(store.cold)  # string keys: raw records
    assert "m1" not in store.cold  # other types are decoded at load
    assert dict(store.items()) == eager
    for key, state in eager.items():
        assert store.get(key) == state  # thawing gives the same states
    assert not store.cold


def test_a_corrupt_string_record_is_refused_when_its_key_is_used() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    _checkpoint(r, storage)
    batch = WriteBatch()
    good = storage.get("states", b"string/s1")
    assert good is not None
    batch.put("states", b"string/s1", good[:-3] + b"\xc1\xc1\xc1")
    storage.write(batch, sync=True)
    again = load_replica(storage, "r1", "i2")
    with pytest.raises(CodecError, match="s1"):
        again.states.get(("string", "s1"))
    batch = WriteBatch()
    batch.put("states", b"string/s2", b"\x93\xa3orset\x01\x90")  # not a string's record
    storage.write(batch, sync=True)
    with pytest.raises(CodecError):
        load_replica(storage, "r1", "i3")


def _stop_with_snapshot(r: Replica, storage: MemoryStorage, token: str) -> list[bytes]:
    _checkpoint(r, storage)
    parts = snapshot_parts(r, token)
    assert parts is not None
    mark_clean(storage, [token, r.checkpoint_pos])
    return parts


def _objects(parts: list[bytes]) -> Any:
    up = msgpack.Unpacker(raw=False, strict_map_key=False)
    up.feed(b"".join(parts))
    return iter(up)


def test_a_clean_stops_snapshot_is_loaded_and_equals_the_records() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    parts = _stop_with_snapshot(r, storage, "t1")
    from_records = _all(load_replica(storage, "r1", "i2"))
    mark_clean(storage, ["t1", r.checkpoint_pos])  # as if that start had not happened
    loaded = load_replica(storage, "r1", "i3", snapshot=_objects(parts))
    assert {"s1", "c1", "m1"} <= set(loaded.states.cold)
    assert ("set", "big") in loaded.states.hot and ("hash", "h") in loaded.states.hot
    assert _all(loaded) == from_records == _all(r)
    assert loaded.expiring and loaded.expiring[0][1] == "ttl"
    assert list(loaded.names) == sorted({n for _, n in loaded.states})


def test_a_snapshot_that_is_not_the_last_stops_is_ignored() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    parts = _stop_with_snapshot(r, storage, "t1")
    r2 = load_replica(storage, "r1", "i2", snapshot=_objects(parts))  # deletes the mark
    _op(r2, {"op": "registers.set", "key": "s1", "value": "newer"})
    _checkpoint(r2, storage)  # then a crash: no clean stop, the old snapshot stays
    r3 = load_replica(storage, "r1", "i3", snapshot=_objects(parts))
    assert _op(r3, {"op": "registers.get", "key": "s1"}) == {"value": "newer"}
    # A clean stop with another snapshot: the old file is not that one.
    _stop_with_snapshot(r3, storage, "t3")
    r4 = load_replica(storage, "r1", "i4", snapshot=_objects(parts))
    assert _op(r4, {"op": "registers.get", "key": "s1"}) == {"value": "newer"}


def test_a_damaged_snapshot_falls_back_to_the_records() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    parts = _stop_with_snapshot(r, storage, "t1")
    damaged = [*parts[:-1], parts[-1][:-10] + b"0123456789"]
    loaded = load_replica(storage, "r1", "i2", snapshot=_objects(damaged))
    assert _all(loaded) == _all(r)


def test_no_snapshot_while_storage_lags_the_memory() -> None:
    storage = MemoryStorage()
    r = load_replica(storage, "r1", "i1")
    _fill(r)
    assert snapshot_parts(r, "t") is None  # writes not yet checkpointed
    _checkpoint(r, storage)
    assert snapshot_parts(r, "t") is not None


def test_a_store_built_from_states_behaves_like_a_dict() -> None:
    r = Replica("r1", "i1")
    _fill(r)
    states: dict[tuple[str, str], CRDT] = {k: s.copy() for k, s in r.states.items()}
    store = StateStore(states.items())
    store.cool_all()
    assert store == states and len(store) == len(states)
    assert sorted(store) == sorted(states)

"""Hashes and sorted sets on disk: a header record and one record per field.

On real RocksDB: a checkpoint after a change to one field of a large hash or
sorted set writes that field's record and the header, not the value; a
removed field's record is deleted; a DEL or a whole new state rewrites every
record; and a restart reads back exactly the value (reads, ranks, encoding).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crdtkv.crdts import ORMap, ZSet
from crdtkv.errors import CodecError, CrdtkvError
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.replica import records as rec
from crdtkv.replica.persist import build_batch, load_replica
from crdtkv.storage import Delete, DeleteRange, Put, WriteBatch
from crdtkv.storage.rocks import RocksStorage

NOW = 1_700_000_000_000
N = 5_000


def _checkpoint(storage: RocksStorage, replica: Replica) -> WriteBatch:
    batch = build_batch(replica, replica.take_pending(), checkpoint=True)
    storage.write(batch, sync=True)
    return batch


def _fields_ops(batch: WriteBatch) -> list[Any]:
    return [o for o in batch.ops if o.cf == "fields"]


def _read(replica: Replica, op: dict[str, Any]) -> Any:
    try:
        return apply_op(replica, op, NOW)
    except CrdtkvError as e:
        return e.code


def _reads(replica: Replica) -> dict[str, Any]:
    return {
        "hash": _read(replica, {"op": "hashes.getall", "key": "h"}),
        "zset": _read(replica, {"op": "zsets.get", "key": "z"}),
        "rank": _read(replica, {"op": "zsets.member", "key": "z", "member": "m42"}),
        "states": {k: rec.encode_state(s) for k, s in sorted(replica.states.items())},
    }


def _filled(storage: RocksStorage) -> Replica:
    replica = load_replica(storage, "r1", "inc1")
    for lo in range(0, N, 1_000):
        fields = {f"f{i}": i for i in range(lo, lo + 1_000)}
        apply_op(replica, {"op": "hashes.set", "key": "h", "fields": fields}, NOW)
        scores = {f"m{i}": float(i % 97) for i in range(lo, lo + 1_000)}
        apply_op(replica, {"op": "zsets.add", "key": "z", "scores": scores}, NOW)
    batch = _checkpoint(storage, replica)
    puts = [o for o in _fields_ops(batch) if isinstance(o, Put)]
    assert len(puts) == 2 * N  # a new value: every field written
    return replica


def test_a_checkpoint_writes_only_the_fields_that_changed(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "d") as storage:
        replica = _filled(storage)
        apply_op(replica, {"op": "hashes.incr", "key": "h", "field": "f7", "delta": 5}, NOW)
        apply_op(replica, {"op": "hashes.remove", "key": "h", "names": ["f8"]}, NOW)
        apply_op(replica, {"op": "zsets.incr", "key": "z", "member": "m9", "increment": 2.5}, NOW)
        apply_op(replica, {"op": "zsets.add", "key": "z", "scores": {"new": 1.0}}, NOW)
        batch = _checkpoint(storage, replica)
        ops = _fields_ops(batch)
        put_keys = sorted(o.key for o in ops if isinstance(o, Put))
        deleted = [o.key for o in ops if isinstance(o, Delete)]
        assert put_keys == sorted(
            [rec.field_key("hash", "h", "f7"), rec.field_key("zset", "z", "m9"),
             rec.field_key("zset", "z", "new")]
        )  # fmt: skip
        assert deleted == [rec.field_key("hash", "h", "f8")]
        assert not any(isinstance(o, DeleteRange) for o in ops)
        # The headers are small: the context, no entries.
        headers = [o for o in batch.ops if o.cf == "states" and isinstance(o, Put)]
        assert {o.key for o in headers} >= {b"hash/h", b"zset/z"}
        assert all(len(o.value) < 200 for o in headers), [len(o.value) for o in headers]
        # A checkpoint with nothing changed writes no field.
        apply_op(replica, {"op": "registers.set", "key": "other", "value": 1}, NOW)
        assert _fields_ops(_checkpoint(storage, replica)) == []
        expected = _reads(replica)
    with RocksStorage(tmp_path / "d") as storage:
        again = load_replica(storage, "r1", "inc1")
        assert _reads(again) == expected
        assert expected["hash"]["fields"]["f7"] == 12 and "f8" not in expected["hash"]["fields"]
        state = again.states[("zset", "z")]
        assert isinstance(state, ZSet) and state.touched == set()
        # After a restart, a change is again one field's record.
        apply_op(again, {"op": "hashes.set", "key": "h", "fields": {"f1": "x"}}, NOW)
        ops = _fields_ops(_checkpoint(storage, again))
        assert [o.key for o in ops] == [rec.field_key("hash", "h", "f1")]


def test_a_del_or_a_replaced_state_rewrites_every_record(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "d") as storage:
        replica = _filled(storage)
        apply_op(replica, {"op": "keys.delete", "key": "h"}, NOW)
        ops = _fields_ops(_checkpoint(storage, replica))
        assert [type(o) for o in ops] == [DeleteRange]  # the hash is empty
        prefix = rec.field_prefix("hash", "h")
        assert not list(storage.items("fields", start=prefix, end=rec.prefix_end(prefix)))
        # A state replaced as a whole (as a state sync may do) is written whole.
        fresh = ZSet()
        fresh.add("r9~x", replica.hlc.now(NOW), [("only", 1.0)])
        replica.states[("zset", "z")] = fresh
        replica.dirty.add(("zset", "z"))
        ops = _fields_ops(_checkpoint(storage, replica))
        assert [type(o) for o in ops] == [DeleteRange, Put]
        expected = _reads(replica)
    with RocksStorage(tmp_path / "d") as storage:
        again = load_replica(storage, "r1", "inc1")
        assert _reads(again) == expected
        assert again.states[("zset", "z")].value() == [("only", 1.0)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("what", "records"),
    [
        ("a field without its header", {("fields", rec.field_key("hash", "h", "f")): b"\x90"}),
        ("a malformed field key", {("states", b"hash/h"): None, ("fields", b"\x00"): b"\x90"}),
        ("a field whose dot is outside the context", {("states", b"hash/h"): None,
                                                      ("fields", rec.field_key("hash", "h", "f")):
                                                      rec.pack([[0, "r1~inc1", 99, [1, 0, "r1~inc1"], 1]])}),  # noqa: E501
    ],
)  # fmt: skip
def test_corrupt_field_records_are_refused(
    tmp_path: Path, what: str, records: dict[tuple[str, bytes], bytes | None]
) -> None:
    with RocksStorage(tmp_path / "d") as storage:
        load_replica(storage, "r1", "inc1")  # initialise the directory
        batch = WriteBatch()
        for (cf, key), value in records.items():
            batch.put(cf, key, rec.encode_state(ORMap()) if value is None else value)
        storage.write(batch, sync=True)
        with pytest.raises(CodecError):
            load_replica(storage, "r1", "inc1")


def test_field_keys_round_trip_and_never_share_a_prefix() -> None:
    for t, name, field in [("hash", "h", "f"), ("zset", "a\x00b", ""), ("hash", "é" * 300, "x/y")]:
        assert rec.decode_field_key(rec.field_key(t, name, field)) == ((t, name), field)
    # "ab" + field "c" and "a" + field "bc" differ (the name's length comes first).
    assert not rec.field_key("hash", "ab", "c").startswith(rec.field_prefix("hash", "a"))
    assert not rec.field_key("zset", "a", "x").startswith(rec.field_prefix("hash", "a"))


def test_a_large_set_is_stored_by_member_too(tmp_path: Path) -> None:
    with RocksStorage(tmp_path / "d") as storage:
        replica = load_replica(storage, "r1", "inc1")
        members = [f"m{i}" for i in range(N)]
        apply_op(replica, {"op": "sets.add", "key": "s", "members": members}, NOW)
        first = _fields_ops(_checkpoint(storage, replica))
        assert sum(isinstance(o, Put) for o in first) == N
        apply_op(replica, {"op": "sets.add", "key": "s", "members": ["new"]}, NOW)
        apply_op(replica, {"op": "sets.remove", "key": "s", "members": ["m3"]}, NOW)
        ops = _fields_ops(_checkpoint(storage, replica))
        assert [(type(o), o.key) for o in sorted(ops, key=lambda o: o.key)] == sorted(
            [(Put, rec.field_key("set", "s", "new")), (Delete, rec.field_key("set", "s", "m3"))],
            key=lambda t: t[1],
        )
        expected = apply_op(replica, {"op": "sets.get", "key": "s"}, NOW)
        states = {k: rec.encode_state(s) for k, s in replica.states.items()}
    with RocksStorage(tmp_path / "d") as storage:
        again = load_replica(storage, "r1", "inc1")
        assert apply_op(again, {"op": "sets.get", "key": "s"}, NOW) == expected
        assert {k: rec.encode_state(s) for k, s in again.states.items()} == states
        assert expected["size"] == N and "m3" not in expected["members"]


def _list_ops(batch: WriteBatch) -> list[tuple[type, bytes]]:
    return sorted(((type(o), o.key) for o in _fields_ops(batch)), key=lambda t: t[1])


def test_a_large_list_is_stored_by_element_and_a_push_writes_one_record(tmp_path: Path) -> None:
    from crdtkv.crdts import RList

    with RocksStorage(tmp_path / "d") as storage:
        replica = load_replica(storage, "r1", "inc1")
        for lo in range(0, N, 1_000):
            values = [f"v{i}" for i in range(lo, lo + 1_000)]
            apply_op(replica, {"op": "lists.rpush", "key": "l", "values": values}, NOW)
        first = _fields_ops(_checkpoint(storage, replica))
        assert sum(isinstance(o, Put) for o in first) == N
        state = replica.states[("list", "l")]
        assert isinstance(state, RList)
        head, tail, middle = state.order[0], state.order[-1], state.order[N // 2]
        apply_op(replica, {"op": "lists.lpush", "key": "l", "values": ["new"]}, NOW)
        apply_op(replica, {"op": "lists.rpop", "key": "l"}, NOW)
        apply_op(replica, {"op": "lists.set", "key": "l", "index": N // 2 + 1, "element": "x"}, NOW)
        new = state.order[0]
        assert new < head
        ops = _list_ops(_checkpoint(storage, replica))
        assert ops == sorted(
            [
                (Put, rec.field_key("list", "l", new)),
                (Delete, rec.field_key("list", "l", tail)),
                (Put, rec.field_key("list", "l", middle)),
            ],
            key=lambda t: t[1],
        )
        expected = apply_op(replica, {"op": "lists.range", "key": "l", "start": 0, "stop": -1}, NOW)
        states = {k: rec.encode_state(s) for k, s in replica.states.items()}
    with RocksStorage(tmp_path / "d") as storage:
        again = load_replica(storage, "r1", "inc1")
        got = apply_op(again, {"op": "lists.range", "key": "l", "start": 0, "stop": -1}, NOW)
        assert got == expected
        assert got["values"][0] == "new" and got["values"][N // 2 + 1] == "x"
        assert len(got["values"]) == N and got["values"][-1] == f"v{N - 2}"
        assert {k: rec.encode_state(s) for k, s in again.states.items()} == states
        # After a restart a push is again one record, and a DEL removes every record.
        apply_op(again, {"op": "lists.rpush", "key": "l", "values": ["end"]}, NOW)
        assert len(_fields_ops(_checkpoint(storage, again))) == 1
        apply_op(again, {"op": "keys.delete", "key": "l"}, NOW)
        assert [type(o) for o in _fields_ops(_checkpoint(storage, again))] == [DeleteRange]
        prefix = rec.field_prefix("list", "l")
        assert not list(storage.items("fields", start=prefix, end=rec.prefix_end(prefix)))


@pytest.mark.parametrize(
    ("what", "position", "value"),
    [
        ("malformed position", "not a position", "v"),
        ("outside the context", "a0r1~inc1!a5", "v"),
        ("a string or", "a0r1~inc1!a1", 7),
    ],
)
def test_corrupt_list_records_are_refused(
    tmp_path: Path, what: str, position: str, value: object
) -> None:
    from crdtkv.crdts import RList
    from crdtkv.crdts.causal import CausalContext

    with RocksStorage(tmp_path / "d") as storage:
        load_replica(storage, "r1", "inc1")
        batch = WriteBatch()
        batch.put("states", b"list/l", rec.encode_state(RList({}, CausalContext({"r1~inc1": 1}))))
        batch.put("fields", rec.field_key("list", "l", position), rec.pack(value))
        storage.write(batch, sync=True)
        with pytest.raises(CodecError, match=what):
            load_replica(storage, "r1", "inc1")


def test_a_large_vector_set_is_stored_by_element(tmp_path: Path) -> None:
    from crdtkv.crdts import VSet

    def vadd(replica: Replica, element: str, x: float, attrs: Any = None) -> None:
        op = {"op": "vsets.add", "key": "v", "element": element, "vector": [1.0, x, -x]}
        if attrs is not None:
            op["attributes"] = attrs
        apply_op(replica, op, NOW)

    with RocksStorage(tmp_path / "d") as storage:
        replica = load_replica(storage, "r1", "inc1")
        for i in range(N):
            vadd(replica, f"e{i}", float(i), {"i": i} if i % 2 else None)
        first = _fields_ops(_checkpoint(storage, replica))
        assert sum(isinstance(o, Put) for o in first) == N
        vadd(replica, "e7", 0.5)  # a new vector: one record
        apply_op(replica, {"op": "vsets.remove", "key": "v", "element": "e8"}, NOW)
        apply_op(
            replica,
            {"op": "vsets.setattr", "key": "v", "element": "e9", "new_attributes": {"z": 1}},
            NOW,
        )
        ops = _list_ops(_checkpoint(storage, replica))
        assert ops == [
            (Put, rec.field_key("vectorset", "v", "e7")),
            (Delete, rec.field_key("vectorset", "v", "e8")),
            (Put, rec.field_key("vectorset", "v", "e9")),
        ]
        query = {"op": "vsets.search", "key": "v", "query": [1.0, 3.0, -3.0], "truth": True}
        expected = apply_op(replica, query, NOW)
        state = replica.states[("vectorset", "v")]
        assert isinstance(state, VSet)
        encoded = rec.encode_state(state)
    with RocksStorage(tmp_path / "d") as storage:
        again = load_replica(storage, "r1", "inc1")
        assert rec.encode_state(again.states[("vectorset", "v")]) == encoded
        assert apply_op(again, query, NOW) == expected
        assert apply_op(again, {"op": "vsets.card", "key": "v"}, NOW) == {"card": N - 1}
        got = apply_op(again, {"op": "vsets.getattr", "key": "v", "element": "e9"}, NOW)
        assert got == {"attributes": {"z": 1}}
        emb = apply_op(again, {"op": "vsets.emb", "key": "v", "element": "e7"}, NOW)
        assert emb == {"vector": [1.0, 0.5, -0.5]}


def test_a_corrupt_vector_record_is_refused(tmp_path: Path) -> None:
    from crdtkv.crdts import VSet
    from crdtkv.crdts.causal import CausalContext

    stamp = [1, 0, "r1~inc1"]
    with RocksStorage(tmp_path / "d") as storage:
        load_replica(storage, "r1", "inc1")
        batch = WriteBatch()
        header = VSet({}, CausalContext({"r1~inc1": 1}))
        batch.put("states", rec.encode_state_key(("vectorset", "v")), rec.encode_state(header))
        bad = [["r1~inc1", 1, stamp, stamp, b"\x00\x00\x80\x7f", stamp, None]]  # +inf
        batch.put("fields", rec.field_key("vectorset", "v", "e"), rec.pack(bad))
        storage.write(batch, sync=True)
        with pytest.raises(CodecError, match="finite"):
            load_replica(storage, "r1", "inc1")

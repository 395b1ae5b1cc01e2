"""Grouped commits: the ops of one batch share one dot and one log record (issue 19).

What must hold: the group's deltas, joined into any replica, give what the ops
gave at the source (also when several ops touch one key, or one op fails); its
bytes are exactly what the per-entry encoding of earlier builds gives (the
storage and wire formats are unchanged); and a group never grows after it was
handed to storage, after a remote group, or past its byte bound.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from crdtkv.errors import CrdtkvError
from crdtkv.ops.table import apply_op
from crdtkv.replica import keyspace, wire
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import DeltaGroup, LogEntry, Replica
from crdtkv.replica.persist import build_batch, encode_entries

NOW = 1_700_000_000_000

BATCH: list[dict[str, Any]] = [
    {"op": "registers.set", "key": "r", "value": "a"},
    {"op": "counters.incr", "key": "c", "delta": 2},
    {"op": "sets.add", "key": "s", "members": ["x", "y"]},
    {"op": "registers.set", "key": "r", "value": "b", "ttl_ms": 60_000},
    {"op": "sets.remove", "key": "s", "members": ["x"]},
    {"op": "counters.incr", "key": "c", "delta": 5},
    {"op": "hashes.set", "key": "h", "fields": {"f": "1", "g": "2"}},
    {"op": "hashes.delete", "key": "h", "fields": ["g"]},
    {"op": "hlls.add", "key": "u", "items": ["p", "q"]},
    {"op": "lists.rpush", "key": "l", "values": ["1", "2"]},
    {"op": "lists.lpop", "key": "l"},
    {"op": "registers.set", "key": "gone", "value": 1},
    {"op": "registers.delete", "key": "gone"},
]

READS: list[dict[str, Any]] = [
    {"op": "registers.get", "key": "r"},
    {"op": "counters.get", "key": "c"},
    {"op": "sets.members", "key": "s"},
    {"op": "hashes.getall", "key": "h"},
    {"op": "hlls.count", "key": "u"},
    {"op": "lists.range", "key": "l"},
    {"op": "keys.ttl", "key": "r"},
]


def _read_all(r: Replica) -> list[Any]:
    out = []
    for op in [*READS, {"op": "registers.get", "key": "gone"}]:
        try:
            out.append(apply_op(r, op, NOW))
        except CrdtkvError as e:
            out.append(e.code)
    return out


def _grouped(r: Replica, ops: list[dict[str, Any]]) -> list[Any]:
    r.open_group()
    try:
        out = []
        for op in ops:
            try:
                out.append(apply_op(r, op, NOW))
            except CrdtkvError as e:
                out.append(e.code)
        return out
    finally:
        r.close_group()


def test_a_batch_is_one_dot_and_one_record_and_joins_to_what_its_ops_did() -> None:
    a, single = Replica("a", "1"), Replica("a", "1")
    results = _grouped(a, BATCH)
    singles = [apply_op(single, op, NOW) for op in BATCH]
    assert results == singles  # each op answers as it would alone
    (entry,) = a.take_pending()
    assert entry.group.dot == (a.actor, 1) and a.seq == 1
    assert len(single.take_pending()) == len(BATCH)  # the old way: a record per op
    # The group's bytes are ready (encoded as the ops committed) and decode to its deltas.
    (blob,) = encode_entries(a, [entry])
    raw_keys = [(ns, name) for ns, name, _ in rec.unpack(blob, "group")[1]]
    assert sorted(raw_keys) == sorted(entry.group.deltas)  # each key once, joined
    decoded = rec.decode_group(rec.unpack(blob, "group"))
    assert decoded.dot == entry.group.dot and decoded.deltas == entry.group.deltas
    # A replica that joins the one group reads what the source reads, key by key.
    b = Replica("b", "1")
    assert b.apply_remote(decoded, "a~1", NOW)
    assert _read_all(b) == _read_all(a) == _read_all(single)
    assert {k: v for k, v in b.states.items()} == {k: v for k, v in a.states.items()}


def test_a_failing_op_changes_nothing_and_the_others_still_share_the_group() -> None:
    a = Replica("a", "1")
    ops = [
        {"op": "registers.set", "key": "k", "value": "v"},
        {"op": "counters.incr", "key": "k", "delta": 1},  # "v" is no integer: refused
        {"op": "sets.add", "key": "k", "members": ["m"]},  # wrong type: refused
        {"op": "counters.incr", "key": "n", "delta": 1},
    ]
    results = _grouped(a, ops)
    assert results[1] == results[2] == "wrong_type"
    (entry,) = a.take_pending()
    keys = {("string", "k"), ("meta", "k"), ("string", "n"), ("meta", "n")}
    assert set(entry.group.deltas) == keys
    assert apply_op(a, {"op": "counters.get", "key": "n"}, NOW) == {"value": 1}
    assert apply_op(a, {"op": "registers.get", "key": "k"}, NOW) == {"value": "v"}


def test_a_batch_that_changes_nothing_logs_nothing() -> None:
    a = Replica("a", "1")
    _grouped(
        a,
        [{"op": "registers.get", "key": "x"}, {"op": "sets.remove", "key": "s", "members": ["m"]}],
    )
    assert a.take_pending() == [] and a.seq == 0 and not a.encoded


def test_the_group_bytes_are_the_per_entry_encoding_of_earlier_builds() -> None:
    a = Replica("a", "1")
    ops = [{"op": "registers.set", "key": f"k{i}", "value": i} for i in range(40)]
    _grouped(a, ops)  # 80 deltas: a 16-bit array header
    (entry,) = a.take_pending()
    (blob,) = encode_entries(a, [entry])
    assert blob == rec.pack(rec.encode_group(entry.group))
    assert wire.log_record("", blob) == rec.encode_log_entry(entry)
    remote = LogEntry(7, "b~2", entry.group)
    assert wire.log_record("b~2", blob) == rec.encode_log_entry(remote)
    for n in (0, 1, 15, 16, 70_000):
        header = wire._array_header(n)
        assert header == msgpack.packb([None] * n)[: len(header)]
    # What the group commit writes: the same bytes as before the change.
    batch = build_batch(a, [entry], checkpoint=False, blobs=[blob])
    (put,) = [op for op in batch.ops if getattr(op, "cf", "") == "log"]
    assert put.value == rec.encode_log_entry(entry)
    assert rec.decode_log_entry(entry.pos, put.value).group.deltas == entry.group.deltas


def test_ungrouped_entries_are_encoded_once_at_the_commit() -> None:
    a = Replica("a", "1")
    apply_op(a, {"op": "counters.incr", "key": "c", "delta": 1}, NOW)
    entries = a.take_pending()
    assert not a.encoded
    assert encode_entries(a, entries) == [rec.pack(rec.encode_group(entries[0].group))]


def test_storage_taking_the_records_closes_the_group() -> None:
    a = Replica("a", "1")
    a.open_group()
    apply_op(a, {"op": "counters.incr", "key": "c", "delta": 1}, NOW)
    first = a.take_pending()  # a group commit in the middle of the batch
    apply_op(a, {"op": "counters.incr", "key": "c", "delta": 1}, NOW)
    a.close_group()
    second = a.take_pending()
    assert [e.group.dot[1] for e in first + second] == [1, 2]
    blobs = encode_entries(a, first + second)
    # The first record's bytes were fixed when it was taken: the second op is not in them.
    assert rec.decode_group(rec.unpack(blobs[0], "g")).deltas == first[0].group.deltas
    assert apply_op(a, {"op": "counters.get", "key": "c"}, NOW) == {"value": 2}


def test_a_remote_group_closes_the_open_group() -> None:
    a, b = Replica("a", "1"), Replica("b", "1")
    apply_op(b, {"op": "sets.add", "key": "s", "members": ["m"]}, NOW)
    (remote,) = b.take_pending()
    a.open_group()
    apply_op(a, {"op": "counters.incr", "key": "c", "delta": 1}, NOW)
    assert a.apply_remote(remote.group, "b~1", NOW)
    apply_op(a, {"op": "sets.remove", "key": "s", "members": ["m"]}, NOW)  # depends on b's
    a.close_group()
    entries = a.take_pending()
    assert [(e.origin, e.group.dot) for e in entries] == [
        ("", (a.actor, 1)),
        ("b~1", remote.group.dot),
        ("", (a.actor, 2)),
    ]


def test_a_group_past_its_byte_bound_starts_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyspace, "GROUP_BYTES_MAX", 2_000)
    a = Replica("a", "1")
    _grouped(a, [{"op": "registers.set", "key": f"k{i}", "value": "x" * 100} for i in range(60)])
    entries = a.take_pending()
    assert len(entries) > 2
    blobs = encode_entries(a, entries)
    # Each group stops at the first op that takes it past the bound.
    assert all(len(b) < 2_000 + 400 for b in blobs)
    keys = [k for e in entries for k in e.group.deltas if k[0] == "string"]
    assert keys == [("string", f"k{i}") for i in range(60)]
    assert [e.group.dot[1] for e in entries] == list(range(1, len(entries) + 1))


def test_a_group_delta_is_not_an_object_an_op_still_holds() -> None:
    # The first op's delta of a key may be shared; a later op of the same key joins
    # into the group's own copy.
    a = Replica("a", "1")
    a.open_group()
    apply_op(a, {"op": "sets.add", "key": "s", "members": ["x"]}, NOW)
    (entry,) = a.pending
    first = entry.group.deltas[("set", "s")]
    snapshot = first.copy()
    apply_op(a, {"op": "sets.add", "key": "s", "members": ["y"]}, NOW)
    a.close_group()
    assert first == snapshot
    assert entry.group.deltas[("set", "s")] != snapshot
    assert isinstance(entry.group, DeltaGroup)

"""Peer records: typed in memory, the same bytes on disk as before they were typed."""

from __future__ import annotations

import msgpack
import pytest

from crdtkv.errors import CodecError
from crdtkv.replica import records as rec
from crdtkv.replica.peers import PeerBook, PeerRecord
from crdtkv.replica.persist import build_batch, load_replica
from crdtkv.storage.base import Put, WriteBatch
from crdtkv.storage.memory import MemoryStorage
from replication.protocol import Replication

# meta "peers" as every earlier build wrote it: peer -> [acked, incarnation],
# a pending resync as acked -1.
OLD_BYTES = msgpack.packb({"r2": [7, "inc2"], "r3": [-1, "inc3"]}, use_bin_type=True)
RECORDS = {"r2": PeerRecord(7, "inc2"), "r3": PeerRecord(0, "inc3", resync=True)}


def test_records_encode_to_the_bytes_earlier_builds_wrote() -> None:
    assert rec.encode_peers(RECORDS) == OLD_BYTES
    assert rec.decode_peers(OLD_BYTES) == RECORDS
    assert rec.encode_peers({}) == rec.pack({})


def test_the_bound_of_acknowledged_dots_is_kept_and_an_old_record_is_not_trusted() -> None:
    with_vv = {"r2": PeerRecord(7, "inc2", acked_vv={"r1~a": 5, "r2~b": 2})}
    assert rec.decode_peers(rec.encode_peers(with_vv)) == with_vv
    with pytest.raises(CodecError, match="version vector"):
        rec.decode_peers(msgpack.packb({"r2": [7, "inc2", [1]]}, use_bin_type=True))
    from replication.peer_state import PeerState

    # An earlier build's record says nothing of the dots acknowledged: a restart of
    # that peer is then taken for a loss of data (a state sync), unless nothing was.
    assert not PeerState.restored("r2", PeerRecord(7, "inc2")).acked_vv_known
    assert PeerState.restored("r2", PeerRecord(0, "inc2")).acked_vv_known
    restored = PeerState.restored("r2", with_vv["r2"])
    assert restored.acked_vv_known and restored.acked_vv == {"r1~a": 5, "r2~b": 2}
    assert restored.record() == with_vv["r2"]


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        {"r2": [1]},
        {"r2": ["1", "inc"]},
        {"r2": [True, "inc"]},
        {"r2": [1, 2]},
        {3: [1, "i"]},
    ],
)
def test_malformed_peer_records_are_codec_errors(data: object) -> None:
    with pytest.raises(CodecError, match="meta peers"):
        rec.decode_peers(msgpack.packb(data, use_bin_type=True))


def _peer_puts(batch: WriteBatch) -> list[bytes]:
    return [op.value for op in batch.ops if isinstance(op, Put) and op.key == rec.META_PEERS]


def test_a_data_dir_written_before_is_read_and_its_records_restored() -> None:
    storage = MemoryStorage()
    load_replica(storage, "r1", "inc1")
    batch = WriteBatch()
    batch.put("meta", rec.META_PEERS, OLD_BYTES)
    storage.write(batch, sync=True)
    replica = load_replica(storage, "r1", "unused")
    assert replica.peer_book.get("r2") == RECORDS["r2"]
    rep = Replication(replica, ["r2", "r3"], boot=1)
    assert (rep.peers["r2"].acked, rep.peers["r2"].incarnation) == (7, "inc2")
    assert not rep.peers["r2"].resync
    assert rep.peers["r3"].resync and rep.peers["r3"].acked == 0
    # Written back unchanged at the next checkpoint.
    assert _peer_puts(build_batch(replica, [], checkpoint=True)) == [OLD_BYTES]


def test_records_are_written_when_they_change_and_only_then() -> None:
    storage = MemoryStorage()
    replica = load_replica(storage, "r1", "inc1")
    book = replica.peer_book
    assert _peer_puts(build_batch(replica, [], checkpoint=False)) == []
    book.record("r2", PeerRecord(3, "inc2"))
    # Not only at checkpoints: the log is truncated by them (B9).
    assert _peer_puts(build_batch(replica, [], checkpoint=False)) == [
        rec.encode_peers({"r2": PeerRecord(3, "inc2")})
    ]
    book.record("r2", PeerRecord(3, "inc2"))  # the same record: nothing to write
    assert _peer_puts(build_batch(replica, [], checkpoint=False)) == []
    book.record("r2", PeerRecord(4, "inc2"))
    storage.write(build_batch(replica, [], checkpoint=False), sync=True)
    assert load_replica(storage, "r1", "unused").peer_book.get("r2") == PeerRecord(4, "inc2")


def test_the_peer_book_is_changed_only_through_its_methods() -> None:
    book = PeerBook()
    book.learn_synced({"a~1": 3})
    book.learn_synced({"a~1": 2, "b~1": 1})
    assert book.synced_vv == {"a~1": 3, "b~1": 1}
    assert book.take_records(force=False) is None
    assert book.take_records(force=True) == {}
    book.record("r2", PeerRecord(1, "x"))
    taken = book.take_records(force=False)
    assert taken == {"r2": PeerRecord(1, "x")}
    taken["r3"] = PeerRecord(2, "y")  # a copy: the book keeps its own
    assert book.get("r3") is None and book.take_records(force=False) is None

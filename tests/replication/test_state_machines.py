"""The state sync's two state machines, transition by transition (the tables
in replication/sync_sender.py and replication/sync_receiver.py), driven by
hand between two in-process replicas, and the typed protocol errors."""

from __future__ import annotations

import pytest

from crdtkv.errors import ProtocolError
from replication.digest import BUCKETS
from replication.messages import (
    Message,
    Push,
    Reply,
    SyncDigest,
    SyncDone,
    SyncKeys,
    SyncStates,
)
from replication.protocol import Settings
from replication.sync_sender import Stage
from simulations.harness import SimCluster, SimNode

KEYS = 40


def _behind() -> tuple[SimCluster, SimNode, SimNode]:
    """r0 holds KEYS registers that r1 lacks, and its log no longer reaches
    back to what r1 acknowledged: r0 must catch r1 up by a state sync."""
    c = SimCluster(2, 5, settings=Settings(log_bytes_max=300, sync_keys_max=1, sync_bytes_max=1))
    r0, r1 = c.nodes["r0"], c.nodes["r1"]
    c.run_for(50)  # a first exchange: each knows the other's incarnation
    for i in range(KEYS):
        r0.core.apply({"op": "registers.set", "key": f"k{i}", "value": i}, c.now_ms)
    r0.commit_now()
    assert not r0.rep.log.covers(r0.rep.peers["r1"].acked)
    return c, r0, r1


def _send(c: SimCluster, src: SimNode, dst: SimNode) -> tuple[Message, Reply]:
    out = src.rep.next_message(dst.rid, c.now_ms)
    assert out is not None
    msg, _ = out
    reply = dst.rep.receive(src.rid, msg, c.now_ms)
    dst.commit_now()
    return msg, reply


def test_a_sync_run_walks_digest_keys_states_done_and_completes() -> None:
    c, r0, r1 = _behind()
    peer = r0.rep.peers["r1"]
    stages = []
    kinds = []
    while True:
        msg, reply = _send(c, r0, r1)
        kinds.append(type(msg).__name__)
        assert peer.sync is not None
        stages.append(peer.sync.stage)
        r0.rep.receive_reply("r1", reply, c.now_ms)
        if peer.sync is None:
            break
    assert stages[0] is Stage.DIGEST and kinds[0] == "SyncDigest"
    assert stages[-1] is Stage.DONE and kinds[-1] == "SyncDone"
    # sync_keys_max=1 and sync_bytes_max=1: one bucket and one state per message;
    # each key is two states (the string's and its KeyMeta).
    assert kinds.count("SyncStates") == 2 * KEYS
    assert Stage.KEYS in stages and Stage.STATES in stages
    # Each stage's requests are the ones the table names.
    expected = {
        Stage.DIGEST: "SyncDigest",
        Stage.KEYS: "SyncKeys",
        Stage.STATES: "SyncStates",
        Stage.DONE: "SyncDone",
    }
    assert all(expected[s] == k for s, k in zip(stages, kinds, strict=True))
    assert peer.syncs_completed == 1 and not peer.resync
    assert peer.acked == r0.replica.log_pos
    assert r1.encoded_state() == r0.encoded_state()
    assert r0.replica.snapshots == []  # the run's snapshot is closed


def test_a_lost_request_keeps_the_stage_and_puts_back_what_it_carried() -> None:
    c, r0, r1 = _behind()
    peer = r0.rep.peers["r1"]
    while peer.sync is None or peer.sync.stage is not Stage.STATES:
        _, reply = _send(c, r0, r1)
        r0.rep.receive_reply("r1", reply, c.now_ms)
    run = peer.sync
    want = sorted(run.want)
    out = r0.rep.next_message("r1", c.now_ms)
    assert out is not None and isinstance(out[0], SyncStates)
    assert len(run.want) == len(want) - 1
    r0.rep.request_failed("r1")
    assert peer.sync is run and run.stage is Stage.STATES
    assert sorted(run.want) == want and run.inflight_want == run.inflight_shipped == []


def test_a_restart_reply_abandons_the_run_and_a_new_run_starts() -> None:
    c, r0, r1 = _behind()
    peer = r0.rep.peers["r1"]
    _, reply = _send(c, r0, r1)  # SyncDigest
    r0.rep.receive_reply("r1", reply, c.now_ms)
    first = peer.sync
    assert first is not None and first.stage is Stage.KEYS
    r1.rep.incoming.clear()  # as after a restart of r1: it lost the run
    msg, reply = _send(c, r0, r1)
    assert isinstance(msg, SyncKeys) and reply.restart
    r0.rep.receive_reply("r1", reply, c.now_ms)
    assert peer.sync is None and r0.rep.syncs_restarted == 1
    assert r0.replica.snapshots == []
    msg, _ = _send(c, r0, r1)
    assert isinstance(msg, SyncDigest) and msg.sync_id != first.sync_id


def test_a_reply_of_another_run_changes_nothing() -> None:
    c, r0, r1 = _behind()
    peer = r0.rep.peers["r1"]
    _, reply = _send(c, r0, r1)
    stale = Reply(reply.head, -1, reply.sync_id + 1, buckets=(1, 2, 3))
    r0.rep.receive_reply("r1", stale, c.now_ms)
    assert peer.sync is not None and peer.sync.stage is Stage.DIGEST and peer.sync.buckets == []


def test_the_receiver_answers_restart_for_a_run_it_does_not_know() -> None:
    c, r0, r1 = _behind()
    head = r0.rep.header()
    for msg in (
        SyncKeys(head, 99, (("registers", "k1", 5),)),
        SyncStates(head, 99, ()),
        SyncDone(head, 99, r0.replica.applied, 1, 0),
    ):
        reply = r1.rep.receive("r0", msg, c.now_ms)
        assert reply.restart and reply.sync_id == 99
    assert "r0" not in r1.rep.incoming


def test_the_receiver_replaces_a_run_by_a_new_digest_and_restarts_a_done_missing_states() -> None:
    c, r0, r1 = _behind()
    head = r0.rep.header()
    blank = (0,) * BUCKETS
    r1.rep.receive("r0", SyncDigest(head, 5, blank), c.now_ms)
    run = r1.rep.incoming["r0"]
    r1.rep.receive("r0", SyncDigest(head, 5, blank), c.now_ms)  # the same run again
    assert r1.rep.incoming["r0"] is run
    r1.rep.receive("r0", SyncDigest(head, 6, blank), c.now_ms)  # another run
    assert r1.rep.incoming["r0"] is not run and r1.rep.incoming["r0"].sync_id == 6
    # SyncDone names one state the receiver never got: restart, the run is gone.
    reply = r1.rep.receive("r0", SyncDone(head, 6, r0.replica.applied, 1, 1), c.now_ms)
    assert reply.restart and "r0" not in r1.rep.incoming
    assert r1.replica.applied.vv == {}


def test_a_new_incarnation_of_the_sender_voids_what_it_shipped() -> None:
    c, r0, r1 = _behind()
    head = r0.rep.header()
    r1.rep.receive("r0", SyncDigest(head, 5, (0,) * BUCKETS), c.now_ms)
    assert "r0" in r1.rep.incoming
    c.wipe("r0")
    r1.rep.receive("r0", Push(c.nodes["r0"].rep.header(), 0, 0, ()), c.now_ms)
    assert "r0" not in r1.rep.incoming


# -- typed protocol errors -------------------------------------------------------------------------


def test_protocol_violations_are_typed_errors_that_change_nothing() -> None:
    c, r0, r1 = _behind()
    head = r0.rep.header()
    heard = r1.rep.peers["r0"].messages_received
    with pytest.raises(ProtocolError, match="not a request"):
        r1.rep.receive("r0", Reply(head, 3), c.now_ms)
    with pytest.raises(ProtocolError, match="outside"):
        r1.rep.receive("r0", Push(head, 5, 4, ()), c.now_ms)
    assert r1.rep.peers["r0"].messages_received == heard  # refused before any bookkeeping
    with pytest.raises(ProtocolError, match=f"{BUCKETS} buckets"):
        r1.rep.receive("r0", SyncDigest(head, 5, (0, 1)), c.now_ms)
    assert "r0" not in r1.rep.incoming
    with pytest.raises(ProtocolError, match="expected a reply"):
        r0.rep.receive_reply("r1", SyncDigest(head, 5, ()), c.now_ms)
    assert ProtocolError.status == 400


def test_a_reply_never_makes_a_run_want_more_keys_than_it_compared() -> None:
    c, r0, r1 = _behind()
    peer = r0.rep.peers["r1"]
    _, reply = _send(c, r0, r1)  # SyncDigest
    r0.rep.receive_reply("r1", reply, c.now_ms)
    out = r0.rep.next_message("r1", c.now_ms)
    assert out is not None and isinstance(out[0], SyncKeys)
    sent = len(out[0].keys)
    assert 1 <= sent < 10
    greedy = tuple(("registers", f"x{i}") for i in range(1_000))
    r0.rep.receive_reply("r1", Reply(reply.head, -1, out[0].sync_id, want=greedy), c.now_ms)
    assert peer.sync is not None and len(peer.sync.want) == sent

"""The node core, driven by hand: events in, actions out, no I/O and no clock.

Each test feeds ``NodeCore`` the events a shell would (requests, storage
writes finishing, peer messages, ticks) and checks the actions it returns,
so the rules every shell relies on are pinned here once: answers wait for
durability, one write at a time with everything pending in it, sessions are
parked, admitted or refused, a failed write stops the node.
"""

from __future__ import annotations

from typing import Any

import pytest

from crdtkv.errors import BadRequest, SessionUnavailable, StorageError
from crdtkv.node.core import (
    APPLIED_WAITERS_MAX,
    Admit,
    Answer,
    Durable,
    NodeCore,
    Ready,
    Reply,
    Write,
)
from crdtkv.replica.persist import WAL_SYNC_MS, Checkpointer, load_replica
from crdtkv.sessions import SessionToken
from crdtkv.storage.memory import MemoryStorage
from replication import messages
from replication.protocol import Replication

T0 = 1_700_000_000_000


def incr(key: str = "c", by: int = 1) -> dict[str, Any]:
    return {"op": "counters.incr", "key": key, "delta": by}


def make_core(durability: str = "fsync", rid: str = "r1") -> tuple[NodeCore, MemoryStorage]:
    storage = MemoryStorage()
    replica = load_replica(storage, rid, "inc", wal=durability == "wal")
    return NodeCore(replica, durability=durability, now_ms=T0), storage


def write_all(core: NodeCore, storage: MemoryStorage, now_ms: int = T0) -> list[Any]:
    """Carry out every Write (as a shell would) until none is left; the other actions."""
    out: list[Any] = []
    pending = core.take_actions()
    while pending:
        a = pending.pop(0)
        if isinstance(a, Write):
            storage.write(a.batch, sync=a.sync)
            core.write_done(now_ms)
            pending += core.take_actions()
        else:
            out.append(a)
    return out


class Peer:
    """A second replica, r2, that pushes to the core under test (r1), by hand."""

    def __init__(self, core: NodeCore) -> None:
        self.core, self.storage = make_core(rid="r2")
        self.rep = Replication(self.core.replica, ["r1"], boot=1)
        self.core.attach(self.rep)
        core.attach(Replication(core.replica, ["r2"], boot=1))

    def write(self, op: dict[str, Any]) -> None:
        self.core.apply(op, T0)
        self.core.flush(T0)
        write_all(self.core, self.storage)

    def send(self, to: NodeCore, ticket: int) -> None:
        """r2's next message, received by ``to`` (its reply is delivered when released)."""
        out = self.rep.next_message("r1", T0)
        assert out is not None
        to.peer_message(ticket, "r2", messages.decode(messages.encode(out[0])), T0)

    def complete(self, to: NodeCore, storage: MemoryStorage) -> list[Any]:
        """``to`` writes what it merged; its reply reaches r2.  The other actions."""
        to.flush(T0)
        actions = write_all(to, storage)
        (reply,) = [a for a in actions if isinstance(a, Reply)]
        assert reply.reply is not None
        self.rep.receive_reply("r1", reply.reply, T0)
        return [a for a in actions if not isinstance(a, Reply)]

    def handshake(self, to: NodeCore, storage: MemoryStorage) -> None:
        """One exchange, so that r2 knows r1's incarnation (pushes name it)."""
        self.send(to, 0)
        self.complete(to, storage)


def other_writes(vv: dict[str, int]) -> SessionToken:
    return SessionToken().merge(vv, (T0, 0))


# -- answers wait for durability ----------------------------------------------------------------


def test_a_write_is_answered_only_after_its_batch_is_written() -> None:
    core, storage = make_core()
    assert core.apply(incr(), T0) == {"value": 1}
    assert core.finish(1, None) is None  # not durable yet: no answer
    assert core.take_actions() == []
    core.flush(T0)
    (write,) = core.take_actions()
    assert isinstance(write, Write) and write.sync
    storage.write(write.batch, sync=True)
    core.write_done(T0)
    actions = core.take_actions()
    answers = [a for a in actions if isinstance(a, Answer)]
    assert len(answers) == 1 and answers[0].ticket == 1 and answers[0].error is None
    assert answers[0].token.vv == {"r1~inc": 1}
    assert any(isinstance(a, Durable) and len(a.entries) == 1 for a in actions)


def test_a_read_with_nothing_pending_is_answered_at_once() -> None:
    core, storage = make_core()
    core.apply(incr(), T0)
    core.flush(T0)
    write_all(core, storage)
    assert core.apply({"op": "counters.get", "key": "c"}, T0) == {"value": 1}
    token = core.finish(2, None)
    assert token is not None and token.vv == {"r1~inc": 1}


def test_a_read_that_saw_an_unwritten_write_waits_for_it() -> None:
    core, storage = make_core()
    core.apply(incr(), T0)
    core.apply({"op": "counters.get", "key": "c"}, T0)
    assert core.finish(7, None) is None  # it saw value 1, which is not durable yet
    core.flush(T0)
    assert [a.ticket for a in write_all(core, storage) if isinstance(a, Answer)] == [7]


def test_group_commit_one_write_in_flight_the_rest_share_the_next() -> None:
    core, storage = make_core()
    core.apply(incr(), T0)
    core.finish(1, None)
    core.flush(T0)
    (first,) = core.take_actions()
    for ticket in (2, 3, 4):  # arrive while the first batch is being written
        core.apply(incr(), T0)
        core.finish(ticket, None)
    core.flush(T0)  # a write is in flight: nothing new starts
    assert core.take_actions() == []
    assert isinstance(first, Write)
    storage.write(first.batch, sync=True)
    core.write_done(T0)
    actions = core.take_actions()
    assert [a.ticket for a in actions if isinstance(a, Answer)] == [1]
    (second,) = [a for a in actions if isinstance(a, Write)]  # all three in one batch
    storage.write(second.batch, sync=True)
    core.write_done(T0)
    answered = [a.ticket for a in core.take_actions() if isinstance(a, Answer)]
    assert answered == [2, 3, 4]
    assert core.stats.batches_written == 2 and core.stats.entries_written == 4


def test_the_answers_one_write_releases_share_one_token_of_what_it_made_durable() -> None:
    core, storage = make_core()
    core.apply(incr(), T0)
    core.finish(1, None)
    core.flush(T0)
    (first,) = core.take_actions()
    for ticket in (2, 3, 4):  # each token, made at its finish, has another clock
        core.apply(incr(str(ticket)), T0)
        core.finish(ticket, None)
    # One with a session of its own, covered by what the write makes durable.
    core.apply(incr(), T0)
    core.finish(5, SessionToken().merge({"r1~inc": 2}, (T0 - 10, 0)))
    # One whose session names writes this replica has not applied: its own token.
    core.apply(incr(), T0)
    elsewhere = SessionToken().merge({"r9~x": 3}, (T0, 0))
    core.finish(6, elsewhere)
    assert isinstance(first, Write)
    storage.write(first.batch, sync=True)
    core.write_done(T0)
    actions = core.take_actions()
    (second,) = [a for a in actions if isinstance(a, Write)]
    storage.write(second.batch, sync=True)
    core.write_done(T0)
    answers = {a.ticket: a.token for a in core.take_actions() if isinstance(a, Answer)}
    assert sorted(answers) == [2, 3, 4, 5, 6]
    shared = answers[2]
    assert answers[3] is shared and answers[4] is shared and answers[5] is shared
    # The shared token names exactly what the write made durable, and the clock then.
    r = core.replica
    assert shared.vv == {"r1~inc": 6} == r.durable_vv
    assert shared.hlc == (r.hlc.wall_ms, r.hlc.logical)
    assert answers[6] is not shared and answers[6].vv == {"r1~inc": 6, "r9~x": 3}


def test_a_group_is_one_dot_one_record_and_one_durable_entry() -> None:
    core, storage = make_core()
    with core.group():
        assert core.apply(incr("a"), T0) == {"value": 1}
        assert core.apply(incr("a", 2), T0) == {"value": 3}
        assert core.apply(incr("b"), T0) == {"value": 1}
    assert core.finish(1, None) is None
    core.flush(T0)
    actions = write_all(core, storage)
    (durable,) = [a for a in actions if isinstance(a, Durable)]
    assert len(durable.entries) == 1 and durable.entries[0].group.dot == ("r1~inc", 1)
    (answer,) = [a for a in actions if isinstance(a, Answer)]
    assert answer.token.vv == {"r1~inc": 1}
    # What was written loads back: one log record, both keys.
    again = load_replica(storage, "r1", "inc2")
    assert core.replica.log_pos == again.log_pos == 1
    assert again.states == core.replica.states


def test_nothing_to_write_starts_no_write() -> None:
    core, _ = make_core()
    with pytest.raises(BadRequest):
        core.apply({"op": "counters.incr", "key": "", "delta": 1}, T0)  # refused: no change
    core.flush(T0)
    assert core.take_actions() == []
    assert not core.writing


# -- sessions ---------------------------------------------------------------------------------


def test_a_covered_session_is_served_and_an_uncovered_one_parked_then_admitted() -> None:
    core, storage = make_core()
    peer = Peer(core)
    peer.handshake(core, storage)
    assert core.admit(1, SessionToken(), 100, writes=False, now_ms=T0) is True
    token = other_writes({"r2~inc": 2})  # the session saw two writes of r2
    assert core.admit(2, token, 100, writes=False, now_ms=T0) is False
    assert core.parked == 1
    peer.write(incr("k"))
    peer.send(core, 10)  # one of them: still parked
    assert not [a for a in peer.complete(core, storage) if isinstance(a, Admit)]
    assert core.parked == 1
    peer.write(incr("k"))
    peer.send(core, 11)  # both: admitted
    assert Admit(2, None) in core.take_actions()
    assert core.parked == 0


def test_a_parked_session_is_refused_at_its_deadline() -> None:
    core, _ = make_core()
    token = other_writes({"r2~x": 1})
    assert core.admit(5, token, 250, writes=True, now_ms=T0) is False
    assert core.next_deadline_ms() == T0 + 250
    core.tick(T0 + 249)
    assert core.take_actions() == []
    core.tick(T0 + 250)
    (refusal,) = core.take_actions()
    assert isinstance(refusal, Admit) and isinstance(refusal.error, SessionUnavailable)
    assert core.stats.refusals == 1 and core.parked == 0


def test_no_wait_or_too_many_waiting_is_refused_at_once() -> None:
    core, _ = make_core()
    token = other_writes({"r2~x": 1})
    with pytest.raises(SessionUnavailable):
        core.admit(1, token, 0, writes=False, now_ms=T0)
    for t in range(APPLIED_WAITERS_MAX):
        assert core.admit(100 + t, token, 1_000, writes=False, now_ms=T0) is False
    with pytest.raises(SessionUnavailable):
        core.admit(1, token, 1_000, writes=False, now_ms=T0)


def test_a_write_absorbs_the_session_clock_and_refuses_one_too_far_ahead() -> None:
    core, _ = make_core()
    ahead = SessionToken().merge({}, (T0 + 200, 3))
    assert core.admit(1, ahead, 100, writes=True, now_ms=T0) is True
    core.apply(incr(), T0)
    assert core.replica.hlc.last >= (T0 + 200, 3)
    too_far = SessionToken().merge({}, (T0 + 10_000_000, 0))
    with pytest.raises(BadRequest):
        core.admit(2, too_far, 100, writes=True, now_ms=T0)


def test_the_shells_own_timer_expires_a_parked_request() -> None:
    core, _ = make_core()
    token = other_writes({"r2~x": 1})
    core.admit(3, token, 100, writes=False, now_ms=T0)
    err = core.expire(3)
    assert isinstance(err, SessionUnavailable)
    assert core.expire(3) is None  # already gone


# -- checkpoints, wal, failure ------------------------------------------------------------------


def test_a_checkpoint_request_is_ready_after_the_next_write_carries_it() -> None:
    core, storage = make_core()
    core.apply(incr(), T0)
    core.flush(T0)
    write_all(core, storage)
    assert core.replica.checkpoint_pos == 0
    core.checkpoint(9)
    core.flush(T0)
    actions = write_all(core, storage)
    assert Ready(9) in actions
    assert core.replica.checkpoint_pos == core.replica.log_pos == 1


def test_wal_mode_syncs_at_most_every_interval_and_the_timer_asks_for_it() -> None:
    core, storage = make_core("wal")
    core.apply(incr(), T0)
    core.flush(T0)
    (w,) = core.take_actions()
    assert isinstance(w, Write) and not w.sync  # the first sync is not due yet
    storage.write(w.batch, sync=False)
    core.write_done(T0)
    core.take_actions()
    assert core.replica.durable_vv != core.replica.applied.vv
    due = core.next_deadline_ms()
    assert due is not None and due <= T0 + WAL_SYNC_MS
    core.tick(T0 + WAL_SYNC_MS)
    (sync,) = [a for a in core.take_actions() if isinstance(a, Write)]
    assert sync.sync
    storage.write(sync.batch, sync=True)
    core.write_done(T0 + WAL_SYNC_MS)
    assert core.replica.durable_vv == core.replica.applied.vv


def test_a_failed_write_fails_every_waiter_and_stops_the_node() -> None:
    core, _ = make_core()
    core.apply(incr(), T0)
    core.finish(1, None)
    core.wait_durable(2)
    core.admit(3, other_writes({"r2~x": 1}), 100, writes=False, now_ms=T0)
    core.flush(T0)
    core.take_actions()
    core.write_failed(StorageError("disk on fire"))
    actions = core.take_actions()
    assert {type(a) for a in actions} == {Answer, Ready, Admit}
    assert all(a.error is not None for a in actions)
    with pytest.raises(StorageError):
        core.apply(incr(), T0)
    with pytest.raises(StorageError):
        core.admit(4, None, 100, writes=False, now_ms=T0)


def test_a_timed_checkpoint_is_a_deadline() -> None:
    core, storage = make_core()
    core.checkpointer = Checkpointer(interval_ms=5_000)
    core.checkpointer.last_ms = T0
    core.apply(incr(), T0)
    core.flush(T0)
    write_all(core, storage)
    assert core.next_deadline_ms() == T0 + 5_000
    core.tick(T0 + 5_000)
    write_all(core, storage, T0 + 5_000)
    assert core.replica.checkpoint_pos == 1


def test_a_peer_reply_waits_for_the_merged_deltas_to_be_written() -> None:
    core, storage = make_core()
    peer = Peer(core)
    peer.handshake(core, storage)
    peer.write(incr("k", 5))
    peer.send(core, 11)
    assert not [a for a in core.take_actions() if isinstance(a, Reply)]  # not durable yet
    core.flush(T0)
    replies = [a for a in write_all(core, storage) if isinstance(a, Reply)]
    assert len(replies) == 1 and replies[0].ticket == 11 and replies[0].reply is not None
    assert replies[0].reply.acked > 0
    assert core.apply({"op": "counters.get", "key": "k"}, T0) == {"value": 5}

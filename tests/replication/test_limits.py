"""Limits checked together: replication settings against the bounds every
receiver enforces, the client body limit against what a push can carry, and
the bound on what a receiver buffers for a state sync."""

from __future__ import annotations

import json

import pytest

from crdtkv import limits
from crdtkv.errors import CodecError, ProtocolError, SyncTooLarge
from crdtkv.limits import LimitError, ReplicationSettings, check_body_bytes
from crdtkv.replica import apply_op
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import Replica
from replication import messages
from replication.digest import BUCKETS
from replication.messages import Header, Push, SyncDigest, SyncDone, SyncStates
from replication.protocol import Settings
from simulations.harness import SimCluster

# -- settings against the receivers' bounds -------------------------------------------------------

REFUSED: list[tuple[dict[str, int], str, str]] = [
    # A receiver decodes at most PUSH_ENTRIES_MAX entries per push: a sender
    # with more would have every push refused, and replication would stall.
    ({"push_entries_max": 20_000}, "push_entries_max", "at most 10000"),
    ({"push_bytes_max": limits.MESSAGE_BYTES_MAX}, "push_bytes_max", "message bound"),
    (
        {"push_entries_max": limits.PUSH_ENTRIES_MAX, "push_bytes_max": 15 * 1024 * 1024},
        "push_bytes_max",
        "push_entries_max=10000",
    ),
    ({"sync_keys_max": limits.SYNC_KEYS_MAX}, "sync_keys_max", "SyncKeys"),
    ({"sync_bytes_max": limits.MESSAGE_BYTES_MAX}, "sync_bytes_max", "message bound"),
    ({"sync_buffer_bytes_max": 1024 * 1024}, "sync_buffer_bytes_max", "at least"),
    ({"reachable_ms": 1_000}, "reachable_ms", "heartbeat_ms"),
    ({"heartbeat_ms": 5_000}, "reachable_ms", "heartbeat_ms"),
    ({"push_entries_max": 0}, "push_entries_max", "at least 1"),
    ({"log_bytes_max": -1}, "log_bytes_max", "at least 1"),
    ({"orphan_grace_ms": -1}, "orphan_grace_ms", "at least 0"),
]


@pytest.mark.parametrize(("values", "setting", "problem"), REFUSED)
def test_settings_out_of_the_receivers_bounds_are_refused_naming_the_setting(
    values: dict[str, int], setting: str, problem: str
) -> None:
    with pytest.raises(LimitError) as err:
        ReplicationSettings(**values)
    assert err.value.setting == setting
    assert problem in str(err.value)
    assert str(err.value).startswith(f"{setting}: ")


@pytest.mark.parametrize("value", [True, 1.5, "3"])
def test_settings_must_be_integers(value: object) -> None:
    with pytest.raises(LimitError, match="push_entries_max: must be an integer"):
        ReplicationSettings(push_entries_max=value)  # type: ignore[arg-type]


def test_defaults_and_the_largest_settings_allowed_are_accepted() -> None:
    assert Settings is ReplicationSettings
    ReplicationSettings()
    ReplicationSettings(
        push_entries_max=limits.PUSH_ENTRIES_MAX,
        push_bytes_max=8 * 1024 * 1024,
        sync_bytes_max=15 * 1024 * 1024,
        sync_keys_max=10_000,
        sync_buffer_bytes_max=limits.MESSAGE_BYTES_MAX,
        orphan_grace_ms=0,
    )


def test_a_push_over_push_entries_max_bound_is_what_a_receiver_refuses() -> None:
    # Why push_entries_max is bounded: the receiver's decoder refuses more.
    head = Header("r0", "inc", {})
    ok = Push(head, 0, limits.PUSH_ENTRIES_MAX, tuple((i, b"\x90") for i in range(1, 10_001)))
    assert messages.decode(messages.encode(ok)) == ok
    n = limits.PUSH_ENTRIES_MAX + 1
    over = Push(head, 0, n, tuple((i, b"\x90") for i in range(1, n + 1)))
    with pytest.raises(CodecError, match="at most 10000"):
        messages.decode(messages.encode(over))


def test_a_sender_at_the_largest_push_settings_sends_pushes_receivers_accept() -> None:
    # Bytes large enough that the entry bound is the one that binds (a counter
    # increment's group, string and key meta, is about 135 bytes).
    settings = ReplicationSettings(
        push_entries_max=limits.PUSH_ENTRIES_MAX, push_bytes_max=4 * 1024 * 1024
    )
    c = SimCluster(2, 1, settings=settings)
    r0 = c.nodes["r0"]
    c.run_for(50)  # a first exchange: r0 learns r1's incarnation, a push's target
    assert r0.rep.peers["r1"].incarnation and not r0.rep.peers["r1"].inflight
    for i in range(limits.PUSH_ENTRIES_MAX + 500):
        op = {"op": "counters.incr", "key": f"k{i % 7}", "delta": 1}
        apply_op(r0.replica, op, c.now_ms)
    r0.commit_now()
    out = r0.rep.next_message("r1", c.now_ms)
    assert out is not None
    push = out[0]
    assert isinstance(push, Push) and len(push.entries) == limits.PUSH_ENTRIES_MAX
    blob = messages.encode(push)
    assert len(blob) <= limits.MESSAGE_BYTES_MAX
    assert c.nodes["r1"].rep.receive("r0", messages.decode(blob), c.now_ms).acked == push.upto


# -- the client body limit against a push ---------------------------------------------------------


def test_a_body_limit_whose_operations_no_push_could_carry_is_refused_with_peers() -> None:
    bound = limits.MESSAGE_BYTES_MAX - limits.MESSAGE_RESERVE_BYTES
    bound -= limits.OP_DELTA_OVERHEAD_BYTES
    check_body_bytes(bound, replicated=True)
    with pytest.raises(LimitError) as err:
        check_body_bytes(bound + 1, replicated=True)
    assert err.value.setting == "body_bytes_max"
    # A replica without peers ships nothing: any body limit will do.
    check_body_bytes(64 * limits.BODY_BYTES_MAX, replicated=False)


def test_the_largest_op_a_body_allows_fits_a_push() -> None:
    # An OR-set add of MEMBERS_PER_OP_MAX members by a replica with the
    # longest id: the delta carries a dot (the actor id) per member.
    replica = Replica("r" * 64, "0123abcd")
    members = [f"{i:05d}" for i in range(limits.MEMBERS_PER_OP_MAX)]
    apply_op(replica, {"op": "sets.add", "key": "s" * 1024, "members": members}, 1_700_000_000_000)
    (entry,) = replica.take_pending()
    group = rec.pack(rec.encode_group(entry.group))
    body = len(json.dumps({"members": members}))
    head = Header(
        replica.replica_id, replica.incarnation, {f"{'r' * 64}~{i:08x}": 9 for i in range(100)}
    )
    wire = messages.encode(Push(head, 0, 1, ((1, group),), "0123abcd"))
    assert len(group) > 5 * body  # the dots are most of it
    assert len(wire) - body < limits.OP_DELTA_OVERHEAD_BYTES + limits.MESSAGE_RESERVE_BYTES


# -- what a receiver buffers for a state sync -----------------------------------------------------


def test_a_state_sync_past_the_receivers_buffer_is_dropped_with_a_typed_error() -> None:
    assert ReplicationSettings().sync_buffer_bytes_max == 1024**3
    # The smallest buffer a receiver may have, to keep the test small.
    c = SimCluster(2, 3, settings=Settings(sync_buffer_bytes_max=limits.MESSAGE_BYTES_MAX))
    r0, r1 = c.nodes["r0"], c.nodes["r1"]
    value = "x" * (2 * 1024 * 1024)
    r0.apply({"op": "registers.set", "key": "big", "value": value}, c.now_ms)
    blob = rec.encode_state(r0.replica.states[("string", "big")])
    head = r0.rep.header()
    before = r1.encoded_state()
    r1.rep.receive("r0", SyncDigest(head, 7, (0,) * BUCKETS), c.now_ms)
    shipped = 0
    with pytest.raises(SyncTooLarge) as err:
        for i in range(20):
            msg = SyncStates(head, 7, (("string", f"k{i}", blob),))
            r1.rep.receive("r0", msg, c.now_ms)
            shipped += 1
            assert r1.rep.incoming["r0"].bytes <= limits.MESSAGE_BYTES_MAX
    assert err.value.status == 413 and isinstance(err.value, ProtocolError)
    assert shipped * len(blob) <= limits.MESSAGE_BYTES_MAX < (shipped + 1) * len(blob)
    assert "r0" not in r1.rep.incoming  # the run is dropped
    # The sender's next step is answered with a restart; nothing was applied.
    reply = r1.rep.receive("r0", SyncDone(head, 7, r0.replica.applied, 1, 0), c.now_ms)
    assert reply.restart
    assert r1.encoded_state() == before

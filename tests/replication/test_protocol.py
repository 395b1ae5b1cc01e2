"""The replication core between 2-5 in-process replicas over a faulty fake link."""

from __future__ import annotations

import random
import zlib

import msgpack
import pytest

from crdtkv.errors import BadRequest, CodecError, NotFound, PayloadTooLarge, Unauthorized
from replication import messages
from replication.messages import Header, Push
from replication.protocol import Settings
from simulations.harness import LinkFaults, SimCluster

OPS = [
    "registers.set",
    "registers.delete",
    "counters.incr",
    "sets.add",
    "sets.remove",
    "hlls.add",
    "hashes.set",
    "hashes.incr",
    "hashes.remove",
    "zsets.add",
    "zsets.incr",
    "zsets.remove",
    "keys.delete",
]
# One keyspace of typed keys: each type writes its own keys (registers and
# counters are two views of one string type; keys.delete hits any of them).
PREFIX = {"registers": "k", "counters": "k", "sets": "s", "hlls": "h", "hashes": "f", "zsets": "z"}


def random_op(rng: random.Random, i: int) -> dict[str, object]:
    kind = rng.choice(OPS)
    ns = kind.split(".")[0]
    n = rng.randint(0, 9)
    key = f"{PREFIX[ns]}{n}" if ns in PREFIX else f"{rng.choice('ksfhz')}{n}"
    if kind == "registers.set":
        return {"op": kind, "key": key, "value": i}
    if kind in ("registers.delete", "keys.delete"):
        return {"op": kind, "key": key}
    if kind == "counters.incr":
        return {"op": kind, "key": key, "delta": rng.randint(-5, 5) or 1}
    if kind in ("sets.add", "sets.remove", "zsets.remove"):
        return {"op": kind, "key": key, "members": [f"m{rng.randint(0, 5)}"]}
    if kind == "hashes.set":
        return {"op": kind, "key": key, "fields": {f"f{rng.randint(0, 3)}": i}}
    if kind == "hashes.incr":
        return {"op": kind, "key": key, "field": f"f{rng.randint(0, 3)}", "delta": 1}
    if kind == "hashes.remove":
        return {"op": kind, "key": key, "names": [f"f{rng.randint(0, 3)}"]}
    if kind == "zsets.add":
        return {"op": kind, "key": key, "scores": {f"m{rng.randint(0, 5)}": i / 2}}
    if kind == "zsets.incr":
        return {"op": kind, "key": key, "member": f"m{rng.randint(0, 5)}", "increment": 1.5}
    return {"op": kind, "key": key, "items": [f"i{rng.randint(0, 1000)}"]}


def drive(c: SimCluster, rng: random.Random, n_ops: int, gap_ms: int = 2) -> list[tuple[str, dict]]:
    done = []
    for i in range(n_ops):
        rid = rng.choice(c.ids)
        op = random_op(rng, i)
        c.nodes[rid].apply(op, c.now_ms)
        done.append((rid, op))
        c.run_for(rng.randint(0, gap_ms))
    return done


@pytest.mark.parametrize("seed", range(12))
def test_replicas_converge_byte_identical_under_loss_duplication_reordering(seed: int) -> None:
    rng = random.Random(seed)
    n = 2 + seed % 4  # 2..5 replicas
    faults = LinkFaults(latency_ms=10, jitter_ms=40, loss=0.2, duplicate=0.2)  # jitter reorders
    c = SimCluster(n, seed, faults=faults)
    drive(c, rng, 300)
    c.faults = {k: LinkFaults(latency_ms=5) for k in c.faults}
    c.settle()
    assert c.converged()
    states = [n.encoded_state() for n in c.nodes.values()]
    assert states[0], "the workload wrote something"


def test_acknowledged_increments_and_adds_are_never_lost() -> None:
    rng = random.Random(7)
    c = SimCluster(3, 7, faults=LinkFaults(latency_ms=20, jitter_ms=30, loss=0.3, duplicate=0.1))
    total = 0
    added = set()
    for i in range(400):
        rid = rng.choice(c.ids)
        by = rng.randint(1, 9)
        # Acknowledged: each returns once its write is durable, as a client's answer would.
        c.nodes[rid].apply_acked({"op": "counters.incr", "key": "c", "delta": by})
        c.nodes[rid].apply_acked({"op": "sets.add", "key": "s", "members": [f"m{i}"]})
        total += by
        added.add(f"m{i}")
        if i % 50 == 0:
            c.crash(rng.choice(c.ids))  # fsync mode: a crash loses nothing acknowledged
        c.run_for(rng.randint(0, 5))
    c.faults = {k: LinkFaults() for k in c.faults}
    c.settle()
    for node in c.nodes.values():
        assert node.apply({"op": "counters.get", "key": "c"}, c.now_ms) == {"value": total}
        assert set(node.apply({"op": "sets.get", "key": "s"}, c.now_ms)["members"]) == added


def test_log_entries_are_truncated_only_once_every_peer_acknowledged() -> None:
    c = SimCluster(3, 3)
    c.partition("r0", "r2")
    for _i in range(50):
        c.nodes["r0"].apply({"op": "counters.incr", "key": "c", "delta": 1}, c.now_ms)
        c.run_for(5)
    c.run_for(1_000)
    r0 = c.nodes["r0"].rep
    assert r0.peers["r1"].acked >= 50 and r0.peers["r2"].acked == 0
    assert len(r0.log) == 50 and r0.log.floor == 0  # r2 still needs them
    c.heal()
    c.settle()
    c.run_for(100)
    assert len(r0.log) == 0 and r0.log.floor >= 50


def test_a_deleted_key_stays_deleted_across_a_partition_and_can_be_written_again() -> None:
    c = SimCluster(3, 4)

    def read(rid: str) -> object:
        try:
            return c.nodes[rid].apply({"op": "registers.get", "key": "k"}, c.now_ms)["value"]
        except NotFound:
            return None

    c.nodes["r0"].apply({"op": "registers.set", "key": "k", "value": 1}, c.now_ms)
    c.settle()
    c.partition("r1", "r2")
    c.partition("r0", "r2")
    c.nodes["r0"].apply({"op": "registers.delete", "key": "k"}, c.now_ms)
    c.run_for(3_000)
    assert [read(r) for r in c.ids] == [None, None, 1]  # r2 has not seen the delete
    # A concurrent increment at r2 was not observed by the delete: it survives
    # (observed-remove), over an empty base.
    c.nodes["r2"].apply({"op": "counters.incr", "key": "k", "delta": 5}, c.now_ms)
    c.heal()
    c.settle()
    c.run_for(3_000)
    assert c.converged()
    assert [read(r) for r in c.ids] == [5, 5, 5]
    c.nodes["r1"].apply({"op": "keys.delete", "key": "k"}, c.now_ms)
    c.settle()
    assert [read(r) for r in c.ids] == [None, None, None]
    c.nodes["r2"].apply({"op": "registers.set", "key": "k", "value": 2}, c.now_ms)
    c.settle()
    assert c.converged() and [read(r) for r in c.ids] == [2, 2, 2]


def test_a_replica_behind_the_retained_log_catches_up_by_state_sync_shipping_the_diff() -> None:
    settings = Settings(log_bytes_max=200_000)
    c = SimCluster(3, 5, settings=settings, tick_ms=20)
    keys = 8_000
    batch = [{"op": "registers.set", "key": f"k{i}", "value": i} for i in range(keys)]
    for op in batch:
        c.nodes["r0"].apply(op, c.now_ms)
    c.settle(max_ms=120_000)
    full_bytes = sum(len(b) for b in c.nodes["r2"].encoded_state().values())

    c.partition("r0", "r2")
    c.partition("r1", "r2")
    changed = 500
    for _round in range(100):  # 50,000 updates to the same 500 keys
        for i in range(changed):
            c.nodes["r0" if i % 2 else "r1"].apply(
                {"op": "counters.incr", "key": f"c{i}", "delta": 1}, c.now_ms
            )
        c.run_for(20)
    r0 = c.nodes["r0"].rep
    assert not r0.log.covers(r0.peers["r2"].acked), "the log was truncated past r2"
    c.heal()
    before = c.bytes_on_wire
    shipped_before = r0.peers["r2"].sync_states_shipped
    synced_before = r0.peers["r2"].syncs_completed
    c.settle(max_ms=120_000)
    shipped = c.bytes_on_wire - before
    assert c.converged()
    assert r0.peers["r2"].syncs_completed > synced_before
    assert c.nodes["r2"].apply({"op": "counters.get", "key": "c7"}, c.now_ms) == {"value": 100}
    # Proportional to what differs (500 keys + the buckets they fall in), not the keyspace.
    assert shipped < full_bytes, (shipped, full_bytes)
    # Each key is two states (its type's and its KeyMeta).
    assert r0.peers["r2"].sync_states_shipped - shipped_before <= 2 * 2 * changed


def test_a_wiped_replica_converges_under_a_new_incarnation_without_reissuing_dots() -> None:
    c = SimCluster(3, 6)
    for i in range(30):
        c.nodes["r2"].apply({"op": "sets.add", "key": "s", "members": [f"m{i}"]}, c.now_ms)
    c.settle()
    old_actor = c.nodes["r2"].replica.actor
    c.wipe("r2")
    new_actor = c.nodes["r2"].replica.actor
    assert new_actor != old_actor
    c.nodes["r2"].apply({"op": "sets.add", "key": "s", "members": ["after-wipe"]}, c.now_ms)
    c.settle()
    members = c.nodes["r0"].apply({"op": "sets.get", "key": "s"}, c.now_ms)["members"]
    assert "after-wipe" in members and "m0" in members and len(members) == 31
    assert c.nodes["r2"].replica.applied.vv.get(new_actor) == 1  # a fresh dot sequence
    assert c.converged()


def test_concurrent_semantics_end_to_end() -> None:
    c = SimCluster(3, 8, faults=LinkFaults(latency_ms=50))
    c.nodes["r0"].apply({"op": "sets.add", "key": "s", "members": ["x"]}, c.now_ms)
    c.settle()
    c.nodes["r0"].apply({"op": "sets.remove", "key": "s", "members": ["x"]}, c.now_ms)
    c.nodes["r1"].apply({"op": "sets.add", "key": "s", "members": ["x"]}, c.now_ms)
    for rid in c.ids:
        c.nodes[rid].apply({"op": "counters.incr", "key": "c", "delta": 5}, c.now_ms)
        c.nodes[rid].apply({"op": "registers.set", "key": "r", "value": rid}, c.now_ms)
    c.settle()
    for node in c.nodes.values():
        assert node.apply({"op": "sets.contains", "key": "s", "member": "x"}, c.now_ms) == {
            "present": True
        }
        assert node.apply({"op": "counters.get", "key": "c"}, c.now_ms) == {"value": 15}
    winners = {
        n.apply({"op": "registers.get", "key": "r"}, c.now_ms)["value"] for n in c.nodes.values()
    }
    assert len(winners) == 1


# -- hostile messages ------------------------------------------------------------------------
def _push(
    sender: str, entries: tuple[tuple[int, bytes], ...], after: int = 0, upto: int = 1
) -> Push:
    return Push(Header(sender, "inc", {}), after, upto, entries)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb(["push", "r0", "i", {}, 1]),
        msgpack.packb(["push", "r0", "i", {"a": "x"}, 0, 1, []]),
        msgpack.packb(["push", "r0", "i", {}, 0, 1, [[1, "not-bytes"]]]),
        msgpack.packb(["nope", "r0", "i", {}, 0]),
        b"\x00" * 100,
    ],
)
def test_garbage_messages_are_codec_errors(blob: bytes) -> None:
    with pytest.raises(CodecError):
        messages.decode(blob)


def test_hostile_messages_are_refused_without_changing_state() -> None:
    c = SimCluster(2, 9)
    node = c.nodes["r1"]
    node.apply({"op": "counters.incr", "key": "c", "delta": 1}, c.now_ms)
    before = node.encoded_state()
    applied = dict(node.replica.applied.vv)
    with pytest.raises(Unauthorized):
        node.rep.receive("r0", _push("stranger", ()), c.now_ms)
    with pytest.raises(Unauthorized):
        node.rep.receive("stranger", _push("stranger", ()), c.now_ms)
    with pytest.raises(CodecError):
        node.rep.receive("r0", _push("r0", ((1, b"\xc1garbage"),)), c.now_ms)
    with pytest.raises(BadRequest):
        node.rep.receive("r0", _push("r0", ((5, b"x"),), after=0, upto=1), c.now_ms)
    bad_group = msgpack.packb(
        [["r0~x", 1], [["counters", "c", ["lww", 1, [[1, 0, "a"], 1, None, False]]]]]
    )
    with pytest.raises(CodecError):
        node.rep.receive("r0", _push("r0", ((1, bad_group),)), c.now_ms)
    assert node.encoded_state() == before
    assert node.replica.applied.vv == applied
    # Nothing about the sender was recorded from messages that did not decode.
    assert node.rep.peers["r0"].incarnation == "" and node.rep.peers["r0"].applied == {}


def test_messages_round_trip() -> None:
    c = SimCluster(2, 10)
    # The node core applies it; no simulated time passes (nothing is sent yet).
    c.nodes["r0"].core.apply({"op": "sets.add", "key": "s", "members": ["a"]}, c.now_ms)
    out = c.nodes["r0"].rep.next_message("r1", c.now_ms)
    assert out is not None
    msg, _ = out
    assert messages.decode(messages.encode(msg)) == msg


# -- wire compression ---------------------------------------------------------------------------


def test_bodies_compress_only_when_large_enough_and_round_trip() -> None:
    c = SimCluster(2, 11)
    node = c.nodes["r0"]
    for i in range(40):
        node.core.apply({"op": "counters.incr", "key": f"key:{i:012d}", "delta": 1}, c.now_ms)
    node.commit_now()  # one group commit, written at once, no simulated time passing
    out = node.rep.next_message("r1", c.now_ms)
    assert out is not None
    plain = messages.encode(out[0])
    wire, encoding = messages.compress(plain)
    assert encoding == "zlib" and len(wire) < len(plain) / 2, (len(wire), len(plain))
    assert messages.decode(messages.decompress(wire, encoding)) == out[0]
    # A small body, and one that compression would not shrink, go as they are.
    assert messages.compress(b"\x90" * 10) == (b"\x90" * 10, None)
    noise = random.Random(1).randbytes(4096)
    assert messages.compress(noise) == (noise, None)
    assert messages.decompress(noise, None) is noise


@pytest.mark.parametrize(
    ("wire", "encoding", "error"),
    [
        (b"not zlib at all", "zlib", CodecError),
        (zlib.compress(b"\x90" * 1000)[:-6], "zlib", CodecError),  # truncated
        (zlib.compress(b"\x90" * 1000) + b"tail", "zlib", CodecError),  # trailing bytes
        (zlib.compress(b"\x90" * 1000), "gzip", CodecError),  # an encoding we do not speak
        # A bomb: 64 KiB on the wire, 64 MiB once inflated; refused at 16 MiB.
        (zlib.compress(bytes(64 * 1024 * 1024), 9), "zlib", PayloadTooLarge),
    ],
)
def test_hostile_compressed_bodies_are_refused(
    wire: bytes, encoding: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        messages.decompress(wire, encoding)

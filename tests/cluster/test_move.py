"""The pure steps of a slot move (crdtkv/cluster/move.py), as laws over random runs.

A model of two shards in two regions: the source S (replicas S1, S2) and the target
T (T1, T2), each pair replicating by delta groups delivered in any interleaving.
Writes go on throughout, where the protocol sends them: to S_i until S_i hands the
slots over, then to T_i (``Ask``).  The move's steps (bulk copy, hand-over with the
final copy, forwarding of what replication brings later, the flip, the drop) run
interleaved with them in the order hypothesis picks.  A reference replica joins
every delta group any of the four minted.  The laws, after quiescence: each moved
key reads at T1 and T2 as at the reference (no acknowledged write lost, the regions
converge), no moved key is left at S1 or S2, and the keys that stayed are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.cluster import move
from crdtkv.cluster.slots import key_slot
from crdtkv.crdts import ORSet
from crdtkv.errors import BadRequest, ClockOffsetError, CodecError, CrdtkvError
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.replica.keyspace import DeltaGroup

MOVING = [f"{{mv}}{i}" for i in range(4)] + [f"{{mw}}{i}" for i in range(2)]
STAYING = [f"{{st}}{i}" for i in range(3)]
NAMES = MOVING + STAYING
SLOTS = {key_slot(n) for n in MOVING}
assert not SLOTS & {key_slot(n) for n in STAYING}


def _op(kind: int, name: str, v: int) -> dict[str, Any]:
    """One write of a few types; a name keeps one type (writes of another are refused)."""
    t = NAMES.index(name) % 4
    if kind == 0:
        return {"op": "keys.delete", "key": name}
    if t == 0:
        return (
            {"op": "registers.set", "key": name, "value": v}
            if kind % 2
            else {"op": "counters.incr", "key": name, "delta": v}
        )
    if t == 1:
        op = "sets.add" if kind % 2 else "sets.remove"
        return {"op": op, "key": name, "members": [f"m{v % 3}"]}
    if t == 2:
        if kind % 2:
            return {"op": "hashes.set", "key": name, "fields": {f"f{v % 3}": v}}
        return {"op": "hashes.removefield", "key": name, "field": f"f{v % 3}"}
    if kind % 2:
        return {"op": "lists.rpush", "key": name, "values": [str(v)]}
    return {"op": "lists.lpop", "key": name}


def view(r: Replica, name: str, now: int) -> object:
    """What a client reads of ``name`` at ``r``."""
    t = r.visible_type(name, now)
    if t is None:
        return None
    read = {
        "string": {"op": "registers.get", "key": name},
        "set": {"op": "sets.get", "key": name},
        "hash": {"op": "hashes.getall", "key": name},
        "list": {"op": "lists.range", "key": name, "start": 0, "stop": -1},
    }[t]
    return t, apply_op(r, read, now)


@dataclass
class Model:
    final_copy: bool = True  # the hand-over copies what changed since the bulk copy
    forward: bool = True  # what replication brings later is forwarded
    now: int = 1_000
    s: list[Replica] = field(default_factory=list)
    t: list[Replica] = field(default_factory=list)
    ref: Replica = field(default_factory=lambda: Replica("ref", "0"))
    queues: dict[tuple[str, int, int], list[DeltaGroup]] = field(default_factory=dict)
    phase: list[str] = field(default_factory=lambda: ["copying", "copying"])
    bulk_done: list[bool] = field(default_factory=lambda: [False, False])
    dropped: list[bool] = field(default_factory=lambda: [False, False])
    flipped: bool = False
    acked: list[tuple[str, str]] = field(default_factory=list)  # (replica, name) of writes

    def __post_init__(self) -> None:
        self.s = [Replica("s1", "a"), Replica("s2", "a")]
        self.t = [Replica("t1", "a"), Replica("t2", "a")]
        for r in self.s:  # the move starts: the source watches its moving slots
            r.set_watch(lambda n: key_slot(n) in SLOTS)
        for sh in ("s", "t"):
            for a in (0, 1):
                self.queues[(sh, a, 1 - a)] = []

    def shard(self, sh: str) -> list[Replica]:
        return self.s if sh == "s" else self.t

    def collect(self) -> None:
        """Every new log entry goes on its link and to the reference."""
        for sh in ("s", "t"):
            for a, r in enumerate(self.shard(sh)):
                for e in r.take_pending():
                    if e.origin == "":  # minted here: it travels to the peer
                        self.queues[(sh, a, 1 - a)].append(e.group)
                    self.ref.apply_remote(e.group, "x", self.now)

    def tick(self) -> None:
        self.now += 1

    # -- actions --------------------------------------------------------------------------
    def write(self, i: int, name: str, kind: int, v: int) -> None:
        moving = name in MOVING
        r = self.t[i] if moving and self.phase[i] != "copying" else self.s[i]
        try:
            apply_op(r, _op(kind, name, v), self.now)
        except CrdtkvError:
            return  # refused (wrong type, nothing to pop): nothing changed
        self.acked.append((r.replica_id, name))

    def deliver(self, sh: str, a: int, n: int) -> None:
        q = self.queues[(sh, a, 1 - a)]
        dst = self.shard(sh)[1 - a]
        for g in q[:n]:
            dst.apply_remote(g, f"{sh}{a}", self.now)
        del q[:n]

    def copy(self, i: int, names: list[str] | set[str]) -> None:
        for chunk in move.export_chunks(self.s[i], sorted(names), chunk_bytes=200):
            move.import_states(self.t[i], move.decode_chunk(chunk.body), self.now)

    def bulk(self, i: int) -> None:
        if self.phase[i] == "copying" and not self.bulk_done[i]:
            self.copy(i, move.slot_names(self.s[i], SLOTS))
            self.bulk_done[i] = True

    def hand_over(self, i: int) -> None:
        if self.phase[i] == "copying" and self.bulk_done[i]:
            changed = self.s[i].take_watched()
            if self.final_copy:
                self.copy(i, changed)
            self.phase[i] = "handed"
            self.check_handed_over(i)

    def check_handed_over(self, i: int) -> None:
        """Read your writes across ``Ask``: once S_i has handed over, T_i holds every
        state S_i has (joining S_i's copy into T_i's changes nothing)."""
        src, dst = self.s[i], self.t[i]
        for key, state in move.export_states(src, move.slot_names(src, SLOTS)).items():
            mine = dst.states.get(key)
            assert mine is not None, (i, key)
            joined = mine.copy()
            joined.merge(state)
            assert joined == mine, (i, key)

    def forward_now(self, i: int) -> None:
        if self.phase[i] == "copying" or not self.forward:
            return
        names = self.s[i].take_watched()
        self.copy(i, names)
        if self.dropped[i]:
            move.drop_names(self.s[i], names)

    def flip(self) -> None:
        if all(p == "handed" for p in self.phase):
            self.flipped = True
            self.phase = ["flipped", "flipped"]

    def drop(self, i: int) -> None:
        if self.flipped and not self.dropped[i]:
            self.forward_now(i)
            move.drop_slots(self.s[i], SLOTS)
            self.dropped[i] = True

    def step(self, action: tuple[Any, ...]) -> None:
        kind = action[0]
        if kind == "write":
            self.write(*action[1:])
        elif kind == "deliver":
            self.deliver(*action[1:])
        elif kind == "bulk":
            self.bulk(action[1])
        elif kind == "hand_over":
            self.hand_over(action[1])
        elif kind == "forward":
            self.forward_now(action[1])
        elif kind == "flip":
            self.flip()
        elif kind == "drop":
            self.drop(action[1])
        self.collect()
        self.tick()

    def finish(self) -> None:
        """Run the move to its end and let everything settle."""
        for _ in range(4):
            for i in (0, 1):
                for a in (self.bulk, self.hand_over):
                    a(i)
                    self.collect()
            self.flip()
            for i in (0, 1):
                self.drop(i)
                self.collect()
            for _ in range(3):
                for q in list(self.queues):
                    self.deliver(q[0], q[1], len(self.queues[q]))
                    self.collect()
                for i in (0, 1):
                    self.forward_now(i)
                    self.collect()


ACTION = st.one_of(
    st.tuples(
        st.just("write"),
        st.integers(0, 1),
        st.sampled_from(NAMES),
        st.integers(0, 3),
        st.integers(1, 9),
    ),
    st.tuples(st.just("deliver"), st.sampled_from("st"), st.integers(0, 1), st.integers(1, 4)),
    st.tuples(st.sampled_from(["bulk", "hand_over", "forward", "drop"]), st.integers(0, 1)),
    st.tuples(st.just("flip")),
)


def check_laws(m: Model) -> None:
    now = m.now
    for name in MOVING:
        want = view(m.ref, name, now)
        for r in m.t:
            assert view(r, name, now) == want, (r.replica_id, name)
    for name in STAYING:
        want = view(m.ref, name, now)
        for r in m.s:
            assert view(r, name, now) == want, (r.replica_id, name)
    for r in m.s:
        assert move.slot_names(r, SLOTS) == [], r.replica_id
        assert not any(name in MOVING for (_, name) in r.states)
    for r in m.t:
        assert not any(name in STAYING for (_, name) in r.states)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, max_size=60))
def test_a_move_keeps_every_write(actions: list[tuple[Any, ...]]) -> None:
    m = Model()
    for a in actions:
        m.step(a)
    m.finish()
    check_laws(m)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, max_size=40), st.integers(0, 1))
def test_copying_twice_and_stale_copies_change_nothing(
    actions: list[tuple[Any, ...]], i: int
) -> None:
    """Idempotence: a second import of a chunk, or of an older copy, leaves the
    target's states equal (a retried or resumed copy is harmless)."""
    m = Model()
    for a in actions:
        m.step(a)
    old = move.export_states(m.s[i], move.slot_names(m.s[i], SLOTS))
    m.copy(i, move.slot_names(m.s[i], SLOTS))
    before = {n: view(m.t[i], n, m.now) for n in MOVING}
    m.copy(i, move.slot_names(m.s[i], SLOTS))
    move.import_states(m.t[i], old, m.now)
    assert {n: view(m.t[i], n, m.now) for n in MOVING} == before


def _losing_run() -> Model:
    """A write at S1 after the bulk copy, replicated to S2 only after S2's drop."""
    m = Model(final_copy=False, forward=False)
    m.step(("write", 0, MOVING[0], 1, 5))
    m.step(("bulk", 0))
    m.step(("bulk", 1))
    m.step(("write", 0, MOVING[0], 1, 7))  # after the bulk copy: the final copy's
    m.check_handed_over = lambda i: None  # type: ignore[method-assign]
    for a in (("hand_over", 0), ("hand_over", 1), ("flip",), ("drop", 0), ("drop", 1)):
        m.step(a)
    m.finish()
    return m


def test_the_laws_catch_a_move_without_final_copy_or_forwarding() -> None:
    """The checker can fail: without the final copy and the forwarding, the write
    made after the bulk copy is lost, and ``check_laws`` says so."""
    with pytest.raises(AssertionError):
        check_laws(_losing_run())


def test_the_hand_over_law_catches_a_missing_final_copy() -> None:
    """Without the final copy, a write made after the bulk copy is not at the target
    when the source starts answering ``Ask``: the hand-over law fails."""
    m = Model(final_copy=False)
    m.step(("bulk", 0))
    m.step(("write", 0, MOVING[1], 1, 3))
    with pytest.raises(AssertionError):
        m.step(("hand_over", 0))


def test_the_same_run_keeps_the_write_with_the_protocol() -> None:
    m = Model()
    m.step(("write", 0, MOVING[0], 1, 5))
    m.step(("bulk", 0))
    m.step(("bulk", 1))
    m.step(("write", 0, MOVING[0], 1, 7))
    for a in (("hand_over", 0), ("hand_over", 1), ("flip",), ("drop", 0), ("drop", 1)):
        m.step(a)
    m.finish()
    check_laws(m)
    assert view(m.t[1], MOVING[0], m.now) == ("string", {"value": 7})


# -- the steps one by one -------------------------------------------------------------------


def test_import_is_one_logged_commit_and_replicates() -> None:
    src, dst, peer = Replica("s", "1"), Replica("t", "1"), Replica("t2", "1")
    for i in range(5):
        apply_op(src, {"op": "sets.add", "key": f"{{a}}{i}", "members": ["x", str(i)]}, 10)
    chunks = list(move.export_chunks(src, move.slot_names(src, {key_slot("{a}")})))
    assert sum(len(c.names) for c in chunks) == 5
    dst.take_pending()
    dot = move.import_states(dst, move.decode_chunk(chunks[0].body), 20)
    assert dot == (dst.actor, 1)
    (entry,) = dst.take_pending()
    assert entry.origin == "" and entry.group.dot == dot
    # Replicated like any write: the target's other region reads the same.
    peer.apply_remote(entry.group, "t", 20)
    for i in range(5):
        got = apply_op(peer, {"op": "sets.get", "key": f"{{a}}{i}"}, 30)
        assert got["members"] == sorted(["x", str(i)])
    # Nothing new to join: no dot, nothing logged.
    assert move.import_states(dst, move.decode_chunk(chunks[0].body), 30) is None
    assert dst.take_pending() == []


def test_chunks_are_bounded_and_hold_whole_names() -> None:
    r = Replica("s", "1")
    for i in range(50):
        apply_op(r, {"op": "hashes.set", "key": f"{{b}}{i}", "fields": {"f": "x" * 100}}, 10)
    chunks = list(move.export_chunks(r, move.slot_names(r, {key_slot("{b}")}), 1_000))
    assert len(chunks) > 5
    seen = [n for c in chunks for n in c.names]
    assert sorted(seen) == sorted(f"{{b}}{i}" for i in range(50))
    for c in chunks:
        assert len(c.body) <= 1_000 + 300  # a chunk passes the bound by one name at most
        assert {k[1] for k in move.decode_chunk(c.body)} == set(c.names)
        assert c.states == len(move.decode_chunk(c.body)) == 2 * len(c.names)  # + meta


def test_drop_is_local_and_reaches_storage() -> None:
    r = Replica("s", "1")
    apply_op(r, {"op": "sets.add", "key": "{c}x", "members": ["a"]}, 10)
    apply_op(r, {"op": "registers.set", "key": "other", "value": 1}, 10)
    r.take_pending()
    applied = dict(r.applied.vv)
    assert move.drop_slots(r, {key_slot("{c}")}) == 1
    assert "{c}x" not in r.names and ("set", "{c}x") not in r.states
    assert r.take_pending() == [] and dict(r.applied.vv) == applied  # no dot
    assert {("set", "{c}x"), ("meta", "{c}x")} <= r.take_gc_deleted()
    assert view(r, "other", 20) == ("string", {"value": 1})


def test_drop_keeps_an_open_snapshot() -> None:
    r = Replica("s", "1")
    apply_op(r, {"op": "sets.add", "key": "{c}x", "members": ["a"]}, 10)
    snap = r.open_snapshot()
    move.drop_names(r, ["{c}x"])
    assert isinstance(snap[("set", "{c}x")], ORSet)


def test_split_and_forward_names() -> None:
    r = Replica("s", "1")
    apply_op(r, {"op": "sets.add", "key": "{d}x", "members": ["a"]}, 10)
    (e,) = r.take_pending()
    group = DeltaGroup(e.group.dot, {**e.group.deltas})
    serves = lambda slot: slot != key_slot("{d}")  # noqa: E731
    kept, fwd = move.split_group(group, serves)
    assert kept == {} and set(fwd) == set(group.deltas)
    assert move.forward_names(group.deltas, serves) == {"{d}x"}
    assert move.forward_names(group.deltas, lambda s: True) == set()


def test_watch_notes_replicated_changes() -> None:
    a, b = Replica("a", "1"), Replica("b", "1")
    b.set_watch(lambda n: key_slot(n) == key_slot("{w}"))
    apply_op(a, {"op": "sets.add", "key": "{w}1", "members": ["x"]}, 10)
    apply_op(a, {"op": "sets.add", "key": "z", "members": ["x"]}, 10)
    for e in a.take_pending():
        b.apply_remote(e.group, "a", 10)
    assert b.take_watched() == {"{w}1"}
    assert b.take_watched() == set()


def test_bad_chunks_change_nothing() -> None:
    r = Replica("t", "1")
    for body in (b"\x01", move.encode_chunk({}) + b"x"):
        with pytest.raises(CodecError):
            move.decode_chunk(body)
    with pytest.raises(CodecError):
        move.decode_chunk(b"\x91\x93\xa4nope\xa1k\x90")  # [["nope", "k", []]]
    src = Replica("s", "1")
    apply_op(src, {"op": "registers.set", "key": "k", "value": 1}, 10**12)  # far ahead
    states = move.export_states(src, ["k"])
    with pytest.raises(ClockOffsetError):
        move.import_states(r, states, 10)
    assert r.states == {} and r.take_pending() == []
    with pytest.raises(BadRequest):
        move.import_states(r, {("set", "k"): next(iter(states.values()))}, 10)

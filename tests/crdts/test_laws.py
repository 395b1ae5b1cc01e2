"""One law suite over every CRDT type (after riak_dt's generic property harness).

A random program runs three replicas of one type: each step is a mutation at
one replica (recording the delta) or a full-state merge between two.  Over
the states and deltas it produced we check the semilattice laws, the
delta-mutator law, convergence of deltas delivered in any order with
duplicates, and the codec round trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.crdts import (
    HLL,
    KeyMeta,
    LWWRegister,
    NumericRegister,
    ORMap,
    ORSet,
    PNCounter,
    RList,
    VSet,
    ZSet,
    codec,
    vset,
)
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.hlc import HLC
from crdtkv.errors import CodecError, CounterOverflow, NotNumeric

ACTORS = ["a", "b", "c"]
MEMBERS = ["x", "y", "z", "w"]


@dataclass
class Run:
    states: list[CRDT]
    deltas: list[CRDT] = field(default_factory=list)


def _counter_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["incr", "incr", "decr", "reset"]))
    if kind == "reset":
        return state.reset()  # type: ignore[no-any-return]
    by = draw(st.integers(1, 1000))
    return state.incr(actor, by if kind == "incr" else -by)  # type: ignore[no-any-return]


def _register_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["set", "set", "ttl", "delete"]))
    ts = clock.now(now)
    if kind == "delete":
        return state.delete(ts)  # type: ignore[no-any-return]
    value = draw(
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=5), st.none(), st.booleans())
    )
    expires = now + draw(st.integers(1, 50)) if kind == "ttl" else None
    return state.assign(ts, value, expires)  # type: ignore[no-any-return]


def _set_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["add", "add", "remove", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    members = draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=3))
    delta, _ = state.add(actor, members) if kind == "add" else state.remove(members)
    return delta  # type: ignore[no-any-return]


def _hll_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["add", "add", "add", "clear"]))
    if kind == "clear":
        if state.epoch.wall_ms:  # a replica's clock has absorbed every epoch it merged
            clock.observe(state.epoch, now)
        return state.clear(clock.now(now))  # type: ignore[no-any-return]
    items = draw(st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=5))
    return state.add(items)  # type: ignore[no-any-return]


# Base values of the numeric register: numbers, numeric text, and text that is not a number.
NUM_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-100, 100),
    st.floats(allow_nan=False),
    st.sampled_from(["5", "-3", "1.5", "1e3", "abc", "", "-0", b"7", b"x", b"\xff"]),
    st.text(max_size=4),
    st.binary(max_size=4),
)
INT_STEPS = st.one_of(st.integers(-1000, 1000), st.integers(-(2**63), 2**63 - 1))
FLOAT_STEPS = st.one_of(
    st.floats(-1e6, 1e6), st.floats(allow_nan=False, allow_infinity=False), st.just(1e308)
)
SCORES = st.one_of(st.floats(allow_nan=False), st.integers(-5, 5).map(float))


def _refusable(state: Any, mutate: Callable[[], Any]) -> CRDT:
    """Run ``mutate``; a refused increment leaves ``state`` unchanged (the bottom delta)."""
    before = state.copy()
    try:
        out = mutate()
    except (NotNumeric, CounterOverflow):
        assert state == before
        return type(state)()  # type: ignore[no-any-return]
    return out[0] if isinstance(out, tuple) else out  # type: ignore[no-any-return]


def _numeric_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["set", "set", "incr", "incr", "float", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    if kind == "set":
        return state.assign(actor, clock.now(now), draw(NUM_VALUES))  # type: ignore[no-any-return]
    if kind == "incr":
        by = draw(INT_STEPS)
        return _refusable(state, lambda: state.incr(actor, by))
    by_f = draw(FLOAT_STEPS)
    return _refusable(state, lambda: state.incr_float(actor, by_f))


def _hash_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["set", "set", "incr", "incr", "float", "remove", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    if kind == "remove":
        return state.remove(draw(st.lists(st.sampled_from(MEMBERS), max_size=3)))[0]  # type: ignore[no-any-return]
    if kind == "set":
        items = draw(st.lists(st.tuples(st.sampled_from(MEMBERS), NUM_VALUES), max_size=3))
        return state.set(actor, clock.now(now), items)[0]  # type: ignore[no-any-return]
    field = draw(st.sampled_from(MEMBERS))
    if kind == "incr":
        by = draw(INT_STEPS)
        return _refusable(state, lambda: state.incr(actor, field, by))
    by_f = draw(FLOAT_STEPS)
    return _refusable(state, lambda: state.incr_float(actor, field, by_f))


def _zset_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["add", "add", "incr", "incr", "remove", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    if kind == "remove":
        return state.remove(draw(st.lists(st.sampled_from(MEMBERS), max_size=3)))[0]  # type: ignore[no-any-return]
    if kind == "add":
        items = draw(st.lists(st.tuples(st.sampled_from(MEMBERS), SCORES), max_size=3))
        return state.add(actor, clock.now(now), items)[0]  # type: ignore[no-any-return]
    member = draw(st.sampled_from(MEMBERS))
    by = draw(FLOAT_STEPS)
    return _refusable(state, lambda: state.incr(actor, member, by))


def _list_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["lpush", "rpush", "insert", "set", "remove", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    n = len(state)
    if kind in ("lpush", "rpush"):
        values = draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=3))
        return state.push(actor, values, left=kind == "lpush")  # type: ignore[no-any-return]
    if kind == "insert":
        return state.insert(actor, draw(st.integers(0, n)), draw(st.sampled_from(MEMBERS)))  # type: ignore[no-any-return]
    if n == 0:
        return RList(narrow=True)
    if kind == "set":
        pos = state.order[draw(st.integers(0, n - 1))]
        return state.assign(pos, clock.now(now), draw(st.sampled_from(MEMBERS)))  # type: ignore[no-any-return]
    picks = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3))
    return state.remove([state.order[i] for i in picks])[0]  # type: ignore[no-any-return]


VECTORS = [
    *(vset.pack_vector(v) for v in ([1.0, 0.0], [0.0, 1.0], [0.5, -2.0])),
    *(vset.pack_vector(v) for v in ([1.0, 2.0, 3.0], [-1.0, 0.0, 0.25])),
]
ATTRS = st.sampled_from([None, '{"a": 1}', '{"b": "x"}'])


def _vset_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["add", "add", "add", "attr", "remove", "clear"]))
    if kind == "clear":
        return state.clear()  # type: ignore[no-any-return]
    if kind == "remove":
        return state.remove(draw(st.lists(st.sampled_from(MEMBERS), max_size=3)))[0]  # type: ignore[no-any-return]
    element = draw(st.sampled_from(MEMBERS))
    if kind == "attr":
        return state.set_attrs(actor, clock.now(now), element, draw(ATTRS))[0]  # type: ignore[no-any-return]
    vec = draw(st.sampled_from(VECTORS))  # 2 or 3 dimensions: concurrent creations differ
    attrs = draw(st.one_of(st.just(vset.KEEP), ATTRS))
    before = state.copy()
    try:
        return state.add(actor, clock.now(now), element, vec, attrs)[0]  # type: ignore[no-any-return]
    except vset.DimensionMismatch:
        assert state == before
        return VSet(narrow=True)


def _meta_op(state: Any, actor: str, clock: HLC, now: int, draw: Any) -> CRDT:
    kind = draw(st.sampled_from(["stamp", "stamp", "expire", "persist", "clear"]))
    if kind == "stamp":
        type_ = draw(st.sampled_from(["string", "hash", "zset", "set", "hll", "list", "vectorset"]))
        return state.stamp(type_, clock.now(now))  # type: ignore[no-any-return]
    if kind == "expire":
        return state.set_ttl(actor, draw(st.integers(1, 10_000)))  # type: ignore[no-any-return]
    if kind == "persist":
        return state.set_ttl(actor, None)  # type: ignore[no-any-return]
    return state.clear_ttl()  # type: ignore[no-any-return]


TYPES: dict[str, tuple[Callable[[], CRDT], Callable[..., CRDT]]] = {
    "counter": (PNCounter, _counter_op),
    "register": (LWWRegister, _register_op),
    "set": (ORSet, _set_op),
    "hll": (HLL, _hll_op),
    "numeric": (NumericRegister, _numeric_op),
    "hash": (ORMap, _hash_op),
    "zset": (ZSet, _zset_op),
    "list": (RList, _list_op),
    "vset": (VSet, _vset_op),
    "meta": (KeyMeta, _meta_op),
}


@st.composite
def runs(draw: Any, type_name: str) -> Run:
    make, op = TYPES[type_name]
    clocks = [HLC(a, max_offset_ms=10**9) for a in ACTORS]
    run = Run([make() for _ in ACTORS])
    now = 1_000
    for _ in range(draw(st.integers(0, 25))):
        now += draw(st.integers(0, 3))
        i = draw(st.integers(0, len(ACTORS) - 1))
        if draw(st.integers(0, 3)) == 0:
            j = draw(st.integers(0, len(ACTORS) - 1))
            run.states[i].merge(run.states[j])
            continue
        before = run.states[i].copy()
        delta = op(run.states[i], ACTORS[i], clocks[i], now, draw)
        # Delta-mutator law: the old state joined with the delta is the new state.
        assert before.joined(delta) == run.states[i], (before, delta, run.states[i])
        run.deltas.append(delta)
    return run


ALL = pytest.mark.parametrize("type_name", sorted(TYPES))
LAW_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@ALL
def test_merge_is_commutative_associative_idempotent(type_name: str) -> None:
    @LAW_SETTINGS
    @given(runs(type_name))
    def check(run: Run) -> None:
        a, b, c = run.states
        assert a.joined(b) == b.joined(a)
        assert a.joined(b).joined(c) == a.joined(b.joined(c))
        assert a.joined(a) == a
        for d in run.deltas:
            assert a.joined(d).joined(d) == a.joined(d)

    check()


@ALL
def test_deltas_in_any_order_with_duplicates_converge_to_full_state(type_name: str) -> None:
    @LAW_SETTINGS
    @given(runs(type_name), st.randoms(use_true_random=False))
    def check(run: Run, rnd: Any) -> None:
        make, _ = TYPES[type_name]
        full = make()
        for s in run.states:
            full.merge(s)
        shuffled = list(run.deltas) + rnd.sample(run.deltas, k=len(run.deltas) // 2)
        rnd.shuffle(shuffled)
        from_deltas = make()
        for d in shuffled:
            from_deltas.merge(d)
        assert from_deltas == full
        # Deltas joined with each other first (a delta group) then applied also converge.
        grouped = make()
        for start in range(0, len(shuffled), 3):
            group = make()
            for d in shuffled[start : start + 3]:
                group.merge(d)
            grouped.merge(group)
        assert grouped == full

    check()


@ALL
def test_encode_decode_round_trip(type_name: str) -> None:
    @LAW_SETTINGS
    @given(runs(type_name))
    def check(run: Run) -> None:
        for value in [*run.states, *run.deltas]:
            back = codec.unpack(codec.pack(value))
            assert back == value
            assert codec.pack(back) == codec.pack(value)
            # A decoded delta still joins like the original.
            assert run.states[0].joined(back) == run.states[0].joined(value)

    check()


GARBAGE = [
    b"",
    b"\xc1",
    b"\x93",
    msgpack.packb([1, 2, 3]),
    msgpack.packb(["nope", 1, []]),
    msgpack.packb({"a": 1}),
    msgpack.packb(None),
]


@ALL
@pytest.mark.parametrize("blob", GARBAGE)
def test_garbage_raises_codec_error(type_name: str, blob: bytes) -> None:
    make, _ = TYPES[type_name]
    with pytest.raises(CodecError):
        codec.unpack(blob, make)


@ALL
def test_wrong_version_and_wrong_payload_raise_codec_error(type_name: str) -> None:
    make, _ = TYPES[type_name]
    tag = make().TYPE_TAG
    with pytest.raises(CodecError, match="version"):
        codec.decode([tag, 99, make().encode()])
    for payload in [None, 7, "x", [], [1, 2], {"k": "v"}, [[1], [2], [3], [4]]]:
        with pytest.raises(CodecError):
            codec.decode([tag, 1, payload])


@ALL
def test_decode_refuses_another_type(type_name: str) -> None:
    make, _ = TYPES[type_name]
    other = next(m for n, (m, _) in TYPES.items() if n != type_name)
    with pytest.raises(CodecError, match="expected type"):
        codec.unpack(codec.pack(other()), make)


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_random_bytes_never_raise_anything_but_codec_error(blob: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.unpack(blob)


def test_counter_overflow_is_refused_before_any_change() -> None:
    c = PNCounter()
    c.incr("a", 2**63 - 1)
    before = c.copy()
    with pytest.raises(CounterOverflow):
        c.incr("b", 1)
    assert c == before
    c.incr("a", -(2**63 - 1))
    c.incr("b", -(2**63))
    with pytest.raises(CounterOverflow):
        c.incr("a", -1)
    assert c.value() == -(2**63)


def test_list_positions_stay_unique_canonical_and_ordered() -> None:
    """The list's position-id invariants over random runs: every live position is
    canonical, holds a dot of the context that no other position holds, the index
    is the live positions in order, and pushes at the ends stay one level long."""
    from crdtkv.crdts.rlist import dot_of, levels

    @LAW_SETTINGS
    @given(runs("list"))
    def check(run: Run) -> None:
        joined = RList()
        for s in run.states:
            joined.merge(s)
        for s in [*run.states, joined]:
            assert isinstance(s, RList)
            live = sorted(p for p, e in s.entries.items() if e is not None)
            assert list(s.order) == live
            dots = [dot_of(p) for p in live]
            assert len(set(dots)) == len(dots)
            assert all(s.ctx.contains(d) for d in dots)
            for p in live:
                assert levels(p)  # canonical, else it raises
        for d in run.deltas:
            assert isinstance(d, RList)
            for p in d.entries:
                assert d.ctx.contains(dot_of(p))  # a narrow delta's context covers its entries

    check()

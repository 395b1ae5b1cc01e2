"""HyperLogLog CRDT: accuracy, union, delete-wins epochs, delta law, join laws, codec."""

from __future__ import annotations

import contextlib
import math
import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.crdts import codec
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.crdts.hll import (
    HLL,
    REGISTER_MAX,
    M,
    P,
    Q,
    _dense_max,
    _estimate,
    _sigma,
    _tau,
    hash_item,
    register_of,
)
from crdtkv.errors import CodecError

STD_ERROR = 1.04 / math.sqrt(M)  # 0.81%

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def items(start: int, stop: int) -> list[str]:
    return [f"item-{i}" for i in range(start, stop)]


def hll_of(xs: list[str], epoch: Timestamp = ZERO) -> HLL:
    h = HLL(epoch)
    h.add(xs)
    return h


# -- fixed forever: hash, bit split, register rule ---------------------------


PINNED = [
    # item, xxh3_64(utf-8, seed 0), (register index, register value)
    ("", 3244421341483603138, (5314, 2)),
    ("a", 16629034431890738719, (3615, 1)),
    ("hello", 10760762337991515389, (7421, 1)),
    ("item-0", 12663533321891974041, (2969, 2)),
    ("item-1", 12172481486005482930, (13746, 8)),
    ("héllo wörld", 14581225737120344164, (10340, 1)),
    ("🙂", 18173977023123133863, (5543, 2)),
]


def test_parameters_are_pinned() -> None:
    assert (P, M, Q, REGISTER_MAX) == (14, 16384, 50, 51)


@pytest.mark.parametrize(("item", "digest", "register"), PINNED)
def test_hash_and_register_are_pinned(item: str, digest: int, register: tuple[int, int]) -> None:
    assert hash_item(item) == digest
    assert register_of(item) == register
    h = hll_of([item])
    index, value = register
    assert h.registers[index] == value
    assert h.size() == 1


def test_register_rule_matches_a_plain_reading() -> None:
    """Index = low P bits; value = 1 + trailing zeros of the remaining Q bits (capped at Q+1)."""
    for item in [*items(0, 2000), *(p[0] for p in PINNED)]:
        digest = hash_item(item)
        index = digest & (M - 1)
        rest = digest >> P
        value = 1
        while value <= Q and not (rest >> (value - 1)) & 1:
            value += 1
        assert register_of(item) == (index, value)


def test_empty_hash_is_the_published_xxh3_test_vector() -> None:
    assert hash_item("") == 0x2D06800538D394C2  # XXH3_64bits("") from the xxHash sources


# -- accuracy -----------------------------------------------------------------


@pytest.mark.parametrize("n", [10**3, 10**4, 10**5, 10**6])
def test_error_within_three_standard_errors(n: int) -> None:
    h = HLL()
    for start in range(0, n, 100_000):
        h.add(items(start, min(n, start + 100_000)))
    estimate = h.count()
    assert abs(estimate - n) / n <= 3 * STD_ERROR, (n, estimate)


@pytest.mark.parametrize("n", [0, 1, 10, 100])
def test_small_range_is_exact_or_nearly(n: int) -> None:
    h = hll_of(items(0, n))
    assert abs(h.count() - n) <= 2
    assert h.value() == h.count()


def test_small_range_for_other_items() -> None:
    rng = random.Random(7)
    for n in [1, 5, 10, 50, 100]:
        xs = {f"{rng.random()}" for _ in range(n)}
        assert abs(hll_of(sorted(xs)).count() - len(xs)) <= 2


def test_duplicates_do_not_count() -> None:
    h = hll_of(items(0, 500) * 3)
    assert h == hll_of(items(0, 500))


def test_estimator_edges() -> None:
    assert _sigma(1.0) == math.inf
    assert _tau(0.0) == 0.0
    assert _tau(1.0) == 0.0
    empty = [M] + [0] * (REGISTER_MAX)
    assert _estimate(empty) == 0
    saturated = [0] * REGISTER_MAX + [M]
    assert _estimate(saturated) >= 2**63  # no ZeroDivisionError on absurd registers
    assert HLL(ZERO, bytes([REGISTER_MAX]) * M).count() >= 2**63


# -- union --------------------------------------------------------------------


def test_union_equals_hll_of_union_register_for_register() -> None:
    a_items, b_items, c_items = items(0, 6000), items(4000, 9000), items(8500, 8700)
    a, b, c = hll_of(a_items), hll_of(b_items), hll_of(c_items)
    expected = hll_of(a_items + b_items + c_items)
    before = [a.copy(), b.copy(), c.copy()]

    assert HLL.union_count([a, b, c]) == expected.count()
    assert [a, b, c] == before  # union_count changes nothing

    dest = HLL()
    dest.merge_from(a)
    dest.merge_from(b)
    dest.merge_from(c)
    assert dest.registers == expected.registers
    assert dest == expected
    assert [b, c] == before[1:]


def test_union_count_edges() -> None:
    assert HLL.union_count([]) == 0
    assert HLL.union_count([HLL()]) == 0
    small = hll_of(items(0, 10))
    assert HLL.union_count([small]) == small.count()
    assert HLL.union_count([small, hll_of(items(0, 5000))]) == hll_of(items(0, 5000)).count()


@SETTINGS
@given(
    st.lists(st.lists(st.text(max_size=5), max_size=40), min_size=1, max_size=4),
    st.integers(0, 4000),
)
def test_union_property(parts: list[list[str]], bulk: int) -> None:
    parts = [*parts, items(0, bulk)]
    hlls = [hll_of(p) for p in parts]
    union_items = [x for p in parts for x in p]
    expected = hll_of(union_items)
    assert HLL.union_count(hlls) == expected.count()
    dest = HLL()
    for h in hlls:
        dest.merge_from(h)
    assert dest.registers == expected.registers


def test_merge_from_keeps_destination_epoch_and_returns_delta() -> None:
    t1, t2 = Timestamp(10, 0, "a"), Timestamp(20, 0, "b")
    dest = hll_of(items(0, 100), t1)
    src = hll_of(items(50, 3000), t2)  # a newer epoch does not matter to a union
    old = dest.copy()
    delta = dest.merge_from(src)
    assert dest.epoch == t1
    assert dest.registers == hll_of(items(0, 3000)).registers
    assert delta.epoch == t1
    assert old.copy().joined(delta) == dest
    assert all(v > old.registers[i] for i, v in enumerate(delta.registers) if v)
    assert not dest.merge_from(src).has_registers()  # again: nothing raised
    assert not dest.merge_from(hll_of(items(0, 10))).has_registers()  # sparse source


# -- delete wins over concurrent adds ----------------------------------------


def test_delete_wins_over_concurrent_add_deltas() -> None:
    a, b = HLL(), HLL()
    b.merge(a.add(["x", "y"]))  # shared history
    assert a == b

    t = Timestamp(200, 0, "A")
    clear_delta = a.clear(t)  # replica A deletes
    add_delta = b.add(["z", "w", *items(0, 50)])  # replica B adds concurrently, old epoch
    assert add_delta.epoch == ZERO and add_delta.has_registers()

    a.merge(add_delta)
    b.merge(clear_delta)
    for r in (a, b):
        assert r.epoch == t
        assert r.count() == 0
        assert not r.has_registers()
    assert a == b

    # An add made after observing the delete lives in the new epoch and survives.
    after = b.add(["after"])
    assert after.epoch == t
    a.merge(after)
    a.merge(add_delta)  # a stale, duplicated old-epoch delta changes nothing
    assert a == b
    assert a.count() == 1


def test_delete_wins_with_full_state_exchange() -> None:
    t = Timestamp(5, 1, "A")
    a = hll_of(items(0, 3000))
    b = a.copy()
    a.clear(t)
    b.add(items(3000, 6000))  # concurrent, dense state at the old epoch
    a_full, b_full = a.copy(), b.copy()
    a.merge(b_full)
    b.merge(a_full)
    assert a == b == HLL(t)
    assert a.count() == 0


def test_clear_needs_a_newer_epoch() -> None:
    t = Timestamp(5, 0, "A")
    h = hll_of(["x"], t)
    with pytest.raises(ValueError):
        h.clear(t)
    with pytest.raises(ValueError):
        h.clear(Timestamp(4, 9, "Z"))
    with pytest.raises(TypeError):
        h.clear((6, 0, "A"))  # type: ignore[arg-type]
    assert h == hll_of(["x"], t)
    delta = h.clear(Timestamp(5, 0, "B"))
    assert delta == HLL(Timestamp(5, 0, "B"))
    assert not delta.has_registers() and not delta.is_bottom()


# -- delta law ------------------------------------------------------------------

epochs = st.sampled_from(
    [ZERO, Timestamp(1, 0, "a"), Timestamp(1, 0, "b"), Timestamp(1, 1, "a"), Timestamp(2, 0, "a")]
)
texts = st.lists(st.text(max_size=6), max_size=30)


@st.composite
def hlls(draw: st.DrawFn) -> HLL:
    """HLLs from random items and epochs, in both representations."""
    xs = draw(texts)
    if draw(st.booleans()):
        start = draw(st.integers(0, 5000))
        xs += items(start, start + draw(st.integers(0, 3000)))
    h = hll_of(xs, draw(epochs))
    if draw(st.booleans()):
        h = HLL(h.epoch, h.registers)  # force dense
    return h


@SETTINGS
@given(hlls(), texts, st.integers(0, 3000))
def test_add_delta_law(h: HLL, new: list[str], bulk: int) -> None:
    xs = new + items(10_000, 10_000 + bulk)
    old = h.copy()
    delta = h.add(xs)
    assert old.copy().joined(delta) == h
    merged = old.copy()
    merged.merge(delta)
    assert merged == h
    # The delta holds only raised registers, at the current epoch.
    if delta.has_registers():
        assert delta.epoch == h.epoch
    old_regs, delta_regs = old.registers, delta.registers
    for i, v in enumerate(delta_regs):
        if v:
            assert v > old_regs[i]
    assert delta.size() == sum(1 for a, b in zip(old_regs, h.registers, strict=True) if a != b)
    # Re-adding the same items raises nothing.
    again = h.add(xs)
    assert again.size() == 0 and not again.has_registers() and again.is_bottom()


@SETTINGS
@given(hlls(), hlls())
def test_merge_from_delta_law(dest: HLL, src: HLL) -> None:
    old = dest.copy()
    delta = dest.merge_from(src)
    assert old.joined(delta) == dest
    assert dest.epoch == old.epoch
    assert dest.registers == bytes(map(max, old.registers, src.registers))
    assert delta.size() == sum(
        1 for a, b in zip(old.registers, dest.registers, strict=True) if a != b
    )


@SETTINGS
@given(hlls(), st.integers(1, 10))
def test_clear_delta_law(h: HLL, wall: int) -> None:
    ts = Timestamp(h.epoch.wall_ms + wall, 0, "z")
    old = h.copy()
    delta = h.clear(ts)
    assert old.joined(delta) == h == HLL(ts)


def test_add_is_all_or_nothing() -> None:
    h = hll_of(["a"])
    before = h.copy()
    with pytest.raises(TypeError):
        h.add(["b", 3, "c"])  # type: ignore[list-item]
    with pytest.raises(UnicodeEncodeError):
        h.add(["b", "\ud800"])
    with pytest.raises(TypeError):
        h.add("abc")
    assert h == before


def test_large_deltas_and_states_turn_dense() -> None:
    h = HLL()
    delta = h.add(items(0, 20_000))
    assert not h.is_sparse() and not delta.is_sparse()
    small = h.add(items(20_000, 20_100))
    assert small.is_sparse()
    assert HLL().add(["x"]).is_sparse()


# -- join laws --------------------------------------------------------------------


@SETTINGS
@given(hlls(), hlls(), hlls())
def test_merge_commutative_associative_idempotent(a: HLL, b: HLL, c: HLL) -> None:
    snapshot = (a.copy(), b.copy(), c.copy())
    assert a.joined(b) == b.joined(a)
    assert a.joined(b).joined(c) == a.joined(b.joined(c))
    assert a.joined(a) == a
    assert a.joined(b).joined(b) == a.joined(b)
    assert (a, b, c) == snapshot  # joined() changes neither argument


@SETTINGS
@given(hlls(), hlls())
def test_merge_follows_the_epoch_rule(a: HLL, b: HLL) -> None:
    j = a.joined(b)
    assert j.epoch == max(a.epoch, b.epoch)
    if a.epoch > b.epoch:
        assert j.registers == a.registers
    elif b.epoch > a.epoch:
        assert j.registers == b.registers
    else:
        assert j.registers == bytes(map(max, a.registers, b.registers))
    assert HLL().joined(a) == a  # bottom is the identity
    assert a.joined(HLL()) == a


def test_self_merge() -> None:
    h = hll_of(items(0, 100))
    h.merge(h)
    assert h == hll_of(items(0, 100))
    h.merge_from(h)
    assert h == hll_of(items(0, 100))


def test_dense_max_matches_plain_max() -> None:
    rng = random.Random(1)
    for _ in range(20):
        a = bytes(rng.choice([0, 1, 50, 51, rng.randrange(52)]) for _ in range(M))
        b = bytes(rng.choice([0, 1, 50, 51, rng.randrange(52)]) for _ in range(M))
        assert _dense_max(a, b) == bytes(map(max, a, b))
    zeros, full = bytes(M), bytes([REGISTER_MAX]) * M
    assert _dense_max(zeros, full) == full == _dense_max(full, zeros)


# -- equality, bottom, size ---------------------------------------------------------


def test_equality_ignores_representation() -> None:
    t = Timestamp(3, 0, "a")
    sparse = hll_of(items(0, 300), t)
    dense = HLL(t, sparse.registers)
    assert sparse.is_sparse() and not dense.is_sparse()
    assert sparse == dense and dense == sparse
    assert sparse.size() == dense.size()
    assert dense != HLL(Timestamp(3, 0, "b"), sparse.registers)  # epoch differs
    dense.add(["not-in-sparse-yet"])
    assert sparse != dense and dense != sparse
    assert HLL() == HLL(ZERO, bytes(M)) == HLL(ZERO, {5: 0})
    assert HLL().__eq__(object()) is NotImplemented


def test_bottom_and_size() -> None:
    assert HLL().is_bottom() and HLL(ZERO, bytes(M)).is_bottom()
    assert HLL().size() == 0 and HLL().count() == 0
    assert not HLL(Timestamp(1, 0, "a")).is_bottom()
    h = hll_of(["a", "hello"])
    assert not h.is_bottom() and h.size() == 2


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        HLL(ZERO, bytes(M - 1))
    with pytest.raises(ValueError):
        HLL(ZERO, bytes([52]) + bytes(M - 1))
    with pytest.raises(ValueError):
        HLL(ZERO, {M: 1})
    with pytest.raises(ValueError):
        HLL(ZERO, {0: 52})
    with pytest.raises(TypeError):
        HLL((0, 0, ""))  # type: ignore[arg-type]


# -- encoding -----------------------------------------------------------------------


@SETTINGS
@given(hlls())
def test_pack_unpack_round_trip(h: HLL) -> None:
    blob = codec.pack(h)
    back = codec.unpack(blob, expect=HLL)
    assert isinstance(back, HLL)
    assert back == h
    assert back.registers == h.registers
    # Equal states encode identically, whatever their representation.
    assert codec.pack(HLL(h.epoch, h.registers)) == blob
    assert codec.pack(HLL(h.epoch, dict(enumerate(h.registers)))) == blob
    # The smaller of the two encodings is chosen.
    dense_blob = msgpack.packb(["hll", 1, [h.epoch.encode(), h.registers]], use_bin_type=True)
    assert len(blob) <= len(dense_blob)


def test_encoding_forms() -> None:
    t = Timestamp(1_700_000_000_000, 3, "replica-1")
    small = hll_of(["a", "hello"], t)
    assert small.encode() == [t.encode(), [[3615, 1], [7421, 1]]]
    big = hll_of(items(0, 50_000), t)
    payload = big.encode()
    assert isinstance(payload[1], bytes) and len(payload[1]) == M
    assert HLL.decode(payload) == big
    assert HLL().encode() == [ZERO.encode(), []]


def test_decoded_sparse_zero_values_are_dropped() -> None:
    h = HLL.decode([ZERO.encode(), [[0, 0], [1, 3]]])
    assert h == HLL(ZERO, {1: 3}) and h.size() == 1


def _wrap(payload: object, version: object = 1) -> object:
    return ["hll", version, payload]


EPOCH = [1, 0, "a"]
GARBAGE = [
    _wrap([EPOCH, bytes(M)], version=2),
    _wrap([EPOCH, bytes(M)], version="1"),
    _wrap(None),
    _wrap("x"),
    _wrap([EPOCH]),
    _wrap([EPOCH, bytes(M), 1]),
    _wrap([[1, 0], bytes(M)]),
    _wrap([[-1, 0, "a"], bytes(M)]),
    _wrap([None, []]),
    _wrap([EPOCH, bytes(M - 1)]),
    _wrap([EPOCH, bytes(M + 1)]),
    _wrap([EPOCH, b""]),
    _wrap([EPOCH, bytes([52]) + bytes(M - 1)]),
    _wrap([EPOCH, bytes(M - 1) + b"\xff"]),
    _wrap([EPOCH, "registers"]),
    _wrap([EPOCH, None]),
    _wrap([EPOCH, {0: 1}]),
    _wrap([EPOCH, 7]),
    _wrap([EPOCH, [[M, 1]]]),
    _wrap([EPOCH, [[-1, 1]]]),
    _wrap([EPOCH, [[0, 52]]]),
    _wrap([EPOCH, [[0, -1]]]),
    _wrap([EPOCH, [[0, 255]]]),
    _wrap([EPOCH, [[1, 1], [0, 1]]]),  # not sorted
    _wrap([EPOCH, [[1, 1], [1, 2]]]),  # duplicate index
    _wrap([EPOCH, [[0]]]),
    _wrap([EPOCH, [[0, 1, 2]]]),
    _wrap([EPOCH, [0, 1]]),
    _wrap([EPOCH, [["0", 1]]]),
    _wrap([EPOCH, [[0, "1"]]]),
    _wrap([EPOCH, [[True, 1]]]),
    _wrap([EPOCH, [[0, 1.0]]]),
    _wrap([EPOCH, [[0, None]]]),
    _wrap([EPOCH, [[2**64 - 1, 1]]]),
    _wrap([EPOCH, [[i, 1] for i in range(M + 1)]]),
]


@pytest.mark.parametrize("data", GARBAGE)
def test_garbage_raises_codec_error(data: object) -> None:
    with pytest.raises(CodecError):
        codec.decode(data, expect=HLL)
    blob = msgpack.packb(data, use_bin_type=True)
    with pytest.raises(CodecError):
        codec.unpack(blob, expect=HLL)


@pytest.mark.parametrize("data", [["hll", 1, p] for p in [[EPOCH, bytes(M)], [EPOCH, []]]])
def test_valid_edge_payloads_decode(data: object) -> None:
    h = codec.decode(data, expect=HLL)
    assert isinstance(h, HLL) and h.epoch == Timestamp(1, 0, "a") and h.size() == 0


def test_truncated_and_random_bytes_raise_codec_error() -> None:
    blob = codec.pack(hll_of(items(0, 100)))
    for cut in (1, 5, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CodecError):
            codec.unpack(blob[:cut], expect=HLL)
    rng = random.Random(3)
    for _ in range(200):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        with contextlib.suppress(CodecError):
            codec.unpack(junk, expect=HLL)


@SETTINGS
@given(st.binary(max_size=64))
def test_arbitrary_payload_bytes_raise_only_codec_error(junk: bytes) -> None:
    for payload in (
        [EPOCH, junk],
        [EPOCH, list(junk)],
        [EPOCH, [list(junk[i : i + 2]) for i in range(0, len(junk), 2)]],
    ):
        try:
            h = codec.decode(["hll", 1, payload], expect=HLL)
        except CodecError:
            continue
        assert isinstance(h, HLL)

"""Conflict rules, ordered index and range queries of the sorted set (``ZSet``)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.crdts import LexBound, ScoreBound, ZSet, codec
from crdtkv.crdts.hlc import HLC, Timestamp
from crdtkv.crdts.zset import MAX_SCORE, MIN_SCORE
from crdtkv.errors import CounterOverflow, NotNumeric

INF = math.inf


def ts(wall: int, actor: str) -> Timestamp:
    return Timestamp(wall, 0, actor)


def exchange(a: ZSet, b: ZSet, da: ZSet, db: ZSet) -> None:
    a.merge(db)
    b.merge(da)
    assert a == b
    assert_index_in_step(a)
    assert_index_in_step(b)


def assert_index_in_step(z: ZSet) -> None:
    """The index is exactly a sort of the live members by (score, member)."""
    expected = sorted((z.score(m), m) for m in z.entries if z.entries[m])
    assert [(repr(s), m) for s, m in z.index] == [(repr(s), m) for s, m in expected]


def make(items: dict[str, float]) -> ZSet:
    z = ZSet()
    z.add("a", ts(10, "a"), items.items())
    return z


# -- conflict rules ----------------------------------------------------------------------------
def test_zrem_racing_zincrby_keeps_only_the_unobserved_increment() -> None:
    """Redis Active-Active's example: 4.1, then ZREM at A and +2.0 at B, gives 2.0."""
    a, b = ZSet(), ZSet()
    d, _ = a.add("a", ts(10, "a"), [("m", 4.1)])
    b.merge(d)
    rm, removed = a.remove(["m"])
    inc, score_at_b = b.incr("b", "m", 2.0)
    assert removed == 1 and score_at_b == pytest.approx(6.1)
    exchange(a, b, rm, inc)
    assert a.score("m") == b.score("m") == 2.0
    assert a.value() == [("m", 2.0)]


def test_zadd_racing_zincrby_keeps_the_increment_on_the_new_score() -> None:
    a, b = ZSet(), ZSet()
    d, _ = a.add("a", ts(10, "a"), [("m", 1.0)])
    b.merge(d)
    d_add, added = a.add("a", ts(20, "a"), [("m", 10.0)])
    d_inc, _ = b.incr("b", "m", 0.5)
    assert added == 0
    exchange(a, b, d_add, d_inc)
    assert a.score("m") == 10.5


def test_concurrent_zincrbys_sum() -> None:
    a, b = ZSet(), ZSet()
    da, _ = a.incr("a", "m", 1.5)
    db, _ = b.incr("b", "m", 2.5)
    exchange(a, b, da, db)
    assert a.score("m") == 4.0


def test_zrem_racing_zadd_lets_the_zadd_win() -> None:
    a, b = ZSet(), ZSet()
    d, _ = a.add("a", ts(10, "a"), [("m", 1.0), ("n", 2.0)])
    b.merge(d)
    rm, _ = a.remove(["m", "n"])
    add, _ = b.add("b", ts(11, "b"), [("m", 5.0)])
    exchange(a, b, rm, add)
    assert a.value() == [("m", 5.0)]


def test_delete_keeps_a_concurrent_zadd() -> None:
    a, b = ZSet(), ZSet()
    d, _ = a.add("a", ts(10, "a"), [("x", 1.0), ("y", 2.0)])
    b.merge(d)
    clear = a.clear()
    assert len(a) == 0 and len(a.index) == 0
    add, _ = b.add("b", ts(11, "b"), [("z", 3.0)])
    exchange(a, b, clear, add)
    assert a.value() == [("z", 3.0)]


def test_scores_are_checked_before_anything_changes() -> None:
    z = make({"x": 1.0})
    before = z.copy()
    with pytest.raises(NotNumeric):
        z.add("a", ts(11, "a"), [("x", 2.0), ("y", math.nan)])
    with pytest.raises(TypeError):
        z.add("a", ts(11, "a"), [("y", "1")])  # type: ignore[list-item]
    for by in (INF, -INF, math.nan):
        with pytest.raises((CounterOverflow, NotNumeric)):
            z.incr("a", "x", by)
    assert z == before and z.value() == [("x", 1.0)]
    assert_index_in_step(z)


def test_infinite_scores_order_at_the_ends_and_absorb_increments() -> None:
    z = make({"lo": -INF, "hi": INF, "mid": 0.0})
    assert z.value() == [("lo", -INF), ("mid", 0.0), ("hi", INF)]
    _, score = z.incr("a", "hi", -1e300)
    assert score == INF
    z.add("a", ts(11, "a"), [("big", 1e308)])
    _, score = z.incr("a", "big", 1e308)  # a ZINCRBY may overflow to infinity, as in Redis
    assert score == INF
    assert_index_in_step(z)


# -- the index and range queries ------------------------------------------------------------
SAMPLE = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0, "e": 5.0, "f": 8.0}


def members(pairs: list[tuple[str, float]]) -> list[str]:
    return [m for m, _ in pairs]


def test_ties_order_by_member_bytes() -> None:
    names = ["b", "a", "é", "中", "😀", "Z", "aa"]
    z = make(dict.fromkeys(names, 1.0))
    assert members(z.value()) == sorted(names, key=lambda m: m.encode("utf-8"))


def test_rank_and_reverse_rank() -> None:
    z = make(SAMPLE)
    assert [z.rank(m) for m in "abcdef"] == [0, 1, 2, 3, 4, 5]
    assert [z.rank(m, reverse=True) for m in "abcdef"] == [5, 4, 3, 2, 1, 0]
    assert z.rank("nope") is None
    z.incr("b", "a", 10.0)
    assert z.rank("a") == 5
    assert_index_in_step(z)


@pytest.mark.parametrize(
    ("start", "stop", "reverse", "expected"),
    [
        (0, -1, False, "abcdef"),
        (1, 2, False, "bc"),
        (-2, -1, False, "ef"),
        (0, 100, False, "abcdef"),
        (-100, 0, False, "a"),
        (4, 2, False, ""),
        (6, 10, False, ""),
        (0, 1, True, "fe"),
        (-2, -1, True, "ba"),
        (2, 3, True, "dc"),
    ],
)
def test_range_by_rank(start: int, stop: int, reverse: bool, expected: str) -> None:
    z = make(SAMPLE)
    assert members(z.range_by_rank(start, stop, reverse)) == list(expected)


@pytest.mark.parametrize(
    ("lo", "hi", "reverse", "offset", "count", "expected"),
    [
        (MIN_SCORE, MAX_SCORE, False, 0, None, "abcdef"),
        (ScoreBound(2.0), ScoreBound(3.0), False, 0, None, "bcd"),
        (ScoreBound(2.0, True), ScoreBound(3.0), False, 0, None, "d"),
        (ScoreBound(2.0), ScoreBound(3.0, True), False, 0, None, "bc"),
        (ScoreBound(2.0, True), ScoreBound(2.0), False, 0, None, ""),
        (ScoreBound(4.0), ScoreBound(1.0), False, 0, None, ""),
        (MIN_SCORE, MAX_SCORE, True, 0, None, "fedcba"),
        (MIN_SCORE, MAX_SCORE, False, 1, 2, "bc"),
        (MIN_SCORE, MAX_SCORE, True, 1, 2, "ed"),
        (MIN_SCORE, MAX_SCORE, False, 4, -1, "ef"),
        (MIN_SCORE, MAX_SCORE, False, 10, 5, ""),
        (MIN_SCORE, MAX_SCORE, False, -1, 5, ""),
        (ScoreBound(2.0), MAX_SCORE, True, 0, 2, "fe"),
        (ScoreBound(-INF, True), ScoreBound(INF, True), False, 0, None, "abcdef"),
    ],
)
def test_range_by_score(
    lo: ScoreBound, hi: ScoreBound, reverse: bool, offset: int, count: int | None, expected: str
) -> None:
    z = make(SAMPLE)
    assert members(z.range_by_score(lo, hi, reverse, offset, count)) == list(expected)
    if offset == 0 and count is None:
        assert z.count_by_score(lo, hi) == len(expected)


def test_exclusive_infinite_bounds_leave_out_infinite_scores() -> None:
    z = make({"lo": -INF, "mid": 0.0, "hi": INF})
    assert members(z.range_by_score(MIN_SCORE, MAX_SCORE)) == ["lo", "mid", "hi"]
    assert members(z.range_by_score(ScoreBound(-INF, True), ScoreBound(INF, True))) == ["mid"]
    assert members(z.range_by_score(ScoreBound(INF), MAX_SCORE)) == ["hi"]
    assert z.range_by_score(ScoreBound(INF, True), MAX_SCORE) == []
    assert members(z.range_by_score(MIN_SCORE, ScoreBound(-INF))) == ["lo"]
    with pytest.raises(ValueError):
        ScoreBound(math.nan)


@pytest.mark.parametrize(
    ("lo", "hi", "reverse", "offset", "count", "expected"),
    [
        (LexBound(None), LexBound(None), False, 0, None, "abcdefg"),
        (LexBound("b"), LexBound("d"), False, 0, None, "bcd"),
        (LexBound("b", True), LexBound("d", True), False, 0, None, "c"),
        (LexBound("bb"), LexBound(None), False, 0, None, "cdefg"),
        (LexBound(None), LexBound("c"), True, 0, None, "cba"),
        (LexBound(None), LexBound(None), True, 1, 3, "fed"),
        (LexBound("e"), LexBound("c"), False, 0, None, ""),
    ],
)
def test_range_by_lex_with_equal_scores(
    lo: LexBound, hi: LexBound, reverse: bool, offset: int, count: int | None, expected: str
) -> None:
    z = make(dict.fromkeys("gfedcba", 0.0))
    assert members(z.range_by_lex(lo, hi, reverse, offset, count)) == list(expected)
    if offset == 0 and count is None:
        assert z.count_by_lex(lo, hi) == len(expected)


def test_range_by_lex_with_different_scores_searches_members_along_the_index() -> None:
    # Scores ascending with the members: the walk finds the same members as a filter.
    z = make({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0})
    assert members(z.range_by_lex(LexBound("b"), LexBound("c"))) == ["b", "c"]
    assert z.count_by_lex(LexBound("b", True), LexBound(None)) == 2


def test_decode_rebuilds_the_index_which_is_not_encoded() -> None:
    z = make(SAMPLE)
    z.incr("b", "a", 2.5)
    payload = z.encode()
    assert isinstance(payload, list) and len(payload) == 3  # context, entries, narrow
    back = codec.unpack(codec.pack(z), ZSet)
    assert isinstance(back, ZSet) and back == z
    assert list(back.index) == list(z.index)


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_one_member_delta_does_not_grow_with_the_set(n: int) -> None:
    z = ZSet()
    z.add("a", ts(10, "a"), [(f"m{i:06d}", float(i)) for i in range(n)])
    remote = z.copy()
    d_add, _ = z.add("a", ts(11, "a"), [("m000005", -1.0)])
    d_inc, _ = z.incr("a", "m000006", 0.5)
    d_rm, _ = z.remove(["m000007"])
    for d in (d_add, d_inc, d_rm):
        assert d.narrow and len(d.entries) == 1 and d.ctx.size() <= 3
        assert len(codec.pack(d)) < 80
        remote.merge(d)
    assert remote == z and remote.rank("m000005") == 0
    assert list(remote.index) == list(z.index)


# -- property: the index stays in step through random mutations and merges --------------------
ACTORS = ["a", "b", "c"]
MEMBERS = ["p", "q", "r", "s", "t"]
SCORES = st.one_of(
    st.floats(allow_nan=False, width=16),
    st.sampled_from([0.0, -0.0, 1.0, INF, -INF]),
)
BOUNDS = st.builds(
    ScoreBound, st.sampled_from([-INF, -1.0, 0.0, 0.5, 1.0, 2.0, INF]), st.booleans()
)


def _step(z: ZSet, actor: str, clock: HLC, now: int, draw: Any) -> ZSet:
    kind = draw(st.sampled_from(["add", "add", "incr", "incr", "remove", "clear"]))
    if kind == "clear":
        return z.clear()
    if kind == "remove":
        return z.remove(draw(st.lists(st.sampled_from(MEMBERS), max_size=2)))[0]
    if kind == "add":
        items = draw(st.lists(st.tuples(st.sampled_from(MEMBERS), SCORES), max_size=3))
        return z.add(actor, clock.now(now), items)[0]
    try:
        return z.incr(actor, draw(st.sampled_from(MEMBERS)), draw(st.floats(-4, 4, width=16)))[0]
    except CounterOverflow:
        return ZSet()


@st.composite
def replicas(draw: Any) -> list[ZSet]:
    clocks = [HLC(a, max_offset_ms=10**9) for a in ACTORS]
    zs = [ZSet() for _ in ACTORS]
    for now in range(1, draw(st.integers(1, 30)) + 1):
        i = draw(st.integers(0, 2))
        j = draw(st.integers(0, 2))
        if draw(st.integers(0, 3)) == 0:
            zs[j].merge(zs[i])  # a full state
        else:
            delta = _step(zs[i], ACTORS[i], clocks[i], now, draw)
            if draw(st.booleans()):
                zs[j].merge(delta)  # a narrow delta, or the bottom
        assert_index_in_step(zs[i])
        assert_index_in_step(zs[j])
    return zs


def model_window(seq: list[Any], offset: int, count: int | None) -> list[Any]:
    if offset < 0:
        return []
    return seq[offset:] if count is None or count < 0 else seq[offset : offset + count]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    replicas(),
    BOUNDS,
    BOUNDS,
    st.booleans(),
    st.integers(-1, 4),
    st.one_of(st.none(), st.integers(-1, 4)),
    st.integers(-7, 7),
    st.integers(-7, 7),
)
def test_index_matches_a_sort_of_the_value_and_ranges_match_a_model(
    zs: list[ZSet],
    lo: ScoreBound,
    hi: ScoreBound,
    reverse: bool,
    offset: int,
    count: int | None,
    start: int,
    stop: int,
) -> None:
    for z in zs:
        assert_index_in_step(z)
        back = codec.unpack(codec.pack(z), ZSet)
        assert isinstance(back, ZSet)
        assert_index_in_step(back)
        items = [(m, s) for s, m in sorted((z.score(m), m) for m in z.entries if z.entries[m])]
        assert z.value() == items
        for rank, (m, _) in enumerate(items):
            assert z.rank(m) == rank and z.rank(m, reverse=True) == len(items) - 1 - rank

        def inside(s: float) -> bool:
            above = s > lo.value if lo.exclusive else s >= lo.value
            below = s < hi.value if hi.exclusive else s <= hi.value
            return above and below

        chosen = [(m, s) for m, s in items if inside(s)]
        ordered = chosen[::-1] if reverse else chosen
        got = z.range_by_score(lo, hi, reverse, offset, count)
        assert got == model_window(ordered, offset, count)
        assert z.count_by_score(lo, hi) == len(chosen)
        seq = items[::-1] if reverse else items
        n = len(seq)
        a = max(start + n, 0) if start < 0 else start
        b = stop + n if stop < 0 else stop
        expected = [] if a > b or a >= n else seq[a : min(b, n - 1) + 1]
        assert z.range_by_rank(start, stop, reverse) == expected
    full = ZSet()
    for z in zs:
        full.merge(z)
    assert_index_in_step(full)

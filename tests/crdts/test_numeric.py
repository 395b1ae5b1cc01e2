"""Conflict rules of the numeric register (Redis strings), with two or three replicas."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv.crdts import NumericRegister, codec
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import Incr, Write, parse_number
from crdtkv.crdts.pn_counter import INT64_MAX, INT64_MIN
from crdtkv.errors import CodecError, CounterOverflow, NotNumeric


def ts(wall: int, actor: str, logical: int = 0) -> Timestamp:
    return Timestamp(wall, logical, actor)


def synced(*regs: NumericRegister) -> None:
    """Bring every replica to the join of all of them."""
    full = NumericRegister()
    for r in regs:
        full.merge(r)
    for r in regs:
        r.merge(full)


# -- the examples --------------------------------------------------------------------------
def test_concurrent_increments_sum_redis_active_active_example() -> None:
    a, b = NumericRegister(), NumericRegister()
    da = a.incr("a", 7)
    db = b.incr("b", 3)
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == 10
    assert a == b


def test_a_base_of_7_and_a_concurrent_increment_of_3_give_10() -> None:
    a, b = NumericRegister(), NumericRegister()
    b.merge(a.assign("a", ts(10, "a"), 7))
    db = b.incr("b", 3)
    a.merge(db)
    assert a.value() == b.value() == 10


@pytest.mark.parametrize("base", [5, "5", b"5"])
def test_set_then_incr_gives_plain_redis_result(base: int | str | bytes) -> None:
    r = NumericRegister()
    r.assign("a", ts(10, "a"), base)
    assert r.value() == base  # the base reads back as written
    r.incr("a", 1)
    assert r.value() == 6 and isinstance(r.value(), int)


def test_set_racing_incr_keeps_the_incr_on_top_of_the_new_base() -> None:
    a, b = NumericRegister(), NumericRegister()
    b.merge(a.assign("a", ts(10, "a"), 5))
    d_set = a.assign("a", ts(20, "a"), 100)
    d_incr = b.incr("b", 2)
    a.merge(d_incr)
    b.merge(d_set)
    assert a.value() == b.value() == 102
    assert a == b


def test_set_text_racing_incr_reads_the_text_and_a_local_incr_is_refused() -> None:
    a, b = NumericRegister(), NumericRegister()
    b.merge(a.assign("a", ts(10, "a"), 5))
    d_set = a.assign("a", ts(20, "a"), "abc")
    d_incr = b.incr("b", 1)
    a.merge(d_incr)
    b.merge(d_set)
    assert a.value() == b.value() == "abc"
    for r in (a, b):
        before = r.copy()
        with pytest.raises(NotNumeric, match="not an integer"):
            r.incr("a", 1)
        with pytest.raises(NotNumeric, match="not a valid float"):
            r.incr_float("a", 1.5)
        assert r == before
    # A later number base shows the increments again, those it did not observe.
    c = NumericRegister()
    c.merge(a)
    c.assign("c", ts(30, "c"), 1)
    assert c.value() == 1  # it observed the increment, so reset it


# -- bases and resets ------------------------------------------------------------------------
def test_a_base_write_resets_the_increments_it_observed() -> None:
    a, b = NumericRegister(), NumericRegister()
    a.merge(b.incr("b", 3))
    d = a.assign("a", ts(10, "a"), 10)
    b.merge(d)
    assert a.value() == b.value() == 10


def test_concurrent_bases_last_writer_wins_and_ties_break_by_actor() -> None:
    a, b = NumericRegister(), NumericRegister()
    da = a.assign("a", ts(10, "a"), 1)
    db = b.assign("b", ts(11, "b"), 2)
    a.merge(db)
    b.merge(da)
    assert a.value() == b.value() == 2
    c, d = NumericRegister(), NumericRegister()
    dc = c.assign("x", ts(10, "x"), "from-x")
    dd = d.assign("y", ts(10, "y"), "from-y")
    c.merge(dd)
    d.merge(dc)
    assert c.value() == d.value() == "from-y"


def test_increments_dropped_by_a_losing_base_stay_dropped() -> None:
    a, b, c = NumericRegister(), NumericRegister(), NumericRegister()
    d_inc = c.incr("c", 1)
    a.merge(d_inc)
    d_lose = a.assign("a", ts(10, "a"), 10)  # observed c's +1, and loses to b's base
    d_win = b.assign("b", ts(20, "b"), 20)  # did not observe the +1
    for r in (a, b, c):
        for d in (d_inc, d_lose, d_win):
            r.merge(d)
    assert a.value() == b.value() == c.value() == 20


def test_a_writer_running_total_rides_on_an_increment_concurrent_with_a_reset() -> None:
    """The documented difference from PNCounter (numeric module docstring)."""
    a, b = NumericRegister(), NumericRegister()
    a.merge(b.incr("b", 4))
    d_set = a.assign("a", ts(10, "a"), 0)  # observed b's 4
    d_inc = b.incr("b", 6)  # b has not seen the reset: its running total is 10
    a.merge(d_inc)
    b.merge(d_set)
    assert a.value() == b.value() == 10
    b.merge(b.assign("b", ts(20, "b"), 0))  # once b has seen a reset it starts afresh
    b.incr("b", 6)
    assert b.value() == 6


def test_delete_removes_what_it_observed_and_a_concurrent_increment_survives() -> None:
    a, b = NumericRegister(), NumericRegister()
    b.merge(a.assign("a", ts(10, "a"), 5))
    b.merge(a.incr("a", 2))
    d_del = a.clear()
    assert a.value() is None
    d_inc = b.incr("b", 2)
    a.merge(d_inc)
    b.merge(d_del)
    assert a.value() == b.value() == 2
    b.merge(b.clear())
    a.merge(b)
    assert a.value() is None and b.value() is None and not a.is_bottom()


def test_a_cell_holds_one_increment_entry_per_writer() -> None:
    r = NumericRegister()
    for _ in range(1000):
        d = r.incr("a", 1)
        # The delta: the new entry, and a context of the writer's old dot and its new one.
        assert len(d.cell) == 1 and d.ctx.size() <= 2
    r.incr("b", 1)
    assert r.value() == 1001
    assert len(r.cell) == 2 and all(isinstance(e, Incr) for e in r.cell)
    assert r.ctx.cloud == set()


# -- integer and float arithmetic ----------------------------------------------------------
def test_integer_overflow_is_refused_before_any_change() -> None:
    r = NumericRegister()
    r.assign("a", ts(10, "a"), INT64_MAX)
    before = r.copy()
    with pytest.raises(CounterOverflow):
        r.incr("a", 1)
    assert r == before
    r.assign("a", ts(11, "a"), INT64_MIN)
    r.incr("a", INT64_MAX)  # -1; a's own sum is now INT64_MAX
    before = r.copy()
    with pytest.raises(CounterOverflow):
        r.incr("a", 1)  # the result 0 is in range, a's sum would not be
    assert r == before and r.value() == -1
    # A string key holds any JSON value (the register view), big integers included: one
    # past 64 bits is a value, never a number, so an increment of it is refused.
    r.assign("a", ts(12, "a"), INT64_MAX + 1)
    assert r.value() == INT64_MAX + 1
    after = r.copy()
    with pytest.raises(NotNumeric):
        r.incr("a", 1)
    assert r == after
    with pytest.raises(CounterOverflow):
        r.assign("a", ts(13, "a"), 2**64)  # past what MessagePack holds
    assert r == after


def test_float_sums_are_added_in_actor_order_so_every_replica_has_the_same_double() -> None:
    steps = {"a": 1e16, "b": 1.0, "c": -1e16}
    deltas = []
    for actor, by in steps.items():
        deltas.append(NumericRegister().incr_float(actor, by))
    values = set()
    for order in itertools.permutations(deltas):
        r = NumericRegister()
        for d in order:
            r.merge(d)
        values.add(r.value())
    # Actor order: (1e16 + 1.0) rounds to 1e16, then - 1e16 gives 0.0.
    assert values == {0.0}
    assert (1e16 - 1e16) + 1.0 == 1.0  # another order would give another double


def test_mixed_integer_and_float_increments() -> None:
    r = NumericRegister()
    r.assign("a", ts(10, "a"), 5)
    r.incr_float("a", 0.5)
    assert r.value() == 5.5
    before = r.copy()
    with pytest.raises(NotNumeric, match="not an integer"):
        r.incr("a", 1)  # 5.5 is not an integer, as in Redis
    assert r == before
    r.incr_float("a", 0.5)
    r.incr("a", 1)  # 6.0 is
    assert r.value() == 7.0
    s = NumericRegister()
    s.incr("b", 5)
    s.incr_float("b", 0.25)
    assert s.value() == 5.25


@pytest.mark.parametrize("by", [math.inf, -math.inf, math.nan, 10**400])
def test_a_float_increment_that_is_not_finite_is_refused(by: float) -> None:
    r = NumericRegister()
    r.assign("a", ts(10, "a"), 1)
    before = r.copy()
    with pytest.raises(CounterOverflow, match="NaN or Infinity"):
        r.incr_float("a", by)
    assert r == before


def test_a_float_result_that_is_not_finite_is_refused() -> None:
    r = NumericRegister()
    r.incr_float("a", 1e308)
    before = r.copy()
    with pytest.raises(CounterOverflow):
        r.incr_float("a", 1e308)  # a's own sum would be infinite
    r.merge(NumericRegister().incr_float("b", 1e308))
    assert r.value() == math.inf  # concurrent sums may overflow; a read shows it
    before = r.copy()
    with pytest.raises(CounterOverflow):
        r.incr_float("a", -1.0)  # and a local increment of it is refused
    assert r == before


def test_an_increment_by_zero_creates_an_absent_value_and_otherwise_changes_nothing() -> None:
    r = NumericRegister()
    d = r.incr("a", 0)
    assert r.value() == 0 and not d.is_bottom()
    d = r.incr("a", 0)
    assert d.is_bottom() and r.value() == 0
    r.assign("a", ts(10, "a"), "abc")
    with pytest.raises(NotNumeric):
        r.incr("a", 0)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("0", 0),
        ("-7", -7),
        (b"42", 42),
        (str(INT64_MAX), INT64_MAX),
        (str(INT64_MIN), INT64_MIN),
        (str(INT64_MAX + 1), float(INT64_MAX + 1)),  # past 64 bits: a float, as in Redis
        ("1.5", 1.5),
        ("-.5", -0.5),
        ("1e3", 1000.0),
        ("-0", -0.0),
        ("007", 7.0),
        ("abc", None),
        ("", None),
        (" 1", None),
        ("1 ", None),
        ("inf", None),
        ("nan", None),
        ("0x10", None),
        ("1e999", None),
        ("٣", None),  # a digit, but not an ASCII one
        (b"\xff", None),
    ],
)
def test_parse_number(text: str | bytes, number: float | None) -> None:
    got = parse_number(text)
    assert got == number and type(got) is type(number)


# -- encoding ---------------------------------------------------------------------------------
def test_decode_refuses_malformed_entries() -> None:
    r = NumericRegister()
    r.assign("a", ts(10, "a"), 5)
    ctx, cell = r.encode()  # type: ignore[misc]
    good = cell[0]
    bad_cells = [
        [[0, "a", 2, good[3], 5]],  # a dot outside the context
        [[0, "a", 1, good[3], math.nan]],
        [[0, "a", 1, good[3], 2**64]],
        [[2, "a", 1, 0, None]],  # an unknown kind
        [[1, "a", 1, 1.5, None]],  # an integer sum that is a float
        [[1, "a", 1, 0, math.inf]],
        [good, good],  # a duplicate dot
        "entries",
    ]
    for bad in bad_cells:
        with pytest.raises(CodecError):
            codec.decode(["num", 1, [ctx, bad]])
    # A string's base is any JSON value (null and bools too): they decode, as values.
    for value in (None, True, [1], {"k": "v"}):
        back_value = codec.decode(["num", 1, [ctx, [[0, "a", 1, good[3], value]]]])
        assert isinstance(back_value, NumericRegister) and back_value.value() == value
    back = codec.unpack(codec.pack(r))
    assert back == r and isinstance(back, NumericRegister)
    assert isinstance(back.cell[0], Write) and back.value() == 5


_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.integers(),
    st.floats(),
    st.sampled_from(["a", ""]),
    st.binary(max_size=2),
)
_ENTRY = st.tuples(
    st.sampled_from([0, 1, 0.0, True]),
    st.sampled_from(["a", "b", 1]),
    st.integers(-1, 4),
    st.one_of(_LEAF, st.just([1, 0, "a"])),
    _LEAF,
).map(list)
_CTX = st.sampled_from([[{"a": 3}, []], [{"a": 1}, [["b", 2]]], [{}, []]])
_PAYLOADS = {
    "num": st.tuples(_CTX, st.lists(_ENTRY, max_size=3)).map(list),
    "hash": st.tuples(
        _CTX,
        st.lists(
            st.tuples(st.sampled_from(["x", "y", 3]), st.lists(_ENTRY, max_size=3)).map(list),
            max_size=3,
        ),
        st.one_of(st.booleans(), _LEAF),
    ).map(list),
}
_PAYLOADS["zset"] = _PAYLOADS["hash"]


@pytest.mark.parametrize("tag", sorted(_PAYLOADS))
def test_near_valid_payloads_decode_to_a_round_trip_or_raise_codec_error(tag: str) -> None:
    @settings(max_examples=400, deadline=None)
    @given(_PAYLOADS[tag])
    def check(payload: object) -> None:
        try:
            value = codec.decode([tag, 1, payload])
        except CodecError:
            return
        back = codec.unpack(codec.pack(value))
        assert back == value and codec.pack(back) == codec.pack(value)

    check()

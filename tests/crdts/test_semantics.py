"""Conflict rules of each type, shown with two or three replicas."""

from __future__ import annotations

import pytest

from crdtkv.crdts import LWWRegister, ORSet, PNCounter
from crdtkv.crdts.causal import CausalContext, Order, vv_compare, vv_dominates, vv_meet
from crdtkv.crdts.hlc import HLC, Timestamp
from crdtkv.errors import ClockOffsetError


# -- causal machinery ----------------------------------------------------------------
def test_context_compacts_contiguous_dots_and_keeps_gaps_in_cloud() -> None:
    c = CausalContext()
    c.add(("a", 1))
    c.add(("a", 3))
    c.add(("a", 4))
    assert c.vv == {"a": 1} and c.cloud == {("a", 3), ("a", 4)}
    assert c.contains(("a", 3)) and not c.contains(("a", 2))
    c.add(("a", 2))
    assert c.vv == {"a": 4} and not c.cloud
    assert c.next_dot("a") == ("a", 5)


def test_context_join_and_vv_orders() -> None:
    x = CausalContext({"a": 2}, [("b", 2)])
    y = CausalContext({"b": 1, "c": 1})
    j = x.join(y)
    assert j == CausalContext({"a": 2, "b": 2, "c": 1})
    assert x == CausalContext({"a": 2}, [("b", 2)])  # join is pure
    assert vv_compare({"a": 1}, {"a": 1}) is Order.EQUAL
    assert vv_compare({"a": 1}, {"a": 2}) is Order.BEFORE
    assert vv_compare({"a": 2, "b": 1}, {"a": 2}) is Order.AFTER
    assert vv_compare({"a": 2}, {"b": 1}) is Order.CONCURRENT
    assert vv_dominates({"a": 3}, {"a": 3, "b": 0})
    assert vv_meet([{"a": 3, "b": 1}, {"a": 2}, {"a": 5, "b": 4}]) == {"a": 2}


def test_hlc_is_monotonic_and_absorbs_remote_time() -> None:
    clock = HLC("a", max_offset_ms=100)
    t1 = clock.now(1000)
    t2 = clock.now(1000)
    t3 = clock.now(999)  # physical time went backwards: still increasing
    assert t1 < t2 < t3
    remote = Timestamp(1050, 7, "b")
    after = clock.update(remote, 1000)
    assert after > remote and after.wall_ms == 1050 and after.logical == 8
    assert clock.now(1000) > after


def test_hlc_rejects_remote_time_too_far_ahead_without_moving() -> None:
    clock = HLC("a", max_offset_ms=100)
    clock.now(1000)
    before = clock.last
    with pytest.raises(ClockOffsetError, match="ahead"):
        clock.update(Timestamp(1101, 0, "b"), 1000)
    assert clock.last == before


def test_timestamps_order_by_wall_then_logical_then_actor() -> None:
    assert Timestamp(1, 5, "z") < Timestamp(2, 0, "a")
    assert Timestamp(2, 0, "z") < Timestamp(2, 1, "a")
    assert Timestamp(2, 1, "a") < Timestamp(2, 1, "b")


# -- counter ----------------------------------------------------------------------------
def test_counter_sums_increments_from_every_replica() -> None:
    a, b, c = PNCounter(), PNCounter(), PNCounter()
    da = a.incr("a", 5)
    db = b.incr("b", -2)
    dc = c.incr("c", 10)
    for s in (a, b, c):
        for d in (da, db, dc):
            s.merge(d)
    assert a.value() == b.value() == c.value() == 13


def test_counter_reset_keeps_concurrent_increments() -> None:
    a, b = PNCounter(), PNCounter()
    b.merge(a.incr("a", 5))
    reset = a.reset()  # a has observed +5 only
    concurrent = b.incr("b", 3)  # b increments concurrently
    a.merge(concurrent)
    b.merge(reset)
    assert a.value() == b.value() == 3
    assert a == b


def test_counter_reset_removes_only_what_it_observed() -> None:
    a, b = PNCounter(), PNCounter()
    d1 = a.incr("a", 4)
    b.merge(d1)
    d2 = a.incr("a", 6)  # not yet seen by b
    r = b.reset()
    a.merge(r)
    b.merge(d2)
    assert a.value() == b.value() == 6


# -- register -----------------------------------------------------------------------------
def test_register_later_timestamp_wins_everywhere() -> None:
    ca, cb = HLC("a"), HLC("b")
    a, b = LWWRegister(), LWWRegister()
    da = a.assign(ca.now(1000), "from-a")
    db = b.assign(cb.now(1001), "from-b")
    a.merge(db)
    b.merge(da)
    assert a.value(0) == b.value(0) == "from-b"


def test_register_equal_wall_time_ties_break_by_actor() -> None:
    a, b = LWWRegister(), LWWRegister()
    da = a.assign(Timestamp(5, 0, "a"), 1)
    db = b.assign(Timestamp(5, 0, "b"), 2)
    a.merge(db)
    b.merge(da)
    assert a == b and a.value(0) == 2


def test_register_ttl_expiry_and_the_later_write_decides_expiry() -> None:
    r = LWWRegister()
    r.assign(Timestamp(10, 0, "a"), "v", expires_ms=20)
    assert r.value(19) == "v" and r.present(19)
    assert r.value(20) is None and not r.present(20)
    r.assign(Timestamp(11, 0, "a"), "w")  # a later write without TTL clears the expiry
    assert r.value(10**12) == "w"


def test_register_delete_is_a_tombstone_that_later_writes_overcome() -> None:
    r = LWWRegister()
    r.assign(Timestamp(10, 0, "a"), "v")
    stale = LWWRegister(Timestamp(9, 0, "b"), "old")
    tomb = r.delete(Timestamp(11, 0, "a"))
    r.merge(stale)  # a late, older write does not resurrect
    assert not r.present(0) and tomb.tombstone
    r.merge(LWWRegister(Timestamp(12, 0, "b"), "new"))
    assert r.value(0) == "new"


# -- set ----------------------------------------------------------------------------------
def test_set_add_wins_over_concurrent_remove() -> None:
    a, b = ORSet(), ORSet()
    d, _ = a.add("a", ["x"])
    b.merge(d)
    rm, removed = a.remove(["x"])  # a removes the x it saw
    add, added = b.add("b", ["x"])  # b re-adds x concurrently
    assert removed == 1 and added == 0
    a.merge(add)
    b.merge(rm)
    assert a.members() == b.members() == ["x"]
    assert a == b


def test_set_remove_of_observed_add_sticks() -> None:
    a, b = ORSet(), ORSet()
    d, _ = a.add("a", ["x", "y"])
    b.merge(d)
    rm, _ = b.remove(["x"])
    a.merge(rm)
    a.merge(d)  # a duplicate of the old add does not bring x back
    assert a.members() == b.members() == ["y"]


def test_set_clear_keeps_concurrent_adds() -> None:
    a, b = ORSet(), ORSet()
    d, _ = a.add("a", ["x", "y"])
    b.merge(d)
    clear = a.clear()
    add, _ = b.add("b", ["z"])
    a.merge(add)
    b.merge(clear)
    assert a.members() == b.members() == ["z"]


def test_set_delta_of_one_add_does_not_grow_with_set_size() -> None:
    from crdtkv.crdts import codec

    sizes = []
    for n in (10_000, 50_000):
        s = ORSet()
        s.add("a", [f"m{i}" for i in range(n)])
        d, added = s.add("a", ["new-member"])
        rm, removed = s.remove(["m5"])
        assert added == 1 and removed == 1
        sizes.append((len(codec.pack(d)), len(codec.pack(rm))))
    assert sizes[0] == sizes[1]  # same bytes for 10,000 and 50,000 members
    assert sizes[0][0] < 64 and sizes[0][1] < 64


def test_set_narrow_delta_merge_only_touches_listed_members() -> None:
    a, b = ORSet(), ORSet()
    d, _ = a.add("a", ["x", "y"])
    b.merge(d)
    rm, _ = a.remove(["x"])
    assert rm.narrow and list(rm.entries) == ["x"]
    b.merge(rm)
    assert b.members() == ["y"]
    assert not b.narrow  # a state stays a full state after joining a delta

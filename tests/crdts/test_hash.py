"""Conflict rules of the hash (``ORMap``: field -> numeric register)."""

from __future__ import annotations

import math

import pytest

from crdtkv.crdts import ORMap, codec
from crdtkv.crdts.hlc import Timestamp
from crdtkv.errors import CodecError, NotNumeric


def ts(wall: int, actor: str) -> Timestamp:
    return Timestamp(wall, 0, actor)


def exchange(a: ORMap, b: ORMap, da: ORMap, db: ORMap) -> None:
    a.merge(db)
    b.merge(da)
    assert a == b


def test_concurrent_hsets_of_different_fields_both_survive() -> None:
    a, b = ORMap(), ORMap()
    da, added_a = a.set("a", ts(10, "a"), [("x", "1")])
    db, added_b = b.set("b", ts(10, "b"), [("y", "2")])
    assert added_a == added_b == 1
    exchange(a, b, da, db)
    assert a.value() == b.value() == {"x": "1", "y": "2"}


def test_concurrent_hsets_of_one_field_keep_one_last_writer() -> None:
    a, b = ORMap(), ORMap()
    da, _ = a.set("a", ts(11, "a"), [("f", "from-a")])
    db, _ = b.set("b", ts(10, "b"), [("f", "from-b")])
    exchange(a, b, da, db)
    assert a.get("f") == b.get("f") == "from-a"
    # Equal wall time and counter: the actor breaks the tie.
    c, d = ORMap(), ORMap()
    dc, _ = c.set("c", ts(10, "c"), [("f", 1)])
    dd, _ = d.set("d", ts(10, "d"), [("f", 2)])
    exchange(c, d, dc, dd)
    assert c.get("f") == d.get("f") == 2


def test_hdel_removes_only_what_it_observed_and_a_concurrent_hset_wins() -> None:
    a, b = ORMap(), ORMap()
    d, _ = a.set("a", ts(10, "a"), [("f", "old"), ("g", "keep")])
    b.merge(d)
    rm, removed = a.remove(["f", "missing"])
    assert removed == 1 and a.get("f") is None
    add, added = b.set("b", ts(11, "b"), [("f", "new")])
    assert added == 0  # f was present at b
    exchange(a, b, rm, add)
    assert a.value() == {"f": "new", "g": "keep"}


def test_hdel_racing_hincrby_keeps_only_the_unobserved_increment() -> None:
    a, b = ORMap(), ORMap()
    d, _ = a.set("a", ts(10, "a"), [("f", 10)])
    b.merge(d)
    rm, _ = a.remove(["f"])
    inc, value_at_b = b.incr("b", "f", 5)
    assert value_at_b == 15
    exchange(a, b, rm, inc)
    assert a.get("f") == b.get("f") == 5


def test_hdel_of_an_observed_field_sticks_against_late_duplicates() -> None:
    a, b = ORMap(), ORMap()
    d, _ = a.set("a", ts(10, "a"), [("f", 1)])
    b.merge(d)
    rm, _ = b.remove(["f"])
    a.merge(rm)
    a.merge(d)  # a duplicate of the old write does not bring f back
    b.merge(d)
    assert a.value() == b.value() == {}
    # and no tombstone is kept: the context remembers the removed dot
    assert a.entries == {} and a.ctx.vv == {"a": 1} and not a.ctx.cloud


def test_concurrent_hincrbys_sum_and_survive_a_concurrent_hset() -> None:
    a, b, c = ORMap(), ORMap(), ORMap()
    d0, _ = a.set("a", ts(10, "a"), [("n", 1)])
    b.merge(d0)
    c.merge(d0)
    d_a, _ = a.incr("a", "n", 2)
    d_b, _ = b.incr("b", "n", 3)
    d_c, _ = c.set("c", ts(20, "c"), [("n", 100)])  # observed 1, not the increments
    for r in (a, b, c):
        for d in (d_a, d_b, d_c):
            r.merge(d)
    assert a.get("n") == b.get("n") == c.get("n") == 105


def test_hincrby_of_an_absent_field_and_hincrbyfloat() -> None:
    h = ORMap()
    _, v = h.incr("a", "n", 5)
    assert v == 5 and h.get("n") == 5
    _, v = h.incr_float("a", "n", 0.5)
    assert v == 5.5 and h.get("n") == 5.5
    h.set("a", ts(10, "a"), [("s", b"10")])
    _, v = h.incr("a", "s", -3)
    assert v == 7 and h.get("s") == 7


def test_an_increment_of_a_field_that_is_not_a_number_is_refused() -> None:
    h = ORMap()
    h.set("a", ts(10, "a"), [("s", "abc"), ("f", "1.5")])
    before = h.copy()
    with pytest.raises(NotNumeric):
        h.incr("a", "s", 1)
    with pytest.raises(NotNumeric):
        h.incr_float("a", "s", 1.0)
    with pytest.raises(NotNumeric):
        h.incr("a", "f", 1)  # 1.5 is not an integer
    assert h == before


def test_hset_checks_every_value_before_changing_anything() -> None:
    h = ORMap()
    h.set("a", ts(10, "a"), [("x", 1)])
    before = h.copy()
    with pytest.raises(NotNumeric):
        h.set("a", ts(11, "a"), [("x", 2), ("y", math.nan)])
    with pytest.raises(TypeError):
        h.set("a", ts(11, "a"), [("x", 2), ("y", None)])  # type: ignore[list-item]
    assert h == before and h.get("x") == 1


def test_hset_of_one_field_twice_keeps_the_last_value() -> None:
    h = ORMap()
    d, added = h.set("a", ts(10, "a"), [("f", 1), ("f", 2)])
    assert added == 1 and h.get("f") == 2
    other = ORMap()
    other.merge(d)
    assert other == h and len(other) == 1


def test_delete_keeps_a_concurrent_hset() -> None:
    a, b = ORMap(), ORMap()
    d, _ = a.set("a", ts(10, "a"), [("x", 1), ("y", 2)])
    b.merge(d)
    clear = a.clear()
    add, _ = b.set("b", ts(11, "b"), [("z", 3)])
    exchange(a, b, clear, add)
    assert a.value() == {"z": 3}


def test_reads_are_sorted_by_field() -> None:
    h = ORMap()
    h.set("a", ts(10, "a"), [("b", 2), ("a", 1), ("c", "x")])
    h.remove(["c"])
    assert h.fields() == ["a", "b"] and list(h.value()) == ["a", "b"]
    assert "a" in h and "c" not in h and len(h) == 2


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_one_field_delta_does_not_grow_with_the_hash(n: int) -> None:
    h = ORMap()
    h.set("a", ts(10, "a"), [(f"f{i}", i) for i in range(n)])
    remote = h.copy()
    d_set, _ = h.set("a", ts(11, "a"), [("f5", "new")])
    d_inc, _ = h.incr("a", "f6", 1)
    d_rm, _ = h.remove(["f7"])
    for d in (d_set, d_inc, d_rm):
        assert d.narrow and len(d.entries) == 1 and d.ctx.size() <= 3
        assert len(codec.pack(d)) < 80
        remote.merge(d)
    assert remote == h and len(remote) == n - 1
    assert not remote.narrow


def test_decode_refuses_a_dot_held_by_two_fields_and_empty_cells_in_a_full_state() -> None:
    h = ORMap()
    h.set("a", ts(10, "a"), [("x", 1)])
    ctx, entries, narrow = h.encode()  # type: ignore[misc]
    cell = entries[0][1]
    with pytest.raises(CodecError, match="two keys"):
        codec.decode(["hash", 1, [ctx, [["x", cell], ["y", cell]], narrow]])
    with pytest.raises(CodecError, match="live keys"):
        codec.decode(["hash", 1, [ctx, [["x", cell], ["y", []]], False]])
    with pytest.raises(CodecError, match="a score"):
        codec.decode(["zset", 1, [ctx, [["x", cell]], narrow]])  # 1 is not a float score
    back = codec.unpack(codec.pack(h), ORMap)
    assert back == h

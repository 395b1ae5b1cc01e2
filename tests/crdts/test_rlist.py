"""The list CRDT (crdtkv.crdts.rlist): positions, order, concurrency rules, codec."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv.crdts import RList, codec
from crdtkv.crdts.hlc import HLC
from crdtkv.crdts.rlist import between, dot_of, level, levels
from crdtkv.errors import CodecError

A, B, C = "r1~aaaa", "r2~bbbb", "r3~cccc"


def _sync(*lists: RList) -> None:
    full = RList()
    for x in lists:
        full.merge(x)
    for x in lists:
        x.merge(full)


@given(st.integers(-(2**63) + 1, 2**63 - 1), st.integers(-(2**63) + 1, 2**63 - 1))
@settings(max_examples=500)
def test_integer_encoding_preserves_order(a: int, b: int) -> None:
    if a == b:
        return
    la, lb = level(a, A, 1), level(b, A, 1)
    assert (la < lb) == (a < b)
    assert levels(la) == [(a, A, 1)]


@given(
    st.lists(
        st.tuples(st.integers(-5, 5), st.sampled_from([A, B, "r1~a"]), st.integers(-9, 9)),
        min_size=1,
        max_size=4,
    ),
    st.lists(
        st.tuples(st.integers(-5, 5), st.sampled_from([A, B, "r1~a"]), st.integers(-9, 9)),
        min_size=1,
        max_size=4,
    ),
)
def test_string_order_is_tuple_order_of_levels(x: list[Any], y: list[Any]) -> None:
    x = [lv for lv in x if lv[2] != 0] or [(0, A, 1)]
    y = [lv for lv in y if lv[2] != 0] or [(0, A, 1)]
    px, py = "".join(level(*lv) for lv in x), "".join(level(*lv) for lv in y)
    assert (px < py) == (x < y)
    assert (px == py) == (x == y)


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_one_replica_behaves_as_a_python_list(data: Any) -> None:
    """Pushes, inserts, removals and LSET on one replica match a plain list, and every
    position is unique and in order."""
    rl, model = RList(), []
    clock = HLC(A, max_offset_ms=10**9)
    for step in range(data.draw(st.integers(1, 60))):
        n = len(model)
        kind = data.draw(st.sampled_from(["l", "r", "ins", "rm", "set"]))
        v = f"v{step}"
        if kind == "l":
            rl.push(A, [v], left=True)
            model.insert(0, v)
        elif kind == "r":
            rl.push(A, [v], left=False)
            model.append(v)
        elif kind == "ins":
            i = data.draw(st.integers(0, n))
            actor = data.draw(st.sampled_from([A, B]))
            rl.insert(actor, i, v)
            model.insert(i, v)
        elif n and kind == "rm":
            i = data.draw(st.integers(0, n - 1))
            rl.remove([rl.order[i]])
            del model[i]
        elif n:
            i = data.draw(st.integers(0, n - 1))
            rl.assign(rl.order[i], clock.now(1000 + step), v)
            model[i] = v
        assert rl.values() == model
        assert list(rl.order) == sorted(rl.entries)
        _check_index(rl)
        dots = [dot_of(p) for p in rl.order]
        assert len(set(dots)) == len(dots)
        assert all(rl.ctx.contains(d) for d in dots)


def _check_index(rl: RList) -> None:
    """The index holds exactly the live (position, element) pairs, in order, and the reads
    by index agree with the entries."""
    live = sorted((p, e) for p, e in rl.entries.items() if e is not None)
    assert list(rl.items()) == live
    assert list(rl.items(reverse=True)) == live[::-1]
    values = rl.values()
    assert [rl.value_at_index(i) for i in range(len(live))] == values
    assert values == [rl.value_at(p) for p, _ in live]
    if live:
        mid = len(live) // 2
        assert rl.slice(mid, len(live)) == live[mid:]
        assert rl.slice(0, mid + 1, reverse=True) == live[: mid + 1][::-1]
        assert rl.range(mid, -1) == values[mid:]


def test_the_index_follows_merges_that_replace_an_element() -> None:
    """Merges that add, remove and LWW-replace elements (an LSET arriving from another
    replica) keep the index's (position, element) pairs equal to the entries, and a copy's
    index is its own."""
    a, b, c = RList(), RList(), RList()
    ca, cb = HLC(A, max_offset_ms=10**9), HLC(B, max_offset_ms=10**9)
    a.push(A, ["x", "y", "z"], left=False)
    _sync(a, b, c)
    d1 = b.assign(b.order[1], cb.now(1000), "Y")  # an LSET at b
    d2 = b.push(B, ["w"], left=True)
    d3, _ = b.remove([b.order[-1]])
    for d in (d1, d2, d3):
        a.merge(d)
        _check_index(a)
    assert a.values() == b.values() == ["w", "x", "Y"]
    snapshot = a.copy()
    a.merge(a.assign(a.order[2], ca.now(2000), "later"))  # the later LSET wins at a
    _check_index(a)
    _check_index(snapshot)
    assert snapshot.values() == ["w", "x", "Y"] and a.values() == ["w", "x", "later"]
    c.merge(b)  # a full state carrying the replaced element
    c.merge(a)
    _check_index(c)
    assert c.values() == ["w", "x", "later"]
    c.clear()
    _check_index(c)
    assert c.values() == []
    decoded = codec.unpack(codec.pack(a), RList)
    _check_index(decoded)
    assert decoded.values() == a.values()


class _CountingDict(dict[str, Any]):
    """A dict that counts the lookups made in it."""

    lookups = 0

    def __getitem__(self, key: str) -> Any:
        type(self).lookups += 1
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        type(self).lookups += 1
        return super().get(key, default)


def test_reads_by_index_do_not_look_elements_up_one_by_one() -> None:
    """LRANGE, LINDEX, a pop's values and the walks of LREM/LPOS/LINSERT read the
    elements from the index: at a million elements a lookup in ``entries`` per element
    is a cache miss or two, which made an LRANGE of 100 three times dearer than at a
    thousand."""
    rl = RList()
    rl.push(A, [f"v{i}" for i in range(1_000)], left=False)
    rl.entries = _CountingDict(rl.entries)
    _CountingDict.lookups = 0
    assert rl.range(400, 499) == [f"v{i}" for i in range(400, 500)]
    assert rl.value_at_index(500) == "v500"
    assert [elem for _, elem in rl.slice(0, 3)] == ["v0", "v1", "v2"]
    assert sum(1 for _ in rl.items(reverse=True)) == 1_000
    assert rl.values()[-1] == "v999"
    assert _CountingDict.lookups == 0


def test_runs_of_pushes_keep_one_level_positions() -> None:
    """10,000 LPUSHes and RPUSHes, alternating in runs, by two replicas in turn: every
    position stays one level long."""
    a, b = RList(), RList()
    rnd = random.Random(7)
    for i in range(200):
        for x, actor in ((a, A), (b, B)):
            left = rnd.random() < 0.5
            x.push(actor, [f"{actor}{i}-{j}" for j in range(25)], left=left)
        _sync(a, b)
    assert len(a) == 10_000 and a == b
    assert all(len(levels(p)) == 1 for p in a.order)
    assert max(len(p) for p in a.order) < 40


@pytest.mark.parametrize("left", [True, False])
def test_concurrent_runs_at_one_end_do_not_interleave(left: bool) -> None:
    a, b, c = RList(), RList(), RList()
    a.push(A, ["x", "y"], left=False)
    _sync(a, b, c)
    for i in range(5):  # one element per push, as separate commands
        a.push(A, [f"a{i}"], left=left)
        b.push(B, [f"b{i}"], left=left)
        c.push(C, [f"c{i}"], left=left)
    _sync(a, b, c)
    vals = a.values()
    assert a.values() == b.values() == c.values()
    for who in "abc":
        idx = [i for i, v in enumerate(vals) if v.startswith(who)]
        assert idx == list(range(idx[0], idx[0] + 5)), vals  # contiguous
        run = [vals[i] for i in idx]
        expect = [f"{who}{i}" for i in range(5)]
        assert run == (expect[::-1] if left else expect)  # each replica's order kept


def test_concurrent_inserts_after_one_pivot_do_not_interleave() -> None:
    a, b = RList(), RList()
    a.push(A, ["p", "q"], left=False)
    _sync(a, b)
    for i in range(4):
        a.insert(A, 1 + i, f"a{i}")  # each after the previous one
        b.insert(B, 1 + i, f"b{i}")
    _sync(a, b)
    assert a.values() == b.values()
    vals = a.values()
    assert vals[0] == "p" and vals[-1] == "q"
    middle = vals[1:-1]
    assert middle in (
        [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(4)],
        [f"b{i}" for i in range(4)] + [f"a{i}" for i in range(4)],
    )


def test_concurrent_pops_return_the_same_head_and_remove_it_once() -> None:
    a, b = RList(), RList()
    a.push(A, ["h", "i", "j"], left=False)
    _sync(a, b)
    head_a, head_b = a.order[0], b.order[0]
    assert a.value_at(head_a) == b.value_at(head_b) == "h"
    a.remove([head_a])
    b.remove([head_b])
    _sync(a, b)
    assert a.values() == b.values() == ["i", "j"]


def test_del_racing_a_push_keeps_the_push() -> None:
    a, b = RList(), RList()
    a.push(A, ["x"], left=False)
    _sync(a, b)
    a.clear()
    b.push(B, ["y"], left=True)
    _sync(a, b)
    assert a.values() == b.values() == ["y"]


def test_lset_racing_a_removal_stays_removed_and_concurrent_lsets_pick_one() -> None:
    a, b = RList(), RList()
    ca, cb = HLC(A, max_offset_ms=10**9), HLC(B, max_offset_ms=10**9)
    a.push(A, ["x", "y"], left=False)
    _sync(a, b)
    a.remove([a.order[0]])
    b.assign(b.order[0], cb.now(1000), "X")
    a.assign(a.order[0], ca.now(1000), "YA")
    b.assign(b.order[1], cb.now(1001), "YB")
    _sync(a, b)
    assert a.values() == b.values() == ["YB"]


def test_a_delta_costs_the_same_bytes_at_any_length() -> None:
    small, big = RList(), RList()
    small.push(A, [f"v{i}" for i in range(1_000)], left=False)
    big.push(A, [f"v{i}" for i in range(100_000)], left=False)
    sizes = []
    for x in (small, big):
        sizes.append(
            (
                len(codec.pack(x.push(A, ["new"], left=False))),
                len(codec.pack(x.push(A, ["new"], left=True))),
                len(codec.pack(x.remove([x.order[len(x) // 2]])[0])),
            )
        )
    for s, b in zip(sizes[0], sizes[1], strict=True):
        assert b <= s + 4, sizes  # the integers may take a digit more


def test_between_refuses_nothing_and_always_lies_between() -> None:
    rnd = random.Random(3)
    rl = RList()
    for i in range(300):
        actor = rnd.choice([A, B, C])
        rl.insert(actor, rnd.randint(0, len(rl)), str(i))
        if rnd.random() < 0.2 and len(rl) > 2:
            rl.remove([rl.order[rnd.randrange(len(rl))]])
    order = list(rl.order)
    for x, y in itertools.pairwise(order):
        p = between(x, y, "r9~z", 10**6)
        assert x < p < y


HOSTILE = [
    ["", "v"],
    ["not a position", "v"],
    [level(0, A, 1) + "x", "v"],  # trailing garbage
    ["a0" + A + "!a0", "v"],  # k = 0
    ["b01" + A + "!a1", "v"],  # not canonical (leading zero)
    ["a0 bad!a1", "v"],  # actor below the separator
    [level(0, A, 1), 5],  # element not a string
    [level(0, A, 1), ["v", "not a timestamp"]],
]


@pytest.mark.parametrize("entry", HOSTILE)
def test_hostile_entries_raise_codec_error(entry: list[Any]) -> None:
    payload = [[{A: 5}, []], [entry], False]
    with pytest.raises(CodecError):
        codec.decode(["list", 1, payload])


def test_decode_refuses_dots_outside_the_context_and_shared_dots() -> None:
    with pytest.raises(CodecError, match="outside"):
        codec.decode(["list", 1, [[{}, []], [[level(0, A, 1), "v"]], False]])
    p1, p2 = level(0, A, 1), level(5, B, 3) + level(0, A, 1)
    with pytest.raises(CodecError, match="two positions"):
        codec.decode(["list", 1, [[{A: 1, B: 3}, []], [[p1, "v"], [p2, "w"]], False]])
    with pytest.raises(CodecError, match="live"):
        codec.decode(["list", 1, [[{A: 1}, []], [[p1, None]], False]])

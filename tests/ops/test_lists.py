"""List ops: Redis's commands over one replica (against a model), errors, types, limits,
and the concurrency rules over several replicas exchanging their delta groups."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv import limits
from crdtkv.crdts import RList
from crdtkv.crdts.rlist import levels
from crdtkv.errors import BadRequest, NotFound, WrongType
from crdtkv.ops import apply_op
from crdtkv.replica import Replica

NOW_MS = 1_700_000_000_000


def fresh(rid: str = "r1") -> Replica:
    return Replica(rid, "inc1")


def op(r: Replica, name: str, key: str = "l", **fields: Any) -> Any:
    return apply_op(r, {"op": f"lists.{name}", "key": key, **fields}, NOW_MS)


def values(r: Replica, key: str = "l") -> list[str]:
    try:
        return list(op(r, "get", key)["values"])
    except NotFound:
        return []


def sync(*replicas: Replica) -> None:
    """Every replica applies every other's pending delta groups."""
    pending = [(r, r.take_pending()) for r in replicas]
    for src, entries in pending:
        for dst in replicas:
            if dst is not src:
                for e in entries:
                    dst.apply_remote(e.group, src.actor, NOW_MS)


# -- one replica: Redis's semantics, against a model --------------------------------------------


def _span(n: int, start: int, stop: int) -> tuple[int, int]:
    if start < 0:
        start = max(start + n, 0)
    if stop < 0:
        stop += n
    stop = min(stop, n - 1)
    return (0, 0) if start > stop or start >= n else (start, stop + 1)


class Model:
    """Redis's list commands on a Python list, as the Redis documentation states them."""

    def __init__(self) -> None:
        self.xs: list[str] = []

    def run(self, name: str, f: dict[str, Any]) -> Any:
        xs = self.xs
        if name in ("lpush", "rpush"):
            if f.get("exists") and not xs:
                return {"length": 0}
            for v in f["values"]:
                if name == "lpush":
                    xs.insert(0, v)
                else:
                    xs.append(v)
            return {"length": len(xs)}
        if name in ("lpop", "rpop"):
            n = f.get("pop_count")
            n = 1 if n is None else n
            out = []
            for _ in range(min(n, len(xs))):
                out.append(xs.pop(0) if name == "lpop" else xs.pop())
            return {"values": out}
        if name == "range":
            a, b = _span(len(xs), f["start"], f["stop"])
            return {"values": xs[a:b]}
        if name == "trim":
            a, b = _span(len(xs), f["start"], f["stop"])
            self.xs = xs[a:b]
            return {"ok": True}
        if name == "index":
            i = f["index"] + len(xs) if f["index"] < 0 else f["index"]
            return {"value": xs[i] if 0 <= i < len(xs) else None}
        if name == "insert":
            if not xs:
                return {"length": 0}
            if f["pivot"] not in xs:
                return {"length": -1}
            i = xs.index(f["pivot"])
            xs.insert(i if f["where"] == "before" else i + 1, f["element"])
            return {"length": len(xs)}
        if name == "remove":
            count, v = f["rem_count"], f["element"]
            idx = [i for i, x in enumerate(xs) if x == v]
            if count < 0:
                idx = idx[::-1]
            if count:
                idx = idx[: abs(count)]
            for i in sorted(idx, reverse=True):
                del xs[i]
            return {"removed": len(idx)}
        if name == "pos":
            rank = f.get("rank") or 1
            count = f.get("matches")
            want = 1 if count is None else (count or len(xs) + 1)
            maxlen = f.get("maxlen") or len(xs)
            order = list(range(len(xs)))
            if rank < 0:
                order = order[::-1]
            found = [i for i in order[:maxlen] if xs[i] == f["element"]][abs(rank) - 1 :]
            return {"positions": found[:want]}
        if name == "move":  # on itself only, in the model
            if not xs:
                return {"value": None}
            v = xs.pop(0) if f["from_end"] == "left" else xs.pop()
            if f["to_end"] == "left":
                xs.insert(0, v)
            else:
                xs.append(v)
            return {"value": v}
        raise AssertionError(name)


VALS = st.sampled_from(["a", "b", "c", "d"])
IDX = st.integers(-8, 8)
OPS = st.one_of(
    st.tuples(
        st.just("lpush"), st.fixed_dictionaries({"values": st.lists(VALS, min_size=1, max_size=4)})
    ),
    st.tuples(
        st.just("rpush"),
        st.fixed_dictionaries(
            {"values": st.lists(VALS, min_size=1, max_size=4), "exists": st.booleans()}
        ),
    ),
    st.tuples(
        st.sampled_from(["lpop", "rpop"]),
        st.fixed_dictionaries({"pop_count": st.none() | st.integers(0, 5)}),
    ),
    st.tuples(
        st.sampled_from(["range", "trim"]), st.fixed_dictionaries({"start": IDX, "stop": IDX})
    ),
    st.tuples(st.just("index"), st.fixed_dictionaries({"index": IDX})),
    st.tuples(
        st.just("insert"),
        st.fixed_dictionaries(
            {"where": st.sampled_from(["before", "after"]), "pivot": VALS, "element": VALS}
        ),
    ),
    st.tuples(
        st.just("remove"), st.fixed_dictionaries({"rem_count": st.integers(-3, 3), "element": VALS})
    ),
    st.tuples(
        st.just("pos"),
        st.fixed_dictionaries(
            {
                "element": VALS,
                "rank": st.none() | st.sampled_from([1, 2, -1, -2]),
                "matches": st.none() | st.integers(0, 3),
                "maxlen": st.none() | st.integers(0, 6),
            }
        ),
    ),
    st.tuples(
        st.just("move"),
        st.fixed_dictionaries(
            {
                "from_end": st.sampled_from(["left", "right"]),
                "to_end": st.sampled_from(["left", "right"]),
            }
        ),
    ),
)


@given(st.lists(OPS, max_size=40))
@settings(max_examples=300, deadline=None)
def test_one_replica_answers_as_redis_documents(program: list[tuple[str, dict[str, Any]]]) -> None:
    r, model = fresh(), Model()
    for name, fields in program:
        if name == "move":
            fields = {**fields, "destination": "l"}
        reads = name in ("range", "index", "pos")
        if reads and not model.xs:
            with pytest.raises(NotFound):
                op(r, name, **fields)
            continue
        assert op(r, name, **fields) == model.run(name, fields), (name, fields, model.xs)
        assert values(r) == model.xs
        got = r.get(("list", "l"))
        if got is not None:
            assert isinstance(got, RList)
            assert list(got.order) == sorted(p for p, e in got.entries.items() if e is not None)


def test_an_emptied_list_is_absent_and_its_reads_answer_404() -> None:
    r = fresh()
    op(r, "rpush", values=["a"])
    assert op(r, "lpop") == {"values": ["a"]}
    for name, f in (("get", {}), ("length", {}), ("range", {"start": 0, "stop": -1})):
        with pytest.raises(NotFound):
            op(r, name, **f)
    assert apply_op(r, {"op": "keys.type", "key": "l"}, NOW_MS) == {"type": "none"}
    assert op(r, "rpush", values=["b"], exists=True) == {"length": 0}
    assert op(r, "lpop") == {"values": []}
    assert op(r, "move", destination="m", from_end="right", to_end="left") == {"value": None}
    assert apply_op(r, {"op": "keys.exists", "key": "m"}, NOW_MS) == {"exists": False}


def test_lset_refuses_an_absent_key_and_an_index_out_of_range_and_changes_nothing() -> None:
    r = fresh()
    with pytest.raises(NotFound, match="no such key"):
        op(r, "set", index=0, element="x")
    op(r, "rpush", values=["a", "b"])
    seq = r.seq
    for i in (2, -3, 10**18):
        with pytest.raises(BadRequest, match="index out of range"):
            op(r, "set", index=i, element="x")
    assert r.seq == seq and values(r) == ["a", "b"]
    op(r, "set", index=-1, element="z")
    assert values(r) == ["a", "z"]


def test_lpos_refuses_rank_zero() -> None:
    r = fresh()
    op(r, "rpush", values=["a"])
    with pytest.raises(BadRequest, match="RANK can't be zero"):
        op(r, "pos", element="a", rank=0)


def test_wrong_types_are_refused_and_change_nothing() -> None:
    r = fresh()
    apply_op(r, {"op": "sets.add", "key": "s", "members": ["x"]}, NOW_MS)
    op(r, "rpush", values=["a"])
    seq = r.seq
    with pytest.raises(WrongType):
        op(r, "rpush", "s", values=["a"])
    with pytest.raises(WrongType):
        op(r, "range", "s", start=0, stop=-1)
    with pytest.raises(WrongType):  # LMOVE into a set: refused before the pop
        op(r, "move", destination="s", from_end="right", to_end="left")
    with pytest.raises(WrongType):
        apply_op(r, {"op": "sets.add", "key": "l", "members": ["x"]}, NOW_MS)
    assert r.seq == seq and values(r) == ["a"]


def test_lmove_between_two_lists_is_one_delta_group() -> None:
    r = fresh()
    op(r, "rpush", values=["a", "b", "c"])
    seq = r.seq
    assert op(r, "move", destination="m", from_end="left", to_end="right") == {"value": "a"}
    assert r.seq == seq + 1
    entries = r.take_pending()
    assert {k for k in entries[-1].group.deltas} == {
        ("list", "l"),
        ("list", "m"),
        ("meta", "l"),
        ("meta", "m"),
    }
    assert values(r) == ["b", "c"] and values(r, "m") == ["a"]
    assert apply_op(r, {"op": "keys.type", "key": "m"}, NOW_MS) == {"type": "list"}
    other = fresh("r2")
    for e in entries:
        other.apply_remote(e.group, r.actor, NOW_MS)
    assert values(other) == ["b", "c"] and values(other, "m") == ["a"]


def test_a_list_holds_at_most_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "LIST_ELEMENTS_MAX", 3)
    r = fresh()
    op(r, "rpush", values=["a", "b"])
    with pytest.raises(BadRequest, match="at most 3"):
        op(r, "lpush", values=["c", "d"])
    assert values(r) == ["a", "b"]
    op(r, "insert", where="after", pivot="a", element="x")
    with pytest.raises(BadRequest, match="at most 3"):
        op(r, "insert", where="after", pivot="a", element="y")


def test_an_answer_larger_than_range_max_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "RANGE_MAX", 3)
    r = fresh()
    op(r, "rpush", values=list("abcd"))
    with pytest.raises(BadRequest, match="at most 3"):
        op(r, "range", start=0, stop=-1)
    with pytest.raises(BadRequest, match="at most 3"):
        op(r, "get")
    assert op(r, "range", start=1, stop=-1) == {"values": ["b", "c", "d"]}


# -- several replicas ---------------------------------------------------------------------------


def test_concurrent_pushes_at_both_ends_are_kept_in_one_order() -> None:
    a, b, c = fresh("r1"), fresh("r2"), fresh("r3")
    op(a, "rpush", values=["m"])
    sync(a, b, c)
    for i in range(3):
        op(a, "lpush", values=[f"a{i}"])
        op(b, "lpush", values=[f"b{i}"])
        op(c, "rpush", values=[f"c{i}"])
    sync(a, b, c)
    assert values(a) == values(b) == values(c)
    got = values(a)
    assert got[-4:] == ["m", "c0", "c1", "c2"]
    assert got[:6] in (["a2", "a1", "a0", "b2", "b1", "b0"], ["b2", "b1", "b0", "a2", "a1", "a0"])


def test_concurrent_pops_return_the_same_head_and_it_is_gone_once() -> None:
    a, b = fresh("r1"), fresh("r2")
    op(a, "rpush", values=["h", "i", "j"])
    sync(a, b)
    assert op(a, "lpop") == op(b, "lpop") == {"values": ["h"]}
    sync(a, b)
    assert values(a) == values(b) == ["i", "j"]


def test_del_racing_a_push_keeps_the_push() -> None:
    a, b = fresh("r1"), fresh("r2")
    op(a, "rpush", values=["x", "y"])
    sync(a, b)
    apply_op(a, {"op": "keys.delete", "key": "l"}, NOW_MS)
    op(b, "rpush", values=["z"])
    sync(a, b)
    assert values(a) == values(b) == ["z"]


def test_linsert_racing_lrem_of_its_pivot_keeps_the_insert() -> None:
    a, b = fresh("r1"), fresh("r2")
    op(a, "rpush", values=["p", "q", "r"])
    sync(a, b)
    assert op(a, "insert", where="after", pivot="q", element="x") == {"length": 4}
    assert op(b, "remove", rem_count=0, element="q") == {"removed": 1}
    sync(a, b)
    assert values(a) == values(b) == ["p", "x", "r"]


def test_ltrim_removes_only_what_it_observed() -> None:
    a, b = fresh("r1"), fresh("r2")
    op(a, "rpush", values=["1", "2", "3"])
    sync(a, b)
    op(a, "trim", start=0, stop=0)
    op(b, "rpush", values=["4"])
    sync(a, b)
    assert values(a) == values(b) == ["1", "4"]


def test_long_runs_of_pushes_keep_positions_one_level_long() -> None:
    r = fresh()
    for i in range(200):
        op(r, "lpush" if i % 3 else "rpush", values=[str(i)] * 20)
    state = r.get(("list", "l"))
    assert isinstance(state, RList)
    assert len(state) == 4_000 and all(len(levels(p)) == 1 for p in state.order)

"""Sorted set ops: Redis's commands and options, errors, types, limits, concurrency."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtkv import limits
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.zset import LexBound, ScoreBound, ZSet
from crdtkv.errors import BadRequest, NotFound, WrongType
from crdtkv.ops import apply_op
from crdtkv.replica import Replica

NOW_MS = 1_700_000_000_000


def fresh(rid: str = "r1") -> Replica:
    return Replica(rid, "inc1")


def op(r: Replica, name: str, key: str = "z", **fields: Any) -> Any:
    return apply_op(r, {"op": f"zsets.{name}", "key": key, **fields}, NOW_MS)


def zadd(r: Replica, scores: dict[str, Any], key: str = "z", **flags: Any) -> Any:
    return op(r, "add", key, scores=scores, **flags)


def items(r: Replica, key: str = "z") -> list[Any]:
    return list(op(r, "get", key)["items"])


def refused(r: Replica, name: str, message: str, **fields: Any) -> None:
    with pytest.raises(BadRequest) as e:
        op(r, name, **fields)
    assert message in e.value.message, e.value.message


def sync(*replicas: Replica) -> None:
    """Every replica applies every other's pending delta groups."""
    pending = [(r, r.take_pending()) for r in replicas]
    for src, entries in pending:
        for dst in replicas:
            if dst is not src:
                for e in entries:
                    dst.apply_remote(e.group, src.actor, NOW_MS)


# -- ZADD ---------------------------------------------------------------------------------------


def test_zadd_adds_and_updates_and_counts_new_members() -> None:
    r = fresh()
    assert zadd(r, {"a": 1, "b": 2.5}) == {"added": 2, "score": None}
    assert zadd(r, {"a": 3, "c": "-inf"}) == {"added": 1, "score": None}
    assert items(r) == [["c", "-inf"], ["b", 2.5], ["a", 3.0]]
    assert zadd(r, {"a": 4, "b": 2.5, "d": "+inf"}, ch=True) == {"added": 2, "score": None}
    assert items(r)[-1] == ["d", "inf"]


def test_zadd_nx_xx_gt_lt() -> None:
    r = fresh()
    zadd(r, {"a": 5})
    assert zadd(r, {"a": 9, "b": 1}, nx=True, ch=True)["added"] == 1
    assert op(r, "member", member="a")["score"] == 5
    assert zadd(r, {"a": 6, "x": 1}, xx=True, ch=True)["added"] == 1  # a changed, x not added
    assert op(r, "member", member="x")["score"] is None
    assert zadd(r, {"a": 4}, gt=True, ch=True)["added"] == 0
    assert zadd(r, {"a": 7, "n": 1}, gt=True, ch=True)["added"] == 2  # GT still adds new ones
    assert zadd(r, {"a": 8}, lt=True, ch=True)["added"] == 0
    assert zadd(r, {"a": 2}, lt=True, xx=True, ch=True)["added"] == 1
    assert op(r, "member", member="a")["score"] == 2
    assert zadd(r, {"a": 2}, ch=True)["added"] == 0  # same score: no change


def test_zadd_incr() -> None:
    r = fresh()
    assert zadd(r, {"a": 1.5}, incr=True) == {"added": 1, "score": 1.5}
    assert zadd(r, {"a": 2}, incr=True) == {"added": 0, "score": 3.5}
    assert zadd(r, {"a": 2}, incr=True, ch=True) == {"added": 1, "score": 5.5}
    assert zadd(r, {"a": 1}, incr=True, nx=True) == {"added": 0, "score": None}
    assert zadd(r, {"b": 1}, incr=True, xx=True) == {"added": 0, "score": None}
    assert zadd(r, {"a": -1}, incr=True, gt=True) == {"added": 0, "score": None}
    assert zadd(r, {"a": 1}, incr=True, lt=True) == {"added": 0, "score": None}
    assert zadd(r, {"a": 1}, incr=True, gt=True)["score"] == 6.5
    assert op(r, "card")["size"] == 1


def test_zadd_option_errors_use_redis_texts_and_change_nothing() -> None:
    r = fresh()
    zadd(r, {"a": 1})
    seq = r.seq
    cases = [
        ({"nx": True, "xx": True}, "XX and NX options at the same time are not compatible"),
        ({"nx": True, "gt": True}, "GT, LT, and/or NX options at the same time are not compatible"),
        ({"nx": True, "lt": True}, "GT, LT, and/or NX options at the same time are not compatible"),
        ({"gt": True, "lt": True}, "GT, LT, and/or NX options at the same time are not compatible"),
    ]
    for flags, message in cases:
        refused(r, "add", message, scores={"b": 1}, **flags)
    refused(r, "add", "INCR option supports a single increment-element pair",
            scores={"a": 1, "b": 2}, incr=True)  # fmt: skip
    refused(r, "add", "value is not a valid float", scores={"a": "abc"})
    refused(r, "add", "value is not a valid float", scores={"a": "nan"})
    refused(r, "add", "at least one member", scores={})
    refused(r, "add", "must be true or false", scores={"a": 1}, nx=1)
    assert r.seq == seq


def test_zadd_incr_to_nan_is_refused() -> None:
    r = fresh()
    zadd(r, {"a": "+inf"})
    refused(r, "incr", "must be a finite number", member="a", increment=math.inf)
    assert zadd(r, {"a": 1}, incr=True)["score"] == "inf"


# -- ZINCRBY, ZREM, ZPOP ----------------------------------------------------------------------


def test_zincrby_and_zrem() -> None:
    r = fresh()
    assert op(r, "incr", member="a", increment=2.5) == {"score": 2.5}
    assert op(r, "incr", member="a", increment=-1) == {"score": 1.5}
    zadd(r, {"b": 0})
    assert op(r, "remove", members=["a", "zz", "a"]) == {"removed": 1}
    assert op(r, "remove", "absent", members=["a"]) == {"removed": 0}
    assert op(r, "remove", members=["b"]) == {"removed": 1}
    with pytest.raises(NotFound):  # an empty sorted set does not exist
        op(r, "card")
    refused(r, "incr", "over 4096 bytes", member="x" * 5000, increment=1)


def test_zpopmin_and_zpopmax() -> None:
    r = fresh()
    zadd(r, {"a": 1, "b": 2, "c": 3, "d": 4})
    assert op(r, "popmin") == {"items": [["a", 1.0]]}
    assert op(r, "popmax", count=2) == {"items": [["d", 4.0], ["c", 3.0]]}
    with pytest.raises(BadRequest):  # a pop takes 1 or more (one definition of count)
        op(r, "popmin", count=0)
    assert op(r, "popmin", count=5) == {"items": [["b", 2.0]]}
    assert op(r, "popmin") == {"items": []}
    with pytest.raises(NotFound):
        op(r, "get")


# -- reads ------------------------------------------------------------------------------------


def test_member_scores_and_ranks() -> None:
    r = fresh()
    zadd(r, {"a": 1, "b": 2, "c": 2})
    assert op(r, "member", member="b") == {"score": 2.0, "rank": 1, "rev_rank": 1}
    assert op(r, "member", member="a") == {"score": 1.0, "rank": 0, "rev_rank": 2}
    assert op(r, "member", member="q") == {"score": None, "rank": None, "rev_rank": None}
    assert op(r, "scores", members=["c", "q", "a"]) == {"scores": [2.0, None, 1.0]}
    assert op(r, "card") == {"size": 3}
    with pytest.raises(NotFound):
        op(r, "member", "absent", member="a")


def test_range_by_rank() -> None:
    r = fresh()
    zadd(r, {"a": 1, "b": 2, "c": 3, "d": 4})
    assert op(r, "range", start=0, stop=-1)["items"] == ["a", "b", "c", "d"]
    assert op(r, "range", start=1, stop=2, withscores=True)["items"] == [["b", 2.0], ["c", 3.0]]
    assert op(r, "range", start=0, stop=1, rev=True)["items"] == ["d", "c"]
    assert op(r, "range", start=-2, stop=100)["items"] == ["c", "d"]
    assert op(r, "range", start=3, stop=1)["items"] == []
    assert op(r, "range", start=10, stop=20)["items"] == []


def test_range_by_score_and_count() -> None:
    r = fresh()
    zadd(r, {"a": 1, "b": 2, "c": 3, "d": 4, "m": "-inf"})
    by = {"min": "(1", "max": 3}
    assert op(r, "rangebyscore", **by)["items"] == ["b", "c"]
    assert op(r, "rangebyscore", **by, rev=True)["items"] == ["c", "b"]
    assert op(r, "rangebyscore", min="-inf", max="+inf", offset=1, limit=2)["items"] == ["a", "b"]
    page = op(r, "rangebyscore", min="-inf", max="(4", rev=True, offset=1, limit=2)
    assert page["items"] == ["b", "a"]
    assert op(r, "rangebyscore", min=2, max=2, withscores=True)["items"] == [["b", 2.0]]
    assert op(r, "rangebyscore", min=5, max=1)["items"] == []
    assert op(r, "count", min="-inf", max="(2")["count"] == 2
    assert op(r, "count", min="(-inf", max="+inf")["count"] == 4
    refused(r, "count", "min or max is not a float", min="x", max=1)
    refused(r, "count", "min or max is not a float", min=0, max="[1")


def test_range_by_lex_and_lexcount() -> None:
    r = fresh()
    zadd(r, {m: 0 for m in "abcde"})
    assert op(r, "rangebylex", lex_min="-", lex_max="+")["items"] == list("abcde")
    assert op(r, "rangebylex", lex_min="[b", lex_max="(d")["items"] == ["b", "c"]
    assert op(r, "rangebylex", lex_min="(b", lex_max="[d", rev=True)["items"] == ["d", "c"]
    assert op(r, "rangebylex", lex_min="-", lex_max="+", offset=1, limit=2)["items"] == ["b", "c"]
    assert op(r, "rangebylex", lex_min="+", lex_max="-")["items"] == []
    assert op(r, "lexcount", lex_min="[c", lex_max="+")["count"] == 3
    assert op(r, "lexcount", lex_min="-", lex_max="-")["count"] == 0
    refused(r, "lexcount", "not valid string range item", lex_min="a", lex_max="+")


def test_scan_returns_every_member_once() -> None:
    r = fresh()
    zadd(r, {f"m{i:02}": i for i in range(25)})
    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        page = op(r, "scan", cursor=cursor, count=7)
        seen += [m for m, _ in page["items"]]
        cursor = page["cursor"]
        if cursor == "":
            break
    assert seen == sorted(f"m{i:02}" for i in range(25))


# -- keyspace types and limits ----------------------------------------------------------------


def test_wrong_type_against_a_string_or_a_set() -> None:
    r = fresh()
    apply_op(r, {"op": "registers.set", "key": "s", "value": 1}, NOW_MS)
    apply_op(r, {"op": "sets.add", "key": "t", "members": ["a"]}, NOW_MS)
    for key in ("s", "t"):
        seq = r.seq
        with pytest.raises(WrongType) as e:
            zadd(r, {"a": 1}, key)
        assert e.value.status == 409
        for name, fields in [
            ("incr", {"member": "a", "increment": 1}),
            ("remove", {"members": ["a"]}),
            ("popmin", {}),
            ("card", {}),
            ("range", {"start": 0, "stop": -1}),
            ("delete", {}),
        ]:
            with pytest.raises(WrongType):
                op(r, name, key, **fields)
        assert r.seq == seq
    zadd(r, {"a": 1})
    with pytest.raises(WrongType):
        apply_op(r, {"op": "sets.add", "key": "z", "members": ["a"]}, NOW_MS)


def test_delete_then_the_key_is_free() -> None:
    r = fresh()
    zadd(r, {"a": 1})
    assert op(r, "delete") == {"ok": True}
    with pytest.raises(NotFound):
        op(r, "get")
    apply_op(r, {"op": "sets.add", "key": "z", "members": ["a"]}, NOW_MS)


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    r = fresh()
    monkeypatch.setattr(limits, "ZSET_MEMBERS_MAX", 3)
    zadd(r, {"a": 1, "b": 2, "c": 3})
    seq = r.seq
    refused(r, "add", "at most 3 members", scores={"d": 4})
    refused(r, "incr", "at most 3 members", member="d", increment=1)
    assert zadd(r, {"a": 5}) == {"added": 0, "score": None}  # updates still fit
    assert r.seq == seq + 1
    monkeypatch.setattr(limits, "RANGE_MAX", 2)
    refused(r, "range", "at most 2", start=0, stop=-1)
    refused(r, "rangebyscore", "at most 2", min="-inf", max="+inf")
    assert op(r, "rangebyscore", min="-inf", max="+inf", limit=2)["items"] == ["b", "c"]
    assert op(r, "rangebyscore", min="-inf", max="+inf", offset=1)["items"] == ["c", "a"]
    refused(r, "rangebyscore", "'limit' must be between",
            min="-inf", max="+inf", limit=limits.MEMBERS_PER_OP_MAX * 100)  # fmt: skip
    too_many = {str(i): i for i in range(limits.MEMBERS_PER_OP_MAX + 1)}
    refused(r, "add", "the limit is", scores=too_many)


# -- concurrency: two replicas exchanging delta groups ------------------------------------------


def test_concurrent_zincrby_sums() -> None:
    a, b = fresh("a"), fresh("b")
    zadd(a, {"m": 1})
    sync(a, b)
    op(a, "incr", member="m", increment=2)
    op(b, "incr", member="m", increment=3.5)
    sync(a, b)
    assert items(a) == items(b) == [["m", 6.5]]


def test_concurrent_zadd_is_lww() -> None:
    a, b = fresh("a"), fresh("b")
    zadd(a, {"m": 1})
    apply_op(b, {"op": "zsets.add", "key": "z", "scores": {"m": 2}}, NOW_MS + 5)
    sync(a, b)
    assert items(a) == items(b) == [["m", 2.0]]  # the later write wins


def test_zrem_racing_zincrby_keeps_only_the_unobserved_increment() -> None:
    a, b = fresh("a"), fresh("b")
    zadd(a, {"m": 4.1})
    sync(a, b)
    op(a, "remove", members=["m"])
    op(b, "incr", member="m", increment=2.0)
    sync(a, b)
    assert items(a) == items(b) == [["m", 2.0]]


def test_ranks_agree_after_exchange() -> None:
    a, b = fresh("a"), fresh("b")
    zadd(a, {"x": 1, "y": 5})
    zadd(b, {"w": 3, "v": 0})
    op(b, "incr", member="x", increment=10)
    sync(a, b)
    for m in "vwxy":
        assert op(a, "member", member=m) == op(b, "member", member=m)
    assert op(a, "range", start=0, stop=-1) == op(b, "range", start=0, stop=-1)


def test_concurrent_zpopmin_is_at_least_once() -> None:
    a, b = fresh("a"), fresh("b")
    zadd(a, {"p": 1, "q": 2, "r": 3})
    sync(a, b)
    assert op(a, "popmin") == op(b, "popmin") == {"items": [["p", 1.0]]}
    sync(a, b)
    assert items(a) == items(b) == [["q", 2.0], ["r", 3.0]]


# -- the index against a brute-force sort of the value ----------------------------------------

_members = st.text(alphabet="abcdef", min_size=1, max_size=3)
_scores = st.one_of(st.integers(-3, 3).map(float), st.sampled_from([-math.inf, math.inf, 0.5]))


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(_members, _scores, max_size=12),
    st.integers(-15, 15),
    st.integers(-15, 15),
    _scores,
    _scores,
    st.booleans(),
    st.booleans(),
)
def test_ranges_match_a_brute_force_sort(
    entries: dict[str, float],
    start: int,
    stop: int,
    lo: float,
    hi: float,
    lo_x: bool,
    hi_x: bool,
) -> None:
    z = ZSet()
    if entries:
        z.add("r~1", Timestamp(1, 0, "r~1"), entries.items())
    srt = sorted(((s, m) for m, s in entries.items()))
    flat = [(m, s) for s, m in srt]
    assert z.value() == flat
    n = len(flat)
    s0 = max(start + n, 0) if start < 0 else start
    s1 = stop + n if stop < 0 else stop
    assert z.range_by_rank(start, stop) == [flat[i] for i in range(n) if s0 <= i <= s1]
    rev = flat[::-1]
    assert z.range_by_rank(start, stop, reverse=True) == [rev[i] for i in range(n) if s0 <= i <= s1]
    for i, (m, _) in enumerate(flat):
        assert z.rank(m) == i and z.rank(m, reverse=True) == n - 1 - i

    def inside(s: float) -> bool:
        return (s > lo if lo_x else s >= lo) and (s < hi if hi_x else s <= hi)

    expected = [(m, s) for m, s in flat if inside(s)]
    bounds = ScoreBound(lo, lo_x), ScoreBound(hi, hi_x)
    assert z.range_by_score(*bounds) == expected
    assert z.range_by_score(*bounds, reverse=True) == expected[::-1]
    assert z.range_by_score(*bounds, offset=1, count=2) == expected[1:3]
    assert z.count_by_score(*bounds) == len(expected)
    if len({s for _, s in flat}) <= 1:  # lex ranges are meaningful on one score
        by_member = [(m, s) for m, s in flat if "b" <= m < "d"]
        assert z.range_by_lex(LexBound("b"), LexBound("d", True)) == by_member
        assert z.count_by_lex(LexBound("b"), LexBound("d", True)) == len(by_member)

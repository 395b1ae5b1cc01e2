"""Hash ops through ``apply_op``: every command, its errors, limits, HSCAN, and
two replicas exchanging delta groups (the conflict rules of ``ORMap``)."""

from __future__ import annotations

from typing import Any

import pytest

from crdtkv import limits
from crdtkv.crdts import ORMap
from crdtkv.errors import BadRequest, CounterOverflow, NotFound, WrongType
from crdtkv.ops import apply_op
from crdtkv.replica import Replica

NOW = 1_700_000_000_000


def op(r: Replica, name: str, key: str = "h", now: int = NOW, **fields: Any) -> dict[str, Any]:
    return apply_op(r, {"op": f"hashes.{name}", "key": key, **fields}, now)


@pytest.fixture
def r() -> Replica:
    return Replica("r1", "inc1")


def test_hset_hget_hgetall_and_counts(r: Replica) -> None:
    assert op(r, "set", fields={"name": "ada", "age": 36, "pi": 3.5}) == {"added": 3}
    assert op(r, "set", fields={"name": "bob", "city": "x"}) == {"added": 1}
    assert op(r, "get", field="name") == {"value": "bob"}
    assert op(r, "get", field="age") == {"value": 36}
    assert op(r, "get", field="pi") == {"value": 3.5}
    assert op(r, "get", field="nope") == {"value": None}
    got = op(r, "getall")
    assert got == {"fields": {"age": 36, "city": "x", "name": "bob", "pi": 3.5}, "size": 4}
    assert list(got["fields"]) == ["age", "city", "name", "pi"]  # field order
    assert op(r, "len") == {"size": 4}
    assert op(r, "exists", field="age") == {"present": True}
    assert op(r, "exists", field="zzz") == {"present": False}
    assert op(r, "keys") == {"fields": ["age", "city", "name", "pi"]}
    assert op(r, "vals") == {"values": [36, "x", "bob", 3.5]}
    assert op(r, "mget", names=["name", "gone", "age"]) == {"values": ["bob", None, 36]}


def test_hstrlen_counts_utf8_bytes_of_the_value_as_text(r: Replica) -> None:
    op(r, "set", fields={"s": "héllo", "i": -120, "f": 1.5})
    assert op(r, "strlen", field="s") == {"length": 6}
    assert op(r, "strlen", field="i") == {"length": 4}
    assert op(r, "strlen", field="f") == {"length": 3}
    assert op(r, "strlen", field="none") == {"length": 0}


def test_hsetnx_sets_only_absent_fields(r: Replica) -> None:
    assert op(r, "setnx", fields={"a": 1}) == {"added": 1}
    seq = r.seq
    assert op(r, "setnx", fields={"a": 2}) == {"added": 0}
    assert r.seq == seq, "a refused HSETNX writes nothing"
    assert op(r, "setnx", fields={"a": 3, "b": 4}) == {"added": 1}
    assert op(r, "getall")["fields"] == {"a": 1, "b": 4}


def test_hdel_removes_and_the_last_field_deletes_the_key(r: Replica) -> None:
    op(r, "set", fields={"a": 1, "b": 2, "c": 3})
    assert op(r, "remove", names=["a", "zz", "a"]) == {"removed": 1}
    assert op(r, "removefield", field="b") == {"removed": 1}
    assert op(r, "removefield", field="b") == {"removed": 0}
    assert op(r, "len") == {"size": 1}
    assert op(r, "remove", names=["c"]) == {"removed": 1}
    assert r.visible_type("h", NOW) is None
    for read in ("getall", "len", "keys", "vals"):
        with pytest.raises(NotFound):
            op(r, read)
    with pytest.raises(NotFound):
        op(r, "get", field="c")
    assert op(r, "remove", names=["c"]) == {"removed": 0}
    # the key is free for another type once emptied
    apply_op(r, {"op": "sets.add", "key": "h", "members": ["m"]}, NOW)
    assert r.visible_type("h", NOW) == "set"


def test_reads_of_an_absent_hash_are_404(r: Replica) -> None:
    for name, extra in [
        ("getall", {}),
        ("get", {"field": "f"}),
        ("mget", {"names": ["f"]}),
        ("len", {}),
        ("exists", {"field": "f"}),
        ("keys", {}),
        ("vals", {}),
        ("strlen", {"field": "f"}),
        ("scan", {}),
    ]:
        with pytest.raises(NotFound):
            op(r, name, key="absent", **extra)


def test_hincrby_sums_and_refuses_non_integers_with_redis_text(r: Replica) -> None:
    assert op(r, "incr", field="n", delta=5) == {"value": 5}
    assert op(r, "incr", field="n", delta=-7) == {"value": -2}
    op(r, "set", fields={"s": "10", "t": "abc", "f": 1.5, "g": 5.0})
    assert op(r, "incr", field="s", delta=1) == {"value": 11}  # numeric text counts
    assert op(r, "get", field="s") == {"value": 11}
    # A whole number counts, as Redis's text of it ("5") does; Redis stores
    # HINCRBYFLOAT 3.5 + 5.5 as "9", which HINCRBY then takes.
    assert op(r, "incr", field="g", delta=1) == {"value": 6}
    for field in ("t", "f"):
        before = op(r, "get", field=field)
        with pytest.raises(BadRequest) as e:
            op(r, "incr", field=field, delta=1)
        assert e.value.message == "hash value is not an integer"
        assert e.value.code == "bad_request"
        assert op(r, "get", field=field) == before
    op(r, "set", fields={"big": limits.INT64_MAX})
    seq = r.seq
    with pytest.raises(CounterOverflow):
        op(r, "incr", field="big", delta=1)
    assert r.seq == seq and op(r, "get", field="big") == {"value": limits.INT64_MAX}


def test_hincrbyfloat(r: Replica) -> None:
    assert op(r, "incrfloat", field="x", increment=1.5) == {"value": 1.5}
    assert op(r, "incrfloat", field="x", increment=2) == {"value": 3.5}
    op(r, "set", fields={"i": 3, "t": "abc"})
    assert op(r, "incrfloat", field="i", increment=0.25) == {"value": 3.25}
    with pytest.raises(BadRequest) as e:
        op(r, "incrfloat", field="t", increment=1.0)
    assert e.value.message == "hash value is not a float"
    op(r, "set", fields={"huge": 1.7e308})
    with pytest.raises(CounterOverflow):
        op(r, "incrfloat", field="huge", increment=1.7e308)
    assert op(r, "get", field="huge") == {"value": 1.7e308}


def test_wrong_type_is_409_both_ways(r: Replica) -> None:
    apply_op(r, {"op": "registers.set", "key": "s", "value": "x"}, NOW)
    apply_op(r, {"op": "sets.add", "key": "set", "members": ["m"]}, NOW)
    for key in ("s", "set"):
        for name, extra in [
            ("set", {"fields": {"a": 1}}),
            ("setnx", {"fields": {"a": 1}}),
            ("incr", {"field": "a", "delta": 1}),
            ("incrfloat", {"field": "a", "increment": 1.0}),
            ("get", {"field": "a"}),
            ("getall", {}),
            ("len", {}),
            ("remove", {"names": ["a"]}),
            ("scan", {}),
            ("delete", {}),
        ]:
            with pytest.raises(WrongType):
                op(r, name, key=key, **extra)
    op(r, "set", fields={"a": 1})
    with pytest.raises(WrongType):
        apply_op(r, {"op": "registers.get", "key": "h"}, NOW)
    with pytest.raises(WrongType):
        apply_op(r, {"op": "sets.add", "key": "h", "members": ["m"]}, NOW)


def test_typed_delete_and_ttl_of_a_hash(r: Replica) -> None:
    op(r, "set", fields={"a": 1})
    assert r.set_ttl("h", NOW + 1000, NOW)
    assert op(r, "len") == {"size": 1}
    with pytest.raises(NotFound):
        op(r, "len", now=NOW + 1000)  # expired
    assert op(r, "set", fields={"b": 2}, now=NOW + 2000) == {"added": 1}  # a fresh hash
    assert op(r, "getall", now=NOW + 2000)["fields"] == {"b": 2}
    assert r.ttl_ms("h", NOW + 2000) == -1
    assert op(r, "delete", now=NOW + 2000) == {"ok": True}
    with pytest.raises(NotFound):
        op(r, "getall", now=NOW + 2000)


def test_bad_arguments_are_refused(r: Replica) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("set", {"fields": {}}, "non-empty object"),
        ("set", {"fields": {"": 1}}, "must not be empty"),
        ("set", {"fields": {"a": None}}, "a string or a number"),
        ("set", {"fields": {"a": [1]}}, "a string or a number"),
        ("set", {"fields": {"a": 2**63}}, "64 bits"),
        ("set", {"fields": {"x" * (limits.MEMBER_BYTES_MAX + 1): 1}}, "bytes"),
        ("set", {"fields": {"a": "v" * (limits.HASH_VALUE_BYTES_MAX + 1)}}, "bytes"),
        ("get", {"field": ""}, "must not be empty"),
        ("incrfloat", {"field": "a", "increment": "1"}, "must be a number"),
        ("scan", {"count": 0}, "'count' must be between"),
        ("scan", {"match": "*" * (limits.MEMBER_BYTES_MAX + 1)}, "'match'"),
    ]
    op(r, "set", fields={"a": 1})
    for name, fields, message in cases:
        with pytest.raises(BadRequest) as e:
            op(r, name, **fields)
        assert message in e.value.message, (name, e.value.message)
    too_many = {str(i): i for i in range(limits.MEMBERS_PER_OP_MAX + 1)}
    with pytest.raises(BadRequest):
        op(r, "set", fields=too_many)
    assert op(r, "getall") == {"fields": {"a": 1}, "size": 1}


def test_fields_per_hash_are_bounded(r: Replica, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "HASH_FIELDS_MAX", 3)
    op(r, "set", fields={"a": 1, "b": 2})
    assert op(r, "set", fields={"a": 5, "c": 3}) == {"added": 1}  # overwrites do not count
    seq = r.seq
    for name, extra in [
        ("set", {"fields": {"d": 1}}),
        ("setnx", {"fields": {"d": 1}}),
        ("incr", {"field": "d", "delta": 1}),
        ("incrfloat", {"field": "d", "increment": 1.0}),
    ]:
        with pytest.raises(BadRequest) as e:
            op(r, name, **extra)
        assert "at most 3 fields" in e.value.message
    assert r.seq == seq
    assert op(r, "incr", field="a", delta=1) == {"value": 6}  # an existing field still works


def scan_all(r: Replica, count: int, match: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = ""
    while True:
        page = op(r, "scan", cursor=cursor, count=count, match=match)
        pages.append(list(page["fields"]))
        cursor = page["cursor"]
        if cursor == "":
            return pages


def test_hscan_pages_in_field_order_with_match(r: Replica) -> None:
    fields = {f"f{i:03}": i for i in range(25)}
    op(r, "set", fields=fields)
    pages = scan_all(r, 10)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [f for p in pages for f in p] == sorted(fields)
    first = op(r, "scan", count=10)
    assert first["cursor"] == "f009" and first["fields"]["f000"] == 0
    assert op(r, "scan")["cursor"] == "f009"  # default count 10
    matched = scan_all(r, 7, match="f01?")
    assert [f for p in matched for f in p] == [f"f01{i}" for i in range(10)]
    assert all(len(p) <= 7 for p in matched)
    assert op(r, "scan", count=100) == {"fields": fields, "cursor": ""}
    assert op(r, "scan", cursor="zzz") == {"fields": {}, "cursor": ""}


def test_hscan_through_a_changing_hash_returns_every_stable_field_once(r: Replica) -> None:
    op(r, "set", fields={f"s{i:03}": i for i in range(40)})
    seen: list[str] = []
    cursor = ""
    step = 0
    while True:
        page = op(r, "scan", cursor=cursor, count=6)
        seen.extend(page["fields"])
        # Between pages the hash changes around the cursor: fields come and go.
        op(r, "set", fields={f"s{step:03}x": 1, f"t{step}": 2})
        op(r, "removefield", field=f"s{step:03}x")
        if step % 3 == 0:
            op(r, "set", fields={"a-before-everything": step})
        step += 1
        cursor = page["cursor"]
        if cursor == "":
            break
    stable = [f"s{i:03}" for i in range(40)]
    assert len(seen) == len(set(seen)), "no field twice"
    assert set(stable) <= set(seen)


def test_hset_on_a_large_hash_commits_a_delta_of_the_field_only(r: Replica) -> None:
    h = ORMap()
    n = 200_000
    h.set(r.actor, r.hlc.now(NOW), ((f"f{i}", i) for i in range(n)))
    r.adopt(("hash", "big"), h)
    r.take_pending()
    assert op(r, "set", key="big", fields={"new": 1}) == {"added": 1}
    (entry,) = r.take_pending()
    delta = entry.group.deltas[("hash", "big")]
    assert isinstance(delta, ORMap) and delta.narrow and list(delta.entries) == ["new"]
    assert op(r, "len", key="big") == {"size": n + 1}
    page = op(r, "scan", key="big", cursor="f5", count=3)
    assert list(page["fields"]) == ["f50", "f500", "f5000"]  # after the cursor
    assert op(r, "incr", key="big", field="f7", delta=3) == {"value": 10}
    (entry,) = r.take_pending()
    assert list(entry.group.deltas[("hash", "big")].entries) == ["f7"]


# -- two replicas ---------------------------------------------------------------------------


def sync(a: Replica, b: Replica) -> None:
    """Each replica applies the other's pending delta groups."""
    from_a, from_b = a.take_pending(), b.take_pending()
    for entry in from_a:
        b.apply_remote(entry.group, a.actor, NOW)
    for entry in from_b:
        a.apply_remote(entry.group, b.actor, NOW)
    b.take_pending()
    a.take_pending()


@pytest.fixture
def pair() -> tuple[Replica, Replica]:
    a, b = Replica("a", "i1"), Replica("b", "i1")
    return a, b


def both(pair: tuple[Replica, Replica], name: str, **fields: Any) -> tuple[Any, Any]:
    a, b = pair
    return op(a, name, **fields), op(b, name, **fields)


def test_concurrent_hsets_of_different_fields_both_survive(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    op(a, "set", fields={"x": 1})
    op(b, "set", fields={"y": 2})
    sync(a, b)
    assert both(pair, "getall") == ({"fields": {"x": 1, "y": 2}, "size": 2},) * 2


def test_concurrent_hsets_of_one_field_have_one_winner(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    op(a, "set", fields={"f": "from-a"}, now=NOW)
    op(b, "set", fields={"f": "from-b"}, now=NOW + 5)  # the later HLC wins
    sync(a, b)
    assert both(pair, "get", field="f") == ({"value": "from-b"},) * 2
    assert both(pair, "len") == ({"size": 1},) * 2


def test_concurrent_hincrbys_sum(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    op(a, "set", fields={"n": 7})
    sync(a, b)
    op(a, "incr", field="n", delta=3)
    op(b, "incr", field="n", delta=10)
    op(b, "incr", field="n", delta=-1)
    sync(a, b)
    assert both(pair, "get", field="n") == ({"value": 19},) * 2


def test_hdel_racing_hset_keeps_the_hset(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    op(a, "set", fields={"f": "old", "g": 1})
    sync(a, b)
    op(a, "remove", names=["f", "g"])  # a's hash is gone
    op(b, "set", fields={"f": "new"})
    sync(a, b)
    assert both(pair, "getall") == ({"fields": {"f": "new"}, "size": 1},) * 2


def test_a_delete_racing_hset_keeps_the_hset(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    op(a, "set", fields={"f": 1, "g": 2})
    sync(a, b)
    op(a, "delete")
    op(b, "set", fields={"h": 3})
    sync(a, b)
    # DEL removed the fields a had seen; b's concurrent field survives.
    assert both(pair, "getall") == ({"fields": {"h": 3}, "size": 1},) * 2

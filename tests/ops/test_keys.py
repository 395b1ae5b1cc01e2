"""The key-level operations (``keys.*``): DEL, EXISTS, TYPE, PTTL, EXPIRE, PERSIST, SCAN.

In-process, through ``apply_op``; the TTL and DEL rules with two replicas
that exchange their delta groups.
"""

from __future__ import annotations

from typing import Any

import pytest

from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops import apply_op
from crdtkv.replica import Replica

NOW = 1_700_000_000_000


def do(r: Replica, name: str, now: int = NOW, **fields: Any) -> dict[str, Any]:
    return apply_op(r, {"op": name, **fields}, now)


def ship(src: Replica, dst: Replica, now: int = NOW) -> None:
    """Deliver every delta group ``src`` has logged since the last call to ``dst``."""
    for entry in src.take_pending():
        dst.apply_remote(entry.group, src.actor, now)


def sync(a: Replica, b: Replica, now: int = NOW) -> None:
    ship(a, b, now)
    ship(b, a, now)


def pair() -> tuple[Replica, Replica]:
    return Replica("r1", "i1"), Replica("r2", "i2")


# -- each op on one replica ---------------------------------------------------------------------


def test_delete_exists_type_of_any_type() -> None:
    r = Replica("r1", "i1")
    do(r, "registers.set", key="s", value=1)
    do(r, "sets.add", key="t", members=["a"])
    do(r, "hlls.add", key="l", items=["x"])
    do(r, "counters.incr", key="c", delta=2)
    for key, type_ in (("s", "string"), ("t", "set"), ("l", "hll"), ("c", "string")):
        assert do(r, "keys.type", key=key) == {"type": type_}
        assert do(r, "keys.exists", key=key) == {"exists": True}
        assert do(r, "keys.get", key=key) == {"type": type_, "ttl_ms": -1}
        assert do(r, "keys.delete", key=key) == {"deleted": True}
        assert do(r, "keys.delete", key=key) == {"deleted": False}
        assert do(r, "keys.exists", key=key) == {"exists": False}
        assert do(r, "keys.type", key=key) == {"type": "none"}
        assert do(r, "keys.ttl", key=key) == {"ttl_ms": -2}
        with pytest.raises(NotFound):
            do(r, "keys.get", key=key)
    with pytest.raises(NotFound):
        do(r, "sets.get", key="t")
    with pytest.raises(NotFound):
        do(r, "hlls.count", key="l")


def test_an_absent_key_changes_nothing_and_mints_no_dot() -> None:
    r = Replica("r1", "i1")
    assert do(r, "keys.delete", key="k") == {"deleted": False}
    assert do(r, "keys.expire", key="k", ttl_ms=1000) == {"changed": False}
    assert do(r, "keys.persist", key="k") == {"changed": False}
    assert r.seq == 0 and not r.take_pending()


def test_expire_ttl_persist_on_one_replica() -> None:
    r = Replica("r1", "i1")
    do(r, "sets.add", key="k", members=["a"])
    assert do(r, "keys.ttl", key="k") == {"ttl_ms": -1}
    assert do(r, "keys.persist", key="k") == {"changed": False}  # no TTL to remove
    assert do(r, "keys.expire", key="k", ttl_ms=5000) == {"changed": True}
    assert do(r, "keys.ttl", key="k", now=NOW + 1000) == {"ttl_ms": 4000}
    assert do(r, "keys.get", key="k", now=NOW + 1000) == {"type": "set", "ttl_ms": 4000}
    assert do(r, "keys.expire", key="k", now=NOW + 1000, ttl_ms=1000) == {"changed": True}
    assert do(r, "keys.ttl", key="k", now=NOW + 1500) == {"ttl_ms": 500}  # a shorter one too
    assert do(r, "keys.persist", key="k", now=NOW + 1500) == {"changed": True}
    assert do(r, "keys.ttl", key="k", now=NOW + 10_000) == {"ttl_ms": -1}
    assert do(r, "sets.get", key="k", now=NOW + 10_000)["members"] == ["a"]


def test_expire_refuses_a_bad_ttl() -> None:
    r = Replica("r1", "i1")
    do(r, "sets.add", key="k", members=["a"])
    for bad in (0, -1, 10 * 365 * 24 * 3600 * 1000 + 1, "5", None):
        with pytest.raises(BadRequest, match="ttl_ms"):
            do(r, "keys.expire", key="k", ttl_ms=bad)
    with pytest.raises(BadRequest, match="ttl_ms"):
        do(r, "keys.expire", key="k")


# -- TTL rules across replicas ----------------------------------------------------------------


def test_concurrent_expires_keep_the_longer_ttl() -> None:
    a, b = pair()
    do(a, "sets.add", key="k", members=["x"])
    sync(a, b)
    do(a, "keys.expire", key="k", ttl_ms=10_000)
    do(b, "keys.expire", key="k", ttl_ms=60_000)
    sync(a, b)
    for r in (a, b):
        assert do(r, "keys.ttl", key="k") == {"ttl_ms": 60_000}
    # and the other way round: the longer one was written first
    do(a, "keys.expire", key="k", ttl_ms=90_000)
    do(b, "keys.expire", key="k", ttl_ms=20_000)
    sync(a, b)
    for r in (a, b):
        assert do(r, "keys.ttl", key="k") == {"ttl_ms": 90_000}


def test_persist_beats_a_concurrent_expire() -> None:
    a, b = pair()
    do(a, "registers.set", key="k", value=1, ttl_ms=60_000)
    sync(a, b)
    do(a, "keys.persist", key="k")
    do(b, "keys.expire", key="k", ttl_ms=1_000)
    sync(a, b)
    for r in (a, b):
        assert do(r, "keys.ttl", key="k", now=NOW + 5_000) == {"ttl_ms": -1}
        assert do(r, "registers.get", key="k", now=NOW + 5_000) == {"value": 1}


def test_a_later_expire_after_a_persist_applies() -> None:
    a, b = pair()
    do(a, "registers.set", key="k", value=1, ttl_ms=60_000)
    do(a, "keys.persist", key="k")
    sync(a, b)
    do(b, "keys.expire", key="k", ttl_ms=2_000)  # b has seen the PERSIST
    sync(a, b)
    for r in (a, b):
        assert do(r, "keys.ttl", key="k") == {"ttl_ms": 2_000}
        assert do(r, "keys.exists", key="k", now=NOW + 2_000) == {"exists": False}


def test_set_without_ttl_clears_a_ttl() -> None:
    a, b = pair()
    do(a, "registers.set", key="k", value=1)
    do(a, "keys.expire", key="k", ttl_ms=5_000)
    sync(a, b)
    do(b, "registers.set", key="k", value=2)
    sync(a, b)
    for r in (a, b):
        assert do(r, "keys.ttl", key="k") == {"ttl_ms": -1}
        assert do(r, "registers.get", key="k", now=NOW + 10_000) == {"value": 2}


@pytest.mark.parametrize(
    ("write", "read", "fresh"),
    [
        ({"op": "registers.set", "value": "old"}, "registers.get", {"value": "new"}),
        ({"op": "counters.incr", "delta": 5}, "counters.get", {"value": 1}),
        ({"op": "sets.add", "members": ["old"]}, "sets.get", {"members": ["new"], "size": 1}),
    ],
)
def test_an_expired_key_is_absent_and_a_write_starts_fresh(
    write: dict[str, Any], read: str, fresh: dict[str, Any]
) -> None:
    a, b = pair()
    apply_op(a, {**write, "key": "k"}, NOW)
    do(a, "keys.expire", key="k", ttl_ms=1_000)
    sync(a, b)
    later = NOW + 1_000
    for r in (a, b):
        assert do(r, "keys.exists", key="k", now=later) == {"exists": False}
        assert do(r, "keys.type", key="k", now=later) == {"type": "none"}
        assert do(r, "keys.ttl", key="k", now=later) == {"ttl_ms": -2}
        assert do(r, "keys.expire", key="k", now=later, ttl_ms=9_000) == {"changed": False}
        assert do(r, "keys.scan", now=later) == {"keys": [], "cursor": ""}
        for reader in ("registers.get", "sets.get", "hlls.count"):
            with pytest.raises(NotFound):
                do(r, reader, key="k", now=later)
    new = {"registers.get": {"op": "registers.set", "value": "new"},
           "counters.get": {"op": "counters.incr", "delta": 1},
           "sets.get": {"op": "sets.add", "members": ["new"]}}[read]  # fmt: skip
    apply_op(b, {**new, "key": "k"}, later + 1)
    sync(a, b, later + 1)
    for r in (a, b):
        assert do(r, read, key="k", now=later + 2) == fresh
        assert do(r, "keys.ttl", key="k", now=later + 2) == {"ttl_ms": -1}
    # an expired key takes a write of another type too: it has no type any more
    do(a, "hlls.add", key="k2", items=["i"])
    do(a, "keys.expire", key="k2", ttl_ms=1)
    assert do(a, "registers.set", key="k2", now=NOW + 5, value=1) == {"ok": True}
    assert do(a, "keys.get", key="k2", now=NOW + 5) == {"type": "string", "ttl_ms": -1}


def test_del_racing_a_write_keeps_the_write() -> None:
    a, b = pair()
    do(a, "sets.add", key="k", members=["x"])
    do(a, "registers.set", key="r", value="old")
    sync(a, b)
    do(a, "keys.delete", key="k")
    do(b, "sets.add", key="k", members=["y"])  # concurrent with the DEL
    do(b, "keys.delete", key="r")
    do(a, "registers.set", key="r", value="new")
    sync(a, b)
    for r in (a, b):
        assert do(r, "sets.get", key="k")["members"] == ["y"]
        assert do(r, "registers.get", key="r") == {"value": "new"}
        assert do(r, "keys.type", key="r") == {"type": "string"}


# -- scan ---------------------------------------------------------------------------------


def scan_all(r: Replica, count: int, now: int = NOW, **fields: Any) -> list[str]:
    out: list[str] = []
    cursor = ""
    for _ in range(10_000):
        page = do(r, "keys.scan", now=now, cursor=cursor, count=count, **fields)
        out += page["keys"]
        cursor = page["cursor"]
        if not cursor:
            return out
    raise AssertionError("the scan did not end")


def test_scan_pages_through_every_key_once() -> None:
    r = Replica("r1", "i1")
    names = [f"k{i:03}" for i in range(250)]
    for n in names:
        do(r, "registers.set", key=n, value=1)
    assert scan_all(r, 7) == names
    assert scan_all(r, 10_000) == names
    page = do(r, "keys.scan")  # the default count
    assert page["keys"] == names[:100] and page["cursor"] == names[99]


def test_scan_of_a_keyspace_that_changes_between_pages() -> None:
    r = Replica("r1", "i1")
    stable = [f"s{i:03}" for i in range(0, 300, 2)]
    doomed = [f"s{i:03}" for i in range(1, 300, 2)]
    for n in stable + doomed:
        do(r, "sets.add", key=n, members=["m"])
    seen: list[str] = []
    cursor = ""
    step = 0
    while True:
        page = do(r, "keys.scan", cursor=cursor, count=9)
        seen += page["keys"]
        cursor = page["cursor"]
        if not cursor:
            break
        # between pages: delete some keys, create others before and after the cursor
        step += 1
        do(r, "keys.delete", key=doomed[(step * 7) % len(doomed)])
        do(r, "sets.add", key=f"s{step:03}x", members=["m"])
        do(r, "sets.add", key=f"a{step:03}", members=["m"])  # behind the cursor
        do(r, "sets.add", key=f"z{step:03}", members=["m"])  # ahead of it
    for n in stable:
        assert seen.count(n) == 1, n
    assert len(seen) == len(set(seen))  # nothing twice
    assert all(n.startswith(("s", "z")) for n in seen)  # what was behind the cursor stays so


def test_scan_filters_by_type_and_glob() -> None:
    r = Replica("r1", "i1")
    do(r, "registers.set", key="user:1", value=1)
    do(r, "counters.incr", key="user:2", delta=1)
    do(r, "sets.add", key="user:3", members=["a"])
    do(r, "hlls.add", key="visits", items=["a"])
    do(r, "sets.add", key="tags", members=["a"])
    do(r, "registers.set", key="User:4", value=1)
    do(r, "sets.add", key="gone", members=["a"])
    do(r, "keys.delete", key="gone")
    assert scan_all(r, 3) == ["User:4", "tags", "user:1", "user:2", "user:3", "visits"]
    assert scan_all(r, 3, match="user:*") == ["user:1", "user:2", "user:3"]  # case-sensitive
    assert scan_all(r, 3, match="*") == scan_all(r, 3)
    assert scan_all(r, 2, match="user:[13]") == ["user:1", "user:3"]
    assert scan_all(r, 2, match="?ags") == ["tags"]
    assert scan_all(r, 2, type="set") == ["tags", "user:3"]
    assert scan_all(r, 2, type="string") == ["User:4", "user:1", "user:2"]
    assert scan_all(r, 2, type="hll", match="v*") == ["visits"]
    assert scan_all(r, 2, type="zset") == []
    assert do(r, "keys.scan", cursor="user:2") == {"keys": ["user:3", "visits"], "cursor": ""}


def test_scan_refuses_bad_arguments() -> None:
    r = Replica("r1", "i1")
    cases = [
        ({"count": 0}, "'count' must be between 1 and 10000"),
        ({"count": 10_001}, "'count'"),
        ({"count": "5"}, "'count' must be an integer"),
        ({"type": "stream"}, "'type' must be one of string, hash, zset, set, hll, list"),
        ({"match": 5}, "'match' must be a string"),
        ({"match": "*" * 4097}, "'match' is over 4096 characters"),
        ({"cursor": ["a"]}, "'cursor' must be a string"),
    ]
    for fields, message in cases:
        with pytest.raises(BadRequest) as refused:
            do(r, "keys.scan", **fields)
        assert message in refused.value.message, (fields, refused.value.message)

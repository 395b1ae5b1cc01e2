"""The cluster map (crdtkv.cluster): slots, JSON form, changes, this process's checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtkv.cluster import SLOTS, ClusterMap, MapError, NodeAddr, Shard, key_slot, parse_ranges
from crdtkv.cluster.slots import format_ranges
from crdtkv.cluster.state import ClusterState
from crdtkv.config import UsageError, parse_serve_args
from crdtkv.errors import Ask, CrossSlot, Moved


def shards(n: int, regions: str = "ab") -> list[Shard]:
    return [
        Shard(
            f"s{i}",
            tuple(
                NodeAddr(
                    f"s{i}-{r}", r, f"http://127.0.0.1:{7100 + 10 * i + j}", f"h{r}:{6100 + i}"
                )
                for j, r in enumerate(regions)
            ),
        )
        for i in range(n)
    ]


def test_key_slot_matches_redis() -> None:
    # Values from Redis's cluster specification and `CLUSTER KEYSLOT` of redis 7.
    assert key_slot("foo") == 12182
    assert key_slot("somekey") == 11058
    assert key_slot("foo{hash_tag}") == 2515
    tagged = key_slot("{user1000}.following")
    assert tagged == key_slot("{user1000}.followers") == key_slot("user1000")
    assert key_slot("foo{}{bar}") == key_slot(b"foo{}{bar}")  # empty tag: the whole key
    assert key_slot("foo{}{bar}") != key_slot("bar")
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")  # from the first { to the first } after it
    assert key_slot(b"\xff\x00") < SLOTS


@given(st.binary(max_size=40))
def test_key_slot_in_range(k: bytes) -> None:
    assert 0 <= key_slot(k) < SLOTS


def test_ranges_round_trip_and_errors() -> None:
    assert parse_ranges("0-5460, 5461,6000-6001") == [(0, 5460), (5461, 5461), (6000, 6001)]
    assert format_ranges([3, 1, 2, 7]) == "1-3,7"
    for bad in ("", "5-4", "16384", "a", "1-", "-1", "1,,2"):
        with pytest.raises(ValueError):
            parse_ranges(bad)


def test_even_split_is_redis_clis() -> None:
    m = ClusterMap.even(shards(3))
    assert m.ranges() == [(0, 5460, "s0"), (5461, 10922, "s1"), (10923, 16383, "s2")]
    assert m.regions == ["a", "b"]
    assert [n.id for n in m.peers_of("s1-a")] == ["s1-b"]
    assert m.owner_in(12182, "b").id == "s2-b"
    assert len(m.node("s0-a").cluster_id) == 40


def test_json_round_trip_and_changes() -> None:
    m = ClusterMap.even(shards(2))
    assert ClusterMap.from_json(json.loads(json.dumps(m.to_json()))) == m
    m2 = m.with_moving(range(100, 200), "s1")
    assert m2.epoch == 2 and m2.to_json()["moving"] == {"100-199": "s1"}
    assert ClusterMap.from_json(m2.to_json()) == m2
    m3 = m2.with_owner(range(100, 200), "s1")
    assert m3.epoch == 3 and not m3.moving
    assert m3.owner(150).id == "s1" and m3.owner(99).id == "s0"
    assert m3.check_successor(m3) is False
    assert m2.check_successor(m3) is True
    with pytest.raises(MapError, match="older"):
        m3.check_successor(m2)
    other = m2.with_moving([5], "s1")  # epoch 3, but not m3
    with pytest.raises(MapError, match="same epoch"):
        m3.check_successor(other)
    with pytest.raises(MapError, match="already owned"):
        m.with_moving([9000], "s1")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda j: j.update(epoch=0), "epoch"),
        (lambda j: j.update(extra=1), "unknown"),
        (lambda j: j["shards"][0].update(slots="0-100"), "no shard"),
        (lambda j: j["shards"][1].update(slots="0-16383"), "given to both"),
        (lambda j: j["shards"][0]["replicas"].pop(), "every region"),
        (lambda j: j["shards"][0]["replicas"][0].update(http="ftp://x"), "URL"),
        (lambda j: j["shards"][0]["replicas"][0].update(resp="nohost"), "host:port"),
        (lambda j: j["shards"][1]["replicas"][0].update(id="s0-a"), "same id"),
        (lambda j: j["shards"][1].update(id="s0"), "same id"),
        (lambda j: j.update(moving={"0-5": "s9"}), "unknown shard"),
        (lambda j: j.update(moving={"0-5": "s0"}), "already owns"),
        (lambda j: j.update(shards=[]), "1 to"),
    ],
)
def test_bad_maps_are_refused(mutate, match: str) -> None:  # type: ignore[no-untyped-def]
    j = ClusterMap.even(shards(2)).to_json()
    mutate(j)
    with pytest.raises(MapError, match=match):
        ClusterMap.from_json(j)


def test_state_checks_keys() -> None:
    m = ClusterMap.even(shards(3))
    st_ = ClusterState(m, "s2-b")
    assert st_.check_key("foo") == 12182
    assert st_.check_key("somekey") == 11058  # s2 too
    with pytest.raises(Moved) as e:
        st_.check_key("foo{hash_tag}")  # 2515: s0
    assert e.value.slot == 2515 and e.value.url == m.node("s0-b").http
    assert e.value.resp == "hb:6100" and e.value.status == 421
    with pytest.raises(CrossSlot):
        st_.check_keys(["foo", "somekey"])
    assert st_.check_keys(["{foo}x", "{foo}y"]) == 12182
    assert st_.check_keys([]) is None
    # A newer map moves slot 12182 away; an older one is refused.
    m2 = m.with_owner([12182], "s0")
    assert st_.set_map(m2) is True and not st_.owns(12182)
    with pytest.raises(MapError):
        st_.set_map(m)
    j = m2.to_json()
    j["epoch"] = 9
    j["shards"][1]["replicas"][1]["id"] = "s1-x"
    j["shards"][2]["replicas"][1]["id"] = "s1-b"  # s2-b gone
    with pytest.raises(MapError, match="drops this replica"):
        st_.set_map(ClusterMap.from_json(j))
    assert st_.epoch == 2


def test_serve_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    m = ClusterMap.even(shards(2))
    p = tmp_path / "map.json"
    p.write_text(json.dumps(m.to_json()))
    c = parse_serve_args(["--replica-id", "s1-a", "--cluster-map", str(p)], {})
    assert c.peers == {"s1-b": m.node("s1-b").http}
    assert c.cluster_map == m
    assert c.to_json()["cluster"]["slots"] == "8192-16383"
    with pytest.raises(UsageError, match="not in the map"):
        parse_serve_args(["--replica-id", "zz", "--cluster-map", str(p)], {})
    with pytest.raises(UsageError, match="give no peers"):
        parse_serve_args(
            ["--replica-id", "s1-a", "--cluster-map", str(p), "--peer", "x=http://h:1"], {}
        )
    p.write_text("{not json")
    with pytest.raises(UsageError, match="cluster-map"):
        parse_serve_args(["--replica-id", "s1-a", "--cluster-map", str(p)], {})
    with pytest.raises(UsageError, match="cannot read"):
        parse_serve_args(["--replica-id", "s1-a", "--cluster-map", str(tmp_path / "nope")], {})


def test_moves_ask_and_asking() -> None:
    m = ClusterMap.even(shards(2)).with_moving([12182], "s0")  # "foo": s1 -> s0
    src, dst = ClusterState(m, "s1-a"), ClusterState(m, "s0-a")
    assert src.check_key("foo") == 12182  # the source still serves it
    with pytest.raises(Moved):
        dst.check_key("foo")  # the target only with ASKING
    assert dst.check_key("foo", asking=True) == 12182
    with pytest.raises(Moved):
        dst.check_key("somekey", asking=True)  # 11058 is not moving: ASKING does not help
    src.handed_over.add(12182)
    with pytest.raises(Ask) as e:
        src.check_key("foo")
    assert e.value.url == m.node("s0-a").http and e.value.code == "ask"
    assert not src.serves(12182) and dst.serves(12182, asking=True)
    # The move ends: the target owns it, the source redirects for good.
    end = m.with_owner([12182], "s0")
    assert src.set_map(end) and dst.set_map(end)
    assert not src.handed_over
    with pytest.raises(Moved) as e2:
        src.check_key("foo")
    assert type(e2.value) is Moved
    assert dst.check_key("foo") == 12182

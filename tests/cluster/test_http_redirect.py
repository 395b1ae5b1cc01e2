"""A sharded replica over HTTP (real processes): 421 for another shard's slot, per-op
redirects in a batch, the map at /v1/cluster/map and in /v1/status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from tests.procs import Server, free_ports, http


@pytest.fixture(scope="module")
def two_shards(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ClusterMap, list[Server]]]:
    root = tmp_path_factory.mktemp("shards")
    ports = free_ports(2)
    m = ClusterMap.even(
        Shard(f"s{i}", (NodeAddr(f"s{i}-a", "a", f"http://127.0.0.1:{p}", None),))
        for i, p in enumerate(ports)
    )
    path = root / "map.json"
    path.write_text(json.dumps(m.to_json()))
    servers = [
        Server(f"s{i}-a", root / f"s{i}", port=p, extra=["--cluster-map", str(path)])
        for i, p in enumerate(ports)
    ]
    for s in servers:
        s.start()
    yield m, servers
    for s in servers:
        s.stop()


def _key_in(m: ClusterMap, shard: str, prefix: str = "k") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if m.owner(key_slot(f"{prefix}{i}")).id == shard
    )


def test_owner_serves_and_other_redirects(two_shards: tuple[ClusterMap, list[Server]]) -> None:
    m, (s0, s1) = two_shards
    k0 = _key_in(m, "s0")
    assert http("PUT", f"{s0.url}/v1/registers/{k0}", {"value": "v"})[0] == 200
    status, body = http("GET", f"{s1.url}/v1/registers/{k0}")
    assert status == 421, body
    err = body["error"]
    assert err["code"] == "moved" and err["slot"] == key_slot(k0) and err["url"] == s0.url
    # The other shard wrote nothing: the refused write changed nothing there.
    status, body = http("PUT", f"{s1.url}/v1/registers/{k0}", {"value": "w"})
    assert status == 421
    assert http("GET", f"{s0.url}/v1/registers/{k0}")[1]["value"] == "v"
    assert s1.status()["keys"] == 0


def test_redirect_header(two_shards: tuple[ClusterMap, list[Server]]) -> None:
    import urllib.error
    import urllib.request

    m, (s0, s1) = two_shards
    k1 = _key_in(m, "s1")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{s0.url}/v1/registers/{k1}", timeout=10)
    assert e.value.code == 421
    assert e.value.headers["X-Crdtkv-Owner"] == s1.url
    assert e.value.headers["X-Crdtkv-Slot"] == str(key_slot(k1))


def test_batch_redirects_op_by_op(two_shards: tuple[ClusterMap, list[Server]]) -> None:
    m, (s0, s1) = two_shards
    k0, k1 = _key_in(m, "s0", "b"), _key_in(m, "s1", "b")
    ops = [
        {"op": "registers.set", "key": k0, "value": 1},
        {"op": "registers.set", "key": k1, "value": 2},
        {"op": "hlls.merge", "key": k0, "sources": [k1]},
        {"op": "hlls.merge", "key": k0, "sources": [_key_in(m, "s0", "c")]},
    ]
    status, body = http("POST", f"{s0.url}/v1/batch", {"ops": ops})
    assert status == 200, body
    r = body["results"]
    assert "error" not in r[0]
    assert r[1]["error"]["code"] == "moved" and r[1]["error"]["url"] == s1.url
    assert r[2]["error"]["code"] == "cross_slot", r[2]
    assert r[3]["error"]["code"] == "cross_slot", r[3]  # one shard, but two slots


def test_map_route_and_status(two_shards: tuple[ClusterMap, list[Server]]) -> None:
    m, (s0, s1) = two_shards
    status, body = http("GET", f"{s1.url}/v1/cluster/map")
    assert status == 200
    assert body["enabled"] and body["shard"] == "s1" and body["epoch"] == 1
    assert ClusterMap.from_json(body["map"]) == m
    assert body["slots"] == "8192-16383"
    assert s0.status()["cluster"]["slots"] == "0-8191"


def test_unsharded_replica_says_so(tmp_path: Path) -> None:
    s = Server("solo", tmp_path / "solo").start()
    try:
        status, body = http("GET", f"{s.url}/v1/cluster/map")
        assert status == 200 and body == {"enabled": False}
    finally:
        s.stop()


def test_other_shards_session_is_redirected_not_held(
    two_shards: tuple[ClusterMap, list[Server]],
) -> None:
    import urllib.error
    import urllib.request

    m, (s0, s1) = two_shards
    k0 = _key_in(m, "s0", "sess")
    req = urllib.request.Request(
        f"{s0.url}/v1/registers/{k0}",
        data=b'{"value": 1}',
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        token = r.headers["X-Crdtkv-Session"]
    assert token
    # s1 has never seen s0's writes: held for the session, this would be a 503.
    for url in (f"{s1.url}/v1/registers/{k0}", f"{s1.url}/v1/cluster/map"):
        req = urllib.request.Request(
            url, headers={"X-Crdtkv-Session": token, "X-Crdtkv-Wait-Ms": "50"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == (421 if "registers" in url else 200), url

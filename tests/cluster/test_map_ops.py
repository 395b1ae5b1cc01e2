"""The cluster map's life with real processes (a 2x2 cluster): a change made with
``crdtkv cluster-map set`` spreads to all four and moves what each serves; an
older map is refused (409 ``stale_map``); an unsigned or badly signed post is
refused and changes nothing; a process that was down when the map changed
starts with the map its data directory holds and catches up; and
``crdtkv cluster --shards 2 --regions 2`` prints its processes, and a key written
at one region's owner reaches the other region's replica of its shard and
never the other shard."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from crdtkv.api.cluster import signed_headers
from crdtkv.cluster import ClusterMap, NodeAddr, Shard, format_ranges, key_slot
from tests.procs import (
    STARTUP_S,
    Server,
    clean_env,
    crdtkv_cmd,
    free_ports,
    http,
    kill9,
    read_lines_until,
    spawn,
    stop,
    wait_until,
)

SECRET = "map-ops-test-secret-0123456789abcdef"
SPREAD_S = 30.0  # generous: pushes and polls take a few seconds on a loaded machine


@dataclass
class Cluster:
    root: Path
    map_file: Path
    first: ClusterMap
    servers: dict[str, Server]

    def epochs(self) -> dict[str, int]:
        return {rid: _view(s)["epoch"] for rid, s in self.servers.items()}


def _view(s: Server) -> dict[str, Any]:
    status, body = http("GET", f"{s.url}/v1/cluster/map")
    assert status == 200, body
    return dict(body)


def _run(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        crdtkv_cmd(*args), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _post(url: str, m: dict[str, Any], *, secret: str | None = SECRET) -> tuple[int, Any]:
    body = orjson.dumps(m)
    headers = signed_headers(secret, "a-test", "POST", body) if secret else {}
    headers["Content-Type"] = "application/json"
    return http("POST", f"{url}/v1/cluster/map", data=body, headers=headers)


def format_slots(m: ClusterMap, shard: str) -> str:
    return format_ranges(m.slots_of(shard))


def _key_of(m: ClusterMap, shard: str, prefix: str) -> str:
    return next(
        f"{prefix}{i}" for i in range(100_000) if m.owner(key_slot(f"{prefix}{i}")).id == shard
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("mapops")
    ports = iter(free_ports(4))
    shards = [
        Shard(
            f"s{i}",
            tuple(NodeAddr(f"s{i}-{r}", r, f"http://127.0.0.1:{next(ports)}", None) for r in "ab"),
        )
        for i in (1, 2)
    ]
    first = ClusterMap.even(shards)
    map_file = root / "map.json"
    map_file.write_text(json.dumps(first.to_json()))
    servers = {
        n.id: Server(
            n.id,
            root / n.id,
            port=int(n.http.rsplit(":", 1)[1]),
            secret=SECRET,
            extra=["--cluster-map", str(map_file)],
        )
        for n in first.nodes()
    }
    for s in servers.values():
        s.spawn()
    try:
        for s in servers.values():
            s.wait_serving()
        yield Cluster(root, map_file, first, servers)
    finally:
        for s in servers.values():
            s.stop()


def test_a_map_change_spreads_to_all_four(cluster: Cluster, tmp_path: Path) -> None:
    s = cluster.servers
    m1 = cluster.first
    assert cluster.epochs() == dict.fromkeys(s, 1)
    moved = list(range(8000, 8192))  # from s1 to s2
    key = next(f"spread{i}" for i in range(10**6) if 8000 <= key_slot(f"spread{i}") < 8192)
    assert http("PUT", f"{s['s1-a'].url}/v1/registers/{key}", {"value": 1})[0] == 200
    m2 = m1.with_owner(moved, "s2")
    new = tmp_path / "m2.json"
    new.write_text(json.dumps(m2.to_json()))
    done = _run("cluster-map", "set", str(new), "--via", s["s1-a"].url, "--cluster-secret", SECRET)
    assert done.returncode == 0, done.stderr
    assert f"map epoch 2 taken by {s['s1-a'].url}" in done.stdout
    assert "every process holds map epoch 2" in done.stdout, done.stdout
    # Each process holds it, and serves by it: the old owner now redirects the slot.
    assert cluster.epochs() == dict.fromkeys(s, 2)
    for rid, server in s.items():
        view = _view(server)
        assert ClusterMap.from_json(view["map"]) == m2, rid
    status, body = http("GET", f"{s['s1-a'].url}/v1/registers/{key}")
    assert status == 421 and body["error"]["url"] == s["s2-a"].url, body
    assert _view(s["s1-b"])["slots"] == "0-7999"
    status, raw = http("GET", f"{s['s2-b'].url}/metrics")
    metrics = raw.decode() if isinstance(raw, bytes) else str(raw)
    assert "crdtkv_cluster_epoch 2.0" in metrics and "crdtkv_cluster_slots 8384.0" in metrics
    shown = _run("cluster-map", "show", "--via", s["s2-b"].url)
    assert shown.returncode == 0, shown.stderr
    assert "epoch 2, held by s2-b" in shown.stdout and "shard s2: 8384 slots 8000-16383" in (
        shown.stdout
    )


def test_an_older_map_is_refused(cluster: Cluster) -> None:
    s = cluster.servers
    held = cluster.epochs()["s2-a"]
    assert held >= 2
    # Signed, but older: 409 stale_map, with the map held.
    status, body = _post(s["s2-a"].url, cluster.first.to_json())
    assert status == 409, body
    assert body["error"]["code"] == "stale_map" and body["error"]["map"]["epoch"] == held
    # Another map of the epoch held is refused too.
    other = ClusterMap.from_json(_view(s["s2-a"])["map"]).with_owner([0], "s2")
    same_epoch = {**other.to_json(), "epoch": held}
    status, body = _post(s["s2-a"].url, same_epoch)
    assert status == 409 and body["error"]["code"] == "stale_map", body
    # The command says so and exits 1.
    done = _run(
        "cluster-map", "set", str(cluster.map_file), "--via", s["s2-a"].url, "--cluster-secret",
        SECRET,
    )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"refused map epoch 1: it holds epoch {held}" in done.stderr
    assert cluster.epochs() == dict.fromkeys(s, held)


def test_an_unsigned_post_is_refused_and_changes_nothing(cluster: Cluster) -> None:
    s = cluster.servers
    before = cluster.epochs()
    current = ClusterMap.from_json(_view(s["s1-b"])["map"])
    newer = current.with_owner(range(100), "s2").to_json()
    status, body = _post(s["s1-b"].url, newer, secret=None)
    assert status == 401 and body["error"]["code"] == "unauthorized", body
    status, body = _post(s["s1-b"].url, newer, secret="not-the-cluster-secret")
    assert status == 401 and "does not verify" in body["error"]["message"], body
    # Without a secret the command refuses to send anything (usage: exit 2).
    done = _run("cluster-map", "set", str(cluster.map_file), "--via", s["s1-b"].url)
    assert done.returncode == 2 and "--cluster-secret" in done.stderr
    assert cluster.epochs() == before
    assert _view(s["s1-b"])["slots"] == format_slots(current, "s1")


def test_a_restarted_process_catches_up(cluster: Cluster, tmp_path: Path) -> None:
    s = cluster.servers
    late = s["s2-b"]
    held = cluster.epochs()["s1-a"]
    late.stop()
    current = ClusterMap.from_json(_view(s["s1-a"])["map"])
    newer = current.with_owner(range(16000, 16384), "s1")
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(newer.to_json()))
    done = _run(
        "cluster-map", "set", str(path), "--via", s["s1-a"].url, "--cluster-secret", SECRET,
        "--wait", "3",
    )  # fmt: skip
    assert done.returncode == 3, (done.stdout, done.stderr)  # taken; s2-b did not report it
    assert "not yet held by s2-b" in done.stderr
    up = {rid: srv for rid, srv in s.items() if rid != "s2-b"}
    assert {rid: _view(srv)["epoch"] for rid, srv in up.items()} == dict.fromkeys(up, held + 1)
    # s2-b restarts with the stale file (epoch 1): it takes its data directory's map
    # (the one it held when it stopped), then the newer one from the others.
    late.start()
    log = late.log_path.read_text()
    assert f"cluster map: epoch {held} from the data directory" in log, log[-2000:]
    wait_until(lambda: _view(late)["epoch"] == held + 1, SPREAD_S, what="s2-b catching up")
    assert ClusterMap.from_json(_view(late)["map"]) == newer
    assert _view(late)["slots"] == format_slots(newer, "s2")


def test_processes_that_were_not_pushed_to_learn_the_map_by_asking(cluster: Cluster) -> None:
    s = cluster.servers
    current = ClusterMap.from_json(_view(s["s1-a"])["map"])
    newer = current.with_owner(range(200, 300), "s2")
    # Posted as by a process of the cluster: the receiver takes it but pushes it to
    # no one (only an operator's change is pushed); the others find it by polling.
    body = orjson.dumps(newer.to_json())
    headers = {**signed_headers(SECRET, "s2-a", "POST", body), "Content-Type": "application/json"}
    status, reply = http("POST", f"{s['s1-a'].url}/v1/cluster/map", data=body, headers=headers)
    assert status == 200 and reply == {"epoch": newer.epoch, "changed": True}, reply
    wait_until(
        lambda: cluster.epochs() == dict.fromkeys(s, newer.epoch), SPREAD_S, what="the polls"
    )
    # Each learnt it by asking, or from a process that asked it and found it behind.
    for rid in ("s1-b", "s2-a", "s2-b"):
        log = s[rid].log_path.read_text()
        assert f"-> {newer.epoch} (seen at s" in log or f"-> {newer.epoch} (POST from s" in log


def test_a_start_with_another_map_of_the_same_epoch_is_refused(
    cluster: Cluster, tmp_path: Path
) -> None:
    s = cluster.servers
    late = s["s1-b"]
    view = _view(late)
    other = ClusterMap.from_json(view["map"]).with_owner([1], "s2").to_json()
    other["epoch"] = view["epoch"]
    path = tmp_path / "same-epoch.json"
    path.write_text(json.dumps(other))
    late.stop()
    try:
        args = [a if a != str(cluster.map_file) else str(path) for a in late.args()]
        done = _run("serve", *args)
        assert done.returncode == 1, done.stderr
        assert "holds another map of epoch" in done.stderr
        # Nor does a sharded replica's data directory start without a map.
        cut = args.index("--cluster-map")
        done = _run("serve", *args[:cut], *args[cut + 2 :])
        assert done.returncode == 1, done.stderr
        assert "of a sharded cluster" in done.stderr and "--cluster-map" in done.stderr
    finally:
        late.start()
    assert _view(late)["epoch"] == view["epoch"]


def test_cluster_map_command_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"epoch": 0, "shards": []}')
    via = ("--via", "http://127.0.0.1:1", "--cluster-secret", "s")
    done = _run("cluster-map", "set", str(bad), *via)
    assert done.returncode == 2 and "epoch" in done.stderr, done.stderr
    done = _run("cluster-map", "show", "--via", "127.0.0.1:7001")
    assert done.returncode == 2 and "--via" in done.stderr, done.stderr
    done = _run("cluster-map")
    assert done.returncode == 2 and "show or set" in done.stderr, done.stderr
    port = free_ports(1)[0]  # nothing listens there
    done = _run("cluster-map", "show", "--via", f"http://127.0.0.1:{port}")
    assert done.returncode == 1 and "cannot reach" in done.stderr, done.stderr


# -- crdtkv cluster --shards --regions ------------------------------------------------------------


def test_the_launcher_runs_a_sharded_cluster(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "cluster.log"
    env = clean_env()
    del env["CRDTKV_RESP_BASE_PORT"]  # sharded: free RESP ports
    proc = spawn(
        crdtkv_cmd("cluster", "--shards", "2", "--regions", "2", "--data-dir", str(data)),
        cwd=tmp_path,
        env=env,
        stderr=log,
        new_session=True,  # a failure's kill -9 reaches the replicas it started too
    )
    try:
        lines = read_lines_until(
            proc, "cluster of 2 shards x 2 regions", 4 * STARTUP_S, what="crdtkv cluster", log=log
        )
        m = ClusterMap.from_json(json.loads((data / "cluster-map.json").read_text()))
        urls: dict[str, str] = {}
        for line, n in zip(lines[:4], m.nodes(), strict=True):
            words = line.split()
            assert words[:5] == [n.id, "shard", m.shard_of(n.id).id, "region", n.region], line
            assert words[5:] == [n.http, f"redis://{n.resp}"], line
            urls[n.id] = n.http
        assert [n.id for n in m.nodes()] == ["s1-a", "s1-b", "s2-a", "s2-b"]
        assert (data / "cluster.secret").stat().st_mode & 0o777 == 0o600
        # A key of shard s2 written at region a's owner reaches region b's replica of s2 ...
        key = _key_of(m, "s2", "launch")
        status, body = http("PUT", f"{urls['s2-a']}/v1/registers/{key}", {"value": "v"})
        assert status == 200, body
        wait_until(
            lambda: http("GET", f"{urls['s2-b']}/v1/registers/{key}")[1] == {"value": "v"},
            SPREAD_S,
            what="the write at s2-b",
        )
        # ... and never the other shard: s1's replicas hold no key, and redirect it.
        for rid in ("s1-a", "s1-b"):
            status, body = http("GET", f"{urls[rid]}/v1/registers/{key}")
            assert status == 421 and body["error"]["code"] == "moved", (rid, body)
            assert http("GET", f"{urls[rid]}/v1/status")[1]["keys"] == 0, rid
        # The printed redis:// address serves RESP (its own shard's keys; the RESP
        # redirects are the RESP layer's, tested there).
        own = _key_of(m, "s1", "resp")
        host, port = m.node("s1-a").resp_host_port or ("", 0)
        rds = redis.Redis(host=host, port=port, decode_responses=True)
        try:
            assert rds.set(own, "r") and rds.get(own) == "r"
        finally:
            rds.close()
        assert stop(proc, signal.SIGINT, 3 * STARTUP_S) == 0, log.read_text()[-3000:]
    finally:
        kill9(proc, group=True)


def test_the_launcher_refuses_bad_shapes(tmp_path: Path) -> None:
    done = _run("cluster", "--shards", "2", "--replicas", "3")
    assert done.returncode == 2 and "--replicas" in done.stderr
    done = _run("cluster", "--shards", "9", "--regions", "4")
    assert done.returncode == 2 and "at most 32" in done.stderr
    # A data directory of another shape is refused before anything starts.
    data = tmp_path / "d"
    data.mkdir()
    m = ClusterMap.even(
        [Shard("s1", (NodeAddr("s1-a", "a", "http://127.0.0.1:1", None),))]
    ).to_json()
    (data / "cluster-map.json").write_text(json.dumps(m))
    done = _run("cluster", "--shards", "2", "--regions", "2", "--data-dir", str(data))
    assert done.returncode == 2 and "1 shards x 1 regions" in done.stderr, done.stderr

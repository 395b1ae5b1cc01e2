"""``crdtkv reshard`` with real processes: 2 shards x 2 regions, writers running.

Writers follow redirects the way the contract says (421 ``moved``: re-route by the
body's ``url``; 421 ``ask``: resend once there with ``X-Crdtkv-Asking: 1``; 503
``try_again``: retry), and count a write only once it is answered 200.  After the
move of a third of the slots: every acknowledged write is at the new owner in both
regions, the regions converge, and no moved key is left at the source, in memory
(its key count) or on disk (its data directory, opened after a clean stop).  Then
the same with the source killed (``kill -9``) mid-copy and the tool run again.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from crdtkv.cluster import move as mv
from crdtkv.replica.persist import load_replica
from crdtkv.storage.rocks import RocksStorage
from tests.procs import Server, clean_env, crdtkv_cmd, free_ports, http, run, spawn, wait_until

SECRET = "reshard-test-secret"
MOVED = set(range(0, 5461))  # a third of the slots, from s0 (0-8191) to s1
KEYS = [f"w{i}" for i in range(240)]


def _cluster(root: Path, resp: bool = False) -> tuple[ClusterMap, dict[str, Server]]:
    ports = iter(free_ports(8))
    shards = []
    for s in range(2):
        reps = tuple(
            NodeAddr(
                f"s{s}-{r}",
                r,
                f"http://127.0.0.1:{next(ports)}",
                f"127.0.0.1:{next(ports)}" if resp else None,
            )
            for r in "ab"
        )
        shards.append(Shard(f"s{s}", reps))
    m = ClusterMap.even(shards)
    path = root / "map.json"
    path.write_text(json.dumps(m.to_json()))
    servers = {
        n.id: Server(
            n.id,
            root / n.id,
            port=int(n.http.rsplit(":", 1)[1]),
            secret=SECRET,
            extra=["--cluster-map", str(path)],
            resp_port=n.resp_host_port[1] if n.resp_host_port else None,
        )
        for n in m.nodes()
    }
    for s in servers.values():
        s.spawn()
    for s in servers.values():
        s.wait_serving()
    return m, servers


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ClusterMap, dict[str, Server], Path]]:
    m, servers = _cluster(tmp_path)
    try:
        yield m, servers, tmp_path
    finally:
        for s in servers.values():
            s.kill9()


class Writer(threading.Thread):
    """Adds unique members to random keys in one region, following redirects."""

    def __init__(self, m: ClusterMap, region: str, seed: int) -> None:
        super().__init__(daemon=True)
        self.region = region
        self.route = {slot: m.owner_in(slot, region).http for slot in range(16384)}
        self.rng = random.Random(seed)
        self.acked: list[tuple[str, str]] = []
        self.redirects = {"moved": 0, "ask": 0, "try_again": 0, "unreachable": 0}
        self.failures: list[str] = []
        self.stop = threading.Event()

    def write(self, key: str, member: str) -> bool:
        slot = key_slot(key)
        url, headers = self.route[slot], {}
        for _ in range(400):
            try:
                status, body = http(
                    "POST", f"{url}/v1/sets/{key}/add", {"members": [member]}, headers=headers
                )
            except OSError:
                self.redirects["unreachable"] += 1
                time.sleep(0.05)
                url, headers = self.route[slot], {}
                continue
            err = body.get("error", {}) if isinstance(body, dict) else {}
            if status == 200:
                return True
            if status == 421 and err.get("code") == "moved":
                self.redirects["moved"] += 1
                self.route[slot] = url = err["url"]
                headers = {}
            elif status == 421 and err.get("code") == "ask":
                self.redirects["ask"] += 1
                url, headers = err["url"], {"X-Crdtkv-Asking": "1"}
            elif status == 503 and err.get("code") == "try_again":
                self.redirects["try_again"] += 1
                time.sleep(0.01)
                url, headers = self.route[slot], {}
            else:
                self.failures.append(f"{key}: {status} {body!r:.200}")
                return False
        self.failures.append(f"{key}: gave up")
        return False

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            key = self.rng.choice(KEYS)
            member = f"{self.region}{i}"
            i += 1
            if self.write(key, member):
                self.acked.append((key, member))


def _preload(m: ClusterMap, n: int, pad: int = 0) -> None:
    """``n`` keys in both regions (one member per region), by batches to the owners."""
    for region in "ab":
        ops: dict[str, list[dict[str, Any]]] = {}
        for i in range(n):
            k = f"pre{i}"
            ops.setdefault(m.owner_in(key_slot(k), region).http, []).append(
                {"op": "sets.add", "key": k, "members": [region + "x" * pad]}
            )
        per = 1000 if pad < 100 else 200  # under the body limit (1 MiB)
        for url, o in ops.items():
            for j in range(0, len(o), per):
                status, body = http("POST", url + "/v1/batch", {"ops": o[j : j + per]})
                assert status == 200 and all("error" not in r for r in body["results"]), body


def _reshard(via: str, *extra: str) -> list[str]:
    return crdtkv_cmd(
        "reshard",
        "--slots",
        "0-5460",
        "--to",
        "s1",
        "--via",
        via,
        "--cluster-secret",
        SECRET,
        *extra,
    )


def _members(url: str, key: str) -> set[str]:
    status, body = http("GET", f"{url}/v1/sets/{key}")
    if status == 404:
        return set()
    assert status == 200, (url, key, status, body)
    return set(body["members"])


def _check_after(
    m: ClusterMap, servers: dict[str, Server], acked: list[tuple[str, str]], keys: list[str]
) -> None:
    new = m.with_moving(MOVED, "s1").with_owner(MOVED, "s1")
    by_key: dict[str, set[str]] = {}
    for k, member in acked:
        by_key.setdefault(k, set()).add(member)

    def converged() -> bool:
        for k in keys:
            a = _members(new.owner_in(key_slot(k), "a").http, k)
            b = _members(new.owner_in(key_slot(k), "b").http, k)
            if a != b or not by_key.get(k, set()) <= a:
                return False
        return True

    wait_until(converged, 60, 0.5, "every acknowledged write at the owner in both regions")
    for k, want in by_key.items():  # explicit, for the message when it fails
        for region in "ab":
            got = _members(new.owner_in(key_slot(k), region).http, k)
            assert want <= got, (k, region, want - got)
    # The sources keep only the slots they still own: in memory, ...
    for sid in ("s0-a", "s0-b"):
        st = servers[sid].status()
        assert st["cluster"]["slots"] == "5461-8191"
        move = st["cluster"]["moves"]["move"]
        assert move is not None and move["phase"] == "dropped"
    # ... and on disk.
    for sid in ("s0-a", "s0-b"):
        assert servers[sid].stop() == 0
        storage = RocksStorage(str(servers[sid].data_dir))
        try:
            replica = load_replica(storage, sid, "check")
            left = mv.slot_names(replica, MOVED)
            assert left == [], (sid, left[:10])
            assert replica.names, sid  # it kept its other slots' keys
        finally:
            storage.close()


def test_reshard_under_writes(cluster: tuple[ClusterMap, dict[str, Server], Path]) -> None:
    m, servers, _ = cluster
    _preload(m, 3000)
    writers = [Writer(m, r, seed) for seed, r in enumerate("ab")]
    for w in writers:
        w.start()
    time.sleep(0.5)
    out = run(_reshard(servers["s1-b"].url, "--no-progress"), env=clean_env(), timeout_s=120)
    time.sleep(0.5)  # writes go on after the flip too
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
    assert out.returncode == 0, out.stderr
    assert "moved slots 0-5460 to s1 (map epoch 3)" in out.stdout
    for w in writers:
        assert w.failures == [], w.failures[:5]
        assert len(w.acked) > 50
    # The writers met the move (a redirect after the flip at least).
    assert sum(w.redirects["moved"] for w in writers) > 0
    acked = [a for w in writers for a in w.acked]
    _check_after(m, servers, acked, KEYS + [f"pre{i}" for i in range(0, 3000, 7)])
    # Run again: the slots are there, nothing to do, and it says so.
    for sid in ("s0-a", "s0-b"):
        servers[sid].start()
    again = run(_reshard(servers["s0-a"].url, "--no-progress"), env=clean_env(), timeout_s=60)
    assert again.returncode == 1 and "already owned by shard 's1'" in again.stderr


def test_reshard_resumes_after_kill_9_of_the_source(
    cluster: tuple[ClusterMap, dict[str, Server], Path],
) -> None:
    m, servers, root = cluster
    _preload(m, 9_000, pad=1_000)  # about 6 MB to copy: several chunks
    writers = [Writer(m, r, 10 + seed) for seed, r in enumerate("ab")]
    for w in writers:
        w.start()
    log = root / "reshard-1.log"
    tool = spawn(_reshard(servers["s0-a"].url, "--no-progress"), env=clean_env(), stderr=log)
    src = servers["s0-a"]

    def copying() -> bool:
        mv_ = src.status()["cluster"]["moves"]["move"]
        return bool(mv_) and mv_["phase"] == "copying"

    wait_until(copying, 60, 0.02, "the bulk copy to start")
    src.kill9()
    tool.kill()
    tool.wait(10)
    src.start()
    out = run(_reshard(servers["s1-a"].url, "--no-progress"), env=clean_env(), timeout_s=120)
    time.sleep(0.3)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
    assert out.returncode == 0, out.stderr
    for w in writers:
        assert w.failures == [], w.failures[:5]
    acked = [a for w in writers for a in w.acked]
    pre = [f"pre{i}" for i in range(9_000) if key_slot(f"pre{i}") in MOVED]
    _check_after(m, servers, acked, KEYS + pre[::25])
    # Every preloaded key of the moved slots is at the new owner in both regions.
    for region in "ab":
        url = servers[f"s1-{region}"].url
        ops = [{"op": "sets.get", "key": k} for k in pre[:1000]]
        status, body = http("POST", url + "/v1/batch", {"ops": ops})
        assert status == 200
        assert all(len(r.get("members", [])) == 2 for r in body["results"]), region


def test_reshard_refuses_clearly(cluster: tuple[ClusterMap, dict[str, Server], Path]) -> None:
    _, servers, _ = cluster
    via = servers["s0-a"].url
    bad = run(
        crdtkv_cmd(
            "reshard", "--slots", "0-10", "--to", "nope", "--via", via, "--cluster-secret", SECRET
        ),
        env=clean_env(),
    )
    assert bad.returncode == 1 and "unknown shard 'nope'; the shards are s0, s1" in bad.stderr
    there = run(
        crdtkv_cmd(
            "reshard",
            "--slots",
            "9000-9010",
            "--to",
            "s1",
            "--via",
            via,
            "--cluster-secret",
            SECRET,
        ),
        env=clean_env(),
    )
    assert there.returncode == 1 and "already owned by shard 's1'" in there.stderr
    usage = run(crdtkv_cmd("reshard", "--slots", "x", "--to", "s1", "--via", via), env=clean_env())
    assert usage.returncode == 2 and "--slots" in usage.stderr
    # Unsigned (no secret): the processes refuse the map push, nothing moved.
    unsigned = run(
        crdtkv_cmd("reshard", "--slots", "0-10", "--to", "s1", "--via", via), env=clean_env()
    )
    assert unsigned.returncode == 1 and "refused the cluster map" in unsigned.stderr
    assert servers["s0-a"].status()["cluster"]["epoch"] == 1
    # A process away: the tool waits and says so; it finishes once the process is back.
    servers["s1-b"].kill9()
    tool = spawn(
        _reshard(via, "--no-progress"),
        env=clean_env(),
        stderr=servers["s1-b"].data_dir.parent / "reshard-wait.log",
    )
    log = servers["s1-b"].data_dir.parent / "reshard-wait.log"
    wait_until(lambda: "waiting for s1-b" in log.read_text(), 30, 0.2, "the tool to wait")
    servers["s1-b"].start()
    assert tool.wait(120) == 0, log.read_text()[-2000:]


class ClientWriter(threading.Thread):
    """Adds unique members with a real client: redis-py's RedisCluster (region a's
    RESP ports) or the crdtkv client (region b).  Any exception that reaches the
    caller is a failure: redirects are the clients' business."""

    def __init__(self, kind: str, m: ClusterMap) -> None:
        super().__init__(daemon=True)
        self.kind = kind
        self.m = m
        self.rng = random.Random(kind)
        self.acked: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        if self.kind == "redis-py":
            from redis.cluster import ClusterNode, RedisCluster

            nodes = [
                ClusterNode(*n.resp_host_port)  # type: ignore[misc]
                for n in self.m.nodes()
                if n.region == "a"
            ]
            rc = RedisCluster(startup_nodes=nodes, decode_responses=True)
            write = lambda k, v: rc.sadd(k, v)  # noqa: E731
            close = rc.close
        else:
            from crdtkv import Client

            db = Client([self.m.node("s0-b").http])
            write = lambda k, v: db.sets.add(k, v)  # noqa: E731
            close = db.close
        i = 0
        try:
            while not self.stop.is_set():
                key, member = self.rng.choice(KEYS), f"{self.kind}{i}"
                i += 1
                try:
                    write(key, member)
                except Exception as e:
                    self.failures.append(f"{key}: {e!r:.300}")
                    if len(self.failures) > 20:
                        return
                    continue
                self.acked.append((key, member))
        finally:
            close()


def test_reshard_under_redis_py_and_crdtkv_client_writes(tmp_path: Path) -> None:
    """Issue 18's Done-when: a third of the slots move while redis-py's RedisCluster
    (region a) and the crdtkv client (region b) write; no error reaches either, and no
    acknowledged write is lost."""
    m, servers = _cluster(tmp_path, resp=True)
    try:
        _preload(m, 1000)
        writers = [ClientWriter("redis-py", m), ClientWriter("crdtkv", m)]
        for w in writers:
            w.start()
        time.sleep(0.5)
        out = run(_reshard(servers["s0-a"].url, "--no-progress"), env=clean_env(), timeout_s=120)
        time.sleep(0.5)  # writes go on after the flip too
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(30)
        assert out.returncode == 0, out.stderr
        for w in writers:
            assert w.failures == [], (w.kind, w.failures[:5])
            assert len(w.acked) > 20, w.kind
        acked = [a for w in writers for a in w.acked]
        _check_after(m, servers, acked, KEYS + [f"pre{i}" for i in range(0, 1000, 7)])
    finally:
        for srv in servers.values():
            srv.kill9()

"""Redis Cluster clients against real sharded processes: 3 shards x 2 regions, each
``crdtkv serve --cluster-map`` with its RESP port.

redis-py's ``RedisCluster`` writes and reads 100,000 keys (CRDTKV_SLOW=1; 10,000 by
default) through its cluster pipeline in region a, each shard holds about a third, and
region b's replicas converge to the same keys and values (read back through a
``RedisCluster`` of region b).  ``redis-cli -c`` follows MOVED; the CLUSTER answers list
one region's nodes; and the texts Redis defines are compared with a real
``redis-server --cluster-enabled yes``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from tests.procs import Server, free_ports, start_all, wait_until
from tests.resp.conftest import wait_ping

# The 100,000 keys with CRDTKV_SLOW=1; a tenth of them by default (the module stays
# near a minute on a loaded 2-core machine).
KEYS = 100_000 if os.environ.get("CRDTKV_SLOW") == "1" else 10_000
SHARDS, REGIONS = 3, ("a", "b")


@dataclass
class Cluster:
    map: ClusterMap
    servers: dict[str, Server]  # by replica id

    def resp(self, node_id: str) -> redis.Redis:
        port = self.servers[node_id].resp_port
        assert port is not None
        return redis.Redis(port=port, decode_responses=True)

    def region(self, region: str) -> list[NodeAddr]:
        return [sh.in_region(region) for sh in self.map.shards]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("resp-cluster")
    n = SHARDS * len(REGIONS)
    ports = free_ports(2 * n)
    http_ports, resp_ports = ports[:n], ports[n:]
    shards = []
    i = 0
    for s in range(SHARDS):
        replicas = []
        for r in REGIONS:
            replicas.append(
                NodeAddr(
                    f"s{s}-{r}",
                    r,
                    f"http://127.0.0.1:{http_ports[i]}",
                    f"127.0.0.1:{resp_ports[i]}",
                )
            )
            i += 1
        shards.append(Shard(f"s{s}", tuple(replicas)))
    m = ClusterMap.even(shards)
    path = root / "map.json"
    path.write_text(json.dumps(m.to_json()))
    servers = {}
    for node in m.nodes():
        hp = node.resp_host_port
        assert hp is not None
        servers[node.id] = Server(
            node.id,
            root / node.id,
            port=int(node.http.rsplit(":", 1)[1]),
            durability="wal",
            resp_port=hp[1],
            extra=["--cluster-map", str(path)],
        )
    try:
        start_all(list(servers.values()), timeout_s=90)
        yield Cluster(m, servers)
    finally:
        for s in servers.values():
            s.kill9()


def test_cluster_views_list_one_region(cluster: Cluster) -> None:
    m = cluster.map
    for region in REGIONS:
        nodes = cluster.region(region)
        ports = {n.resp_host_port[1] for n in nodes if n.resp_host_port}  # type: ignore[index]
        for node in nodes:
            c = cluster.resp(node.id)
            slots = c.execute_command("CLUSTER SLOTS")
            # Every slot, in order, each range at its owner's replica in this region.
            covered = 0
            for lo, hi, (host, port, nid, *_), *replicas in slots:
                assert lo == covered and not replicas
                owner = m.owner_in(lo, region)
                assert (host, port, nid) == ("127.0.0.1", owner.resp_host_port[1], owner.cluster_id)  # type: ignore[index]
                assert port in ports
                covered = hi + 1
            assert covered == 16384
            assert c.execute_command("CLUSTER MYID") == node.cluster_id
            info = c.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
            assert info["cluster_state"] == "ok"
            assert info["cluster_slots_assigned"] == "16384"
            assert info["cluster_known_nodes"] == str(SHARDS)
            assert info["cluster_size"] == str(SHARDS)
            assert info["cluster_current_epoch"] == str(m.epoch)
            port = cluster.servers[node.id].resp_port
            assert port is not None
            rows = [ln.split() for ln in _raw(port, "CLUSTER", "NODES").splitlines()]
            assert sorted(r[0] for r in rows) == sorted(n.cluster_id for n in nodes)
            assert sorted(r[1] for r in rows) == sorted(f"127.0.0.1:{p}@0" for p in ports)
            mine = [r for r in rows if "myself" in r[2]]
            assert len(mine) == 1 and mine[0][0] == node.cluster_id
            assert mine[0][2:8] == ["myself,master", "-", "0", "0", str(m.epoch), "connected"]
            own = ",".join(mine[0][8:])
            lo, hi = next((lo, hi) for lo, hi, sid in m.ranges() if sid == m.shard_of(node.id).id)
            assert own == f"{lo}-{hi}"
            shards = c.execute_command("CLUSTER SHARDS")
            assert len(shards) == SHARDS
            assert all(len(s["nodes"]) == 1 for s in shards)  # this region's replica only
            info_text = c.info("cluster")
            assert info_text["cluster_enabled"] == 1
            assert info_text["cluster_shard"] == m.shard_of(node.id).id
            c.close()


def test_redis_py_cluster_writes_and_reads_keys_on_every_shard(cluster: Cluster) -> None:
    m = cluster.map
    a0 = cluster.region("a")[0].resp_host_port
    b0 = cluster.region("b")[0].resp_host_port
    assert a0 is not None and b0 is not None
    rc = RedisCluster(host="127.0.0.1", port=a0[1], decode_responses=True)
    try:
        assert len(rc.get_nodes()) == SHARDS
        chunk = 5_000
        for start in range(0, KEYS, chunk):
            pipe = rc.pipeline(transaction=False)
            for i in range(start, start + chunk):
                pipe.set(f"key:{i}", f"value:{i}")
            assert pipe.execute() == [True] * chunk
        got: list[Any] = []
        for start in range(0, KEYS, chunk):
            pipe = rc.pipeline(transaction=False)
            for i in range(start, start + chunk):
                pipe.get(f"key:{i}")
            got += pipe.execute()
        assert got == [f"value:{i}" for i in range(KEYS)]
        # A key set through one node is read through another (MOVED followed).
        rc.set("moved-probe", "x")
        assert rc.get("moved-probe") == "x"
    finally:
        rc.close()
    # Each shard of region a holds the keys of its slots: about a third each.
    expected: dict[str, int] = {}
    for i in range(KEYS):
        sid = m.owner(key_slot(f"key:{i}")).id
        expected[sid] = expected.get(sid, 0) + 1
    expected[m.owner(key_slot("moved-probe")).id] += 1
    for node in cluster.region("a"):
        sid = m.shard_of(node.id).id
        c = cluster.resp(node.id)
        assert c.dbsize() == expected[sid]
        assert 0.30 * KEYS < expected[sid] < 0.37 * KEYS, expected
        c.close()
    # Region b's replica of each shard converges to the same keys ...
    for node in cluster.region("b"):
        sid = m.shard_of(node.id).id
        server = cluster.servers[node.id]
        wait_until(
            lambda server=server, sid=sid: server.status()["keys"] == expected[sid],
            timeout_s=120,
            what=f"{node.id} to hold its shard's {expected[sid]} keys",
        )
        status = server.status()
        assert status["cluster"]["shard"] == sid
    # ... and the same values, read through region b's own Redis Cluster.
    rb = RedisCluster(host="127.0.0.1", port=b0[1], decode_responses=True)
    try:
        ports_b = {n.resp_host_port[1] for n in cluster.region("b") if n.resp_host_port}
        assert {n.port for n in rb.get_nodes()} == ports_b
        got = []
        for start in range(0, KEYS, 10_000):
            pipe = rb.pipeline(transaction=False)
            for i in range(start, start + 10_000):
                pipe.get(f"key:{i}")
            got += pipe.execute()
        assert got == [f"value:{i}" for i in range(KEYS)]
    finally:
        rb.close()
    # The keys of one slot, as CLUSTER GETKEYSINSLOT lists them at its owner.
    slot = key_slot("key:0")
    owner = m.owner_in(slot, "a")
    c = cluster.resp(owner.id)
    in_slot = sorted(f"key:{i}" for i in range(KEYS) if key_slot(f"key:{i}") == slot)
    assert c.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == len(in_slot)
    assert sorted(c.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)) == in_slot
    c.close()


def _raw(port: int, *argv: str) -> str:
    """One command's reply line as redis-cli prints it (non-tty: errors as their text)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *argv], capture_output=True, text=True, timeout=30
    )
    return out.stdout.strip()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redirect_texts_and_redis_cli_follows_moved(cluster: Cluster) -> None:
    m = cluster.map
    a = cluster.region("a")
    key = next(f"cli{i}" for i in range(1000) if m.owner(key_slot(f"cli{i}")).id == "s2")
    slot = key_slot(key)
    p0 = a[0].resp_host_port[1]  # type: ignore[index]
    p2 = a[2].resp_host_port[1]  # type: ignore[index]
    assert _raw(p0, "SET", key, "v") == f"MOVED {slot} 127.0.0.1:{p2}"
    # Region b redirects to region b's replica of the owner.
    b0 = cluster.region("b")[0].resp_host_port[1]  # type: ignore[index]
    b2 = cluster.region("b")[2].resp_host_port[1]  # type: ignore[index]
    assert _raw(b0, "GET", key) == f"MOVED {slot} 127.0.0.1:{b2}"
    other = next(f"x{i}" for i in range(1000) if key_slot(f"x{i}") != slot)
    assert _raw(p2, "MGET", key, other) == "CROSSSLOT Keys in request don't hash to the same slot"
    # -c: redis-cli follows the redirect to the owner.
    assert _raw(p0, "-c", "SET", key, "v") == "OK"
    assert _raw(p0, "-c", "GET", key) == "v"
    assert _raw(p2, "GET", key) == "v"
    # redis-cli --cluster check reads CLUSTER NODES and finds every slot covered.
    out = subprocess.run(
        ["redis-cli", "--cluster", "check", f"127.0.0.1:{p0}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "[OK] All 16384 slots covered." in out.stdout, out.stdout + out.stderr


# -- side by side with Redis ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A one-node redis-server with cluster support, owning every slot."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    d = Path(tmp_path_factory.mktemp("redis-cluster"))
    port, bus = free_ports(2)  # the bus port: port + 10000 may be past 65535
    args = ["--port", str(port), "--cluster-enabled", "yes", "--dir", str(d)]
    args += ["--cluster-port", str(bus), "--cluster-config-file", "nodes.conf"]
    proc = subprocess.Popen(
        ["redis-server", *args, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True)
    try:
        wait_ping(client)
        client.execute_command("CLUSTER ADDSLOTSRANGE", 0, 16383)
        wait_until(
            lambda: client.execute_command("CLUSTER INFO")["cluster_state"] == "ok",
            timeout_s=30,
            what="redis-server's cluster to be ok",
        )
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _reply(c: redis.Redis, *argv: Any) -> Any:
    if argv[0] in ("CLUSTER", "COMMAND") and len(argv) > 1:  # redis-py's name for its parser
        argv = (f"{argv[0]} {argv[1]}", *argv[2:])
    try:
        return c.execute_command(*argv)
    except redis.ResponseError as e:
        return f"error: {e}"


# Commands whose replies (or errors) Redis defines, asked of both.
SAME = [
    ("CLUSTER", "KEYSLOT", "foo"),
    ("CLUSTER", "KEYSLOT", "{user1}.a"),
    ("CLUSTER", "KEYSLOT", "{}x"),
    ("CLUSTER", "KEYSLOT", "a{}{b}"),
    ("CLUSTER", "KEYSLOT", "{a}{b}"),
    ("CLUSTER", "KEYSLOT", "é"),
    ("CLUSTER", "KEYSLOT"),
    ("CLUSTER", "KEYSLOT", "a", "b"),
    ("CLUSTER", "MYID", "x"),
    ("CLUSTER", "INFO", "x"),
    ("CLUSTER", "SLOTS", "x"),
    ("CLUSTER", "NOSUCH"),
    ("CLUSTER", "COUNTKEYSINSLOT", "x"),
    ("CLUSTER", "COUNTKEYSINSLOT", "16384"),
    ("CLUSTER", "COUNTKEYSINSLOT", "-1"),
    ("CLUSTER", "GETKEYSINSLOT", "12", "x"),
    ("CLUSTER", "GETKEYSINSLOT", "x", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "16384", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "1", "-1"),
    ("CLUSTER", "GETKEYSINSLOT", "1", "0"),
    ("ASKING",),
    ("ASKING", "x"),
    ("READONLY",),
    ("READWRITE",),
    ("READONLY", "x"),
    ("MGET", "a", "b"),
    ("MSET", "a", "1", "b", "2"),
    ("DEL", "a", "b"),
    ("SUNIONSTORE", "a", "b"),
    ("COMMAND", "GETKEYS", "GET"),
    ("COMMAND", "GETKEYS", "PING"),
    ("COMMAND", "GETKEYS", "NOSUCH", "x"),
]


def test_answers_match_redis_cluster(cluster: Cluster, redis_cluster: redis.Redis) -> None:
    ours = cluster.resp("s0-a")
    try:
        for argv in SAME:
            assert _reply(ours, *argv) == _reply(redis_cluster, *argv), argv
        theirs_info = _reply(redis_cluster, "CLUSTER", "INFO")
        our_info = _reply(ours, "CLUSTER", "INFO")
        keys, their_keys = list(our_info), list(theirs_info)  # parsed by redis-py
        assert [k for k in their_keys if k in keys] == keys  # Redis's names, Redis's order
        assert ours.info("cluster")["cluster_enabled"] == 1
        assert redis_cluster.info("cluster")["cluster_enabled"] == 1
        # CLUSTER SLOTS and SHARDS have Redis's shapes.
        ours_slot = ours.execute_command("CLUSTER SLOTS")[0]
        theirs_slot = redis_cluster.execute_command("CLUSTER SLOTS")[0]
        assert [type(x) for x in ours_slot] == [type(x) for x in theirs_slot]
        assert [type(x) for x in ours_slot[2]] == [type(x) for x in theirs_slot[2]]
        ours_shard = ours.execute_command("CLUSTER SHARDS")[0]
        theirs_shard = redis_cluster.execute_command("CLUSTER SHARDS")[0]
        assert list(ours_shard) == list(theirs_shard)
        assert list(ours_shard["nodes"][0]) == list(theirs_shard["nodes"][0])
    finally:
        ours.close()


@pytest.fixture(scope="module")
def plain_redis() -> Iterator[redis.Redis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True)
    try:
        wait_ping(client)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def _sample(name: str, arity: int) -> list[str]:
    """Arguments for ``COMMAND GETKEYS name ...`` that fit its arity."""
    pool = ["k1", "2", "k3", "4", "k5", "6", "k7"]
    n = arity - 1 if arity > 0 else max(-arity - 1, 6)
    return pool[:n]


def test_command_getkeys_matches_redis(cluster: Cluster, plain_redis: redis.Redis) -> None:
    """The keys a sharded replica checks are the keys Redis finds in the same arguments
    (every command both know; a command with keyword- or numkeys-placed keys would need
    its own ``getkeys``)."""
    ours = cluster.resp("s0-a")
    try:
        theirs_cmds = plain_redis.command()
        ours_cmds = ours.command()
        compared = 0
        for name, info in ours_cmds.items():
            if name not in theirs_cmds or not info["first_key_pos"]:
                continue
            args = _sample(name, info["arity"])
            assert _reply(ours, "COMMAND", "GETKEYS", name, *args) == _reply(
                plain_redis, "COMMAND", "GETKEYS", name, *args
            ), (name, args)
            compared += 1
        assert compared > 80
    finally:
        ours.close()

"""Hashes, sorted sets, strings and type conflicts across a real partition.

Three real ``crdtkv serve`` processes (real RocksDB, real HTTP replication).
Every replica reaches each peer through a fault-injecting reverse proxy, one
per directed link (``simulations.nemesis.proxy``, the one ``python -m
simulations nemesis`` uses): ``r1`` is started with ``--peer
r3=http://<proxy r1>r3>``, so every replication request from r1 to r3, and
its reply, passes that proxy.  Cutting r3 off blocks the four links to and
from it (the proxy answers 503 without forwarding, as a network partition
looks to the sender); r1 and r2 still replicate with each other, and r3
still takes writes.  Healing unblocks them.

Each test writes the same keys at the majority side (r1, r2) and at the
cut-off r3, checks that the partition held (neither side saw the other's
writes), heals, waits until the three agree (bounded, ``CONVERGE_S``), and
asserts the exact result, which ``converge`` has read at every replica.
The cases are those of docs/concepts.md "One keyspace of typed keys" and
docs/architecture.md ("Data model").  The LWW cases write the two sides one after
the other with a pause between (``after_a_pause``): the replicas share this
machine's clock, so the later write has the higher HLC and must win.

One cluster serves the module (distinct keys per test); the file takes about
ten seconds.
"""

from __future__ import annotations

import contextlib
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from crdtkv import Client, WrongType
from simulations.nemesis.proxy import ProxyMesh
from tests.procs import Server, ServerGroup, free_ports, server_group, start_all, wait_until
from tests.replication.real_cluster import CONVERGE_S, IDS, SECRET, Key, converge, read

LWW_PAUSE_S = 0.02  # > 1 ms: the later of two writes has a larger HLC wall time


# -- a cluster whose links pass proxies ----------------------------------------------------------


class ProxiedCluster:
    """r1, r2, r3, fully meshed through one blocking proxy per directed link
    (``simulations.nemesis.proxy.ProxyMesh``: the proxies run on an asyncio
    loop in a thread of the test process; a link's ``blocked`` flag is read
    by its proxy on every request and reply)."""

    def __init__(self, group: ServerGroup, root: Path) -> None:
        ports = free_ports(len(IDS) + len(IDS) * (len(IDS) - 1))
        replica_port = dict(zip(IDS, ports, strict=False))
        link_ports = iter(ports[len(IDS) :])
        proxy_port = {(a, b): next(link_ports) for a in IDS for b in IDS if a != b}
        self.mesh = ProxyMesh(IDS, replica_port, proxy_port)
        self.links = self.mesh.links
        self.servers = [
            group.add(
                Server(
                    rid,
                    root / rid,
                    port=replica_port[rid],
                    peers=self.mesh.peer_urls(rid),
                    secret=SECRET,
                )
            )
            for rid in IDS
        ]
        start_all(self.servers)

    def server(self, rid: str) -> Server:
        return self.servers[IDS.index(rid)]

    def cut_off(self, rid: str) -> None:
        """Block every link to and from ``rid``."""
        self.mesh.cut_off(rid)

    def heal(self) -> None:
        self.mesh.heal()

    def close(self) -> None:
        self.mesh.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedCluster]:
    with server_group() as group:
        c = ProxiedCluster(group, tmp_path_factory.mktemp("types"))
        try:
            yield c
        finally:
            group.close()  # the replicas first, so none talks to a closing proxy
            c.close()


@contextlib.contextmanager
def r3_cut_off(c: ProxiedCluster) -> Iterator[None]:
    """r3 cut off from r1 and r2 inside the block, healed after it."""
    watched = [c.links[("r1", "r3")], c.links[("r3", "r1")]]
    before = [link.dropped for link in watched]
    c.cut_off("r3")
    try:
        yield
        # r1 and r3 tried to send each other their writes, and were refused.
        wait_until(
            lambda: all(link.dropped > n for link, n in zip(watched, before, strict=True)),
            CONVERGE_S,
            what="the proxies to refuse a request each way between r1 and r3",
        )
        # Each side wrote what the other has not acknowledged (the tests write
        # at both): nothing crossed the cut.
        for here, there in (("r1", "r3"), ("r3", "r1")):
            peer = c.server(here).status()["peers"][there]
            assert peer["lag_ops"] > 0, (here, there, peer)
    finally:
        c.heal()


def db(server: Server) -> Client:
    return Client([server.url])


def after_a_pause() -> None:
    time.sleep(LWW_PAUSE_S)


def key_type(server: Server, key: str) -> str:
    code, body = server.get(f"/v1/keys/{quote(key, safe='')}/type")
    assert code == 200, (server.replica_id, key, code, body)
    t: str = body["type"]
    return t


def metric(server: Server, name: str) -> float:
    """An unlabelled sample of ``/metrics`` (AssertionError when absent)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics of {server.replica_id}")


def status_and_error(server: Server, path: str) -> tuple[int, str | None]:
    code, body = server.get(path)
    err = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return code, err


def wait_for(server: Server, key: Key, expected: Any) -> None:
    """Wait until ``server`` reads ``expected`` (r1 and r2 replicate while r3 is cut off)."""
    wait_until(
        lambda: read(server, key) == expected,
        CONVERGE_S,
        what=f"{key} to read {expected!r} at {server.replica_id}",
    )


def setup_everywhere(c: ProxiedCluster, keys: list[Key]) -> dict[Key, Any]:
    """Wait until the initial writes reached every replica (before any cut)."""
    reads, _ = converge(c.servers, keys)
    return reads


# -- hashes ----------------------------------------------------------------------------------------


def test_hash_fields_written_at_both_sides_all_survive(cluster: ProxiedCluster) -> None:
    r1, r2, r3 = cluster.servers
    key: Key = ("hashes", "h-fields")
    with r3_cut_off(cluster):
        with db(r1) as a:
            a.hashes.set("h-fields", {"a": "from-r1"})
        with db(r2) as b:
            b.hashes.set("h-fields", {"b": "from-r2"})
        with db(r3) as z:
            z.hashes.set("h-fields", {"c": "from-r3"})
        # The partition holds: the majority sees its two writes, r3 only its own.
        wait_for(r1, key, {"fields": {"a": "from-r1", "b": "from-r2"}, "size": 2})
        wait_for(r2, key, {"fields": {"a": "from-r1", "b": "from-r2"}, "size": 2})
        assert read(r3, key) == {"fields": {"c": "from-r3"}, "size": 1}
    reads, _ = converge(cluster.servers, [key])
    assert reads[key] == {
        "fields": {"a": "from-r1", "b": "from-r2", "c": "from-r3"},
        "size": 3,
    }


def test_hash_same_field_has_one_lww_winner_everywhere(cluster: ProxiedCluster) -> None:
    r1, _, r3 = cluster.servers
    later_at_r3: Key = ("hashes", "h-lww-1")  # the cut-off side writes last
    later_at_r1: Key = ("hashes", "h-lww-2")  # the majority side writes last
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            a.hashes.set("h-lww-1", {"f": "r1"})
            z.hashes.set("h-lww-2", {"f": "r3"})
            after_a_pause()
            z.hashes.set("h-lww-1", {"f": "r3", "g": 1})
            a.hashes.set("h-lww-2", {"f": "r1"})
        assert read(r1, later_at_r3) == {"fields": {"f": "r1"}, "size": 1}
        assert read(r3, later_at_r3) == {"fields": {"f": "r3", "g": 1}, "size": 2}
        assert read(r1, later_at_r1) == {"fields": {"f": "r1"}, "size": 1}
        assert read(r3, later_at_r1) == {"fields": {"f": "r3"}, "size": 1}
    reads, _ = converge(cluster.servers, [later_at_r3, later_at_r1])
    assert reads[later_at_r3] == {"fields": {"f": "r3", "g": 1}, "size": 2}
    assert reads[later_at_r1] == {"fields": {"f": "r1"}, "size": 1}


def test_hincrby_at_both_sides_sums(cluster: ProxiedCluster) -> None:
    r1, r2, r3 = cluster.servers
    key: Key = ("hashes", "h-incr")
    with db(r1) as a:
        a.hashes.set("h-incr", {"f": 1})
    setup_everywhere(cluster, [key])
    with r3_cut_off(cluster):
        with db(r1) as a, db(r2) as b, db(r3) as z:
            assert a.hashes.incr("h-incr", "f", 2) == 3
            z.hashes.incr("h-incr", "f", 3)
            z.hashes.incr("h-incr", "f", 10)
            wait_for(r2, key, {"fields": {"f": 3}, "size": 1})
            assert b.hashes.incr("h-incr", "f", 100) == 103
        assert read(r3, key) == {"fields": {"f": 14}, "size": 1}
    reads, _ = converge(cluster.servers, [key])
    assert reads[key] == {"fields": {"f": 1 + 2 + 3 + 10 + 100}, "size": 1}


def test_hdel_racing_hset_of_the_field_keeps_the_hset(cluster: ProxiedCluster) -> None:
    r1, _, r3 = cluster.servers
    del_at_r1: Key = ("hashes", "h-del-1")  # HDEL at the majority, HSET at r3
    del_at_r3: Key = ("hashes", "h-del-2")  # HDEL at r3, HSET at the majority
    with db(r1) as a:
        for name in ("h-del-1", "h-del-2"):
            a.hashes.set(name, {"f": "old", "keep": "yes"})
    setup_everywhere(cluster, [del_at_r1, del_at_r3])
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            # The HSETs first: an HDEL that saw one (a leaky cut) would remove it.
            z.hashes.set("h-del-1", {"f": "new-at-r3"})
            a.hashes.set("h-del-2", {"f": "new-at-r1"})
            assert a.hashes.remove("h-del-1", "f") == 1
            assert z.hashes.remove("h-del-2", "f") == 1
        assert read(r1, del_at_r1) == {"fields": {"keep": "yes"}, "size": 1}
        assert read(r3, del_at_r3) == {"fields": {"keep": "yes"}, "size": 1}
    reads, _ = converge(cluster.servers, [del_at_r1, del_at_r3])
    assert reads[del_at_r1] == {"fields": {"f": "new-at-r3", "keep": "yes"}, "size": 2}
    assert reads[del_at_r3] == {"fields": {"f": "new-at-r1", "keep": "yes"}, "size": 2}


# -- sorted sets -----------------------------------------------------------------------------------


def test_zincrby_at_both_sides_sums(cluster: ProxiedCluster) -> None:
    r1, r2, r3 = cluster.servers
    key: Key = ("zsets", "z-incr")
    with db(r1) as a:
        a.zsets.add("z-incr", {"m": 1.5, "other": 0.0})
    setup_everywhere(cluster, [key])
    with r3_cut_off(cluster), db(r1) as a, db(r2) as b, db(r3) as z:
        assert a.zsets.incr("z-incr", 2.25, "m") == 3.75
        assert z.zsets.incr("z-incr", 0.5, "m") == 2.0
        wait_for(r2, key, {"items": [["other", 0.0], ["m", 3.75]], "size": 2})
        assert b.zsets.incr("z-incr", 10.0, "m") == 13.75
    reads, _ = converge(cluster.servers, [key])
    assert reads[key] == {"items": [["other", 0.0], ["m", 14.25]], "size": 2}


def test_zadd_at_both_sides_has_one_lww_score_everywhere(cluster: ProxiedCluster) -> None:
    r1, _, r3 = cluster.servers
    later_at_r3: Key = ("zsets", "z-lww-1")
    later_at_r1: Key = ("zsets", "z-lww-2")
    with db(r1) as a:
        a.zsets.add("z-lww-1", {"m": 1.0})
        a.zsets.add("z-lww-2", {"m": 1.0})
    setup_everywhere(cluster, [later_at_r3, later_at_r1])
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            a.zsets.add("z-lww-1", {"m": 5.0})
            z.zsets.add("z-lww-2", {"m": 7.0})
            after_a_pause()
            z.zsets.add("z-lww-1", {"m": 2.0})
            a.zsets.add("z-lww-2", {"m": 3.0})
        assert read(r1, later_at_r3) == {"items": [["m", 5.0]], "size": 1}
        assert read(r3, later_at_r3) == {"items": [["m", 2.0]], "size": 1}
    reads, _ = converge(cluster.servers, [later_at_r3, later_at_r1])
    assert reads[later_at_r3] == {"items": [["m", 2.0]], "size": 1}
    assert reads[later_at_r1] == {"items": [["m", 3.0]], "size": 1}


def test_zrem_racing_zincrby_keeps_only_the_unobserved_increment(
    cluster: ProxiedCluster,
) -> None:
    # Redis Active-Active's example: 4.1, ZREM at one side, +2.0 at the other: 2.0.
    r1, _, r3 = cluster.servers
    rem_at_r1: Key = ("zsets", "z-rem-1")
    rem_at_r3: Key = ("zsets", "z-rem-2")
    with db(r1) as a:
        for name in ("z-rem-1", "z-rem-2"):
            a.zsets.add(name, {"m": 4.1, "stay": 0.5})
    setup_everywhere(cluster, [rem_at_r1, rem_at_r3])
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            # The increments first: a ZREM that saw one (a leaky cut) would remove it.
            assert z.zsets.incr("z-rem-1", 2.0, "m") == pytest.approx(6.1)
            assert a.zsets.incr("z-rem-2", 2.0, "m") == pytest.approx(6.1)
            assert a.zsets.remove("z-rem-1", "m") == 1
            assert z.zsets.remove("z-rem-2", "m") == 1
        assert read(r1, rem_at_r1) == {"items": [["stay", 0.5]], "size": 1}
        assert read(r3, rem_at_r3) == {"items": [["stay", 0.5]], "size": 1}
    reads, _ = converge(cluster.servers, [rem_at_r1, rem_at_r3])
    assert reads[rem_at_r1] == {"items": [["stay", 0.5], ["m", 2.0]], "size": 2}
    assert reads[rem_at_r3] == {"items": [["stay", 0.5], ["m", 2.0]], "size": 2}


# -- strings ---------------------------------------------------------------------------------------


def test_string_put_then_incr_reads_six_and_increments_sum_across_the_partition(
    cluster: ProxiedCluster,
) -> None:
    r1, _, r3 = cluster.servers
    with db(r1) as a:
        a.registers.set("s-local", 5)
        assert a.counters.incr("s-local", 1) == 6
        assert a.registers.get("s-local") == 6
        a.registers.set("s-across", 5)
        a.registers.set("s-race", 5)
    setup_everywhere(cluster, [("registers", "s-across"), ("registers", "s-race")])
    with db(r3) as z:
        assert z.counters.incr("s-across", 1) == 6  # on the base PUT at r1
    keys: list[Key] = [
        ("registers", "s-local"),
        ("counters", "s-local"),
        ("registers", "s-across"),
        ("counters", "s-across"),
    ]
    reads, _ = converge(cluster.servers, keys)
    for k in keys:
        assert reads[k] == {"value": 6}, k

    # Cut off: increments at both sides sum; a PUT at one side racing an
    # increment at the other keeps the increment on top of the new base.
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            assert a.counters.incr("s-across", 2) == 8
            assert z.counters.incr("s-across", 3) == 9
            # The increment first: a PUT that saw it (a leaky cut) would reset it.
            assert z.counters.incr("s-race", 1) == 6
            a.registers.set("s-race", 10)
        assert read(r3, ("registers", "s-race")) == {"value": 6}
        assert read(r1, ("registers", "s-race")) == {"value": 10}
    keys = [
        ("registers", "s-across"),
        ("counters", "s-across"),
        ("registers", "s-race"),
        ("counters", "s-race"),
    ]
    reads, _ = converge(cluster.servers, keys)
    assert reads[("registers", "s-across")] == reads[("counters", "s-across")] == {"value": 11}
    assert reads[("registers", "s-race")] == reads[("counters", "s-race")] == {"value": 11}


# -- a type conflict -------------------------------------------------------------------------------


def test_a_hash_and_a_zset_under_one_name_show_the_later_type_and_del_clears_both(
    cluster: ProxiedCluster,
) -> None:
    r1, r2, r3 = cluster.servers
    conflict = "metric crdtkv_type_conflict_keys"
    for s in cluster.servers:
        assert metric(s, "crdtkv_type_conflict_keys") == 0.0, (s.replica_id, conflict)
    with r3_cut_off(cluster):
        with db(r1) as a, db(r3) as z:
            a.hashes.set("t-zset-later", {"f": "hash at r1"})
            z.zsets.add("t-hash-later", {"m": 1.0})
            after_a_pause()
            z.zsets.add("t-zset-later", {"m": 2.5})
            a.hashes.set("t-hash-later", {"f": "hash at r1"})
        # Each side refuses the other type locally once it has the key.
        wait_for(r2, ("keys", "t-zset-later"), {"type": "hash", "ttl_ms": -1})
        with db(r2) as b:
            assert status_and_error(r2, "/v1/zsets/t-zset-later") == (409, "wrong_type")
            with pytest.raises(WrongType):
                b.zsets.add("t-zset-later", {"m": 1.0})
            assert b.keys.type("t-zset-later") == "hash"
        assert key_type(r3, "t-zset-later") == "zset"
        for s in cluster.servers:
            assert metric(s, "crdtkv_type_conflict_keys") == 0.0, (s.replica_id, conflict)

    keys: list[Key] = [("keys", "t-zset-later"), ("keys", "t-hash-later")]
    reads, _ = converge(cluster.servers, keys)
    assert reads[("keys", "t-zset-later")] == {"type": "zset", "ttl_ms": -1}
    assert reads[("keys", "t-hash-later")] == {"type": "hash", "ttl_ms": -1}
    for s in cluster.servers:
        assert key_type(s, "t-zset-later") == "zset"
        assert key_type(s, "t-hash-later") == "hash"
        assert read(s, ("zsets", "t-zset-later")) == {"items": [["m", 2.5]], "size": 1}
        assert read(s, ("hashes", "t-hash-later")) == {"fields": {"f": "hash at r1"}, "size": 1}
        # The hidden type is kept, not readable.
        assert status_and_error(s, "/v1/hashes/t-zset-later") == (409, "wrong_type")
        assert status_and_error(s, "/v1/zsets/t-hash-later") == (409, "wrong_type")
        # Two names hold a hash and a zset each (one per direction of the race).
        assert metric(s, "crdtkv_type_conflict_keys") == 2.0, (s.replica_id, conflict)

    # A DEL removes every type it has seen: both are gone everywhere.
    with db(r1) as a:
        assert a.keys.delete("t-zset-later") is True
    with db(r3) as z:
        assert z.keys.delete("t-hash-later") is True
    keys += [(ns, k) for ns in ("hashes", "zsets") for k in ("t-zset-later", "t-hash-later")]
    reads, _ = converge(cluster.servers, keys)
    assert all(v is None for v in reads.values()), reads
    for s in cluster.servers:
        assert key_type(s, "t-zset-later") == key_type(s, "t-hash-later") == "none"
        assert metric(s, "crdtkv_type_conflict_keys") == 0.0, (s.replica_id, conflict)


# -- kill -9 after the merge -----------------------------------------------------------------------


def test_a_replica_killed_after_the_merge_restarts_with_the_merged_results(
    cluster: ProxiedCluster,
) -> None:
    r1, r2, r3 = cluster.servers
    with db(r1) as a:
        a.hashes.set("k9-h", {"n": 1, "x": "old"})
        a.zsets.add("k9-z", {"m": 4.1})
    setup_everywhere(cluster, [("hashes", "k9-h"), ("zsets", "k9-z")])
    with r3_cut_off(cluster), db(r1) as a, db(r3) as z:
        a.hashes.incr("k9-h", "n", 2)
        a.hashes.remove("k9-h", "x")
        a.zsets.remove("k9-z", "m")
        a.hashes.set("k9-t", {"f": "hash"})
        z.hashes.incr("k9-h", "n", 3)
        z.hashes.set("k9-h", {"x": "new", "y": "r3"})
        z.zsets.incr("k9-z", 2.0, "m")
        after_a_pause()
        z.zsets.add("k9-t", {"m": 1.0})
    keys: list[Key] = [("hashes", "k9-h"), ("zsets", "k9-z"), ("keys", "k9-t")]
    merged, _ = converge(cluster.servers, keys)
    expected = {
        ("hashes", "k9-h"): {"fields": {"n": 6, "x": "new", "y": "r3"}, "size": 3},
        ("zsets", "k9-z"): {"items": [["m", 2.0]], "size": 1},
        ("keys", "k9-t"): {"type": "zset", "ttl_ms": -1},
    }
    assert merged == expected

    # r1 (at the majority side) and then r3 (the side that was cut off) are
    # killed with kill -9 and come back cut off: what each answers before
    # the links heal is what it had on disk.
    for victim in (r1, r3):
        victim.kill9()
        cluster.cut_off(victim.replica_id)
        try:
            victim.start()
            assert {k: read(victim, k) for k in keys} == expected, victim.replica_id
            assert key_type(victim, "k9-t") == "zset"
            assert metric(victim, "crdtkv_type_conflict_keys") == 1.0
        finally:
            cluster.heal()
        assert converge(cluster.servers, keys)[0] == expected

    with db(r2) as b:
        assert b.keys.delete("k9-t") is True
    reads, _ = converge(cluster.servers, [("keys", "k9-t")])
    assert reads[("keys", "k9-t")] is None
    for s in cluster.servers:
        assert metric(s, "crdtkv_type_conflict_keys") == 0.0

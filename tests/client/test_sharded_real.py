"""The Python clients on a sharded cluster of real processes (issue 18).

Two shards x two regions (``ClusterMap.even``), four ``crdtkv serve --cluster-map``
processes.  The clients learn the map on their first call and send each key to
its slot's owner in their region, so no 421 is ever answered to them; a client
holding a stale map (the processes restarted with a newer one) follows the 421s;
a batch over both shards comes back in order; the session keeps one token per
shard, so a client that moves to the other region's replicas still reads its
writes; two processes that each say the other owns a slot end a call with a
clear error, not a hang.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, BadRequest, Client, ClusterUnavailable, SessionUnavailable
from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from tests.procs import Server, free_ports, server_group, start_all

SECRET = "sharded-client-secret"
REGIONS = ("a", "b")
SHARDS = ("s0", "s1")


def _map(ports: dict[str, int], regions: tuple[str, ...] = REGIONS) -> ClusterMap:
    return ClusterMap.even(
        Shard(
            s,
            tuple(
                NodeAddr(f"{s}-{r}", r, f"http://127.0.0.1:{ports[f'{s}-{r}']}") for r in regions
            ),
        )
        for s in SHARDS
    )


def _local(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _write_map(path: Path, m: ClusterMap) -> Path:
    path.write_text(json.dumps(m.to_json()))
    return path


def _servers(root: Path, m: ClusterMap, map_file: Path) -> dict[str, Server]:
    return {
        n.id: Server(
            n.id,
            root / n.id,
            port=int(n.http.rsplit(":", 1)[1]),
            secret=SECRET,
            extra=["--cluster-map", str(map_file)],
        )
        for n in m.nodes()
    }


def keys_of(m: ClusterMap, shard: str, n: int, prefix: str = "k") -> list[str]:
    """``n`` keys whose slots shard ``shard`` owns in map ``m``."""
    out = [f"{prefix}{i}" for i in range(20_000) if m.owner(key_slot(f"{prefix}{i}")).id == shard]
    return out[:n]


def redirects_answered(server: Server) -> int:
    """How many 421s the process has answered (its request counter, by status)."""
    status, text = server.get("/metrics")
    assert status == 200
    body = text.decode() if isinstance(text, bytes) else str(text)
    total = 0.0
    for line in body.splitlines():
        if line.startswith("crdtkv_http_requests_total{") and 'status="421"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


Cluster = tuple[ClusterMap, dict[str, Server]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("sharded")
    ids = [f"{s}-{r}" for s in SHARDS for r in REGIONS]
    ports = dict(zip(ids, free_ports(len(ids)), strict=True))
    m = _map(ports)
    map_file = _write_map(root / "map.json", m)
    with server_group() as g:
        servers = {i: g.add(s) for i, s in _servers(root, m, map_file).items()}
        start_all(list(servers.values()))
        yield m, servers


def _all_421(servers: dict[str, Server]) -> int:
    return sum(redirects_answered(s) for s in servers.values())


# -- routing -------------------------------------------------------------------------------------


def test_the_sync_client_routes_every_key_to_its_owner(cluster: Cluster) -> None:
    m, servers = cluster
    before = _all_421(servers)
    k0, k1 = keys_of(m, "s0", 20, "sync"), keys_of(m, "s1", 20, "sync")
    with Client([servers["s0-a"].url]) as db:
        for k in k0 + k1:
            db.registers.set(k, {"k": k})
            db.counters.incr(f"c{{{k}}}", 2)  # a hash tag: the counter shares k's slot
        for k in k0 + k1:
            assert db.registers.get(k) == {"k": k}
            assert db.counters.get(f"c{{{k}}}") == 2
        assert db.cluster_map == m and db.region == "a"
        assert set(db.session_tokens) == {"s0", "s1"}
    # Each key is at its owner and nowhere else in the region: the other shard's
    # replica answers 421 for it (and the client never met one).
    for k, owner, other in [(k0[0], "s0-a", "s1-a"), (k1[0], "s1-a", "s0-a")]:
        assert servers[owner].get(f"/v1/registers/{k}")[1] == {"value": {"k": k}}
        assert servers[other].get(f"/v1/registers/{k}")[0] == 421
    assert _all_421(servers) - before == 2  # the two direct GETs above, nothing else


def test_the_async_client_routes_every_key_to_its_owner(cluster: Cluster) -> None:
    m, servers = cluster
    before = _all_421(servers)
    keys = keys_of(m, "s0", 15, "async") + keys_of(m, "s1", 15, "async")

    async def go() -> None:
        async with AsyncClient([servers["s1-a"].url]) as db:
            await asyncio.gather(*(db.sets.add(k, "m1", "m2") for k in keys))
            members = await asyncio.gather(*(db.sets.members(k) for k in keys))
            assert members == [["m1", "m2"]] * len(keys)
            assert db.region == "a" and set(db.session_tokens) == {"s0", "s1"}

    asyncio.run(go())
    assert _all_421(servers) == before


def test_an_explicit_region_sends_calls_to_that_regions_replicas(cluster: Cluster) -> None:
    m, servers = cluster
    k1 = keys_of(m, "s1", 1, "reg")[0]
    with Client([servers["s0-a"].url], region="b", wait_ms=5000) as db:
        db.registers.set(k1, "in b")
        assert db.url == servers["s1-b"].url
        assert db.registers.get(k1) == "in b"
    with Client([servers["s0-a"].url], region="nowhere") as db, pytest.raises(BadRequest) as e:
        db.registers.get(k1)
    assert "region 'nowhere' is not in the cluster map" in str(e.value)


# -- batches -------------------------------------------------------------------------------------


def _batch_ops(m: ClusterMap, prefix: str) -> list[dict[str, object]]:
    """Ops over both shards, interleaved; some read what an earlier op wrote."""
    (a0, b0), (a1, b1) = keys_of(m, "s0", 2, prefix), keys_of(m, "s1", 2, prefix)
    return [
        {"op": "registers.set", "key": a0, "value": "A0"},
        {"op": "counters.incr", "key": a1, "delta": 5},
        {"op": "registers.get", "key": a0},
        {"op": "registers.set", "key": b1, "value": "B1"},
        {"op": "no.such.op", "key": b0},
        {"op": "counters.incr", "key": a1, "delta": 1},
        {"op": "registers.get", "key": b1},
        {"op": "registers.get", "key": b0},
        {"op": "sets.add", "key": b0, "members": ["x"]},
        {"op": "sets.get", "key": b0},
    ]


EXPECTED: list[object] = [
    {"ok": True},
    {"value": 5},
    {"value": "A0"},  # its shard ran the set before it
    {"ok": True},
    "bad_request",
    {"value": 6},
    {"value": "B1"},
    "not_found",
    {"added": 1},
    {"members": ["x"], "size": 1},
]


def _check_batch(results: list[object]) -> None:
    assert len(results) == len(EXPECTED)
    for got, want in zip(results, EXPECTED, strict=True):
        if isinstance(want, str):
            assert isinstance(got, dict) and got["error"]["code"] == want, got
        else:
            assert got == want


def test_a_batch_over_both_shards_comes_back_in_order(cluster: Cluster) -> None:
    m, servers = cluster
    before = _all_421(servers)
    with Client([servers["s0-a"].url]) as db:
        _check_batch(db.batch(_batch_ops(m, "batch")))
    assert _all_421(servers) == before  # split by owner up front, not redirected


def test_the_async_batch_sends_each_shard_its_part_concurrently(cluster: Cluster) -> None:
    m, servers = cluster
    ops = _batch_ops(m, "abatch")

    async def go() -> list[object]:
        async with AsyncClient([servers["s1-a"].url]) as db:
            return await db.batch(ops)  # type: ignore[no-any-return]

    _check_batch(asyncio.run(go()))


# -- sessions across regions -------------------------------------------------------------------


def test_per_shard_tokens_give_read_your_writes_after_a_move_to_the_other_region(
    tmp_path: Path,
) -> None:
    ids = [f"{s}-{r}" for s in SHARDS for r in REGIONS]
    ports = dict(zip(ids, free_ports(len(ids)), strict=True))
    m = _map(ports)
    with server_group() as g:
        servers = {
            i: g.add(s) for i, s in _servers(tmp_path, m, _write_map(tmp_path / "m", m)).items()
        }
        a = [servers["s0-a"], servers["s1-a"]]
        b = [servers["s0-b"], servers["s1-b"]]
        start_all(a)  # region b is down: nothing written in a can reach it yet
        k0, k1 = keys_of(m, "s0", 1, "ryw")[0], keys_of(m, "s1", 1, "ryw")[0]
        db = Client([a[0].url], wait_ms=300, attempts=1)
        try:
            db.registers.set(k0, "zero")
            db.sets.add(k1, "one")
            assert set(db.session_tokens) == {"s0", "s1"}
            for s in a:
                s.stop()
            start_all(b)
            db.region = "b"  # the client moves to region b's replicas
            # b lacks the writes and a is down: refused, never a stale answer.
            with pytest.raises(SessionUnavailable):
                db.registers.get(k0)
            with pytest.raises(SessionUnavailable):
                db.sets.members(k1)
            # Without the session, b answers what it has: the test can tell.
            with Client([b[0].url]) as fresh:
                assert fresh.registers.get(k0, default=None) is None
                assert fresh.sets.members(k1) == []
            start_all(a)  # replication a -> b resumes
            db.wait_ms = 10_000
            # The refusals moved the client on to a's replicas (failover sticks);
            # setting the region again sends it back to b's.
            db.region = "b"
            assert db.registers.get(k0) == "zero"
            assert db.url == servers["s0-b"].url  # served in b, once b had the write
            assert db.sets.members(k1) == ["one"]
            assert db.url == servers["s1-b"].url
            token = db.session_token
            assert token is not None and re.fullmatch(r"s0=[^,=]+,s1=[^,=]+", token)
        finally:
            db.close()
        # The session, as one string, resumes in another client (asyncio, region b).

        async def resumed() -> tuple[object, object]:
            async with AsyncClient([b[1].url], session_token=token, wait_ms=10_000) as c:
                return await c.registers.get(k0), await c.sets.members(k1)

        assert asyncio.run(resumed()) == ("zero", ["one"])


# -- a stale map, and a redirect loop (one region, two processes) --------------------------------


def _pair(root: Path, maps: dict[str, ClusterMap]) -> dict[str, Server]:
    """s0-a and s1-a, each started with its own map file."""
    out = {}
    for nid, m in maps.items():
        f = _write_map(root / f"{nid}.map.json", m)
        node = m.node(nid)
        out[nid] = Server(
            nid,
            root / nid,
            port=int(node.http.rsplit(":", 1)[1]),
            secret=SECRET,
            extra=["--cluster-map", str(f)],
        )
    return out


def _one_region_map(root: Path) -> ClusterMap:
    ports = dict(zip(["s0-a", "s1-a"], free_ports(2), strict=True))
    return _map(ports, ("a",))


def test_clients_with_a_stale_map_follow_the_redirects(tmp_path: Path) -> None:
    m1 = _one_region_map(tmp_path)
    # Epoch 2: 300 of s0's slots now belong to s1 (the processes restart with it).
    moved_slots = set(m1.slots_of("s0")[:300])
    m2 = m1.with_owner(moved_slots, "s1")
    moved = [k for k in (f"st{i}" for i in range(50_000)) if key_slot(k) in moved_slots][:9]
    (stay0, c0), (stay1, c1) = keys_of(m2, "s0", 2, "st"), keys_of(m2, "s1", 2, "st")
    assert len(moved) == 9
    with server_group() as g:
        servers = {i: g.add(s) for i, s in _pair(tmp_path, {"s0-a": m1, "s1-a": m1}).items()}
        start_all(list(servers.values()))
        sync_db = Client([servers["s0-a"].url])
        batch_db = Client([servers["s1-a"].url])
        async_db = AsyncClient([servers["s1-a"].url])
        try:
            # Each client learns the map of epoch 1.
            sync_db.registers.set(stay0, "before")
            assert batch_db.counters.get(c0) == 0
            asyncio.run(async_db.registers.set(stay1, "before"))
            asyncio.run(async_db.close())  # its connections belong to that event loop
            assert sync_db.cluster_map == m1 == batch_db.cluster_map == async_db.cluster_map

            for s in servers.values():
                s.stop()
            for nid, s in _pair(tmp_path, {"s0-a": m2, "s1-a": m2}).items():
                servers[nid].extra = s.extra
            start_all(list(servers.values()))

            # Blocking: sent to s0-a by the old map, 421, the map read again, s1-a.
            for k in moved[:3]:
                sync_db.registers.set(k, k.upper())
            assert sync_db.cluster_map == m2
            assert [sync_db.registers.get(k) for k in moved[:3]] == [k.upper() for k in moved[:3]]
            assert sync_db.registers.get(stay0) == "before"

            # Asyncio, concurrently.
            async def go() -> list[object]:
                await asyncio.gather(*(async_db.registers.set(k, k.upper()) for k in moved[3:6]))
                got = await asyncio.gather(*(async_db.registers.get(k) for k in moved[3:6]))
                await async_db.close()
                return list(got)

            assert asyncio.run(go()) == [k.upper() for k in moved[3:6]]
            assert async_db.cluster_map == m2

            # A batch: the ops on moved keys come back "moved" and are sent again to
            # s1-a, in their order; the others are answered where they were sent.
            results = batch_db.batch(
                [
                    {"op": "counters.incr", "key": moved[6], "delta": 1},
                    {"op": "counters.incr", "key": c0, "delta": 2},
                    {"op": "counters.incr", "key": moved[7], "delta": 3},
                    {"op": "counters.incr", "key": c1, "delta": 4},
                    {"op": "counters.incr", "key": moved[6], "delta": 10},
                    {"op": "counters.get", "key": moved[6]},
                ]
            )
            assert results == [
                {"value": 1},
                {"value": 2},
                {"value": 3},
                {"value": 4},
                {"value": 11},
                {"value": 11},
            ]
            assert batch_db.cluster_map == m2
        finally:
            sync_db.close()
            batch_db.close()
        # The writes are at the new owner, as the map of epoch 2 says; every client
        # was redirected by s0-a (the old owner), none by s1-a.
        for k in moved[:6]:
            assert servers["s1-a"].get(f"/v1/registers/{k}")[1] == {"value": k.upper()}
            assert servers["s0-a"].get(f"/v1/registers/{k}")[0] == 421
        assert servers["s1-a"].get(f"/v1/counters/{moved[6]}")[1] == {"value": 11}
        assert redirects_answered(servers["s0-a"]) >= 3
        assert redirects_answered(servers["s1-a"]) == 0


def test_a_redirect_loop_ends_with_a_clear_error(tmp_path: Path) -> None:
    m = _one_region_map(tmp_path)
    slot = m.slots_of("s1")[0]
    # s0-a thinks s1 owns the slot (as m says); s1-a runs a map where s0 owns it, of
    # the same epoch: each refuses the other's (a conflict), so the loop stays.
    moved = m.with_owner([slot], "s0")
    other = ClusterMap(m.epoch, moved.shards, moved.owners)
    key = next(k for k in (f"loop{i}" for i in range(100_000)) if key_slot(k) == slot)
    with server_group() as g:
        servers = {i: g.add(s) for i, s in _pair(tmp_path, {"s0-a": m, "s1-a": other}).items()}
        start_all(list(servers.values()))
        with Client([servers["s0-a"].url]) as db:
            with pytest.raises(ClusterUnavailable) as e:
                db.registers.set(key, "v")
            assert "gave up after 5 redirects" in str(e.value)
            assert f"slot {slot}" in str(e.value)
            (result,) = db.batch([{"op": "registers.get", "key": key}])
            assert result["error"]["code"] == "unavailable"
            assert "gave up after 5 redirects" in result["error"]["message"]

        async def go() -> None:
            async with AsyncClient([servers["s1-a"].url]) as adb:
                with pytest.raises(ClusterUnavailable, match="gave up after 5 redirects"):
                    await adb.counters.incr(key, 1)

        asyncio.run(go())
        # Nothing was written anywhere.
        for s in servers.values():
            assert s.status()["keys"] == 0

"""Redis Cluster redirects over RESP, in process: two shards of one region, each a Node
with its RESP server; the exact MOVED / ASK / CROSSSLOT replies, ASKING's one-command
flag, MULTI/EXEC's slot rule, and an unsharded replica's CLUSTER answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import hiredis
import pytest

from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from crdtkv.cluster.state import ClusterState
from crdtkv.errors import Ask, CrossSlot, Moved
from crdtkv.node.aio import Node
from crdtkv.replica import Replica
from crdtkv.resp.commands import error_reply
from crdtkv.resp.server import RespServer
from crdtkv.storage.memory import MemoryStorage
from tests.procs import free_ports


@dataclass
class Shards:
    map: ClusterMap
    nodes: list[Node]
    servers: list[RespServer]
    ports: list[int]
    moving: int  # a slot s0 owns that is moving to s1


def _key(m: ClusterMap, shard: str, prefix: str = "k", *, not_slot: int | None = None) -> str:
    return next(
        f"{prefix}{i}"
        for i in range(100_000)
        if m.owner(key_slot(f"{prefix}{i}")).id == shard and key_slot(f"{prefix}{i}") != not_slot
    )


def _key_in_slot(slot: int, prefix: str = "m") -> str:
    return next(f"{prefix}{i}" for i in range(1_000_000) if key_slot(f"{prefix}{i}") == slot)


@pytest.fixture
async def shards() -> AsyncIterator[Shards]:
    ports = free_ports(2)
    base = ClusterMap.even(
        Shard(f"s{i}", (NodeAddr(f"s{i}-a", "a", f"http://127.0.0.1:{1 + i}", f"127.0.0.1:{p}"),))
        for i, p in enumerate(ports)
    )
    moving = 100
    m = base.with_moving([moving], "s1")
    nodes, servers = [], []
    for i, p in enumerate(ports):
        node = Node(Replica(f"s{i}-a", "i1"), MemoryStorage(), durability="wal")
        node.cluster = node.core.cluster = ClusterState(m, f"s{i}-a")
        node.start()
        server = RespServer(node, replica_id=f"s{i}-a", durability="wal")
        await server.start("127.0.0.1", p)
        nodes.append(node)
        servers.append(server)
    yield Shards(m, nodes, servers, ports, moving)
    for server, node in zip(servers, nodes, strict=True):
        await server.stop()
        await node.close()


async def call(port: int, *commands: list[str]) -> list[Any]:
    """Send ``commands`` pipelined on one connection; their replies (errors as
    ``hiredis.ReplyError``, whose text is the error line)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = b""
    for argv in commands:
        out += b"*%d\r\n" % len(argv)
        for a in argv:
            b = a.encode()
            out += b"$%d\r\n%s\r\n" % (len(b), b)
    writer.write(out)
    parser = hiredis.Reader()
    replies: list[Any] = []
    while len(replies) < len(commands):
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data, f"connection closed after {replies}"
        parser.feed(data)
        while (r := parser.gets()) is not False:
            replies.append(r)
    writer.close()
    return replies


def err(r: Any) -> str:
    assert isinstance(r, hiredis.ReplyError), r
    return str(r)


async def test_moved_names_the_owner_before_anything_runs(shards: Shards) -> None:
    m, (p0, p1) = shards.map, shards.ports
    k1 = _key(m, "s1")
    slot = key_slot(k1)
    # GET is a direct read (no op): the check comes before it, too.
    for argv in (["GET", k1], ["SET", k1, "v"], ["INCR", k1], ["HSET", k1, "f", "v"]):
        (r,) = await call(p0, argv)
        assert err(r) == f"MOVED {slot} 127.0.0.1:{p1}", argv
    (r,) = await call(p1, ["SET", k1, "v"])
    assert r == b"OK"
    assert await call(p1, ["GET", k1]) == [b"v"]
    # The refused SET wrote nothing at s0.
    assert shards.nodes[0].live_keys() == 0
    # A lower-case command name and a blocking command are redirected too.
    (r,) = await call(p0, ["blpop", k1, "0"])
    assert err(r) == f"MOVED {slot} 127.0.0.1:{p1}"


async def test_crossslot_for_keys_over_slots(shards: Shards) -> None:
    m, (p0, p1) = shards.map, shards.ports
    a = _key(m, "s0", "a")
    b = _key(m, "s0", "b", not_slot=key_slot(a))
    c = _key(m, "s1", "c")
    cross = "CROSSSLOT Keys in request don't hash to the same slot"
    for argv in (
        ["MGET", a, b],
        ["MSET", a, "1", b, "2"],
        ["DEL", a, b],
        ["EXISTS", a, c],  # one key elsewhere: CROSSSLOT comes first, as in Redis
        ["RENAME", a, b],
        ["SUNIONSTORE", a, b],
        ["BLPOP", a, b, "0"],
        ["PFCOUNT", a, b],
    ):
        (r,) = await call(p0, argv)
        assert err(r) == cross, argv
    # Keys sharing a hash tag share a slot: served where it lives, MOVED elsewhere.
    tag = "{" + _key(m, "s1", "t") + "}"
    assert await call(p1, ["MSET", f"{tag}x", "1", f"{tag}y", "2"]) == [b"OK"]
    assert await call(p1, ["MGET", f"{tag}x", f"{tag}y"]) == [[b"1", b"2"]]
    (r,) = await call(p0, ["MGET", f"{tag}x", f"{tag}y"])
    assert err(r) == f"MOVED {key_slot(tag)} 127.0.0.1:{p1}"
    # BLPOP's last argument is its timeout, not a key.
    (r,) = await call(p1, ["BLPOP", f"{tag}x", f"{tag}q", "0.01"])
    assert isinstance(r, hiredis.ReplyError) and "WRONGTYPE" in str(r)


async def test_other_refusals_come_before_the_redirect(shards: Shards) -> None:
    m, (p0, _) = shards.map, shards.ports
    k1 = _key(m, "s1")
    (r,) = await call(p0, ["GET", k1, "extra"])
    assert err(r) == "ERR wrong number of arguments for 'get' command"
    (r,) = await call(p0, ["NOSUCH", k1])
    assert err(r).startswith("ERR unknown command 'NOSUCH'")
    # Commands without keys run anywhere.
    assert await call(p0, ["PING"], ["DBSIZE"], ["SCAN", "0"]) == [b"PONG", 0, [b"0", []]]


async def test_transactions_stay_in_one_slot(shards: Shards) -> None:
    m, (p0, _) = shards.map, shards.ports
    a = _key(m, "s0", "a")
    b = _key(m, "s0", "b", not_slot=key_slot(a))
    k1 = _key(m, "s1")
    r = await call(p0, ["MULTI"], ["SET", a, "1"], ["SET", k1, "1"], ["EXEC"])
    assert r[:2] == [b"OK", b"QUEUED"]
    assert err(r[2]).startswith(f"MOVED {key_slot(k1)} ")
    assert err(r[3]) == "EXECABORT Transaction discarded because of previous errors."
    # Each command alone is served here, but together they span two slots.
    r = await call(p0, ["MULTI"], ["SET", a, "1"], ["SET", b, "2"], ["EXEC"], ["EXISTS", a])
    assert r[:3] == [b"OK", b"QUEUED", b"QUEUED"]
    assert err(r[3]) == "CROSSSLOT Keys in request don't hash to the same slot"
    assert r[4] == 0  # the transaction was discarded
    r = await call(p0, ["MULTI"], ["SET", a, "1"], ["GET", a], ["EXEC"])
    assert r[3] == [b"OK", b"1"]


async def test_asking_serves_one_command_of_a_slot_moving_here(shards: Shards) -> None:
    p0, p1 = shards.ports
    slot = shards.moving
    k = _key_in_slot(slot)
    moved = f"MOVED {slot} 127.0.0.1:{p0}"
    r = await call(
        p1,
        ["SET", k, "v"],
        ["ASKING"],
        ["SET", k, "v"],
        ["GET", k],  # the flag lasted one command
        ["ASKING"],
        ["GET", k],
        ["ASKING"],
        ["MULTI"],  # ... or up to EXEC, inside a transaction
        ["APPEND", k, "w"],
        ["GET", k],
        ["EXEC"],
        ["GET", k],
    )
    assert err(r[0]) == moved
    assert r[1:3] == [b"OK", b"OK"]
    assert err(r[3]) == moved
    assert r[4:6] == [b"OK", b"v"]
    assert r[6:10] == [b"OK", b"OK", b"QUEUED", b"QUEUED"]
    assert r[10] == [2, b"vw"]
    assert err(r[11]) == moved
    # The source still serves the slot (it has not handed it over) ...
    assert await call(p0, ["GET", k]) == [None]
    # ... until it has: then it answers ASK with the target.
    shards.nodes[0].cluster.handed_over.add(slot)  # type: ignore[union-attr]
    (r,) = await call(p0, ["GET", k])
    assert err(r) == f"ASK {slot} 127.0.0.1:{p1}"
    # ASKING at the source does not make it serve a slot it handed over.
    r = await call(p0, ["ASKING"], ["GET", k])
    assert err(r[1]) == f"ASK {slot} 127.0.0.1:{p1}"
    # While its last copy is in flight, the source holds the slot: TRYAGAIN, and the
    # connection goes on serving.
    cluster = shards.nodes[0].cluster
    assert cluster is not None
    cluster.handed_over.discard(slot)
    cluster.holding.add(slot)
    r = await call(p0, ["GET", k], ["SET", k, "x"], ["PING"])
    assert err(r[0]).startswith("TRYAGAIN ") and err(r[1]).startswith("TRYAGAIN ")
    assert r[2] == b"PONG"
    cluster.holding.discard(slot)


async def test_cluster_commands_sharded(shards: Shards) -> None:
    m, (p0, p1) = shards.map, shards.ports
    k = _key(m, "s0")
    await call(p0, ["SET", k, "1"])
    r = await call(
        p0,
        ["CLUSTER", "KEYSLOT", k],
        ["CLUSTER", "COUNTKEYSINSLOT", str(key_slot(k))],
        ["CLUSTER", "GETKEYSINSLOT", str(key_slot(k)), "10"],
        ["CLUSTER", "MYID"],
        ["READONLY"],
        ["READWRITE"],
        ["CLUSTER", "NODES"],
        ["CLUSTER", "SETSLOT", "1", "STABLE"],
    )
    assert r[0] == key_slot(k)
    assert r[1] == 1 and r[2] == [k.encode()]
    me = m.node("s0-a").cluster_id
    assert r[3] == me.encode()
    assert r[4:6] == [b"OK", b"OK"]
    lines = r[6].decode().splitlines()
    assert len(lines) == 2
    mine = [ln for ln in lines if "myself" in ln]
    assert len(mine) == 1 and mine[0].startswith(f"{me} 127.0.0.1:{p0}@0 myself,master - ")
    # The moving slot: shown on its source's own line as migrating to the target.
    target = m.node("s1-a").cluster_id
    assert mine[0].endswith(f" [{shards.moving}->-{target}]")
    (theirs,) = await call(p1, ["CLUSTER", "NODES"])
    own = next(ln for ln in theirs.decode().splitlines() if "myself" in ln)
    assert own.endswith(f" [{shards.moving}-<-{me}]")
    assert "not supported" in err(r[7])


def test_errors_from_the_node_get_redis_texts() -> None:
    moved = Moved("x", slot=7, url="http://h:1", resp="h:6379")
    assert error_reply(moved).text == "MOVED 7 h:6379"
    assert error_reply(Ask("x", slot=8, url="http://h:1", resp="h:6380")).text == "ASK 8 h:6380"
    assert error_reply(CrossSlot("x")).text == (
        "CROSSSLOT Keys in request don't hash to the same slot"
    )
    no_resp = error_reply(Moved("slot 7 is served by s1-a", slot=7, url="http://h:1", resp=""))
    assert no_resp.text.startswith("ERR MOVED 7: ") and "no RESP port" in no_resp.text


@pytest.fixture
async def unsharded() -> AsyncIterator[int]:
    (port,) = free_ports(1)
    node = Node(Replica("r1", "i1"), MemoryStorage(), durability="wal")
    node.start()
    server = RespServer(node, replica_id="r1", durability="wal")
    await server.start("127.0.0.1", port)
    yield port
    await server.stop()
    await node.close()


async def test_unsharded_answers_as_redis_without_cluster_support(unsharded: int) -> None:
    disabled = "ERR This instance has cluster support disabled"
    r = await call(
        unsharded,
        ["CLUSTER", "INFO"],
        ["CLUSTER", "SLOTS"],
        ["CLUSTER", "KEYSLOT", "k"],
        ["CLUSTER", "HELP"],
        ["ASKING"],
        ["READONLY"],
        ["READWRITE"],
        ["CLUSTER", "NOPE"],
        ["CLUSTER", "KEYSLOT"],
        ["SET", "k", "v"],
        ["GET", "k"],
    )
    assert [err(x) for x in r[:7]] == [disabled] * 7
    assert err(r[7]) == "ERR unknown subcommand 'NOPE'. Try CLUSTER HELP."
    assert err(r[8]) == "ERR wrong number of arguments for 'cluster|keyslot' command"
    assert r[9:] == [b"OK", b"v"]
    (info,) = await call(unsharded, ["INFO", "cluster"])
    assert b"cluster_enabled:0" in info

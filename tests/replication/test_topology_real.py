"""Real ``crdtkv serve`` processes that are not fully meshed: a chain, a star, a ring.

Each replica lists only its neighbours as ``--peer``, so what a replica
writes reaches a non-neighbour only through the replicas between them (its
log entries, or a state sync they run).  For each topology: writes of all
four types at the ends (leaves), a write made while one replica is stopped,
the middle replica (the hub) killed with ``kill -9`` and restarted while the
others keep writing, and a delete that must stay a delete.  Then every
replica must answer every key the same and report the same applied vector in
``/v1/status``, with nothing left to ship on any link.  Every wait is
bounded; the file takes about a minute.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from crdtkv import Client
from tests.procs import Server, ServerGroup, free_ports, start_all
from tests.replication.real_cluster import Key, converge

SECRET = "topology-test-secret"
CONVERGE_S = 30.0

Topology = dict[str, list[str]]

CHAIN: Topology = {"a": ["b"], "b": ["a", "c"], "c": ["b"]}
STAR: Topology = {"hub": ["l1", "l2", "l3"], "l1": ["hub"], "l2": ["hub"], "l3": ["hub"]}
RING: Topology = {"a": ["b", "d"], "b": ["a", "c"], "c": ["b", "d"], "d": ["a", "c"]}

# topology, its middle (killed), the replica stopped for a while, the ends that write
CASES = [
    pytest.param(CHAIN, "b", "c", ["a", "c"], id="chain"),
    pytest.param(STAR, "hub", "l3", ["l1", "l2", "l3"], id="star"),
    pytest.param(RING, "a", "c", ["b", "c", "d"], id="ring"),
]


def start(group: ServerGroup, root: Path, topo: Topology) -> dict[str, Server]:
    ids = sorted(topo)
    ports = dict(zip(ids, free_ports(len(ids)), strict=True))
    urls = {rid: f"http://127.0.0.1:{port}" for rid, port in ports.items()}
    servers = {
        rid: group.add(
            Server(
                rid,
                root / rid,
                port=ports[rid],
                peers={p: urls[p] for p in topo[rid]},
                secret=SECRET,
            )
        )
        for rid in ids
    }
    start_all(list(servers.values()))
    return servers


def write_everything(server: Server, tag: str) -> None:
    """One write of every type, all named after ``tag``, plus shared keys."""
    with Client([server.url]) as db:
        db.registers.set(f"reg-{tag}", {"by": tag})
        db.counters.incr("hits", 1)
        db.counters.incr(f"ctr-{tag}", 3)
        db.sets.add("tags", tag)
        db.hlls.add("visitors", f"v-{tag}", "common")


@pytest.mark.parametrize(("topo", "middle", "stopped", "ends"), CASES)
def test_a_topology_that_is_not_a_mesh_converges(
    group: ServerGroup, tmp_path: Path, topo: Topology, middle: str, stopped: str, ends: list[str]
) -> None:
    servers = start(group, tmp_path, topo)
    tags: list[str] = []

    # Writes at the ends, and a register one end writes and another deletes.
    for rid in ends:
        write_everything(servers[rid], rid)
        tags.append(rid)
    with Client([servers[ends[0]].url]) as db:
        db.registers.set("gone", "soon deleted")
    converge(list(servers.values()), [("registers", "gone")], CONVERGE_S)
    with Client([servers[ends[-1]].url]) as db:
        db.registers.delete("gone")

    # A write made while a replica is stopped: it gets it when it is back.
    servers[stopped].stop()
    writer = next(r for r in ends if r != stopped)
    write_everything(servers[writer], f"{writer}-while-{stopped}-down")
    tags.append(f"{writer}-while-{stopped}-down")
    servers[stopped].start()

    # The middle replica killed and restarted while the ends keep writing.
    done = threading.Event()
    errors: list[BaseException] = []
    counts = dict.fromkeys(ends, 0)

    def keep_writing(rid: str) -> None:
        try:
            with Client([servers[rid].url]) as db:
                while not done.is_set() and counts[rid] < 200:
                    db.counters.incr(f"during-{rid}", 1)
                    db.sets.add("during", f"{rid}-{counts[rid]}")
                    counts[rid] += 1
        except BaseException as e:  # reported below
            errors.append(e)

    writers = [threading.Thread(target=keep_writing, args=(rid,), daemon=True) for rid in ends]
    for t in writers:
        t.start()
    servers[middle].kill9()
    servers[middle].start()
    done.set()
    for t in writers:
        t.join(timeout=30)
        assert not t.is_alive(), "a writer hung"
    assert not errors, errors
    assert all(counts.values()), counts

    keys: list[Key] = [
        ("counters", "hits"),
        ("sets", "tags"),
        ("sets", "during"),
        ("hlls", "visitors"),
        ("registers", "gone"),
    ]
    keys += [("registers", f"reg-{t}") for t in tags] + [("counters", f"ctr-{t}") for t in tags]
    keys += [("counters", f"during-{rid}") for rid in ends]
    reads, applied = converge(list(servers.values()), keys, CONVERGE_S)

    assert reads[("counters", "hits")] == {"value": len(tags)}
    assert reads[("sets", "tags")] == {"members": sorted(tags), "size": len(tags)}
    during = sorted(f"{rid}-{i}" for rid in ends for i in range(counts[rid]))
    assert reads[("sets", "during")] == {"members": during, "size": len(during)}
    for t in tags:
        assert reads[("registers", f"reg-{t}")] == {"value": {"by": t}}
        assert reads[("counters", f"ctr-{t}")] == {"value": 3}
    for rid in ends:
        assert reads[("counters", f"during-{rid}")] == {"value": counts[rid]}
    assert reads[("registers", "gone")] is None  # deleted everywhere, and stays deleted
    assert abs(reads[("hlls", "visitors")]["count"] - (len(tags) + 1)) <= 1
    # Every writer's actor is known everywhere.
    writers_seen = {actor.split("~", 1)[0] for actor in applied}
    assert set(ends) <= writers_seen

    # A delete at one end reaches the other ends through the middle; hashes and
    # sorted sets travel the topology too.
    with Client([servers[ends[0]].url]) as db:
        db.registers.set("gone-too", 1)
        db.hashes.set("h", {"from": ends[0]})
        db.zsets.incr("z", 1.5, "m")
    converge(list(servers.values()), [("registers", "gone-too")], CONVERGE_S)
    with Client([servers[ends[-1]].url]) as db:
        db.registers.delete("gone-too")
        db.zsets.incr("z", 2.0, "m")
    reads, _ = converge(
        list(servers.values()),
        [("registers", "gone-too"), ("hashes", "h"), ("zsets", "z")],
        CONVERGE_S,
    )
    assert reads[("registers", "gone-too")] is None
    assert reads[("hashes", "h")] == {"fields": {"from": ends[0]}, "size": 1}
    assert reads[("zsets", "z")] == {"items": [["m", 3.5]], "size": 1}

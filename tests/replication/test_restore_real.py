"""A replica restored from an older copy of its data directory (issue 20, item 3).

Three real ``crdtkv serve`` processes.  r1's data directory is copied at a
time t; r1 then accepts more writes, acknowledged and replicated to r2 and
r3; r1 is killed with SIGKILL and started on the old copy, and writes again.
Every start runs under a new incarnation, so the restored r1 never mints a
dot its peers have already seen with other contents, and its peers, seeing
that its applied vector went back, catch it up by a state sync: its own
newer writes come back to it, and all three converge.

The same holds in ``wal`` durability, where a power loss can roll the
directory back in the same way.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crdtkv import Client
from tests.procs import ServerGroup
from tests.replication.real_cluster import SECRET, converge, start_cluster

KEYS = [
    ("counters", "c"),
    ("registers", "reg"),
    ("sets", "s"),
    ("lists", "l"),
]


def _actors(applied: dict[str, int], rid: str) -> dict[str, int]:
    return {a: s for a, s in applied.items() if a.split("~", 1)[0] == rid}


@pytest.mark.parametrize("durability", ["fsync", "wal"])
def test_a_replica_restored_from_an_old_copy_converges_and_gets_its_writes_back(
    tmp_path: Path, group: ServerGroup, durability: str
) -> None:
    r1, r2, r3 = servers = start_cluster(group, tmp_path, durability=durability)
    assert SECRET
    with Client([r1.url]) as db:
        db.counters.incr("c", 1)
        db.registers.set("reg", "before the copy")
        db.sets.add("s", "old")
        db.lists.rpush("l", "old")
    converge(servers, KEYS)

    # The copy at time t (of a cleanly stopped r1: a consistent directory).
    assert r1.stop() == 0, r1.log_tail()
    copy = tmp_path / "r1-copy"
    shutil.copytree(r1.data_dir, copy)
    r1.start()

    # Newer writes at r1, acknowledged and replicated to r2 and r3.
    with Client([r1.url]) as db:
        for _ in range(10):
            db.counters.incr("c", 1)
        db.registers.set("reg", "after the copy")
        db.sets.add("s", "newer")
        db.lists.rpush("l", "newer")
    _, before_kill = converge(servers, KEYS)
    newer_actor = _actors(before_kill, "r1")

    # r1 loses its disk and comes back from the copy; it writes again at once.
    r1.kill9()
    shutil.rmtree(r1.data_dir)
    shutil.copytree(copy, r1.data_dir)
    r1.start()
    with Client([r1.url]) as db:
        for _ in range(100):
            db.counters.incr("c", 10)
        db.lists.rpush("l", "restored")

    reads, applied = converge(servers, KEYS)
    assert reads[("counters", "c")] == {"value": 1 + 10 + 1000}
    assert reads[("registers", "reg")] == {"value": "after the copy"}
    assert set(reads[("sets", "s")]["members"]) == {"old", "newer"}
    assert reads[("lists", "l")]["values"] == ["old", "newer", "restored"]
    # No dot of an earlier start was minted again: the restored start wrote under a
    # third actor, and the second start's dots are all back, as r2 and r3 held them.
    mine = _actors(applied, "r1")
    assert len(newer_actor) == 2, before_kill  # the first start's actor, and the second's
    assert len(mine) == 3, applied
    for actor, seq in newer_actor.items():
        assert mine[actor] == seq, (actor, mine, newer_actor)
    for s in servers:
        assert s.get("/healthz") == (200, {"status": "ok"})
    assert r2.running() and r3.running()

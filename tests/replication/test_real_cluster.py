"""Three real ``crdtkv serve`` processes, fully meshed with a cluster secret:
convergence under concurrent writes of every type, the types' concurrent
semantics end to end, and crashes.

Real RocksDB, real HTTP replication, ``kill -9`` and wiped data directories.
Every wait is bounded (``CONVERGE_S``).  Hostile replication traffic is in
test_hostile_messages.py, ``crdtkv cluster`` in test_cluster_command.py.
"""

from __future__ import annotations

import functools
import http.client as httpclient
import json
import shutil
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdtkv import Client
from crdtkv.replica import records as rec
from replication import messages
from replication.http import REPLICATE_PATH
from replication.messages import Header, Push
from tests.deltas import group_of
from tests.procs import Server, ServerGroup, free_ports, http, mesh, start_all, wait_until
from tests.replication.real_cluster import (
    CONVERGE_S,
    IDS,
    SECRET,
    Key,
    actor_of,
    converge,
    http_raw,
    read,
    run_threads,
    signed_headers,
    start_cluster,
)

# -- convergence under concurrent writes of every type ---------------------------------------------

N = 20


@dataclass
class Written:
    """What one writer did at its replica (filled in as it goes), to check the reads against."""

    added: set[str] = field(default_factory=set)  # set members it added ...
    removed: set[str] = field(default_factory=set)  # ... and removed again
    last_reg: str = ""  # its last write of register "reg"
    ctr_total: int = 0  # what it added to its own counter


def _write_every_type(server: Server, done: Written) -> None:
    """N rounds of writes of every type at ``server``: shared keys and keys of its own."""
    rid = server.replica_id
    with Client([server.url]) as db:
        db.registers.set(f"tmp-{rid}", "soon gone")
        for i in range(N):
            assert db.counters.incr("hits") is not None
            db.counters.incr(f"c-{rid}", i % 5 + 1)
            done.ctr_total += i % 5 + 1
            if i % 7 == 3:
                db.counters.decr(f"c-{rid}", 2)
                done.ctr_total -= 2
            assert db.sets.add("tags", f"{rid}-{i}", "shared") >= 1
            done.added.add(f"{rid}-{i}")
            if i % 4 == 3:
                assert db.sets.remove("tags", f"{rid}-{i - 2}") == 1
                done.removed.add(f"{rid}-{i - 2}")
            db.registers.set("reg", f"{rid}-{i}")
            done.last_reg = f"{rid}-{i}"
            db.registers.set(f"doc-{rid}", {"i": i, "by": rid, "nested": [i, {"x": None}]})
            db.hlls.add("visitors", f"{rid}-{i}", "common")
            if i % 10 == 0:
                results = db.batch(
                    [
                        {"op": "counters.incr", "key": "hits", "delta": 1},
                        {"op": "sets.add", "key": f"own-{rid}", "members": [str(i)]},
                        {"op": "hlls.add", "key": "visitors", "items": [f"b-{rid}-{i}"]},
                    ]
                )
                assert all("error" not in r for r in results), results
        db.registers.delete(f"tmp-{rid}")
        db.hlls.merge(f"copy-{rid}", "visitors")


def _every_type_keys() -> list[Key]:
    """The keys _write_every_type writes, at every replica."""
    keys: list[Key] = [
        ("counters", "hits"),
        ("sets", "tags"),
        ("registers", "reg"),
        ("hlls", "visitors"),
    ]
    for rid in IDS:
        keys += [
            ("counters", f"c-{rid}"),
            ("registers", f"doc-{rid}"),
            ("registers", f"tmp-{rid}"),
            ("sets", f"own-{rid}"),
            ("hlls", f"copy-{rid}"),
        ]
    return keys


def test_concurrent_writes_of_every_type_converge(shared: list[Server]) -> None:
    servers = shared
    written = {rid: Written() for rid in IDS}
    run_threads([functools.partial(_write_every_type, s, written[s.replica_id]) for s in servers])
    reads, applied = converge(servers, _every_type_keys())

    batches = len(range(0, N, 10))
    assert reads[("counters", "hits")] == {"value": 3 * (N + batches)}
    expected_tags = {"shared"}
    for rid in IDS:
        expected_tags |= written[rid].added - written[rid].removed
        assert reads[("counters", f"c-{rid}")] == {"value": written[rid].ctr_total}
        assert reads[("registers", f"doc-{rid}")] == {
            "value": {"i": N - 1, "by": rid, "nested": [N - 1, {"x": None}]}
        }
        assert reads[("registers", f"tmp-{rid}")] is None  # deleted everywhere
        assert reads[("sets", f"own-{rid}")]["members"] == sorted(str(i) for i in range(0, N, 10))
        assert reads[("hlls", f"copy-{rid}")]["count"] > 0
    assert reads[("sets", "tags")] == {"members": sorted(expected_tags), "size": len(expected_tags)}
    # LWW: each writer's own writes are ordered, so the winner is someone's last write.
    assert reads[("registers", "reg")]["value"] in {w.last_reg for w in written.values()}
    distinct = 3 * N + 1 + 3 * batches
    count = reads[("hlls", "visitors")]["count"]
    assert abs(count - distinct) <= 0.05 * distinct, (count, distinct)
    # One actor per replica, each of them known everywhere.
    for rid in IDS:
        assert len(actor_of(applied, rid)) == 1, applied
    assert len(applied) == 3


# -- concurrent semantics end to end ---------------------------------------------------------------


def _add_wins_trials(a: Server, b: Server, trials: int) -> list[int]:
    """Races a remove of x<j> at ``a`` against an add of it at ``b``; the trials in which
    the two were concurrent (so x<j> must survive).

    At A a batch reads marker-j, then removes x<j>; at B a batch increments
    marker-j, then adds x<j>, at the same moment.  B's add comes after its
    marker in B's log, and replicas apply a peer's log in order, so if A's read
    did not see the marker, A's remove did not see B's add: they are concurrent
    (or the add came later) and x<j> must survive.  If A saw the marker, the
    remove may have observed the add; either outcome is then correct, so such a
    trial proves nothing.
    """
    concurrent: list[int] = []
    for j in range(trials):
        seen: dict[str, Any] = {}

        def remove_at_a(j: int = j, seen: dict[str, Any] = seen) -> None:
            status, body = http(
                "POST",
                a.url + "/v1/batch",
                {
                    "ops": [
                        {"op": "counters.get", "key": f"marker-{j}"},
                        {"op": "sets.remove", "key": "s", "members": [f"x{j}"]},
                    ]
                },
            )
            assert status == 200, body
            seen["marker"], seen["remove"] = body["results"]

        def add_at_b(j: int = j) -> None:
            status, body = http(
                "POST",
                b.url + "/v1/batch",
                {
                    "ops": [
                        {"op": "counters.incr", "key": f"marker-{j}", "delta": 1},
                        {"op": "sets.add", "key": "s", "members": [f"x{j}"]},
                    ]
                },
            )
            assert status == 200 and all("error" not in r for r in body["results"]), body

        run_threads([remove_at_a, add_at_b])
        if seen["marker"].get("error", {}).get("code") == "not_found":
            assert seen["remove"] == {"removed": 1}  # A removed its observed x<j>
            concurrent.append(j)
    return concurrent


def _counting(server: Server, k: int) -> Callable[[], None]:
    """Increments and decrements of counter "sum" at ``server`` (k tells the writers apart)."""

    def run() -> None:
        with Client([server.url]) as db:
            for i in range(20):
                db.counters.incr("sum", k * 1000 + i)
                if i % 5 == 0:
                    db.counters.decr("sum", k)

    return run


def _writing(server: Server) -> Callable[[], None]:
    """One write of each of ten registers at ``server``."""

    def run() -> None:
        with Client([server.url]) as db:
            for r in range(10):
                db.registers.set(f"w{r}", {"by": server.replica_id, "round": r})

    return run


def test_concurrent_add_and_remove_ends_present_counters_sum_registers_agree(
    shared: list[Server],
) -> None:
    servers = shared
    a, b, _ = servers
    trials = 8
    members = [f"x{j}" for j in range(trials)]
    with Client([a.url]) as db:
        db.sets.add("s", *members)
    wait_until(
        lambda: all(
            read(s, ("sets", "s")) == {"members": sorted(members), "size": trials} for s in servers
        ),
        CONVERGE_S,
        what="the set to reach every replica",
    )
    # Add-wins: a remove concurrent with an add leaves the member present.
    concurrent = _add_wins_trials(a, b, trials)
    # Counters: increments and decrements at all three at once sum exactly.
    # Registers: three writes of one key at once, ten keys.
    run_threads(
        [_counting(s, k) for k, s in enumerate(servers, 1)] + [_writing(s) for s in servers]
    )
    expected_sum = sum(k * 1000 * 20 + sum(range(20)) - 4 * k for k in (1, 2, 3))

    keys: list[Key] = [("sets", "s"), ("counters", "sum")]
    keys += [("registers", f"w{r}") for r in range(10)]
    keys += [("counters", f"marker-{j}") for j in range(trials)]
    reads, _ = converge(servers, keys)

    present = set(reads[("sets", "s")]["members"])
    assert concurrent, "no trial was concurrent; the test proved nothing"
    for j in concurrent:
        assert f"x{j}" in present, f"concurrent add of x{j} lost to a remove (add-wins)"
    assert reads[("counters", "sum")] == {"value": expected_sum}
    for r in range(10):
        value = reads[("registers", f"w{r}")]["value"]
        assert value["round"] == r and value["by"] in IDS


# -- kill -9 one replica while the others take writes ----------------------------------------------


class Load:
    """Writers that keep going while a replica is killed: steady ones, and a doomed one
    that writes at its replica until it dies.  ``acked`` holds each replica's acknowledged
    set adds; ``maybe`` the doomed writer's last one, which it never saw answered."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.acked: dict[str, list[str]] = {rid: [] for rid in IDS}
        self.maybe: dict[str, list[str]] = {rid: [] for rid in IDS}
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, steady: list[Server], doomed: Server) -> None:
        targets = [functools.partial(self.steady, s) for s in steady]
        targets.append(functools.partial(self.doomed, doomed))
        self.threads = [threading.Thread(target=self.guarded(t), daemon=True) for t in targets]
        for t in self.threads:
            t.start()

    def guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                self.errors.append(e)

        return run

    def steady(self, server: Server) -> None:
        rid = server.replica_id
        with Client([server.url]) as db:
            i = 0
            while not self.stop.is_set():
                i += 1
                db.counters.incr(f"c-{rid}")
                db.sets.add("s", f"{rid}-{i}")
                self.acked[rid].append(f"{rid}-{i}")
                time.sleep(0.002)

    def doomed(self, server: Server) -> None:
        """Writes at ``server`` until it dies: acknowledged ones must survive."""
        rid = server.replica_id
        conn = httpclient.HTTPConnection("127.0.0.1", server.port, timeout=10)
        i = 0
        try:
            while True:
                i += 1
                body = json.dumps(
                    {
                        "ops": [
                            {"op": "counters.incr", "key": f"c-{rid}", "delta": 1},
                            {"op": "sets.add", "key": "s", "members": [f"{rid}-{i}"]},
                        ]
                    }
                )
                try:
                    conn.request("POST", "/v1/batch", body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    status, data = resp.status, json.loads(resp.read())
                except (OSError, httpclient.HTTPException, ValueError):
                    self.maybe[rid].append(f"{rid}-{i}")
                    return
                assert status == 200 and all("error" not in r for r in data["results"]), data
                self.acked[rid].append(f"{rid}-{i}")
        finally:
            conn.close()

    def more_writes(self, rids: list[str], n: int = 20) -> None:
        """Wait until each of ``rids`` acknowledged ``n`` more writes (or a writer failed)."""
        base = {rid: len(self.acked[rid]) for rid in rids}
        wait_until(
            lambda: self.errors or all(len(self.acked[r]) >= base[r] + n for r in rids),
            CONVERGE_S,
            what=f"{n} more writes at {rids}",
        )

    def finish(self) -> None:
        """Stop the writers; re-raise the first failure."""
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)
            assert not t.is_alive()
        if self.errors:
            raise self.errors[0]


def test_replica_killed_mid_load_restarts_and_converges(tmp_path: Path, group: ServerGroup) -> None:
    servers = start_cluster(group, tmp_path)
    r1, r2, r3 = servers
    load = Load()
    load.start([r1, r2], doomed=r3)
    acked, maybe = load.acked, load.maybe

    load.more_writes(IDS)
    r3.kill9()
    load.more_writes(["r1", "r2"])  # writes at r1 and r2 keep going while r3 is down ...
    r3.start()
    load.more_writes(["r1", "r2"])  # ... and while it comes back
    load.finish()
    assert acked["r3"] and acked["r1"] and acked["r2"], "every writer got writes through"

    keys: list[Key] = [("sets", "s"), *(("counters", f"c-{rid}") for rid in IDS)]
    reads, applied = converge(servers, keys)
    members = set(reads[("sets", "s")]["members"])
    for rid in IDS:
        lost = set(acked[rid]) - members
        assert not lost, f"acknowledged adds at {rid} lost: {sorted(lost)[:5]}"
    assert members <= set().union(*acked.values(), *maybe.values())
    assert reads[("counters", "c-r1")] == {"value": len(acked["r1"])}
    assert reads[("counters", "c-r2")] == {"value": len(acked["r2"])}
    c3 = reads[("counters", "c-r3")]["value"]
    assert len(acked["r3"]) <= c3 <= len(acked["r3"]) + len(maybe["r3"])
    # r3's writer stopped at the kill: its dots are all its first incarnation's (its
    # restart runs under a new one, which has written nothing).
    assert len(actor_of(applied, "r3")) == 1, applied


# -- a wiped replica comes back under a new incarnation --------------------------------------------


def _wipe_and_check(servers: list[Server], writes_before: Callable[[], None]) -> None:
    r1, _, r3 = servers
    writes_before()
    old = r3.status()["applied"]
    (old_actor,) = actor_of(old, "r3")
    old_seq = old[old_actor]
    assert old_seq > 0

    r3.kill9()
    shutil.rmtree(r3.data_dir)
    r3.start()

    # The new incarnation's first write is its dot 1: no old dot is reissued.
    with Client([r3.url]) as db:
        db.counters.incr("c", 1000)
    applied = r3.status()["applied"]
    new_actors = [a for a in actor_of(applied, "r3") if a != old_actor]
    assert len(new_actors) == 1, applied
    (new_actor,) = new_actors
    assert applied[new_actor] == 1
    assert new_actor.split("~", 1)[1] != old_actor.split("~", 1)[1]

    with Client([r1.url]) as db:
        db.counters.incr("c", 7)
        db.sets.add("s", "after-wipe")
    with Client([r3.url]) as db:
        db.sets.add("s", "r3-after-wipe")
        db.registers.set("r3-reg", "new")

    keys: list[Key] = [("counters", "c"), ("sets", "s"), ("registers", "r3-reg")]
    reads, applied = converge(servers, keys)
    # The old actor's dots are still counted everywhere, and it minted no more.
    assert applied[old_actor] == old_seq, applied
    assert applied[new_actor] == 3, applied
    expected_members = {f"{rid}-{i}" for rid in IDS for i in range(5)}
    expected_members |= {"after-wipe", "r3-after-wipe"}
    assert reads[("sets", "s")]["members"] == sorted(expected_members)
    # 1+2+3 (x5 each before), 1000 at the new r3, 7 at r1.
    assert reads[("counters", "c")] == {"value": 5 * (1 + 2 + 3) + 1000 + 7}
    assert reads[("registers", "r3-reg")] == {"value": "new"}


def _writes_everywhere(servers: list[Server]) -> None:
    for k, s in enumerate(servers, 1):
        with Client([s.url]) as db:
            for i in range(5):
                db.counters.incr("c", k)
                db.sets.add("s", f"{s.replica_id}-{i}")
            if s.replica_id == "r3":
                db.registers.set("r3-reg", "old")


def test_wiped_replica_returns_under_new_incarnation_and_converges(
    tmp_path: Path, group: ServerGroup
) -> None:
    servers = start_cluster(group, tmp_path)

    def before() -> None:
        _writes_everywhere(servers)
        converge(servers, [("counters", "c"), ("sets", "s")])

    _wipe_and_check(servers, before)


def test_wiped_replica_recovers_its_old_dots_while_a_peer_log_is_untruncated(
    tmp_path: Path, group: ServerGroup
) -> None:
    """r2 is down while r3's old incarnation writes, so r1 cannot truncate its
    log (r2 never acknowledged it); r3 is wiped and comes back.  Its old
    writes, which only r1 holds, must still reach the new r3."""
    servers = [group.add(s) for s in mesh(IDS, tmp_path, secret=SECRET)]
    r1, r2, r3 = servers
    start_all([r1, r3])

    def before() -> None:
        for k, s in ((1, r1), (3, r3)):
            with Client([s.url]) as db:
                for i in range(5):
                    db.counters.incr("c", k)
                    db.sets.add("s", f"{s.replica_id}-{i}")
        wait_until(
            lambda: (
                read(r1, ("counters", "c")) == {"value": 20}
                and read(r3, ("counters", "c")) == {"value": 20}
            ),
            CONVERGE_S,
            what="r1 and r3 to agree",
        )

    def writes_then_r2() -> None:
        before()
        # r2 comes up only now: r1's log still holds everything.
        r2.start()
        with Client([r2.url]) as db:
            for i in range(5):
                db.counters.incr("c", 2)
                db.sets.add("s", f"r2-{i}")
            db.registers.set("r3-reg", "old")

    # Wipe r3 right away, before r2 has necessarily acknowledged r1's log.
    _wipe_and_check(servers, writes_then_r2)


# -- B16: a collected register stays collected across kill -9 ------------------------------------


def _metric(server: Server, name: str) -> float:
    """The value of an unlabelled sample of ``/metrics`` (0 when absent)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_b16_a_deleted_key_stays_deleted_across_a_duplicate_push_and_kill_9(
    tmp_path: Path, group: ServerGroup
) -> None:
    # The real node, RocksDB and kill -9 for the hazard of B16
    # (docs/simulation.md): r1 applies a write of k pushed by "r2", checkpoints,
    # deletes k (observing r2's write), and then receives the same push again
    # (a duplicate, as a lost reply makes a sender resend).  The duplicate is
    # recognised by its dot and changes nothing; kill -9 and the restart, which
    # replays the log after the checkpoint, must not bring the write back.
    r1_port, r2_port = free_ports(2)
    r1 = group.add(
        Server("r1", tmp_path / "r1", port=r1_port,
               peers={"r2": f"http://127.0.0.1:{r2_port}"}, secret=SECRET)
    )  # fmt: skip
    r1.start()
    assert http("POST", r1.url + "/v1/counters/warm", {"delta": 1})[0] == 200
    (r1_actor,) = actor_of(r1.status()["applied"], "r1")
    old = group_of("r2~x", {"op": "registers.set", "key": "k", "value": "old"})
    group_blob = rec.pack(rec.encode_group(old))
    head = Header("r2", "x", {"r2~x": 1})
    body = messages.encode(Push(head, 0, 1, ((1, group_blob),), r1_actor.split("~", 1)[1]))
    assert http_raw("POST", r1.url + REPLICATE_PATH, body, signed_headers(body))[0] == 200
    assert r1.get("/v1/registers/k") == (200, {"value": "old"})
    assert r1.stop() == 0  # a clean stop writes a checkpoint holding the write
    r1.start()
    assert http("DELETE", r1.url + "/v1/keys/k")[0] == 200
    assert r1.get("/v1/registers/k")[0] == 404
    assert http_raw("POST", r1.url + REPLICATE_PATH, body, signed_headers(body))[0] == 200
    assert r1.get("/v1/registers/k")[0] == 404  # the duplicate changed nothing
    assert http("POST", r1.url + "/v1/counters/after", {"delta": 1})[0] == 200
    r1.kill9()
    r1.start()
    code, answer = r1.get("/v1/registers/k")
    assert code == 404, answer  # B16: {"value": "old"}
    assert r1.get("/v1/counters/after") == (200, {"value": 1})

"""Three real ``crdtkv serve`` processes, fully meshed with a cluster secret.

Real RocksDB, real HTTP replication, ``kill -9``, wiped data directories,
forged replication requests, and ``crdtkv cluster`` as a subprocess.
Every wait is bounded (``CONVERGE_S``).
"""

from __future__ import annotations

import http.client as httpclient
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgpack
import pytest

from crdtkv import Client
from crdtkv.crdts import PNCounter
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.lww_register import LWWRegister
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import DeltaGroup
from replication import messages
from replication.http import REPLICATE_PATH, sign, verify
from replication.messages import Header, Push, Reply
from tests.procs import (
    STARTUP_S,
    Server,
    ServerGroup,
    children_of,
    consecutive_free_ports,
    free_ports,
    http,
    kill9,
    mesh,
    pid_alive,
    port_is_free,
    read_lines_until,
    server_group,
    spawn,
    start_all,
    stop,
    wait_until,
)

SECRET = "real-cluster-test-secret"
CONVERGE_S = 20.0
IDS = ["r1", "r2", "r3"]

Key = tuple[str, str]  # (namespace, key)


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def group() -> Iterator[ServerGroup]:
    with server_group() as g:
        yield g


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """One cluster for the tests that only write (disjoint keys): fewer process starts."""
    with server_group() as g:
        yield start_cluster(g, tmp_path_factory.mktemp("shared"))


def start_cluster(group: ServerGroup, root: Path, **kw: Any) -> list[Server]:
    servers = [group.add(s) for s in mesh(IDS, root, secret=SECRET, **kw)]
    start_all(servers)
    return servers


def read(server: Server, key: Key) -> Any:
    """The value a key reads as at ``server`` (None when absent)."""
    ns, k = key
    path = {"hlls": f"/v1/hlls/{quote(k, safe='')}"}.get(ns, f"/v1/{ns}/{quote(k, safe='')}")
    code, body = server.get(path)
    if code == 404:
        assert body["error"]["code"] == "not_found", body
        return None
    assert code == 200, (server.replica_id, key, code, body)
    return body


def converge(
    servers: list[Server], keys: list[Key], timeout_s: float = CONVERGE_S
) -> tuple[dict[Key, Any], dict[str, int]]:
    """Wait until every applied vector is equal, no peer lags, every peer is
    reachable, and every key reads the same everywhere; (reads, applied vector)."""

    def check() -> tuple[dict[Key, Any], dict[str, int]] | None:
        statuses = [s.status() for s in servers]
        vectors = [st["applied"] for st in statuses]
        if any(v != vectors[0] for v in vectors):
            return None
        for st in statuses:
            for peer in st["peers"].values():
                if peer["lag_ops"] != 0 or not peer["reachable"]:
                    return None
        reads = [{k: read(s, k) for k in keys} for s in servers]
        if any(r != reads[0] for r in reads):
            return None
        # Nothing moved while we were reading.
        if [s.status()["applied"] for s in servers] != vectors:
            return None
        return reads[0], vectors[0]

    def describe() -> str:
        out = []
        for s in servers:
            try:
                st = s.status()
                out.append(f"{s.replica_id}: applied={st['applied']} peers={st['peers']}")
            except Exception as e:  # pragma: no cover - diagnostics only
                out.append(f"{s.replica_id}: {e!r}")
        return "; ".join(out)

    try:
        result: tuple[dict[Key, Any], dict[str, int]] = wait_until(
            check, timeout_s, interval_s=0.1, what="convergence"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{describe()}") from None
    return result


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run the targets in parallel, starting together; re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=10)
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a writer hung"
    if errors:
        raise errors[0]


def actor_of(applied: dict[str, int], replica_id: str) -> list[str]:
    return sorted(a for a in applied if a.split("~", 1)[0] == replica_id)


# -- convergence under concurrent writes of every type ---------------------------------------------

N = 20


def test_concurrent_writes_of_every_type_converge(shared: list[Server]) -> None:
    servers = shared
    removed: dict[str, set[str]] = {}
    added: dict[str, set[str]] = {}
    last_reg: dict[str, str] = {}
    ctr_total: dict[str, int] = {}

    def writer(server: Server) -> Callable[[], None]:
        rid = server.replica_id

        def run() -> None:
            added[rid], removed[rid] = set(), set()
            ctr_total[rid] = 0
            with Client([server.url]) as db:
                db.registers.set(f"tmp-{rid}", "soon gone")
                for i in range(N):
                    assert db.counters.incr("hits") is not None
                    db.counters.incr(f"c-{rid}", i % 5 + 1)
                    ctr_total[rid] += i % 5 + 1
                    if i % 7 == 3:
                        db.counters.decr(f"c-{rid}", 2)
                        ctr_total[rid] -= 2
                    assert db.sets.add("tags", f"{rid}-{i}", "shared") >= 1
                    added[rid].add(f"{rid}-{i}")
                    if i % 4 == 3:
                        assert db.sets.remove("tags", f"{rid}-{i - 2}") == 1
                        removed[rid].add(f"{rid}-{i - 2}")
                    db.registers.set("reg", f"{rid}-{i}")
                    last_reg[rid] = f"{rid}-{i}"
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

        return run

    run_threads([writer(s) for s in servers])
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
    reads, applied = converge(servers, keys)

    batches = len(range(0, N, 10))
    assert reads[("counters", "hits")] == {"value": 3 * (N + batches)}
    expected_tags = {"shared"}
    for rid in IDS:
        expected_tags |= added[rid] - removed[rid]
        assert reads[("counters", f"c-{rid}")] == {"value": ctr_total[rid]}
        assert reads[("registers", f"doc-{rid}")] == {
            "value": {"i": N - 1, "by": rid, "nested": [N - 1, {"x": None}]}
        }
        assert reads[("registers", f"tmp-{rid}")] is None  # deleted everywhere
        assert reads[("sets", f"own-{rid}")]["members"] == sorted(str(i) for i in range(0, N, 10))
        assert reads[("hlls", f"copy-{rid}")]["count"] > 0
    assert reads[("sets", "tags")] == {"members": sorted(expected_tags), "size": len(expected_tags)}
    # LWW: each writer's own writes are ordered, so the winner is someone's last write.
    assert reads[("registers", "reg")]["value"] in set(last_reg.values())
    distinct = 3 * N + 1 + 3 * batches
    count = reads[("hlls", "visitors")]["count"]
    assert abs(count - distinct) <= 0.05 * distinct, (count, distinct)
    # One actor per replica, each of them known everywhere.
    for rid in IDS:
        assert len(actor_of(applied, rid)) == 1, applied
    assert len(applied) == 3


# -- concurrent semantics end to end ---------------------------------------------------------------


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

    # Add-wins.  At A a batch reads marker-j, then removes x<j>; at B a batch
    # increments marker-j, then adds x<j>, at the same moment.  B's add comes
    # after its marker in B's log, and replicas apply a peer's log in order,
    # so if A's read did not see the marker, A's remove did not see B's add:
    # they are concurrent (or the add came later) and x<j> must survive.
    # If A saw the marker, the remove may have observed the add; either
    # outcome is then correct, so such a trial proves nothing.
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

    # Counters: increments and decrements at all three at once sum exactly.
    def counting(server: Server, k: int) -> Callable[[], None]:
        def run() -> None:
            with Client([server.url]) as db:
                for i in range(20):
                    db.counters.incr("sum", k * 1000 + i)
                    if i % 5 == 0:
                        db.counters.decr("sum", k)

        return run

    # Registers: three writes of one key at once, ten keys.
    def writing(server: Server) -> Callable[[], None]:
        def run() -> None:
            with Client([server.url]) as db:
                for r in range(10):
                    db.registers.set(f"w{r}", {"by": server.replica_id, "round": r})

        return run

    run_threads([counting(s, k) for k, s in enumerate(servers, 1)] + [writing(s) for s in servers])
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


def test_replica_killed_mid_load_restarts_and_converges(tmp_path: Path, group: ServerGroup) -> None:
    servers = start_cluster(group, tmp_path)
    r1, r2, r3 = servers
    stop = threading.Event()
    acked: dict[str, list[str]] = {rid: [] for rid in IDS}
    maybe: dict[str, list[str]] = {rid: [] for rid in IDS}

    def steady(server: Server) -> Callable[[], None]:
        def run() -> None:
            rid = server.replica_id
            with Client([server.url]) as db:
                i = 0
                while not stop.is_set():
                    i += 1
                    db.counters.incr(f"c-{rid}")
                    db.sets.add("s", f"{rid}-{i}")
                    acked[rid].append(f"{rid}-{i}")
                    time.sleep(0.002)

        return run

    def doomed() -> None:
        """Writes at r3 until it dies: acknowledged ones must survive."""
        conn = httpclient.HTTPConnection("127.0.0.1", r3.port, timeout=10)
        i = 0
        try:
            while True:
                i += 1
                body = json.dumps(
                    {
                        "ops": [
                            {"op": "counters.incr", "key": "c-r3", "delta": 1},
                            {"op": "sets.add", "key": "s", "members": [f"r3-{i}"]},
                        ]
                    }
                )
                try:
                    conn.request("POST", "/v1/batch", body, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    status, data = resp.status, json.loads(resp.read())
                except (OSError, httpclient.HTTPException, ValueError):
                    maybe["r3"].append(f"r3-{i}")
                    return
                assert status == 200 and all("error" not in r for r in data["results"]), data
                acked["r3"].append(f"r3-{i}")
        finally:
            conn.close()

    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=guarded(steady(s)), daemon=True) for s in (r1, r2)]
    threads.append(threading.Thread(target=guarded(doomed), daemon=True))
    for t in threads:
        t.start()

    def more_writes(rids: list[str], n: int = 20) -> None:
        """Wait until each of ``rids`` acknowledged ``n`` more writes (or a writer failed)."""
        base = {rid: len(acked[rid]) for rid in rids}
        wait_until(
            lambda: errors or all(len(acked[r]) >= base[r] + n for r in rids),
            CONVERGE_S,
            what=f"{n} more writes at {rids}",
        )

    more_writes(IDS)
    r3.kill9()
    more_writes(["r1", "r2"])  # writes at r1 and r2 keep going while r3 is down ...
    r3.start()
    more_writes(["r1", "r2"])  # ... and while it comes back
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    if errors:
        raise errors[0]
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
    # A restart on the same directory keeps r3's incarnation: still one actor.
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


# -- authentication of replication traffic ---------------------------------------------------------


def _signed_headers(
    body: bytes, peer: str = "r2", secret: str = SECRET, ts_ms: int | None = None
) -> dict[str, str]:
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return {
        "Content-Type": "application/msgpack",
        "X-Crdtkv-Peer": peer,
        "X-Crdtkv-Timestamp": str(ts),
        "X-Crdtkv-Signature": sign(secret, "POST", REPLICATE_PATH, ts, body),
    }


def _push_from_r2(servers: list[Server], key: str, amount: int, actor: str) -> tuple[bytes, str]:
    """A well-formed push "from r2" to r1 adding ``amount`` to counter ``key``
    under the dot (actor, 1): (body, r1's incarnation)."""
    r1, r2, _ = servers
    r2_applied = r2.status()["applied"]
    (r2_actor,) = actor_of(r2_applied, "r2")
    # r2 as r1 knows it (its real incarnation and applied vector), so that
    # even an accepted push disturbs nothing but the counter.
    head = Header("r2", r2_actor.split("~", 1)[1], r2_applied)
    delta = PNCounter().incr(actor, amount)
    group_blob = rec.pack(rec.encode_group(DeltaGroup((actor, 1), {("counters", key): delta})))
    (r1_actor,) = actor_of(r1.status()["applied"], "r1")
    r1_incarnation = r1_actor.split("~", 1)[1]
    return messages.encode(Push(head, 0, 1, ((1, group_blob),), r1_incarnation)), r1_incarnation


def test_replication_requests_must_be_signed_by_a_configured_peer(
    shared: list[Server],
) -> None:
    servers = shared
    r1, r2, _ = servers
    with Client([r1.url]) as db:
        db.counters.incr("auth-c", 1)
    with Client([r2.url]) as db:
        db.counters.incr("auth-r2", 1)
    converge(servers, [("counters", "auth-c")])
    # A well-formed push from "r2" that would add 5 to auth-c (as the control shows).
    body, r1_incarnation = _push_from_r2(servers, "auth-c", 5, "intruder~x")
    head = messages.decode(body).head
    url = r1.url + REPLICATE_PATH

    def unchanged() -> None:
        assert read(r1, ("counters", "auth-c")) == {"value": 1}
        assert "intruder~x" not in r1.status()["applied"]

    refused: list[tuple[str, bytes, dict[str, str]]] = [
        (
            "no signature headers",
            body,
            {"Content-Type": "application/msgpack", "X-Crdtkv-Peer": "r2"},
        ),
        ("signed with another secret", body, _signed_headers(body, secret="wrong")),
        ("signature of another body", body, _signed_headers(body + b"\x00")),
        (
            "replayed: timestamp 60 s old",
            body,
            _signed_headers(body, ts_ms=int(time.time() * 1000) - 60_000),
        ),
        ("a peer id not in the configuration", body, _signed_headers(body, peer="r9")),
        (
            "no peer id",
            body,
            {k: v for k, v in _signed_headers(body).items() if k != "X-Crdtkv-Peer"},
        ),
        ("a garbage signature", body, {**_signed_headers(body), "X-Crdtkv-Signature": "00" * 32}),
    ]
    for what, data, headers in refused:
        status, answer = http("POST", url, data=data, headers=headers)
        assert status == 401, (what, status, answer)
        assert answer["error"]["code"] == "unauthorized", (what, answer)
        unchanged()

    garbled_group = messages.encode(Push(head, 0, 1, ((1, b"\xc1garbage"),), r1_incarnation))
    for garbage in (b"\xc1garbage", b"", msgpack.packb(["push", "r2"]), garbled_group):
        status, answer = http("POST", url, data=garbage, headers=_signed_headers(garbage))
        assert status == 400, (garbage, status, answer)
        assert answer["error"]["code"] == "bad_request", answer
        unchanged()

    # The control: the same push, properly signed, is accepted and applied,
    # and the reply is signed by r1.
    req = http_raw("POST", url, body, _signed_headers(body))
    assert req[0] == 200, req
    verify([SECRET], "REPLY", REPLICATE_PATH, req[1], req[2], int(time.time() * 1000))
    reply = messages.decode(req[2])
    assert isinstance(reply, Reply) and reply.acked == 1 and reply.head.sender == "r1"
    assert read(r1, ("counters", "auth-c")) == {"value": 6}
    assert r1.status()["applied"]["intruder~x"] == 1
    # Accepted traffic travels on: the others get it from r1.
    converge(servers, [("counters", "auth-c")])


def test_compressed_replication_bodies_are_bounded_and_checked(shared: list[Server]) -> None:
    servers = shared
    r1 = servers[0]
    with Client([r1.url]) as db:
        db.counters.incr("zlib-c", 1)
    converge(servers, [("counters", "zlib-c")])
    body, _ = _push_from_r2(servers, "zlib-c", 7, "zipper~x")
    url = r1.url + REPLICATE_PATH

    def unchanged() -> None:
        assert read(r1, ("counters", "zlib-c")) == {"value": 1}
        assert "zipper~x" not in r1.status()["applied"]

    def signed(wire: bytes, encoding: str) -> dict[str, str]:
        return {**_signed_headers(wire), "X-Crdtkv-Encoding": encoding}

    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # 64 KiB that inflate to 64 MiB
    refused = [
        ("a bomb", bomb, "zlib", 413, "payload_too_large"),
        ("not zlib", b"\x78\x01garbage" * 20, "zlib", 400, "bad_request"),
        ("truncated", zlib.compress(body)[:-4], "zlib", 400, "bad_request"),
        ("unknown encoding", zlib.compress(body), "br", 400, "bad_request"),
        # Plain bytes announced as compressed, and compressed ones announced as plain.
        ("plain as zlib", body, "zlib", 400, "bad_request"),
        ("zlib as plain", zlib.compress(body), "", 400, "bad_request"),
    ]
    for what, wire, encoding, status, code in refused:
        got, answer = http("POST", url, data=wire, headers=signed(wire, encoding))
        assert (got, answer["error"]["code"]) == (status, code), (what, got, answer)
        unchanged()
    # The control: the same push compressed is applied, and the reply comes back
    # compressed or plain as its size decides, signed either way.
    wire = zlib.compress(body, 1)
    status, rheaders, rbody = http_raw("POST", url, wire, signed(wire, "zlib"))
    assert status == 200, (status, rbody[:200])
    verify([SECRET], "REPLY", REPLICATE_PATH, rheaders, rbody, int(time.time() * 1000))
    reply = messages.decode(messages.decompress(rbody, rheaders.get("X-Crdtkv-Encoding")))
    assert isinstance(reply, Reply) and reply.acked == 1
    assert read(r1, ("counters", "zlib-c")) == {"value": 8}
    converge(servers, [("counters", "zlib-c")])


def _metric(server: Server, name: str) -> float:
    """The value of an unlabelled sample of ``/metrics`` (0 when absent)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def test_b16_a_collected_register_stays_collected_across_kill_9(
    tmp_path: Path, group: ServerGroup
) -> None:
    # The real node, RocksDB and kill -9 for B16 (docs/simulation.md): r1
    # deletes k and checkpoints; an older write of k arrives later from "r2"
    # (a signed push, with r2's vector claiming r1's dots, so the delete is
    # stable) and becomes a log entry after the checkpoint; r1 collects k and
    # writes again; then kill -9.  The restart replays the log after the
    # checkpoint: unless the collection was written with a checkpoint, the old
    # write is back.
    r1_port, r2_port = free_ports(2)
    r1 = group.add(
        Server("r1", tmp_path / "r1", port=r1_port,
               peers={"r2": f"http://127.0.0.1:{r2_port}"}, secret=SECRET)
    )  # fmt: skip
    r1.start()
    assert http("DELETE", r1.url + "/v1/registers/k")[0] == 200
    assert r1.stop() == 0  # a clean stop writes a checkpoint covering the delete
    r1.start()
    # The first write of this process writes a checkpoint (none is due for 5 s after it).
    assert http("POST", r1.url + "/v1/counters/warm", {"delta": 1})[0] == 200
    started = time.monotonic()
    applied = r1.status()["applied"]
    (r1_actor,) = actor_of(applied, "r1")
    old = LWWRegister().assign(Timestamp(1_000_000_000_000, 0, "r2~x"), "old")
    group_blob = rec.pack(rec.encode_group(DeltaGroup(("r2~x", 1), {("registers", "k"): old})))
    head = Header("r2", "x", {**applied, "r2~x": 1})
    body = messages.encode(Push(head, 0, 1, ((1, group_blob),), r1_actor.split("~", 1)[1]))
    status, _, _ = http_raw("POST", r1.url + REPLICATE_PATH, body, _signed_headers(body))
    assert status == 200
    assert r1.get("/v1/registers/k")[0] == 404  # the old write lost to the delete
    wait_until(
        lambda: _metric(r1, "crdtkv_tombstones_collected_total") >= 1, 10, what="k collected"
    )
    assert http("POST", r1.url + "/v1/counters/after", {"delta": 1})[0] == 200
    if time.monotonic() - started > 4.0:
        pytest.skip("too slow here: a timed checkpoint may have hidden the bug")
    r1.kill9()
    r1.start()
    code, answer = r1.get("/v1/registers/k")
    assert code == 404, answer  # B16: {"value": "old"}


def http_raw(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    """(status, headers, raw body)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path, body, headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


# -- crdtkv cluster --------------------------------------------------------------------------------


def test_crdtkv_cluster_command(tmp_path: Path) -> None:
    base = consecutive_free_ports(3)
    data = tmp_path / "cluster"
    script = Path(sys.executable).parent / "crdtkv"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "crdtkv.cli"]
    log = tmp_path / "cluster.log"
    proc = spawn(
        [*cmd, "cluster", "--replicas", "3", "--base-port", str(base), "--data-dir", str(data)],
        cwd=tmp_path,
        stderr=log,
    )
    children: list[int] = []
    try:
        up = "cluster of 3 replicas up"
        lines = read_lines_until(proc, up, 3 * STARTUP_S, what="crdtkv cluster", log=log)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
        assert lines[:3] == [f"r{i + 1} {u}" for i, u in enumerate(urls)], lines
        children = children_of(proc.pid)
        assert len(children) == 3, children
        assert (data / "cluster.secret").stat().st_mode & 0o777 == 0o600

        with Client([urls[0]]) as db:
            db.registers.set("greeting", {"hello": "world"})
            db.counters.incr("n", 3)
        r3 = Server("r3", data / "r3", port=base + 2)  # only to read; not started by us
        wait_until(
            lambda: (
                read(r3, ("registers", "greeting")) == {"value": {"hello": "world"}}
                and read(r3, ("counters", "n")) == {"value": 3}
            ),
            CONVERGE_S,
            what="r1's write at r3",
        )
        # The cluster authenticates replication: an unsigned request is refused.
        status, _ = http(
            "POST",
            urls[0] + REPLICATE_PATH,
            data=b"\x90",
            headers={"Content-Type": "application/msgpack", "X-Crdtkv-Peer": "r2"},
        )
        assert status == 401

        assert stop(proc, signal.SIGINT, 3 * STARTUP_S) == 0, log.read_text()
        for port in range(base, base + 3):
            assert wait_until(lambda p=port: port_is_free(p), 10, what=f"port {port} free")
        for pid in children:
            wait_until(lambda p=pid: not pid_alive(p), 10, what=f"replica pid {pid} gone")
    finally:
        kill9(proc)
        # Should the command have left replicas behind, stop them (by pid, ours).
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

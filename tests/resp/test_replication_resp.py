"""Replication and durability through the RESP port, between real ``crdtkv serve`` processes.

A three-replica mesh (durability fsync, each with a RESP port): what a Redis client writes at one
replica reads at the others, over RESP or HTTP, and HTTP writes read over RESP; concurrent INCRs
at two replicas add up; a list pushed at one replica reads at the others, and a BLPOP waiting at
one takes an element pushed at another.  A replica killed with ``kill -9`` right after
acknowledged RESP writes has every one of them after its restart.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.procs import Server, free_ports, http, mesh, start_all, wait_until

REPLICATE_S = 30.0  # generous: two cores, three replicas, fsync


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    root = Path(tmp_path_factory.mktemp("resp-mesh"))
    servers = mesh(["r1", "r2", "r3"], root)
    for server, port in zip(servers, free_ports(len(servers)), strict=True):
        server.resp_port = port
    try:
        start_all(servers)
        yield servers
    finally:
        for s in servers:
            s.kill9()


def client(server: Server) -> redis.Redis:
    """A redis-py client that never retries (a retried INCR could count twice)."""
    assert server.resp_port is not None
    return redis.Redis(
        port=server.resp_port,
        decode_responses=True,
        socket_timeout=30,
        retry=Retry(NoBackoff(), 0),
    )


def http_value(server: Server, path: str) -> Any:
    """The ``value`` of a GET, or None while it is 404."""
    status, body = server.get(path)
    if status == 404:
        return None
    assert status == 200, (status, body)
    return body["value"]


def test_resp_write_reads_over_http_and_resp_elsewhere(cluster: list[Server]) -> None:
    r1, r2, r3 = cluster
    c1, c2, c3 = client(r1), client(r2), client(r3)
    assert c1.set("repl:k", "v1") is True
    wait_until(
        lambda: http_value(r2, "/v1/registers/repl:k") == "v1", REPLICATE_S, what="r2 over HTTP"
    )
    wait_until(lambda: c3.get("repl:k") == "v1", REPLICATE_S, what="r3 over RESP")
    # an overwrite at r2, seen at r1; then a delete at r3, seen everywhere
    assert c2.set("repl:k", "v2", xx=True) is True
    wait_until(lambda: c1.get("repl:k") == "v2", REPLICATE_S, what="r2's overwrite at r1")
    assert c3.getdel("repl:k") in ("v1", "v2")
    wait_until(
        lambda: c1.get("repl:k") is None and http_value(r2, "/v1/registers/repl:k") is None,
        REPLICATE_S,
        what="the delete at r1 and r2",
    )
    # a TTL travels with the value
    assert c1.set("repl:ttl", "t", px=5000) is True
    wait_until(lambda: c2.get("repl:ttl") == "t", 4.5, what="r1's SET PX at r2")
    wait_until(lambda: c2.get("repl:ttl") is None, REPLICATE_S, what="the expiry at r2")
    for c in (c1, c2, c3):
        c.close()


def test_concurrent_incr_at_two_replicas_adds_up_at_a_third(cluster: list[Server]) -> None:
    r1, r2, r3 = cluster
    n = 400
    replies: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def incr(server: Server, by: int) -> None:
        c = client(server)
        got: list[int] = []
        try:
            for _ in range(n // 2):
                got.append(c.incrby("repl:ctr", by))
            pipe = c.pipeline(transaction=False)
            for _ in range(n // 2):
                pipe.incrby("repl:ctr", by)
            got += pipe.execute()
        except BaseException as e:
            errors.append(e)
        finally:
            c.close()
        replies[server.replica_id] = got

    threads = [
        threading.Thread(target=incr, args=(r1, 1)),
        threading.Thread(target=incr, args=(r2, 3)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # each replica's own replies grow with each of its increments (others' may land between)
    for rid, by in (("r1", 1), ("r2", 3)):
        got = replies[rid]
        assert len(got) == n
        assert all(b - a >= by for a, b in itertools.pairwise(got)), rid
    total = n * 1 + n * 3
    c3 = client(r3)
    wait_until(lambda: c3.get("repl:ctr") == str(total), REPLICATE_S, what=f"{total} at r3")
    assert http_value(r3, "/v1/counters/repl:ctr") == total
    for r in (r1, r2):
        wait_until(
            lambda r=r: http_value(r, "/v1/counters/repl:ctr") == total,
            REPLICATE_S,
            what=f"{total} at {r.replica_id}",
        )
    c3.close()


def test_http_writes_read_over_resp_elsewhere(cluster: list[Server]) -> None:
    r1, r2, r3 = cluster
    status, body = http("PUT", r1.url + "/v1/registers/repl:h", {"value": "x"})
    assert status == 200, body
    status, body = http("PUT", r1.url + "/v1/registers/repl:j", {"value": {"a": [1, 2]}})
    assert status == 200, body
    c3 = client(r3)
    wait_until(lambda: c3.get("repl:h") == "x", REPLICATE_S, what="an HTTP PUT over RESP at r3")
    wait_until(
        lambda: c3.get("repl:j") == '{"a":[1,2]}', REPLICATE_S, what="a JSON value as its text"
    )
    # an HTTP counter increment at r2 and an INCR over RESP at r3, concurrent: both count
    status, body = http("POST", r2.url + "/v1/counters/repl:hc", {"delta": 7})
    assert status == 200, body
    c3.incr("repl:hc")
    c1 = client(r1)
    wait_until(lambda: c1.get("repl:hc") == "8", REPLICATE_S, what="7 + 1 at r1")
    assert c1.incr("repl:hc") == 9
    with pytest.raises(redis.ResponseError, match="not an integer"):
        c1.incr("repl:h")  # "x", written over HTTP
    c1.close()
    c3.close()


def test_lists_replicate_and_a_blocked_pop_takes_a_replicated_push(
    cluster: list[Server],
) -> None:
    r1, r2, r3 = cluster
    c1, c2, c3 = client(r1), client(r2), client(r3)
    assert c1.rpush("repl:list", "a", "b", "c") == 3
    wait_until(
        lambda: c3.lrange("repl:list", 0, -1) == ["a", "b", "c"], REPLICATE_S, what="r3's list"
    )
    assert c3.lpop("repl:list") == "a"
    wait_until(lambda: c1.llen("repl:list") == 2, REPLICATE_S, what="r3's pop at r1")
    # a BLPOP waiting at r2 takes an element pushed at r1, once it has replicated
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(c2.blpop(["repl:queue"], timeout=25)))
    started = time.monotonic()
    waiter.start()
    time.sleep(0.5)
    assert not got
    assert c1.rpush("repl:queue", "job") == 1
    waiter.join(REPLICATE_S)
    assert got == [("repl:queue", "job")], got
    assert time.monotonic() - started < 25  # woken by the push, not timed out
    wait_until(lambda: c1.exists("repl:queue") == 0, REPLICATE_S, what="r2's pop at r1")
    for c in (c1, c2, c3):
        c.close()


def test_kill9_right_after_acknowledged_writes(tmp_path: Path) -> None:
    """Writers on several connections (plain and pipelined) until ``kill -9``: after a restart,
    every write the replica had acknowledged is there (durability fsync)."""
    (resp_port,) = free_ports(1)
    server = Server("d1", tmp_path / "d1", durability="fsync", resp_port=resp_port)
    server.start()
    acked_sets: dict[str, str] = {}
    acked_incrs: dict[str, int] = {}
    sent_incrs: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def plain(t: int) -> None:
        c = client(server)
        ctr = f"dur:ctr:{t}"
        try:
            for i in range(1_000_000):
                if stop.is_set():
                    return
                key, value = f"dur:{t}:{i}", f"v{i}"
                c.set(key, value)
                with lock:
                    acked_sets[key] = value
                    sent_incrs[ctr] = sent_incrs.get(ctr, 0) + 1
                c.incr(ctr)
                with lock:
                    acked_incrs[ctr] = acked_incrs.get(ctr, 0) + 1
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return

    def piped(t: int) -> None:
        c = client(server)
        try:
            for b in range(1_000_000):
                if stop.is_set():
                    return
                pipe = c.pipeline(transaction=False)
                batch = {f"dur:p{t}:{b}:{j}": f"{b}.{j}" for j in range(50)}
                for k, v in batch.items():
                    pipe.set(k, v)
                assert pipe.execute() == [True] * len(batch)
                with lock:
                    acked_sets.update(batch)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            return

    threads = [threading.Thread(target=plain, args=(t,)) for t in range(3)]
    threads += [threading.Thread(target=piped, args=(t,)) for t in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acked_sets) < 1500 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill9()  # while the writers are still writing
        with lock:
            sets, incrs, sent = dict(acked_sets), dict(acked_incrs), dict(sent_incrs)
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        assert len(sets) >= 1500, f"only {len(sets)} writes acknowledged in 20 s"
        server.start()
        c = client(server)
        keys = sorted(sets)
        got: list[str | None] = []
        for lo in range(0, len(keys), 1000):
            got += c.mget(keys[lo : lo + 1000])
        lost = [k for k, v in zip(keys, got, strict=True) if v != sets[k]]
        assert not lost, f"{len(lost)} of {len(keys)} acknowledged SETs lost, e.g. {lost[:5]}"
        for ctr, n in incrs.items():
            value = int(c.get(ctr) or 0)
            # every acknowledged INCR is there; one unacknowledged may be too
            assert n <= value <= sent[ctr], (ctr, n, value, sent[ctr])
        c.close()
    finally:
        stop.set()
        server.kill9()

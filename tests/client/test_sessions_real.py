"""The four session guarantees across real replicas, with replication held back.

Replicas A and B replicate with each other; C is cut off (it has no peers and
nobody has it as a peer), so anything written at A or B never reaches C.  A
session that has seen such a write must never get a stale answer from C:
C answers ``session_unavailable`` and the client moves on.
"""

from __future__ import annotations

import random
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, Client, SessionUnavailable
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, TokenSigner
from tests.client.history import Event, check
from tests.procs import Server, free_ports, server_group, start_all, wait_until

SECRET = "session-test-secret"


@pytest.fixture(scope="module")
def held_back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root: Path = tmp_path_factory.mktemp("held")
    pa, pb, pc = free_ports(3)
    a_url, b_url = f"http://127.0.0.1:{pa}", f"http://127.0.0.1:{pb}"
    with server_group() as g:
        servers = {
            "a": g.add(Server("a", root / "a", port=pa, peers={"b": b_url}, secret=SECRET)),
            "b": g.add(Server("b", root / "b", port=pb, peers={"a": a_url}, secret=SECRET)),
            "c": g.add(Server("c", root / "c", port=pc, secret=SECRET)),
        }
        start_all(list(servers.values()))
        yield servers


def _c_alone(servers: dict[str, Server], token: str | None) -> Client:
    return Client([servers["c"].url], session_token=token, wait_ms=100, attempts=1)


def test_read_your_writes_never_stale_at_a_replica_that_lacks_the_write(held_back) -> None:
    s = held_back
    with Client([s["a"].url, s["c"].url], wait_ms=100) as db:
        db.registers.set("ryw", {"v": 1})
        db.counters.incr("ryw-c", 5)
        db.sets.add("ryw-s", "x")
        db.hlls.add("ryw-h", "u1")
        token = db.session_token
    # C alone cannot serve the session: it must refuse, not answer stale.
    with _c_alone(s, token) as c, pytest.raises(SessionUnavailable):
        c.registers.get("ryw")
    # With C first in the list, the client fails over and still reads its writes.
    with Client([s["c"].url, s["a"].url], session_token=token, wait_ms=100) as db:
        assert db.registers.get("ryw") == {"v": 1}
        assert db.counters.get("ryw-c") == 5
        assert db.sets.members("ryw-s") == ["x"]
        assert db.hlls.count("ryw-h") == 1
        assert db.url == s["a"].url
    # Without the session, C answers from what it has (nothing): that is allowed.
    with Client([s["c"].url]) as fresh:
        assert fresh.registers.get("ryw", default=None) is None


def test_monotonic_reads_a_read_at_a_then_c_refuses(held_back) -> None:
    s = held_back
    with Client([s["a"].url]) as writer:
        writer.counters.incr("mr", 1)
    with Client([s["a"].url]) as reader:
        assert reader.counters.get("mr") == 1
        token = reader.session_token
    with _c_alone(s, token) as c, pytest.raises(SessionUnavailable):
        c.counters.get("mr")


def test_writes_follow_reads_and_monotonic_writes_are_not_applied_out_of_order(held_back) -> None:
    s = held_back
    with Client([s["a"].url]) as db:
        db.registers.set("w1", "first")
        token = db.session_token
    with _c_alone(s, token) as c:
        with pytest.raises(SessionUnavailable):
            c.registers.set("w2", "second")  # monotonic writes: C lacks w1
        with pytest.raises(SessionUnavailable):
            c.counters.incr("w2", 1)
    with Client([s["c"].url]) as plain:  # nothing was applied at C
        assert plain.registers.get("w2", default=None) is None
        assert plain.counters.get("w2") == 0
    status = s["c"].status()
    assert status["applied"] == {} or all(not k.startswith("a~") for k in status["applied"])


def test_b_serves_the_session_once_replication_arrives(held_back) -> None:
    s = held_back
    with Client([s["a"].url]) as db:
        db.sets.add("rep", "m1")
        token = db.session_token
    with Client([s["b"].url], session_token=token, wait_ms=5_000, attempts=1) as db:
        assert db.sets.members("rep") == ["m1"]  # waited for replication, never stale
    vv = TokenSigner(SECRET).decode(token).vv
    b_applied = s["b"].status()["applied"]
    assert all(b_applied.get(actor, 0) >= seq for actor, seq in vv.items())


# -- failing over from a refusal (issue 20, bug 1) -------------------------------------------------


def _c_writes_alone(s: dict[str, Server], key: str) -> None:
    """C applies one write of its own, which A and B never receive."""
    with Client([s["c"].url]) as c:
        c.registers.set(key, "only at c")


def _refusal_token(url: str, token: str) -> tuple[int, str | None]:
    req = urllib.request.Request(
        f"{url}/v1/counters/fo", headers={SESSION_HEADER: token, WAIT_HEADER: "50"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get(SESSION_HEADER)
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get(SESSION_HEADER)


def test_a_refusal_carries_the_request_token_unchanged(held_back) -> None:
    s = held_back
    _c_writes_alone(s, "fo-own-1")
    with Client([s["a"].url]) as db:
        db.counters.incr("fo", 1)
        token = db.session_token
    assert token is not None
    status, returned = _refusal_token(s["c"].url, token)
    assert status == 503
    assert returned == token  # not merged with C's applied vector


def test_a_client_failing_over_from_a_cut_off_replica_is_served_by_another(held_back) -> None:
    s = held_back
    _c_writes_alone(s, "fo-own-2")
    with Client([s["a"].url]) as db:
        db.counters.incr("fo2", 3)
        db.sets.add("fo2s", "m")
        token = db.session_token
    with Client([s["c"].url, s["b"].url], session_token=token, wait_ms=300) as db:
        assert db.counters.get("fo2") == 3  # refused at C, then served by B
        assert db.sets.members("fo2s") == ["m"]
        assert db.url == s["b"].url
        assert db.session_token is not None
        vv = TokenSigner(SECRET).decode(db.session_token).vv
    assert not any(actor.startswith("c~") for actor in vv), vv  # C's dots never entered


async def test_the_async_client_fails_over_from_a_cut_off_replica(held_back) -> None:
    s = held_back
    _c_writes_alone(s, "fo-own-3")
    async with AsyncClient([s["a"].url]) as db:
        await db.counters.incr("fo3", 2)
        await db.sets.add("fo3s", "m")
        token = db.session_token
    async with AsyncClient([s["c"].url, s["b"].url], session_token=token, wait_ms=300) as db:
        assert await db.counters.get("fo3") == 2
        assert await db.sets.members("fo3s") == ["m"]
        assert db.url == s["b"].url


# -- many sessions hopping between replicas -------------------------------------------------------


@pytest.fixture(scope="module")
def meshed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    root: Path = tmp_path_factory.mktemp("mesh")
    ports = free_ports(3)
    ids = ["m1", "m2", "m3"]
    urls = {i: f"http://127.0.0.1:{p}" for i, p in zip(ids, ports, strict=True)}
    with server_group() as g:
        servers = [
            g.add(
                Server(
                    i,
                    root / i,
                    port=p,
                    secret=SECRET,
                    peers={o: u for o, u in urls.items() if o != i},
                )
            )
            for i, p in zip(ids, ports, strict=True)
        ]
        start_all(servers)
        yield servers


def _session(name: str, urls: list[str], peers: list[str], seed: int, out: list[Event]) -> None:
    rng = random.Random(seed)
    i = 0
    with Client(urls, wait_ms=rng.choice([20, 200, 1000]), attempts=12) as db:
        for _ in range(25):
            db._current = rng.randrange(len(urls))  # hop to a random replica
            r = db.url
            choice = rng.random()
            if choice < 0.35:
                i += 1
                db.registers.set(f"a:{name}", i)
                out.append(Event(name, "write", f"a:{name}", i, r))
                db.registers.set(f"b:{name}", i)
                out.append(Event(name, "write", f"b:{name}", i, r))
            elif choice < 0.5:
                other = rng.choice(peers)
                v = db.registers.get(f"a:{other}", default=None)
                out.append(Event(name, "read", f"a:{other}", v, db.url))
                if v is not None:
                    seen = {"key": f"a:{other}", "value": v}
                    db.registers.set(f"seen:{name}", seen)
                    out.append(Event(name, "write", f"seen:{name}", seen, db.url))
            else:
                key = rng.choice(["a:", "b:", "seen:"]) + rng.choice([*peers, name])
                v = db.registers.get(key, default=None)
                out.append(Event(name, "read", key, v, db.url))
            if rng.random() < 0.3:
                threading.Event().wait(rng.uniform(0, 0.03))


def test_concurrent_sessions_hopping_between_replicas_keep_their_guarantees(meshed) -> None:
    urls = [s.url for s in meshed]
    names = [f"s{i}" for i in range(8)]
    histories: dict[str, list[Event]] = {n: [] for n in names}
    threads = [
        threading.Thread(target=_session, args=(n, urls, names, i, histories[n]))
        for i, n in enumerate(names)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    events = [e for n in names for e in histories[n]]
    assert sum(e.kind == "read" for e in events) > 50, "the workload must actually read"
    assert check(events) == []

    # And the replicas converge afterwards.
    def applied() -> set[tuple[tuple[str, int], ...]]:
        return {tuple(sorted(s.status()["applied"].items())) for s in meshed}

    wait_until(lambda: len(applied()) == 1, 20, what="equal applied vectors")


# -- the checker can fail -------------------------------------------------------------------------


def test_checker_reports_planted_violations() -> None:
    ryw = [Event("s", "write", "a:s", 2), Event("s", "read", "a:s", 1)]
    mr = [Event("s", "read", "a:t", 3), Event("s", "read", "a:t", 2)]
    mw = [Event("s", "read", "b:t", 4), Event("s", "read", "a:t", 3)]
    wfr = [Event("s", "read", "seen:t", {"key": "a:u", "value": 5}), Event("s", "read", "a:u", 4)]
    absent = [Event("s", "write", "a:s", 1), Event("s", "read", "a:s", None)]
    for planted in (ryw, mr, mw, wfr, absent):
        assert len(check(planted)) == 1, planted
    fine = [
        Event("s", "write", "a:s", 1),
        Event("s", "read", "a:s", 1),
        Event("s", "read", "b:t", 2),
        Event("s", "read", "a:t", 2),
    ]
    assert check(fine) == []

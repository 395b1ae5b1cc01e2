"""The clients' routing against scripted replicas of a sharded cluster: what a real
cluster does not do on demand (a 421 ``ask`` mid-move), and exactly which
requests, headers and tokens go where.

Two fake replicas, P (shard s0) and Q (shard s1), one region; each answers
``GET /v1/cluster/map`` with the same map, and its other requests with the
test's ``answer`` function.  Every request is recorded with its headers.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from crdtkv import AsyncClient, BadRequest, Client
from crdtkv.client.routing import format_tokens, parse_tokens, token_replicas
from crdtkv.cluster import ClusterMap, NodeAddr, Shard, key_slot
from crdtkv.sessions import SESSION_HEADER, SessionToken, TokenSigner

ASKING = "X-Crdtkv-Asking"
Answer = tuple[int, Any]  # status, JSON body


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Fake:
    name: str  # its replica id
    answer: Callable[[Seen], Answer] = lambda seen: (200, {})
    cluster: dict[str, Any] = field(default_factory=lambda: {"enabled": False})
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def requests(self, path: str | None = None) -> list[Seen]:
        return [s for s in self.seen if path is None or s.path == path]


def _serve(fake: Fake) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(
                self.command, self.path, dict(self.headers), json.loads(raw) if raw else None
            )
            fake.seen.append(seen)
            if self.path == "/v1/cluster/map":
                status, body = 200, fake.cluster
            else:
                status, body = fake.answer(seen)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header(SESSION_HEADER, f"token-of-{fake.name}")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{srv.server_address[1]}"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def pq() -> Iterator[tuple[ClusterMap, Fake, Fake]]:
    p, q = Fake("s0-a"), Fake("s1-a")
    servers = [_serve(p), _serve(q)]
    m = ClusterMap.even(
        [Shard("s0", (NodeAddr("s0-a", "a", p.url),)), Shard("s1", (NodeAddr("s1-a", "a", q.url),))]
    )
    for f, shard in ((p, "s0"), (q, "s1")):
        f.cluster = {
            "enabled": True,
            "me": f.name,
            "shard": shard,
            "region": "a",
            "epoch": m.epoch,
            "slots": "",
            "map": m.to_json(),
        }
    yield m, p, q
    for s in servers:
        s.shutdown()
        s.server_close()


def key_in(m: ClusterMap, shard: str, prefix: str = "k") -> str:
    return next(
        f"{prefix}{i}" for i in range(10_000) if m.owner(key_slot(f"{prefix}{i}")).id == shard
    )


def _ask(slot: int, url: str) -> dict[str, Any]:
    return {"error": {"code": "ask", "message": "ask it", "slot": slot, "url": url, "resp": ""}}


def _moved(slot: int, url: str) -> dict[str, Any]:
    return {"error": {"code": "moved", "message": "moved", "slot": slot, "url": url, "resp": ""}}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_ask_is_sent_once_to_the_target_with_the_asking_header(
    pq: tuple[ClusterMap, Fake, Fake], kind: str
) -> None:
    m, p, q = pq
    k = key_in(m, "s0")  # P owns it in the map; P has handed it over to Q
    slot = key_slot(k)
    p.answer = lambda seen: (421, _ask(slot, q.url))
    # Q serves the slot only to a client that says it was sent there by an ask.
    q.answer = lambda seen: (
        (200, {"value": "at q"}) if seen.headers.get(ASKING) == "1" else (421, _moved(slot, p.url))
    )
    if kind == "sync":
        with Client([p.url]) as db:
            assert db.registers.get(k) == "at q"
            assert db.registers.get(k) == "at q"
            tokens = db.session_tokens
    else:

        async def go() -> dict[str, str]:
            async with AsyncClient([p.url]) as db:
                assert await db.registers.get(k) == "at q"
                assert await db.registers.get(k) == "at q"
                return db.session_tokens

        tokens = asyncio.run(go())
    path = f"/v1/registers/{k}"
    # Each call: P first (the map is unchanged by an ask), then Q once, asking.
    assert len(p.requests(path)) == 2 and len(q.requests(path)) == 2
    assert all(s.headers.get(ASKING) == "1" for s in q.requests(path))
    assert all(ASKING not in s.headers for s in p.requests(path))
    assert len(p.requests("/v1/cluster/map")) == 1  # learned once, never read again
    assert q.requests("/v1/cluster/map") == []
    # One token per shard, each sent only to its own shard's replica.
    assert tokens == {"s0": "token-of-s0-a", "s1": "token-of-s1-a"}
    assert SESSION_HEADER not in q.requests(path)[0].headers
    assert q.requests(path)[1].headers[SESSION_HEADER] == "token-of-s1-a"
    assert p.requests(path)[1].headers[SESSION_HEADER] == "token-of-s0-a"


def test_a_batch_op_answered_ask_is_resent_to_the_target_alone(
    pq: tuple[ClusterMap, Fake, Fake],
) -> None:
    m, p, q = pq
    k, other0, other1 = key_in(m, "s0", "a"), key_in(m, "s0", "b"), key_in(m, "s1", "c")

    def p_answer(seen: Seen) -> Answer:
        return 200, {
            "results": [
                _ask(key_slot(k), q.url) if op["key"] == k else {"value": f"p:{op['key']}"}
                for op in seen.body["ops"]
            ]
        }

    def q_answer(seen: Seen) -> Answer:
        tag = "q-asked" if seen.headers.get(ASKING) == "1" else "q"
        return 200, {"results": [{"value": f"{tag}:{op['key']}"} for op in seen.body["ops"]]}

    p.answer, q.answer = p_answer, q_answer
    ops = [{"op": "registers.get", "key": x} for x in (other1, k, other0, other1)]
    with Client([p.url]) as db:
        assert db.batch(ops) == [
            {"value": f"q:{other1}"},
            {"value": f"q-asked:{k}"},
            {"value": f"p:{other0}"},
            {"value": f"q:{other1}"},
        ]
    batches_q = q.requests("/v1/batch")
    assert [len(b.body["ops"]) for b in batches_q] == [2, 1]  # its part, then the asked op
    assert batches_q[1].headers.get(ASKING) == "1" and batches_q[1].body["ops"][0]["key"] == k
    assert [op["key"] for op in p.requests("/v1/batch")[0].body["ops"]] == [k, other0]


def test_the_map_is_asked_once_per_client_of_an_unsharded_cluster() -> None:
    solo = Fake(
        "solo",
        answer=lambda seen: (
            200,
            {"results": [{"value": 2}]} if seen.path == "/v1/batch" else {"value": 1},
        ),
    )
    srv = _serve(solo)
    try:
        with Client([solo.url]) as db:
            assert [db.registers.get("x") for _ in range(3)] == [1, 1, 1]
            assert db.cluster_map is None and db.session_token == "token-of-solo"

        async def go() -> None:
            async with AsyncClient([solo.url]) as db:
                assert await db.registers.get("x") == 1
                assert await db.batch([{"op": "registers.get", "key": "y"}]) == [{"value": 2}]

        asyncio.run(go())
        # Once per client, before its first call; the calls go on unchanged.
        assert len(solo.requests("/v1/cluster/map")) == 2
        assert len(solo.requests("/v1/registers/x")) == 4
        assert all(SESSION_HEADER not in s.headers for s in solo.requests("/v1/cluster/map"))
    finally:
        srv.shutdown()
        srv.server_close()


def test_a_plain_token_goes_to_the_shard_whose_replica_issued_it(
    pq: tuple[ClusterMap, Fake, Fake],
) -> None:
    m, p, q = pq
    plain = TokenSigner("x").encode(SessionToken({"s1-a~7": 3}, (1, 0)))
    k0, k1 = key_in(m, "s0"), key_in(m, "s1")
    p.answer = q.answer = lambda seen: (200, {"value": 1})
    with Client([p.url], session_token=plain) as db:
        db.registers.get(k0)
        db.registers.get(k1)
    assert SESSION_HEADER not in p.requests(f"/v1/registers/{k0}")[0].headers
    assert q.requests(f"/v1/registers/{k1}")[0].headers[SESSION_HEADER] == plain


def test_session_token_strings() -> None:
    assert parse_tokens(None) == {} and parse_tokens("abc.def") == {"": "abc.def"}
    both = parse_tokens("s1=t1.m,s0=t0.m")
    assert both == {"s0": "t0.m", "s1": "t1.m"}
    assert format_tokens(both) == "s0=t0.m,s1=t1.m"
    assert format_tokens({"": "abc.def"}) == "abc.def" and format_tokens({}) is None
    for bad in ("s0=", "=t", "s0=t,junk", "a,b", "s0=t=u"):
        with pytest.raises(BadRequest):
            parse_tokens(bad)
    with pytest.raises(BadRequest):
        Client(["http://127.0.0.1:1"], session_token="s0=t,nope")
    assert token_replicas(TokenSigner(None).encode(SessionToken({"r~1": 1, "r~2": 2}))) == {"r"}
    assert token_replicas("not a token") is None


def _held(slot: int) -> dict[str, Any]:
    return {"error": {"code": "try_again", "message": f"slot {slot} is held"}}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_held_slot_is_asked_again_shortly_not_raised(
    pq: tuple[ClusterMap, Fake, Fake], kind: str
) -> None:
    m, p, _ = pq
    k = key_in(m, "s0", "h")
    path = f"/v1/registers/{k}"
    # P holds the slot for its move's last copy twice, then answers.
    p.answer = lambda seen: (
        (503, _held(key_slot(k))) if len(p.requests(path)) <= 2 else (200, {"value": "v"})
    )
    if kind == "sync":
        with Client([p.url]) as db:
            assert db.registers.get(k) == "v"
    else:

        async def go() -> Any:
            async with AsyncClient([p.url]) as db:
                return await db.registers.get(k)

        assert asyncio.run(go()) == "v"
    assert len(p.requests(path)) == 3  # the same replica, asked again: no failover


def test_a_batch_op_held_is_resent(pq: tuple[ClusterMap, Fake, Fake]) -> None:
    m, p, _ = pq
    k, other = key_in(m, "s0", "a"), key_in(m, "s0", "b")

    def p_answer(seen: Seen) -> Answer:
        first = len(p.requests("/v1/batch")) == 1
        return 200, {
            "results": [
                _held(key_slot(k)) if op["key"] == k and first else {"value": f"p:{op['key']}"}
                for op in seen.body["ops"]
            ]
        }

    p.answer = p_answer
    with Client([p.url]) as db:
        ops = [{"op": "registers.get", "key": x} for x in (k, other)]
        assert db.batch(ops) == [{"value": f"p:{k}"}, {"value": f"p:{other}"}]
    sent = [[op["key"] for op in b.body["ops"]] for b in p.requests("/v1/batch")]
    assert sent == [[k, other], [k]]

"""The clients' failover and retry path, against scripted HTTP servers.

docs/sessions.md, "Failover": on a connection error the client moves to the
next URL and retries with jittered exponential backoff (50 ms to 1 s), up to
``attempts`` requests; a counter change or a batch whose connection dropped
after the request was sent is not retried but raises ``ClusterUnavailable``
("may or may not have been applied"); calls that are safe to repeat are.

Each scripted server is a raw socket in a thread: it reads whole requests,
records them, and answers each with the next scripted action (a JSON answer,
or dropping the connection without one).  The one request a client makes
before its first call, ``GET /v1/cluster/map`` (is the cluster sharded?), is
answered ``{"enabled": false}`` outside the script and counted apart
(``map_asked``): these servers are one unsharded cluster.  Both clients run every test; the
backoff sleeps are recorded (and skipped) by patching ``time.sleep`` and
``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from crdtkv import AsyncClient, Client, ClusterUnavailable
from tests.procs import free_port

BACKOFF_MIN_S = 0.05  # the documented range of the (jittered) backoff
BACKOFF_MAX_S = 1.0
ATTEMPTS_DEFAULT = 6
MAY_OR_MAY_NOT = "may or may not have been applied"
REQUEST_BYTES_MAX = 1 << 20  # a scripted server refuses to buffer more


@dataclass(frozen=True, slots=True)
class Answer:
    body: Any
    status: int = 200


@dataclass(frozen=True, slots=True)
class Drop:
    """Read the whole request, then close the connection without answering."""

    reset: bool = False  # an RST (SO_LINGER 0) rather than a FIN


@dataclass(frozen=True, slots=True)
class AnswerThenClose:
    """Answer, then close the connection, as a server's keep-alive timeout does."""

    body: Any
    closed: threading.Event = field(default_factory=threading.Event)


Action = Answer | Drop | AnswerThenClose


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    body: Any


@dataclass
class Scripted:
    """An HTTP/1.1 server (keep-alive) answering request n with ``script[n]``, then ``after``."""

    script: list[Action]
    after: Action = field(default_factory=lambda: Answer({}))
    seen: list[Seen] = field(default_factory=list)
    map_asked: int = 0  # GET /v1/cluster/map requests, answered outside the script

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffered = b""
            while True:
                request = _read_request(conn, buffered)
                if request is None:
                    return  # the client closed the connection
                seen, buffered = request
                with self._lock:
                    if (seen.method, seen.path) == ("GET", "/v1/cluster/map"):
                        self.map_asked += 1
                        action: Action = Answer({"enabled": False})
                    else:
                        self.seen.append(seen)
                        action = self.script.pop(0) if self.script else self.after
                if isinstance(action, Drop):
                    if action.reset:
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                    return
                data = json.dumps(action.body).encode()
                status = action.status if isinstance(action, Answer) else 200
                conn.sendall(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                if isinstance(action, AnswerThenClose):
                    conn.close()
                    action.closed.set()
                    return


def _read_request(conn: socket.socket, buffered: bytes) -> tuple[Seen, bytes] | None:
    """One request (with its Content-Length body), and what followed it; None at EOF."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffered += chunk
        assert len(buffered) < REQUEST_BYTES_MAX
    head, buffered = buffered.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    assert length < REQUEST_BYTES_MAX
    while len(buffered) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffered += chunk
    body = json.loads(buffered[:length]) if length else None
    return Seen(method, path, body), buffered[length:]


@pytest.fixture
def servers() -> Iterator[Callable[..., Scripted]]:
    started: list[Scripted] = []

    def make(*script: Action, after: Action | None = None) -> Scripted:
        s = Scripted(list(script)) if after is None else Scripted(list(script), after)
        started.append(s)
        return s

    yield make
    for s in started:
        s.close()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nobody listens there: connection refused


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every backoff the client sleeps, recorded instead of slept."""
    recorded: list[float] = []
    real_async_sleep = asyncio.sleep

    def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    async def fake_async_sleep(seconds: float, result: Any = None) -> Any:
        if seconds > 0:  # aiohttp's own sleep(0) yields are not backoffs
            recorded.append(seconds)
        return await real_async_sleep(0, result)

    monkeypatch.setattr("time.sleep", fake_sleep)
    monkeypatch.setattr("asyncio.sleep", fake_async_sleep)
    return recorded


# -- one client of either kind ---------------------------------------------------------------------

Call = Callable[[Any], Any]  # db -> result (a coroutine for the async client)
CLIENTS = ["sync", "async"]


@dataclass
class Outcome:
    results: list[Any]  # per call: its result, or the exception it raised
    url: str  # the replica the client talked to at the end


def run_calls(kind: str, urls: list[str], calls: list[Call], **options: Any) -> Outcome:
    """The calls in order on one client (``Client`` or ``AsyncClient``)."""
    results: list[Any] = []
    if kind == "sync":
        with Client(urls, **options) as db:
            for call in calls:
                try:
                    results.append(call(db))
                except Exception as e:
                    results.append(e)
            return Outcome(results, db.url)

    async def go() -> Outcome:
        async with AsyncClient(urls, **options) as db:
            for call in calls:
                try:
                    results.append(await call(db))
                except Exception as e:
                    results.append(e)
            return Outcome(results, db.url)

    return asyncio.run(go())


# Calls safe to repeat, and the answer each expects.
IDEMPOTENT: dict[str, tuple[Call, Any, Any]] = {
    "registers.get": (lambda db: db.registers.get("k"), {"value": 1}, 1),
    "registers.set": (lambda db: db.registers.set("k", 1), {"ok": True}, None),
    "registers.delete": (lambda db: db.registers.delete("k"), {"ok": True}, None),
    "sets.add": (lambda db: db.sets.add("s", "m"), {"added": 1}, 1),
    "sets.remove": (lambda db: db.sets.remove("s", "m"), {"removed": 1}, 1),
    "hlls.add": (lambda db: db.hlls.add("h", "i"), {"changed": True}, True),
}
# Calls that must not be sent twice: a counter change, a batch.
NOT_IDEMPOTENT: dict[str, tuple[Call, Any, Any]] = {
    "counters.incr": (lambda db: db.counters.incr("c", 2), {"value": 2}, 2),
    "counters.incr-negative": (lambda db: db.counters.incr("c", -1), {"value": -1}, -1),
    "batch": (
        lambda db: db.batch([{"op": "counters.incr", "key": "c", "delta": 1}]),
        {"results": [{"value": 1}]},
        [{"value": 1}],
    ),
}


# -- connection refused: never reached a server, always safe to retry ----------------------------


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("name", sorted({**IDEMPOTENT, **NOT_IDEMPOTENT}))
def test_connection_refused_moves_to_the_next_replica(
    kind: str, name: str, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    call, answer, result = {**IDEMPOTENT, **NOT_IDEMPOTENT}[name]
    good = servers(Answer(answer))
    out = run_calls(kind, [dead_url(), good.url], [call])
    assert out.results == [result]
    assert len(good.seen) == 1  # sent once, to the replica that listens
    assert out.url == good.url  # and the client stays there
    assert len(sleeps) == 1 and BACKOFF_MIN_S / 2 <= sleeps[0] <= BACKOFF_MIN_S


# -- a connection dropped after the request was sent -----------------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("name", sorted(IDEMPOTENT))
def test_dropped_connection_retries_an_idempotent_call(
    kind: str, name: str, reset: bool, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    call, answer, result = IDEMPOTENT[name]
    # The flaky replica drops every request: aiohttp itself resends a GET, PUT
    # or DELETE once on the same connection pool before the client sees an error.
    flaky, good = servers(after=Drop(reset)), servers(Answer(answer))
    out = run_calls(kind, [flaky.url, good.url], [call])
    assert out.results == [result]
    assert len(good.seen) == 1 and flaky.seen
    assert all(s == good.seen[0] for s in flaky.seen)  # the same request, sent again
    assert out.url == good.url
    assert len(sleeps) == 1


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("name", sorted(NOT_IDEMPOTENT))
def test_dropped_connection_does_not_retry_a_counter_change_or_a_batch(
    kind: str, name: str, reset: bool, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    call, answer, _ = NOT_IDEMPOTENT[name]
    flaky, good = servers(Drop(reset)), servers(Answer(answer))
    out = run_calls(kind, [flaky.url, good.url], [call])
    (error,) = out.results
    assert isinstance(error, ClusterUnavailable), error
    assert MAY_OR_MAY_NOT in str(error)
    assert len(flaky.seen) == 1  # the server saw the request exactly once ...
    assert good.seen == []  # ... and no other replica saw it
    assert sleeps == []


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("name", sorted(NOT_IDEMPOTENT))
def test_dropped_keep_alive_connection_does_not_resend_a_counter_change(
    kind: str, name: str, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    call, answer, result = NOT_IDEMPOTENT[name]
    server = servers(Answer(answer), Drop(), after=Answer(answer))
    out = run_calls(kind, [server.url], [call, call])  # the second reuses the connection
    assert out.results[0] == result
    assert isinstance(out.results[1], ClusterUnavailable), out.results[1]
    assert MAY_OR_MAY_NOT in str(out.results[1])
    assert len(server.seen) == 2  # one request per call: the dropped one was not sent again


@pytest.mark.parametrize("kind", CLIENTS)
def test_dropped_keep_alive_connection_retries_an_idempotent_call(
    kind: str, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    call, answer, result = IDEMPOTENT["registers.get"]
    server = servers(Answer(answer), Drop(), after=Answer(answer))
    out = run_calls(kind, [server.url], [call, call])
    assert out.results == [result, result]
    assert len(server.seen) == 3


@pytest.mark.parametrize("name", sorted(NOT_IDEMPOTENT))
def test_a_counter_change_after_the_server_closed_an_idle_connection_is_sent_fresh(
    name: str, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    # The blocking client checks a kept-alive connection before it reuses it.
    # (aiohttp, under AsyncClient, usually notices the close itself, but not
    # always within a test's time: not asserted here.)
    kind = "sync"
    call, answer, result = NOT_IDEMPOTENT[name]
    first = AnswerThenClose(answer)
    server = servers(first, after=Answer(answer))

    def second(db: Any) -> Any:
        assert first.closed.wait(5)  # the idle connection is closed before the call
        return call(db)

    out = run_calls(kind, [server.url], [call, second])
    assert out.results == [result, result]  # no "may or may not have been applied" error
    assert len(server.seen) == 2


# -- backoff and giving up -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", CLIENTS)
def test_backoff_is_jittered_exponential_and_bounded(kind: str, sleeps: list[float]) -> None:
    attempts = 12  # enough to reach the cap
    out = run_calls(
        kind, [dead_url(), dead_url()], [lambda db: db.counters.get("c")], attempts=attempts
    )
    (error,) = out.results
    assert isinstance(error, ClusterUnavailable) and "no replica answered" in str(error)
    assert attempts - 1 <= len(sleeps) <= attempts  # one backoff between two attempts
    for i, slept in enumerate(sleeps):
        cap = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**i)
        assert cap / 2 <= slept <= cap, (i, sleeps)
    assert max(sleeps) <= BACKOFF_MAX_S
    assert sleeps[-1] >= BACKOFF_MAX_S / 2  # the cap was reached, not grown past


@pytest.mark.parametrize("kind", CLIENTS)
def test_attempts_exhausted_raise_cluster_unavailable(
    kind: str, servers: Callable[..., Scripted], sleeps: list[float]
) -> None:
    # A POST (which aiohttp never resends on its own), safe for the client to repeat.
    call, _, _ = IDEMPOTENT["sets.add"]
    a, b = servers(after=Drop()), servers(after=Drop())
    out = run_calls(kind, [a.url, b.url], [call])
    (error,) = out.results
    assert isinstance(error, ClusterUnavailable) and "no replica answered" in str(error)
    # ATTEMPTS_DEFAULT requests in all, alternating between the two replicas.
    assert (len(a.seen), len(b.seen)) == (ATTEMPTS_DEFAULT // 2, ATTEMPTS_DEFAULT // 2)

    out = run_calls(kind, [a.url, b.url], [call], attempts=1)
    assert isinstance(out.results[0], ClusterUnavailable)
    assert (len(a.seen), len(b.seen)) == (ATTEMPTS_DEFAULT // 2 + 1, ATTEMPTS_DEFAULT // 2)

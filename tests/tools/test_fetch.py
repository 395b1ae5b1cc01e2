"""``RawFetcher``, the bench's cheap HTTP client, against a tiny scripted asyncio server.

The server reads each request and answers with the next scripted reply, in
the pieces given (so a response can arrive split byte by byte), and can close
the connection after it or mid-way.  Every framing the client must handle
and every way a response can go wrong is covered without a crdtkv server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from crdtkv.tools.bench import fetch
from crdtkv.tools.bench.fetch import RawFetcher, Request, ResponseError
from crdtkv.tools.bench.options import BenchError

TIMEOUT_S = 10.0
GET = Request("GET", "/v1/registers/k", None, 1)
POST = Request("POST", "/v1/counters/c", b'{"delta":1}', 1, "application/json")


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server does for one request: write ``pieces`` (``gap_s`` apart), maybe close."""

    pieces: tuple[bytes, ...] = ()
    close: bool = False
    gap_s: float = 0.0
    hang: bool = False  # answer nothing, keep the connection open


def ok(body: bytes, *headers: str, ctype: str = "application/json") -> bytes:
    extra = "".join(h + "\r\n" for h in headers)
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def whole(data: bytes, close: bool = False) -> Reply:
    return Reply((data,), close)


@dataclass
class Server:
    replies: list[Reply]
    requests: list[bytes] = field(default_factory=list)  # head and body of each, as received
    connections: int = 0
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.append(task)
        try:
            while self.replies:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.requests.append(head + await reader.readexactly(length))
                if not await self._answer(self.replies.pop(0), writer):
                    return
        finally:
            writer.close()

    async def _answer(self, reply: Reply, writer: asyncio.StreamWriter) -> bool:
        """Send one reply; False when the connection is to end."""
        if reply.hang:
            await asyncio.sleep(3600)
        for piece in reply.pieces:
            writer.write(piece)
            await writer.drain()
            if reply.gap_s:
                await asyncio.sleep(reply.gap_s)
        return not reply.close


@asynccontextmanager
async def serving(*replies: Reply) -> AsyncIterator[tuple[Server, str]]:
    server = Server(list(replies))
    srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        srv.close()
        for task in server.handlers:  # a hanging reply waits forever
            task.cancel()
        await asyncio.gather(*server.handlers, return_exceptions=True)
        await srv.wait_closed()


async def test_content_length_response_and_its_headers() -> None:
    body = b'{"value":"x"}'
    reply = ok(body, "X-Crdtkv-Session: tok-1", ctype="application/JSON; charset=utf-8")
    async with serving(whole(reply)) as (server, url):
        f = RawFetcher(url, "secret", TIMEOUT_S)
        assert await f.fetch(POST) == (200, "application/json", body)
        assert f.header("x-crdtkv-session") == "tok-1"
        assert f.header("X-CRDTKV-SESSION") == "tok-1"
        assert f.header("content-length") == str(len(body))
        assert f.header("X-Missing") is None
        await f.close()
    sent = server.requests[0]
    assert sent.startswith(b"POST /v1/counters/c HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer secret\r\n" in sent
    assert b"\r\nContent-Type: application/json\r\n" in sent
    assert sent.endswith(b"\r\nContent-Length: 11\r\n\r\n" + POST.body)  # type: ignore[operator]


async def test_chunked_response_is_joined() -> None:
    reply = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/msgpack\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    )
    async with serving(whole(reply), whole(ok(b"next"))) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert await f.fetch(GET) == (200, "application/msgpack", b"hello world!")
        assert await f.fetch(GET) == (200, "application/json", b"next")  # framing held
        await f.close()
    assert server.connections == 1


async def test_response_split_across_many_small_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    class Counting(fetch._ResponseReader):
        def data_received(self, data: bytes) -> None:
            reads.append(len(data))
            super().data_received(data)

    monkeypatch.setattr(fetch, "_ResponseReader", Counting)
    chunked = (
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    plain = ok(b'{"k":[1,2,3]}', "X-Crdtkv-Session: s")
    bytewise = [
        Reply(tuple(data[i : i + 1] for i in range(len(data))), gap_s=0.001)
        for data in (plain, chunked)
    ]
    async with serving(*bytewise) as (_, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert await f.fetch(GET) == (200, "application/json", b'{"k":[1,2,3]}')
        assert f.header("x-crdtkv-session") == "s"
        assert await f.fetch(GET) == (404, "application/json", b"abcde")
        await f.close()
    assert len(reads) > 20, reads  # the pieces really arrived apart


async def test_keep_alive_reuses_one_connection() -> None:
    replies = [whole(ok(str(i).encode())) for i in range(5)]
    async with serving(*replies) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        for i in range(5):
            assert (await f.fetch(GET))[2] == str(i).encode()
        await f.close()
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_connection_close_makes_the_next_fetch_reconnect() -> None:
    first = ok(b"a", "Connection: close")
    async with serving(whole(first), whole(ok(b"b"))) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert (await f.fetch(GET))[2] == b"a"
        assert (await f.fetch(GET))[2] == b"b"
        await f.close()
    assert server.connections == 2


async def test_body_delimited_by_the_close() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    async with serving(Reply((reply[:30], reply[30:]), close=True)) as (_, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert await f.fetch(GET) == (200, "text/plain", b"all of it")
        await f.close()


async def test_bodiless_and_interim_responses() -> None:
    no_content = b"HTTP/1.1 204 No Content\r\nX-Crdtkv-Session: t\r\n\r\n"
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + ok(b"final")
    async with serving(whole(no_content), whole(hints)) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert await f.fetch(GET) == (204, "", b"")
        assert f.header("x-crdtkv-session") == "t"
        assert await f.fetch(GET) == (200, "application/json", b"final")
        assert f.header("link") is None  # the interim answer's headers are not the response's
        await f.close()
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"<html>not http</html>\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_response_is_a_clear_error(reply: bytes) -> None:
    async with serving(whole(reply), whole(ok(b"fine"))) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        with pytest.raises(ResponseError, match="malformed HTTP response"):
            await f.fetch(GET)
        assert (await f.fetch(GET))[2] == b"fine"  # on a new connection
        await f.close()
    assert server.connections == 2


async def test_connection_closed_mid_body_is_a_clear_error() -> None:
    cut = ok(b"0123456789")[:-4]
    async with serving(Reply((cut,), close=True), whole(ok(b"again"))) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        with pytest.raises(ResponseError, match="closed by the server mid-response"):
            await f.fetch(GET)
        assert (await f.fetch(GET))[2] == b"again"
        await f.close()
    assert server.connections == 2


@pytest.mark.parametrize("cut", [0, 20], ids=["before-response", "mid-head"])
async def test_connection_closed_early_is_a_clear_error(cut: int) -> None:
    reply = Reply((ok(b"x")[:cut],), close=True)
    async with serving(reply) as (_, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        with pytest.raises(ResponseError, match="connection closed by the server"):
            await f.fetch(GET)
        await f.close()


async def test_response_nobody_asked_for_drops_the_connection() -> None:
    doubled = ok(b"one") + ok(b"two")  # two answers to one request
    async with serving(whole(doubled), whole(ok(b"three"))) as (server, url):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert (await f.fetch(GET))[2] == b"one"
        assert (await f.fetch(GET))[2] == b"three"  # not the stray "two"
        await f.close()
    assert server.connections == 2


async def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "MAX_BODY_BYTES", 8)
    monkeypatch.setattr(fetch, "MAX_HEAD_BYTES", 100)
    big_head = ok(b"", "X-Pad: " + "p" * 100)
    async with serving(whole(ok(b"12345678")), whole(ok(b"123456789")), whole(big_head)) as (
        _,
        url,
    ):
        f = RawFetcher(url, None, TIMEOUT_S)
        assert (await f.fetch(GET))[2] == b"12345678"
        with pytest.raises(ResponseError, match="response body over 8 bytes"):
            await f.fetch(GET)
        with pytest.raises(ResponseError, match="response headers over 100 bytes"):
            await f.fetch(GET)
        await f.close()


async def test_timeout_drops_the_connection() -> None:
    async with serving(Reply(hang=True), whole(ok(b"late"))) as (server, url):
        f = RawFetcher(url, None, 0.2)
        with pytest.raises(TimeoutError):
            await f.fetch(GET)
        assert (await f.fetch(GET))[2] == b"late"
        await f.close()
    assert server.connections == 2


def test_refuses_what_it_cannot_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BenchError, match="only http://"):
        RawFetcher("https://127.0.0.1:1", None, 1.0)
    with pytest.raises(ValueError, match="HEAD"):
        head = Request("HEAD", "/", None, 1)
        asyncio.run(RawFetcher("http://127.0.0.1:1", None, 1.0).fetch(head))
    monkeypatch.setattr(fetch, "HAVE_HTTPTOOLS", False)
    with pytest.raises(BenchError, match=r"crdtkv\[bench\]"):
        RawFetcher("http://127.0.0.1:1", None, 1.0)


def test_under_uvloop() -> None:
    """The bench runs on uvloop when it is installed: the same client there."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
        async with serving(whole(ok(b"1")), whole(chunked)) as (server, url):
            f = RawFetcher(url, None, TIMEOUT_S)
            assert await f.fetch(POST) == (200, "application/json", b"1")
            assert await f.fetch(GET) == (200, "", b"hi")
            await f.close()
        assert server.connections == 1

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())

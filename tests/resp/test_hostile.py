"""Hostile bytes on the RESP port of a real replica (raw sockets).

Each bad connection gets one clear ``-ERR ...`` (after the replies to the
commands before the bad bytes) and is closed; a bad argument (not UTF-8) gets
an error reply and the connection stays.  Afterwards another connection still
works and the keyspace did not change.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import redis

from tests.procs import Server
from tests.resp.conftest import wait_ping

KEY = "hostile:k"


def multibulk(*argv: bytes) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)


def exchange(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data``; (everything the server answered, whether it closed the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        # Closed while we were still sending: read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        got = bytearray()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return bytes(got), False
            except ConnectionResetError:
                return bytes(got), True
            if not chunk:
                return bytes(got), True
            got += chunk
            s.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
        return bytes(got), False


@pytest.fixture(scope="module")
def port(crdtkv_server: Server) -> int:
    assert crdtkv_server.resp_port is not None
    return crdtkv_server.resp_port


@pytest.fixture(scope="module")
def client(port: int) -> Iterator[redis.Redis]:
    c = redis.Redis(port=port, decode_responses=True, socket_timeout=10)
    wait_ping(c)
    c.set(KEY, "v")
    c.set("hostile:other", "w")
    yield c
    c.close()


@pytest.fixture
def unchanged(client: redis.Redis) -> Iterator[None]:
    """The keyspace before the test is the keyspace after it, and a new client works."""
    before = (client.dbsize(), client.get(KEY), client.get("hostile:other"))
    yield
    fresh = redis.Redis(port=client.connection_pool.connection_kwargs["port"], socket_timeout=5)
    try:
        assert fresh.ping() is True
        assert (fresh.dbsize(), fresh.get(KEY), fresh.get("hostile:other")) == (
            before[0],
            b"v",
            b"w",
        )
    finally:
        fresh.close()
    assert (client.dbsize(), client.get(KEY), client.get("hostile:other")) == before


PING = multibulk(b"PING")
GET = multibulk(b"GET", KEY.encode())

CLOSING = {
    "garbage": (b"*\x00\xffgarbage\r\n", b"-ERR Protocol error"),
    "bad count": (b"*abc\r\n", b"-ERR Protocol error"),
    "bad length": (b"*1\r\n$x\r\n", b"-ERR Protocol error"),
    "bulk over the limit": (
        b"*3\r\n$3\r\nSET\r\n$9\r\nhostile:k\r\n$999999999\r\n",
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "huge multibulk": (b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
    "count over int64": (b"*99999999999999999999\r\n", b"-ERR Protocol error: invalid multibulk"),
    "negative count": (b"*-5\r\n", b"-ERR Protocol error"),
    "null command": (b"*-1\r\n", b"-ERR Protocol error"),
    "negative length": (b"*1\r\n$-7\r\n", b"-ERR Protocol error"),
    "null argument": (b"*2\r\n$3\r\nGET\r\n$-1\r\n", b"-ERR Protocol error"),
    "integer argument": (b"*1\r\n:1\r\n", b"-ERR Protocol error: expected '$'"),
    "nested array": (b"*1\r\n*1\r\n$4\r\nPING\r\n", b"-ERR Protocol error: expected '$'"),
    "nested huge array": (b"*1\r\n*2147483647\r\n", b"-ERR Protocol error: expected '$'"),
    "unbalanced quotes": (
        b'SET hostile:k "oops\r\n',
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
    "unbalanced single quote": (
        b"SET hostile:k 'oops\r\n",
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
    "text after a closing quote": (
        b'SET hostile:k "a"b\r\n',
        b"-ERR Protocol error: unbalanced quotes in request\r\n",
    ),
    "inline over 64 KiB": (
        b"SET hostile:k " + b"a" * (70 * 1024),
        b"-ERR Protocol error: too big inline request\r\n",
    ),
    "inline line over 64 KiB": (
        b"SET hostile:k " + b"a" * (70 * 1024) + b"\r\n",
        b"-ERR Protocol error: too big inline request\r\n",
    ),
    "request over the value limit": (
        multibulk(b"SET", KEY.encode(), b"x" * (1024 * 1024 + 10)),
        b"-ERR Protocol error: invalid bulk length\r\n",
    ),
    "more arguments than the limit could hold": (
        b"*300000\r\n$4\r\nMSET\r\n" + b"$1\r\nk\r\n" * 1000,
        b"-ERR Protocol error: invalid multibulk length\r\n",
    ),
    "many small arguments over the limit": (
        b"*200000\r\n$4\r\nMSET\r\n" + b"$1\r\nk\r\n" * 199_999,
        b"-ERR Protocol error: a request over 1048576 bytes\r\n",
    ),
}


@pytest.mark.parametrize("name", list(CLOSING))
@pytest.mark.usefixtures("unchanged")
def test_bad_bytes_close_the_connection(port: int, name: str) -> None:
    data, error = CLOSING[name]
    # Requests before the bad bytes, in the same packet, are answered first.  (Inline
    # ones before inline bytes: RESP then inline in one read is not supported.)
    earlier = (PING + GET) if data[:1] == b"*" else b"PING\r\nGET hostile:k\r\n"
    for before, answered in ((b"", b""), (earlier, b"+PONG\r\n$1\r\nv\r\n")):
        t0 = time.monotonic()
        got, closed = exchange(port, before + data + PING)
        assert closed, (name, got)
        assert got.startswith(answered + error), (name, got[:200])
        assert got[len(answered) :].count(b"\r\n") == 1, got[:200]  # nothing after the error
        assert time.monotonic() - t0 < 3


@pytest.mark.usefixtures("unchanged")
def test_huge_header_does_not_stall_others(port: int, client: redis.Redis) -> None:
    """Refused before any allocation: other clients are answered at once meanwhile."""
    socks = []
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"*2147483647\r\n")
            socks.append(s)
        t0 = time.monotonic()
        assert client.get(KEY) == "v"
        for s in socks:
            assert s.recv(100).startswith(b"-ERR Protocol error: invalid multibulk length")
        assert time.monotonic() - t0 < 1.0
    finally:
        for s in socks:
            s.close()


@pytest.mark.usefixtures("unchanged")
def test_non_utf8_argument_is_an_error_reply(port: int) -> None:
    for data in (
        multibulk(b"SET", KEY.encode(), b"\xff\xfe"),
        multibulk(b"SET", b"hostile:\xc3\x28", b"v"),
        multibulk(b"GET", b"\x80"),
        multibulk(b"APPEND", KEY.encode(), b"\xed\xa0\x80"),  # a surrogate
    ):
        got, closed = exchange(port, data + PING + GET, timeout_s=1.0)
        assert not closed
        assert got == (
            b"-ERR crdtkv keys, members and values are UTF-8 text; an argument is not valid UTF-8"
            b"\r\n+PONG\r\n$1\r\nv\r\n"
        ), got


@pytest.mark.usefixtures("unchanged")
def test_unknown_binary_command_is_an_error_reply(port: int) -> None:
    got, closed = exchange(port, b"\xff\xfe garbage\r\n" + multibulk(b"\x00\xff") + PING, 1.0)
    assert not closed
    lines = got.split(b"\r\n")
    assert lines[0].startswith(b"-ERR unknown command '")
    assert lines[1].startswith(b"-ERR unknown command '")
    assert lines[2] == b"+PONG"


@pytest.mark.usefixtures("unchanged")
def test_value_at_the_limit_is_taken(port: int, client: redis.Redis) -> None:
    value = b"y" * (1024 * 1024 - 1024)
    got, closed = exchange(port, multibulk(b"SET", b"hostile:big", value) + PING, 3.0)
    assert (got, closed) == (b"+OK\r\n+PONG\r\n", False)
    assert client.strlen("hostile:big") == len(value)
    assert client.getdel("hostile:big") == value.decode()

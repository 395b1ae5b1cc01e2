"""The HTTP side of ``crdtkv bench``: a request, and two ways to send it on one connection.

``AiohttpFetcher`` goes through aiohttp's client (``--client aiohttp``, the
default); ``RawFetcher`` speaks just enough HTTP/1.1 itself (``--client
raw``): the generator shares the machine with the server, and it costs a
fraction of aiohttp's CPU per request, which is left to the server.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from crdtkv.tools.bench.options import BenchError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["JSON_TYPE", "MSGPACK_TYPE", "AiohttpFetcher", "Fetcher", "RawFetcher", "Request"]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request of the load: what to send, and how many operations it carries."""

    method: str
    path: str
    body: bytes | None
    ops: int  # operations it carries
    content_type: str | None = None


class Fetcher(abc.ABC):
    """One connection's worth of requests: ``fetch`` -> (status, content type, body)."""

    @abc.abstractmethod
    async def fetch(self, req: Request) -> tuple[int, str, bytes]: ...

    async def close(self) -> None:
        return None


class AiohttpFetcher(Fetcher):
    """Requests through the run's shared ``aiohttp.ClientSession`` (its pool keeps them alive)."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def fetch(self, req: Request) -> tuple[int, str, bytes]:
        headers = {"Content-Type": req.content_type} if req.content_type else None
        async with self.session.request(
            req.method, self.url + req.path, data=req.body, headers=headers
        ) as resp:
            return resp.status, resp.content_type, await resp.read()


class _RawProtocol(asyncio.Protocol):
    """The least HTTP/1.1 a keep-alive client needs against aiohttp's server.

    One request at a time; a response must carry Content-Length (aiohttp's
    ``web.Response`` always does).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, str, bytes]] | None = None
        self.closed = False
        self.last_head = b""  # the last response's status line and headers, as sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            waiter.set_exception(ConnectionError("response without Content-Length"))
            return
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        ctype = ""
        k = head.find(b"\r\ncontent-type:")
        if k >= 0:
            m = head.find(b"\r\n", k + 2)
            ctype = head[k + 15 : m if m >= 0 else len(head)].split(b";")[0].strip().decode()
        body = bytes(self.buf[end + 4 : end + 4 + length])
        self.last_head = bytes(self.buf[:end])
        del self.buf[: end + 4 + length]
        waiter.set_result((int(head[9:12]), ctype, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed by the server"))


class RawFetcher(Fetcher):
    """One keep-alive connection spoken to directly: a cheaper client than aiohttp's.

    The generator shares the machine with the server, so every microsecond it
    spends per request is taken from the server; this one spends a quarter to a fifth
    of what aiohttp's client does.
    """

    def __init__(self, url: str, auth_token: str | None, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise BenchError("--client raw: only http:// URLs")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        extra = f"Authorization: Bearer {auth_token}\r\n" if auth_token else ""
        self.common = f"Host: {parts.netloc}\r\n{extra}".encode()
        self.proto: _RawProtocol | None = None
        self.last_head = b""

    def header(self, name: str) -> str | None:
        """A header of the last response (the first one of that name), or None."""
        needle = b"\r\n" + name.lower().encode() + b":"
        head = self.last_head
        i = head.lower().find(needle)
        if i < 0:
            return None
        j = head.find(b"\r\n", i + len(needle))
        return head[i + len(needle) : j if j >= 0 else len(head)].strip().decode("latin-1")

    async def _connect(self) -> _RawProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_RawProtocol, self.host, self.port)
        return proto

    async def fetch(self, req: Request) -> tuple[int, str, bytes]:
        proto = self.proto
        if proto is None or proto.closed:
            proto = self.proto = await self._connect()
        assert proto.transport is not None
        head = f"{req.method} {req.path} HTTP/1.1\r\n".encode() + self.common
        if req.body is not None:
            ctype, size = req.content_type or JSON_TYPE, len(req.body)
            head += f"Content-Type: {ctype}\r\nContent-Length: {size}\r\n\r\n".encode()
            proto.transport.write(head + req.body)
        else:
            proto.transport.write(head + b"\r\n")
        proto.waiter = asyncio.get_running_loop().create_future()
        try:
            result = await asyncio.wait_for(proto.waiter, self.timeout_s)
            self.last_head = proto.last_head
            return result
        except BaseException:
            proto.transport.close()  # the connection's state is unknown now
            self.proto = None
            raise
        finally:
            proto.waiter = None

    async def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None

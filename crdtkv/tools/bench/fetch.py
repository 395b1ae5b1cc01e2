"""The HTTP side of ``crdtkv bench``: a request, and two ways to send it on one connection.

``AiohttpFetcher`` goes through aiohttp's client (``--client aiohttp``, the
default); ``RawFetcher`` (``--client raw``) writes its requests straight to a
keep-alive connection and parses the answers with ``httptools`` (the C HTTP
parser uvicorn uses, from the ``bench`` extra): the generator shares the
machine with the server, and it costs a fraction of aiohttp's CPU per
request, which is left to the server.
"""

from __future__ import annotations

import abc
import asyncio
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from crdtkv.tools.bench.options import BenchError

# The "bench" extra is optional: only --client raw needs httptools.
HAVE_HTTPTOOLS = importlib.util.find_spec("httptools") is not None
if TYPE_CHECKING or HAVE_HTTPTOOLS:
    import httptools

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "JSON_TYPE",
    "MSGPACK_TYPE",
    "AiohttpFetcher",
    "Fetcher",
    "RawFetcher",
    "Request",
    "ResponseError",
]

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"
MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
MAX_BODY_BYTES = 256 * 1024 * 1024  # body of one response


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


class ResponseError(ConnectionError):
    """The server's answer is not a usable HTTP/1.1 response, or the connection ended in it.

    A ``ConnectionError`` (so an ``OSError``): the runner counts it as a failed
    request like a refused or reset connection, and the fetcher reconnects.
    """


Result = tuple[int, str, bytes]  # status, content type (lower case, no parameters), body


class _ResponseReader(asyncio.Protocol):
    """One keep-alive connection: requests written whole, responses parsed by httptools.

    One request at a time (``waiter`` is its answer).  httptools frames each
    response (Content-Length, chunked, none for 1xx/204/304) and reuses its
    state for the next one; this class collects the pieces, enforces the size
    limits and turns every way a response can go wrong into ``ResponseError``.
    A response that ends with the connection (no Content-Length, not chunked)
    is complete when the server closes it cleanly.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Result] | None = None
        self.closed = False
        self.error: ResponseError | None = None  # raised in a parser callback
        self.started = False  # the current response's first byte is in
        self.head_done = False  # ... and all its headers
        self.head_bytes = 0
        self.body_bytes = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.last_headers: list[tuple[bytes, bytes]] = []  # of the last complete response

    # -- asyncio side --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(ResponseError("the server switched protocols (101)"))
        except httptools.HttpParserError as e:
            self.fail(self.error or ResponseError(f"malformed HTTP response: {e}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if exc is None and self.head_done and not self._framed():
            self._complete()  # its body was everything up to the close
        elif exc is not None:
            waiter.set_exception(exc)
        elif self.started:
            waiter.set_exception(ResponseError("connection closed by the server mid-response"))
        else:
            waiter.set_exception(ResponseError("connection closed by the server"))

    def fail(self, error: ResponseError) -> None:
        """The connection's state is unknown: fail the waiting request, drop the connection."""
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    def _raise(self, error: ResponseError) -> None:
        """Stop the parser from a callback: httptools wraps it, ``data_received`` unwraps it."""
        self.error = error
        raise error

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():
            self._raise(ResponseError("a response to no request"))
        self.started = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            self._raise(ResponseError(f"response headers over {MAX_HEAD_BYTES} bytes"))
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY_BYTES:
            self._raise(ResponseError(f"response body over {MAX_BODY_BYTES} bytes"))
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            self._reset()  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            return
        self._complete()
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.closed = True  # "Connection: close" or HTTP/1.0: the next fetch reconnects
            self.transport.close()

    # -- the response --

    def _framed(self) -> bool:
        """The current response says where its body ends (else the close ends it).

        Only asked once its headers are in and it is still incomplete, so never
        of a 1xx, 204 or 304 answer, which end with their headers.
        """
        for name, value in self.headers:
            key = name.lower()
            if key == b"content-length":
                return True
            if key == b"transfer-encoding" and b"chunked" in value.lower():
                return True
        return False

    def _complete(self) -> None:
        ctype = ""
        for name, value in self.headers:
            if len(name) == 12 and name.lower() == b"content-type":
                ctype = value.split(b";", 1)[0].strip().lower().decode("latin-1")
                break
        result = (self.parser.get_status_code(), ctype, b"".join(self.body))
        self.last_headers = self.headers
        self._reset()
        assert self.waiter is not None  # on_message_begin checked it
        self.waiter.set_result(result)

    def _reset(self) -> None:
        self.started = self.head_done = False
        self.head_bytes = self.body_bytes = 0
        self.headers = []
        self.body = []


class RawFetcher(Fetcher):
    """One keep-alive connection spoken to directly: a cheaper client than aiohttp's.

    The generator shares the machine with the server, so every microsecond it
    spends per request is taken from the server; this one writes pre-built
    request bytes and leaves the parsing to httptools' C parser, a fraction of
    what aiohttp's client spends.  A request whose response carries no body
    although its headers announce one (HEAD) is not supported.
    """

    def __init__(self, url: str, auth_token: str | None, timeout_s: float) -> None:
        if not HAVE_HTTPTOOLS:
            raise BenchError("--client raw needs httptools: pip install 'crdtkv[bench]'")
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise BenchError("--client raw: only http:// URLs")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        extra = f"Authorization: Bearer {auth_token}\r\n" if auth_token else ""
        self.common = f"Host: {parts.netloc}\r\n{extra}".encode()
        self.proto: _ResponseReader | None = None
        self.last_headers: list[tuple[bytes, bytes]] = []

    def header(self, name: str) -> str | None:
        """A header of the last response (the first one of that name), or None."""
        key = name.lower().encode("latin-1")
        for k, v in self.last_headers:
            if k.lower() == key:
                return v.strip().decode("latin-1")
        return None

    async def _connect(self) -> _ResponseReader:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_ResponseReader, self.host, self.port)
        return proto

    async def fetch(self, req: Request) -> Result:
        if req.method == "HEAD":
            raise ValueError("--client raw cannot send HEAD requests")
        proto = self.proto
        if proto is None or proto.closed:
            proto = self.proto = await self._connect()
        assert proto.transport is not None
        head = f"{req.method} {req.path} HTTP/1.1\r\n".encode() + self.common
        waiter: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        if req.body is not None:
            ctype, size = req.content_type or JSON_TYPE, len(req.body)
            head += f"Content-Type: {ctype}\r\nContent-Length: {size}\r\n\r\n".encode()
            proto.transport.write(head + req.body)
        else:
            proto.transport.write(head + b"\r\n")
        try:
            result = await asyncio.wait_for(waiter, self.timeout_s)
            self.last_headers = proto.last_headers
            return result
        except BaseException:
            proto.fail(ResponseError("request abandoned"))  # the connection's state is unknown
            self.proto = None
            raise
        finally:
            proto.waiter = None

    async def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None

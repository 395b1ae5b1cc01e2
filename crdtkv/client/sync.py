"""The blocking client: keep-alive ``http.client`` connections, one per replica."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from crdtkv.client._base import ClientBase, idempotent
from crdtkv.client.model import Call, batch_call, result_of
from crdtkv.client.namespaces import (
    Counters,
    Hashes,
    Hlls,
    Keys,
    Lists,
    Registers,
    Sets,
    Vsets,
    Zsets,
)
from crdtkv.errors import ClusterUnavailable, SessionUnavailable

__all__ = ["Client"]

_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Client(ClientBase):
    """Blocking client.  Thread-safe (calls are serialised); one session per client."""

    def __init__(self, urls: Any, **kwargs: Any) -> None:
        super().__init__(urls, **kwargs)
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()
        self.registers = Registers(self)
        self.counters = Counters(self)
        self.sets = Sets(self)
        self.hlls = Hlls(self)
        self.keys = Keys(self)  # key-level operations on any type
        self.zsets = Zsets(self)
        self.hashes = Hashes(self)
        self.lists = Lists(self)
        self.vsets = Vsets(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()

    def batch(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Several ops in one request; each slot holds a result or ``{"error": ...}``."""
        return self.call(batch_call(ops))  # type: ignore[no-any-return]

    # -- transport ---------------------------------------------------------------------
    def call(self, call: Call) -> Any:
        with self._lock:
            return self._call(call)

    def _call(self, call: Call) -> Any:
        last: Exception | None = None
        for attempt in range(self.attempts):
            url = self.url
            try:
                status, headers, data = self._send(url, call)
            except (ConnectionRefusedError, ssl.SSLCertVerificationError) as e:
                # Never reached the server (a certificate is checked before anything is
                # sent): always safe to try the next replica.
                last = e
            except (OSError, http.client.HTTPException) as e:
                if not idempotent(call):
                    raise ClusterUnavailable(
                        f"{url}: {e!r}; the request may or may not have been applied"
                    ) from e
                last = e
            else:
                self._absorb(status, headers)
                body = self._parse(data)
                try:
                    return result_of(call, status, body)
                except SessionUnavailable as e:
                    last = e
            self._failover()
            time.sleep(self._backoff_s(attempt))
        if isinstance(last, SessionUnavailable):
            raise last
        raise ClusterUnavailable(f"no replica answered ({last!r})")

    def _send(self, url: str, call: Call) -> tuple[int, Any, bytes]:
        body = self._body(call)
        headers = self._headers(call)
        for fresh in (False, True):
            conn = self._conn(url, fresh)
            reused = not fresh and getattr(conn, "_crdtkv_used", False)
            if reused and not _still_open(conn):
                # The server closed this idle connection (keep-alive timeout):
                # nothing was sent on it, so any call may go on a fresh one.
                self._drop(url)
                conn, reused = self._conn(url, True), False
            try:
                conn.request(call.method, call.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn._crdtkv_used = True  # type: ignore[attr-defined]
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop(url)
                return resp.status, resp.headers, data
            except _STALE:
                self._drop(url)
                if not reused or not call.idempotent:
                    # A call that must not run twice is not resent: the server may
                    # have read it before the connection dropped (the caller says
                    # "may or may not have been applied").
                    raise
                # A kept-alive connection the server had closed: resend once, fresh.
            except BaseException:
                self._drop(url)
                raise
        raise AssertionError("unreachable")

    def _conn(self, url: str, fresh: bool) -> http.client.HTTPConnection:
        conn = self._conns.get(url)
        if conn is None or fresh:
            parts = urlsplit(url)
            host, port = parts.hostname or "", parts.port
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout_s, context=self.ssl_context
                )
            else:
                conn = http.client.HTTPConnection(host, port, timeout=self.timeout_s)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns[url] = conn
        return conn

    def _drop(self, url: str) -> None:
        conn = self._conns.pop(url, None)
        if conn is not None:
            conn.close()


def _still_open(conn: http.client.HTTPConnection) -> bool:
    """Whether a kept-alive connection still looks open (no EOF or data waiting)."""
    sock = conn.sock
    if sock is None:
        return False
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))  # b"": the server closed it
    except OSError:
        return False

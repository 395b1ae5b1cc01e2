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

from crdtkv.client._base import ClientBase
from crdtkv.client.model import Call
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
from crdtkv.client.routing import Failed, Plan, Reply, Send, Sleep

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
        """Several ops in one request; each slot holds a result or ``{"error": ...}``.
        Sharded: one request per shard that owns some of the keys, results in order."""
        with self._lock:
            return self._drive(self._plan_batch(ops))  # type: ignore[no-any-return]

    # -- transport ---------------------------------------------------------------------
    def call(self, call: Call) -> Any:
        with self._lock:
            return self._drive(self._plan(call))

    def _drive(self, plan: Plan) -> Any:
        """Carry out a plan's steps, blocking; ``Parallel`` plans run one after another."""
        outcome: Any = None
        while True:
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, Send):
                outcome = self._exchange(step)
            elif isinstance(step, Sleep):
                time.sleep(step.seconds)
                outcome = None
            else:
                outcome = [self._drive_catching(p) for p in step.plans]

    def _drive_catching(self, plan: Plan) -> Any:
        try:
            return self._drive(plan)
        except Exception as e:
            return e

    def _exchange(self, step: Send) -> Reply | Failed:
        try:
            reply = Reply(*self._send(step))
            if not step.keep:
                self._drop(step.url)
            return reply
        except (ConnectionRefusedError, ssl.SSLCertVerificationError) as e:
            # Never reached the server (a certificate is checked before anything is
            # sent): always safe to try the next replica.
            return Failed(e, reached=False)
        except (OSError, http.client.HTTPException) as e:
            return Failed(e, reached=True)

    def _send(self, step: Send) -> tuple[int, Any, bytes]:
        url = step.url
        for fresh in (False, True):
            conn = self._conn(url, fresh)
            reused = not fresh and getattr(conn, "_crdtkv_used", False)
            if reused and not _still_open(conn):
                # The server closed this idle connection (keep-alive timeout):
                # nothing was sent on it, so any call may go on a fresh one.
                self._drop(url)
                conn, reused = self._conn(url, True), False
            try:
                conn.request(step.method, step.path, body=step.body, headers=step.headers)
                resp = conn.getresponse()
                data = resp.read()
                conn._crdtkv_used = True  # type: ignore[attr-defined]
                if resp.getheader("Connection", "").lower() == "close":
                    self._drop(url)
                return resp.status, resp.headers, data
            except _STALE:
                self._drop(url)
                if not reused or not step.idempotent:
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

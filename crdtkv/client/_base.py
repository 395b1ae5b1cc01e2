"""What both clients share: options, the session token, failover order."""

from __future__ import annotations

import random
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson

from crdtkv import limits
from crdtkv.client.model import Call
from crdtkv.errors import BadRequest, SessionUnavailable
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER
from crdtkv.tls import TlsError, client_context

ATTEMPTS_MAX = 6  # requests per call across all replicas, before giving up
BACKOFF_BASE_S = 0.05
BACKOFF_MAX_S = 1.0
REFUSED_STATUS = (
    SessionUnavailable.status
)  # the replica served nothing: session_unavailable or stopped


def idempotent(call: Call) -> bool:
    """Safe to send twice: a retry after a connection dropped mid-request cannot
    double-apply it.  The op table says which ops are (counter changes are not);
    batches never are."""
    return call.idempotent


def _ssl_context(ca_file: str | None, context: ssl.SSLContext | None) -> ssl.SSLContext:
    """How https:// replicas are verified: ``context`` as given, else trusting
    ``ca_file`` only, else the system's CAs; host names are checked."""
    if context is not None:
        if ca_file is not None:
            raise BadRequest("give ca_file or ssl_context, not both")
        return context
    try:
        return client_context(ca_file, options=("ca_file", "", ""))
    except TlsError as e:
        raise BadRequest(str(e)) from None


class ClientBase:
    def __init__(
        self,
        urls: Sequence[str] | str,
        *,
        session_token: str | None = None,
        auth_token: str | None = None,
        timeout_s: float = 10.0,
        wait_ms: int | None = None,
        attempts: int = ATTEMPTS_MAX,
        ca_file: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if isinstance(urls, str):
            urls = [urls]
        if not urls:
            raise BadRequest("a client needs at least one replica URL")
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadRequest(f"not an http(s) URL: {u!r}")
        if wait_ms is not None and not 0 <= wait_ms <= limits.WAIT_MS_MAX:
            raise BadRequest(f"wait_ms must be between 0 and {limits.WAIT_MS_MAX}")
        self.urls = [u.rstrip("/") for u in urls]
        self._token = session_token
        self._auth = auth_token
        self.timeout_s = timeout_s
        self.wait_ms = wait_ms
        self.attempts = max(1, attempts)
        # Built only when needed: loading the system's CAs takes tens of ms.
        https = any(u.startswith("https://") for u in self.urls)
        self.ssl_context: ssl.SSLContext | None = (
            _ssl_context(ca_file, ssl_context) if https or ca_file or ssl_context else None
        )
        self._current = 0
        self._rng = random.Random()

    @property
    def session_token(self) -> str | None:
        """The causal session token; pass it to ``Client(urls, session_token=...)`` to resume."""
        return self._token

    @property
    def url(self) -> str:
        """The replica the client talks to now."""
        return self.urls[self._current]

    def _headers(self, call: Call) -> dict[str, str]:
        h = {"Accept": "application/json"}
        if call.body is not None:
            h["Content-Type"] = "application/json"
        if self._token:
            h[SESSION_HEADER] = self._token
        if self.wait_ms is not None:
            h[WAIT_HEADER] = str(self.wait_ms)
        if self._auth:
            h["Authorization"] = f"Bearer {self._auth}"
        return h

    @staticmethod
    def _body(call: Call) -> bytes | None:
        return None if call.body is None else orjson.dumps(call.body)

    def _absorb(self, status: int, headers: Any) -> None:
        # Never adopt a token from a refusal (503: session_unavailable, or a
        # stopped replica): it served nothing, and a token merged with a
        # cut-off replica's vector could never be served anywhere else.
        if status == REFUSED_STATUS:
            return
        token = headers.get(SESSION_HEADER)
        if token:
            self._token = token

    def _failover(self) -> None:
        self._current = (self._current + 1) % len(self.urls)

    def _backoff_s(self, attempt: int) -> float:
        cap = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)
        return self._rng.uniform(cap / 2, cap)

    @staticmethod
    def _parse(data: bytes) -> Any:
        try:
            return orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            return None

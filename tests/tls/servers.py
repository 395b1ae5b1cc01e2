"""``crdtkv serve`` over TLS for tests: a ``Server`` with https:// URLs, and
raw requests with a chosen SSL context (or none: plaintext to a TLS port)."""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.procs import Server, free_ports, wait_line
from tests.tls.certs import Pair, Pki


def context(ca: Path | None, pair: Pair | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca`` only (None: the system's CAs), presenting ``pair``."""
    ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
    if pair is not None:
        ctx.load_cert_chain(str(pair.cert), str(pair.key))
    return ctx


def request(
    url: str,
    method: str = "GET",
    path: str = "/healthz",
    *,
    ctx: ssl.SSLContext | None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; ``ctx`` None sends it in plaintext whatever the URL says."""
    host_port = url.split("://", 1)[1]
    host, _, port = host_port.rpartition(":")
    conn: http.client.HTTPConnection
    if ctx is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    else:
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=ctx)
    try:
        conn.request(method, path, body, dict(headers or {}))
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(raw)
    except ValueError:
        return resp.status, raw


class TlsServer(Server):
    """A ``crdtkv serve`` process with ``--tls-cert``/``--tls-key`` (and more in ``extra``)."""

    def __init__(self, *args: Any, pki: Pki, pair: Pair, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.pki = pki
        self.extra = ["--tls-cert", str(pair.cert), "--tls-key", str(pair.key), *self.extra]
        self.ctx = context(pki.ca)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def wait_serving(self, timeout_s: float = 20.0) -> None:
        assert self.proc is not None
        line = wait_line(
            self.proc,
            f"crdtkv replica {self.replica_id} serving on ",
            timeout_s,
            what=self.replica_id,
            log=self.log_path,
        )
        end = self.url + (f" and rediss://127.0.0.1:{self.resp_port}" if self.resp_port else "")
        assert line.endswith(end), line

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return request(self.url, "GET", path, ctx=self.ctx, **kw)


def tls_mesh(
    ids: list[str],
    root: Path,
    pki: Pki,
    *,
    pairs: list[Pair] | None = None,
    secret: str | None = None,
    extra: list[str] | None = None,
    resp: bool = False,
) -> list[TlsServer]:
    """TLS servers for a fully meshed cluster (not started), trusting ``pki.ca``."""
    ports = free_ports(len(ids) * 2)
    http_ports, resp_ports = ports[: len(ids)], ports[len(ids) :]
    urls = {rid: f"https://127.0.0.1:{p}" for rid, p in zip(ids, http_ports, strict=True)}
    pairs = pairs or [pki.server] * len(ids)
    return [
        TlsServer(
            rid,
            root / rid,
            port=port,
            peers={p: u for p, u in urls.items() if p != rid},
            secret=secret,
            resp_port=resp_port if resp else None,
            extra=["--tls-ca", str(pki.ca), *(extra or [])],
            pki=pki,
            pair=pair,
        )
        for rid, port, resp_port, pair in zip(ids, http_ports, resp_ports, pairs, strict=True)
    ]

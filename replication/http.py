"""The aiohttp shell of replication: push loops, the internal route, HMAC auth.

One background task per peer runs the loop described in
``replication.protocol``: it waits until there is something new (waking on
every group commit, then coalescing for ``coalesce_ms``) or a heartbeat is
due, sends the next message as one HTTP POST, and hands the reply to the
core.  A failed request is retried with bounded, jittered exponential
backoff.  Incoming messages arrive at ``POST /internal/v1/replicate``.

Authentication: with a cluster secret, every request carries
``X-Crdtkv-Peer``, ``X-Crdtkv-Timestamp`` (ms) and ``X-Crdtkv-Signature``:
hex HMAC-SHA256 over ``method, path, timestamp, sha256(body)``.  It is checked
in constant time against the current secret and, during a rotation, the
previous one; a timestamp outside +-30 s is refused (replay window).
Without a secret, traffic is accepted from any configured peer id and a loud
warning is logged at start.  Replies are signed the same way and checked by
the sender.

Versions (``crdtkv.versions``): every request and reply names its wire
format in ``X-Crdtkv-Wire`` and its release in ``X-Crdtkv-Release``.  A
message without them comes from a release before 0.2.0, which speaks wire
format 1.  A format outside ``WIRE_READS`` is refused with
``WireVersionMismatch`` (400, code ``wire_version``) before the signature is
checked or a byte of the body decoded: the signing scheme belongs to the
format too.  The sender logs the refusal, which names both releases and
formats, and keeps retrying with backoff, so the link resumes when one side
is upgraded.  The last release each peer named is in ``/v1/status``.

TLS: peers given as ``https://`` URLs are reached with the ``ssl_context``
the service is given (``crdtkv.tls.client_context``: the peer's certificate
and host name are verified).  With ``client_certs`` (``--tls-peer-auth
mutual``) that context presents this replica's certificate, the listener
asks every client for one (the handshake fails on a certificate that does
not verify against the cluster's CA), and the route refuses, with 401, a
request whose connection brought none: API clients need no certificate,
replicas do.  The HMAC, when a secret is set, is checked as well.

Bodies of 128 bytes and more travel zlib-compressed when that makes them
smaller (``messages.compress``), announced by ``X-Crdtkv-Encoding: zlib``; a
reply is compressed only when its request was (so a replica that sends
plain bodies gets plain replies).  The signature covers the bytes on the
wire, so nothing unauthenticated is ever decompressed.  The header is our
own, not ``Content-Encoding``, which aiohttp would decode by itself, without
our bound.  Requests leave out aiohttp's default ``User-Agent``, ``Accept``
and ``Accept-Encoding`` headers: on a link carrying a dozen operations per
message, headers are a third of the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

import crdtkv.versions as versions
from crdtkv.errors import (
    BadRequest,
    CrdtkvError,
    PayloadTooLarge,
    Unauthorized,
    WireVersionMismatch,
)
from crdtkv.node.aio import Node
from replication import messages
from replication.protocol import SYNC_IDS_PER_BOOT, PeerState, Replication, Settings

__all__ = ["REPLICATE_PATH", "ReplicationService", "sign", "verify"]

log = logging.getLogger("crdtkv.replication")

REPLICATE_PATH = "/internal/v1/replicate"
CONTENT_TYPE = "application/msgpack"
ENCODING_HEADER = "X-Crdtkv-Encoding"
CLOCK_WINDOW_MS = 30_000  # signed requests older or newer than this are refused
REQUEST_TIMEOUT_S = 10.0  # one replication request, including the peer's fsync
BACKOFF_BASE_MS = 50
BACKOFF_MAX_MS = 5_000
# After a wake-up, wait until COALESCE_ENTRIES new entries are ready for the
# peer or COALESCE_MS have passed (checking every COALESCE_STEP_MS), so that
# writes arriving close together travel in one request: each request costs
# about 550 bytes of HTTP headers and an fsync at the receiver.
COALESCE_MS = 10
COALESCE_STEP_MS = 2
COALESCE_ENTRIES = 64


def sign(secret: str, method: str, path: str, ts_ms: int, body: bytes) -> str:
    msg = b"\n".join(
        [method.encode(), path.encode(), str(ts_ms).encode(), hashlib.sha256(body).digest()]
    )
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify(
    secrets: list[str], method: str, path: str, headers: Any, body: bytes, now_ms: int
) -> None:
    """Raise ``Unauthorized`` unless the headers carry a valid, fresh signature."""
    ts_raw = headers.get("X-Crdtkv-Timestamp", "")
    sig = headers.get("X-Crdtkv-Signature", "")
    try:
        ts = int(ts_raw)
    except ValueError:
        raise Unauthorized("replication request without a valid timestamp") from None
    if abs(now_ms - ts) > CLOCK_WINDOW_MS:
        raise Unauthorized("replication request timestamp outside the +-30 s window")
    ok = False
    for secret in secrets:
        # Check every secret (no early exit) so timing does not reveal which matched.
        ok |= hmac.compare_digest(sign(secret, method, path, ts, body), sig)
    if not ok:
        raise Unauthorized("replication request signature does not verify")


class ReplicationService:
    def __init__(
        self,
        node: Node,
        peers: dict[str, str],
        *,
        secret: str | None,
        previous_secret: str | None = None,
        settings: Settings | None = None,
        clock: Callable[[], int] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_certs: bool = False,
    ) -> None:
        self.node = node
        self.ssl_context = ssl_context  # for https:// peers (None: the system's defaults)
        self.client_certs = client_certs  # incoming requests need a verified client cert
        self.urls = dict(peers)
        self.secret = secret
        self.secrets = [s for s in (secret, previous_secret) if s]
        self.clock = clock or node.clock
        self._rng = random.Random()
        # A new boot number each start keeps sync run ids unique across restarts.
        boot = self._rng.randrange(1, SYNC_IDS_PER_BOOT)
        self.core = Replication(node.replica, list(peers), settings, self.clock(), boot=boot)
        node.attach_replication(self.core)  # the node core drives its log, acks and GC
        node.on_durable.append(self._on_durable)
        self._wake = {p: asyncio.Event() for p in peers}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # serialises core calls that span an await
        # What each peer last said it runs: (release, wire format); None until heard.
        self.peer_versions: dict[str, tuple[str, int]] = {}
        node.metrics.register(_ReplicationCollector(self))

    # -- lifecycle -----------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(REPLICATE_PATH, self.handle)

    async def start(self) -> None:
        if not self.secrets and self.urls and self.client_certs:
            log.info("no --cluster-secret: peers are authenticated by their TLS certificates")
        elif not self.secrets and self.urls:
            log.warning(
                "!!! no --cluster-secret: replication traffic is NOT authenticated; "
                "anyone who can reach this port can write to this replica !!!"
            )
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            connector=aiohttp.TCPConnector(
                limit_per_host=2, ssl=self.ssl_context if self.ssl_context is not None else True
            ),
        )
        loop = asyncio.get_running_loop()
        for peer in self.urls:
            self._tasks.append(loop.create_task(self._peer_loop(peer), name=f"push-{peer}"))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()

    def _on_durable(self, entries: list[Any]) -> None:
        if entries:
            for ev in self._wake.values():
                ev.set()

    # -- sending ---------------------------------------------------------------------------
    async def _peer_loop(self, peer: str) -> None:
        heartbeat_s = self.core.settings.heartbeat_ms / 1000
        while True:
            out = self.core.next_message(peer, self.clock())
            if out is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake[peer].wait(), heartbeat_s)
                self._wake[peer].clear()
                await self._coalesce(peer)
                continue
            msg, ready_pos = out
            try:
                await self.node.durable(ready_pos)
                reply = await self._post(peer, messages.encode(msg))
                self.node.peer_reply(peer, reply)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a down or misbehaving peer must not stop the loop
                self.core.request_failed(peer)
                failures = self.core.peers[peer].failures
                delay_ms = min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** min(failures, 10))
                delay_ms = self._rng.uniform(delay_ms / 2, delay_ms)
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("replication to %s failing (%d in a row): %s", peer, failures, e)
                await asyncio.sleep(delay_ms / 1000)

    async def _coalesce(self, peer: str) -> None:
        core, st = self.core, self.core.peers[peer]
        for _ in range(COALESCE_MS // COALESCE_STEP_MS):
            if core.durable_pos - st.acked >= COALESCE_ENTRIES:
                return
            await asyncio.sleep(COALESCE_STEP_MS / 1000)

    async def _post(self, peer: str, plain: bytes) -> messages.Message:
        assert self._session is not None
        body, encoding = messages.compress(plain)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "X-Crdtkv-Peer": self.node.replica.replica_id,
            **_VERSION_HEADERS,
        }
        if encoding is not None:
            headers[ENCODING_HEADER] = encoding
        if self.secret:
            ts = int(time.time() * 1000)
            headers["X-Crdtkv-Timestamp"] = str(ts)
            headers["X-Crdtkv-Signature"] = sign(self.secret, "POST", REPLICATE_PATH, ts, body)
        url = self.urls[peer].rstrip("/") + REPLICATE_PATH
        st = self.core.peers[peer]
        async with self._session.post(url, data=body, headers=headers) as resp:
            data = await read_limited(resp.content, messages.MESSAGE_BYTES_MAX + 1)
            st.bytes_sent += len(body)
            st.bytes_received += len(data)
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {_refusal_text(data)}")
            self._heard_version(peer, resp.headers, "reply")
            if self.secrets:
                verify(self.secrets, "REPLY", REPLICATE_PATH, resp.headers, data, _now_ms())
            return messages.decode(messages.decompress(data, resp.headers.get(ENCODING_HEADER)))

    # -- receiving ---------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.Response:
        try:
            peer, wire = await self._authenticate(request)
            encoding = request.headers.get(ENCODING_HEADER)
            msg = messages.decode(messages.decompress(wire, encoding))
            reply = await self.node.peer_message(peer, msg)  # durable before it leaves
            self.core.peers[peer].bytes_received += len(wire)
        except CrdtkvError as e:
            if isinstance(e, Unauthorized | WireVersionMismatch):
                log.warning("refused replication request: %s", e.message)
            return web.json_response(
                {"error": {"code": e.code, "message": e.message}},
                status=e.status,
                headers=_VERSION_HEADERS,
            )
        out, out_encoding = messages.encode(reply), None
        if encoding is not None:  # the sender understands compressed bodies
            out, out_encoding = messages.compress(out)
        self.core.peers[peer].bytes_sent += len(out)
        # "Server" replaces aiohttp's longer default: it goes out with every reply.
        headers = {"Content-Type": CONTENT_TYPE, "Server": "crdtkv", **_VERSION_HEADERS}
        if out_encoding is not None:
            headers[ENCODING_HEADER] = out_encoding
        if self.secret:
            ts = _now_ms()
            headers["X-Crdtkv-Timestamp"] = str(ts)
            headers["X-Crdtkv-Signature"] = sign(self.secret, "REPLY", REPLICATE_PATH, ts, out)
        return web.Response(body=out, headers=headers)

    async def _authenticate(self, request: web.Request) -> tuple[str, bytes]:
        if self.client_certs and not _client_cert(request):
            raise Unauthorized("replication needs a client certificate (mutual TLS)")
        peer = request.headers.get("X-Crdtkv-Peer", "")
        if peer not in self.urls:
            raise Unauthorized(f"replica {peer[:64]!r} is not a configured peer")
        self._heard_version(peer, request.headers, "request")
        if request.content_length is not None and (
            request.content_length > messages.MESSAGE_BYTES_MAX
        ):
            raise PayloadTooLarge("replication message over the size limit")
        body = await read_limited(request.content, messages.MESSAGE_BYTES_MAX + 1)
        if len(body) > messages.MESSAGE_BYTES_MAX:
            raise PayloadTooLarge("replication message over the size limit")
        if self.secrets:
            verify(self.secrets, request.method, request.path, request.headers, body, _now_ms())
        if request.content_type != CONTENT_TYPE:
            raise BadRequest(f"replication bodies are {CONTENT_TYPE}")
        return peer, body

    def _heard_version(self, peer: str, headers: Any, what: str) -> None:
        """Note the release and wire format a peer's ``what`` names; refuse a format
        this release does not read (``WireVersionMismatch``, naming both sides)."""
        raw = headers.get(versions.WIRE_HEADER)
        release = str(headers.get(versions.RELEASE_HEADER, "") or "")[:32] or "before 0.2.0"
        try:
            fmt = versions.WIRE_IMPLICIT if raw is None else int(raw)
        except ValueError:
            fmt = -1
        self.peer_versions[peer] = (release, fmt)
        if not versions.wire_accepted(fmt):
            lo, hi = versions.WIRE_READS
            reads = f"format {lo}" if lo == hi else f"formats {lo} to {hi}"
            shown = repr(str(raw)[:16]) if fmt < 0 else str(fmt)
            raise WireVersionMismatch(
                f"replica {peer[:64]!r} runs crdtkv {release} and sent a replication {what} "
                f"in wire format {shown}; this replica "
                f"({self.node.replica.replica_id!r}, crdtkv {versions.RELEASE}) sends wire "
                f"format {versions.WIRE_FORMAT} and reads {reads}: run releases that share a "
                "wire format (docs/operations.md, Upgrades)"
            )

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        out: dict[str, dict[str, Any]] = {}
        for p, st in self.core.peers.items():
            heard = self.peer_versions.get(p)
            out[p] = {
                "url": self.urls[p],
                "acked": st.acked,
                "lag_ops": self.core.lag_ops(p),
                "reachable": self.core.reachable(p, now),
                "release": heard[0] if heard else None,
                "wire_format": heard[1] if heard else None,
            }
        return out


_VERSION_HEADERS = {
    versions.WIRE_HEADER: str(versions.WIRE_FORMAT),
    versions.RELEASE_HEADER: versions.RELEASE,
}


def _refusal_text(data: bytes) -> str:
    """A refused request's reason: the JSON error's code and message, or its first bytes."""
    try:
        err = orjson.loads(data)["error"]
        return f"{err['code']}: {str(err['message'])[:600]}"
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return repr(data[:200])


def _client_cert(request: web.Request) -> bool:
    """The connection carries a client certificate the TLS handshake verified."""
    transport = request.transport
    # getpeercert(): None without a certificate, {} when it was not verified.
    return transport is not None and bool(transport.get_extra_info("peercert"))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# Per-peer families: name, type, help, and the value read from the core.
_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
_PER_PEER: list[tuple[str, _Family, str, Callable[[Replication, PeerState, int], float]]] = [
    (
        "crdtkv_replication_lag_seconds",
        GaugeMetricFamily,
        "Age of the oldest entry a peer has not acknowledged",
        lambda core, p, now: core.lag_ms(p.peer_id, now) / 1000,
    ),
    (
        "crdtkv_replication_bytes_sent",
        CounterMetricFamily,
        "Replication bytes sent to a peer",
        lambda core, p, now: p.bytes_sent,
    ),
    (
        "crdtkv_replication_bytes_received",
        CounterMetricFamily,
        "Replication bytes received from a peer",
        lambda core, p, now: p.bytes_received,
    ),
    (
        "crdtkv_replication_messages_sent",
        CounterMetricFamily,
        "Replication requests sent to a peer",
        lambda core, p, now: p.messages_sent,
    ),
    (
        "crdtkv_replication_messages_received",
        CounterMetricFamily,
        "Replication messages received from a peer",
        lambda core, p, now: p.messages_received,
    ),
    (
        "crdtkv_replication_syncs_completed",
        CounterMetricFamily,
        "Catch-up state syncs completed towards a peer",
        lambda core, p, now: p.syncs_completed,
    ),
    (
        "crdtkv_replication_sync_bytes_shipped",
        CounterMetricFamily,
        "State bytes shipped by catch-up syncs",
        lambda core, p, now: p.sync_bytes_shipped,
    ),
]
# Replica-wide families: name, type, help, and the value read from the core.
_TOTALS: list[tuple[str, _Family, str, Callable[[Replication], float]]] = [
    (
        "crdtkv_replication_log_entries",
        GaugeMetricFamily,
        "Retained delta log entries",
        lambda core: len(core.log),
    ),
    (
        "crdtkv_replication_log_bytes",
        GaugeMetricFamily,
        "Retained delta log bytes",
        lambda core: core.log.bytes,
    ),
]


class _ReplicationCollector:
    """Replication metrics, read from the core at scrape time (``node.metrics``)."""

    def __init__(self, service: ReplicationService) -> None:
        self._s = service

    @staticmethod
    def describe() -> list[Metric]:
        per_peer = [kind(name, doc, labels=["peer"]) for name, kind, doc, _ in _PER_PEER]
        return [*per_peer, *(kind(name, doc) for name, kind, doc, _ in _TOTALS)]

    def collect(self) -> Iterator[Metric]:
        core, now = self._s.core, self._s.clock()
        for name, kind, doc, peer_value in _PER_PEER:
            family = kind(name, doc, labels=["peer"])
            for peer in core.peers.values():
                family.add_metric([peer.peer_id], float(peer_value(core, peer, now)))
            yield family
        for name, kind, doc, value in _TOTALS:
            yield kind(name, doc, value=value(core))


async def read_limited(stream: Any, limit: int) -> bytes:
    """The whole body, or its first ``limit`` bytes or more if it is longer.

    ``StreamReader.read(n)`` returns what has arrived so far, not n bytes: a large
    message read with it alone is cut short (and then fails its signature)."""
    parts: list[bytes] = []
    size = 0
    while size < limit:
        block = await stream.read(limit - size)
        if not block:
            break
        parts.append(block)
        size += len(block)
    return b"".join(parts)

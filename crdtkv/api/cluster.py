"""The cluster map's life in a running process: change, persist, spread, catch up.

Routes (``add_cluster_routes``):

- ``GET /v1/cluster/map``: the map this process holds (``routes.cluster_view``).
  A request signed with the cluster secret (as ``POST`` below) passes without
  an auth token and gets a signed reply: that is how processes ask each other.
- ``POST /v1/cluster/map`` (internal): the body is a new map's JSON.  Signed
  with the cluster secret the way replication requests are
  (``replication.http.sign``: ``X-Crdtkv-Peer``, ``X-Crdtkv-Timestamp``,
  ``X-Crdtkv-Signature``); unsigned or badly signed: 401; a process without
  a cluster secret takes no map over HTTP: 403.  A map the process refuses
  for itself (it would drop it or move it to another shard) or a malformed
  one: 400.  An older map, or another map of the same epoch: 409
  ``stale_map`` with the held map in ``error.map``.  A newer one is
  persisted (meta key ``cluster_map``, synced) and then taken
  (``ClusterState.set_map``) before the 200 ``{"epoch", "changed"}``.

Spreading (``MapSync``): the process that takes a new map from anyone but a
process of the cluster (an operator: ``crdtkv cluster-map set``) pushes it
to every other process of the new map and of the old one, retrying with
jittered exponential backoff until each has it (a 200, or a 409 naming a map
at least as new).  Every process also asks every other process for its map
at start and every ``POLL_S`` seconds: it takes a newer map it sees (so a
process that was down catches up), and pushes its own to one that is
behind.  A newer map seen anywhere wins; a process never goes back.

The peers a process replicates with are fixed at its start (its shard's
replicas in the other regions of the map it started with); a map that
changes them is taken, and a warning says to restart the process.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from prometheus_client.core import GaugeMetricFamily, Metric

from crdtkv.api.limits import read_body
from crdtkv.api.routes import cluster_view
from crdtkv.api.state import CONFIG, NODE, ROUTE_WRITES
from crdtkv.cluster.map import ClusterMap, MapError
from crdtkv.cluster.state import ClusterState
from crdtkv.errors import BadRequest, CrdtkvError, Forbidden, StaleMap, Unauthorized
from crdtkv.node import Node
from crdtkv.replica.persist import cluster_map_batch
from replication.http import CLOCK_WINDOW_MS, sign

__all__ = [
    "CLUSTER_MAP_PATH",
    "MAP_SYNC",
    "PEER_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "MapSync",
    "add_cluster_routes",
    "signed_headers",
    "verify_signature",
]

log = logging.getLogger("crdtkv.cluster")

CLUSTER_MAP_PATH = "/v1/cluster/map"
PEER_HEADER = "X-Crdtkv-Peer"
TIMESTAMP_HEADER = "X-Crdtkv-Timestamp"
SIGNATURE_HEADER = "X-Crdtkv-Signature"
MAP_BYTES_MAX = 4 * 1024 * 1024  # a map's JSON (16384 single-slot ranges are ~100 kB)
POLL_S = 3.0  # how often a process asks the others for their maps (jittered: 0.5x to 1x)
REQUEST_TIMEOUT_S = 5.0
PUSH_BACKOFF_BASE_MS = 100
PUSH_BACKOFF_MAX_MS = 5_000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed_headers(secret: str | None, sender: str, method: str, body: bytes) -> dict[str, str]:
    """The headers of a request to ``/v1/cluster/map`` from ``sender`` (signed with
    ``secret`` when there is one)."""
    headers = {PEER_HEADER: sender}
    if secret:
        ts = _now_ms()
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign(secret, method, CLUSTER_MAP_PATH, ts, body)
    return headers


def verify_signature(secrets: list[str], method: str, headers: Any, body: bytes) -> None:
    """``Unauthorized`` unless ``headers`` carry a fresh signature by one of ``secrets``
    of (``method``, the map path, the timestamp, ``body``)."""
    sig = headers.get(SIGNATURE_HEADER, "")
    if not sig:
        raise Unauthorized(
            "cluster map requests are signed with the cluster secret"
            " (crdtkv cluster-map set --cluster-secret)"
        )
    try:
        ts = int(headers.get(TIMESTAMP_HEADER, ""))
    except ValueError:
        raise Unauthorized("cluster map request without a valid timestamp") from None
    if abs(_now_ms() - ts) > CLOCK_WINDOW_MS:
        raise Unauthorized("cluster map request timestamp outside the +-30 s window")
    ok = False
    for secret in secrets:  # every secret, no early exit: timing reveals nothing
        ok |= hmac.compare_digest(sign(secret, method, CLUSTER_MAP_PATH, ts, body), sig)
    if not ok:
        raise Unauthorized("cluster map request signature does not verify")


def _secrets(request: web.Request) -> list[str]:
    config = request.app[CONFIG]
    return [s for s in (config.cluster_secret, config.cluster_secret_previous) if s]


def _check_internal(request: web.Request, body: bytes) -> None:
    """The checks of a signed request: the secret, mutual TLS's client certificate."""
    config = request.app[CONFIG]
    secrets = _secrets(request)
    if not secrets:
        raise Forbidden(
            "this replica has no --cluster-secret, so it takes no cluster map over HTTP:"
            " restart it with the new --cluster-map file"
        )
    if config.tls_peer_auth == "mutual":
        transport = request.transport
        if transport is None or not transport.get_extra_info("peercert"):
            raise Unauthorized("cluster map requests need a client certificate (mutual TLS)")
    verify_signature(secrets, request.method, request.headers, body)


def _signed_json(request: web.Request, obj: object, status: int = 200) -> web.Response:
    """A JSON response, signed (method ``REPLY``) when the request was signed."""
    body = orjson.dumps(obj)
    headers: dict[str, str] = {}
    secret = request.app[CONFIG].cluster_secret
    if secret and SIGNATURE_HEADER in request.headers:
        ts = _now_ms()
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign(secret, "REPLY", CLUSTER_MAP_PATH, ts, body)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def is_internal(request: web.Request) -> bool:
    """A request the app's auth guard lets through: it carries its own authentication
    (the map push, and a signed map read)."""
    return request.path == CLUSTER_MAP_PATH and (
        request.method == "POST" or SIGNATURE_HEADER in request.headers
    )


async def get_map(request: web.Request) -> web.StreamResponse:
    if SIGNATURE_HEADER in request.headers:
        _check_internal(request, b"")
    return _signed_json(request, cluster_view(request.app[NODE]))


async def post_map(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, MAP_BYTES_MAX)
    _check_internal(request, body)
    sync = request.app.get(MAP_SYNC)
    if sync is None:
        raise BadRequest("this replica is not sharded (started without --cluster-map)")
    try:
        new = ClusterMap.from_json(orjson.loads(body))
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the cluster map is not JSON: {e}") from None
    except MapError as e:
        raise BadRequest(f"cluster map: {e}") from None
    sender = request.headers.get(PEER_HEADER, "")[:64] or "an unnamed sender"
    old = sync.state.map
    try:
        changed = await sync.adopt(new, f"POST from {sender}")
    except StaleMap as e:
        # Signed like a 200: the sender may take the held map from it.
        return _signed_json(request, {"error": {**_error(e), "map": e.held}}, status=409)
    except MapError as e:
        raise BadRequest(str(e)) from None
    if changed and not (old.has_node(sender) or new.has_node(sender)):
        sync.spread(old)  # an operator's change: this process spreads it
    return _signed_json(request, {"epoch": sync.state.epoch, "changed": changed})


def _error(e: CrdtkvError) -> dict[str, Any]:
    return {"code": e.code, "message": e.message}


def add_cluster_routes(app: web.Application) -> None:
    writes = app[ROUTE_WRITES]
    writes[app.router.add_get(CLUSTER_MAP_PATH, get_map, allow_head=False)] = False
    # Authenticated by its signature (is_internal), not by a user's token.
    writes[app.router.add_post(CLUSTER_MAP_PATH, post_map)] = False


# -- the process's side: adopt, persist, spread, poll ------------------------------------------


class MapSync:
    """Keeps this process's map current: ``adopt`` (checked, persisted, then taken),
    pushes to the others after an operator's change, and the poll loop."""

    def __init__(
        self,
        node: Node,
        state: ClusterState,
        *,
        secret: str | None,
        previous_secret: str | None = None,
        peers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.node = node
        self.state = state
        self.secret = secret
        self.secrets = [s for s in (secret, previous_secret) if s]
        self.peers = dict(peers or {})  # whom replication runs with (fixed at start)
        self.ssl_context = ssl_context
        self.poll_s = poll_s
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._pushes: dict[str, asyncio.Task[None]] = {}
        self._push_urls: dict[str, str] = {}
        self._poll_task: asyncio.Task[None] | None = None
        self._rng = random.Random()
        self._refused_epochs: set[int] = set()  # maps seen that this process refuses
        self.pushes_done = 0
        self.maps_taken = 0
        # Called after each map taken (the slot mover forwards what is no longer ours).
        self.on_change: list[Callable[[], None]] = []
        node.metrics.register(_MapCollector(self))

    @property
    def me(self) -> str:
        return self.state.me_id

    # -- taking a map ---------------------------------------------------------------------
    async def adopt(self, new: ClusterMap, source: str) -> bool:
        """Take ``new`` if it is newer: persisted (synced) first, then set.  False if it
        is the map held; ``StaleMap`` if it is older or conflicts; MapError if this
        process cannot take it (it drops it or moves its shard)."""
        async with self._lock:
            old = self.state.map
            try:
                if not self.state.check_map(new):
                    return False
            except MapError as e:
                if new.epoch <= old.epoch:
                    raise StaleMap(str(e), held=old.to_json()) from None
                raise
            await self.node.write_meta_batch(cluster_map_batch(new.to_json()))
            self.state.set_map(new)
            self.maps_taken += 1
            for callback in self.on_change:
                callback()
            shard = self.state.shard.id
            log.info(
                "cluster map: epoch %d -> %d (%s); shard %s serves slots %s",
                old.epoch,
                new.epoch,
                source,
                shard,
                _ranges(new, shard),
            )
            self._warn_if_peers_changed(new)
            return True

    def _warn_if_peers_changed(self, new: ClusterMap) -> None:
        wanted = {n.id: n.http for n in new.peers_of(self.me)}
        if wanted != self.peers:
            log.warning(
                "cluster map epoch %d changes the replicas this process replicates with"
                " (%s; running with %s): restart it to replicate with them",
                new.epoch,
                _peers_text(wanted),
                _peers_text(self.peers),
            )

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            connector=aiohttp.TCPConnector(
                limit_per_host=2, ssl=self.ssl_context if self.ssl_context is not None else True
            ),
        )
        if not self.secrets:
            log.warning(
                "no --cluster-secret: this process takes no cluster map over HTTP; it still"
                " asks the others for theirs (unauthenticated)"
            )
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_loop(), name="map-poll")

    async def stop(self) -> None:
        tasks = [t for t in (self._poll_task, *self._pushes.values()) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._pushes.clear()
        self._poll_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- pushing -----------------------------------------------------------------------------
    def spread(self, old: ClusterMap) -> None:
        """Push the map held to every other process of it, and to those of ``old``
        (the map before it) that it dropped, until each has it."""
        for n in self.state.map.nodes():
            if n.id != self.me:
                self._push(n.id, n.http)
        for n in old.nodes():
            if n.id != self.me and not self.state.map.has_node(n.id):
                self._push(n.id, n.http)

    def _push(self, node_id: str, url: str) -> None:
        self._push_urls[node_id] = url
        task = self._pushes.get(node_id)
        if task is not None and not task.done():
            return  # it sends the newest map at its next attempt
        if self._session is None:
            return  # not started, or stopping
        self._pushes[node_id] = asyncio.get_running_loop().create_task(
            self._push_loop(node_id), name=f"map-push-{node_id}"
        )

    async def _push_loop(self, node_id: str) -> None:
        failures = 0
        while True:
            m = self.state.map
            url = self._push_urls[node_id]
            try:
                status, reply = await self._request("POST", url, orjson.dumps(m.to_json()))
            except asyncio.CancelledError:
                raise
            except Exception as e:
                status, reply = 0, {"error": {"message": f"{type(e).__name__}: {e}"}}
            held = _held_epoch(status, reply)
            if status == 200 or (status == 409 and held is not None and held >= m.epoch):
                if status == 409 and held is not None and held > self.state.epoch:
                    await self._take(reply["error"]["map"], f"the 409 of {node_id}")
                if self.state.epoch <= m.epoch:
                    self.pushes_done += 1
                    log.info("cluster map epoch %d pushed to %s", m.epoch, node_id)
                    return
                continue  # a newer map arrived meanwhile: push that one
            if status == 400:
                log.error(
                    "cluster map epoch %d: %s refuses it: %s", m.epoch, node_id, _message(reply)
                )
                return
            failures += 1
            if failures in (1, 10) or failures % 100 == 0:
                log.warning(
                    "cluster map epoch %d: push to %s failing (%d in a row): %s",
                    m.epoch,
                    node_id,
                    failures,
                    f"HTTP {status}: {_message(reply)}" if status else _message(reply),
                )
            delay_ms = min(PUSH_BACKOFF_MAX_MS, PUSH_BACKOFF_BASE_MS * 2 ** min(failures, 10))
            await asyncio.sleep(self._rng.uniform(delay_ms / 2, delay_ms) / 1000)

    # -- polling -----------------------------------------------------------------------------
    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the loop
                log.exception("cluster map poll failed")
            await asyncio.sleep(self._rng.uniform(self.poll_s / 2, self.poll_s))

    async def poll_once(self) -> None:
        """Ask every other process of the map for its map: take a newer one, and push
        ours to one that is behind."""
        others = [n for n in self.state.map.nodes() if n.id != self.me]
        results = await asyncio.gather(
            *(self._request("GET", n.http) for n in others), return_exceptions=True
        )
        for n, result in zip(others, results, strict=True):
            if isinstance(result, BaseException):
                continue  # down or unreachable: asked again next round
            status, reply = result
            if status != 200 or not isinstance(reply, dict) or not reply.get("enabled"):
                continue
            epoch = reply.get("epoch")
            if not isinstance(epoch, int):
                continue
            if epoch > self.state.epoch:
                await self._take(reply.get("map"), n.id)
            elif epoch < self.state.epoch and self.secret:
                self._push(n.id, n.http)

    async def _take(self, raw: object, source: str) -> None:
        """Take the map ``raw`` (JSON) seen at ``source`` if it is newer."""
        try:
            new = ClusterMap.from_json(raw)
        except MapError as e:
            log.warning("cluster map from %s does not parse: %s", source, e)
            return
        if new.epoch in self._refused_epochs:
            return
        try:
            await self.adopt(new, f"seen at {source}")  # the origin spreads; pollers repair
        except (MapError, StaleMap) as e:
            self._refused_epochs.add(new.epoch)
            log.error("cluster map epoch %d (seen at %s) refused: %s", new.epoch, source, e)

    # -- HTTP --------------------------------------------------------------------------------
    async def _request(self, method: str, base: str, body: bytes = b"") -> tuple[int, Any]:
        if self._session is None:
            raise RuntimeError("stopped")
        headers = signed_headers(self.secret, self.me, method, body)
        if body:
            headers["Content-Type"] = "application/json"
        url = base.rstrip("/") + CLUSTER_MAP_PATH
        async with self._session.request(method, url, data=body or None, headers=headers) as r:
            data = await r.content.read(MAP_BYTES_MAX + 1)
            if len(data) > MAP_BYTES_MAX:
                raise RuntimeError("cluster map reply over the size limit")
            if self.secrets and r.status in (200, 409):
                # What we may take a map from must come from a process with the secret.
                verify_signature(self.secrets, "REPLY", r.headers, data)
            try:
                return r.status, orjson.loads(data)
            except orjson.JSONDecodeError:
                return r.status, {"error": {"message": repr(data[:200])}}


def _held_epoch(status: int, reply: Any) -> int | None:
    if status == 200 and isinstance(reply, dict):
        e = reply.get("epoch")
        return e if isinstance(e, int) else None
    if status == 409 and isinstance(reply, dict):
        m = reply.get("error", {}).get("map")
        e = m.get("epoch") if isinstance(m, dict) else None
        return e if isinstance(e, int) else None
    return None


def _message(reply: Any) -> str:
    if isinstance(reply, dict) and isinstance(reply.get("error"), dict):
        return str(reply["error"].get("message", ""))[:300]
    return str(reply)[:300]


def _ranges(m: ClusterMap, shard: str) -> str:
    from crdtkv.cluster.slots import format_ranges

    return format_ranges(m.slots_of(shard)) or "none"


def _peers_text(peers: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(peers.items())) or "none"


_EPOCH_HELP = "Epoch of the cluster map this process holds"
_SLOTS_HELP = "Hash slots this process's shard owns in its map"


class _MapCollector:
    """``crdtkv_cluster_epoch`` and ``crdtkv_cluster_slots`` (owned), at scrape time."""

    def __init__(self, sync: MapSync) -> None:
        self._s = sync

    @staticmethod
    def describe() -> list[Metric]:
        return [
            GaugeMetricFamily("crdtkv_cluster_epoch", _EPOCH_HELP),
            GaugeMetricFamily("crdtkv_cluster_slots", _SLOTS_HELP),
        ]

    def collect(self) -> Iterator[Metric]:
        st = self._s.state
        yield GaugeMetricFamily("crdtkv_cluster_epoch", _EPOCH_HELP, value=st.epoch)
        slots = len(st.map.slots_of(st.shard.id))
        yield GaugeMetricFamily("crdtkv_cluster_slots", _SLOTS_HELP, value=slots)


MAP_SYNC = web.AppKey("crdtkv.map_sync", MapSync)

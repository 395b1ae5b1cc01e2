"""A fault-injecting HTTP proxy in front of one directed replication link.

Replica ``a`` is started with ``--peer b=http://127.0.0.1:<port of proxy
a>b>``: every replication request from a to b, and its reply, passes the
proxy of link (a, b).  Replication is HTTP/1.1 with one request in flight
per peer (``replication.http``), so the proxy works at the level of HTTP
requests (an aiohttp server in front, the shared aiohttp client behind), not
TCP bytes.  ``tc netem`` is not needed, nor root.

What a ``Link`` does to each request, in order (its fields are read on every
request, so a test or a schedule can change them at any time):

- ``blocked`` (a partition): the sender gets 503 at once, nothing is
  forwarded;
- ``latency_ms`` + up to ``jitter_ms``: a delay before forwarding, and
  another before the reply goes back (a geo link);
- ``loss``: the request is dropped (503, not forwarded) with probability
  ``loss/2``, and otherwise its reply, after the target applied the
  request, with probability ``loss/2``;
- ``reset``: the connection to the sender is aborted mid-request (it sees
  the server disconnect), after forwarding the request half of the time;
- ``dup``: the target gets the request twice, the copy right away or
  replayed up to ``dup_delay_ms`` later, after the reply went back.
  Replication requests are HMAC-signed with a timestamp (a +-30 s replay
  window), and a replayed copy is well within it: the receiver must take it
  and it must change nothing;
- ``reorder``: the sender gets 503 at once (it gives up and retries, with
  back-off), while the request is held for up to ``reorder_ms`` and
  delivered only then, so requests sent after it overtake it.

``counts`` tallies what was injected, by kind.  ``ProxyMesh`` runs one proxy
per directed link of a set of replicas on an event loop of its own (a
thread), for tests that drive real processes synchronously
(tests/replication/test_types_real.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

__all__ = ["FAULT_COUNTS", "HOP_HEADERS", "Link", "Proxy", "ProxyMesh"]

HOP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)
# The kinds ``Link.counts`` tallies.
FAULT_COUNTS = (
    "blocked",
    "delayed",
    "dropped_request",
    "dropped_reply",
    "reset",
    "duplicated",
    "reordered",
)


@dataclass
class Link:
    src: str
    dst: str
    target: str  # the destination replica's base URL
    latency_ms: int = 0
    jitter_ms: int = 0
    loss: float = 0.0  # the request is dropped with loss/2, else the reply with loss/2
    dup: float = 0.0  # a request is delivered twice with this probability
    dup_delay_ms: int = 0  # the copy is replayed up to this much later (0: right away)
    reset: float = 0.0  # the sender's connection is aborted mid-request with this probability
    reorder: float = 0.0  # a request is held back (the sender told 503) with this probability
    reorder_ms: int = 500  # ... for up to this long
    blocked: bool = False
    forwarded: int = 0  # requests the target answered
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def dropped(self) -> int:
        """Requests or replies the sender did not get (blocked, lost, reset, held back)."""
        c = self.counts
        return (
            c["blocked"] + c["dropped_request"] + c["dropped_reply"] + c["reset"] + c["reordered"]
        )

    def calm(self) -> None:
        """No more faults on this link (the heal): latency stays."""
        self.blocked = False
        self.loss = self.dup = self.reset = self.reorder = 0.0


class Proxy:
    """The proxy of one link: ``start`` listens on ``port``, ``stop`` closes it."""

    def __init__(
        self, link: Link, port: int, rng: random.Random, session: aiohttp.ClientSession
    ) -> None:
        self.link = link
        self.port = port
        self.rng = rng
        self.session = session
        self.runner: web.AppRunner | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        for t in list(self.tasks):
            with contextlib.suppress(BaseException):
                await t
        if self.runner is not None:
            await self.runner.cleanup()

    async def _delay(self) -> None:
        link = self.link
        ms = link.latency_ms + (self.rng.randint(0, link.jitter_ms) if link.jitter_ms else 0)
        if ms:
            await asyncio.sleep(ms / 1000)

    def _unavailable(self, kind: str) -> web.Response:
        self.link.counts[kind] += 1
        return web.Response(status=503, text=f"link {kind} (nemesis)")

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _forward(
        self, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        async with self.session.request(method, url, data=body, headers=headers) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
            self.link.forwarded += 1
            return resp.status, data, out

    async def _deliver_quietly(
        self, wait_s: float, method: str, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        await asyncio.sleep(wait_s)
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            await self._forward(method, url, body, headers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        link, rng = self.link, self.rng
        body = await request.read()
        if link.blocked:
            return self._unavailable("blocked")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        url = link.target + request.path_qs
        if link.reorder and rng.random() < link.reorder:
            # The sender hears "unavailable" now; the request arrives later, after
            # whatever the sender sends in between.
            link.counts["reordered"] += 1
            hold_s = rng.uniform(0.05, max(0.05, link.reorder_ms / 1000))
            self._later(self._deliver_quietly(hold_s, request.method, url, body, headers))
            return web.Response(status=503, text="link reordered (nemesis)")
        if link.latency_ms or link.jitter_ms:
            link.counts["delayed"] += 1
            await self._delay()
        if link.loss and rng.random() < link.loss / 2:
            return self._unavailable("dropped_request")
        reset = link.reset > 0 and rng.random() < link.reset
        if reset and rng.random() < 0.5:
            return self._abort(request)  # before forwarding
        dup = link.dup > 0 and rng.random() < link.dup
        try:
            status, data, out_headers = await self._forward(request.method, url, body, headers)
            if dup:
                link.counts["duplicated"] += 1
                if link.dup_delay_ms and rng.random() < 0.5:
                    replay_s = rng.uniform(0, link.dup_delay_ms / 1000)
                    self._later(self._deliver_quietly(replay_s, request.method, url, body, headers))
                else:
                    status, data, out_headers = await self._forward(
                        request.method, url, body, headers
                    )
        except (TimeoutError, aiohttp.ClientError):
            return self._unavailable("dropped_request")
        if reset:
            return self._abort(request)  # after the target applied it
        if link.latency_ms or link.jitter_ms:
            await self._delay()
        if link.blocked or (link.loss and rng.random() < link.loss / 2):
            return self._unavailable("dropped_reply")  # the target applied it
        return web.Response(status=status, body=data, headers=out_headers)

    def _abort(self, request: web.Request) -> web.StreamResponse:
        self.link.counts["reset"] += 1
        if request.transport is not None:
            request.transport.abort()  # the sender sees the connection die, no reply
        return web.Response(status=503)  # never reaches anyone


class ProxyMesh:
    """One ``Proxy`` per directed link between ``ids``, on an event loop in a thread.

    ``replica_ports``: where each replica listens; ``proxy_ports``: one port
    per directed link.  ``peer_urls(rid)`` is the ``--peer`` map that routes
    ``rid``'s replication through its proxies.  A link's fields are read by
    its proxy on every request, so ``cut_off``/``heal`` (or setting fields)
    take effect at once.
    """

    def __init__(
        self,
        ids: Iterable[str],
        replica_ports: dict[str, int],
        proxy_ports: dict[tuple[str, str], int],
        *,
        seed: int = 0,
    ) -> None:
        self.ids = list(ids)
        self.proxy_ports = proxy_ports
        self.links = {
            (a, b): Link(a, b, f"http://127.0.0.1:{replica_ports[b]}")
            for a in self.ids
            for b in self.ids
            if a != b
        }
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session: aiohttp.ClientSession = self.run(self._session())
        self.proxies = [
            Proxy(link, proxy_ports[ab], random.Random(f"{seed}/{ab}"), self.session)
            for ab, link in self.links.items()
        ]
        for p in self.proxies:
            self.run(p.start())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))

    def peer_urls(self, rid: str) -> dict[str, str]:
        return {p: f"http://127.0.0.1:{self.proxy_ports[(rid, p)]}" for p in self.ids if p != rid}

    def cut_off(self, rid: str) -> None:
        """Block every link to and from ``rid``."""
        for (a, b), link in self.links.items():
            if rid in (a, b):
                link.blocked = True

    def heal(self) -> None:
        for link in self.links.values():
            link.calm()

    def close(self) -> None:
        async def stop() -> None:
            for p in self.proxies:
                await p.stop()
            await self.session.close()

        with contextlib.suppress(Exception):
            self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

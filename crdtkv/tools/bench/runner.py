"""One ``crdtkv bench`` run: the requests of each operation type, sent and counted.

``Workload`` makes the requests (keys, values, bodies); ``Runner`` holds the
connections and sends them from ``-c`` workers, one request in flight each,
until ``-n`` requests or ``--duration`` seconds, and sums each type up.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from crdtkv.tools.bench.fetch import (
    JSON_TYPE,
    MSGPACK_TYPE,
    AiohttpFetcher,
    Fetcher,
    RawFetcher,
    Request,
)
from crdtkv.tools.bench.machine import CpuSample, cpu_shares, proc_rss_kb
from crdtkv.tools.bench.options import BenchConfig, BenchError
from crdtkv.tools.bench.report import Tally, summarize

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Runner", "Workload"]

PREFILL_BATCH = 1_000  # registers per prefill request
PREFILL_CONNECTIONS_MAX = 16
PROGRESS_INTERVAL_S = 0.25
# One keyspace of typed keys: each workload writes its own type, under its own
# prefix, so that a run of several workloads never hits a WRONGTYPE.  Registers
# (set and get) share the prefill's keys.
KEY_PREFIX = {
    "register_set": "r",
    "register_get": "r",
    "counter_incr": "c",
    "set_add": "s",
    "hll_add": "hll",
}


class Workload:
    """Builds the requests of one operation type: keys, values, bodies."""

    def __init__(self, cfg: BenchConfig, op_type: str, rng: random.Random) -> None:
        import msgpack
        import orjson

        self.cfg = cfg
        self.type = op_type
        self.rng = rng
        self.next_key = 0
        self.value = "x" * cfg.data_size
        self._dumps: Callable[[Any], bytes] = (
            (lambda o: msgpack.packb(o, use_bin_type=True)) if cfg.msgpack else orjson.dumps
        )
        self._ctype = MSGPACK_TYPE if cfg.msgpack else JSON_TYPE

    def key(self) -> str:
        if self.cfg.sequential:
            i = self.next_key
            self.next_key = (i + 1) % self.cfg.keyspace
        else:
            i = self.rng.randrange(self.cfg.keyspace)
        return f"{KEY_PREFIX.get(self.type, self.type)}:{i:012d}"

    def op(self) -> dict[str, Any]:
        t, key = self.type, self.key()
        if t == "register_set":
            return {"op": "registers.set", "key": key, "value": self.value}
        if t == "register_get":
            return {"op": "registers.get", "key": key}
        if t == "counter_incr":
            return {"op": "counters.incr", "key": key, "delta": 1}
        if t == "set_add":
            return {"op": "sets.add", "key": key, "members": [self.member()]}
        return {"op": "hlls.add", "key": key, "items": [self.member()]}

    def member(self) -> str:
        return f"m:{self.rng.randrange(max(self.cfg.keyspace, 1000))}"

    def request(self) -> Request:
        import orjson

        if self.cfg.batch:
            ops = [self.op() for _ in range(self.cfg.batch)]
            return Request("POST", "/v1/batch", self._dumps({"ops": ops}), len(ops), self._ctype)
        t, key = self.type, self.key()
        if t == "register_set":
            body = orjson.dumps({"value": self.value})
            return Request("PUT", f"/v1/registers/{key}", body, 1, JSON_TYPE)
        if t == "register_get":
            return Request("GET", f"/v1/registers/{key}", None, 1)
        if t == "counter_incr":
            return Request("POST", f"/v1/counters/{key}", b'{"delta":1}', 1, JSON_TYPE)
        if t == "set_add":
            body = orjson.dumps({"members": [self.member()]})
            return Request("POST", f"/v1/sets/{key}/add", body, 1, JSON_TYPE)
        body = orjson.dumps({"items": [self.member()]})
        return Request("POST", f"/v1/hlls/{key}/add", body, 1, JSON_TYPE)


# -- one run ---------------------------------------------------------------------------------


class Runner:
    """The run's connections (``-c`` fetchers over ``--url``s) and what is sent on them."""

    def __init__(self, cfg: BenchConfig, urls: Sequence[str], pids: Sequence[int]) -> None:
        self.cfg = cfg
        self.urls = list(urls)
        self.pids = list(pids)
        self.rng = random.Random(cfg.seed)
        self.session: aiohttp.ClientSession | None = None
        self.fetchers: list[Fetcher] = []

    async def __aenter__(self) -> Runner:
        import aiohttp

        headers = {}
        if self.cfg.auth_token:
            headers["Authorization"] = f"Bearer {self.cfg.auth_token}"
        ssl: Any = True  # aiohttp's default: the system's CAs
        if self.cfg.tls_ca is not None:
            from crdtkv.tls import client_context

            ssl = client_context(self.cfg.tls_ca)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.cfg.connections, limit_per_host=0, ssl=ssl),
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            headers=headers,
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        for i in range(self.cfg.connections):
            url = self.urls[i % len(self.urls)]
            if self.cfg.client == "raw":
                self.fetchers.append(RawFetcher(url, self.cfg.auth_token, self.cfg.timeout_s))
            else:
                self.fetchers.append(AiohttpFetcher(self.session, url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for f in self.fetchers:
            await f.close()
        if self.session is not None:
            await self.session.close()

    async def check_reachable(self) -> None:
        import aiohttp

        assert self.session is not None, "use the runner as an async context manager"
        for url in self.urls:
            try:
                async with self.session.get(url + "/healthz") as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise BenchError(f"{url}/healthz answered {resp.status}")
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                raise BenchError(
                    f"--url: cannot reach {url}: {e.__class__.__name__}: {e}"
                ) from None

    async def send(self, fetcher: Fetcher, req: Request, tally: Tally, is_read: bool) -> None:
        """One request, counted in ``tally``."""
        import aiohttp

        started = time.perf_counter()
        try:
            status, ctype, raw = await fetcher.fetch(req)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            tally.latencies.append(time.perf_counter() - started)
            tally.requests += 1
            tally.error(f"{req.method} {req.path}: {e.__class__.__name__}: {e}")
            return
        tally.latencies.append(time.perf_counter() - started)
        tally.requests += 1
        if status == 200:
            tally.ops += req.ops
            if req.path == "/v1/batch":
                self._count_batch(raw, ctype, tally, is_read)
        elif status == 404 and is_read:
            tally.ops += req.ops
            tally.not_found += 1
        else:
            tally.error(f"{req.method} {req.path}: HTTP {status}: {raw[:200]!r}")

    @staticmethod
    def _count_batch(raw: bytes, ctype: str, tally: Tally, is_read: bool) -> None:
        import msgpack
        import orjson

        try:
            body = msgpack.unpackb(raw) if ctype == MSGPACK_TYPE else orjson.loads(raw)
            results = body["results"]
        except Exception as e:
            tally.error(f"/v1/batch: unreadable response ({e.__class__.__name__})")
            return
        for res in results:
            err = res.get("error") if isinstance(res, dict) else None
            if err is None:
                continue
            if is_read and err.get("code") == "not_found":
                tally.not_found += 1
            else:
                tally.ops -= 1
                tally.error(f"/v1/batch op: {err.get('code')}: {err.get('message')}")

    async def run_type(self, op_type: str, progress: bool) -> dict[str, Any]:
        cfg = self.cfg
        work = Workload(cfg, op_type, self.rng)
        tally = Tally()
        is_read = op_type == "register_get"
        remaining = cfg.requests
        deadline = math.inf

        def take() -> bool:
            nonlocal remaining
            if cfg.duration_s is not None:
                return time.monotonic() < deadline
            if remaining <= 0:
                return False
            remaining -= 1
            return True

        async def worker(i: int) -> None:
            fetcher = self.fetchers[i]
            while take():
                await self.send(fetcher, work.request(), tally, is_read)

        bar = _progress_bar(op_type, cfg) if progress else None
        ticker = asyncio.ensure_future(_tick(bar, tally)) if bar is not None else None
        before = CpuSample.take(self.pids)
        started = time.monotonic()
        if cfg.duration_s is not None:
            deadline = started + cfg.duration_s
        try:
            await asyncio.gather(*(worker(i) for i in range(cfg.connections)))
        finally:
            elapsed = time.monotonic() - started
            after = CpuSample.take(self.pids)
            if ticker is not None:
                ticker.cancel()
                # wait, not "await ticker" under suppress(CancelledError): that would also
                # swallow a cancellation of this run (SIGTERM) arriving meanwhile.
                await asyncio.wait([ticker])
            if bar is not None:
                bar.update(tally.requests - bar.n)
                bar.close()
        out = summarize(op_type, tally, elapsed, cpu_shares(before, after))
        out["server_rss_kb"] = sum(filter(None, (proc_rss_kb(p) for p in self.pids))) or None
        return out

    async def prefill(self) -> tuple[int, float]:
        """Write a register to every key of the keyspace, in batches, untimed."""
        cfg = self.cfg
        import orjson

        value = "x" * cfg.data_size
        next_key = 0
        tally = Tally()
        started = time.monotonic()

        async def worker(i: int) -> None:
            nonlocal next_key
            fetcher = self.fetchers[i]
            while next_key < cfg.keyspace:
                lo, next_key = next_key, min(cfg.keyspace, next_key + PREFILL_BATCH)
                ops = [
                    {"op": "registers.set", "key": f"r:{k:012d}", "value": value}
                    for k in range(lo, next_key)
                ]
                req = Request("POST", "/v1/batch", orjson.dumps({"ops": ops}), len(ops), JSON_TYPE)
                await self.send(fetcher, req, tally, False)

        await asyncio.gather(
            *(worker(i) for i in range(min(cfg.connections, PREFILL_CONNECTIONS_MAX)))
        )
        if tally.errors:
            raise BenchError(f"prefill failed: {tally.samples[0]}")
        return cfg.keyspace, time.monotonic() - started


def _progress_bar(op_type: str, cfg: BenchConfig) -> Any:
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:  # the "bench" extra is optional
        return None
    total = None if cfg.duration_s is not None else cfg.requests
    return tqdm(
        total=total, desc=f"{op_type:<13}", unit="req", file=sys.stderr, leave=False,
        dynamic_ncols=True, mininterval=PROGRESS_INTERVAL_S,
    )  # fmt: skip


async def _tick(bar: Any, tally: Tally) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        bar.update(tally.requests - bar.n)

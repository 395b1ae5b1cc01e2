"""Real processes: ``crdtkv serve`` replicas behind fault-injecting proxies.

``python -m simulations cluster`` starts N replicas on 127.0.0.1, each its
own ``crdtkv serve`` process with its own RocksDB data directory (fsync
durability), and one aiohttp reverse proxy per replica-to-replica link:
replica ``a`` is configured with ``--peer b=http://127.0.0.1:<port of proxy
a>b>``, so every replication request from a to b, and its reply, passes that
proxy.  A proxy can delay (a geo latency matrix plus jitter), drop (the
request, or the reply after the target applied the request), duplicate (the
target gets the request twice) and block (a partition: it answers 503 without
forwarding) the requests of its link.

Simulated clients (the same ``Workload`` as the simulator, one causal session
each) talk plain HTTP/JSON to the replicas' public API (docs/api.md), carrying
``X-Crdtkv-Session`` tokens and moving to another replica on
``session_unavailable`` or a connection error.  During the fault phase the
seed's schedule partitions links, changes loss and kills replicas with
SIGKILL (restarting them on the same data directory).  Then every link heals,
every replica runs, and the cluster must converge within ``--liveness``
seconds: identical applied vectors, nothing left to ship, identical answers
for every key at every replica.  The black-box checkers of
``simulations.checkers`` then judge the history.

Unlike the simulator this runs in real time on real sockets, so a seed
decides the schedule and the workload but not the interleaving: a run is not
reproducible to the message.  Clocks are the machine's (no skew faults).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from crdtkv.ops.routing import http_request as ops_http_request
from crdtkv.ops.table import OPS, snapshot_read
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER
from simulations import checkers
from simulations.config import stream
from simulations.history import Final, History, Op
from simulations.network import blocked_links, link_faults
from simulations.workload import Workload, final_reads, keyspace

__all__ = ["ClusterOptions", "add_arguments", "main", "run_cluster"]

CLUSTER_FAULTS = ("partition", "oneway", "loss", "dup", "geo", "crash")
HOP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)
REQUEST_TIMEOUT_S = 5.0  # a client request (including the session wait)
SESSION_WAIT_MS = 500
# Final reads answered with these statuses, as the simulator records them.
_FINAL_STATUS: dict[int, dict[str, bool]] = {404: {"not_found": True}, 409: {"wrong_type": True}}
READY_TIMEOUT_S = 20.0  # a replica process must answer /healthz within this


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1, help="decides the schedule and the workload")
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--duration", type=float, default=10.0, help="fault phase, seconds")
    p.add_argument("--liveness", type=float, default=40.0, help="seconds to converge after")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument(
        "--faults",
        default=",".join(CLUSTER_FAULTS),
        help=f"comma list of {', '.join(CLUSTER_FAULTS)} (default: all)",
    )
    p.add_argument("--base-port", type=int, default=0, help="first port (default: free ports)")
    p.add_argument("--data-dir", type=Path, help="keep data directories and logs here")
    p.add_argument(
        "--serve",
        default=None,
        help="command prefix that runs crdtkv (default: this Python with -m crdtkv.cli)",
    )


@dataclass
class ClusterOptions:
    seed: int = 1
    replicas: int = 3
    duration_s: float = 10.0
    liveness_s: float = 40.0
    clients: int = 4
    faults: tuple[str, ...] = CLUSTER_FAULTS
    base_port: int = 0
    data_dir: Path | None = None
    serve: list[str] = field(default_factory=lambda: [sys.executable, "-m", "crdtkv.cli"])
    secret: str = "sim-cluster-secret"


# -- ports and processes -----------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Replica:
    """One ``crdtkv serve`` process."""

    def __init__(
        self, rid: str, port: int, data_dir: Path, peers: dict[str, str], opts: ClusterOptions
    ) -> None:
        self.rid = rid
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{rid}.log"
        self.argv = [
            *opts.serve,
            "serve",
            "--replica-id", rid,
            "--port", str(port),
            "--data-dir", str(data_dir),
            "--cluster-secret", opts.secret,
            "--durability", "fsync",
            "--resp-port", "0",
            "--log-level", "WARNING",
            *[a for p, url in sorted(peers.items()) for a in ("--peer", f"{p}={url}")],
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# -- the fault-injecting proxy ------------------------------------------------------------------
@dataclass
class Link:
    src: str
    dst: str
    target: str  # the destination replica's URL
    latency_ms: int = 0
    jitter_ms: int = 0
    loss: float = 0.0  # each of request and reply is dropped with this probability
    dup: float = 0.0
    blocked: bool = False
    forwarded: int = 0
    dropped: int = 0


class Proxy:
    def __init__(self, link: Link, port: int, rng: Any, session: aiohttp.ClientSession) -> None:
        self.link = link
        self.port = port
        self.rng = rng
        self.session = session
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _delay(self) -> None:
        link = self.link
        ms = link.latency_ms + (self.rng.randint(0, link.jitter_ms) if link.jitter_ms else 0)
        if ms:
            await asyncio.sleep(ms / 1000)

    def _unavailable(self) -> web.Response:
        self.link.dropped += 1
        return web.Response(status=503, text="link down (simulated)")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        link = self.link
        body = await request.read()
        await self._delay()
        if link.blocked or self.rng.random() < link.loss:
            return self._unavailable()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        url = link.target + request.path_qs
        copies = 2 if self.rng.random() < link.dup else 1
        try:
            for _ in range(copies):
                async with self.session.request(
                    request.method, url, data=body, headers=headers
                ) as resp:
                    data = await resp.read()
                    status = resp.status
                    out_headers = {
                        k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS
                    }
        except (TimeoutError, aiohttp.ClientError):
            return self._unavailable()
        link.forwarded += 1
        await self._delay()
        if link.blocked or self.rng.random() < link.loss:
            return self._unavailable()  # the target applied it; the reply is lost
        return web.Response(status=status, body=data, headers=out_headers)


# -- clients -------------------------------------------------------------------------------------
def http_request(kind: str, key: str, args: dict[str, Any]) -> tuple[str, str, Any]:
    """(method, path, JSON body or None) of an operation: its row of the op table."""
    return ops_http_request(OPS[kind], {"key": key, **args})


@dataclass
class Client:
    cid: int
    workload: Workload
    replica: str
    token: str | None = None


class ClusterRun:
    def __init__(self, opts: ClusterOptions) -> None:
        self.opts = opts
        self.ids = [f"r{i}" for i in range(opts.replicas)]
        self.rng = stream(opts.seed, "cluster")
        self.keys = keyspace(3)
        self.history = History(keys=self.keys, skew_slack_ms=5, durability="fsync")
        self.t0 = time.monotonic()
        self.replicas: dict[str, Replica] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.proxies: list[Proxy] = []
        self.stopping = False
        self.events: list[str] = []

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def note(self, what: str) -> None:
        line = f"{self.now_ms() / 1000:7.2f}s {what}"
        self.events.append(line)

    # -- setup ---------------------------------------------------------------------------------
    def build(self, root: Path) -> None:
        n = len(self.ids)
        n_links = n * (n - 1)
        ports = (
            list(range(self.opts.base_port, self.opts.base_port + n + n_links))
            if self.opts.base_port
            else _free_ports(n + n_links)
        )
        replica_ports = dict(zip(self.ids, ports[:n], strict=True))
        link_ports = iter(ports[n:])
        faults = set(self.opts.faults)
        inten = stream(self.opts.seed, "cluster-links")
        lf = link_faults(
            self.ids,
            inten,
            geo="geo" in faults,
            jitter_ms=20 if "geo" in faults else 2,
            loss=inten.uniform(0.05, 0.25) if "loss" in faults else 0.0,
            dup=inten.uniform(0.05, 0.2) if "dup" in faults else 0.0,
        )
        self.proxy_ports: dict[tuple[str, str], int] = {}
        for a in self.ids:
            for b in self.ids:
                if a == b:
                    continue
                f = lf[(a, b)]
                self.links[(a, b)] = Link(
                    a,
                    b,
                    f"http://127.0.0.1:{replica_ports[b]}",
                    f.latency_ms,
                    f.jitter_ms,
                    f.loss,
                    f.duplicate,
                )
                self.proxy_ports[(a, b)] = next(link_ports)
        for rid in self.ids:
            peers = {
                p: f"http://127.0.0.1:{self.proxy_ports[(rid, p)]}" for p in self.ids if p != rid
            }
            self.replicas[rid] = Replica(rid, replica_ports[rid], root / rid, peers, self.opts)

    async def start(self, session: aiohttp.ClientSession) -> None:
        for (a, b), link in self.links.items():
            proxy = Proxy(
                link, self.proxy_ports[(a, b)], stream(self.opts.seed, f"proxy{a}{b}"), session
            )
            await proxy.start()
            self.proxies.append(proxy)
        for r in self.replicas.values():
            r.start()
        for r in self.replicas.values():
            await self.wait_ready(session, r)

    async def wait_ready(self, session: aiohttp.ClientSession, r: Replica) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not r.running:
                raise RuntimeError(f"replica {r.rid} exited; see {r.log_path}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(r.url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"replica {r.rid} did not become ready; see {r.log_path}")

    # -- faults ------------------------------------------------------------------------------------
    async def fault_schedule(self, session: aiohttp.ClientSession) -> None:
        faults = set(self.opts.faults)
        rng = self.rng
        end = time.monotonic() + self.opts.duration_s
        shapes = [s for s in ("isolate", "halves", "minority", "ring") if "partition" in faults]
        if "oneway" in faults:
            shapes.append("oneway")
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            if time.monotonic() >= end:
                break
            choice = rng.random()
            if shapes and choice < 0.5:
                await self.partition(
                    rng.choice(shapes), min(end - time.monotonic(), rng.uniform(0.5, 3))
                )
            elif "crash" in faults and choice < 0.8:
                await self.crash(session, rng.choice(self.ids), rng.uniform(0.1, 1.5))

    async def partition(self, shape: str, seconds: float) -> None:
        links = blocked_links(shape, self.ids, self.rng)
        for key in links:
            self.links[key].blocked = True
        self.note(f"partition {shape} {sorted(links)} for {seconds:.2f}s")
        await asyncio.sleep(max(0.0, seconds))
        for key in links:
            self.links[key].blocked = False
        self.note("partition healed")

    async def crash(self, session: aiohttp.ClientSession, rid: str, down_s: float) -> None:
        r = self.replicas[rid]
        r.kill()
        self.note(f"SIGKILL {rid}, down {down_s:.2f}s")
        await asyncio.sleep(down_s)
        r.start()
        await self.wait_ready(session, r)
        self.note(f"restarted {rid}")

    # -- clients ---------------------------------------------------------------------------------
    async def client_loop(self, session: aiohttp.ClientSession, client: Client, end: float) -> None:
        rng = client.workload.rng
        retry: tuple[str, str, dict[str, Any]] | None = None
        while time.monotonic() < end:
            if retry is not None:
                kind, key, args = retry
                retry = None
            else:
                kind, key, args = client.workload.next_op()
                if rng.random() < 0.2:
                    client.replica = rng.choice(self.ids)
            op = self.history.add(Op(0, client.cid, kind, key, args, client.replica, self.now_ms()))
            await self.invoke(session, client, op)
            if op.error == "session_unavailable" or op.status == "unknown":
                client.replica = rng.choice([r for r in self.ids if r != client.replica])
                if op.error == "session_unavailable":
                    retry = (kind, key, args)
            await asyncio.sleep(rng.uniform(0, 0.02))

    async def invoke(self, session: aiohttp.ClientSession, client: Client, op: Op) -> None:
        method, path, body = http_request(op.kind, op.key, op.args)
        headers = {WAIT_HEADER: str(SESSION_WAIT_MS)}
        if client.token:
            headers[SESSION_HEADER] = client.token
        url = self.replicas[op.replica].url + path
        try:
            async with session.request(
                method, url, json=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            ) as resp:  # fmt: skip
                data = await resp.json(content_type=None)
                token = resp.headers.get(SESSION_HEADER)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, ValueError):
            op.status, op.complete_ms = "unknown", self.now_ms()
            return
        op.complete_ms = self.now_ms()
        if token:
            client.token = token
        if status == 200:
            op.status, op.result = "ok", data
        elif status == 404 and method == "GET":
            op.status, op.result = "ok", {"not_found": True}
        elif status >= 500 and status != 503:
            op.status = "unknown"  # the replica may have applied it before failing
        else:
            op.status = "fail"
            op.error = (
                (data.get("error") or {}).get("code", str(status))
                if isinstance(data, dict)
                else str(status)
            )

    # -- liveness ---------------------------------------------------------------------------------
    async def heal(self, session: aiohttp.ClientSession) -> None:
        for link in self.links.values():
            link.blocked = False
            link.loss = 0.0
            link.dup = 0.0
        for r in self.replicas.values():
            if not r.running:
                r.start()
                await self.wait_ready(session, r)
        self.note("healed: every link up, every replica running")

    async def converge(self, session: aiohttp.ClientSession) -> tuple[float | None, Final]:
        start = time.monotonic()
        final = Final()
        while time.monotonic() - start < self.opts.liveness_s:
            await asyncio.sleep(0.5)
            statuses = {}
            try:
                for rid, r in self.replicas.items():
                    async with session.get(r.url + "/v1/status") as resp:
                        statuses[rid] = await resp.json()
            except (TimeoutError, aiohttp.ClientError):
                continue
            applied = [s["applied"] for s in statuses.values()]
            lagging = any(p["lag_ops"] for s in statuses.values() for p in s["peers"].values())
            if lagging or any(a != applied[0] for a in applied):
                continue
            final = await self.final_reads(session)
            answers = list(final.reads.values())
            if all(a == answers[0] for a in answers):
                return time.monotonic() - start, final
        return None, await self.final_reads(session)

    async def final_reads(self, session: aiohttp.ClientSession) -> Final:
        final = Final(at_ms=self.now_ms())
        for rid, r in self.replicas.items():
            reads: dict[tuple[str, str], dict[str, Any]] = {}
            for ns, key in final_reads(self.keys):
                _method, path, _ = http_request(snapshot_read(ns).name, key, {})
                async with session.get(r.url + path) as resp:
                    if resp.status in _FINAL_STATUS:
                        reads[(ns, key)] = dict(_FINAL_STATUS[resp.status])
                    else:
                        reads[(ns, key)] = await resp.json()
            final.reads[rid] = reads
        return final

    # -- the whole run --------------------------------------------------------------------------
    async def run(self, root: Path) -> tuple[list[checkers.Violation], dict[str, Any]]:
        self.build(root)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await self.start(session)
                self.note(f"{len(self.ids)} replicas and {len(self.links)} proxies up")
                end = time.monotonic() + self.opts.duration_s
                clients = [
                    Client(
                        i,
                        Workload(i, stream(self.opts.seed, f"cluster-client{i}"), self.keys),
                        self.ids[i % len(self.ids)],
                    )
                    for i in range(self.opts.clients)
                ]
                await asyncio.gather(
                    self.fault_schedule(session),
                    *(self.client_loop(session, c, end) for c in clients),
                )
                await self.heal(session)
                converge_s, final = await self.converge(session)
            finally:
                for r in self.replicas.values():
                    r.stop()
                for p in self.proxies:
                    await p.stop()
        violations = checkers.check_all(self.history, final)
        if converge_s is None:
            violations.insert(0, checkers.Violation(
                "convergence", "no-convergence",
                f"replicas did not converge within {self.opts.liveness_s:g} s after healing",
            ))  # fmt: skip
        ops = self.history.ops
        stats = {
            "ops": len(ops),
            "ops_ok": sum(o.status == "ok" for o in ops),
            "ops_fail": sum(o.status == "fail" for o in ops),
            "ops_unknown": sum(o.status == "unknown" for o in ops),
            "converge_s": converge_s,
            "restarts": sum(r.starts - 1 for r in self.replicas.values()),
            "forwarded": sum(link.forwarded for link in self.links.values()),
            "dropped": sum(link.dropped for link in self.links.values()),
        }
        return violations, stats


def run_cluster(opts: ClusterOptions) -> tuple[list[checkers.Violation], dict[str, Any], list[str]]:
    keep = opts.data_dir is not None
    root = (
        opts.data_dir if opts.data_dir is not None else Path(tempfile.mkdtemp(prefix="crdtkv-sim-"))
    )
    root.mkdir(parents=True, exist_ok=True)
    run = ClusterRun(opts)
    try:
        violations, stats = asyncio.run(run.run(root))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return violations, stats, run.events


def main(args: argparse.Namespace) -> int:
    faults = tuple(k for k in args.faults.split(",") if k) if args.faults != "none" else ()
    unknown = [k for k in faults if k not in CLUSTER_FAULTS]
    if unknown:
        print(
            f"unknown fault kind(s) {unknown}; choose from {', '.join(CLUSTER_FAULTS)}",
            file=sys.stderr,
        )
        return 2
    opts = ClusterOptions(
        seed=args.seed,
        replicas=args.replicas,
        duration_s=args.duration,
        liveness_s=args.liveness,
        clients=args.clients,
        faults=faults,
        base_port=args.base_port,
        data_dir=args.data_dir,
    )
    if args.serve:
        opts.serve = args.serve.split()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    violations, stats, events = run_cluster(opts)
    for line in events:
        print(line)
    print(
        f"cluster seed {opts.seed}: {opts.replicas} replicas, {opts.duration_s:g} s of faults "
        f"({', '.join(faults) or 'none'}): {stats['ops']} operations ({stats['ops_ok']} ok, "
        f"{stats['ops_fail']} failed, {stats['ops_unknown']} unknown), {stats['restarts']} "
        f"restarts, {stats['dropped']} replication requests dropped, "
        + (
            f"converged {stats['converge_s']:.1f} s after healing"
            if stats["converge_s"] is not None
            else "did NOT converge"
        )
    )
    for v in violations:
        print(f"  VIOLATION {v.line()}")
    print("verdict: " + ("ok" if not violations else f"FAIL ({len(violations)} violations)"))
    return 1 if violations else 0

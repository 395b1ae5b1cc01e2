"""One nemesis run: real ``crdtkv serve`` processes, fault proxies, clients, checkers.

N replicas on 127.0.0.1, each its own ``crdtkv serve`` process with its own
RocksDB directory (``fsync``, or ``wal`` for a third of the seeds), and one
``Proxy`` per directed replication link.  During the *fault phase* clients
work while the seed's schedule partitions links (isolate, halves, minority,
ring, one-way), kills replicas with SIGKILL and restarts them on the same
data directory (with a new clock offset: a clock that stepped across the
reboot), and every link delays, drops, resets, duplicates and reorders at
the seed's rates.  With ``skew`` each process runs with its own
``--clock-offset-ms`` within +-(max_offset/2 - 10) ms, so no two clocks
differ by more than the replicas tolerate.

Clients are plain aiohttp requests to the public API (docs/api.md), running
the simulator's ``Workload`` over every type.  Even-numbered clients hold a
causal session (``X-Crdtkv-Session``, ``X-Crdtkv-Wait-Ms: 500``) and move
between replicas (one operation in five, and after ``session_unavailable``
or no answer); odd-numbered ones send no token and stay at their replica
(the session guarantees hold there without one).  Every operation is
recorded with its invocation and completion times as a ``history.Op``, so
the simulator's black-box checkers run unchanged.

Then the *liveness phase*: every link calms down (latency stays), every
replica runs, and the cluster must converge within ``liveness_s``: identical
applied vectors, nothing left to ship, identical answers for every key at
every replica.  The checkers then judge the history and those final reads.
A replica log with a Python traceback is a violation too (``errors``).

A seed decides the schedule, the rates and the workload, not the
interleaving (real time, real sockets): a failing seed is rerun with the
same command, and may need a few runs to fail again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from crdtkv.ops.routing import http_request as ops_http_request
from crdtkv.ops.table import OPS, snapshot_read
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER
from simulations import checkers
from simulations.config import stream
from simulations.history import Final, History, Op
from simulations.nemesis.proxy import Link, Proxy
from simulations.network import blocked_links, link_faults
from simulations.workload import Workload, final_reads, keyspace

__all__ = [
    "CANARIES",
    "LOST_KINDS",
    "NEMESIS_FAULTS",
    "NemesisOptions",
    "RunResult",
    "run_one",
]

NEMESIS_FAULTS = (
    "partition",  # two-way partitions: isolate, halves, minority, ring
    "oneway",  # links blocked in one direction
    "delay",  # a geo latency matrix plus jitter on every link
    "loss",  # requests and replies dropped
    "reset",  # connections aborted mid-request
    "dup",  # requests delivered twice (at once, or replayed later)
    "reorder",  # requests held back while later ones overtake them
    "crash",  # kill -9, restart on the same data directory
    "skew",  # per-process clock offsets (--clock-offset-ms), new ones at each restart
)
# Known-bad injections the checkers must catch (``--canary``).
CANARIES = {
    "wipe-isolated": "a replica is cut off, takes writes, is killed and restarts on an empty "
    "data directory: acknowledged writes nobody else had are lost",
}
# Violations that mean an acknowledged write is gone.
LOST_KINDS = frozenset(
    {
        "acked-write-lost",
        "acked-write-missing",
        "applied-lost",
        "lost-add",
        "lost-member",
        "lost-field",
        "lost-hset",
        "lost-push",
        "lost-element",
        "wrong-sum",
        "not-latest",
        "not-highest-write",
    }
)
REQUEST_TIMEOUT_S = 5.0  # a client request (including the session wait)
SESSION_WAIT_MS = 500
READY_TIMEOUT_S = 30.0  # a replica process must answer /healthz within this
STOP_TIMEOUT_S = 15.0
# Final reads answered with these statuses, as the simulator records them.
_FINAL_STATUS: dict[int, dict[str, bool]] = {404: {"not_found": True}, 409: {"wrong_type": True}}


@dataclass
class NemesisOptions:
    seed: int = 1
    replicas: int = 3
    duration_s: float = 10.0
    liveness_s: float = 40.0
    clients: int = 4
    faults: tuple[str, ...] = NEMESIS_FAULTS
    durability: str | None = None  # fsync | wal; None: drawn from the seed (wal 1 in 3)
    canary: str | None = None
    base_port: int = 0
    data_dir: Path | None = None  # keep data directories and logs here
    serve: list[str] = field(default_factory=lambda: [sys.executable, "-m", "crdtkv.cli"])
    secret: str = "nemesis-cluster-secret"
    log: Any = None  # a callable taking an event line, as it happens (None: quiet)


@dataclass
class RunResult:
    seed: int
    config: dict[str, Any]
    violations: list[checkers.Violation]
    stats: dict[str, Any]
    faults: dict[str, int]
    events: list[str]
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.violations

    def lost(self) -> int:
        return sum(v.kind in LOST_KINDS or v.checker == "durability" for v in self.violations)

    def diverged(self) -> bool:
        return any(v.checker == "convergence" for v in self.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "config": self.config,
            "ok": self.ok,
            "stats": self.stats,
            "faults": self.faults,
            "lost": self.lost(),
            "diverged": self.diverged(),
            "violations": [v.line() for v in self.violations],
            "wall_s": round(self.wall_s, 2),
            **({"events": self.events} if self.violations else {}),
        }


# -- ports and processes -----------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
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
    """One ``crdtkv serve`` process, restartable on its data directory and port."""

    def __init__(
        self,
        rid: str,
        port: int,
        data_dir: Path,
        peers: dict[str, str],
        opts: NemesisOptions,
        *,
        durability: str,
        max_offset_ms: int,
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
            "--durability", durability,
            "--max-offset-ms", str(max_offset_ms),
            "--resp-port", "0",
            "--log-level", "WARNING",
            *[a for p, url in sorted(peers.items()) for a in ("--peer", f"{p}={url}")],
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.offset_ms = 0

    def start(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        log = self.log_path.open("ab")
        argv = [*self.argv, f"--clock-offset-ms={offset_ms}"] if offset_ms else self.argv
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRDTKV_")}
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=env)
        log.close()
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# -- clients -------------------------------------------------------------------------------------
def http_request(kind: str, key: str, args: dict[str, Any]) -> tuple[str, str, Any]:
    """(method, path, JSON body or None) of an operation: its row of the op table."""
    return ops_http_request(OPS[kind], {"key": key, **args})


@dataclass
class Client:
    cid: int
    workload: Workload
    replica: str
    session: bool  # carries a causal session token and moves between replicas
    token: str | None = None
    pinned: bool = False  # the canary keeps it at its replica


class NemesisRun:
    def __init__(self, opts: NemesisOptions) -> None:
        self.opts = opts
        self.ids = [f"r{i}" for i in range(opts.replicas)]
        self.faults = set(opts.faults)
        cfg = stream(opts.seed, "nemesis-config")
        self.durability = opts.durability or ("wal" if cfg.random() < 1 / 3 else "fsync")
        self.max_offset_ms = cfg.choice((250, 500, 1000))
        self.skew_bound_ms = self.max_offset_ms // 2 - 10 if "skew" in self.faults else 0
        self.rng = stream(opts.seed, "nemesis-schedule")
        self.clock_rng = stream(opts.seed, "nemesis-clocks")
        self.keys = keyspace(3)
        # Clocks differ by at most twice the largest offset; real-time order implies
        # timestamp order only for operations further apart than that (and 5 ms).
        self.history = History(
            keys=self.keys, skew_slack_ms=2 * self.skew_bound_ms + 7, durability=self.durability
        )
        self.t0 = time.monotonic()
        self.replicas: dict[str, Replica] = {}
        self.links: dict[tuple[str, str], Link] = {}
        self.proxies: list[Proxy] = []
        self.events: list[str] = []
        self.counts: Counter[str] = Counter()
        self.held: set[tuple[str, str]] = set()  # links a canary keeps blocked
        self.tasks: list[asyncio.Task[None]] = []

    def config(self) -> dict[str, Any]:
        return {
            "replicas": len(self.ids),
            "durability": self.durability,
            "duration_s": self.opts.duration_s,
            "clients": self.opts.clients,
            "faults": sorted(self.faults),
            "max_offset_ms": self.max_offset_ms,
            "canary": self.opts.canary,
        }

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def note(self, what: str) -> None:
        line = f"{self.now_ms() / 1000:7.2f}s {what}"
        self.events.append(line)
        if self.opts.log is not None:
            self.opts.log(line)

    def offset(self) -> int:
        b = self.skew_bound_ms
        return self.clock_rng.randint(-b, b) if b > 0 else 0

    # -- setup ---------------------------------------------------------------------------------
    def build(self, root: Path) -> None:
        n = len(self.ids)
        n_links = n * (n - 1)
        ports = (
            list(range(self.opts.base_port, self.opts.base_port + n + n_links))
            if self.opts.base_port
            else free_ports(n + n_links)
        )
        replica_ports = dict(zip(self.ids, ports[:n], strict=True))
        link_ports = iter(ports[n:])
        f = self.faults
        inten = stream(self.opts.seed, "nemesis-links")
        lf = link_faults(
            self.ids,
            inten,
            geo="delay" in f,
            jitter_ms=20 if "delay" in f else 0,
            loss=inten.uniform(0.02, 0.15) if "loss" in f else 0.0,
            dup=inten.uniform(0.05, 0.2) if "dup" in f else 0.0,
        )
        reset = inten.uniform(0.02, 0.1) if "reset" in f else 0.0
        reorder = inten.uniform(0.02, 0.1) if "reorder" in f else 0.0
        self.proxy_ports: dict[tuple[str, str], int] = {}
        for a in self.ids:
            for b in self.ids:
                if a == b:
                    continue
                lk = lf[(a, b)]
                self.links[(a, b)] = Link(
                    a,
                    b,
                    f"http://127.0.0.1:{replica_ports[b]}",
                    latency_ms=lk.latency_ms if "delay" in f else 0,
                    jitter_ms=lk.jitter_ms,
                    loss=lk.loss,
                    dup=lk.duplicate,
                    dup_delay_ms=1000,
                    reset=reset,
                    reorder=reorder,
                    reorder_ms=1000,
                )
                self.proxy_ports[(a, b)] = next(link_ports)
        for rid in self.ids:
            peers = {
                p: f"http://127.0.0.1:{self.proxy_ports[(rid, p)]}" for p in self.ids if p != rid
            }
            self.replicas[rid] = Replica(
                rid,
                replica_ports[rid],
                root / rid,
                peers,
                self.opts,
                durability=self.durability,
                max_offset_ms=self.max_offset_ms,
            )

    async def start(self, session: aiohttp.ClientSession) -> None:
        for (a, b), link in self.links.items():
            proxy = Proxy(
                link, self.proxy_ports[(a, b)], stream(self.opts.seed, f"proxy{a}{b}"), session
            )
            await proxy.start()
            self.proxies.append(proxy)
        for r in self.replicas.values():
            off = self.offset()
            r.start(off)
            if off:
                self.counts["clock_offsets"] += 1
        for r in self.replicas.values():
            await self.wait_ready(session, r)
        offsets = {r.rid: r.offset_ms for r in self.replicas.values()}
        self.note(
            f"{len(self.ids)} replicas ({self.durability}, max offset {self.max_offset_ms} ms, "
            f"clock offsets {offsets}) and {len(self.links)} proxies up"
        )

    async def wait_ready(self, session: aiohttp.ClientSession, r: Replica) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if not r.running:
                raise RuntimeError(f"replica {r.rid} exited; see {r.log_path}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(
                    r.url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)
                ) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"replica {r.rid} did not become ready; see {r.log_path}")

    # -- faults ------------------------------------------------------------------------------------
    async def fault_schedule(self, session: aiohttp.ClientSession, end: float) -> None:
        rng = self.rng
        two_way = ("isolate", "halves", "minority", "ring")
        shapes = [s for s in two_way if "partition" in self.faults]
        if "oneway" in self.faults:
            shapes.append("oneway")
        crashing: set[str] = set()
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.2, 1.0))
            left = end - time.monotonic()
            if left <= 0.1:
                break
            choice = rng.random()
            if shapes and choice < 0.5:
                shape = rng.choice(shapes)
                self._spawn(self.partition(shape, min(left, rng.uniform(0.3, 2.5))))
            elif "crash" in self.faults and choice < 0.85:
                rid = rng.choice(self.ids)
                down_s = rng.uniform(0.1, 1.5)
                if rid not in crashing:
                    crashing.add(rid)
                    self._spawn(self.crash(session, rid, down_s, crashing))

    def _spawn(self, coro: Any) -> None:
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    async def partition(self, shape: str, seconds: float) -> None:
        links = {k for k in blocked_links(shape, self.ids, self.rng) if not self.links[k].blocked}
        if not links:
            return
        for key in links:
            self.links[key].blocked = True
        self.counts["partitions"] += 1
        self.note(f"partition {shape} {' '.join(a + '>' + b for a, b in sorted(links))}")
        await asyncio.sleep(max(0.0, seconds))
        for key in links - self.held:
            self.links[key].blocked = False
        self.note(f"partition {shape} healed after {seconds:.2f}s")

    async def crash(
        self, session: aiohttp.ClientSession, rid: str, down_s: float, crashing: set[str]
    ) -> None:
        r = self.replicas[rid]
        try:
            r.kill()
            self.counts["kills"] += 1
            self.note(f"SIGKILL {rid}, down {down_s:.2f}s")
            await asyncio.sleep(down_s)
            off = self.offset()
            r.start(off)
            if off:
                self.counts["clock_offsets"] += 1
            await self.wait_ready(session, r)
            self.counts["restarts"] += 1
            self.note(f"restarted {rid} (clock offset {off} ms)")
        finally:
            crashing.discard(rid)

    async def canary_wipe(self, session: aiohttp.ClientSession, clients: list[Client]) -> None:
        """Cut r0 off, pin a client to it, then kill it and restart it on an empty
        data directory: acknowledged writes only r0 had are gone."""
        d = self.opts.duration_s
        victim = self.ids[0]
        await asyncio.sleep(d * 0.2)
        self.held = {k for k in self.links if victim in k}
        for k in self.held:
            self.links[k].blocked = True
        for c in clients:
            if c.replica == victim or c.cid == 0:
                c.replica, c.pinned = victim, True
        self.note(f"canary: {victim} cut off")
        await asyncio.sleep(d * 0.5)
        r = self.replicas[victim]
        r.kill()
        shutil.rmtree(r.data_dir, ignore_errors=True)
        self.counts["wipes"] += 1
        r.start(r.offset_ms)
        await self.wait_ready(session, r)
        for c in clients:
            c.pinned = False
        for k in self.held:
            self.links[k].blocked = False
        self.held = set()
        self.note(f"canary: {victim} killed, restarted on an empty data directory, reconnected")

    # -- clients ---------------------------------------------------------------------------------
    async def client_loop(self, session: aiohttp.ClientSession, client: Client, end: float) -> None:
        rng = client.workload.rng
        retry: tuple[str, str, dict[str, Any]] | None = None
        others = self.ids
        while time.monotonic() < end:
            if retry is not None:
                kind, key, args = retry
                retry = None
            else:
                kind, key, args = client.workload.next_op()
                if client.session and not client.pinned and rng.random() < 0.2:
                    client.replica = rng.choice(others)
            op = self.history.add(Op(0, client.cid, kind, key, args, client.replica, self.now_ms()))
            await self.invoke(session, client, op)
            if op.error == "session_unavailable" or op.status == "unknown":
                if client.session and not client.pinned:
                    client.replica = rng.choice([r for r in self.ids if r != client.replica])
                if op.error == "session_unavailable":
                    retry = (kind, key, args)
                else:
                    await asyncio.sleep(0.05)  # a replica that is down: do not spin
            await asyncio.sleep(rng.uniform(0, 0.02))

    async def invoke(self, session: aiohttp.ClientSession, client: Client, op: Op) -> None:
        method, path, body = http_request(op.kind, op.key, op.args)
        headers = {}
        if client.session:
            headers[WAIT_HEADER] = str(SESSION_WAIT_MS)
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
        if token and client.session:
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
        for t in self.tasks:
            with contextlib.suppress(Exception):
                await t
        for link in self.links.values():
            link.calm()
        for r in self.replicas.values():
            if not r.running:
                r.start(r.offset_ms)
                await self.wait_ready(session, r)
        self.note("healed: every link up and calm, every replica running")

    async def converge(self, session: aiohttp.ClientSession) -> tuple[float | None, Final]:
        start = time.monotonic()
        while time.monotonic() - start < self.opts.liveness_s:
            await asyncio.sleep(0.3)
            statuses = {}
            try:
                for rid, r in self.replicas.items():
                    async with session.get(r.url + "/v1/status") as resp:
                        statuses[rid] = await resp.json()
            except (TimeoutError, aiohttp.ClientError, ValueError):
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
        converge_s: float | None = None
        final = Final()
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                await self.start(session)
                end = time.monotonic() + self.opts.duration_s
                clients = [
                    Client(
                        i,
                        Workload(i, stream(self.opts.seed, f"nemesis-client{i}"), self.keys),
                        self.ids[i % len(self.ids)],
                        session=i % 2 == 0,
                    )
                    for i in range(self.opts.clients)
                ]
                jobs = [self.client_loop(session, c, end) for c in clients]
                if self.opts.canary == "wipe-isolated":
                    jobs.append(self.canary_wipe(session, clients))
                else:
                    jobs.append(self.fault_schedule(session, end))
                await asyncio.gather(*jobs)
                await self.heal(session)
                converge_s, final = await self.converge(session)
                self.note(
                    f"converged {converge_s:.2f}s after healing"
                    if converge_s is not None
                    else "did NOT converge"
                )
            finally:
                for r in self.replicas.values():
                    r.terminate()
                for r in self.replicas.values():
                    r.wait_stopped()
                for p in self.proxies:
                    await p.stop()
        violations = checkers.check_all(self.history, final)
        if converge_s is None:
            violations.insert(0, checkers.Violation(
                "convergence", "no-convergence",
                f"replicas did not converge within {self.opts.liveness_s:g} s after healing",
            ))  # fmt: skip
        violations += self.log_errors()
        for link in self.links.values():
            self.counts.update(link.counts)
        ops = self.history.ops
        stats = {
            "ops": len(ops),
            "ops_ok": sum(o.status == "ok" for o in ops),
            "ops_fail": sum(o.status == "fail" for o in ops),
            "ops_unknown": sum(o.status == "unknown" for o in ops),
            "acked_writes": sum(o.status == "ok" and o.is_write for o in ops),
            "converge_s": None if converge_s is None else round(converge_s, 2),
            "forwarded": sum(link.forwarded for link in self.links.values()),
        }
        return violations, stats

    def log_errors(self) -> list[checkers.Violation]:
        out = []
        for r in self.replicas.values():
            text = r.log_path.read_text(errors="replace") if r.log_path.exists() else ""
            if "Traceback" in text:
                at = text.index("Traceback")
                out.append(
                    checkers.Violation(
                        "errors",
                        "replica-traceback",
                        f"{r.rid} logged a traceback: {text[at : at + 600]!r}",
                    )
                )
        return out


def run_one(opts: NemesisOptions) -> RunResult:
    """One run; its data directories are removed afterwards unless ``opts.data_dir``
    (or the run failed: then they are kept and named in the events)."""
    keep = opts.data_dir is not None
    root = (
        opts.data_dir if opts.data_dir is not None else Path(tempfile.mkdtemp(prefix="crdtkv-nem-"))
    )
    root.mkdir(parents=True, exist_ok=True)
    run = NemesisRun(opts)
    started = time.monotonic()
    try:
        violations, stats = asyncio.run(run.run(root))
    except RuntimeError as e:  # a replica that would not start: a finding too
        violations = [checkers.Violation("errors", "harness", str(e))]
        stats = {"ops": len(run.history.ops), "ops_ok": 0, "acked_writes": 0}
        keep = True
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): the replicas are stopped
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        raise
    if violations:
        (root / "history.json").write_text(
            json.dumps([o.to_json() for o in run.history.ops], indent=0, default=str)
        )
        if not keep and opts.canary is None:  # a canary fails by design
            keep = True
            run.note(f"data directories, logs and history.json kept in {root}")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    faults = {k: v for k, v in sorted(run.counts.items()) if v}
    return RunResult(
        opts.seed,
        run.config(),
        violations,
        stats,
        faults,
        run.events,
        time.monotonic() - started,
    )

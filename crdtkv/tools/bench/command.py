"""``crdtkv bench``: a load generator for a running replica (or one it starts).

In the spirit of redis-benchmark: ``-c`` keep-alive connections (one aiohttp
``ClientSession`` whose connector holds at most ``-c`` connections, and ``-c``
workers, each with one request in flight) send ``-n`` requests (or run for
``--duration`` seconds) of each operation type in ``-t``, one type after the
other, against random keys out of ``--keyspace``.  With ``--batch N`` every
request is a ``POST /v1/batch`` of N ops (JSON, or MessagePack with
``--msgpack``).  Per type it reports requests/s (and ops/s), latency
percentiles, errors, and how much CPU the server and the generator used.

The generator is Python too: on a small machine it competes with the server
for the cores, so every result says how busy each side was (from
``/proc/<pid>/stat``; the server's pid is known with ``--spawn``, found from
the listening socket for a loopback URL, or given with ``--server-pid``), and
how busy the rest of the machine was.  A server at ~100% of one core is
saturated (its event loop is one thread); a generator near 100% means the
figure measures the generator.

``--spawn`` starts a ``crdtkv serve`` of its own in a temporary directory
(``--durability fsync|wal``), benchmarks it and stops it afterwards (cleanly,
with SIGTERM; killed if it does not stop), whatever happens, so a benchmark is
one command::

    crdtkv bench --spawn -t register_set,counter_incr -n 100000 -c 50
    crdtkv bench --spawn --durability wal -t counter_incr --batch 100 --msgpack
    crdtkv bench --url http://127.0.0.1:7001 --url http://127.0.0.1:7002 -t set_add
    crdtkv bench --spawn -t register_get --duration 10 --json out.json

``register_get`` reads keys that exist: before it runs, the keyspace is
filled with registers through batches (untimed; ``--no-prefill`` skips it,
and then a 404 counts as ``not_found``, not as an error).

Exit status: 0 when every request succeeded, 1 when some failed (the first
failures are named) or the server could not be reached or started, 2 for bad
options (one line naming the option).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import math
import os
import platform
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast
from urllib.parse import urlsplit

__all__ = ["TYPES", "BenchConfig", "main", "parse_args"]

PROG = "crdtkv bench"
TYPES = ("register_set", "register_get", "counter_incr", "set_add", "hll_add")
DEFAULT_URL = "http://127.0.0.1:7001"
BATCH_OPS_MAX = 1_000  # the server's limit (crdtkv.limits.BATCH_OPS_MAX)
CONNECTIONS_MAX = 10_000
SPAWN_START_TIMEOUT_S = 120.0  # a big data directory takes a while to load
SPAWN_STOP_TIMEOUT_S = 30.0
PREFILL_BATCH = 1_000
ERROR_SAMPLES_MAX = 5
PROGRESS_INTERVAL_S = 0.25


class UsageError(Exception):
    pass


class BenchError(Exception):
    """A runtime failure: exit 1 with this one line."""


# -- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    urls: tuple[str, ...] = (DEFAULT_URL,)
    connections: int = 50
    requests: int = 100_000
    duration_s: float | None = None
    types: tuple[str, ...] = TYPES
    batch: int = 0
    keyspace: int = 100_000
    sequential: bool = False
    data_size: int = 3
    msgpack: bool = False
    json_path: str | None = None
    spawn: bool = False
    durability: str = "fsync"
    server_pids: tuple[int, ...] = ()
    prefill: bool = True
    progress: bool | None = None  # None: when stderr is a terminal
    quiet: bool = False
    use_uvloop: bool = True
    seed: int | None = None
    timeout_s: float = 30.0
    auth_token: str | None = None
    client: str = "aiohttp"  # or "raw": a minimal HTTP/1.1 client, far cheaper per request

    def to_json(self) -> dict[str, Any]:
        return {
            "urls": list(self.urls),
            "connections": self.connections,
            "requests": None if self.duration_s is not None else self.requests,
            "duration_s": self.duration_s,
            "types": list(self.types),
            "batch": self.batch,
            "keyspace": self.keyspace,
            "sequential": self.sequential,
            "data_size": self.data_size,
            "format": "msgpack" if self.msgpack else "json",
            "spawn": self.spawn,
            "durability": self.durability if self.spawn else None,
            "prefill": self.prefill,
            "seed": self.seed,
            "client": self.client,
        }


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(" ".join(message.split()))


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,
        description="Load generator for crdtkv (requests/s, latency percentiles, CPU shares).",
        epilog=f"operation types: {', '.join(TYPES)}",
    )
    add = p.add_argument
    add(
        "--url",
        action="append",
        metavar="URL",
        help=f"a replica; repeatable (default {DEFAULT_URL})",
    )
    add(
        "-c", "--connections", metavar="C", default="50", help="keep-alive connections (default 50)"
    )
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("-n", "--requests", metavar="N", help="requests per type (default 100000)")
    runs.add_argument("--duration", metavar="S", help="seconds per type, instead of -n")
    add("-t", "--types", metavar="T,T", help="comma list of operation types (default: all)")
    add("--batch", metavar="N", default="0", help="ops per /v1/batch request; 0: single requests")
    add("--keyspace", metavar="K", default="100000", help="distinct keys (default 100000)")
    add("--sequential", action="store_true", help="keys 0..K-1 in order instead of random")
    add("-d", "--data-size", metavar="B", default="3", help="register value bytes (default 3)")
    add("--msgpack", action="store_true", help="send batches as MessagePack (needs --batch)")
    add("--json", metavar="PATH", help="write the results as JSON to PATH")
    add("--spawn", action="store_true", help="start a crdtkv serve in a temp dir and stop it after")
    add("--durability", metavar="fsync|wal", help="the spawned server's durability (default fsync)")
    add("--server-pid", metavar="PID", action="append", help="server process(es) to account CPU to")
    add("--no-prefill", action="store_true", help="register_get: do not fill the keyspace first")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", action="store_true", default=None, help="always show progress")
    prog.add_argument("--no-progress", action="store_true", help="never show progress")
    add("-q", "--quiet", action="store_true", help="print only the results table")
    add("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    add(
        "--client",
        metavar="aiohttp|raw",
        default="aiohttp",
        help="aiohttp (default), or raw: a minimal keep-alive HTTP/1.1 client that leaves "
        "more CPU to a server on the same machine",
    )
    add("--seed", metavar="S", help="random seed for keys and values")
    add("--timeout", metavar="S", default="30", help="per-request timeout in seconds (default 30)")
    add("--auth-token", metavar="T", help="bearer token for the server [CRDTKV_AUTH_TOKEN]")
    return p


def _int(value: str, option: str, lo: int, hi: int | None = None) -> int:
    try:
        v = int(value.replace("_", ""))
    except ValueError:
        raise UsageError(f"{option}: expected an integer, not {value!r}") from None
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise UsageError(f"{option}: must be {bound}, not {v}")
    return v


def _float(value: str, option: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise UsageError(f"{option}: expected a number of seconds, not {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"{option}: must be a positive number of seconds, not {value!r}")
    return v


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url: expected http://HOST:PORT, not {value!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise UsageError(f"--url: bad port in {value!r}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"--url: give the replica's base URL only, not {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> BenchConfig:
    """The command line as a ``BenchConfig``; ``UsageError`` names the bad option."""
    environ = os.environ if environ is None else environ
    ns = _build_parser().parse_args(list(argv))
    urls = tuple(_url(u) for u in ns.url) if ns.url else (DEFAULT_URL,)
    if ns.spawn and ns.url:
        raise UsageError("--spawn: starts its own server; do not give --url as well")
    if ns.durability is not None and not ns.spawn:
        raise UsageError("--durability: only applies to the server --spawn starts")
    durability = ns.durability or "fsync"
    if durability not in ("fsync", "wal"):
        raise UsageError(f"--durability: choose fsync or wal, not {durability!r}")
    types: tuple[str, ...] = TYPES
    if ns.types is not None:
        names = [t.strip() for t in ns.types.split(",") if t.strip()]
        if not names:
            raise UsageError("-t: name at least one operation type")
        for t in names:
            if t not in TYPES:
                raise UsageError(
                    f"-t: unknown operation type {t!r}; choose from {', '.join(TYPES)}"
                )
        types = tuple(dict.fromkeys(names))
    batch = _int(ns.batch, "--batch", 0, BATCH_OPS_MAX)
    if ns.msgpack and batch == 0:
        raise UsageError("--msgpack: only batches can be MessagePack; add --batch N")
    pids = tuple(_int(p, "--server-pid", 1) for p in ns.server_pid or ())
    if pids and ns.spawn:
        raise UsageError("--server-pid: --spawn accounts its own server")
    if ns.client not in ("aiohttp", "raw"):
        raise UsageError(f"--client: choose aiohttp or raw, not {ns.client!r}")
    if ns.json is not None and not ns.json:
        raise UsageError("--json: expected a file path")
    return BenchConfig(
        urls=urls,
        connections=_int(ns.connections, "-c", 1, CONNECTIONS_MAX),
        requests=_int(ns.requests, "-n", 1) if ns.requests is not None else 100_000,
        duration_s=_float(ns.duration, "--duration") if ns.duration is not None else None,
        types=types,
        batch=batch,
        keyspace=_int(ns.keyspace, "--keyspace", 1, 10**12),
        sequential=ns.sequential,
        data_size=_int(ns.data_size, "-d", 0, 512 * 1024),
        msgpack=ns.msgpack,
        json_path=ns.json,
        spawn=ns.spawn,
        durability=durability,
        server_pids=pids,
        prefill=not ns.no_prefill,
        progress=False if ns.no_progress else ns.progress,
        quiet=ns.quiet,
        use_uvloop=not ns.no_uvloop,
        seed=_int(ns.seed, "--seed", 0) if ns.seed is not None else None,
        timeout_s=_float(ns.timeout, "--timeout"),
        auth_token=ns.auth_token or environ.get("CRDTKV_AUTH_TOKEN") or None,
        client=ns.client,
    )


# -- /proc accounting --------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KiB (VmRSS), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine, all cores, since boot."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    ticks = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    idle = ticks[3] + ticks[4]
    return (total - idle) / _TICKS, total / _TICKS


def listening_pids(port: int) -> list[int]:
    """Processes listening on a local TCP port (root, or the same user, can see them)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if (
                        len(cols) > 9
                        and cols[3] == "0A"
                        and int(cols[1].rsplit(":", 1)[1], 16) == port
                    ):
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return pids


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass
class CpuSample:
    at: float
    bench_s: float
    server_s: dict[int, float]
    machine: tuple[float, float] | None

    @classmethod
    def take(cls, pids: Sequence[int]) -> CpuSample:
        server = {}
        for pid in pids:
            v = proc_cpu_s(pid)
            if v is not None:
                server[pid] = v
        return cls(time.monotonic(), time.process_time(), server, machine_cpu())


def cpu_shares(a: CpuSample, b: CpuSample) -> dict[str, float | None]:
    """CPU used between two samples, in % of one core (200% = both cores of two)."""
    wall = max(b.at - a.at, 1e-9)
    server: float | None = None
    if a.server_s and b.server_s:
        server = sum(b.server_s[p] - a.server_s[p] for p in a.server_s if p in b.server_s)
    bench = b.bench_s - a.bench_s
    out: dict[str, float | None] = {
        "server_pct": None if server is None else round(100 * server / wall, 1),
        "bench_pct": round(100 * bench / wall, 1),
        "machine_busy_pct": None,
        "others_pct": None,
    }
    if a.machine is not None and b.machine is not None:
        busy = b.machine[0] - a.machine[0]
        ncpu = os.cpu_count() or 1
        # /proc/stat ticks and the monotonic clock can disagree slightly: scale by the total.
        total = (b.machine[1] - a.machine[1]) / ncpu or wall
        out["machine_busy_pct"] = round(100 * busy / total, 1)
        others = busy / total - (server or 0.0) / wall - bench / wall
        out["others_pct"] = round(max(0.0, 100 * others), 1)
    return out


# -- a spawned server ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SpawnedServer:
    """``crdtkv serve`` in a temporary directory; ``stop`` is safe to call whatever happened."""

    def __init__(self, durability: str, environ: Mapping[str, str]) -> None:
        self.durability = durability
        self.environ = {k: v for k, v in environ.items() if not k.startswith("CRDTKV_")}
        self.tmp = Path(tempfile.mkdtemp(prefix="crdtkv-bench-"))
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.port = _free_port()
        cmd = [
            sys.executable, "-m", "crdtkv.cli", "serve",
            "--replica-id", "bench",
            "--port", str(self.port),
            "--data-dir", str(self.tmp / "data"),
            "--durability", self.durability,
            "--log-level", "WARNING",
        ]  # fmt: skip
        log = open(self.tmp / "server.log", "w")  # noqa: SIM115 - the child owns it
        try:
            # A session of its own: a Ctrl-C at the terminal reaches us, and we stop it.
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, env=self.environ, text=True,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        assert self.proc.stdout is not None
        deadline = time.monotonic() + SPAWN_START_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            if not ready:
                raise BenchError(
                    f"--spawn: the server did not start within {SPAWN_START_TIMEOUT_S:.0f} s"
                )
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                status = self.proc.returncode
                raise BenchError(
                    f"--spawn: the server exited with status {status}: {self.log_tail()}"
                )
            if "serving on" in line:
                return

    def log_tail(self) -> str:
        try:
            lines = (self.tmp / "server.log").read_text().strip().splitlines()
        except OSError:
            return "<no log>"
        return lines[-1] if lines else "<empty log>"

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after a timeout; remove the directory."""
        status = None
        proc = self.proc
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                try:
                    status = proc.wait(timeout=SPAWN_STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    status = proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return status


# -- requests ----------------------------------------------------------------------------------

JSON_TYPE = "application/json"
MSGPACK_TYPE = "application/msgpack"


@dataclass
class Request:
    method: str
    path: str
    body: bytes | None
    ops: int  # operations it carries
    content_type: str | None = None


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
        return f"key:{i:012d}"

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


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, one per request
    requests: int = 0
    ops: int = 0
    errors: int = 0  # failed requests, plus failed ops inside batches
    not_found: int = 0  # reads of absent keys (not errors)
    samples: list[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES_MAX:
            self.samples.append(what)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(op_type: str, tally: Tally, seconds: float, cpu: Mapping[str, Any]) -> dict[str, Any]:
    lat = sorted(tally.latencies)
    ms = 1000.0
    cpu = dict(cpu)
    # CPU microseconds per request and per op: steadier than rates on a shared machine,
    # and 1e6 / server_us_per_request is what one core could serve.
    for side in ("server", "bench"):
        pct = cpu.get(f"{side}_pct")
        cpu_s = None if pct is None else pct / 100 * seconds
        for unit, count in (("request", tally.requests), ("op", tally.ops)):
            cpu[f"{side}_us_per_{unit}"] = (
                round(1e6 * cpu_s / count, 1) if cpu_s is not None and count else None
            )

    def r(x: float) -> float | None:
        return None if math.isnan(x) else round(x * ms, 3)

    return {
        "type": op_type,
        "requests": tally.requests,
        "ops": tally.ops,
        "errors": tally.errors,
        "not_found": tally.not_found,
        "seconds": round(seconds, 3),
        "requests_per_s": round(tally.requests / seconds, 1) if seconds > 0 else None,
        "ops_per_s": round(tally.ops / seconds, 1) if seconds > 0 else None,
        "latency_ms": {
            "min": r(lat[0]) if lat else None,
            "mean": r(sum(lat) / len(lat)) if lat else None,
            "p50": r(percentile(lat, 50)),
            "p90": r(percentile(lat, 90)),
            "p99": r(percentile(lat, 99)),
            "p999": r(percentile(lat, 99.9)),
            "max": r(lat[-1]) if lat else None,
        },
        "cpu": cpu,
        "error_samples": list(tally.samples),
    }


class Fetcher:
    """One connection's worth of requests: ``fetch`` -> (status, content type, body)."""

    async def fetch(self, req: Request) -> tuple[int, str, bytes]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class AiohttpFetcher(Fetcher):
    """Requests through the run's shared ``aiohttp.ClientSession`` (its pool keeps them alive)."""

    def __init__(self, session: Any, url: str) -> None:
        self.session = session
        self.url = url

    async def fetch(self, req: Request) -> tuple[int, str, bytes]:
        headers = {"Content-Type": req.content_type} if req.content_type else None
        async with self.session.request(
            req.method, self.url + req.path, data=req.body, headers=headers
        ) as resp:
            return resp.status, resp.content_type, await resp.read()


class _RawProtocol(asyncio.Protocol):
    """The least HTTP/1.1 a keep-alive client needs against aiohttp's server.

    One request at a time; a response must carry Content-Length (aiohttp's
    ``web.Response`` always does).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, str, bytes]] | None = None
        self.closed = False
        self.last_head = b""  # the last response's status line and headers, as sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            waiter.set_exception(ConnectionError("response without Content-Length"))
            return
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        if len(self.buf) < end + 4 + length:
            return
        ctype = ""
        k = head.find(b"\r\ncontent-type:")
        if k >= 0:
            m = head.find(b"\r\n", k + 2)
            ctype = head[k + 15 : m if m >= 0 else len(head)].split(b";")[0].strip().decode()
        body = bytes(self.buf[end + 4 : end + 4 + length])
        self.last_head = bytes(self.buf[:end])
        del self.buf[: end + 4 + length]
        waiter.set_result((int(head[9:12]), ctype, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed by the server"))


class RawFetcher(Fetcher):
    """One keep-alive connection spoken to directly: a cheaper client than aiohttp's.

    The generator shares the machine with the server, so every microsecond it
    spends per request is taken from the server; this is a tenth of aiohttp's.
    """

    def __init__(self, url: str, auth_token: str | None, timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise BenchError("--client raw: only http:// URLs")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        extra = f"Authorization: Bearer {auth_token}\r\n" if auth_token else ""
        self.common = f"Host: {parts.netloc}\r\n{extra}".encode()
        self.proto: _RawProtocol | None = None
        self.last_head = b""

    def header(self, name: str) -> str | None:
        """A header of the last response (the first one of that name), or None."""
        needle = b"\r\n" + name.lower().encode() + b":"
        head = self.last_head
        i = head.lower().find(needle)
        if i < 0:
            return None
        j = head.find(b"\r\n", i + len(needle))
        return head[i + len(needle) : j if j >= 0 else len(head)].strip().decode("latin-1")

    async def _connect(self) -> _RawProtocol:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_RawProtocol, self.host, self.port)
        return proto

    async def fetch(self, req: Request) -> tuple[int, str, bytes]:
        proto = self.proto
        if proto is None or proto.closed:
            proto = self.proto = await self._connect()
        assert proto.transport is not None
        head = f"{req.method} {req.path} HTTP/1.1\r\n".encode() + self.common
        if req.body is not None:
            ctype, size = req.content_type or JSON_TYPE, len(req.body)
            head += f"Content-Type: {ctype}\r\nContent-Length: {size}\r\n\r\n".encode()
            proto.transport.write(head + req.body)
        else:
            proto.transport.write(head + b"\r\n")
        proto.waiter = asyncio.get_running_loop().create_future()
        try:
            result = await asyncio.wait_for(proto.waiter, self.timeout_s)
            self.last_head = proto.last_head
            return result
        except BaseException:
            proto.transport.close()  # the connection's state is unknown now
            self.proto = None
            raise
        finally:
            proto.waiter = None

    async def close(self) -> None:
        if self.proto is not None and self.proto.transport is not None:
            self.proto.transport.close()
        self.proto = None


class Runner:
    def __init__(self, cfg: BenchConfig, urls: Sequence[str], pids: Sequence[int]) -> None:
        self.cfg = cfg
        self.urls = list(urls)
        self.pids = list(pids)
        self.rng = random.Random(cfg.seed)
        self.session: Any = None
        self.fetchers: list[Fetcher] = []

    async def __aenter__(self) -> Runner:
        import aiohttp

        headers = {}
        if self.cfg.auth_token:
            headers["Authorization"] = f"Bearer {self.cfg.auth_token}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.cfg.connections, limit_per_host=0),
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
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
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
                    {"op": "registers.set", "key": f"key:{k:012d}", "value": value}
                    for k in range(lo, next_key)
                ]
                req = Request("POST", "/v1/batch", orjson.dumps({"ops": ops}), len(ops), JSON_TYPE)
                await self.send(fetcher, req, tally, False)

        await asyncio.gather(*(worker(i) for i in range(min(cfg.connections, 16))))
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


# -- output -------------------------------------------------------------------------------------


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_table(results: Sequence[Mapping[str, Any]], batched: bool) -> str:
    head = f"{'type':<13} {'requests':>9} {'req/s':>9}"
    if batched:
        head += f" {'ops/s':>10}"
    head += f" {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}"
    head += f" {'server%':>8} {'bench%':>7} {'other%':>7} {'srv us/op':>9}"
    lines = [head]
    for r in results:
        lat, cpu = r["latency_ms"], r["cpu"]
        line = f"{r['type']:<13} {r['requests']:>9} {_fmt(r['requests_per_s'], ',.0f'):>9}"
        if batched:
            line += f" {_fmt(r['ops_per_s'], ',.0f'):>10}"
        line += (
            f" {_fmt(lat['p50'], '.2f'):>8} {_fmt(lat['p99'], '.2f'):>8}"
            f" {_fmt(lat['max'], '.1f'):>8}"
            f" {r['errors']:>7} {_fmt(cpu['server_pct'], '.0f'):>8}"
            f" {_fmt(cpu['bench_pct'], '.0f'):>7} {_fmt(cpu['others_pct'], '.0f'):>7}"
            f" {_fmt(cpu['server_us_per_op'], '.0f'):>9}"
        )
        lines.append(line)
    return "\n".join(lines)


def _describe(cfg: BenchConfig, loop_name: str, urls: Sequence[str]) -> str:
    amount = f"{cfg.duration_s:g} s" if cfg.duration_s is not None else f"{cfg.requests} requests"
    shape = (
        f"batches of {cfg.batch} ({'msgpack' if cfg.msgpack else 'json'})"
        if cfg.batch
        else "single requests"
    )
    where = f"spawned server ({cfg.durability})" if cfg.spawn else ", ".join(urls)
    return (
        f"{PROG}: {amount} per type, {cfg.connections} connections, {shape}, "
        f"keyspace {cfg.keyspace}, {cfg.client} client on {loop_name}, against {where}"
    )


# -- main -------------------------------------------------------------------------------------


def _new_loop_runner(cfg: BenchConfig) -> tuple[asyncio.Runner, str]:
    if cfg.use_uvloop:
        try:
            import uvloop

            return asyncio.Runner(loop_factory=uvloop.new_event_loop), "uvloop"
        except ImportError:  # the "fast" extra is optional
            pass
    return asyncio.Runner(), "asyncio"


def _server_pids(cfg: BenchConfig, urls: Sequence[str], spawned: SpawnedServer | None) -> list[int]:
    if spawned is not None:
        return [spawned.pid]
    if cfg.server_pids:
        return list(cfg.server_pids)
    pids: list[int] = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
            port = parts.port or (443 if parts.scheme == "https" else 80)
            pids.extend(p for p in listening_pids(port) if p != os.getpid() and p not in pids)
    return pids


async def _run(
    cfg: BenchConfig,
    urls: Sequence[str],
    pids: Sequence[int],
    progress: bool,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    results = []
    async with Runner(cfg, urls, pids) as runner:
        await runner.check_reachable()
        for op_type in cfg.types:
            if op_type == "register_get" and cfg.prefill:
                n, secs = await runner.prefill()
                say(f"prefilled {n} registers in {secs:.1f} s")
            results.append(await runner.run_type(op_type, progress))
    return results


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    try:
        cfg = parse_args(argv, environ)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    progress = cfg.progress if cfg.progress is not None else sys.stderr.isatty()

    def say(msg: str) -> None:
        if not cfg.quiet:
            print(msg, file=sys.stderr, flush=True)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    spawned: SpawnedServer | None = None
    spawn_status: int | None = None
    runner, loop_name = _new_loop_runner(cfg)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    try:
        if cfg.spawn:
            spawned = SpawnedServer(cfg.durability, environ)
            spawned.start()
            urls: Sequence[str] = [spawned.url]
            say(f"spawned crdtkv serve (pid {spawned.pid}, {cfg.durability}) on {spawned.url}")
        else:
            urls = cfg.urls
        pids = _server_pids(cfg, urls, spawned)
        say(_describe(cfg, loop_name, urls))
        if not pids:
            say("server process not found: no server CPU figures (see --server-pid)")
        rss_start = sum(filter(None, (proc_rss_kb(p) for p in pids))) or None
        with runner:
            results = runner.run(_run(cfg, urls, pids, progress, say))
    except BenchError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if spawned is not None:
            spawn_status = spawned.stop()
            if spawn_status not in (0, None):
                say(f"the spawned server exited with status {spawn_status}")
    print(render_table(results, cfg.batch > 0))
    cpu_note = (
        "server%/bench%/other%: CPU used by the server, by this generator and by everything "
        f"else, in % of one core ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}%); "
        "srv us/op: server CPU microseconds per operation"
    )
    say(cpu_note)
    errors = sum(r["errors"] for r in results)
    if cfg.json_path is not None:
        import json

        doc = {
            "tool": PROG,
            "format_version": 1,
            "started_at": started_at,
            "machine": machine_info(),
            "event_loop": loop_name,
            "config": cfg.to_json(),
            "server": {
                "pids": list(pids),
                "rss_kb_start": rss_start,
                "spawned": cfg.spawn,
                "exit_status": spawn_status,  # of the spawned server, after its clean stop
            },
            "results": results,
        }
        try:
            Path(cfg.json_path).write_text(json.dumps(doc, indent=2) + "\n")
        except OSError as e:
            print(f"{PROG}: error: --json: {e}", file=sys.stderr)
            return 1
    if errors:
        first = next(s for r in results for s in r["error_samples"])
        print(
            f"{PROG}: error: {errors} request(s) or op(s) failed; first: {first}", file=sys.stderr
        )
        return 1
    return 0

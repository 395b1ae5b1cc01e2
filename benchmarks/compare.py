"""crdtkv side by side with Redis and webdis, on one machine, in one run.

    .venv/bin/python benchmarks/compare.py            # 5 s per test, 3 rounds
    .venv/bin/python benchmarks/compare.py --quick    # 2 s per test

Starts, each on loopback with its data in a temporary directory:

- ``redis``: redis-server without persistence (``--save '' --appendonly no``);
- ``redis-aof``: redis-server with ``--appendonly yes --appendfsync always``;
- ``webdis``: webdis (HTTP/JSON) in front of ``redis``;
- ``crdtkv-fsync`` and ``crdtkv-wal``: ``crdtkv serve --durability fsync|wal``;
- ``aiohttp-floor``: the bare aiohttp app of ``benchmarks/aiohttp_floor.py`` (handlers
  that parse the body and answer: no middleware, storage or CRDTs), for the register
  set/get, counter incr and batch rows: what the HTTP framework alone reaches under
  the same load in the same run.

After the tables it prints issue 19's three ratios (register GET vs webdis GET,
durable counter incr vs Redis INCR appendfsync always, ``/v1/batch`` of 100
register sets vs Redis SET -P16 appendfsync always) beside the floor's ratios
against the same anchors (``render_issue19``).  ``--crdtkv-tree DIR`` runs crdtkv
from another source tree (a ``git archive`` of an earlier commit), for before/after
figures with the same tools.

Redis is driven by ``redis-benchmark`` (its own C client, RESP), webdis and
crdtkv by the same HTTP load generator, ``wrk --latency`` with the Lua
scripts in ``benchmarks/lua/``; every test uses the same connection count
and about the same duration (redis-benchmark takes a request count: it is
sized from the duration).  The systems run in a rotating order over several
rounds, so drift of the machine hits all of them; the figures are the
medians over rounds.  Also pipelined Redis SET (``-P 16``) against
crdtkv's ``/v1/batch`` (100 ``registers.set`` ops a request), in ops/s.

Writes ``benchmarks/results/compare.json``, ``compare.md`` and ``compare.png``
(ratios crdtkv / peer), and prints the Markdown.  Installs nothing: if a tool
is missing it says how to install it and exits with status 2.  Every server it
starts is stopped at the end, whatever happens.

The RESP section (after the HTTP one; alone with ``--resp-only``, which needs
only redis-server and redis-benchmark) drives crdtkv's own Redis port with
redis-benchmark, the same client as Redis: its tests ``-t
set,get,incr,sadd,hset,zadd`` (redis-benchmark's commands and keys: SADD,
HSET and ZADD go to one key each, ``myset``/``myhash``/``myzset``), pipelined
(``-P 16``) and not (``-P 1``), one redis-benchmark run per test and system
(it exits at the first error reply: a command crdtkv lacks is reported as
such and the others still run).  crdtkv-fsync's writes are set against
``redis-aof`` (appendfsync always), its reads (GET) against ``redis`` (no
persistence); every test runs on all three.  ``-n`` comes from a short
calibration run (later rounds: the rate measured), so each test lasts about
``--duration`` seconds.  Writes ``compare_resp.json``, ``compare_resp.md`` and
``compare_resp.png``::

    .venv/bin/python benchmarks/compare.py --resp-only --quick --rounds 2   # about 2 minutes
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdtkv.tools.bench.machine import machine_info
from crdtkv.tools.procs import free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]
LUA_DIR = ROOT / "benchmarks" / "lua"
RESULTS = ROOT / "benchmarks" / "results"
TOOLS = ("redis-server", "redis-benchmark", "webdis", "wrk")
RESP_TOOLS = ("redis-server", "redis-benchmark")
INSTALL_HINT = "apt-get update && apt-get install -y redis-server webdis wrk"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
VALUE = "xxx"  # 3 bytes, redis-benchmark's default -d

# (row name, redis command, webdis/crdtkv wrk OP, crdtkv name of the operation)
OPS: tuple[tuple[str, str, str, str], ...] = (
    ("set", "SET key:__rand_int__ " + VALUE, "set", "register set"),
    ("get", "GET key:__rand_int__", "get", "register get"),
    ("incr", "INCR ctr:__rand_int__", "incr", "counter incr"),
    ("sadd", "SADD set:__rand_int__ m:__rand_int__", "sadd", "set add"),
    ("pfadd", "PFADD hll:__rand_int__ m:__rand_int__", "pfadd", "HLL add"),
)
PREFIXES = {"incr": "ctr", "sadd": "set", "pfadd": "hll"}  # one Redis keyspace for all types
SYSTEMS = ("redis", "redis-aof", "webdis", "crdtkv-fsync", "crdtkv-wal", "aiohttp-floor")
AIMS = {  # name: (row, numerator system, denominator system, aim)
    "durable counter incr vs Redis appendfsync always": ("incr", "crdtkv-fsync", "redis-aof", 0.35),
    "register get vs webdis get": ("get", "crdtkv-fsync", "webdis", 0.45),
    "/v1/batch (fsync) vs pipelined Redis SET (appendfsync always)": (
        "batch",
        "crdtkv-fsync",
        "redis-aof",
        0.25,
    ),
}


# The RESP section: redis-benchmark's own tests, against crdtkv's RESP port and Redis.
RESP_TESTS = ("set", "get", "incr", "sadd", "hset", "zadd")
RESP_PIPELINES = (16, 1)
RESP_SYSTEMS = ("crdtkv-fsync", "redis-aof", "redis")
RESP_READS = ("get",)  # compared with redis (no persistence); the writes with redis-aof


def missing_tools(tools: Sequence[str] = TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


# -- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    cmd: list[str]
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    resp_port: int | None = None  # crdtkv's Redis port

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, probe: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log}"
                )
            with contextlib.suppress(OSError):
                if probe == "redis" and redis_command(self.port, ["PING"]) == b"+PONG\r\n":
                    return
                if probe == "http":
                    crdtkv_like = self.name.startswith("crdtkv") or self.name in FLOORS
                    path = "/healthz" if crdtkv_like else "/PING"
                    url = f"http://127.0.0.1:{self.port}{path}"
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status == 200 and (
                            self.resp_port is None
                            or redis_command(self.resp_port, ["PING"]) == b"+PONG\r\n"
                        ):
                            return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready in {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], STOP_TIMEOUT_S)


def redis_command(port: int, args: Sequence[str], timeout: float = 10.0) -> bytes:
    """One RESP command; the raw reply (enough for +OK / +PONG / :n)."""
    payload = f"*{len(args)}\r\n".encode()
    for a in args:
        b = a.encode()
        payload += b"$%d\r\n%s\r\n" % (len(b), b)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


@dataclass
class Cluster:
    tmp: Path
    servers: dict[str, Server] = field(default_factory=dict)

    def start(self, crdtkv: list[str], systems: Sequence[str] = SYSTEMS) -> None:
        rp, ap = free_port(), free_port()
        for name, port, persist in (
            ("redis", rp, ["--save", "", "--appendonly", "no"]),
            ("redis-aof", ap, ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]),
        ):
            d = self.tmp / name
            d.mkdir()
            cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d)]
            cmd += ["--daemonize", "no", "--protected-mode", "no", *persist]
            self.servers[name] = Server(name, cmd, port, self.tmp / f"{name}.log")
        wp = free_port()
        conf = {
            "redis_host": "127.0.0.1",
            "redis_port": rp,
            "redis_auth": None,
            "http_host": "127.0.0.1",
            "http_port": wp,
            "threads": os.cpu_count() or 2,
            "pool_size": 20,
            "daemonize": False,
            "websockets": False,
            "database": 0,
            "acl": [{"disabled": ["DEBUG"]}],
            "verbosity": 1,
            "logfile": str(self.tmp / "webdis-internal.log"),
        }
        conf_path = self.tmp / "webdis.json"
        conf_path.write_text(json.dumps(conf, indent=2))
        self.servers["webdis"] = Server(
            "webdis", ["webdis", str(conf_path)], wp, self.tmp / "webdis.log"
        )
        for durability in ("fsync", "wal"):
            name, port, resp_port = f"crdtkv-{durability}", free_port(), free_port()
            cmd = [*crdtkv, "serve", "--replica-id", name, "--port", str(port)]
            cmd += ["--data-dir", str(self.tmp / name), "--durability", durability]
            cmd += ["--log-level", "WARNING", "--resp-port", str(resp_port)]
            self.servers[name] = Server(
                name, cmd, port, self.tmp / f"{name}.log", resp_port=resp_port
            )
        add_floors(self)
        for name in SYSTEMS:
            if name not in systems:
                del self.servers[name]
                continue
            srv = self.servers[name]
            srv.start()
            srv.wait_ready("redis" if name.startswith("redis") else "http")

    def stop(self) -> None:
        for srv in reversed(list(self.servers.values())):
            with contextlib.suppress(Exception):
                srv.stop()

    def port(self, name: str) -> int:
        return self.servers[name].port

    def redis_port(self, name: str) -> int:
        """The port a Redis client talks to: Redis's, or crdtkv's RESP port."""
        srv = self.servers[name]
        return srv.resp_port if srv.resp_port is not None else srv.port


def prefill(cluster: Cluster, keyspace: int) -> None:
    """Every key of the keyspace holds a string / register, so GETs find something."""
    for name in ("redis", "redis-aof"):
        if name not in cluster.servers:
            continue
        args = ["MSET"]
        for k in range(keyspace):
            args += [f"key:{k:012d}", VALUE]
        reply = redis_command(cluster.port(name), args, timeout=60)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"prefill of {name}: {reply[:200]!r}")
    for name in ("crdtkv-fsync", "crdtkv-wal"):
        if name in cluster.servers:
            prefill_crdtkv(cluster.port(name), keyspace)


def prefill_crdtkv(port: int, keyspace: int) -> None:
    """Registers key:000000000000 ... of the keyspace hold VALUE (through /v1/batch)."""
    for lo in range(0, keyspace, 1000):
        ops = [
            {"op": "registers.set", "key": f"key:{k:012d}", "value": VALUE}
            for k in range(lo, min(keyspace, lo + 1000))
        ]
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/batch",
            data=json.dumps({"ops": ops}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            if resp.status != 200:
                raise RuntimeError(f"prefill of port {port}: HTTP {resp.status}")


# -- load generators ---------------------------------------------------------------------------


def run_redis_benchmark(
    port: int, command: str, connections: int, requests: int, keyspace: int, pipeline: int
) -> dict[str, Any]:
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(connections)]
    cmd += ["-n", str(requests), "-r", str(keyspace), "-P", str(pipeline), "-q", "--csv"]
    cmd += command.split()
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()[:300]}")
    rows = parse_csv(out.stdout)
    if not rows:
        raise RuntimeError(f"unexpected redis-benchmark output: {out.stdout[:300]!r}")
    row = rows[-1]
    rps = row["rps"]
    assert rps is not None
    return {
        "requests_per_s": rps,
        "ops_per_s": rps,  # with -P, every pipelined command counts as one request
        "p50_ms": row["p50_latency_ms"],
        "p99_ms": row["p99_latency_ms"],
        "errors": 0,
        "seconds": elapsed,
    }


def parse_csv(text: str) -> list[dict[str, Any]]:
    """redis-benchmark ``--csv``'s rows: ``test`` (its name, e.g. ``SET`` or ``MSET (10
    keys)``) and the numbers (``rps``, ``avg_latency_ms``, ``p50_latency_ms``, ...) as
    floats (None when empty).  Lines that are not CSV rows (``-q``'s progress, a warning)
    are skipped; a header without ``test`` and ``rps`` is a ValueError."""
    lines = [ln for ln in text.replace("\r", "\n").splitlines() if ln.startswith('"')]
    if not lines:
        return []
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if not reader.fieldnames or not {"test", "rps"} <= set(reader.fieldnames):
        raise ValueError(f"not redis-benchmark --csv output: {text[:200]!r}")
    rows: list[dict[str, Any]] = []
    for raw in reader:
        if raw["test"] == "test":
            continue  # a second header (one per run when outputs are joined)
        row: dict[str, Any] = {"test": raw["test"]}
        for k, v in raw.items():
            if k != "test" and k is not None:
                row[k] = float(v) if v not in (None, "") else None
        rows.append(row)
    return rows


def run_resp_test(
    port: int, test: str, connections: int, requests: int, keyspace: int, pipeline: int
) -> dict[str, Any]:
    """One of redis-benchmark's own tests (``-t test``).  redis-benchmark exits at the first
    error reply: that is a result too (``error``: the server's error), not an exception."""
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(connections)]
    cmd += ["-n", str(requests), "-r", str(keyspace), "-P", str(pipeline), "-q", "--csv"]
    cmd += ["-t", test]
    started = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - started
    rows = parse_csv(out.stdout)
    if out.returncode != 0 or not rows:
        error = out.stderr.strip().splitlines()[-1:] or [f"exit {out.returncode}"]
        if "Error from server" not in error[0]:
            raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr[:300]}")
        return {
            "error": error[0].removeprefix("Error from server: "),
            "ops_per_s": None,
            "p50_ms": None,
            "p99_ms": None,
            "requests": requests,
            "seconds": elapsed,
        }
    row = rows[-1]
    return {
        "ops_per_s": row["rps"],  # with -P, every pipelined command counts as one request
        "p50_ms": row.get("p50_latency_ms"),
        "p99_ms": row.get("p99_latency_ms"),
        "requests": requests,
        "seconds": elapsed,
        "error": None,
    }


def run_resp_round(
    cluster: Cluster, order: Sequence[str], args: argparse.Namespace
) -> Iterator[dict[str, Any]]:
    """Every RESP test of one round, the systems in ``order``; a test a system answered with
    an error is not run again there in later rounds."""
    c, dur, ks = args.connections, args.duration, args.keyspace
    seen: dict[tuple[str, str, int], float] = args.resp_rates_seen
    failed: dict[tuple[str, str], str] = args.resp_failed
    for system in order:
        port = cluster.redis_port(system)
        for pipeline in RESP_PIPELINES:
            for test in args.resp_tests:
                if (system, test) in failed:  # known: the same error, not run again
                    yield {
                        "system": system,
                        "test": test,
                        "pipeline": pipeline,
                        "error": failed[(system, test)],
                        "ran": False,
                        "ops_per_s": None,
                        "p50_ms": None,
                        "p99_ms": None,
                        "requests": 0,
                        "seconds": 0.0,
                    }
                    continue
                key = (system, test, pipeline)
                least = max(1000, c * pipeline * 4)
                if key not in seen:  # calibration: a short run sizes -n
                    guess = run_resp_test(port, test, c, least, ks, pipeline)
                    if guess["error"] is not None:
                        failed[(system, test)] = guess["error"]
                        yield {"system": system, "test": test, "pipeline": pipeline, **guess}
                        continue
                    seen[key] = guess["ops_per_s"]
                n = max(least, int(seen[key] * dur))
                res = run_resp_test(port, test, c, n, ks, pipeline)
                if res["error"] is not None:
                    failed[(system, test)] = res["error"]
                else:
                    seen[key] = res["ops_per_s"]
                yield {"system": system, "test": test, "pipeline": pipeline, **res}


def run_wrk(
    url: str,
    script: str,
    op: str,
    connections: int,
    duration_s: float,
    keyspace: int,
    threads: int,
    ops_per_request: int = 1,
) -> dict[str, Any]:
    prefix = PREFIXES.get(op, "key")
    env = dict(os.environ, OP=op, PREFIX=prefix, KEYSPACE=str(keyspace), LUA_DIR=str(LUA_DIR))
    env["BATCH"] = "100"
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s"]
    cmd += ["--latency", "--timeout", "10s", "-s", str(LUA_DIR / script), url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration_s + 120, env=env, check=False
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("COMPARE_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr.strip()[:300]}")
    d = json.loads(line.split(" ", 1)[1])
    secs = d["duration_us"] / 1e6
    rps = d["requests"] / secs if secs > 0 else 0.0
    return {
        "requests_per_s": rps,
        "ops_per_s": rps * ops_per_request,
        "p50_ms": d["p50_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "errors": sum(d["errors"].values()),
        "seconds": secs,
    }


def run_round(
    cluster: Cluster, order: Sequence[str], args: argparse.Namespace
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(row, system, result) for every test of one round, the systems in ``order``."""
    c, dur, ks = args.connections, args.duration, args.keyspace
    threads = min(2, c)
    seen: dict[tuple[str, str], float] = args.redis_rates_seen  # sizes -n from the last round

    def requests(system: str, row: str, guess: float) -> int:
        return max(1000, int(seen.get((system, row), guess) * dur))

    for system in order:
        port = cluster.port(system)
        for row, redis_cmd, op, _ in OPS:
            if row not in args.ops or (system in FLOORS and row not in FLOOR_ROWS):
                continue
            if system.startswith("redis"):
                n = requests(system, row, args.redis_rate)
                res = run_redis_benchmark(port, redis_cmd, c, n, ks, 1)
                seen[(system, row)] = res["requests_per_s"]
            elif system == "webdis":
                res = run_wrk(f"http://127.0.0.1:{port}", "webdis.lua", op, c, dur, ks, threads)
            else:
                res = run_wrk(f"http://127.0.0.1:{port}", "crdtkv.lua", op, c, dur, ks, threads)
            yield row, system, res
        if "batch" not in args.ops:
            continue
        if system.startswith("redis"):
            n = requests(system, "batch", args.redis_rate * 5)
            res = run_redis_benchmark(port, OPS[0][1], c, n, ks, 16)
            seen[(system, "batch")] = res["requests_per_s"]
            yield "batch", system, res
        elif system.startswith("crdtkv") or system in FLOORS:
            url = f"http://127.0.0.1:{port}"
            res = run_wrk(url, "crdtkv.lua", "batch", c, dur, ks, threads, ops_per_request=100)
            yield "batch", system, res


# -- summary -----------------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return statistics.median(vs) if vs else None


def summarize(raw: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """row -> system -> medians over rounds."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in raw:
        out.setdefault(r["row"], {}).setdefault(r["system"], {"runs": []})["runs"].append(r)
    for systems in out.values():
        for s in systems.values():
            runs = s["runs"]
            s["requests_per_s"] = median([x["requests_per_s"] for x in runs])
            s["ops_per_s"] = median([x["ops_per_s"] for x in runs])
            s["p50_ms"] = median([x["p50_ms"] for x in runs])
            s["p99_ms"] = median([x["p99_ms"] for x in runs])
            s["errors"] = sum(x["errors"] for x in runs)
            s["ops_per_s_all_rounds"] = [round(x["ops_per_s"]) for x in runs]
            del s["runs"]
    return out


def ratio(table: dict[str, dict[str, dict[str, Any]]], row: str, a: str, b: str) -> float | None:
    x = table.get(row, {}).get(a, {}).get("ops_per_s")
    y = table.get(row, {}).get(b, {}).get("ops_per_s")
    return x / y if x and y else None


RATIOS = (  # (label, numerator, denominator)
    ("crdtkv-fsync / redis-aof", "crdtkv-fsync", "redis-aof"),
    ("crdtkv-wal / redis", "crdtkv-wal", "redis"),
    ("crdtkv-wal / webdis", "crdtkv-wal", "webdis"),
    ("crdtkv-fsync / webdis", "crdtkv-fsync", "webdis"),
)


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def render_markdown(doc: dict[str, Any]) -> str:
    table = doc["table"]
    names = {"batch": "SET -P 16 vs /v1/batch (100 ops)"}
    names.update({row: f"{row.upper()} vs {crdt}" for row, _, _, crdt in OPS})
    lines = [
        "| operation | system | ops/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in [*(o[0] for o in OPS), "batch"]:
        for system in SYSTEMS:
            s = table.get(row, {}).get(system)
            if s is None:
                continue
            lines.append(
                f"| {names[row]} | {system} | {_f(s['ops_per_s'], ',.0f')} | "
                f"{_f(s['p50_ms'], '.2f')} | {_f(s['p99_ms'], '.2f')} | {s['errors']} |"
            )
    lines += ["", "Ratios (ops/s, crdtkv / peer, medians over rounds):", ""]
    lines.append("| operation | " + " | ".join(lbl for lbl, _, _ in RATIOS) + " |")
    lines.append("|---|" + "---:|" * len(RATIOS))
    for row in [r for r in (*(o[0] for o in OPS), "batch") if r in table]:
        cells = [_f(doc["ratios"].get(row, {}).get(lbl), ".3f") for lbl, _, _ in RATIOS]
        lines.append(f"| {names[row]} | " + " | ".join(cells) + " |")
    lines += ["", "| aim | measured | aim | met |", "|---|---:|---:|---|"]
    for name, a in doc["aims"].items():
        met = "-" if a["ratio"] is None else ("met" if a["met"] else "missed")
        lines.append(f"| {name} | {_f(a['ratio'], '.3f')} | >= {a['aim']} | {met} |")
    return "\n".join(lines) + "\n"


# -- issue 19: the three ratios and the bare floor, in the same run ------------------------------

# The bare apps of benchmarks/aiohttp_floor.py (no middleware, storage or CRDTs), driven by
# the same wrk load as crdtkv: what the HTTP framework alone costs on this machine.
FLOORS = {"aiohttp-floor": "aiohttp"}
FLOOR_ROWS = ("set", "get", "incr")  # and the batch
# Issue 19's ratios: (row, crdtkv system, anchor system, ratio measured when it was filed, aim).
ISSUE19 = {
    "register GET vs webdis GET": ("get", "crdtkv-fsync", "webdis", 0.30, 0.45),
    "durable counter incr vs Redis INCR appendfsync always": (
        "incr",
        "crdtkv-fsync",
        "redis-aof",
        0.13,
        0.35,
    ),
    "/v1/batch of 100 register sets vs Redis SET -P16 (appendfsync always)": (
        "batch",
        "crdtkv-fsync",
        "redis-aof",
        0.06,
        0.25,
    ),
}


def add_floors(cluster: Cluster) -> None:
    """The bare app(s) as systems of the run (started only when named in --systems)."""
    from aiohttp_floor import SERVERS  # benchmarks/, this script's directory

    for name, kind in FLOORS.items():
        port = free_port()
        cmd = [sys.executable, "-c", SERVERS[kind], str(port)]
        cluster.servers[name] = Server(name, cmd, port, cluster.tmp / f"{name}.log")


def issue19_ratios(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per ratio of issue 19: crdtkv's, the bare floor's against the same anchor, and
    whether it reached its aim, twice the ratio measured when the issue was filed, or
    the floor (crdtkv / floor >= 0.9: within the run-to-run noise of the floor)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (row, a, b, filed, aim) in ISSUE19.items():
        r = ratio(table, row, a, b)
        floor = next((ratio(table, row, f, b) for f in FLOORS if f in table.get(row, {})), None)
        of_floor = r / floor if r is not None and floor else None
        out[name] = {
            "row": row,
            "of": f"{a} / {b}",
            "ratio": r,
            "filed": filed,
            "aim": aim,
            "floor_ratio": floor,
            "of_floor": of_floor,
            "met_aim": None if r is None else r >= aim,
            "doubled": None if r is None else r >= 2 * filed,
            "at_floor": None if of_floor is None else of_floor >= 0.9,
        }
    return out


def render_issue19(doc: dict[str, Any]) -> str:
    """The three ratios of issue 19 and the bare floor, as Markdown."""
    table, rows = doc["table"], doc.get("issue19") or issue19_ratios(doc["table"])
    lines = [
        "Issue 19: the three ratios, and the bare aiohttp app (benchmarks/aiohttp_floor.py) "
        "under the same load in the same run:",
        "",
        "| ratio | crdtkv ops/s | floor ops/s | anchor ops/s | crdtkv ratio | when filed | "
        "aim | floor ratio | crdtkv / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        row, (a, b) = r["row"], r["of"].split(" / ")
        floor = next((table.get(row, {}).get(f, {}).get("ops_per_s") for f in FLOORS), None)
        lines.append(
            f"| {name} | {_f(table.get(row, {}).get(a, {}).get('ops_per_s'), ',.0f')} | "
            f"{_f(floor, ',.0f')} | {_f(table.get(row, {}).get(b, {}).get('ops_per_s'), ',.0f')} | "
            f"{_f(r['ratio'], '.3f')} | {r['filed']} | {r['aim']} | "
            f"{_f(r['floor_ratio'], '.3f')} | {_f(r['of_floor'], '.2f')} |"
        )
    return "\n".join(lines) + "\n"


def write_chart(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [*(o[0] for o in OPS), "batch"]
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(RATIOS)
    for i, (lbl, _, _) in enumerate(RATIOS):
        vals = [doc["ratios"].get(r, {}).get(lbl) or 0.0 for r in rows]
        xs = [j + (i - (len(RATIOS) - 1) / 2) * width for j in range(len(rows))]
        ax.bar(xs, vals, width, label=lbl)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    for a in doc["aims"].values():  # the aims, as a dashed mark over their operation
        j = rows.index(a["row"])
        ax.hlines(a["aim"], j - 0.45, j + 0.45, colors="black", linestyles="dashed")
        ax.annotate(f"aim {a['aim']}", (j, a["aim"]), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=8)  # fmt: skip
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(["SET/reg set", "GET/reg get", "INCR/ctr", "SADD/set", "PFADD/HLL", "batch"])
    ax.set_ylabel("ops/s ratio (crdtkv / peer)")
    ax.set_title(f"crdtkv vs Redis and webdis ({doc['machine']['nproc']} cores, shared)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def resp_peer(test: str) -> str:
    """The Redis a crdtkv-fsync RESP test is compared with."""
    return "redis" if test in RESP_READS else "redis-aof"


def summarize_resp(raw: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``"<test> -P <n>"`` -> system -> medians over rounds (or the error it answered)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in raw:
        row = f"{r['test']} -P {r['pipeline']}"
        out.setdefault(row, {}).setdefault(r["system"], {"runs": []})["runs"].append(r)
    for systems in out.values():
        for s in systems.values():
            runs = [x for x in s["runs"] if x["error"] is None]
            errors = [x["error"] for x in s["runs"] if x["error"] is not None]
            s["ops_per_s"] = median([x["ops_per_s"] for x in runs])
            s["p50_ms"] = median([x["p50_ms"] for x in runs])
            s["p99_ms"] = median([x["p99_ms"] for x in runs])
            s["ops_per_s_all_rounds"] = [round(x["ops_per_s"]) for x in runs]
            s["error"] = errors[0] if errors else None
            del s["runs"]
    return out


def resp_ratios(table: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per row: crdtkv-fsync / its peer (``peer``, ``ratio``), and / each Redis."""
    out: dict[str, dict[str, Any]] = {}
    for row in table:
        test = row.split(" ", 1)[0]
        peer = resp_peer(test)
        out[row] = {
            "peer": peer,
            "ratio": ratio(table, row, "crdtkv-fsync", peer),
            "crdtkv-fsync / redis-aof": ratio(table, row, "crdtkv-fsync", "redis-aof"),
            "crdtkv-fsync / redis": ratio(table, row, "crdtkv-fsync", "redis"),
        }
    return out


def resp_rows(tests: Sequence[str]) -> list[str]:
    return [f"{t} -P {p}" for p in RESP_PIPELINES for t in tests]


def render_resp_markdown(doc: dict[str, Any]) -> str:
    table, ratios = doc["table"], doc["ratios"]
    lines = [
        "RESP: redis-benchmark -t <test> -c {connections} -r {keyspace} (ops/s, medians over "
        "{rounds} rounds); crdtkv-fsync's writes against redis-aof (appendfsync always), GET "
        "against redis (no persistence)".format(**doc["config"]),
        "",
        "| test | crdtkv-fsync ops/s | redis-aof ops/s | redis ops/s | crdtkv p50 ms "
        "| peer | crdtkv / peer |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    notes: dict[str, str] = {}
    for row in resp_rows(doc["config"]["tests"]):
        if row not in table:
            continue
        cells = []
        for system in RESP_SYSTEMS:
            s = table[row].get(system)
            if s is None:
                cells.append("-")
            elif s["error"] is not None:
                notes.setdefault(s["error"], f"e{len(notes) + 1}")
                cells.append(f"error ({notes[s['error']]})")
            else:
                cells.append(_f(s["ops_per_s"], ",.0f"))
        crdt = table[row].get("crdtkv-fsync", {})
        r = ratios[row]
        lines.append(
            f"| {row.upper()} | " + " | ".join(cells) + f" | {_f(crdt.get('p50_ms'), '.2f')} | "
            f"{r['peer']} | {_f(r['ratio'], '.3f')} |"
        )
    if notes:
        lines.append("")
        lines += [f"- {tag}: `{err}`" for err, tag in notes.items()]
    return "\n".join(lines) + "\n"


def write_resp_chart(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    tests = list(doc["config"]["tests"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(RESP_PIPELINES)
    for i, pipeline in enumerate(RESP_PIPELINES):
        vals = [doc["ratios"].get(f"{t} -P {pipeline}", {}).get("ratio") for t in tests]
        xs = [j + (i - (len(RESP_PIPELINES) - 1) / 2) * width for j in range(len(tests))]
        bars = ax.bar(xs, [v or 0.0 for v in vals], width, label=f"-P {pipeline}")
        for bar, v in zip(bars, vals, strict=True):
            ax.annotate("n/a" if v is None else f"{v:.2f}",
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        textcoords="offset points", xytext=(0, 2), ha="center",
                        fontsize=7)  # fmt: skip
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(tests)))
    ax.set_xticklabels([f"{t.upper()}\nvs {resp_peer(t)}" for t in tests])
    ax.set_ylabel("ops/s ratio (crdtkv-fsync / Redis)")
    ax.set_title(
        f"redis-benchmark against crdtkv's RESP port and Redis "
        f"({doc['machine']['nproc']} cores, shared)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def machine() -> dict[str, Any]:
    info = machine_info()
    info["load_avg_start"] = info.pop("load_avg")  # the name earlier result files use
    return info


def tool_versions(crdtkv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, cmd in (
        ("redis-server", ["redis-server", "--version"]),
        ("redis-benchmark", ["redis-benchmark", "--version"]),
        ("wrk", ["wrk", "-v"]),
    ):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            out[name] = (r.stdout or r.stderr).strip().splitlines()[0]
    return out


def add_keyspace_args(p: argparse.ArgumentParser) -> None:
    """The start-up and memory sections (benchmarks/keyspace_bench.py): off by default."""
    p.add_argument(
        "--startup",
        type=int,
        nargs="+",
        metavar="N",
        default=[],
        help="also time start-up with N small keys each (e.g. --startup 1000000 10000000); "
        "the directory is written directly with the storage code, not through the API",
    )
    p.add_argument(
        "--memory",
        type=int,
        metavar="N",
        help="also measure bytes per small key (string, counter, 3-member set) against Redis's "
        "used_memory, N keys of each",
    )


def run_keyspace_sections(args: argparse.Namespace) -> None:
    """Start-up at each --startup size and bytes per key against Redis (--memory)."""
    if not args.startup and not args.memory:
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import keyspace_bench

    doc = keyspace_bench.run(args.startup, args.memory)
    print(keyspace_bench.render(doc), flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "compare_keyspace.json").write_text(json.dumps(doc, indent=2) + "\n")


def crdtkv_command(tree: Path | None) -> list[str]:
    """How to start crdtkv: this checkout's, or (``--crdtkv-tree``) the package in another
    source tree (a ``git archive`` of an earlier commit: before/after figures in one run
    of the tools), run with ``benchmarks/ab_wrk.py``'s launcher."""
    if tree is not None:
        from ab_wrk import LAUNCHER  # benchmarks/, this script's directory

        os.environ["CRDTKV_AB_TREE"] = str(tree.resolve())  # the servers inherit it
        return [sys.executable, "-c", LAUNCHER]
    crdtkv_bin = Path(sys.executable).with_name("crdtkv")
    return [str(crdtkv_bin)] if crdtkv_bin.exists() else [sys.executable, "-m", "crdtkv.cli"]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--quick", action="store_true", help="2 s per test instead of 5")
    p.add_argument("-c", "--connections", type=int, default=50, help="connections (default 50)")
    p.add_argument("--duration", type=float, help="seconds per test (default 5, --quick 2)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, systems rotated (default 3)")
    p.add_argument("--keyspace", type=int, default=10_000, help="distinct keys (default 10000)")
    p.add_argument(
        "--redis-rate",
        type=float,
        default=20_000,
        help="requests/s guessed to size redis-benchmark -n from the duration in the first "
        "round; later rounds use the rate measured (default 20000)",
    )
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where compare.* go")
    p.add_argument(
        "--crdtkv-tree",
        type=Path,
        default=None,
        help="run crdtkv from this source tree (a directory holding crdtkv/ and replication/, "
        "e.g. a git archive of an earlier commit) instead of this checkout",
    )
    p.add_argument(
        "--ops",
        default=",".join([*(o[0] for o in OPS), "batch"]),
        help="comma-separated rows to run, for a quicker partial run (default: all of "
        "set,get,incr,sadd,pfadd,batch)",
    )
    p.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated systems to start and run (default: all of {','.join(SYSTEMS)}; "
        "webdis needs redis)",
    )
    sections = p.add_mutually_exclusive_group()
    sections.add_argument(
        "--resp-only",
        action="store_true",
        help="only the RESP section: redis-benchmark against crdtkv-fsync's RESP port, redis-aof "
        "and redis (needs only redis-server and redis-benchmark)",
    )
    sections.add_argument("--no-resp", action="store_true", help="skip the RESP section")
    p.add_argument(
        "--resp-tests",
        default=",".join(RESP_TESTS),
        help=f"comma-separated redis-benchmark tests of the RESP section (default: "
        f"{','.join(RESP_TESTS)})",
    )
    add_keyspace_args(p)
    ns = p.parse_args(list(argv))
    ns.ops = [o for o in ns.ops.split(",") if o]
    ns.systems = [s for s in ns.systems.split(",") if s]
    ns.resp_tests = [t for t in ns.resp_tests.split(",") if t]
    rows = {*(o[0] for o in OPS), "batch"}
    bad = [o for o in ns.ops if o not in rows] + [s for s in ns.systems if s not in SYSTEMS]
    bad += [t for t in ns.resp_tests if t not in RESP_TESTS]
    if bad:
        p.error(f"unknown --ops, --systems or --resp-tests value(s): {', '.join(bad)}")
    ns.resp_systems = [] if ns.no_resp else [s for s in RESP_SYSTEMS if s in ns.systems]
    if ns.resp_only:
        ns.systems = list(ns.resp_systems)
        ns.run_systems = []  # no HTTP section
    else:
        ns.run_systems = [s for s in SYSTEMS if s in ns.systems]  # the ones measured
    if "webdis" in ns.systems and "redis" not in ns.systems:
        ns.systems.append("redis")  # started, not measured: webdis is a front end of it
    ns.redis_rates_seen = {}
    ns.resp_rates_seen = {}
    ns.resp_failed = {}
    if ns.duration is None:
        ns.duration = 2.0 if ns.quick else 5.0
    return ns


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    missing = missing_tools(RESP_TOOLS if args.resp_only else TOOLS)
    if missing:
        print(
            f"compare.py: missing on PATH: {', '.join(missing)}\n"
            f"install them with:\n    {INSTALL_HINT}\n(nothing was installed)",
            file=sys.stderr,
        )
        return 2
    crdtkv = crdtkv_command(args.crdtkv_tree)
    started = datetime.datetime.now(datetime.UTC)
    machine_start = machine()
    command = " ".join([".venv/bin/python benchmarks/compare.py", *argv])
    raw: list[dict[str, Any]] = []
    raw_resp: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="crdtkv-compare-"))
    cluster = Cluster(tmp)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        cluster.start(crdtkv, args.systems)
        prefill(cluster, args.keyspace)
        print(f"servers up in {tmp}; {args.rounds} rounds of {args.duration:g} s tests", flush=True)
        for rnd in range(args.rounds if args.run_systems else 0):
            run = args.run_systems
            order = run[rnd % len(run) :] + run[: rnd % len(run)]
            print(f"round {rnd + 1}: {' -> '.join(order)}", flush=True)
            for row, system, res in run_round(cluster, order, args):
                res.update(row=row, system=system, round=rnd + 1)
                raw.append(res)
                print(
                    f"  {system:<13} {row:<6} {res['ops_per_s']:>11,.0f} ops/s"
                    f"  p50 {_f(res['p50_ms'], '.2f')} ms  p99 {_f(res['p99_ms'], '.2f')} ms"
                    f"  errors {res['errors']}",
                    flush=True,
                )
        for rnd in range(args.rounds if args.resp_systems else 0):
            run = args.resp_systems
            order = run[rnd % len(run) :] + run[: rnd % len(run)]
            print(f"RESP round {rnd + 1}: {' -> '.join(order)}", flush=True)
            for res in run_resp_round(cluster, order, args):
                res["round"] = rnd + 1
                raw_resp.append(res)
                what = f"  {res['system']:<13} {res['test']:<5} -P {res['pipeline']:<3}"
                if res["error"] is not None:
                    print(f"{what} error: {res['error']}", flush=True)
                    continue
                print(
                    f"{what} {res['ops_per_s']:>11,.0f} ops/s  p50 {_f(res['p50_ms'], '.2f')} ms"
                    f"  p99 {_f(res['p99_ms'], '.2f')} ms  (-n {res['requests']})",
                    flush=True,
                )
    except KeyboardInterrupt:
        print("compare.py: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    common: dict[str, Any] = {
        "tool": "benchmarks/compare.py",
        "command": command,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {**machine_start, "load_avg_end": list(os.getloadavg())},
        "tools": tool_versions(crdtkv),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.run_systems:
        table = summarize(raw)
        ratios = {row: {lbl: ratio(table, row, a, b) for lbl, a, b in RATIOS} for row in table}
        aims: dict[str, dict[str, Any]] = {}
        for name, (row, a, b, aim) in AIMS.items():
            r = ratio(table, row, a, b)
            aims[name] = {"row": row, "of": f"{a} / {b}", "ratio": r, "aim": aim,
                          "met": None if r is None else r >= aim}  # fmt: skip
        doc: dict[str, Any] = {
            **common,
            "issue19": issue19_ratios(table),
            "config": {
                "connections": args.connections,
                "duration_s": args.duration,
                "rounds": args.rounds,
                "keyspace": args.keyspace,
                "value_bytes": len(VALUE),
                "wrk_threads": min(2, args.connections),
                "redis_pipeline": 16,
                "crdtkv_batch_ops": 100,
            },
            "table": table,
            "ratios": ratios,
            "aims": aims,
            "raw": raw,
        }
        md = render_markdown(doc) + "\n" + render_issue19(doc)
        (args.out_dir / "compare.json").write_text(json.dumps(doc, indent=2) + "\n")
        (args.out_dir / "compare.md").write_text(md)
        write_chart(doc, args.out_dir / "compare.png")
        print(md)
    if args.resp_systems:
        table = summarize_resp(raw_resp)
        resp_doc: dict[str, Any] = {
            **common,
            "config": {
                "connections": args.connections,
                "duration_s": args.duration,
                "rounds": args.rounds,
                "keyspace": args.keyspace,
                "value_bytes": 3,  # redis-benchmark's default -d
                "tests": args.resp_tests,
                "pipelines": list(RESP_PIPELINES),
                "systems": args.resp_systems,
                "peers": {t: resp_peer(t) for t in args.resp_tests},
                "crdtkv_durability": "fsync",
            },
            "table": table,
            "ratios": resp_ratios(table),
            "raw": raw_resp,
        }
        md = render_resp_markdown(resp_doc)
        (args.out_dir / "compare_resp.json").write_text(json.dumps(resp_doc, indent=2) + "\n")
        (args.out_dir / "compare_resp.md").write_text(md)
        write_resp_chart(resp_doc, args.out_dir / "compare_resp.png")
        print(md)
    run_keyspace_sections(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

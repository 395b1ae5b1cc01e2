"""Where a replica's CPU goes under load: py-spy on a spawned server while ``crdtkv bench`` runs.

    .venv/bin/python benchmarks/profile_server.py -- -t counter_incr -n 30000 -c 50 --client raw
    .venv/bin/python benchmarks/profile_server.py --durability wal --raw-out prof.txt \\
        -- -t counter_incr --batch 100 --msgpack -n 2000 -c 8 --client raw
    .venv/bin/python benchmarks/profile_server.py --wrk incr --duration 8
    .venv/bin/python benchmarks/profile_server.py --redis-benchmark "-t set -P 16 -c 50 -n 300000"

With ``--redis-benchmark ARGS`` the server also serves RESP and the load is
``redis-benchmark -p <its RESP port> ARGS`` (``-r 10000`` random keys unless
ARGS has ``-r``).  With ``--wrk OP`` the load comes from ``wrk`` and ``benchmarks/lua/crdtkv.lua``
instead of ``crdtkv bench``: the generator ``benchmarks/compare.py`` uses
(OP is one of set, get, incr, sadd, pfadd, batch; 50 connections, 2 threads,
10,000 keys, prefilled for ``get``).

Starts ``crdtkv serve`` in a temporary directory (``--durability``), attaches
``py-spy record`` to it (``--rate`` samples/s, raw collapsed stacks, one
stack per thread, only samples of a thread holding the GIL: Python work,
not a thread waiting in epoll or on a lock), runs ``crdtkv bench --url <it> <arguments after -->``,
stops py-spy and the server, and prints, for the event-loop thread (the one
with the most samples) and any other thread that was busy:

- the top functions by self time (the frame that was running) and by
  inclusive time (anywhere on the stack), as % of that thread's samples;
- the same samples grouped by layer (HTTP server, middlewares, session
  tokens, metrics, the CRDT core, group commit, storage, event loop...).

py-spy pauses the process briefly for each sample (its default, which keeps
stacks consistent); at 200 samples/s this costs the server a few percent.
Needs ``py-spy`` (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crdtkv.tools.bench.machine import SpawnedServer, proc_cpu_s

# (layer, substrings of "function (file)" frames); the first match from the leaf up wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("garbage collector (--native only)", ("gc_collect", "gc_collect_main")),
    ("RESP reply write (transport.write)", ("Connection._drain",)),
    ("RESP reply encoding", ("crdtkv/resp/values.py",)),
    ("session tokens (sign, merge)", ("crdtkv/sessions.py", "hmac.py", "base64.py")),
    ("metrics (prometheus_client)", ("prometheus_client/", "api/metrics.py")),
    (
        "group commit and persistence records",
        ("crdtkv/node/", "replica/persist.py", "replica/records.py"),
    ),
    ("storage (RocksDB)", ("storage/rocks.py", "rocksdict")),
    ("CRDT core (ops, keyspace, crdts)", ("crdtkv/ops/", "crdtkv/replica/", "crdtkv/crdts/")),
    ("body codec (orjson/msgpack, depth)", ("api/codec.py", "api/limits.py")),
    ("routes + middlewares (crdtkv/api)", ("crdtkv/api/",)),
    ("replication", ("replication/",)),
    ("RESP commands (crdtkv/resp: arguments, composites)", ("crdtkv/resp/",)),
    ("aiohttp web (parser, response, router)", ("aiohttp/",)),
    ("asyncio / uvloop", ("asyncio/", "uvloop", "<frozen", "selectors.py")),
]


# The per-op cost by phase of the write path (issue 19): the first phase, in this
# order, with a frame anywhere on the stack that contains one of its needles.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    (
        "encode (delta and log record bytes)",
        ("replica/wire.py", "replica/records.py", "build_batch", "encode_entries", "write_state"),
    ),
    (
        "persist (group commit, storage, durability wait)",
        (
            "storage/",
            "rocksdict",
            "Node._write",
            "NodeCore.flush",
            "NodeCore.write_done",
            "Node._flush",
            "Node._run",
            "Node.finish",
            "NodeCore.finish",
            "Node._after_event",
            "on_durable",
        ),
    ),
    (
        "reply (response body, headers, session token, write)",
        (
            "json_response",
            "encode_response",
            "web_response.py",
            "http_writer.py",
            "finish_response",
            "_stamp_session",
            "sessions.py",
            "api/metrics.py",
        ),
    ),
    (
        "parse (HTTP request, body, op arguments)",
        (
            "data_received",
            "http_parser.py",
            "web_request.py",
            "_read_object",
            "decode_body",
            "read_body",
            "check_depth",
            "OpSpec.parse",
            "validate_key",
            "_reject_unknown",
        ),
    ),
    ("apply (ops, keyspace, CRDTs)", ("crdtkv/ops/", "crdtkv/replica/", "crdtkv/crdts/")),
    ("framework (aiohttp dispatch, middleware, event loop)", ("",)),
]


def phase_of(stack: list[str]) -> str:
    for name, needles in PHASES:
        if any(n in frame for frame in stack for n in needles):
            return name
    return PHASES[-1][0]


def layer_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        for name, needles in LAYERS:
            if any(n in frame for n in needles):
                return name
    return "other"


def summarize(raw: Path, top: int, us_per_op: float | None = None) -> str:
    by_thread: dict[str, list[tuple[list[str], int]]] = collections.defaultdict(list)
    for line in raw.read_text().splitlines():
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        frames = stack_text.split(";")
        by_thread[frames[0]].append((frames[1:], int(count)))
    totals = {t: sum(c for _, c in rows) for t, rows in by_thread.items()}
    all_samples = sum(totals.values()) or 1
    out: list[str] = []
    for thread, rows in sorted(by_thread.items(), key=lambda kv: -totals[kv[0]]):
        n = totals[thread]
        if n < 0.05 * all_samples:
            continue
        self_t: collections.Counter[str] = collections.Counter()
        incl: collections.Counter[str] = collections.Counter()
        layers: collections.Counter[str] = collections.Counter()
        phases: collections.Counter[str] = collections.Counter()
        for frames, c in rows:
            if not frames:
                continue
            self_t[frames[-1]] += c
            for f in set(frames):
                incl[f] += c
            layers[layer_of(frames)] += c
            phases[phase_of(frames)] += c
        out.append(f"== {thread}: {n} samples ({100 * n / all_samples:.0f}% of all) ==")
        out.append("by layer (self time of the innermost frame in a known layer):")
        for name, c in layers.most_common():
            out.append(f"  {100 * c / n:5.1f}%  {name}")
        out.append("by phase (anywhere on the stack; us/op: the share of --us-per-op):")
        for name, _ in PHASES:
            c = phases[name]
            cost = f"  {us_per_op * c / n:7.2f} us/op" if us_per_op else ""
            out.append(f"  {100 * c / n:5.1f}%{cost}  {name}")
        out.append(f"top {top} by self time:")
        for f, c in self_t.most_common(top):
            out.append(f"  {100 * c / n:5.1f}%  {f}")
        out.append(f"top {top} by inclusive time:")
        for f, c in incl.most_common(top):
            out.append(f"  {100 * c / n:5.1f}%  {f}")
        out.append("")
    return "\n".join(out)


def _cpu_s(pid: int) -> float:
    cpu = proc_cpu_s(pid)
    if cpu is None:
        raise RuntimeError(f"cannot read the CPU time of process {pid} from /proc")
    return cpu


def _run_wrk(server: SpawnedServer, args: argparse.Namespace) -> subprocess.CompletedProcess[str]:
    """wrk as benchmarks/compare.py runs it (its Lua script), plus the server's CPU per request."""
    from compare import LUA_DIR, PREFIXES, prefill_crdtkv  # benchmarks/, this script's directory

    if args.wrk == "get":
        prefill_crdtkv(server.port, 10_000)
    env = dict(os.environ, OP=args.wrk, PREFIX=PREFIXES.get(args.wrk, "key"), KEYSPACE="10000")
    env.update(LUA_DIR=str(LUA_DIR), BATCH="100")
    cmd = ["wrk", "-t", "2", "-c", str(args.connections), "-d", f"{args.duration:g}s"]
    cmd += ["--latency", "-s", str(LUA_DIR / "crdtkv.lua"), server.url]
    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
    out = subprocess.run(cmd, env=env, text=True, capture_output=True)
    cpu, wall = _cpu_s(server.pid) - cpu0, time.monotonic() - t0
    reqs = next((int(ln.split()[0]) for ln in out.stdout.splitlines() if "requests in" in ln), 0)
    per_request = 1e6 * cpu / max(reqs, 1)
    args.us_per_op = per_request / (100 if args.wrk == "batch" else 1)
    out.stdout += (
        f"server CPU {100 * cpu / wall:.0f}% of a core, {per_request:.0f} us per request"
        f" ({args.us_per_op:.1f} us per op)\n"
    )
    return out


def _run_redis_benchmark(
    server: SpawnedServer, args: argparse.Namespace
) -> subprocess.CompletedProcess[str]:
    """redis-benchmark against the server's RESP port, plus the server's CPU per request."""
    extra = args.redis_benchmark.split()
    if "-r" not in extra:
        extra += ["-r", "10000"]
    cmd = ["redis-benchmark", "-p", str(server.resp_port), "-q", *extra]
    cpu0, t0 = _cpu_s(server.pid), time.monotonic()
    out = subprocess.run(cmd, text=True, capture_output=True)
    cpu, wall = _cpu_s(server.pid) - cpu0, time.monotonic() - t0
    lines = [ln.rsplit("\r", 1)[-1] for ln in out.stdout.splitlines()]
    out.stdout = "\n".join(ln for ln in lines if "requests per second" in ln) + "\n"
    n = next((int(extra[i + 1]) for i, a in enumerate(extra) if a == "-n"), 100_000)
    out.stdout += (
        f"server CPU {100 * cpu / wall:.0f}% of a core, {1e6 * cpu / max(n, 1):.1f} us per "
        "request\n"
    )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=20)
    p.add_argument(
        "--all-samples",
        dest="gil",
        action="store_false",
        help="count every sample, not only those holding the GIL (py-spy -g, the default: "
        "a thread blocked in epoll or on a lock is otherwise counted as busy)",
    )
    p.add_argument(
        "--native",
        action="store_true",
        help="also sample C frames (py-spy --native): shows the garbage collector, orjson...",
    )
    p.add_argument("--raw-out", default=None, help="keep py-spy's collapsed stacks here")
    p.add_argument(
        "--wrk",
        metavar="OP",
        default=None,
        help="load with wrk and benchmarks/lua/crdtkv.lua (OP: set, get, incr, sadd, pfadd, "
        "batch) instead of crdtkv bench",
    )
    p.add_argument(
        "--redis-benchmark",
        metavar="ARGS",
        default=None,
        help='load the RESP port with redis-benchmark ARGS (e.g. "-t get -P 16 -c 50 -n 300000")',
    )
    p.add_argument("--duration", type=float, default=8.0, help="seconds of wrk load (--wrk)")
    p.add_argument("-c", "--connections", type=int, default=50, help="wrk connections (--wrk)")
    p.add_argument(
        "--tree",
        default=None,
        help="serve crdtkv from this source tree (a git archive of an earlier commit: before "
        "and after profiles with one tool), with benchmarks/ab_wrk.py's launcher",
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then crdtkv bench options")
    args = p.parse_args()
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if py_spy is None:
        p.error("py-spy is not installed (pip install py-spy, or the 'bench' extra)")

    tmp = Path(tempfile.mkdtemp(prefix="crdtkv-prof-"))
    raw = Path(args.raw_out) if args.raw_out else tmp / "stacks.txt"
    server = SpawnedServer(args.durability, os.environ, resp=args.redis_benchmark is not None)
    if args.tree:
        import functools

        from ab_wrk import LAUNCHER  # benchmarks/, this script's directory

        from crdtkv.tools.bench import machine

        server.environ["CRDTKV_AB_TREE"] = str(Path(args.tree).resolve())
        machine.serve_command = functools.partial(  # type: ignore[assignment]
            machine.serve_command, launcher=("-c", LAUNCHER)
        )
    spy: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        spy = subprocess.Popen(
            [py_spy, "record", "-p", str(server.pid), "-f", "raw", "-o", str(raw),
             "-r", str(args.rate), "-t", "--nolineno", *(["-g"] if args.gil else []),
             *(["--native"] if args.native else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if args.redis_benchmark is not None:
            bench = _run_redis_benchmark(server, args)
        elif args.wrk is not None:
            bench = _run_wrk(server, args)
        else:
            cmd = [sys.executable, "-m", "crdtkv.cli", "bench", "--url", server.url]
            cmd += ["--server-pid", str(server.pid), "--no-progress", *bench_args]
            bench = subprocess.run(cmd, text=True, capture_output=True)
        print(bench.stdout, end="")
        if bench.returncode != 0:
            print(bench.stderr, file=sys.stderr)
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
        if not raw.exists():
            print(f"py-spy wrote nothing: {err.decode()[-500:]}", file=sys.stderr)
            return 1
        print(summarize(raw, args.top, getattr(args, "us_per_op", None)))
        return bench.returncode
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

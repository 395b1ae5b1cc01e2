"""A/B of server variants: the same wrk load on each in turn, rounds alternating, medians.

    .venv/bin/python benchmarks/ab_wrk.py --op incr --rounds 4 \\
        --variant main= --variant other=/path/to/other/tree

Each ``--variant NAME=TREE`` is a server: ``crdtkv serve`` run from the source
tree TREE (empty: this checkout).  A tree is a directory holding ``crdtkv/``
and ``replication/`` (a copy of the package with one change, say); it is put
first on ``sys.path`` and the editable install's finder is taken out, so the
server really runs that code (``--check`` prints which file it imported).
Every round starts each variant afresh in a temporary directory (fsync
unless ``--durability wal``), prefills 10,000 registers for ``get``, runs
``wrk`` with ``benchmarks/lua/crdtkv.lua`` (the load ``benchmarks/compare.py``
uses: 50 connections, 2 threads, 10,000 keys), reads the server's CPU time
from ``/proc``, and stops it.  The order of the variants rotates from round
to round, so a machine that gets busier or quieter hits all of them.

Printed per run and as medians: ops/s (``batch``: 100 ops per request), the
server's CPU microseconds per op, the server's CPU in % of one core, p50.
On a shared machine compare medians over several rounds; ops/s moves with
the machine's load, CPU per op less so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from compare import LUA_DIR, PREFIXES, prefill_crdtkv  # benchmarks/, this script's directory

from crdtkv.tools.bench.machine import proc_cpu_s
from crdtkv.tools.procs import child_env, free_port, serve_command, stop_processes

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# Run crdtkv's CLI from the tree in CRDTKV_AB_TREE (or this checkout when it is empty).
LAUNCHER = """
import os, sys
tree = os.environ.get("CRDTKV_AB_TREE")
if tree:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, tree)
import crdtkv.cli
if os.environ.get("CRDTKV_AB_CHECK"):
    print(crdtkv.cli.__file__, file=sys.stderr)
sys.exit(crdtkv.cli.main(sys.argv[1:]))
"""


def cpu_s(pid: int) -> float:
    cpu = proc_cpu_s(pid)
    if cpu is None:
        raise RuntimeError(f"cannot read the CPU time of process {pid} from /proc")
    return cpu


def run_one(tree: str, args: argparse.Namespace) -> dict[str, float]:
    port, tmp = free_port(), Path(tempfile.mkdtemp(prefix="crdtkv-ab-"))
    env = {**child_env(os.environ), "CRDTKV_AB_TREE": tree}
    cmd = serve_command(
        "ab", port, str(tmp / "data"), args.durability,
        log_level="WARNING", launcher=("-c", LAUNCHER),
    )  # fmt: skip
    with open(tmp / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp / "server.log").read_text()
                    raise RuntimeError(f"server did not start: {log_text}") from None
                time.sleep(0.05)
        if args.op == "get":
            prefill_crdtkv(port, 10_000)
        wrk_env = dict(os.environ, OP=args.op, PREFIX=PREFIXES.get(args.op, "key"))
        wrk_env.update(KEYSPACE="10000", LUA_DIR=str(LUA_DIR), BATCH="100")
        wrk = ["wrk", "-t", "2", "-c", "50", "-d", f"{args.duration:g}s", "--latency"]
        wrk += ["--timeout", "10s", "-s", str(LUA_DIR / "crdtkv.lua"), f"http://127.0.0.1:{port}"]
        c0, t0 = cpu_s(proc.pid), time.monotonic()
        out = subprocess.run(wrk, env=wrk_env, capture_output=True, text=True, check=False)
        c1, t1 = cpu_s(proc.pid), time.monotonic()
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("COMPARE_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed: {out.stderr.strip()[:300]}")
        d = json.loads(line.split(" ", 1)[1])
        ops = d["requests"] * (100 if args.op == "batch" else 1)
        return {
            "ops_per_s": ops / (d["duration_us"] / 1e6),
            "cpu_us_per_op": 1e6 * (c1 - c0) / max(ops, 1),
            "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
            "p50_ms": d["p50_us"] / 1000,
            "errors": sum(d["errors"].values()),
        }
    finally:
        stop_processes([proc], STOP_TIMEOUT_S)
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--op", choices=["set", "get", "incr", "sadd", "pfadd", "batch"], default="incr")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of wrk per run")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        metavar="NAME=TREE",
        help="a server to compare: NAME=TREE, TREE a source tree (empty: this checkout)",
    )
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("ab_wrk.py: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    variants = [tuple(v.split("=", 1)) for v in args.variant]
    if any(len(v) != 2 for v in variants):
        p.error("--variant takes NAME=TREE")
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for rnd in range(args.rounds):
        k = rnd % len(variants)
        for name, tree in variants[k:] + variants[:k]:
            r = run_one(tree, args)
            results[name].append(r)
            print(
                f"round {rnd + 1} {name:<12} {r['ops_per_s']:>9,.0f} ops/s "
                f"{r['cpu_us_per_op']:>6.0f} us/op  cpu {r['cpu_pct']:3.0f}%  "
                f"p50 {r['p50_ms']:.1f} ms  errors {r['errors']:.0f}",
                flush=True,
            )
    for name, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(
            f"{name:<12} median {med['ops_per_s']:>9,.0f} ops/s {med['cpu_us_per_op']:>6.0f} us/op"
            f"  cpu {med['cpu_pct']:3.0f}%  p50 {med['p50_ms']:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

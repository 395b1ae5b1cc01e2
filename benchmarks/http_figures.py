"""The "One replica (HTTP)" figures of docs/performance.md, in one command.

    .venv/bin/python benchmarks/http_figures.py --out /tmp/http.json
    .venv/bin/python benchmarks/http_figures.py --quick          # a smoke run

Runs ``crdtkv bench --spawn`` (a fresh server in a temporary directory for
every run) for each durability mode (fsync, wal) and each client
(aiohttp, the specified generator; raw, the cheap one that leaves the server
more of the two cores):

- single requests, 50 connections, every operation type;
- ``/v1/batch`` of 100 ops in MessagePack, 16 connections, the write types.

Before each run it waits (up to ``--wait-quiet`` seconds) until the rest of
the machine is using less than ``--quiet-pct`` % of one core, because this
machine is shared and the load generator and the server already share its
two cores; a run during which other processes used more than that is run
again (``--retries``).  Each result records how busy everything else was
during the run (``others_pct``).  Prints a markdown table; ``--out`` keeps every result.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crdtkv.tools.bench.machine import machine_cpu, machine_info

WRITE_TYPES = "register_set,counter_incr,set_add,hll_add"
ALL_TYPES = "register_set,register_get,counter_incr,set_add,hll_add"


def busy_pct(seconds: float) -> float:
    a = machine_cpu()
    time.sleep(seconds)
    b = machine_cpu()
    if a is None or b is None:
        return 0.0
    return 100 * (b[0] - a[0]) / max(b[1] - a[1], 1e-9) * (os.cpu_count() or 1)


def wait_quiet(max_s: float, pct: float) -> float:
    """Wait until the machine is below ``pct`` % busy (of one core) for 3 s; the busy % seen."""
    deadline = time.monotonic() + max_s
    while True:
        busy = busy_pct(3.0)
        if busy < pct or time.monotonic() > deadline:
            return busy
        print(f"  machine {busy:.0f}% busy (of one core); waiting for it to calm down", flush=True)


def run(args: list[str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [sys.executable, "-m", "crdtkv.cli", "bench", "--spawn", "--no-progress", "-q"]
    cmd += [*args, "--json", path]
    print("$ crdtkv bench --spawn " + " ".join(args), flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=True)
    print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())
    finally:
        os.unlink(path)
    doc["command"] = "crdtkv bench --spawn " + " ".join(args)
    doc["exit_status"] = proc.returncode
    return doc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="write every run's JSON here")
    p.add_argument("--quick", action="store_true", help="small -n: a smoke run")
    p.add_argument("--single-n", type=int, default=20_000, help="requests per type, single")
    p.add_argument("--batch-n", type=int, default=2_000, help="batch requests per type")
    p.add_argument("--durability", default="fsync,wal")
    p.add_argument("--clients", default="aiohttp,raw")
    p.add_argument("--wait-quiet", type=float, default=300.0, help="max seconds to wait")
    p.add_argument("--quiet-pct", type=float, default=30.0, help="others' busy %% to wait for")
    p.add_argument(
        "--retries", type=int, default=2, help="runs again when others were busier than that"
    )
    args = p.parse_args()
    single_n = 500 if args.quick else args.single_n
    batch_n = 50 if args.quick else args.batch_n

    runs: list[dict[str, Any]] = []
    for durability in args.durability.split(","):
        for client in args.clients.split(","):
            for shape in ("single", "batch"):
                if shape == "single":
                    bench_args = ["-t", ALL_TYPES, "-n", str(single_n), "-c", "50"]
                else:
                    bench_args = ["-t", WRITE_TYPES, "-n", str(batch_n), "-c", "16"]
                    bench_args += ["--batch", "100", "--msgpack"]
                bench_args += ["--durability", durability, "--client", client]
                for attempt in range(1 + args.retries):
                    before = wait_quiet(args.wait_quiet, args.quiet_pct)
                    doc = run(bench_args)
                    doc["machine_busy_before_pct"] = round(before, 1)
                    doc["shape"] = shape
                    others = max(r["cpu"]["others_pct"] or 0 for r in doc["results"])
                    if others <= args.quiet_pct:
                        break
                    if attempt < args.retries:
                        print(f"  others used {others:.0f}% of a core during the run: again")
                runs.append(doc)

    print()
    print(
        "| durability | client | shape | type | req/s | ops/s | p50 ms | p99 ms "
        "| server CPU % | generator CPU % | others % | server µs/op |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for doc in runs:
        cfg = doc["config"]
        for r in doc["results"]:
            cpu, lat = r["cpu"], r["latency_ms"]
            print(
                f"| {cfg['durability']} | {cfg['client']} | {doc['shape']} | {r['type']} "
                f"| {r['requests_per_s']:,.0f} | {r['ops_per_s']:,.0f} | {lat['p50']:.1f} "
                f"| {lat['p99']:.1f} | {cpu['server_pct']:.0f} | {cpu['bench_pct']:.0f} "
                f"| {cpu['others_pct']:.0f} | {cpu['server_us_per_op']:.0f} |"
            )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"machine": machine_info(), "runs": runs}, indent=2) + "\n"
        )
    return 0 if all(d["exit_status"] == 0 for d in runs) else 1


if __name__ == "__main__":
    sys.exit(main())

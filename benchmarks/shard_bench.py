"""Aggregate pipelined RESP throughput of 1, 2 and 4 shards (one region), driven by
``redis-benchmark --cluster``.

    .venv/bin/python benchmarks/shard_bench.py                  # 1, 2, 4 shards; SET and GET
    .venv/bin/python benchmarks/shard_bench.py --quick          # a few seconds per run

For each shard count S it writes a cluster map (``ClusterMap.even``: redis-cli's split
of the 16384 slots), starts S ``crdtkv serve --cluster-map`` processes on loopback
(``--durability wal`` by default), and runs one ``redis-benchmark --cluster -P 16``
per test: redis-benchmark reads CLUSTER NODES, opens its connections to every master
and sends each connection's keys with a hash tag of that master's slots (so no
request is redirected; it refuses ``--cluster`` with one master, so one shard gets a
plain run, which is the same load).  ``-c`` is ``--clients`` per shard.

Reported per run: the total ops/s redis-benchmark measured; per shard, the commands it
ran (INFO's ``total_commands_processed``, before and after), as its share of the total;
the CPU seconds each server process used (``/proc/<pid>/stat``) and so its ops per
CPU second ("per core": what one core of server gives, the figure that carries to a
machine with a core per shard); and the CPU redis-benchmark itself used, in cores.
On a machine with fewer cores than shards + 1 the servers and the load generator
share the cores: the total can only grow while a core is idle, so the figure that
scales is ops per server-CPU-second, not the total.

Writes ``benchmarks/results/shard_bench.json`` (``--out``) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from crdtkv.cluster import ClusterMap, NodeAddr, Shard
from crdtkv.tools.bench.machine import machine_info
from crdtkv.tools.procs import await_serving, child_env, free_ports, serve_command

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "shard_bench.json"
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def children_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Shards:
    """S one-region shards, each a ``crdtkv serve --cluster-map`` process."""

    def __init__(self, n: int, root: Path, durability: str) -> None:
        self.n = n
        ports = free_ports(2 * n)
        self.http, self.resp = ports[:n], ports[n:]
        self.map = ClusterMap.even(
            Shard(
                f"s{i}",
                (NodeAddr(f"s{i}", "a", f"http://127.0.0.1:{h}", f"127.0.0.1:{r}"),),
            )
            for i, (h, r) in enumerate(zip(self.http, self.resp, strict=True))
        )
        path = root / f"map-{n}.json"
        path.write_text(json.dumps(self.map.to_json()))
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(n):
            argv = serve_command(
                f"s{i}", self.http[i], str(root / f"s{n}-{i}"), durability, resp_port=self.resp[i]
            )
            argv += ["--cluster-map", str(path)]
            self.procs.append(
                subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=open(root / f"s{n}-{i}.log", "wb"),  # noqa: SIM115
                    env=child_env(os.environ),
                )
            )
        for p in self.procs:
            await_serving(p, 120)

    def commands(self) -> list[int]:
        out = []
        for port in self.resp:
            c = redis.Redis(port=port)
            out.append(int(c.info("stats")["total_commands_processed"]))
            c.close()
        return out

    def cpu(self) -> list[float]:
        return [cpu_s(p.pid) for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_test(shards: Shards, test: str, args: argparse.Namespace) -> dict[str, Any]:
    # redis-benchmark refuses --cluster with one master ("Invalid cluster: 1 node(s)"):
    # one shard owns every slot, so the plain run sends the same load.
    cmd = ["redis-benchmark", *(["--cluster"] if shards.n > 1 else [])]
    cmd += ["-h", "127.0.0.1", "-p", str(shards.resp[0])]
    cmd += ["-t", test, "-P", str(args.pipeline), "-c", str(args.clients * shards.n)]
    cmd += ["-n", str(args.requests * shards.n), "-r", str(args.keyspace), "--csv"]
    before_cmds, before_cpu, before_client = shards.commands(), shards.cpu(), children_cpu_s()
    t0 = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    after_cpu, after_client, after_cmds = shards.cpu(), children_cpu_s(), shards.commands()
    rows = [r for r in csv.reader(io.StringIO(out.stdout)) if len(r) >= 8 and r[0] != "test"]
    if out.returncode != 0 or not rows:
        raise SystemExit(f"redis-benchmark failed ({out.returncode}): {out.stdout}{out.stderr}")
    rps = float(rows[0][1])
    per_shard = []
    counts = [after_cmds[i] - before_cmds[i] - 1 for i in range(shards.n)]  # less INFO's
    for i, ops in enumerate(counts):
        cpu = after_cpu[i] - before_cpu[i]
        per_shard.append(
            {
                "shard": f"s{i}",
                "commands": ops,
                # Its share of the total redis-benchmark measured (the wall time around
                # the run also holds redis-benchmark's start and connection set-up).
                "ops_per_s": round(rps * ops / max(1, sum(counts))),
                "cpu_s": round(cpu, 2),
                "ops_per_cpu_s": round(ops / cpu) if cpu > 0 else None,
            }
        )
    server_cpu = sum(s["cpu_s"] for s in per_shard)
    total_ops = sum(s["commands"] for s in per_shard)
    return {
        "test": test.upper(),
        "shards": shards.n,
        "command": " ".join(cmd),
        "ops_per_s": round(rps),
        "p50_ms": float(rows[0][4]),
        "wall_s": round(wall, 2),
        "per_shard": per_shard,
        "server_cpu_cores": round(server_cpu / wall, 2),
        "ops_per_server_cpu_s": round(total_ops / server_cpu) if server_cpu else None,
        "client_cpu_cores": round((after_client - before_client) / wall, 2),
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| test | shards | total ops/s | per shard ops/s | server cores busy | ops per "
        "server CPU s (per core) | redis-benchmark cores |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for r in results:
        shard = " / ".join(f"{s['ops_per_s']:,}" for s in r["per_shard"])
        lines.append(
            f"| {r['test']} -P 16 | {r['shards']} | {r['ops_per_s']:,} | {shard} | "
            f"{r['server_cpu_cores']} | {r['ops_per_server_cpu_s']:,} | {r['client_cpu_cores']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", default="1,2,4", help="shard counts (default 1,2,4)")
    ap.add_argument("--tests", default="set,get", help="redis-benchmark tests (default set,get)")
    ap.add_argument("--requests", type=int, default=100_000, help="requests per shard")
    ap.add_argument("--clients", type=int, default=50, help="connections per shard")
    ap.add_argument("--pipeline", type=int, default=16)
    ap.add_argument("--keyspace", type=int, default=100_000, help="redis-benchmark -r")
    ap.add_argument("--durability", default="wal", choices=["fsync", "wal"])
    ap.add_argument("--quick", action="store_true", help="20,000 requests per shard")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--tmp", default=None, help="where the data directories go (e.g. /dev/shm: no disk)"
    )
    args = ap.parse_args(argv)
    if shutil.which("redis-benchmark") is None:
        print("redis-benchmark is missing: apt-get install redis-tools", file=sys.stderr)
        return 2
    if args.quick:
        args.requests = min(args.requests, 20_000)
    counts = [int(x) for x in args.shards.split(",")]
    machine = machine_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="shard-bench-", dir=args.tmp) as tmp:
        for n in counts:
            shards = Shards(n, Path(tmp), args.durability)
            try:
                for test in args.tests.split(","):
                    r = run_test(shards, test, args)
                    results.append(r)
                    print(f"{r['test']} x{n}: {r['ops_per_s']:,} ops/s", file=sys.stderr)
            finally:
                shards.stop()
    doc = {
        "tool": "benchmarks/shard_bench.py",
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": machine,
        "load_avg_end": list(os.getloadavg()),
        "durability": args.durability,
        "data_under": args.tmp or tempfile.gettempdir(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

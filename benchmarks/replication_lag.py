"""Replication lag and wire bytes of a 3-replica cluster under steady load.

    .venv/bin/python benchmarks/replication_lag.py                 # 5,000 writes/s, 20 s
    .venv/bin/python benchmarks/replication_lag.py --rate 2000 --batch 1 --json out.json

What it does (everything on 127.0.0.1, in a temporary directory removed at
the end, the servers stopped whatever happens):

1. starts ``--replicas`` ``crdtkv serve`` processes, fully meshed, with a
   cluster secret (``--durability``, default fsync);
2. drives counter increments (``POST /v1/counters/key:N``, or ``/v1/batch``
   requests of ``--batch`` increments each) open-loop at ``--rate`` writes/s
   for ``--duration`` s, round-robin over the replicas, on a pool of
   keep-alive connections per replica (``crdtkv.tools.bench.fetch.RawFetcher``, the
   cheap client: the generator shares the two cores with three servers);
3. measures replication lag: every response carries ``X-Crdtkv-Session``, a
   token whose version vector is what the answering replica had applied when
   it answered.  A write answered by A carries A's own sequence number s
   (an upper bound of the write's dot: writes applied concurrently may have
   pushed it further).  Every response from B, and a poll of B's
   ``/v1/status`` every ``--poll-ms``, is an observation "B had applied A up
   to s' by time t".  The lag of a write to B is the time from A's 200
   response reaching us to the first observation of B covering s (an upper
   bound: the observation may come later than the delta did; its resolution,
   the gap to the previous observation, is reported too).  Writes of the
   first ``--warmup`` seconds are left out;
4. measures wire bytes: ``crdtkv_replication_bytes_sent_total`` (message
   bodies, pushes and replies, both directions) and
   ``crdtkv_replication_messages_sent_total`` from every replica's /metrics
   at the start and end of the measured window, plus, from ``ss -tin``, the
   TCP payload (HTTP headers included) of the replicas' connections to each
   other; divided by the operations replicated (writes x (replicas - 1));
5. compares with each operation's own size: the workload is replayed
   in-process on the pure core (``crdtkv.replica``), with the cluster's real
   actor ids, and each operation's encoded delta group is measured
   (``rec.pack(rec.encode_group(group))``, the blob a push carries), and so
   is what shipping the key's full state instead would have cost (the same
   group with the key's whole encoded state in place of the delta): the
   store has no full-state mode, so that figure is computed, not run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from crdtkv.sessions import SESSION_HEADER, TokenSigner
from crdtkv.tools.bench.fetch import JSON_TYPE, RawFetcher, Request
from crdtkv.tools.bench.machine import machine_cpu, machine_info, proc_cpu_s, proc_rss_kb
from crdtkv.tools.bench.report import percentile
from crdtkv.tools.procs import (
    NotServing,
    await_serving,
    child_env,
    free_ports,
    serve_command,
    stop_processes,
)

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


# -- processes --------------------------------------------------------------------------------


@dataclass
class Replica:
    rid: str
    port: int
    proc: subprocess.Popen[str] | None = None
    actor: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_cluster(root: Path, n: int, secret: str, durability: str) -> list[Replica]:
    ports = free_ports(n)
    reps = [Replica(f"r{i + 1}", port) for i, port in enumerate(ports)]
    env = child_env(os.environ)
    env["CRDTKV_CLUSTER_SECRET"] = secret  # through the environment, not the command line
    for r in reps:
        peers = {p.rid: p.url for p in reps if p is not r}
        cmd = serve_command(
            r.rid, r.port, str(root / r.rid), durability, peers=peers, log_level="WARNING"
        )
        with open(root / f"{r.rid}.log", "w") as log:
            r.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    for r in reps:
        assert r.proc is not None
        try:
            await_serving(r.proc, START_TIMEOUT_S)
        except NotServing as e:
            raise RuntimeError(f"{r.rid} {e}: see {root / (r.rid + '.log')}") from None
    return reps


def stop_cluster(reps: list[Replica]) -> None:
    stop_processes([r.proc for r in reps if r.proc is not None], STOP_TIMEOUT_S)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


_METRIC = re.compile(r'^(crdtkv_replication_\w+?)(?:_total)?\{peer="([^"]+)"\} ([0-9.e+]+)$')


def replication_metrics(reps: list[Replica]) -> dict[str, float]:
    """Sum over replicas and peers of each per-peer replication counter."""
    out: dict[str, float] = {}
    for r in reps:
        for line in get_text(r.url + "/metrics").splitlines():
            m = _METRIC.match(line)
            if m and not line.startswith("crdtkv_replication_lag"):
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def tcp_bytes(reps: list[Replica]) -> dict[tuple[str, str], tuple[int, int]] | None:
    """Per replica->peer connection: (bytes acked, bytes received) of TCP payload, from ss."""
    pids = {r.proc.pid for r in reps if r.proc is not None}
    ports = {r.port for r in reps}
    try:
        out = subprocess.run(
            ["ss", "-tinpH", "state", "established"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    conns: dict[tuple[str, str], tuple[int, int]] = {}
    current: tuple[str, str] | None = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            cols = line.split()
            current = None
            if len(cols) < 5:
                continue
            local, peer = cols[2], cols[3]
            pid_m = re.search(r"pid=(\d+)", line)
            if pid_m is None or int(pid_m.group(1)) not in pids:
                continue
            lport, pport = int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1])
            if pport in ports and lport not in ports:  # a replica's client connection to a peer
                current = (local, peer)
            continue
        if current is None:
            continue
        acked = re.search(r"bytes_acked:(\d+)", line)
        recv = re.search(r"bytes_received:(\d+)", line)
        conns[current] = (int(acked.group(1)) if acked else 0, int(recv.group(1)) if recv else 0)
        current = None
    return conns


# -- the load and the observations ------------------------------------------------------------


def op_maker(args: argparse.Namespace) -> Callable[[], dict[str, Any]]:
    """Random operations of the chosen kind (batch op dicts, the same shape apply_op takes)."""
    rng = random.Random(args.seed)
    keys, members = args.keys, args.members
    if args.op == "counter":
        return lambda: {"op": "counters.incr", "key": f"key:{rng.randrange(keys):06d}", "delta": 1}
    return lambda: {
        "op": "sets.add",
        "key": f"key:{rng.randrange(keys):06d}",
        "members": [f"member-{rng.randrange(members)}"],
    }


def single_request(op: dict[str, Any]) -> Request:
    """The single-key endpoint request for a batch op."""
    if op["op"] == "counters.incr":
        return Request("POST", f"/v1/counters/{op['key']}", b'{"delta":1}', 1, JSON_TYPE)
    body = orjson.dumps({"members": op["members"]})
    return Request("POST", f"/v1/sets/{op['key']}/add", body, 1, JSON_TYPE)


@dataclass
class Run:
    writes: list[tuple[float, int, int, int]] = field(default_factory=list)  # t_ack, rep, seq, ops
    # per replica index: (time, {actor: seq}) it had applied by then
    observations: list[list[tuple[float, dict[str, int]]]] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)  # send time minus scheduled time
    latencies: list[float] = field(default_factory=list)
    sent_ops: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)  # replay


async def drive(
    reps: list[Replica],
    signer: TokenSigner,
    rate: float,
    duration: float,
    batch: int,
    conns_per_replica: int,
    poll_ms: float,
    make_op: Callable[[], dict[str, Any]],
) -> tuple[Run, float, float]:
    """Open-loop load; returns the run and the monotonic start and end times."""
    run = Run(observations=[[] for _ in reps])
    pools: list[asyncio.Queue[RawFetcher]] = []
    for r in reps:
        q: asyncio.Queue[RawFetcher] = asyncio.Queue()
        for _ in range(conns_per_replica):
            q.put_nowait(RawFetcher(r.url, None, 30.0))
        pools.append(q)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def observe(idx: int, fetcher: RawFetcher, t: float) -> dict[str, int] | None:
        token = fetcher.header(SESSION_HEADER)
        if not token:
            return None
        vv = dict(signer.decode(token).vv)
        run.observations[idx].append((t, vv))
        return vv

    async def one(idx: int, fetcher: RawFetcher, ops: list[dict[str, Any]]) -> None:
        if batch == 1:
            req = single_request(ops[0])
        else:
            req = Request("POST", "/v1/batch", orjson.dumps({"ops": ops}), len(ops), JSON_TYPE)
        t0 = time.monotonic()
        try:
            status, _, raw = await fetcher.fetch(req)
            t = time.monotonic()
            run.latencies.append(t - t0)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {raw[:200]!r}")
            if batch > 1 and any("error" in x for x in orjson.loads(raw)["results"]):
                raise RuntimeError(f"batch op failed: {raw[:200]!r}")
            vv = observe(idx, fetcher, t)
            if vv is None:
                raise RuntimeError("response without a session token")
            run.writes.append((t, idx, vv[reps[idx].actor], len(ops)))
            run.sent_ops.append((idx, ops))
        except Exception as e:
            run.errors += 1
            if len(run.error_samples) < 5:
                run.error_samples.append(f"{reps[idx].rid}: {e.__class__.__name__}: {e}")
        finally:
            pools[idx].put_nowait(fetcher)

    async def poller(idx: int, stop_at: float) -> None:
        fetcher = RawFetcher(reps[idx].url, None, 30.0)
        try:
            while time.monotonic() < stop_at:
                status, _, raw = await fetcher.fetch(Request("GET", "/v1/status", None, 0))
                t = time.monotonic()
                if status == 200:
                    run.observations[idx].append((t, dict(orjson.loads(raw)["applied"])))
                await asyncio.sleep(poll_ms / 1000)
        finally:
            await fetcher.close()

    interval = batch / rate  # seconds between requests
    start = loop.time()
    t_start = time.monotonic()
    end = start + duration
    pollers = [asyncio.ensure_future(poller(i, t_start + duration + 5.0)) for i in range(len(reps))]
    i = 0
    while True:
        now = loop.time()
        if now >= end:
            break
        due = start + i * interval
        if due > now:
            await asyncio.sleep(due - now)
            continue
        idx = i % len(reps)
        fetcher = await pools[idx].get()
        run.lateness.append(loop.time() - due)
        ops = [make_op() for _ in range(batch)]
        task = asyncio.ensure_future(one(idx, fetcher, ops))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    if tasks:
        await asyncio.gather(*tasks)
    t_end = time.monotonic()
    # Keep polling until every replica has applied every write (or 30 s pass).
    deadline = time.monotonic() + 30.0
    want = {
        r.actor: max((w[2] for w in run.writes if w[1] == j), default=0) for j, r in enumerate(reps)
    }
    while time.monotonic() < deadline:
        applied = [get_json(r.url + "/v1/status")["applied"] for r in reps]
        if all(a.get(actor, 0) >= s for a in applied for actor, s in want.items()):
            break
        await asyncio.sleep(0.05)
    for p in pollers:
        p.cancel()
    for p in pollers:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await p
    for q in pools:
        while not q.empty():
            await q.get_nowait().close()
    return run, t_start, t_end


def lags(run: Run, reps: list[Replica], since: float) -> tuple[list[float], list[float], int]:
    """Per (write, other replica): lag upper bound, observation gap; and writes never seen."""
    frontier: list[dict[str, tuple[list[float], list[int]]]] = []
    for obs in run.observations:
        obs.sort(key=lambda o: o[0])
        per_actor: dict[str, tuple[list[float], list[int]]] = {}
        for r in reps:
            times: list[float] = []
            seqs: list[int] = []
            best = 0
            for t, vv in obs:
                best = max(best, vv.get(r.actor, 0))
                times.append(t)
                seqs.append(best)
            per_actor[r.actor] = (times, seqs)
        frontier.append(per_actor)
    out: list[float] = []
    gaps: list[float] = []
    missing = 0
    for t_ack, idx, seq, _ in run.writes:
        if t_ack < since:
            continue
        actor = reps[idx].actor
        for j in range(len(reps)):
            if j == idx:
                continue
            times, seqs = frontier[j][actor]
            k = bisect.bisect_left(seqs, seq)  # seqs is non-decreasing
            if k == len(seqs):
                missing += 1
                continue
            out.append(max(0.0, times[k] - t_ack))
            if k > 0:
                gaps.append(times[k] - times[k - 1])
    return out, gaps, missing


def replay_sizes(run: Run, reps: list[Replica]) -> dict[str, Any]:
    """Replay the workload on the pure core: encoded delta group vs full-state group per op."""
    from crdtkv.crdts import codec
    from crdtkv.ops import apply_op
    from crdtkv.replica import records as rec
    from crdtkv.replica.keyspace import Replica as CoreReplica

    core = []
    for r in reps:
        rid, _, inc = r.actor.partition("~")
        core.append(CoreReplica(rid, inc))
    now = int(time.time() * 1000)
    delta_bytes = 0
    full_bytes = 0
    n = 0
    for idx, ops in run.sent_ops:
        origin = core[idx]
        for op in ops:
            apply_op(origin, op, now)
            (entry,) = origin.take_pending()
            group = entry.group
            delta_bytes += len(rec.pack(rec.encode_group(group)))
            # A group is the key's type state and its KeyMeta: the full-state
            # alternative ships both whole.
            full = [[k[0], k[1], codec.encode(origin.states[k])] for k in group.deltas]
            full_bytes += len(rec.pack([list(group.dot), full]))
            n += 1
            for j, other in enumerate(core):
                if j != idx:
                    other.apply_remote(group, reps[idx].rid, now)
                    other.take_pending()
    total_state = sum(len(rec.encode_state(s)) for s in core[0].states.values())
    return {
        "ops": n,
        "delta_group_bytes_mean": round(delta_bytes / n, 1) if n else None,
        "full_state_group_bytes_mean": round(full_bytes / n, 1) if n else None,
        "keys": len({name for _, name in core[0].states}),
        "whole_keyspace_state_bytes": total_state,
    }


# -- main -----------------------------------------------------------------------------------------


def cpu_snapshot(
    reps: list[Replica],
) -> tuple[float, list[float], float, tuple[float, float] | None]:
    return (
        time.monotonic(),
        [proc_cpu_s(r.proc.pid) or 0.0 for r in reps if r.proc is not None],
        time.process_time(),
        machine_cpu(),
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--rate", type=float, default=5000.0, help="writes (ops) per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds left out of the lag figures")
    p.add_argument("--batch", type=int, default=1, help="increments per request (1: single)")
    p.add_argument("--keys", type=int, default=1000, help="keys written")
    p.add_argument(
        "--op",
        choices=["counter", "set"],
        default="counter",
        help="counter: increments; set: OR-set adds of one of --members members per key",
    )
    p.add_argument("--members", type=int, default=100, help="--op set: distinct members")
    p.add_argument("--connections", type=int, default=32, help="connections per replica")
    p.add_argument("--poll-ms", type=float, default=5.0, help="/v1/status poll interval")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--dir", default=None, help="where to make the temporary directory")
    args = p.parse_args()
    if args.batch < 1 or args.rate <= 0 or args.duration <= args.warmup:
        p.error("--batch >= 1, --rate > 0 and --duration > --warmup")

    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    tmp = Path(tempfile.mkdtemp(prefix="crdtkv-repl-", dir=args.dir))
    secret = secrets.token_urlsafe(32)
    signer = TokenSigner(secret)
    reps: list[Replica] = []
    result: dict[str, Any] = {
        "benchmark": "replication_lag",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": vars(args),
    }
    try:
        reps = start_cluster(tmp, args.replicas, secret, args.durability)
        # One write at each replica so its actor (replica~incarnation) shows in the vectors.
        for r in reps:
            req = urllib.request.Request(
                r.url + "/v1/counters/warm", data=b'{"delta":1}', method="POST"
            )
            req.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(req, timeout=10) as resp:
                vv = signer.decode(resp.headers[SESSION_HEADER]).vv
            r.actor = next(a for a in vv if a.split("~", 1)[0] == r.rid)
        time.sleep(1.5)  # let the warm-up writes replicate and heartbeats settle

        m0, tcp0, cpu0 = replication_metrics(reps), tcp_bytes(reps), cpu_snapshot(reps)
        with runner:
            run, t_start, t_end = runner.run(
                drive(
                    reps, signer, args.rate, args.duration, args.batch,
                    args.connections, args.poll_ms, op_maker(args),
                )
            )  # fmt: skip
        cpu1 = cpu_snapshot(reps)
        m1, tcp1 = replication_metrics(reps), tcp_bytes(reps)

        ops = sum(w[3] for w in run.writes)
        wall = t_end - t_start
        lag, gaps, missing = lags(run, reps, t_start + args.warmup)
        lag.sort()
        gaps.sort()
        lat = sorted(run.latencies)
        late = sorted(run.lateness)
        replicated = ops * (len(reps) - 1)
        body_bytes = m1.get("crdtkv_replication_bytes_sent", 0) - m0.get(
            "crdtkv_replication_bytes_sent", 0
        )
        msgs = m1.get("crdtkv_replication_messages_sent", 0) - m0.get(
            "crdtkv_replication_messages_sent", 0
        )
        tcp_total = None
        if tcp0 is not None and tcp1 is not None:
            tcp_total = 0
            for conn, (a1, r1) in tcp1.items():
                a0, r0 = tcp0.get(conn, (0, 0))
                tcp_total += (a1 - a0) + (r1 - r0)
        sizes = replay_sizes(run, reps)
        wall_cpu = cpu1[0] - cpu0[0]
        ncpu = os.cpu_count() or 1
        machine_busy = None
        if cpu0[3] is not None and cpu1[3] is not None:
            total = (cpu1[3][1] - cpu0[3][1]) / ncpu
            machine_busy = round(100 * (cpu1[3][0] - cpu0[3][0]) / total, 1)

        def ms(xs: list[float], q: float) -> float | None:
            return round(1000 * percentile(xs, q), 2) if xs else None

        result.update(
            {
                "writes_ok": ops,
                "requests_ok": len(run.writes),
                "errors": run.errors,
                "error_samples": run.error_samples,
                "achieved_ops_per_s": round(ops / wall, 1),
                "wall_s": round(wall, 2),
                "send_lateness_ms": {
                    "p50": ms(late, 50),
                    "p99": ms(late, 99),
                    "max": ms(late, 100),
                },
                "write_latency_ms": {"p50": ms(lat, 50), "p99": ms(lat, 99), "max": ms(lat, 100)},
                "lag_ms": {
                    "samples": len(lag),
                    "p50": ms(lag, 50),
                    "p90": ms(lag, 90),
                    "p99": ms(lag, 99),
                    "max": ms(lag, 100),
                    "never_observed": missing,
                },
                "observation_gap_ms": {"p50": ms(gaps, 50), "p99": ms(gaps, 99)},
                "wire": {
                    "ops_replicated": replicated,
                    "body_bytes": body_bytes,
                    "messages": msgs,
                    "body_bytes_per_op": round(body_bytes / replicated, 1) if replicated else None,
                    "tcp_payload_bytes": tcp_total,
                    "tcp_bytes_per_op": round(tcp_total / replicated, 1)
                    if tcp_total is not None and replicated
                    else None,
                    "ops_per_message": round(replicated / msgs, 1) if msgs else None,
                },
                "encoded": sizes,
                "cpu_pct": {
                    "replicas": [
                        round(100 * (b - a) / wall_cpu, 1)
                        for a, b in zip(cpu0[1], cpu1[1], strict=True)
                    ],
                    "generator": round(100 * (cpu1[2] - cpu0[2]) / wall_cpu, 1),
                    "machine_busy": machine_busy,
                },
                "rss_kb": [proc_rss_kb(r.proc.pid) for r in reps if r.proc is not None],
            }
        )
        w = result["wire"]
        d = sizes["delta_group_bytes_mean"]
        print(
            f"{ops:,} writes in {wall:.1f} s = {ops / wall:,.0f} writes/s "
            f"(target {args.rate:,.0f}; batch {args.batch}); errors {run.errors}"
        )
        print(
            f"write latency p50 {result['write_latency_ms']['p50']} ms, "
            f"p99 {result['write_latency_ms']['p99']} ms"
        )
        print(
            f"replication lag over {len(lag):,} (write, peer) pairs: p50 {ms(lag, 50)} ms, "
            f"p99 {ms(lag, 99)} ms, max {ms(lag, 100)} ms; never observed {missing}; "
            f"observation gap p50 {ms(gaps, 50)} ms"
        )
        print(
            f"wire: {w['body_bytes_per_op']} body bytes per replicated op "
            f"({w['ops_per_message']} ops per message), "
            f"{w['tcp_bytes_per_op']} TCP payload bytes per op; "
            f"encoded delta group {d} bytes; full-state group would be "
            f"{sizes['full_state_group_bytes_mean']} bytes"
        )
        print(
            f"cpu % of one core: replicas {result['cpu_pct']['replicas']}, "
            f"generator {result['cpu_pct']['generator']}, machine busy {machine_busy}% of all"
        )
    finally:
        stop_cluster(reps)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

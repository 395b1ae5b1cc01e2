"""``python -m simulations nemesis``: a campaign of real-process runs, and its summary.

    python -m simulations nemesis --runs 200 --seed 1 --duration 5
    python -m simulations nemesis --seed 17 --duration 5 --verbose     one run, its events
    python -m simulations nemesis --seed 1 --canary wipe-isolated      must FAIL

Runs seeds S .. S+N-1 one after the other (``--jobs`` at once), a progress
bar on stderr, a ``FAIL seed ...`` line per failing run with the command
that reproduces it, then a summary: runs, faults injected by kind,
operations, acknowledged writes, lost acknowledged writes, divergent runs.
``--out FILE`` (default ``simulations/results/nemesis.json``) gets every
run's configuration, statistics, faults and violations.  The exit status is
1 if any run had a violation (a canary run must: the summary says in how
many runs it was caught), 2 on bad options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from simulations.nemesis.run import CANARIES, NEMESIS_FAULTS, NemesisOptions, RunResult, run_one

__all__ = ["add_arguments", "main", "repro_command", "summarize"]

DEFAULT_OUT = Path("simulations/results/nemesis.json")


def add_arguments(p: argparse.ArgumentParser, *, campaign: bool = True) -> None:
    p.add_argument("--seed", type=int, default=1, help="the (first) seed (default 1)")
    if campaign:
        p.add_argument("--runs", type=int, default=1, help="runs, seeds S .. S+N-1 (default 1)")
        p.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
        p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--replicas", type=int, default=3, help="replicas (default 3)")
    p.add_argument("--duration", type=float, default=5.0, help="fault phase, seconds (default 5)")
    p.add_argument("--liveness", type=float, default=40.0, help="seconds to converge after healing")
    p.add_argument("--clients", type=int, default=4, help="clients (default 4)")
    p.add_argument(
        "--faults",
        default="all",
        help=f"comma list of {', '.join(NEMESIS_FAULTS)}, 'all' or 'none' (default all)",
    )
    p.add_argument(
        "--durability",
        choices=("fsync", "wal"),
        help="every replica's --durability (default: drawn per seed, wal one in three)",
    )
    p.add_argument("--canary", choices=sorted(CANARIES), help="a known-bad injection")
    p.add_argument(
        "--data-dir", type=Path, help="keep data directories and logs here (DIR/seed<S> per run)"
    )
    p.add_argument("--verbose", action="store_true", help="print each run's events as they happen")


def _faults(text: str) -> tuple[str, ...]:
    if text == "all":
        return NEMESIS_FAULTS
    if text in ("none", ""):
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in NEMESIS_FAULTS]
    if unknown:
        known = ", ".join(NEMESIS_FAULTS)
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}; known: {known}")
    return kinds


def options(args: argparse.Namespace, seed: int) -> NemesisOptions:
    return NemesisOptions(
        seed=seed,
        replicas=args.replicas,
        duration_s=args.duration,
        liveness_s=args.liveness,
        clients=args.clients,
        faults=_faults(args.faults),
        durability=args.durability,
        canary=args.canary,
        data_dir=(
            args.data_dir / f"seed{seed}"
            if args.data_dir is not None and getattr(args, "runs", 1) > 1
            else args.data_dir
        ),
        log=print if args.verbose else None,
    )


def repro_command(args: argparse.Namespace, seed: int) -> str:
    cmd = ["python", "-m", "simulations", "nemesis", "--seed", str(seed)]
    cmd += ["--duration", f"{args.duration:g}", "--verbose"]
    if args.replicas != 3:
        cmd += ["--replicas", str(args.replicas)]
    if args.clients != 4:
        cmd += ["--clients", str(args.clients)]
    if args.faults != "all":
        cmd += ["--faults", args.faults]
    if args.durability:
        cmd += ["--durability", args.durability]
    if args.canary:
        cmd += ["--canary", args.canary]
    return " ".join(shlex.quote(c) for c in cmd)


def summarize(results: list[RunResult], wall_s: float) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults)
        kinds.update(f"{v.checker}/{v.kind}" for v in r.violations)
    return {
        "runs": len(results),
        "failing_seeds": [r.seed for r in results if not r.ok],
        "faults": dict(sorted(faults.items())),
        "faults_total": sum(v for k, v in faults.items() if k not in ("delayed", "restarts")),
        "operations": sum(r.stats.get("ops", 0) for r in results),
        "operations_ok": sum(r.stats.get("ops_ok", 0) for r in results),
        "acknowledged_writes": sum(r.stats.get("acked_writes", 0) for r in results),
        "lost": sum(r.lost() for r in results),
        "divergent_runs": sum(r.diverged() for r in results),
        "violations_by_kind": dict(sorted(kinds.items())),
        "durability": dict(Counter(r.config["durability"] for r in results)),
        "wall_s": round(wall_s, 1),
    }


def _bar(total: int, quiet: bool) -> Any:
    if quiet or total < 2:
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(total=total, file=sys.stderr, unit="run", smoothing=0.1)


def fail_line(args: argparse.Namespace, r: RunResult) -> str:
    kinds = Counter(f"{v.checker}/{v.kind}" for v in r.violations)
    what = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(kinds.items()))
    return f"FAIL seed {r.seed}: {what} -- reproduce: {repro_command(args, r.seed)}"


def run_campaign(args: argparse.Namespace) -> tuple[list[RunResult], dict[str, Any]]:
    seeds = list(range(args.seed, args.seed + args.runs))
    bar = _bar(len(seeds), args.quiet)
    started = time.monotonic()
    results: list[RunResult] = []

    def done(r: RunResult) -> None:
        results.append(r)
        if not r.ok:
            line = fail_line(args, r)
            if bar is not None:
                bar.write(line)
            else:
                print(line, flush=True)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failing=sum(not x.ok for x in results))

    if args.jobs > 1:
        with ThreadPoolExecutor(args.jobs) as pool:  # each run is its own asyncio loop
            for r in pool.map(lambda s: run_one(options(args, s)), seeds):
                done(r)
    else:
        for s in seeds:
            done(run_one(options(args, s)))
    if bar is not None:
        bar.close()
    results.sort(key=lambda r: r.seed)
    return results, summarize(results, time.monotonic() - started)


def print_one(r: RunResult) -> None:
    s, c = r.stats, r.config
    print(
        f"nemesis seed {r.seed}: {c['replicas']} replicas, {c['durability']}, "
        f"{c['duration_s']:g} s of faults ({', '.join(c['faults']) or 'none'})"
        + (f", canary {c['canary']}" if c["canary"] else "")
    )
    print(
        f"  {s.get('ops', 0)} operations ({s.get('ops_ok', 0)} ok, {s.get('ops_fail', 0)} "
        f"failed, {s.get('ops_unknown', 0)} unknown), {s.get('acked_writes', 0)} acknowledged "
        f"writes; faults: {r.faults}"
    )
    for v in r.violations:
        print(f"  VIOLATION {v.line()}")


def main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        _faults(args.faults)
    except ValueError as e:
        parser.error(str(e))
    if args.runs < 1 or args.jobs < 1 or not 2 <= args.replicas <= 7 or args.duration <= 0:
        parser.error("--runs and --jobs must be >= 1, --replicas in 2..7, --duration > 0")
    # SIGTERM stops like Ctrl-C: each run's clean-up stops the replicas it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results, summary = run_campaign(args)
    if len(results) == 1:
        print_one(results[0])
    print(
        f"runs: {summary['runs']} ({len(summary['failing_seeds'])} failing), "
        f"operations: {summary['operations']}, acknowledged writes: "
        f"{summary['acknowledged_writes']}, lost: {summary['lost']}, divergent runs: "
        f"{summary['divergent_runs']}, wall: {summary['wall_s']:.0f} s"
    )
    print(f"faults injected: {summary['faults']}")
    if summary["violations_by_kind"]:
        print(f"violations by kind: {summary['violations_by_kind']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "command": "python -m simulations " + shlex.join(sys.argv[1:]),
            "summary": summary,
            "runs": [r.to_json() for r in results],
        }
        args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"results: {args.out}")
    if args.canary:
        caught = sum(bool(r.lost() or r.diverged()) for r in results)
        print(f"canary {args.canary}: caught in {caught} of {len(results)} runs")
    return 1 if summary["failing_seeds"] else 0

"""Campaigns: many seeds, a progress bar, a verdict per failing seed, a report.

A campaign runs seeds ``seed .. seed + seeds - 1`` (in ``jobs`` worker
processes, each seed independent and deterministic), prints one line per
failing seed with the exact command that reproduces it, and a summary.  With
``report`` it also writes ``report.json`` (every seed's configuration,
statistics, violations and trace hash) and the PNG figures of
``simulations.plots``.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulations.canaries import CANARIES
from simulations.config import SimConfig, draw_config
from simulations.sim import RunResult, run

__all__ = ["CampaignOptions", "config_for", "repro_command", "run_campaign", "run_seed"]

LAG_SAMPLES_MAX = 300  # replication lag samples kept per link per seed (for the figures)


@dataclass
class CampaignOptions:
    seed: int = 1
    seeds: int = 1
    replicas: int | None = None
    faults: list[str] | None = None  # None: swarm
    exclude: list[str] = field(default_factory=list)
    duration_ms: int | None = None
    durability: str = "fsync"
    canary: str | None = None
    report: Path | None = None
    jobs: int = 1
    progress: bool = True
    key_classes: list[str] | None = None  # workload.TYPE_WEIGHTS entries drawn (None: all)
    shards: int | None = None  # a sharded run with slot moves (simulations.shards)
    regions: int | None = None  # (sharded) regions; None: drawn, 2 or 3


def config_for(opts: CampaignOptions, seed: int) -> SimConfig:
    """The configuration of one seed under these options.

    With a canary and no ``faults``, the run enables the canary's fault kinds
    (not a swarm draw) and its overrides, so that the bug shows."""
    faults = opts.faults
    canary = CANARIES[opts.canary] if opts.canary else None
    if canary is not None and faults is None:
        faults = list(canary.faults)
    shards = opts.shards
    if shards is None and canary is not None and canary.shards:
        shards = canary.shards  # a canary of the move runs sharded
    cfg = draw_config(
        seed,
        replicas=opts.replicas,
        faults=faults,
        duration_ms=opts.duration_ms,
        durability=opts.durability,
        canary=opts.canary,
        exclude=opts.exclude,
        shards=shards,
        regions=opts.regions,
    )
    if canary is not None:
        # A broken variant often never converges: 15 s of simulated liveness
        # phase shows that as well as 60 s, in a quarter of the time.
        cfg.liveness_ms = 15_000
        for name, value in canary.overrides.items():
            setattr(cfg, name, value)
    if opts.key_classes is not None:  # given: it wins over a canary's aim
        cfg.key_classes = list(opts.key_classes)
    return cfg


def repro_command(opts: CampaignOptions, seed: int) -> str:
    parts = ["python", "-m", "simulations", "run", "--seed", str(seed)]
    if opts.shards is not None:
        parts += ["--shards", str(opts.shards)]
    if opts.regions is not None:
        parts += ["--regions", str(opts.regions)]
    if opts.replicas is not None and opts.shards is None:
        parts += ["--replicas", str(opts.replicas)]
    if opts.faults is not None:
        parts += ["--faults", ",".join(opts.faults) or "none"]
    if opts.exclude:
        parts += ["--exclude-faults", ",".join(opts.exclude)]
    if opts.duration_ms is not None:
        parts += ["--duration", f"{opts.duration_ms / 1000:g}"]
    if opts.durability != "fsync":
        parts += ["--durability", opts.durability]
    if opts.canary:
        parts += ["--canary", opts.canary]
    if opts.key_classes is not None:
        parts += ["--key-classes", ",".join(opts.key_classes)]
    return " ".join(shlex.quote(p) for p in parts)


def run_seed(opts: CampaignOptions, seed: int, *, metrics: bool = False) -> RunResult:
    return run(config_for(opts, seed), metrics=metrics)


def _work(job: tuple[CampaignOptions, int, bool]) -> dict[str, Any]:
    opts, seed, metrics = job
    try:
        result = run_seed(opts, seed, metrics=metrics)
    except Exception as e:  # Simulation.run reports what it can; this is the last resort
        return {
            "seed": seed,
            "ok": False,
            "config": config_for(opts, seed).to_json(),
            "violations": [{"checker": "errors", "kind": "crashed", "detail": repr(e), "ops": []}],
            "trace_hash": "",
            "stats": {"sim_ms": 0, "ops": 0, "converge_ms": None},
            "checkers_failed": ["errors"],
        }
    out = result.to_json()
    out["checkers_failed"] = result.checkers_failed()
    if metrics and result.metrics:  # (a sharded run records none)
        out["metrics"] = _thin(result.metrics)
    return out


def _thin(metrics: dict[str, Any]) -> dict[str, Any]:
    lags = {}
    for link, values in metrics.get("lags", {}).items():
        step = max(1, len(values) // LAG_SAMPLES_MAX)
        lags[link] = values[::step][:LAG_SAMPLES_MAX]
    return {**metrics, "lags": lags}


def _results(opts: CampaignOptions, metrics: bool) -> Iterator[dict[str, Any]]:
    jobs = [(opts, s, metrics) for s in range(opts.seed, opts.seed + opts.seeds)]
    if opts.jobs <= 1 or len(jobs) == 1:
        yield from map(_work, jobs)
        return
    # fork: workers inherit this interpreter's hash seed (the CLI pins it), so
    # every seed runs exactly as it would alone.
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(opts.jobs) as pool:
        yield from pool.imap(_work, jobs, chunksize=1)


@dataclass
class CampaignResult:
    results: list[dict[str, Any]]
    wall_s: float

    @property
    def failing(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r["ok"]]

    def summary(self) -> dict[str, Any]:
        by_checker: Counter[str] = Counter()
        by_kind: Counter[str] = Counter()
        for r in self.results:
            for v in r["violations"]:
                by_checker[v["checker"]] += 1
                by_kind[f"{v['checker']}/{v['kind']}"] += 1
        sim_ms = sum(r["stats"]["sim_ms"] for r in self.results)
        fault_ms = sum(r["config"]["duration_ms"] for r in self.results)
        return {
            "seeds": len(self.results),
            "failing_seeds": [r["seed"] for r in self.failing],
            "simulated_hours": round(sim_ms / 3_600_000, 3),
            "fault_phase_hours": round(fault_ms / 3_600_000, 3),
            "wall_s": round(self.wall_s, 1),
            "operations": sum(r["stats"]["ops"] for r in self.results),
            # sharded runs (0 otherwise)
            "moves": sum(r["stats"].get("moves_done", 0) for r in self.results),
            "moves_planned": sum(r["stats"].get("moves_planned", 0) for r in self.results),
            "acked_writes": sum(r["stats"].get("acked_writes", 0) for r in self.results),
            "violations_by_checker": dict(by_checker),
            "violations_by_kind": dict(by_kind),
        }


def _progress_bar(opts: CampaignOptions) -> Any:
    """A tqdm bar on stderr, or None: without ``progress``, or without tqdm (the
    optional "bench" extra), the campaign runs without one."""
    if not opts.progress:
        return None
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return None
    return tqdm(total=opts.seeds, file=sys.stderr, unit="seed", smoothing=0.05)


def run_campaign(opts: CampaignOptions, out: Any = sys.stdout) -> CampaignResult:
    metrics = opts.report is not None
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    bar = _progress_bar(opts)
    failed = 0
    for r in _results(opts, metrics):
        results.append(r)
        if not r["ok"]:
            failed += 1
        if bar is None:
            if not r["ok"]:
                print(verdict_line(opts, r), file=out, flush=True)
            continue
        bar.update(1)
        if not r["ok"]:
            bar.set_postfix(failing=failed)
            bar.write(verdict_line(opts, r), file=out)  # above the bar, not through it
    if bar is not None:
        bar.close()
    result = CampaignResult(results, time.perf_counter() - started)
    if opts.report is not None:
        write_report(opts, result)
    return result


def verdict_line(opts: CampaignOptions, r: dict[str, Any]) -> str:
    kinds = Counter(f"{v['checker']}/{v['kind']}" for v in r["violations"])
    what = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(kinds.items()))
    return f"FAIL seed {r['seed']}: {what} -- reproduce: {repro_command(opts, r['seed'])}"


def write_report(opts: CampaignOptions, result: CampaignResult) -> None:
    from simulations import plots

    assert opts.report is not None
    opts.report.mkdir(parents=True, exist_ok=True)
    seeds = []
    for r in result.results:
        seeds.append({k: v for k, v in r.items() if k != "metrics"})
    report = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "options": {
            "seed": opts.seed,
            "seeds": opts.seeds,
            "replicas": opts.replicas,
            "faults": opts.faults,
            "exclude": opts.exclude,
            "duration_ms": opts.duration_ms,
            "durability": opts.durability,
            "canary": opts.canary,
            "key_classes": opts.key_classes,
            "shards": opts.shards,
            "regions": opts.regions,
        },
        "summary": result.summary(),
        "seeds": seeds,
    }
    (opts.report / "report.json").write_text(json.dumps(report, indent=1, default=str))
    plots.write_all(result.results, opts.report)

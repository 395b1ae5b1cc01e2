"""The campaign figures (matplotlib, PNG), from the per-seed results of a campaign.

- ``convergence.png``: time to converge after healing against the longest
  partition episode of the run, coloured by whether a state sync happened.
- ``replication_lag.png``: time from an operation's commit at its origin to
  its commit at each other replica; per link for one representative run, and
  as distributions by one-way link latency over the whole campaign.
- ``bytes_per_op.png``: bytes per shipped operation, per namespace: the
  delta-state entries actually shipped, against what shipping the full state
  of each touched key would have cost.  The full-state figure is computed,
  not run: at the moment each log entry is put into a push, the simulator
  encodes the current full state of every key the entry touches and counts
  the entry as if that state replaced the key's delta (same dot, same
  framing): what a state-based, rather than delta-based, push would carry.
"""

from __future__ import annotations

import importlib
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["NO_MATPLOTLIB", "write_all"]

NO_MATPLOTLIB = "figures skipped: matplotlib is not installed (pip install crdtkv[bench] brings it)"


def _plt() -> Any:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def write_all(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """The figures of a campaign with metrics; none (and one line on stderr saying
    so) without matplotlib, which only the optional "bench" extra installs."""
    with_metrics = [r for r in results if r.get("metrics")]
    if not with_metrics:
        return []
    try:
        _plt()
    except ImportError:
        print(NO_MATPLOTLIB, file=sys.stderr)
        return []
    return [
        convergence(with_metrics, out / "convergence.png"),
        replication_lag(with_metrics, out / "replication_lag.png"),
        bytes_per_op(with_metrics, out / "bytes_per_op.png"),
    ]


def convergence(results: list[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for synced, colour, label in (
        (False, "tab:blue", "deltas only"),
        (True, "tab:red", "with a state sync"),
    ):
        xs, ys = [], []
        for r in results:
            s = r["stats"]
            if s["converge_ms"] is None or (s["state_syncs"] > 0) != synced:
                continue
            xs.append(s["partition_ms_max"] / 1000)
            ys.append(s["converge_ms"] / 1000)
        ax.scatter(xs, ys, s=10, alpha=0.5, c=colour, label=f"{label} ({len(xs)} runs)")
    ax.set_xlabel("longest partition episode of the run (s)")
    ax.set_ylabel("convergence after healing (s, simulated)")
    ax.set_title(f"Time to converge after the heal, {len(results)} seeds")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _latency_class(ms: int, geo: bool) -> str:
    if not geo:
        return "no geo (5 ms)"
    if ms <= 5:
        return "same region (1-5 ms)"
    return "30-90 ms" if ms <= 90 else "91-150 ms"


def replication_lag(results: list[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    geo3 = [r for r in results if "geo" in r["config"]["faults"] and r["config"]["replicas"] == 3]
    pick = max(geo3 or results, key=lambda r: sum(len(v) for v in r["metrics"]["lags"].values()))
    lags = pick["metrics"]["lags"]
    links = sorted(lags)
    lat = pick["metrics"]["latency"]
    left.boxplot([lags[k] for k in links], showfliers=False)
    left.set_xticks(range(1, len(links) + 1), [f"{k}\n{lat.get(k, '?')} ms" for k in links])
    left.set_yscale("log")
    left.set_ylabel("lag (ms, simulated)")
    left.set_title(
        f"per link, seed {pick['seed']} ({', '.join(pick['config']['faults'])})", fontsize=8
    )
    by_class: dict[str, list[int]] = defaultdict(list)
    for r in results:
        geo = "geo" in r["config"]["faults"]
        latency = r["metrics"]["latency"]
        for link, values in r["metrics"]["lags"].items():
            by_class[_latency_class(latency.get(link, 5), geo)].extend(values)
    for name in sorted(by_class):
        values = sorted(v for v in by_class[name] if v > 0) or [1]
        n = len(values)
        right.plot(values, [(i + 1) / n for i in range(n)], label=f"{name} ({n})")
    right.set_xscale("log")
    right.set_xlabel("lag (ms, simulated)")
    right.set_ylabel("fraction of deliveries")
    right.set_title(f"all {len(results)} seeds, by one-way link latency", fontsize=9)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle("Replication lag: commit at the origin to commit at the peer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bytes_per_op(results: list[dict[str, Any]], path: Path) -> Path:
    plt = _plt()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in results:
        for ns, (n, delta, full) in r["metrics"]["wire"].items():
            t = totals[ns]
            t[0] += n
            t[1] += delta
            t[2] += full
    names = sorted(ns for ns in totals if ns != "?" and totals[ns][0])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = range(len(names))
    delta = [totals[ns][1] / totals[ns][0] for ns in names]
    full = [totals[ns][2] / totals[ns][0] for ns in names]
    ax.bar([x - 0.2 for x in xs], delta, width=0.4, label="delta-state (shipped)")
    ax.bar([x + 0.2 for x in xs], full, width=0.4, label="full state of the key (computed)")
    for x, d, f in zip(xs, delta, full, strict=True):
        ax.text(x - 0.2, d, f"{d:.0f}", ha="center", va="bottom", fontsize=8)
        ax.text(x + 0.2, f, f"{f:.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [f"{ns}\n({totals[ns][0]} shipped)" for ns in names])
    ax.set_yscale("log")
    ax.set_ylabel("bytes per shipped operation")
    ax.set_title(f"Bytes on the wire per operation, {len(results)} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

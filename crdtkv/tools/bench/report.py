"""``crdtkv bench``'s figures: the tally of a run, its summary, the table and the JSON file."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crdtkv.tools.bench.machine import machine_info
from crdtkv.tools.bench.options import PROG, BenchConfig

__all__ = [
    "ServerInfo",
    "Tally",
    "cpu_note",
    "describe",
    "percentile",
    "render_table",
    "summarize",
    "text_table",
    "write_json",
]

ERROR_SAMPLES_MAX = 5  # failures quoted in the results; the rest are only counted
JSON_FORMAT_VERSION = 1


@dataclass(slots=True)
class Tally:
    """What one operation type's requests came to, as they complete."""

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


# -- output -------------------------------------------------------------------------------------


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


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


def describe(cfg: BenchConfig, loop_name: str, urls: Sequence[str]) -> str:
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


def cpu_note() -> str:
    """What the CPU columns mean, on this machine."""
    ncpu = os.cpu_count() or 1
    return (
        "server%/bench%/other%: CPU used by the server, by this generator and by everything "
        f"else, in % of one core ({os.cpu_count()} cores = {100 * ncpu}%); "
        "srv us/op: server CPU microseconds per operation"
    )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The server side of a run, for the JSON file."""

    pids: tuple[int, ...]
    rss_kb_start: int | None
    spawned: bool
    exit_status: int | None  # of the spawned server, after its clean stop


def write_json(
    path: str,
    cfg: BenchConfig,
    started_at: str,
    loop_name: str,
    server: ServerInfo,
    results: Sequence[Mapping[str, Any]],
) -> None:
    """The whole run as JSON (``--json PATH``); ``OSError`` if it cannot be written."""
    doc = {
        "tool": PROG,
        "format_version": JSON_FORMAT_VERSION,
        "started_at": started_at,
        "machine": machine_info(),
        "event_loop": loop_name,
        "config": cfg.to_json(),
        "server": {
            "pids": list(server.pids),
            "rss_kb_start": server.rss_kb_start,
            "spawned": server.spawned,
            "exit_status": server.exit_status,
        },
        "results": list(results),
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")

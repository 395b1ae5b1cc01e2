"""Counters (the increment view of string keys): the final value is what the
acknowledged and in-doubt increments allow, and exactly the surviving ones."""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.numeric import cell_value
from simulations.checkers.common import Reads, States, Violation, done_ms, first_failing, live_ops
from simulations.checkers.numbers import surviving, uncertain
from simulations.history import Final, History, Op

__all__ = ["check_counters"]


def _counter_value(result: dict[str, Any] | None) -> int:
    if result is None or result.get("not_found"):
        return 0
    return int(result["value"])


def _subset_sums(values: list[int], limit: int = 100_000) -> set[int] | None:
    sums = {0}
    for v in values:
        sums |= {s + v for s in sums}
        if len(sums) > limit:
            return None
    return sums


def check_counters(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for key in history.keys.get("counters", []):
        out += first_failing(final, partial(_counter_at, key, history.on_key("counters", key)))
    return out


def _counter_at(key: str, ops: list[Op], reads: Reads, states: States | None) -> list[Violation]:
    value = _counter_value(reads.get(("counters", key)))
    found = _counters_black_box(key, ops, value)
    if states is not None:
        found += _counters_white_box(key, ops, value)
    return found


def _counters_black_box(key: str, ops: list[Op], value: int) -> list[Violation]:
    """No resets: value = sum(acknowledged) + sum(some subset of in-doubt).
    With resets: increments invoked after every reset was acknowledged
    survive; each earlier (or in-doubt) one may or may not, so the value lies
    within the range those allow."""
    incrs = [o for o in live_ops(ops) if o.kind == "counters.incr"]
    resets = [o for o in live_ops(ops) if o.kind == "counters.delete"]
    if not resets:
        acked = sum(o.args["delta"] for o in incrs if o.acked)
        doubt = [o.args["delta"] for o in incrs if not o.acked]
        sums = _subset_sums(doubt)
        if sums is not None and value - acked not in sums:
            return [
                Violation(
                    "counters",
                    "wrong-sum",
                    f"counters/{key} = {value}; acknowledged increments sum to {acked} and "
                    f"no subset of the {len(doubt)} in-doubt ones ({doubt}) makes up the rest",
                )
            ]
        if sums is None:
            lo = sum(d for d in doubt if d < 0)
            hi = sum(d for d in doubt if d > 0)
            if not acked + lo <= value <= acked + hi:
                return [
                    Violation("counters", "wrong-sum", f"counters/{key} = {value} out of range")
                ]
        return []
    last_reset = max(done_ms(r) for r in resets)
    sure = sum(o.args["delta"] for o in incrs if o.acked and o.invoke_ms > last_reset)
    maybe = [o.args["delta"] for o in incrs if not (o.acked and o.invoke_ms > last_reset)]
    lo = sure + sum(d for d in maybe if d < 0)
    hi = sure + sum(d for d in maybe if d > 0)
    if not lo <= value <= hi:
        return [
            Violation(
                "counters",
                "out-of-range",
                f"counters/{key} = {value}, outside [{lo}, {hi}]: increments after the last "
                f"reset sum to {sure}, {len(maybe)} earlier ones may or may not survive",
            )
        ]
    return []


def _counters_white_box(key: str, ops: list[Op], value: int) -> list[Violation]:
    """Exactly the increments no executed operation removed count: the value is
    the sum of the running totals left in the cell once every entry a later
    delete (or the same writer's next increment) observed is dropped.  A
    writer's total carries its increments since the last reset *it* saw, so
    an increment made beside a concurrent delete brings its writer's earlier
    ones along (``crdtkv.crdts.numeric``)."""
    if uncertain(ops):
        return []
    cell, _ = surviving(ops, key)
    expected = cell_value(cell)
    if expected is None:
        expected = 0
    if expected != value:
        return [
            Violation(
                "counters",
                "wrong-value",
                f"counters/{key} = {value}; the {len(cell)} running totals no executed "
                f"operation removed sum to {expected!r}",
            )
        ]
    return []

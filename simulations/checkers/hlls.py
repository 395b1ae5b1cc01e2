"""HyperLogLogs: counts within tolerance of the items added, merges are unions, exact registers."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import partial

from crdtkv.crdts.hlc import ZERO
from crdtkv.crdts.hll import HLL, M, register_of
from simulations.checkers.common import Reads, States, Violation, first_failing, live_ops
from simulations.history import Final, History, Op, state_key

__all__ = ["HLL_SIGMA", "check_hlls"]

HLL_SIGMA = 1.04 / math.sqrt(M)  # relative standard error of p=14 HyperLogLog: 0.81%


def _hll_tolerance(n: int) -> float:
    return 3 * HLL_SIGMA * n + 2


def _items(ops: Iterable[Op]) -> set[str]:
    return {i for o in ops if o.kind == "hlls.add" for i in o.args["items"]}


def check_hlls(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    by_key = {k: history.on_key("hlls", k) for k in history.keys.get("hlls", [])}
    for key, ops in by_key.items():
        out += first_failing(final, partial(_hll_at, key, ops, by_key))
    return out


def _hll_at(
    key: str, ops: list[Op], by_key: dict[str, list[Op]], reads: Reads, states: States | None
) -> list[Violation]:
    result = reads.get(("hlls", key))
    count = 0 if result is None or result.get("not_found") else int(result["count"])
    found = _hll_black_box(key, ops, by_key, count)
    if states is not None:
        state = states.get(state_key("hlls", key))
        found += _hll_white_box(key, ops, by_key, state if isinstance(state, HLL) else None)
    return found


def _hll_black_box(
    key: str, ops: list[Op], by_key: dict[str, list[Op]], count: int
) -> list[Violation]:
    """count within tolerance of [items surely added, items perhaps added];
    a merge destination may also hold its sources' items; after a delete
    only the upper bound holds."""
    live = live_ops(ops)
    merges = [o for o in live if o.kind == "hlls.merge"]
    deleted = any(o.kind == "hlls.delete" for o in live)
    hi_items = _items(live)
    for m in merges:
        for src in m.args["sources"]:
            hi_items |= _items(live_ops(by_key.get(src, [])))
    # An add that changed no register minted nothing: its items rest on other
    # operations, so a possibly lost one voids the lower bound.
    doubtful = any(o.meta is not None and o.meta.possibly_lost for o in ops)
    lo_n = 0 if deleted or doubtful else len(_items(o for o in live if o.acked))
    hi_n = len(hi_items)
    if count > hi_n + _hll_tolerance(hi_n) or count < lo_n - _hll_tolerance(lo_n):
        return [
            Violation(
                "hll",
                "count-out-of-bounds",
                f"hlls/{key} counts {count}; between {lo_n} and {hi_n} distinct items were "
                f"added{' or merged in' if merges else ''} (tolerance 3 standard errors + 2)",
            )
        ]
    return []


def _hll_white_box(
    key: str, ops: list[Op], by_key: dict[str, list[Op]], state: HLL | None
) -> list[Violation]:
    """The registers are exactly the maximum over the items of executed adds
    in the surviving epoch and the sources' registers each merge read."""
    related = ops + [
        o
        for m in ops
        if m.kind == "hlls.merge"
        for s in m.args["sources"]
        for o in by_key.get(s, [])
    ]
    if any(o.meta is not None and o.meta.possibly_lost for o in related):
        return []
    epoch = state.epoch if state is not None else ZERO
    model = bytearray(M)
    items: set[str] = set()
    merged = False
    for o in ops:
        m = o.meta
        if m is None or m.epoch_after != epoch:
            continue
        if o.kind == "hlls.add":
            for item in o.args["items"]:
                items.add(item)
                i, v = register_of(item)
                model[i] = max(model[i], v)
        elif o.kind == "hlls.merge":
            merged = True
            for src in m.sources:
                assert isinstance(src, HLL)
                for i, v in enumerate(src.registers):
                    model[i] = max(model[i], v)
    actual = state.registers if state is not None else bytes(M)
    if actual != bytes(model):
        wrong = sum(1 for a, b in zip(actual, model, strict=True) if a != b)
        return [
            Violation(
                "hll",
                "registers",
                f"hlls/{key}: {wrong} register(s) differ from the union of the items added "
                f"in epoch {tuple(epoch)} and the sources merged in",
            )
        ]
    if state is not None and not merged:
        count, n = state.count(), len(items)
        if abs(count - n) > _hll_tolerance(n):
            return [
                Violation(
                    "hll",
                    "estimate",
                    f"hlls/{key} counts {count} for {n} distinct items "
                    f"(tolerance {_hll_tolerance(n):.1f})",
                )
            ]
    return []

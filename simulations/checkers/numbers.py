"""String keys (numeric registers), recomputed from the history alone.

A string key is an LWW base plus the increments that base has not observed
(``crdtkv.crdts.numeric``).  Every entry of its cell (a base ``Write`` or an
``Incr``, one writer's running total) is minted by one operation's delta
under that operation's dot, and is dropped exactly when another operation's
delta *covers* its dot: its causal context holds the dot (a later base
write, a DEL, the same writer's next increment, a reset of an expired key).
So the converged cell is the set of executed entries no executed delta
covers.  This module computes it from the deltas the history recorded,
without the register's join, so a broken join cannot hide from it.

It also checks the keys that mix the two views on purpose (``num*``): the
final value is the surviving base plus the surviving increments, and an
increment answers the value it executed on plus its delta (``SET k 5;
INCR k`` gives 6).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.numeric import Cell, Entry, NumericRegister, cell_value, parse_number
from crdtkv.replica.keyspace import Key
from simulations.checkers.common import (
    DETAILS_MAX,
    Reads,
    States,
    Violation,
    first_failing,
    jkey,
)
from simulations.history import Final, History, Op

__all__ = ["check_numbers", "read_value", "surviving", "surviving_cells", "uncertain"]

STRING = "string"


def uncertain(ops: list[Op]) -> bool:
    """Some executed operation's effect may be gone (a lost data directory):
    the history no longer determines the key."""
    return any(o.meta is not None and o.meta.possibly_lost for o in ops)


def surviving_cells(ops: list[Op], key: Key) -> tuple[dict[str, Cell], dict[Dot, Op]]:
    """The cells of ``key`` that the executed operations leave, and who minted
    each entry (by its dot).

    Works for every holder of numeric-register cells: a string key (one cell,
    under ``""``), a hash (a cell per field), a sorted set (a cell per member).
    An entry survives unless another executed delta covers it: its causal
    context holds the entry's dot and its cells do not hold the entry.  Cells
    list their entries in dot order; fields with no surviving entry are left out.
    """
    minted: dict[Dot, tuple[str, Entry, Op]] = {}
    deltas: list[tuple[CausalContext, list[Entry]]] = []
    for o in ops:
        if o.meta is None:
            continue
        for g in o.meta.groups:
            d = g.deltas.get(key)
            cells: dict[str, Cell]
            if isinstance(d, NumericRegister):
                cells = {"": d.cell}
            elif isinstance(d, CausalMap):
                cells = d.entries
            else:
                continue
            deltas.append((d.ctx, [e for cell in cells.values() for e in cell]))
            for field, cell in cells.items():
                for e in cell:
                    minted[e.dot] = (field, e, o)
    alive: dict[str, list[Entry]] = {}
    for dot, (field, e, _) in minted.items():
        if not any(dot in ctx and e not in held for ctx, held in deltas):
            alive.setdefault(field, []).append(e)
    out = {f: tuple(sorted(es, key=lambda e: e.dot)) for f, es in sorted(alive.items())}
    return out, {dot: o for dot, (_, _, o) in minted.items()}


def surviving(ops: list[Op], name: str) -> tuple[Cell, dict[Dot, Op]]:
    """The cell of string key ``name`` that the executed operations leave (every
    entry no other executed delta covers, in dot order) and who minted each
    entry (by its dot)."""
    cells, minted = surviving_cells(ops, (STRING, name))
    return cells.get("", ()), minted


def read_value(result: dict[str, Any] | None) -> object:
    """A final read's value; None when absent."""
    if result is None or result.get("not_found") or "value" not in result:
        return None
    return result["value"]


def check_numbers(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for name in history.keys.get("numbers", []):
        ops = history.on_name(name)
        out += _increments_start_from_the_base(name, ops)
        if final.replica_states is not None and not uncertain(ops):
            cell, _ = surviving(ops, name)
            out += first_failing(final, partial(_final_at, name, cell))
    return out


def _final_at(name: str, cell: Cell, reads: Reads, states: States | None) -> list[Violation]:
    expected = cell_value(cell)
    n = None if expected is None else parse_number(expected)
    as_counter = n if isinstance(n, int) else None  # else absent, or 409 wrong_type
    got = read_value(reads.get(("registers", name)))
    got_counter = read_value(reads.get(("counters", name)))
    if jkey(got) == jkey(expected) and got_counter == as_counter:
        return []
    return [
        Violation(
            "counters",
            "wrong-value",
            f"numbers/{name} reads {got!r} as a register and {got_counter!r} as a counter; "
            f"the base and increments no executed operation removed make {expected!r} "
            f"({len(cell)} entries)",
        )
    ]


def _increments_start_from_the_base(name: str, ops: list[Op]) -> list[Violation]:
    """An increment answers the value of the key where it executed plus its delta."""
    out: list[Violation] = []
    for o in ops:
        m = o.meta
        if o.kind != "counters.incr" or o.status != "ok" or m is None or o.result is None:
            continue
        before = cell_value(m.before.cell) if isinstance(m.before, NumericRegister) else None
        n = 0 if before is None else parse_number(before)
        if not isinstance(n, int):
            continue  # the key had expired and was reset; or the answer was a refusal
        if o.result.get("value") != n + o.args["delta"]:
            out.append(
                Violation(
                    "counters",
                    "incr-ignores-base",
                    f"numbers/{name}: {o.describe()} executed on the value {before!r}: "
                    f"it should answer {n + o.args['delta']}",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out

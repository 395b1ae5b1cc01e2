"""Registers (LWW): the final value is the latest write; a replica's register never goes back."""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.lww_register import LWWRegister
from simulations.checkers.common import (
    DETAILS_MAX,
    Reads,
    States,
    Violation,
    first_failing,
    jkey,
    live_ops,
    strictly_before,
)
from simulations.history import Final, History, Op

__all__ = ["check_registers", "register_writes"]


def register_writes(ops: list[Op]) -> list[Op]:
    return [o for o in ops if o.kind in ("registers.set", "registers.delete")]


def check_registers(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for key in history.keys.get("registers", []):
        ops = history.on_key("registers", key)
        out += first_failing(final, partial(_register_at, key, ops, history.skew_slack_ms))
        if final.states is not None and history.durability == "fsync":
            out += _registers_never_go_back(key, ops)
    return out


def _register_at(
    key: str, ops: list[Op], slack_ms: int, reads: Reads, states: States | None
) -> list[Violation]:
    found = _registers_black_box(key, ops, reads.get(("registers", key)), slack_ms)
    if states is not None:
        state = states.get(("registers", key))
        found += _registers_white_box(key, ops, state if isinstance(state, LWWRegister) else None)
    return found


def _registers_black_box(
    key: str, ops: list[Op], result: dict[str, Any] | None, slack_ms: int
) -> list[Violation]:
    """The final value is that of a write no acknowledged write followed by
    more than the clock slack (such a later write has a larger timestamp);
    absent only if such a write is a delete or carried a TTL."""
    writes = live_ops(register_writes(ops))
    acked = [w for w in writes if w.acked]
    candidates = [w for w in writes if not any(strictly_before(w, a, slack_ms) for a in acked)]
    if result is None or result.get("not_found"):
        enders = [w for w in writes if w.kind == "registers.delete" or "ttl_ms" in w.args]
        for w in acked:
            if w.kind == "registers.set" and "ttl_ms" not in w.args:
                if all(strictly_before(d, w, slack_ms) for d in enders):
                    return [
                        Violation(
                            "registers",
                            "vanished",
                            f"registers/{key} is absent at the end, but {w.describe()} "
                            f"came after every delete and expiring write",
                            [w.idx],
                        )
                    ]
        return []
    v = jkey(result.get("value"))
    if any(w.kind == "registers.set" and jkey(w.args["value"]) == v for w in candidates):
        return []
    writer = [w for w in writes if w.kind == "registers.set" and jkey(w.args["value"]) == v]
    what = f"written by {writer[0].describe()}" if writer else "written by nobody"
    return [
        Violation(
            "registers",
            "not-latest",
            f"registers/{key} ends as {result.get('value')!r} ({what}), which a later "
            f"acknowledged write should have replaced",
            [w.idx for w in writer[:1]],
        )
    ]


def _registers_white_box(key: str, ops: list[Op], state: LWWRegister | None) -> list[Violation]:
    """The converged register is the executed write with the largest timestamp."""
    writes = [o for o in register_writes(ops) if o.meta and isinstance(o.meta.delta, LWWRegister)]
    if not writes or any(o.meta is not None and o.meta.possibly_lost for o in ops):
        return []
    top = max(writes, key=lambda o: _reg(o).ts)
    d = _reg(top)
    if state is None:
        if d.tombstone or d.expires_ms is not None:
            return []
        return [
            Violation(
                "registers",
                "vanished",
                f"registers/{key} is gone, but its latest write {top.describe()} "
                f"(ts {tuple(d.ts)}) is neither a delete nor expiring",
                [top.idx],
            )
        ]
    if state.ts != d.ts:
        return [
            Violation(
                "registers",
                "not-latest",
                f"registers/{key} converged to the write at ts {tuple(state.ts)} "
                f"(value {state.val!r}); the largest timestamp is {tuple(d.ts)}, "
                f"{top.describe()}",
                [top.idx],
            )
        ]
    return []


def _reg(op: Op) -> LWWRegister:
    assert op.meta is not None and isinstance(op.meta.delta, LWWRegister)
    return op.meta.delta


def _execution_order(o: Op) -> tuple[int, int, int]:
    assert o.meta is not None
    return (o.meta.exec_ms, o.meta.exec_seq, o.idx)


def _registers_never_go_back(key: str, ops: list[Op]) -> list[Violation]:
    """At one replica (one incarnation), the timestamp of the register a read
    sees never decreases: a value replaced (or deleted) does not come back."""
    out: list[Violation] = []
    high: dict[tuple[str, str], tuple[Timestamp, Op]] = {}
    executed = sorted((o for o in ops if o.meta is not None), key=_execution_order)
    for o in executed:
        m = o.meta
        assert m is not None
        where = (o.replica, m.incarnation)
        seen: Timestamp | None = None
        if o.kind == "registers.get" and isinstance(m.state, LWWRegister):
            seen = m.state.ts
            prev = high.get(where)
            if prev is not None and seen < prev[0]:
                out.append(
                    Violation(
                        "registers",
                        "went-back",
                        f"registers/{key} at {o.replica}: {o.describe()} saw ts {tuple(seen)} "
                        f"(value {m.state.val!r}) after {prev[1].describe()} had seen or "
                        f"written ts {tuple(prev[0])}",
                        [prev[1].idx, o.idx],
                    )
                )
            if not m.acked:
                seen = None  # never answered: a crash may have taken back what it saw
        elif isinstance(m.delta, LWWRegister) and not m.possibly_lost:
            seen = m.delta.ts
        if seen is not None and (where not in high or seen > high[where][0]):
            high[where] = (seen, o)
    return out[:DETAILS_MAX]

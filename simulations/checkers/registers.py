"""Registers (the LWW view of string keys): the final value is the latest surviving
write; a replica's register never goes back."""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.numeric import NumericRegister, Write
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
from simulations.checkers.numbers import read_value, surviving, uncertain
from simulations.history import Final, History, Op

__all__ = ["check_registers", "may_be_removed", "register_writes"]


def register_writes(ops: list[Op]) -> list[Op]:
    return [o for o in ops if o.kind in ("registers.set", "registers.delete")]


def may_be_removed(a: Op, writes: list[Op]) -> bool:
    """Whether write ``a`` may be gone without a later write replacing it: it
    expires, or a delete that may have observed it (not strictly before it)
    may have happened.  A delete removes only what its replica had seen, so
    an older write it did not see can then be the value again."""
    if "ttl_ms" in a.args:
        return True
    return any(
        d.kind == "registers.delete" and d.may_have_happened() and not strictly_before(d, a)
        for d in writes
    )


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
    result = reads.get(("registers", key))
    found = _registers_black_box(key, ops, result, slack_ms)
    if states is not None:
        found += _registers_white_box(key, ops, read_value(result))
    return found


def _registers_black_box(
    key: str, ops: list[Op], result: dict[str, Any] | None, slack_ms: int
) -> list[Violation]:
    """The final value is that of a write no acknowledged, lasting write followed
    by more than the clock slack (such a later write has a larger timestamp;
    lasting: no delete may have observed it and it does not expire); absent
    only if no acknowledged non-TTL write came after every delete, or a TTL
    was ever written."""
    writes = live_ops(register_writes(ops))
    acked = [
        w for w in writes if w.acked and w.kind == "registers.set" and not may_be_removed(w, writes)
    ]
    candidates = [w for w in writes if not any(strictly_before(w, a, slack_ms) for a in acked)]
    if result is None or result.get("not_found"):
        if any("ttl_ms" in w.args for w in writes):
            # A SET drops only the TTLs its replica had seen: an expiry written
            # elsewhere, even long before, may still empty the key after it.
            return []
        enders = [w for w in writes if w.kind == "registers.delete"]
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


def _registers_white_box(key: str, ops: list[Op], value: object) -> list[Violation]:
    """The final value is that of the surviving base write (one no executed
    delete or later write observed) with the largest HLC timestamp; absent
    only if none survives.  On a key written with a TTL, an expiry (a local
    reset the history does not hold) may have removed any of them: the value
    is then one of the surviving writes, or nothing."""
    if uncertain(ops):
        return []
    cell, minted = surviving(ops, key)
    bases = [e for e in cell if isinstance(e, Write)]
    if not bases:
        if value is None:
            return []
        return [
            Violation(
                "registers",
                "phantom",
                f"registers/{key} reads {value!r}, but every executed write was removed",
            )
        ]
    top = max(bases, key=lambda e: (e.ts, e.dot))
    op = minted[top.dot]
    if any("ttl_ms" in o.args for o in ops if o.meta is not None):
        # An expiry empties the key at one replica: a local reset the history does not
        # hold, so the winner is some surviving write, or nothing.
        if value is None or any(jkey(e.value) == jkey(value) for e in bases):
            return []
    if value is None:
        return [
            Violation(
                "registers",
                "vanished",
                f"registers/{key} is absent, but {op.describe()} (ts {tuple(top.ts)}) "
                f"survives: no executed delete observed it",
                [op.idx],
            )
        ]
    if jkey(value) != jkey(top.value):
        return [
            Violation(
                "registers",
                "not-latest",
                f"registers/{key} reads {value!r}; the surviving write with the largest "
                f"timestamp is {op.describe()} (ts {tuple(top.ts)})",
                [op.idx],
            )
        ]
    return []


def _execution_order(o: Op) -> tuple[int, int, int]:
    assert o.meta is not None
    return (o.meta.exec_ms, o.meta.exec_seq, o.idx)


def _registers_never_go_back(key: str, ops: list[Op]) -> list[Violation]:
    """At one replica (one incarnation) the register only moves up its lattice:
    a read's state includes what earlier acknowledged reads there saw and the
    deltas of the acknowledged writes made there, so a replaced or deleted
    value does not come back without a later write."""
    out: list[Violation] = []
    high: dict[tuple[str, str], tuple[CRDT, Op]] = {}
    executed = sorted((o for o in ops if o.meta is not None), key=_execution_order)
    for o in executed:
        m = o.meta
        assert m is not None
        where = (o.replica, m.incarnation)
        prev = high.get(where)
        if o.kind == "registers.get" and isinstance(m.state, NumericRegister):
            if prev is not None and not _dominates(m.state, prev[0]):
                out.append(
                    Violation(
                        "registers",
                        "went-back",
                        f"registers/{key} at {o.replica}: {o.describe()} saw {m.state!r}, "
                        f"which lacks what {prev[1].describe()} had seen or written there",
                        [prev[1].idx, o.idx],
                    )
                )
            seen: CRDT | None = m.state if m.acked else None  # unanswered: a crash may undo it
        else:
            seen = m.delta if m.acked and not m.possibly_lost else None
        if seen is not None:
            high[where] = (seen.copy() if prev is None else prev[0].joined(seen), o)
    return out[:DETAILS_MAX]


def _dominates(state: CRDT, before: CRDT) -> bool:
    return isinstance(before, type(state)) and state.joined(before) == state

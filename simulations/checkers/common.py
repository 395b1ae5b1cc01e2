"""What every checker shares: the Violation record, timing rules, per-replica views."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from crdtkv.crdts.base import CRDT
from simulations.history import Final, Op

__all__ = [
    "CHECKERS",
    "DETAILS_MAX",
    "NEVER",
    "Reads",
    "ReplicaView",
    "States",
    "Violation",
    "done_ms",
    "first_failing",
    "jkey",
    "live_ops",
    "replica_views",
    "strictly_before",
]

CHECKERS = (
    "convergence",
    "sets",
    "counters",
    "registers",
    "hll",
    "types",
    "hash-converge",
    "zset-score",
    "zset-rank",
    "list-converge",
    "list-pushes-kept",
    "list-replica-order",
    "list-no-interleave",
    "vset-converge",
    "vset-truth-equal",
    "vset-ann-no-removed",
    "sessions",
    "durability",
    "moves",
    "errors",
)
NEVER = 2**62  # "completed" time of an operation whose outcome is unknown
DETAILS_MAX = 5  # violations of one kind reported per key

Reads = dict[tuple[str, str], dict[str, Any]]  # (namespace, key) -> read result
States = dict[tuple[str, str], CRDT]  # (namespace, key) -> state
ReplicaView = tuple[str, Reads, States | None]


@dataclass(frozen=True, slots=True)
class Violation:
    checker: str  # one of CHECKERS
    kind: str  # what went wrong, e.g. "lost-add"
    detail: str  # human-readable, names the operations
    ops: list[int] = field(default_factory=list)  # history indices involved

    def line(self) -> str:
        return f"{self.checker}/{self.kind}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "kind": self.kind, "detail": self.detail, "ops": self.ops}


def done_ms(op: Op) -> int:
    """When the operation's effect was certainly in place (never, if unknown)."""
    if op.acked and op.complete_ms is not None:
        return op.complete_ms
    return NEVER


def strictly_before(a: Op, b: Op, slack_ms: int = 0) -> bool:
    """``a`` was acknowledged more than ``slack_ms`` before ``b`` was invoked."""
    return done_ms(a) + slack_ms < b.invoke_ms


def live_ops(ops: Iterable[Op]) -> list[Op]:
    """Operations that may have taken effect."""
    return [o for o in ops if o.may_have_happened()]


def replica_views(final: Final) -> list[ReplicaView]:
    """Per replica: its final reads and (simulator) its final states."""
    out: list[ReplicaView] = []
    for i, rid in enumerate(sorted(final.reads)):
        if final.replica_states is not None:
            states = final.replica_states.get(rid)
        else:
            states = final.states if i == 0 else None
        out.append((rid, final.reads[rid], states))
    return out


def first_failing(
    final: Final, check: Callable[[Reads, States | None], list[Violation]]
) -> list[Violation]:
    """Run ``check(reads, states)`` at each replica; report the first that fails."""
    for rid, reads, states in replica_views(final):
        found = check(reads, states)
        if found:
            return [replace(v, detail=f"at {rid}: {v.detail}") for v in found]
    return []


def jkey(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

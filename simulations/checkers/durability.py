"""Durability (fsync): a crash never loses what was applied and acknowledged."""

from __future__ import annotations

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.replica.keyspace import Replica
from simulations.checkers.common import DETAILS_MAX, Violation
from simulations.history import Final, History, state_key

__all__ = ["check_final_durability", "check_restart"]


def check_restart(
    rid: str,
    at_ms: int,
    before: CausalContext,
    before_states: dict[tuple[str, str], CRDT],
    replica: Replica,
    history: History,
) -> list[Violation]:
    """After a crash in fsync mode the replica holds every dot it had written
    (``before``: the applied context of its last synced write) and every
    acknowledged operation it executed."""
    out: list[Violation] = []
    after = replica.applied
    lost = [d for d in _dots(before) if d not in after]
    if lost:
        out.append(
            Violation(
                "durability",
                "applied-lost",
                f"{rid} restarted at {at_ms} without {len(lost)} dot(s) it had applied and "
                f"acknowledged (e.g. {lost[:3]})",
            )
        )
    for o in history.ops:
        m = o.meta
        if (
            o.replica != rid
            or m is None
            or m.delta is None
            or not m.acked  # not answered yet: a crash may take it back
            or m.incarnation != replica.incarnation
            or m.possibly_lost
        ):
            continue
        key = state_key(o.namespace, o.key)
        old = before_states.get(key)
        if old is None or old.joined(m.delta) != old:
            continue  # the effect was already gone before the crash: not the crash's doing
        state = replica.states.get(key)
        bad = state is None or state.joined(m.delta) != state  # nothing is ever collected
        if bad:
            out.append(
                Violation(
                    "durability",
                    "acked-write-lost",
                    f"{rid} restarted at {at_ms} without the effect of {o.describe()}",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out


def _dots(ctx: CausalContext) -> list[Dot]:
    return sorted(ctx.dots())


def check_final_durability(history: History, final: Final) -> list[Violation]:
    """Every acknowledged write's dot is applied at every replica at the end
    (unless a lost data directory may have taken it)."""
    if final.applied is None:
        return []
    out: list[Violation] = []
    for o in history.ops:
        m = o.meta
        if o.status != "ok" or m is None or m.dot is None or m.possibly_lost:
            continue
        missing = [rid for rid, ctx in sorted(final.applied.items()) if m.dot not in ctx]
        if missing:
            out.append(
                Violation(
                    "durability",
                    "acked-write-missing",
                    f"{o.describe()} (dot {m.dot}) is not applied at {missing} at the end",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out

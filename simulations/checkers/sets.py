"""Sets (OR-Set): no lost acknowledged add, no phantom, no resurrected dot; set-full statistics."""

from __future__ import annotations

from functools import partial
from typing import Any

from crdtkv.crdts.causal import Dot
from crdtkv.crdts.or_set import ORSet
from simulations.checkers.common import (
    DETAILS_MAX,
    Reads,
    States,
    Violation,
    done_ms,
    first_failing,
    live_ops,
    strictly_before,
)
from simulations.history import Final, History, Op, state_key

__all__ = ["adds_member", "check_sets", "removes_member", "set_members", "set_stats"]


def set_members(result: dict[str, Any] | None) -> set[str]:
    if result is None or result.get("not_found"):
        return set()
    return set(result.get("members", []))


def removes_member(op: Op, member: str) -> bool:
    return op.kind == "sets.delete" or (
        op.kind == "sets.remove" and member in op.args.get("members", [])
    )


def adds_member(op: Op, member: str) -> bool:
    return op.kind == "sets.add" and member in op.args.get("members", [])


def check_sets(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for key in history.keys.get("sets", []):
        out += first_failing(final, partial(_set_at, key, history.on_key("sets", key)))
    return out


def _set_at(key: str, ops: list[Op], reads: Reads, states: States | None) -> list[Violation]:
    found = _sets_black_box(key, ops, set_members(reads.get(("sets", key))))
    if states is not None:
        state = states.get(state_key("sets", key))
        found += _sets_white_box(key, ops, state if isinstance(state, ORSet) else None)
    return found


def _sets_black_box(key: str, ops: list[Op], final_members: set[str]) -> list[Violation]:
    """Lost: an acknowledged add of e, e absent at the end, and every remove of
    e (and every delete of the set) that may have happened was acknowledged
    before the add was invoked, so none could have observed it.
    Phantom: e present at the end but no add of e may have happened."""
    out: list[Violation] = []
    live = live_ops(ops)
    universe = {m for o in ops for m in o.args.get("members", [])} | final_members
    for e in sorted(universe):
        adds = [o for o in live if adds_member(o, e)]
        if e in final_members:
            if not adds:
                out.append(Violation("sets", "phantom", f"sets/{key} holds {e!r}; nobody added it"))
            continue
        removers = [o for o in live if removes_member(o, e)]
        for a in adds:
            if a.acked and all(strictly_before(r, a) for r in removers):
                out.append(
                    Violation(
                        "sets",
                        "lost-add",
                        f"sets/{key}: {e!r} is absent at the end, but {a.describe()} was "
                        f"acknowledged and every remove of it finished before it began "
                        f"({len(removers)} remove(s))",
                        [a.idx],
                    )
                )
                break
    return out


def _sets_white_box(key: str, ops: list[Op], state: ORSet | None) -> list[Violation]:
    """Per element dot.  An add mints one dot per member; a remove observes
    (covers) the dots it removed, a delete the key's whole causal context, an
    add the dots it replaced.  Lost: a dot of an acknowledged add no executed
    operation covers, yet its member is absent.  Resurrected: a live dot that
    an acknowledged, durable operation covered.  Phantom: a live dot no add
    minted."""
    executed = [o for o in ops if o.meta is not None and isinstance(o.meta.delta, ORSet)]
    if any(o.meta is not None and o.meta.possibly_lost for o in ops):
        return []  # an operation may have been undone by a lost data directory
    minted: dict[Dot, tuple[str, Op]] = {}
    covered_any: set[Dot] = set()
    covered_acked: dict[Dot, Op] = {}
    for o in executed:
        assert o.meta is not None and isinstance(o.meta.delta, ORSet)
        delta = o.meta.delta
        new = {d for dots in delta.entries.values() for d in dots}
        for m, dots in delta.entries.items():
            for d in dots:
                minted[d] = (m, o)
        covers = set(delta.ctx.dots()) - new
        covered_any |= covers
        if o.acked:
            for d in covers:
                covered_acked.setdefault(d, o)
    live: dict[str, tuple[Dot, ...]] = dict(state.entries) if state is not None else {}
    out: list[Violation] = []
    for d, (m, o) in minted.items():
        if o.acked and d not in covered_any and not live.get(m):
            out.append(
                Violation(
                    "sets",
                    "lost-add",
                    f"sets/{key}: {m!r} is absent at the end, but the dot {d} of "
                    f"{o.describe()} was covered by no remove, delete or re-add",
                    [o.idx],
                )
            )
    for m, dots in sorted(live.items()):
        for d in sorted(dots):
            if d not in minted:
                out.append(
                    Violation("sets", "phantom", f"sets/{key}: {m!r} has dot {d} no add minted")
                )
            elif d in covered_acked:
                r = covered_acked[d]
                out.append(
                    Violation(
                        "sets",
                        "resurrected",
                        f"sets/{key}: {m!r} is present with dot {d}, which {r.describe()} "
                        f"had removed",
                        [r.idx, minted[d][1].idx],
                    )
                )
    return out[: DETAILS_MAX * 3]


def set_stats(history: History) -> dict[str, int]:
    """Jepsen set-full style accounting (statistics, not violations: without a
    session, eventual consistency allows a read to miss a recent add).

    For every acknowledged add of e: *visible* once some read invoked after
    the add was acknowledged shows e; a *stale read* is such a read that does
    not, though no remove of e (or delete of the set) was invoked before it
    finished; *never read* if no later read showed e (nor could: the reads of
    it were all stale, or there were none)."""
    visible = stale = never = 0
    for key in history.keys.get("sets", []):
        ops = history.on_key("sets", key)
        reads = [o for o in ops if o.status == "ok" and o.kind in ("sets.get", "sets.contains")]
        removers = [o for o in live_ops(ops) if o.kind in ("sets.remove", "sets.delete")]
        for a in ops:
            if a.kind != "sets.add" or not a.acked or a.complete_ms is None:
                continue
            for e in a.args["members"]:
                seen = False
                for r in reads:
                    if r.invoke_ms <= a.complete_ms or (
                        r.kind == "sets.contains" and r.args["member"] != e
                    ):
                        continue
                    assert r.result is not None
                    shown = (
                        bool(r.result.get("present"))
                        if r.kind == "sets.contains"
                        else e in set_members(r.result)
                    )
                    if shown:
                        seen = True
                        break
                    if not any(removes_member(x, e) and x.invoke_ms < done_ms(r) for x in removers):
                        stale += 1
                visible += seen
                never += not seen
    return {"set_adds_visible": visible, "set_stale_reads": stale, "set_adds_never_read": never}

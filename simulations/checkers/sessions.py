"""Sessions: read-your-writes, monotonic reads and writes, writes-follow-reads, per client."""

from __future__ import annotations

from crdtkv.crdts.base import CRDT
from simulations.checkers.common import (
    DETAILS_MAX,
    Violation,
    done_ms,
    jkey,
    live_ops,
    strictly_before,
)
from simulations.checkers.registers import may_be_removed, register_writes
from simulations.checkers.sets import adds_member, removes_member, set_members
from simulations.history import Final, History, Op, state_key

__all__ = ["check_sessions"]


def check_sessions(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    writers = _register_writers(history)
    for cid, ops in sorted(history.by_client().items()):
        out += _sessions_white_box(cid, ops, history)
        out += _sessions_black_box(cid, ops, history, writers)
    return out


def _register_writers(history: History) -> dict[tuple[str, str], Op]:
    return {(o.key, jkey(o.args["value"])): o for o in history.ops if o.kind == "registers.set"}


def _sessions_white_box(cid: int, ops: list[Op], history: History) -> list[Violation]:
    """Read-your-writes and monotonic reads, as lattice order: the state a
    read sees must include (join-dominate) every state the session read
    before and the delta of every write it made before."""
    seen: dict[tuple[str, str], CRDT] = {}
    out: list[Violation] = []
    for o in ops:
        m = o.meta
        if o.status != "ok" or m is None:
            continue
        key = state_key(o.namespace, o.key)  # both views of a string key: one state
        before = seen.get(key)
        if o.is_read and before is not None:
            problem = _not_dominating(m.state, before)
            if problem:
                out.append(
                    Violation(
                        "sessions",
                        "stale-read",
                        f"session {cid}: {o.describe()} saw a state older than the session "
                        f"had seen or written: {problem}",
                        [o.idx],
                    )
                )
                if len(out) >= DETAILS_MAX:
                    return out
        got = m.state if o.is_read else m.delta
        if got is not None:
            seen[key] = got.copy() if before is None else before.joined(got)
    return out


def _not_dominating(state: CRDT | None, before: CRDT) -> str | None:
    # Nothing is ever collected: a deleted or expired key keeps its (empty) state.
    if state is None:
        return f"the replica has no state for the key; the session had seen {before!r}"
    joined = state.joined(before)
    if joined == state:
        return None
    return f"read {state!r}; joined with what the session had seen: {joined!r}"


def _sessions_black_box(
    cid: int, ops: list[Op], history: History, writers: dict[tuple[str, str], Op]
) -> list[Violation]:
    out: list[Violation] = []
    reg_last: dict[str, Op] = {}  # key -> the write the session last wrote or read
    reg_seen: dict[str, set[int]] = {}  # key -> writes the session read or made
    reg_gone: dict[str, set[int]] = {}  # key -> writes the session saw, then deleted
    mono: dict[str, int] = {}  # mono counter -> largest value the session saw
    evidence: dict[tuple[str, str], tuple[bool, Op]] = {}  # (set, member) -> (present?, op)
    # Only the names used through one view: a register read of a key that counters
    # incremented (or another type took over) names no write.
    registers = set(history.keys.get("registers", []))
    sets = set(history.keys.get("sets", []))
    for o in ops:
        if o.status != "ok":
            continue
        if o.namespace == "registers" and o.key in registers:
            seen = reg_seen.setdefault(o.key, set())
            gone = reg_gone.setdefault(o.key, set())
            v = _session_register(o, reg_last, seen, gone, writers, history)
        elif o.namespace == "counters" and o.key.startswith("mono"):
            v = _session_counter(o, mono)
        elif o.namespace == "sets" and o.key in sets:
            v = _session_set(o, evidence, history)
        else:
            v = None
        if v is not None:
            out.append(Violation("sessions", v[0], f"session {cid}: {v[1]}", [o.idx]))
            if len(out) >= DETAILS_MAX:
                break
    return out


def _session_register(
    o: Op,
    last: dict[str, Op],
    seen: set[int],
    gone: set[int],
    writers: dict[tuple[str, str], Op],
    history: History,
) -> tuple[str, str] | None:
    """Read-your-writes and monotonic reads of one register key.  ``seen``: the
    writes the session read or made; ``gone``: those it saw before a delete of
    its own, which observed them (its replica had the session's token), so
    they never show again."""
    slack = history.skew_slack_ms
    if o.is_write:
        if o.kind == "registers.delete":
            gone |= seen
        else:
            seen.add(o.idx)
        last[o.key] = o
        return None
    prev = last.get(o.key)
    writes = live_ops(register_writes(history.on_key("registers", o.key)))
    if o.result is None or o.result.get("not_found"):
        if prev is None or prev.kind == "registers.delete" or "ttl_ms" in prev.args:
            return None
        others = [
            w
            for w in writes
            # a TTL that the session's write did not observe expires it too
            if "ttl_ms" in w.args
            or (w.kind == "registers.delete" and not strictly_before(w, prev, slack))
        ]
        if others:
            return None
        return "read-your-writes", f"{o.describe()} found nothing after {prev.describe()}"
    w = writers.get((o.key, jkey(o.result.get("value"))))
    if w is None:
        return "phantom-read", f"{o.describe()} read a value nobody wrote"
    if w.idx in gone:
        return "read-your-writes", f"{o.describe()} read {w.describe()}, which the session deleted"
    seen.add(w.idx)
    if (
        prev is not None
        and prev.kind == "registers.set"
        and w is not prev
        and strictly_before(w, prev, slack)
        and not may_be_removed(prev, writes)
    ):
        return (
            "monotonic-reads",
            f"{o.describe()} read {w.describe()}, older than {prev.describe()}",
        )
    last[o.key] = w
    return None


def _session_counter(o: Op, mono: dict[str, int]) -> tuple[str, str] | None:
    if o.result is None:
        return None
    value = 0 if o.result.get("not_found") else int(o.result["value"])
    prev = mono.get(o.key, 0)
    mono[o.key] = max(prev, value)
    if o.kind == "counters.get" and value < prev:
        return "monotonic-reads", f"{o.describe()} read {value}; the session had seen {prev}"
    return None


def _session_set(
    o: Op, evidence: dict[tuple[str, str], tuple[bool, Op]], history: History
) -> tuple[str, str] | None:
    if o.kind == "sets.add":
        for e in o.args["members"]:
            evidence[(o.key, e)] = (True, o)
        return None
    if o.kind in ("sets.remove", "sets.delete"):
        gone = o.args.get("members") or [e for (k, e) in evidence if k == o.key]
        for e in gone:
            evidence[(o.key, e)] = (False, o)
        return None
    assert o.result is not None
    if o.kind == "sets.get":
        shown = set_members(o.result)
        asked = {e for (k, e) in evidence if k == o.key} | shown
    else:
        member = o.args["member"]
        shown = {member} if o.result.get("present") else set()
        asked = {member}
    problem = None
    for e in sorted(asked):
        prior = evidence.get((o.key, e))
        present = e in shown
        if prior is not None and problem is None:
            problem = _set_evidence_broken(o, e, present, prior, history)
        evidence[(o.key, e)] = (present, o)
    return problem


def _set_evidence_broken(
    read: Op, e: str, present: bool, prior: tuple[bool, Op], history: History
) -> tuple[str, str] | None:
    was_present, p = prior
    ops = live_ops(history.on_key("sets", read.key))
    if was_present and not present:
        removers = [
            r
            for r in ops
            if removes_member(r, e)
            and r.invoke_ms < done_ms(read)
            and not (p.kind == "sets.add" and strictly_before(r, p))
        ]
        if removers:
            return None
        what = "read-your-writes" if p.kind == "sets.add" else "monotonic-reads"
        return what, f"{read.describe()} misses {e!r}, which {p.describe()} had shown"
    if not was_present and present and p.kind in ("sets.remove", "sets.delete"):
        # Any add but the session's own acknowledged ones before the remove
        # (which the remove observed: its replica dominated the token).
        adders = [
            a
            for a in ops
            if adds_member(a, e)
            and a.invoke_ms < done_ms(read)
            and not (a.client == read.client and a.acked and a.idx < p.idx)
        ]
        if adders:
            return None
        return "read-your-writes", f"{read.describe()} shows {e!r}, which {p.describe()} removed"
    return None

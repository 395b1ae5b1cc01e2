"""The checkers: what must hold of every run, each reporting violations with details.

Each checker has a black-box part, which reads only invocations, responses
and the final reads (so it also runs against real processes, see
``simulations.cluster``), and, in the simulator, a white-box part that also
reads ``Meta`` (the dot and delta an operation produced, the state a read
saw).  ``docs/simulation.md`` states every rule precisely; in short:

- ``convergence``: after healing, every replica holds the same state.
- ``sets``: an acknowledged add is never lost unless a remove (or a delete of
  the set) could have observed it; no member appears that nobody added;
  a dot an acknowledged remove observed never comes back.
- ``counters``: without resets, the final value is the sum of acknowledged
  increments plus a subset of the in-doubt ones; with resets, exactly the
  increments no reset observed survive.
- ``registers``: the final value is the write with the largest HLC timestamp;
  a replica's register never goes back to an older write (no deleted value
  returns without a later write).
- ``hll``: counts are within 3 standard errors (plus 2) of the number of
  distinct items, merges are unions, and (white-box) registers are exactly
  those of the items added in the surviving epoch.
- ``sessions``: read-your-writes, monotonic reads, monotonic writes and
  writes-follow-reads for every session.
- ``durability`` (fsync only): a crash never loses what was acknowledged.
- ``errors``: no operation raises anything but the contract's errors (the
  API would answer 500), and no replica core raises during replication.

Timing rules are sound under concurrency: operation A is *strictly before*
B only if A was acknowledged before B was invoked; an operation whose outcome
is unknown may take effect at any time after its invocation.  Register
reasoning from real time allows ``History.skew_slack_ms`` for clock skew.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.crdts.hll import HLL, M, register_of
from crdtkv.crdts.lww_register import LWWRegister
from crdtkv.crdts.or_set import ORSet
from crdtkv.crdts.pn_counter import PNCounter
from crdtkv.replica.keyspace import Replica
from simulations.history import READS, WRITES, Final, History, Op

__all__ = [
    "CHECKERS",
    "READS",
    "WRITES",
    "Violation",
    "check_all",
    "check_restart",
    "no_convergence",
]

CHECKERS = (
    "convergence",
    "sets",
    "counters",
    "registers",
    "hll",
    "sessions",
    "durability",
    "errors",
)
NEVER = 2**62  # "completed" time of an operation whose outcome is unknown
HLL_SIGMA = 1.04 / math.sqrt(M)  # relative standard error of p=14 HyperLogLog: 0.81%
DETAILS_MAX = 5  # violations of one kind reported per key


@dataclass
class Violation:
    checker: str  # one of CHECKERS
    kind: str  # what went wrong, e.g. "lost-add"
    detail: str  # human-readable, names the operations
    ops: list[int] = field(default_factory=list)  # history indices involved

    def line(self) -> str:
        return f"{self.checker}/{self.kind}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "kind": self.kind, "detail": self.detail, "ops": self.ops}


def check_all(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    out += check_final_reads_agree(history, final)
    out += check_applied_has_effect(history, final)
    out += check_sets(history, final)
    out += check_counters(history, final)
    out += check_registers(history, final)
    out += check_hlls(history, final)
    out += check_sessions(history, final)
    if history.durability == "fsync":
        out += check_final_durability(history, final)
    return out


# -- helpers ----------------------------------------------------------------------------------
def _done(op: Op) -> int:
    """When the operation's effect was certainly in place (never, if unknown)."""
    if op.acked and op.complete_ms is not None:
        return op.complete_ms
    return NEVER


def strictly_before(a: Op, b: Op, slack_ms: int = 0) -> bool:
    """``a`` was acknowledged more than ``slack_ms`` before ``b`` was invoked."""
    return _done(a) + slack_ms < b.invoke_ms


def _live(ops: Iterable[Op]) -> list[Op]:
    """Operations that may have taken effect."""
    return [o for o in ops if o.may_have_happened()]


Reads = dict[tuple[str, str], dict[str, Any]]  # (namespace, key) -> read result
States = dict[tuple[str, str], CRDT]  # (namespace, key) -> state
ReplicaView = tuple[str, Reads, States | None]


def _replicas(final: Final) -> list[ReplicaView]:
    """Per replica: its final reads and (simulator) its final states."""
    out: list[ReplicaView] = []
    for i, rid in enumerate(sorted(final.reads)):
        if final.replica_states is not None:
            states = final.replica_states.get(rid)
        else:
            states = final.states if i == 0 else None
        out.append((rid, final.reads[rid], states))
    return out


def _first_failing(
    final: Final, check: Callable[[Reads, States | None], list[Violation]]
) -> list[Violation]:
    """Run ``check(reads, states)`` at each replica; report the first that fails."""
    for rid, reads, states in _replicas(final):
        found = check(reads, states)
        if found:
            for v in found:
                v.detail = f"at {rid}: {v.detail}"
            return found
    return []


def _jkey(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- convergence ------------------------------------------------------------------------------
def no_convergence(cluster: Any, liveness_ms: int) -> Violation:
    """The liveness phase ended without convergence: say where replicas differ."""
    states = {rid: n.encoded_state() for rid, n in cluster.nodes.items()}
    keys = sorted({k for s in states.values() for k in s})
    differing = [k for k in keys if len({s.get(k) for s in states.values()}) > 1]
    lag = {
        f"{rid}>{p}": n.rep.lag_ops(p)
        for rid, n in cluster.nodes.items()
        for p in n.peer_ids
        if n.rep.lag_ops(p)
    }
    applied = {rid: dict(n.replica.applied.vv) for rid, n in cluster.nodes.items()}
    return Violation(
        "convergence",
        "no-convergence",
        f"replicas did not converge within {liveness_ms} ms after healing: "
        f"{len(differing)} key(s) differ (e.g. {differing[:DETAILS_MAX]}); "
        f"unshipped log entries per link {lag}; applied vectors {applied}",
    )


def check_final_reads_agree(history: History, final: Final) -> list[Violation]:
    """Black-box convergence: every replica answers every key the same.

    Registers that were ever written with a TTL are left out: replicas read
    expiry on their own (skewed) clocks, so one may see a value as expired a
    moment before another.
    """
    ttl_keys = {o.key for o in history.ops if o.kind == "registers.set" and "ttl_ms" in o.args}
    out: list[Violation] = []
    rids = sorted(final.reads)
    for ns, keys in history.keys.items():
        for key in keys:
            if ns == "registers" and key in ttl_keys:
                continue
            answers = {rid: _jkey(final.reads[rid].get((ns, key))) for rid in rids}
            if len(set(answers.values())) > 1:
                out.append(
                    Violation(
                        "convergence",
                        "reads-differ",
                        f"{ns}/{key} reads differently at the replicas after healing: {answers}",
                    )
                )
    return out


def check_applied_has_effect(history: History, final: Final) -> list[Violation]:
    """White-box: a replica whose applied context holds an operation's dot
    holds its effect (its state of the key join-dominates the operation's
    delta).  Otherwise nothing will ever ship the effect again: replication
    skips dots the receiver has applied."""
    if final.applied is None or final.replica_states is None:
        return []
    out: list[Violation] = []
    for o in history.ops:
        m = o.meta
        if m is None or m.dot is None or m.delta is None or m.possibly_lost:
            continue
        key = (o.namespace, o.key)
        for rid, applied in sorted(final.applied.items()):
            if m.dot not in applied:
                continue
            state = final.replica_states[rid].get(key)
            if state is None:
                if isinstance(m.delta, LWWRegister):
                    continue  # registers are dropped once a delete or expiry is stable
                ok = False
            else:
                ok = state.joined(m.delta) == state
            if not ok:
                out.append(
                    Violation(
                        "convergence",
                        "applied-without-effect",
                        f"{rid} counts {o.describe()} (dot {m.dot}) as applied but its state "
                        f"of {key[0]}/{key[1]} lacks the operation's effect",
                        [o.idx],
                    )
                )
                if len(out) >= DETAILS_MAX:
                    return out
    return out


# -- sets ----------------------------------------------------------------------------------------
def _set_members(result: dict[str, Any] | None) -> set[str]:
    if result is None or result.get("not_found"):
        return set()
    return set(result.get("members", []))


def _removes(op: Op, member: str) -> bool:
    return op.kind == "sets.delete" or (
        op.kind == "sets.remove" and member in op.args.get("members", [])
    )


def _adds(op: Op, member: str) -> bool:
    return op.kind == "sets.add" and member in op.args.get("members", [])


def check_sets(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for key in history.keys.get("sets", []):
        out += _first_failing(final, partial(_set_at, key, history.on_key("sets", key)))
    return out


def _set_at(key: str, ops: list[Op], reads: Reads, states: States | None) -> list[Violation]:
    found = _sets_black_box(key, ops, _set_members(reads.get(("sets", key))))
    if states is not None:
        state = states.get(("sets", key))
        found += _sets_white_box(key, ops, state if isinstance(state, ORSet) else None)
    return found


def _sets_black_box(key: str, ops: list[Op], final_members: set[str]) -> list[Violation]:
    """Lost: an acknowledged add of e, e absent at the end, and every remove of
    e (and every delete of the set) that may have happened was acknowledged
    before the add was invoked, so none could have observed it.
    Phantom: e present at the end but no add of e may have happened."""
    out: list[Violation] = []
    live = _live(ops)
    universe = {m for o in ops for m in o.args.get("members", [])} | final_members
    for e in sorted(universe):
        adds = [o for o in live if _adds(o, e)]
        if e in final_members:
            if not adds:
                out.append(Violation("sets", "phantom", f"sets/{key} holds {e!r}; nobody added it"))
            continue
        removers = [o for o in live if _removes(o, e)]
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
        removers = [o for o in _live(ops) if o.kind in ("sets.remove", "sets.delete")]
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
                        else e in _set_members(r.result)
                    )
                    if shown:
                        seen = True
                        break
                    if not any(_removes(x, e) and x.invoke_ms < _done(r) for x in removers):
                        stale += 1
                visible += seen
                never += not seen
    return {"set_adds_visible": visible, "set_stale_reads": stale, "set_adds_never_read": never}


# -- counters ----------------------------------------------------------------------------------
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
        out += _first_failing(final, partial(_counter_at, key, history.on_key("counters", key)))
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
    incrs = [o for o in _live(ops) if o.kind == "counters.incr"]
    resets = [o for o in _live(ops) if o.kind == "counters.delete"]
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
    last_reset = max(_done(r) for r in resets)
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
    """Exactly the increments no reset observed survive.  An increment of
    actor A that took A's P (or N) to p is observed by a reset whose floor
    FP (FN) for A is >= p."""
    if any(o.meta is not None and o.meta.possibly_lost for o in ops):
        return []
    floors: dict[str, list[int]] = {}
    incrs: list[tuple[Op, str, int, int]] = []  # op, actor, component after, delta
    for o in ops:
        m = o.meta
        if m is None or not isinstance(m.delta, PNCounter):
            continue
        if o.kind == "counters.delete":
            for actor, (_, _, fp, fn) in m.delta.entries.items():
                f = floors.setdefault(actor, [0, 0])
                f[0], f[1] = max(f[0], fp), max(f[1], fn)
        else:
            ((actor, (p, n, _, _)),) = m.delta.entries.items()
            by = o.args["delta"]
            incrs.append((o, actor, p if by > 0 else n, by))
    expected = 0
    for _, actor, after, by in incrs:
        fp, fn = floors.get(actor, [0, 0])
        if after > (fp if by > 0 else fn):
            expected += by
    if expected != value:
        return [
            Violation(
                "counters",
                "wrong-value",
                f"counters/{key} = {value}; the {len(incrs)} executed increments that no "
                f"reset observed sum to {expected}",
            )
        ]
    return []


# -- registers ---------------------------------------------------------------------------------
def _reg_writes(ops: list[Op]) -> list[Op]:
    return [o for o in ops if o.kind in ("registers.set", "registers.delete")]


def check_registers(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    for key in history.keys.get("registers", []):
        ops = history.on_key("registers", key)
        out += _first_failing(final, partial(_register_at, key, ops, history.skew_slack_ms))
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
    writes = _live(_reg_writes(ops))
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
    v = _jkey(result.get("value"))
    if any(w.kind == "registers.set" and _jkey(w.args["value"]) == v for w in candidates):
        return []
    writer = [w for w in writes if w.kind == "registers.set" and _jkey(w.args["value"]) == v]
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
    writes = [o for o in _reg_writes(ops) if o.meta and isinstance(o.meta.delta, LWWRegister)]
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


def _registers_never_go_back(key: str, ops: list[Op]) -> list[Violation]:
    """At one replica (one incarnation), the timestamp of the register a read
    sees never decreases: a value replaced (or deleted) does not come back."""
    out: list[Violation] = []
    high: dict[tuple[str, str], tuple[Timestamp, Op]] = {}
    executed = sorted((o for o in ops if o.meta is not None), key=lambda o: (o.meta.exec_ms, o.idx))  # type: ignore[union-attr]
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


# -- hll -----------------------------------------------------------------------------------------
def _hll_tolerance(n: int) -> float:
    return 3 * HLL_SIGMA * n + 2


def _items(ops: Iterable[Op]) -> set[str]:
    return {i for o in ops if o.kind == "hlls.add" for i in o.args["items"]}


def check_hlls(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    by_key = {k: history.on_key("hlls", k) for k in history.keys.get("hlls", [])}
    for key, ops in by_key.items():
        out += _first_failing(final, partial(_hll_at, key, ops, by_key))
    return out


def _hll_at(
    key: str, ops: list[Op], by_key: dict[str, list[Op]], reads: Reads, states: States | None
) -> list[Violation]:
    result = reads.get(("hlls", key))
    count = 0 if result is None or result.get("not_found") else int(result["count"])
    found = _hll_black_box(key, ops, by_key, count)
    if states is not None:
        state = states.get(("hlls", key))
        found += _hll_white_box(key, ops, by_key, state if isinstance(state, HLL) else None)
    return found


def _hll_black_box(
    key: str, ops: list[Op], by_key: dict[str, list[Op]], count: int
) -> list[Violation]:
    """count within tolerance of [items surely added, items perhaps added];
    a merge destination may also hold its sources' items; after a delete
    only the upper bound holds."""
    live = _live(ops)
    merges = [o for o in live if o.kind == "hlls.merge"]
    deleted = any(o.kind == "hlls.delete" for o in live)
    hi_items = _items(live)
    for m in merges:
        for src in m.args["sources"]:
            hi_items |= _items(_live(by_key.get(src, [])))
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


# -- sessions ------------------------------------------------------------------------------------
def check_sessions(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    writers = _register_writers(history)
    for cid, ops in sorted(history.by_client().items()):
        out += _sessions_white_box(cid, ops, history)
        out += _sessions_black_box(cid, ops, history, writers)
    return out


def _register_writers(history: History) -> dict[tuple[str, str], Op]:
    return {(o.key, _jkey(o.args["value"])): o for o in history.ops if o.kind == "registers.set"}


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
        key = (o.namespace, o.key)
        before = seen.get(key)
        if o.is_read and before is not None:
            problem = _not_dominating(m.state, before, key, history)
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


def _not_dominating(
    state: CRDT | None, before: CRDT, key: tuple[str, str], history: History
) -> str | None:
    if state is None:
        if isinstance(before, LWWRegister) and _register_may_be_collected(before, key, history):
            return None
        return f"the replica has no state for the key; the session had seen {before!r}"
    joined = state.joined(before)
    if joined == state:
        return None
    return f"read {state!r}; joined with what the session had seen: {joined!r}"


def _register_may_be_collected(before: LWWRegister, key: tuple[str, str], history: History) -> bool:
    """A register is dropped once a delete or expiry of it is stable."""
    for o in history.on_key(*key):
        m = o.meta
        if m is not None and isinstance(m.delta, LWWRegister) and m.delta.ts >= before.ts:
            if m.delta.tombstone or m.delta.expires_ms is not None:
                return True
    return before.tombstone or before.expires_ms is not None


def _sessions_black_box(
    cid: int, ops: list[Op], history: History, writers: dict[tuple[str, str], Op]
) -> list[Violation]:
    out: list[Violation] = []
    slack = history.skew_slack_ms
    reg_last: dict[str, Op] = {}  # key -> the write the session last wrote or read
    mono: dict[str, int] = {}  # mono counter -> largest value the session saw
    evidence: dict[tuple[str, str], tuple[bool, Op]] = {}  # (set, member) -> (present?, op)
    for o in ops:
        if o.status != "ok":
            continue
        if o.namespace == "registers":
            v = _session_register(o, reg_last, writers, history, slack)
        elif o.namespace == "counters" and o.key.startswith("mono"):
            v = _session_counter(o, mono)
        elif o.namespace == "sets":
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
    writers: dict[tuple[str, str], Op],
    history: History,
    slack: int,
) -> tuple[str, str] | None:
    if o.is_write:
        last[o.key] = o
        return None
    prev = last.get(o.key)
    if o.result is None or o.result.get("not_found"):
        if prev is None or prev.kind == "registers.delete" or "ttl_ms" in prev.args:
            return None
        others = [
            w
            for w in _live(_reg_writes(history.on_key("registers", o.key)))
            if (w.kind == "registers.delete" or "ttl_ms" in w.args)
            and not strictly_before(w, prev, slack)
        ]
        if others:
            return None
        return "read-your-writes", f"{o.describe()} found nothing after {prev.describe()}"
    w = writers.get((o.key, _jkey(o.result.get("value"))))
    if w is None:
        return "phantom-read", f"{o.describe()} read a value nobody wrote"
    if prev is not None and w is not prev and strictly_before(w, prev, slack):
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
        shown = _set_members(o.result)
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
    ops = _live(history.on_key("sets", read.key))
    if was_present and not present:
        removers = [
            r
            for r in ops
            if _removes(r, e)
            and r.invoke_ms < _done(read)
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
            if _adds(a, e)
            and a.invoke_ms < _done(read)
            and not (a.client == read.client and a.acked and a.idx < p.idx)
        ]
        if adders:
            return None
        return "read-your-writes", f"{read.describe()} shows {e!r}, which {p.describe()} removed"
    return None


# -- durability ----------------------------------------------------------------------------------
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
        key = (o.namespace, o.key)
        old = before_states.get(key)
        if old is None or old.joined(m.delta) != old:
            continue  # the effect was already gone before the crash: not the crash's doing
        state = replica.states.get(key)
        if state is None:
            bad = not isinstance(m.delta, LWWRegister)  # a register may have been collected
        else:
            bad = state.joined(m.delta) != state
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

"""Convergence: after healing every replica answers alike, and holds what it counts as applied."""

from __future__ import annotations

from typing import Any

from simulations.checkers.common import DETAILS_MAX, Violation, jkey
from simulations.history import Final, History

__all__ = ["check_applied_has_effect", "check_final_reads_agree", "no_convergence"]


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

    Names that were ever written with a TTL are left out: replicas read
    expiry on their own (skewed) clocks, so one may see a value as expired a
    moment before another.
    """
    ttl_keys = {o.key for o in history.ops if o.kind == "registers.set" and "ttl_ms" in o.args}
    out: list[Violation] = []
    rids = sorted(final.reads)
    read_keys = sorted({k for reads in final.reads.values() for k in reads})
    for ns, key in read_keys:
        if key not in ttl_keys:
            answers = {rid: jkey(final.reads[rid].get((ns, key))) for rid in rids}
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
        if m is None or m.possibly_lost:
            continue
        for group in m.groups:
            rids = [rid for rid, applied in sorted(final.applied.items()) if group.dot in applied]
            for rid in rids:
                states = final.replica_states[rid]
                for key, delta in group.deltas.items():
                    state = states.get(key)
                    if state is not None and state.joined(delta) == state:
                        continue
                    out.append(
                        Violation(
                            "convergence",
                            "applied-without-effect",
                            f"{rid} counts {o.describe()} (dot {group.dot}) as applied but "
                            f"its state of {key[0]}/{key[1]} lacks the operation's effect",
                            [o.idx],
                        )
                    )
                    if len(out) >= DETAILS_MAX:
                        return out
    return out

"""Typed keys: one visible type per name, the one written last; hidden types kept.

Replicas that are apart can create one name with different types (a
register at one, a set at another).  Every type's state is kept, and the
name reads as the live type whose latest write has the highest HLC
timestamp (``Replica.visible_type``, from the key metadata's stamps).  After
quiescence (white-box, from the history's write metadata):

- *type-differs*: every replica reports the same visible type of each name;
- *not-highest-write*: that type is, of the types live under the name, the
  one with the highest recorded write stamp (timestamps are unique; ties
  cannot occur, the type name breaks them as the replica does);
- *hidden-lost* / *hidden-phantom*: a register or set type of a conflict
  name is live exactly when some entry of its executed writes survives (no
  executed operation's delta covers its dot): a hidden type is kept, not
  lost, and nothing comes back;
- *delete-kept-type*: a DEL clears every type live under the name at its
  replica, not only the visible one;
- *conflicts-differ*: the replicas count the same conflicting names
  (``Replica.conflicts``), exactly those with more than one live type.
"""

from __future__ import annotations

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.or_set import ORSet
from crdtkv.replica.keyspace import META, TYPES, is_live
from simulations.checkers.common import DETAILS_MAX, Violation
from simulations.checkers.numbers import surviving, uncertain
from simulations.history import Final, History, Op, state_key

__all__ = ["check_types"]


def check_types(history: History, final: Final) -> list[Violation]:
    if final.replica_states is None or not final.types:
        return []
    out: list[Violation] = []
    ttl_names = {o.key for o in history.ops if "ttl_ms" in o.args}
    names = sorted({o.key for o in history.ops} - ttl_names)
    conflict_names = set(history.keys.get("conflicts", []))
    rid0 = sorted(final.replica_states)[0]
    states = final.replica_states[rid0]
    for name in names:
        ops = history.on_name(name)
        out += _visible(name, ops, final, states)
        out += _deletes_clear_every_type(name, ops)
        if name in conflict_names and not uncertain(ops):
            out += _hidden_kept(name, ops, states)
    out += _conflicts_agree(final, states, ttl_names)
    return out[: 4 * DETAILS_MAX]


def _live(name: str, states: dict[tuple[str, str], CRDT]) -> list[str]:
    out = []
    for t in TYPES:
        s = states.get((t, name))
        if s is not None and is_live(s):
            out.append(t)
    return out


def _visible(
    name: str, ops: list[Op], final: Final, states: dict[tuple[str, str], CRDT]
) -> list[Violation]:
    seen = {rid: types.get(name) for rid, types in sorted(final.types.items())}
    if len(set(seen.values())) > 1:
        return [Violation("types", "type-differs", f"{name!r} reads as {seen} after healing")]
    live = _live(name, states)
    if len(live) < 2 or uncertain(ops):
        return []
    stamps: dict[str, tuple[Timestamp, Op]] = {}
    for o in ops:
        m = o.meta
        if m is None or m.stamp is None:
            continue
        t = state_key(o.namespace, o.key)[0]
        if t not in stamps or m.stamp > stamps[t][0]:
            stamps[t] = (m.stamp, o)
    if any(t not in stamps for t in live):
        return []  # a live type written by nobody: the other checkers report that
    expected = max(live, key=lambda t: (stamps[t][0], t))
    got = next(iter(seen.values()))
    if got == expected:
        return []
    top = stamps[expected][1]
    return [
        Violation(
            "types",
            "not-highest-write",
            f"{name!r} reads as {got} (live types {live}); the highest-timestamp write "
            f"of a live type is {top.describe()} ({expected}, ts {tuple(stamps[expected][0])})",
            [top.idx],
        )
    ]


def _deletes_clear_every_type(name: str, ops: list[Op]) -> list[Violation]:
    out: list[Violation] = []
    for o in ops:
        m = o.meta
        if m is None or not o.kind.endswith(".delete") or not m.live_before:
            continue
        cleared = {t for g in m.groups for (t, n) in g.deltas if n == name and t != META}
        kept = [t for t in m.live_before if t not in cleared]
        if kept:
            out.append(
                Violation(
                    "types",
                    "delete-kept-type",
                    f"{o.describe()} left the {kept} state(s) of {name!r} (live there: "
                    f"{m.live_before}) uncleared",
                    [o.idx],
                )
            )
    return out[:DETAILS_MAX]


def _set_survives(ops: list[Op], name: str) -> bool:
    key = ("set", name)
    deltas = [
        d
        for o in ops
        if o.meta is not None
        for g in o.meta.groups
        if isinstance(d := g.deltas.get(key), ORSet)
    ]
    dots = {dot for d in deltas for ds in d.entries.values() for dot in ds}
    held = {dot: [d for d in deltas if any(dot in ds for ds in d.entries.values())] for dot in dots}
    return any(not any(dot in d.ctx and d not in held[dot] for d in deltas) for dot in dots)


def _hidden_kept(name: str, ops: list[Op], states: dict[tuple[str, str], CRDT]) -> list[Violation]:
    out: list[Violation] = []
    expected = {"string": bool(surviving(ops, name)[0]), "set": _set_survives(ops, name)}
    for t, want in expected.items():
        s = states.get((t, name))
        got = s is not None and is_live(s)
        if got != want:
            kind = "hidden-lost" if want else "hidden-phantom"
            out.append(
                Violation(
                    "types",
                    kind,
                    f"the {t} state of {name!r} is {'live' if got else 'empty'}, but the "
                    f"executed writes leave it {'live' if want else 'empty'}",
                )
            )
    return out


def _conflicts_agree(
    final: Final, states: dict[tuple[str, str], CRDT], ttl_names: set[str]
) -> list[Violation]:
    counted = {rid: [n for n in c if n not in ttl_names] for rid, c in final.conflicts.items()}
    names = sorted({n for _, n in states} - ttl_names)
    expected = [n for n in names if len(_live(n, states)) > 1]
    wrong = {rid: c for rid, c in sorted(counted.items()) if c != expected}
    if not wrong:
        return []
    return [
        Violation(
            "types",
            "conflicts-differ",
            f"replicas count conflicting names {wrong}; the states hold {expected}",
        )
    ]

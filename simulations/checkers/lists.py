"""Lists: one sequence everywhere, no lost push, a replica's pushes in order, no interleaved runs.

A list (``crdtkv.crdts.rlist``) is an observed-remove map from *positions*
to elements: a push, LINSERT or LMOVE mints an element (the dot of its
position's last level), a pop, LREM, LTRIM or LMOVE removes the elements it
observed (its narrow delta lists their positions), a DEL the elements of its
causal context, and an LSET writes an element's value (last writer wins by
HLC timestamp; a pushed value loses to any LSET).  Every value the workload
writes is unique (``"c<client>-<n>"``), so a value names the operation that
wrote it; only an LMOVE copies a value, into a new element.

Black-box parts read only invocations, answers and the final reads (they also
run against real processes); white-box parts, in the simulator, rebuild every
element from the deltas the executed operations committed (``_model``), without
the list's join or index, so a broken join or index cannot hide from them.
The white-box checks of what a list holds skip a key on which some operation
may have been undone by a lost data directory (``numbers.uncertain``): its
history no longer determines what survives.  The order rules need only that
each dot names one element (an element a lost directory took is merely
absent), so they skip a key only when two operations minted one dot (a crash
took the first back before it left its replica).

Four checkers:

- ``list-converge``: after quiescence every replica answers LRANGE 0 -1
  alike (*reads-differ*, black-box).  White-box: every answer of a read
  (during the run and the final ones) is the elements of the state it read
  in position order (*wrong-order*), and at every replica after healing each
  live element was minted at its position by an executed operation
  (*phantom-element*) that no executed operation removed
  (*resurrected-element*), and holds the last writer's value of its push and
  the LSETs of it (*wrong-value*).
- ``list-pushes-kept``: black-box *lost-push*, per value: an acknowledged
  LPUSH, RPUSH, LINSERT or LMOVE created value ``v`` in the list, ``v`` is
  absent at the end, and no operation that may have happened and did not
  finish before the creation began could have taken ``v`` away: a pop that
  answered ``v`` (or whose answer is unknown), an LREM of ``v`` that removed
  something (or whose answer is unknown), an LMOVE from the list that answered
  ``v`` (or whose answer is unknown), and any LTRIM, LSET or DEL of the key
  (their answers do not say which elements they took).  An operation that
  finished before the creation began cannot have observed it, and a removal
  takes only what its replica had observed, so nothing else can take ``v``.
  White-box *lost-element*: an element minted by an executed operation that
  no executed operation's delta removed is absent at some replica.
- ``list-replica-order``: pushes at one end by one replica keep their order.
  Black-box *push-order*, per value: of two pushes at one end of the key sent
  to one replica (one incarnation, in the simulator), the first acknowledged
  before the second was invoked, every value of the first is before (RPUSH;
  after, for LPUSH) every value of the second, and the values of one push are
  in push order (the last value of an LPUSH first).  Only values present once
  and that no LMOVE into the key may have copied are compared (a moved value
  is a new element at another place); LSET and LINSERT never move an element,
  and an LSET value or an inserted one is no push.  White-box
  *element-order*, per element: of the elements one actor (a replica
  incarnation) pushed at one end (LPUSH, RPUSH, the push half of an LMOVE),
  in the order it minted them (their dots' sequence numbers), the positions
  increase (right) or decrease (left).  This holds of any state holding
  both: an element still there was at its replica when the later push
  chose a position beyond that end.
- ``list-no-interleave``: concurrent runs of pushes stay contiguous.  A *run*
  (white-box) is a maximal sequence of one actor's LPUSHes (or RPUSHes) of
  the key, in the order that actor executed them, in which every push after
  the first found at that end of the actor's state before it
  (``Meta.before``) the element the previous push of the run pushed last:
  nothing reached that end of the actor's list in between, neither a pop,
  an LMOVE nor another replica's push.  Two replicas that push at one end
  while apart make two runs that start at the same element.  The rule
  (*interleaved-run*): the elements of a run are contiguous with respect to
  every element another actor pushed at either end (LPUSH, RPUSH, LMOVE):
  none lies between two of them (no a1 b1 a2, so no a1 b1 a2 b2).  An element
  LINSERTed inside a run may lie there: an insert is no push.  The rule holds
  for runs apart or not (a run that starts after another's elements arrived
  sorts beyond them); the concurrent ones are those that test it.  Black-box
  (*interleaved-push*), the runs are the values of one push (an operation
  pushes its values one after the other, with nothing in between): no value
  of another push lies between two values of one push (values compared as
  for ``list-replica-order``).

Both order rules hold of every state that holds the elements, not only the
final one: they are checked at every replica after healing and at every read
of the run (black-box on whole-list answers, white-box on the state each read
saw).  Each violation names the key, the values (and, white-box, the dots) of
the elements and the operations that pushed them; the campaign's verdict line
gives the seed and the command that reproduces it.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar

from crdtkv.crdts.causal import Dot
from crdtkv.crdts.rlist import Elem, RList, dot_of, elem_value
from simulations.checkers.common import (
    DETAILS_MAX,
    Reads,
    States,
    Violation,
    done_ms,
    first_failing,
    jkey,
)
from simulations.checkers.numbers import uncertain
from simulations.history import Final, History, Op, state_key

__all__ = ["check_lists", "list_ops", "list_values"]

T = TypeVar("T")
PUSHES = {"lists.lpush": "left", "lists.rpush": "right"}
POPS = ("lists.lpop", "lists.rpop")
CONVERGE = "list-converge"
KEPT = "list-pushes-kept"
ORDER = "list-replica-order"
INTERLEAVE = "list-no-interleave"


def list_values(result: dict[str, Any] | None) -> list[str]:
    """A whole-list read's values, head first; [] when the list is absent."""
    if result is None or not isinstance(result.get("values"), list):
        return []
    return [str(v) for v in result["values"]]


def list_ops(history: History, name: str) -> list[Op]:
    """The operations on ``name`` (any view), and the LMOVEs into it, in history order."""
    return [
        o
        for o in history.ops
        if o.key == name or (o.kind == "lists.move" and o.args.get("destination") == name)
    ]


def check_lists(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    white = final.replica_states is not None
    for name in history.keys.get("lists", []):
        ops = list_ops(history, name)
        if not ops:
            continue
        out += _reads_agree(name, final)
        takers = _Takers(name, ops, white)
        out += first_failing(final, partial(_kept_at, name, ops, takers))
        views = _views(name, ops, final)
        seen = [(where, values) for where, values, _ in views if values is not None]
        out += _each(seen, partial(_order_in, name, ops, white))
        out += _each(seen, partial(_interleave_in, name, ops, white))
        if not white:
            continue
        out += _read_order(name, ops)
        model = _model(ops, name)
        if model is None:
            continue
        # The order rules need only that each dot names one element: positions never
        # change, and an element a lost data directory took away is merely absent.
        runs = _runs(ops, name, model)
        states = [(where, live) for where, _, live in views if live is not None]
        out += _each(states, partial(_element_order_in, name, model))
        out += _each(states, partial(_runs_in, name, model, runs))
        if uncertain(ops):
            continue  # what survives is no longer determined by the history
        out += first_failing(final, partial(_exact_at, name, model))
        out += first_failing(final, partial(_elements_kept_at, name, model))
    return out


View = tuple[str, list[str] | None, dict[str, Elem] | None]


def _views(name: str, ops: list[Op], final: Final) -> list[View]:
    """Where the order rules are checked: (where, the whole list as read or None, the live
    elements by position or None): every replica's final read and state, and every read
    of the key that answered (its values when it read the whole list; in the simulator
    the state it read)."""
    out: list[View] = []
    for rid, reads in sorted(final.reads.items()):
        states = final.replica_states.get(rid) if final.replica_states is not None else None
        live = _live(name, states) if final.replica_states is not None else None
        out.append((f"at {rid} after healing", list_values(reads.get(("lists", name))), live))
    for o in ops:
        if o.status != "ok" or o.key != name or o.kind not in ("lists.get", "lists.range"):
            continue
        whole = o.kind == "lists.get" or (o.args.get("start") == 0 and o.args.get("stop") == -1)
        values = list_values(o.result) if whole else None
        live = None
        if o.meta is not None:
            state = o.meta.state
            live = _live_of(state)
        out.append((f"at read #{o.idx} ({o.replica})", values, live))
    return out


def _each(views: list[tuple[str, T]], check: Callable[[T], list[Violation]]) -> list[Violation]:
    """``check`` at each view, each violation saying where; at most ``DETAILS_MAX``."""
    out: list[Violation] = []
    for where, view in views:
        out += [replace(v, detail=f"{where}: {v.detail}") for v in check(view)]
        if len(out) >= DETAILS_MAX:
            return out[:DETAILS_MAX]
    return out


def _may(o: Op, white: bool) -> bool:
    """May have taken effect: answered ok, or no answer (and, in the simulator, executed)."""
    if o.status == "ok":
        return True
    return o.status == "unknown" and (not white or o.meta is not None)


def _reads_agree(name: str, final: Final) -> list[Violation]:
    answers = {
        rid: jkey(list_values(reads.get(("lists", name)))) for rid, reads in final.reads.items()
    }
    if len(set(answers.values())) <= 1:
        return []
    return [
        Violation(
            CONVERGE,
            "reads-differ",
            f"lists/{name} holds different sequences at the replicas after healing: "
            f"{dict(sorted(answers.items()))}",
        )
    ]


# -- list-pushes-kept, black-box -------------------------------------------------------------
def _created(o: Op, name: str) -> list[tuple[str, str | None]]:
    """(value, end) of each element an acknowledged operation's answer says it created in
    ``name``, in creation order; the end is None for LINSERT."""
    r = o.result
    if not o.acked or r is None:
        return []
    if o.kind in PUSHES and o.key == name and r.get("length", 0) > 0:
        return [(str(v), PUSHES[o.kind]) for v in o.args["values"]]
    if o.kind == "lists.insert" and o.key == name and r.get("length", 0) > 0:
        return [(str(o.args["element"]), None)]
    if o.kind == "lists.move" and o.args.get("destination") == name:
        v = r.get("value")
        return [] if v is None else [(str(v), str(o.args.get("to_end", "left")))]
    return []


class _Takers:
    """Per value, the operations that may have happened and could have taken it from
    the list; and the latest completion of those that could have taken any value."""

    def __init__(self, name: str, ops: list[Op], white: bool) -> None:
        self.by_value: dict[str, list[Op]] = {}
        self.any: list[Op] = []
        for o in ops:
            if o.key != name or not _may(o, white):
                continue
            answered = o.status == "ok" and o.result is not None
            res = o.result or {}
            if o.kind in POPS:
                if answered:
                    for v in res.get("values", []):
                        self.by_value.setdefault(str(v), []).append(o)
                else:
                    self.any.append(o)
            elif o.kind == "lists.remove":
                if not answered or res.get("removed", 0) > 0:
                    self.by_value.setdefault(str(o.args["element"]), []).append(o)
            elif o.kind == "lists.move":
                if not answered:
                    self.any.append(o)
                elif res.get("value") is not None:
                    self.by_value.setdefault(str(res["value"]), []).append(o)
            elif o.kind in ("lists.trim", "lists.set") or o.kind.endswith(".delete"):
                self.any.append(o)
        self.any_done = max((done_ms(o) for o in self.any), default=-1)

    def could_take(self, value: str, creator: Op) -> list[Op]:
        """Operations that may have taken ``value`` after ``creator`` began (not finished
        before it was invoked); the first of the unspecific ones stands for them all."""
        found = [
            o
            for o in self.by_value.get(value, [])
            if o is not creator and done_ms(o) >= creator.invoke_ms
        ]
        if self.any_done >= creator.invoke_ms:
            found += [o for o in self.any if done_ms(o) >= creator.invoke_ms][:1]
        return found


def _kept_at(
    name: str, ops: list[Op], takers: _Takers, reads: Reads, states: States | None
) -> list[Violation]:
    present = set(list_values(reads.get(("lists", name))))
    out: list[Violation] = []
    for o in ops:
        for v, _ in _created(o, name):
            if v in present or takers.could_take(v, o):
                continue
            earlier = len(takers.by_value.get(v, [])) + len(takers.any)
            out.append(
                Violation(
                    KEPT,
                    "lost-push",
                    f"lists/{name}: {v!r} is absent at the end, but {o.describe()} was "
                    f"acknowledged and no pop, LREM, LTRIM, LSET, LMOVE or DEL that may have "
                    f"happened after it began could have taken it ({earlier} that could "
                    f"finished before it began)",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                return out
    return out


# -- list-replica-order and list-no-interleave, black-box ------------------------------------
def _clean(name: str, ops: list[Op], values: list[str], white: bool) -> dict[str, int] | None:
    """The present values that name one element each (value -> index in the final
    list): present once, and no LMOVE into the list may have copied them.  None when an
    LMOVE into the list of unknown outcome may have copied any of them."""
    moved: set[str] = set()
    for o in ops:
        if o.kind != "lists.move" or o.args.get("destination") != name or not _may(o, white):
            continue
        if o.status == "ok" and o.result is not None:
            if o.result.get("value") is not None:
                moved.add(str(o.result["value"]))
        elif o.meta is not None:  # the simulator knows what an unanswered move pushed
            moved |= {elem_value(e) for d in _deltas_of(o, name) for e in _minted_values(d)}
        else:
            return None
    counts = Counter(values)
    return {v: i for i, v in enumerate(values) if counts[v] == 1 and v not in moved}


def _minted_values(delta: RList) -> list[Elem]:
    return [e for e in delta.entries.values() if e is not None]


def _pushed(name: str, ops: list[Op], index: dict[str, int]) -> list[tuple[Op, list[int]]]:
    """Each push to the list that may have happened, with the final indexes of its
    values compared (present, clean), in push order."""
    out = []
    for o in ops:
        if o.kind in PUSHES and o.key == name and o.may_have_happened():
            out.append((o, [index[v] for v in o.args["values"] if v in index]))
    return out


def _incarnation(o: Op) -> str | None:
    return o.meta.incarnation if o.meta is not None else None


def _order_in(name: str, ops: list[Op], white: bool, values: list[str]) -> list[Violation]:
    index = _clean(name, ops, values, white)
    if index is None:
        return []
    groups: dict[tuple[str, str | None, str], list[tuple[Op, list[int]]]] = {}
    for o, idx in _pushed(name, ops, index):
        if idx:
            groups.setdefault((o.replica, _incarnation(o), PUSHES[o.kind]), []).append((o, idx))
    out: list[Violation] = []
    for (_, _, end), pushes in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][2])):
        right = end == "right"
        for o, idx in pushes:  # the values of one push, in push order
            if idx != sorted(idx, reverse=not right):
                out.append(_order_violation(name, values, o, o, idx, idx, end))
        # Across pushes: the first acknowledged before the second was invoked.
        acked = sorted((p for p in pushes if p[0].acked), key=lambda p: done_ms(p[0]))
        dones = [done_ms(p[0]) for p in acked]
        best: list[tuple[int, int]] = []  # prefix extreme: (index, position in acked)
        for i, (_, idx) in enumerate(acked):
            edge = max(idx) if right else min(idx)
            if not best or (edge > best[-1][0] if right else edge < best[-1][0]):
                best.append((edge, i))
            else:
                best.append(best[-1])
        for o, idx in pushes:
            k = bisect.bisect_left(dones, o.invoke_ms)
            if k == 0:
                continue
            edge, i = best[k - 1]
            if (edge >= min(idx)) if right else (edge <= max(idx)):
                first, first_idx = acked[i]
                out.append(_order_violation(name, values, first, o, first_idx, idx, end))
            if len(out) >= DETAILS_MAX:
                return out
    return out[:DETAILS_MAX]


def _order_violation(
    name: str, values: list[str], a: Op, b: Op, ia: list[int], ib: list[int], end: str
) -> Violation:

    def shown(idx: list[int]) -> list[tuple[int, str]]:
        return [(i, values[i]) for i in idx]

    what = (
        "its values are not in push order"
        if a is b
        else "the later push's values are not beyond the earlier's"
    )
    return Violation(
        ORDER,
        "push-order",
        f"lists/{name}: {'L' if end == 'left' else 'R'}PUSHes at {a.replica}: {what}: "
        f"{a.describe()} holds (index, value) {shown(ia)}, {b.describe()} holds {shown(ib)} "
        f"in the final list of {len(values)}",
        sorted({a.idx, b.idx}),
    )


def _interleave_in(name: str, ops: list[Op], white: bool, values: list[str]) -> list[Violation]:
    index = _clean(name, ops, values, white)
    if index is None:
        return []
    pushed = _pushed(name, ops, index)
    owner: dict[int, Op] = {i: o for o, idx in pushed for i in idx}
    out: list[Violation] = []
    for o, idx in pushed:
        if len(idx) < 2:
            continue
        lo, hi = min(idx), max(idx)
        inside = [i for i in range(lo + 1, hi) if i in owner and owner[i] is not o]
        if inside:
            other = owner[inside[0]]
            out.append(
                Violation(
                    INTERLEAVE,
                    "interleaved-push",
                    f"lists/{name}: the values of {o.describe()} are at indexes {idx} of the "
                    f"final list, and {values[inside[0]]!r} of {other.describe()} lies "
                    f"between them ({len(inside)} value(s) of other pushes inside)",
                    [o.idx, other.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out


# -- the white-box model ---------------------------------------------------------------------
@dataclass
class _Elem:
    """An element as the executed operations' deltas make it."""

    dot: Dot
    pos: str
    value: Elem  # as pushed
    op: Op  # the operation that minted it
    end: str | None  # "left"/"right": pushed at an end (LPUSH, RPUSH, LMOVE); None: LINSERT
    removers: list[Op] = field(default_factory=list)  # executed operations that removed it
    writes: list[Elem] = field(default_factory=list)  # the values LSETs of it wrote

    def winner(self) -> Elem:
        """Its value: a pushed value loses to any LSET, of two LSETs the larger (timestamp,
        value) wins."""
        best = self.value
        for w in self.writes:
            if isinstance(best, str):
                best = w if not isinstance(w, str) or w > best else best
            elif not isinstance(w, str) and (w[1], w[0]) > (best[1], best[0]):
                best = w
        return best

    def describe(self) -> str:
        return f"{elem_value(self.value)!r} (dot {self.dot}, minted by #{self.op.idx})"


def _deltas_of(o: Op, name: str) -> list[RList]:
    if o.meta is None:
        return []
    key = state_key("lists", name)
    return [d for g in o.meta.groups if isinstance(d := g.deltas.get(key), RList)]


def _end(o: Op, name: str) -> str | None:
    if o.kind in PUSHES:
        return PUSHES[o.kind]
    if o.kind == "lists.move" and o.args.get("destination") == name:
        return str(o.args.get("to_end", "left"))  # the op's default
    return None


def _model(ops: list[Op], name: str) -> dict[Dot, _Elem] | None:
    """Every element the executed operations minted in the list, with the executed
    operations that removed it and the LSET values written to it.

    A narrow delta lists what it changed: a position with an element is a new element
    (an LSET's: a value written to an existing one), a position without one a removed
    element.  A full delta (a DEL) removes every element of its causal context it does
    not list.  None when two operations minted one dot (a crash took back the first
    before it left its replica, which then minted the dot again): dots no longer name
    elements."""
    elems: dict[Dot, _Elem] = {}
    removals: list[tuple[Op, Dot]] = []
    writes: list[tuple[Dot, Elem]] = []
    clears: list[tuple[Op, RList]] = []
    for o in ops:
        for d in _deltas_of(o, name):
            if not d.narrow:
                clears.append((o, d))
                continue
            for pos, e in d.entries.items():
                dot = dot_of(pos)
                if e is None:
                    removals.append((o, dot))
                elif o.kind == "lists.set":
                    writes.append((dot, e))
                elif dot in elems:
                    return None  # minted twice: a crash took the first back
                else:
                    elems[dot] = _Elem(dot, pos, e, o, _end(o, name))
    for o, dot in removals:
        if dot in elems:
            elems[dot].removers.append(o)
    for dot, e in writes:
        if dot in elems:
            elems[dot].writes.append(e)
    for o, d in clears:
        for el in elems.values():
            if d.ctx.contains(el.dot) and d.entries.get(el.pos) is None:
                el.removers.append(o)
    return elems


def _live(name: str, states: States | None) -> dict[str, Elem]:
    return _live_of(states.get(state_key("lists", name)) if states is not None else None)


def _live_of(state: Any) -> dict[str, Elem]:
    """A list state's live elements by position ({} for no state)."""
    if not isinstance(state, RList):
        return {}
    return {p: e for p, e in state.entries.items() if e is not None}


def _exact_at(
    name: str, model: dict[Dot, _Elem], reads: Reads, states: States | None
) -> list[Violation]:
    """list-converge, white-box: the read is the live elements in position order, and they
    are exactly the surviving elements, with their values."""
    live = _live(name, states)
    read = list_values(reads.get(("lists", name)))
    out: list[Violation] = []
    want = [elem_value(live[p]) for p in sorted(live)]
    if read != want:
        out.append(
            Violation(
                CONVERGE,
                "wrong-order",
                f"lists/{name}: the read is {read}; the live elements in position order are {want}",
            )
        )
    for pos in sorted(live):
        e = live[pos]
        dot = dot_of(pos)
        el = model.get(dot)
        if el is None or el.pos != pos:
            out.append(
                Violation(
                    CONVERGE,
                    "phantom-element",
                    f"lists/{name}: {elem_value(e)!r} (dot {dot}) is live at a position no "
                    f"executed operation minted it at"
                    + (f" ({el.describe()} minted it elsewhere)" if el is not None else ""),
                )
            )
        elif el.removers:
            r = el.removers[0]
            out.append(
                Violation(
                    CONVERGE,
                    "resurrected-element",
                    f"lists/{name}: {el.describe()} is live, but {r.describe()} removed it",
                    [el.op.idx, r.idx],
                )
            )
        elif e != el.winner():
            out.append(
                Violation(
                    CONVERGE,
                    "wrong-value",
                    f"lists/{name}: {el.describe()} holds {e!r}; its push and the LSETs of it "
                    f"({len(el.writes)}) make {el.winner()!r}",
                    [el.op.idx],
                )
            )
        if len(out) >= DETAILS_MAX * 2:
            break
    return out


def _read_order(name: str, ops: list[Op]) -> list[Violation]:
    """list-converge, white-box, at every read: LRANGE (and a whole read) answers the
    elements of the state it read in position order."""
    out: list[Violation] = []
    for o in ops:
        if o.status != "ok" or o.key != name or o.meta is None or o.result is None:
            continue
        if o.kind not in ("lists.get", "lists.range") or o.result.get("not_found"):
            continue
        live = _live_of(o.meta.state)
        order = [elem_value(live[p]) for p in sorted(live)]
        want = order if o.kind == "lists.get" else _span(order, o.args["start"], o.args["stop"])
        got = list_values(o.result)
        if got != want:
            out.append(
                Violation(
                    CONVERGE,
                    "wrong-order",
                    f"lists/{name}: {o.describe()} answered {got}; the state it read holds "
                    f"{want} there in position order",
                    [o.idx],
                )
            )
            if len(out) >= DETAILS_MAX:
                break
    return out


def _span(values: list[str], start: int, stop: int) -> list[str]:
    """LRANGE start stop of ``values`` (inclusive, negative from the tail, clamped)."""
    n = len(values)
    if start < 0:
        start = max(start + n, 0)
    if stop < 0:
        stop += n
    return values[start : min(stop, n - 1) + 1] if start <= stop else []


def _elements_kept_at(
    name: str, model: dict[Dot, _Elem], reads: Reads, states: States | None
) -> list[Violation]:
    """list-pushes-kept, white-box: an element no executed operation removed is live."""
    live = _live(name, states)
    out: list[Violation] = []
    for el in sorted(model.values(), key=lambda el: el.op.idx):
        if el.removers or el.pos in live:
            continue
        out.append(
            Violation(
                KEPT,
                "lost-element",
                f"lists/{name}: {el.describe()}, by {el.op.describe()}, is absent, but no "
                f"executed pop, LREM, LTRIM, LMOVE or DEL removed it",
                [el.op.idx],
            )
        )
        if len(out) >= DETAILS_MAX:
            break
    return out


def _element_order_in(name: str, model: dict[Dot, _Elem], live: dict[str, Elem]) -> list[Violation]:
    """list-replica-order, white-box: one actor's pushes at one end, by sequence number,
    have increasing (right) or decreasing (left) positions."""
    groups: dict[tuple[str, str], list[_Elem]] = {}
    for el in model.values():
        if el.end is not None and el.pos in live:
            groups.setdefault((el.dot[0], el.end), []).append(el)
    out: list[Violation] = []
    for (actor, end), els in sorted(groups.items()):
        els.sort(key=lambda el: el.dot[1])
        for a, b in itertools.pairwise(els):
            if (a.pos < b.pos) == (end == "right"):
                continue
            out.append(
                Violation(
                    ORDER,
                    "element-order",
                    f"lists/{name}: {actor} pushed {a.describe()} and then {b.describe()} at "
                    f"the {end} end, but {elem_value(live[a.pos])!r} is "
                    f"{'after' if end == 'right' else 'before'} {elem_value(live[b.pos])!r} "
                    f"(#{a.op.idx}: {a.op.kind}, #{b.op.idx}: {b.op.kind})",
                    sorted({a.op.idx, b.op.idx}),
                )
            )
            if len(out) >= DETAILS_MAX:
                return out
    return out


@dataclass
class _Run:
    actor: str
    end: str
    ops: list[Op]
    dots: list[Dot]


def _runs(ops: list[Op], name: str, model: dict[Dot, _Elem]) -> list[_Run]:
    """The runs of pushes (see the module's docstring), from each push's state before."""
    minted: dict[int, list[_Elem]] = {}
    for el in model.values():
        minted.setdefault(el.op.idx, []).append(el)
    by: dict[tuple[str, str], list[tuple[int, Op, list[Dot]]]] = {}
    for o in ops:
        els = minted.get(o.idx)
        if o.kind not in PUSHES or o.key != name or not els or o.meta is None:
            continue
        dots = [el.dot for el in sorted(els, key=lambda el: el.dot[1])]
        by.setdefault((dots[0][0], PUSHES[o.kind]), []).append((o.meta.exec_seq, o, dots))
    runs: list[_Run] = []
    for (actor, end), pushes in sorted(by.items()):
        pushes.sort(key=lambda p: p[0])
        run: _Run | None = None
        for _, o, dots in pushes:
            assert o.meta is not None
            if run is not None and _end_dot(o.meta.before, end) == run.dots[-1]:
                run.ops.append(o)
                run.dots += dots
            else:
                run = _Run(actor, end, [o], list(dots))
                runs.append(run)
    return runs


def _end_dot(before: Any, end: str) -> Dot | None:
    """The dot of the element at ``end`` of a list state (None: empty or no state)."""
    if not isinstance(before, RList):
        return None
    live = [p for p, e in before.entries.items() if e is not None]
    if not live:
        return None
    return dot_of(max(live) if end == "right" else min(live))


def _runs_in(
    name: str, model: dict[Dot, _Elem], runs: list[_Run], live: dict[str, Elem]
) -> list[Violation]:
    """list-no-interleave, white-box: no element another actor pushed lies between two
    live elements of a run."""
    run_of: dict[Dot, int] = {d: i for i, run in enumerate(runs) for d in run.dots}
    seq: list[tuple[str, str, int | None, _Elem]] = []  # (position, actor, run, element)
    for el in model.values():
        if el.end is not None and el.pos in live:
            seq.append((el.pos, el.dot[0], run_of.get(el.dot), el))
    seq.sort(key=lambda t: t[0])
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, (_, _, r, _) in enumerate(seq):
        if r is not None:
            first.setdefault(r, i)
            last[r] = i
    out: list[Violation] = []
    for r, i in sorted(first.items(), key=lambda kv: kv[1]):
        run = runs[r]
        j = last[r]
        foreign = [t for t in seq[i + 1 : j] if t[1] != run.actor]
        if not foreign:
            continue
        inside = [t[3] for t in seq[i : j + 1] if t[2] == r]
        other = foreign[0][3]
        out.append(
            Violation(
                INTERLEAVE,
                "interleaved-run",
                f"lists/{name}: the run of {len(run.ops)} {run.end} push(es) by {run.actor} "
                f"(#{', #'.join(str(o.idx) for o in run.ops[:6])}) is not contiguous: "
                f"{other.describe()}, pushed by {other.dot[0]} (#{other.op.idx} "
                f"{other.op.kind}), lies between its elements "
                f"{[elem_value(live[e.pos]) for e in inside][:8]} "
                f"({len(foreign)} element(s) of other replicas inside)",
                [run.ops[0].idx, other.op.idx],
            )
        )
        if len(out) >= DETAILS_MAX:
            break
    return out

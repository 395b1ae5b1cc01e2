"""Vector sets: vset-converge, vset-truth-equal, vset-ann-no-removed.

The rules (docs/simulation.md states them in full):

- *vset-converge*: after healing every replica reads each vector set alike
  (``vsets.get``: the same elements, vectors and attributes); every vector
  and every attribute object shown was written to that element by an
  operation that may have happened (no phantom); an acknowledged VADD of an
  element written once (``c<client>-<n>``) is present at the end unless a
  VREM or DEL that may have happened after it began could have taken it, or
  its dimension is not the set's (hidden); and such an element that an
  acknowledged VREM removed (and no VSETATTR may have rewritten) is absent
  at the end (no resurrection).
- *vset-truth-equal*: every replica answers the same TRUTH searches (run at
  every replica after the final reads) with the same elements and scores,
  and each answer is the exact ranking of the replica's final read (best
  score first, ties by element); white-box, every TRUTH answer in the
  history is the exact ranking of the state the search read.
- *vset-ann-no-removed*: no search answer names an element the replica does
  not hold: white-box, every element of an ANN answer is visible in the
  state it read (and passes its FILTER, with its exact score); black-box,
  no answer at a replica names an element written once that an acknowledged
  VREM at that replica removed before the search began (unless a VSETATTR
  may have rewritten it); and at the end every ANN answer at a replica names
  only elements of its final read.

Scores are computed here independently of ``crdtkv.vectors`` (exact sums over
the float32 values), as Redis defines them: ``1 - (1 - cosine) / 2``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from crdtkv.crdts.vset import VSet
from crdtkv.errors import CrdtkvError, NotFound
from crdtkv.vectors.filter import compile_filter
from simulations.checkers.common import DETAILS_MAX, Violation, done_ms, jkey, strictly_before
from simulations.history import Final, History, Op

__all__ = [
    "FINAL_QUERIES",
    "check_vsets",
    "expected_answer",
    "final_searches",
    "ref_score",
]

NS = "vsets"
SEARCHES = ("vsets.search", "vsets.similar")
SCORE_TOL = 1e-9

# The searches run at every replica after the final reads: (query, count, filter).
FINAL_QUERIES: list[tuple[list[float], int, str | None]] = [
    ([1.0, 0.0, 0.0, 0.0], 5, None),
    ([0.0, 1.0, -1.0, 0.0], 3, None),
    ([1.0, 1.0, -1.0, 2.0], 50, None),
    ([-2.0, 1.0, 0.0, 1.0], 5, ".n >= 2"),
    ([2.0, -1.0, 1.0, -2.0], 1, None),
    ([1.0, 0.0, 0.0], 5, None),
    ([0.0, 2.0, -1.0], 50, None),
]

Elements = dict[str, tuple[list[float], str | None]]  # element -> (vector, attributes JSON)


def final_searches(
    keys: Iterable[str], run: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Run ``FINAL_QUERIES`` (TRUTH and ANN) on each key through ``run(op)``."""
    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for key in keys:
        for query, count, flt in FINAL_QUERIES:
            for truth in (True, False):
                fields: dict[str, Any] = {"query": query, "search_count": count}
                fields["with_attributes"] = True
                if truth:
                    fields["truth"] = True
                if flt is not None:
                    fields["filter"] = flt
                try:
                    result = run({"op": "vsets.search", "key": key, **fields})
                except NotFound:
                    result = {"not_found": True}
                except CrdtkvError as e:
                    result = {"error": e.code}
                out.append((key, fields, result))
    return out


# -- the reference ----------------------------------------------------------------------------
def _f32(values: Iterable[float]) -> list[float]:
    vals = list(values)
    return list(struct.unpack(f"<{len(vals)}f", struct.pack(f"<{len(vals)}f", *vals)))


def ref_score(a: list[float], b: list[float]) -> float:
    """Redis's score of two vectors: exact sums, 1 - (1 - cosine) / 2, in [0, 1]."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.fsum(x * x for x in a)
    nb = math.fsum(y * y for y in b)
    if na == 0.0 or nb == 0.0:
        return 0.5
    return min(1.0, max(0.0, 1.0 - (1.0 - dot / math.sqrt(na * nb)) / 2.0))


def _accepts(flt: str | None, attrs: str | None) -> bool:
    return flt is None or compile_filter(flt)(attrs)


def expected_answer(
    elements: Elements, query: list[float], count: int, flt: str | None = None
) -> list[tuple[str, float]]:
    """The exact answer: the ``count`` best elements that pass ``flt``, ties by element."""
    q = _f32(query)
    scored = [(e, ref_score(v, q)) for e, (v, a) in elements.items() if _accepts(flt, a)]
    scored.sort(key=lambda t: (-t[1], t[0]))
    return scored[:count]


def elements_of_read(read: dict[str, Any] | None) -> Elements | None:
    """A final read's elements (None: absent, or not a vector set)."""
    if not read or "elements" not in read:
        return None
    return {
        e: (_f32(body["vector"]), None if body["attributes"] is None else _js(body["attributes"]))
        for e, body in read["elements"].items()
    }


def elements_of_state(state: VSet) -> Elements:
    return {e: (list(struct.unpack(f"<{len(v) // 4}f", v)), a) for e, v, a in state.items()}


def _js(value: Any) -> str:
    return orjson.dumps(value).decode()


def _matches(result: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    if not result or "matches" not in result:
        return None
    out: list[dict[str, Any]] = result["matches"]
    return out


def _answer_differs(got: list[dict[str, Any]], want: list[tuple[str, float]]) -> bool:
    if [m["element"] for m in got] != [e for e, _ in want]:
        return True
    return any(abs(m["score"] - s) > SCORE_TOL for m, (_, s) in zip(got, want, strict=True))


def _query_of(o: Op, elements: Elements) -> list[float] | None:
    if o.kind == "vsets.search":
        q: list[float] = o.args["query"]
        return q
    found = elements.get(o.args["element"])
    return None if found is None else found[0]


def _truth(args: dict[str, Any]) -> bool:
    return bool(args.get("truth"))


def _count(args: dict[str, Any]) -> int:
    n = args.get("search_count")
    return 10 if n is None else int(n)


# -- the checker ----------------------------------------------------------------------------
class _Report:
    def __init__(self) -> None:
        self.out: list[Violation] = []
        self._seen: dict[tuple[str, str, str], int] = {}

    def add(self, checker: str, kind: str, key: str, detail: str, ops: list[int]) -> None:
        k = (checker, kind, key)
        n = self._seen.get(k, 0)
        self._seen[k] = n + 1
        if n < DETAILS_MAX:
            self.out.append(Violation(checker, kind, f"{NS}/{key}: {detail}", ops))


def check_vsets(history: History, final: Final) -> list[Violation]:
    rep = _Report()
    keys = history.keys.get(NS, [])
    for key in keys:
        ops = history.on_key(NS, key)
        _check_converge(rep, key, ops, final)
        _check_history_searches(rep, key, ops)
        _check_removed_not_answered(rep, key, ops)
    _check_final_searches(rep, final)
    return rep.out


def _single_writes(ops: list[Op]) -> dict[str, Op]:
    """Elements written once (one VADD that may have happened): element -> that VADD."""
    adds: dict[str, list[Op]] = {}
    for o in ops:
        if o.kind == "vsets.add" and o.may_have_happened():
            adds.setdefault(o.args["element"], []).append(o)
    return {e: a[0] for e, a in adds.items() if len(a) == 1}


def _rewritten(ops: list[Op]) -> set[str]:
    """Elements a VSETATTR may have written (a new entry, which a VREM may not observe)."""
    return {
        o.args["element"]
        for o in ops
        if o.kind == "vsets.setattr"
        and o.may_have_happened()
        and not (o.status == "ok" and o.result is not None and o.result.get("updated") is False)
    }


def _removals(ops: list[Op]) -> list[Op]:
    """Acknowledged VREMs that removed their element."""
    return [
        o
        for o in ops
        if o.kind == "vsets.remove" and o.acked and o.result and o.result.get("removed") is True
    ]


def _check_converge(rep: _Report, key: str, ops: list[Op], final: Final) -> None:
    reads = {rid: final.reads[rid].get((NS, key)) for rid in sorted(final.reads)}
    answers = {rid: jkey(r) for rid, r in reads.items()}
    if len(set(answers.values())) > 1:
        rep.add("vset-converge", "reads-differ", key, f"replicas read differently: {answers}", [])
    written_vecs: dict[str, set[str]] = {}
    written_attrs: dict[str, set[str]] = {}
    for o in ops:
        if not o.may_have_happened():
            continue
        if o.kind == "vsets.add":
            written_vecs.setdefault(o.args["element"], set()).add(jkey(_f32(o.args["vector"])))
            if o.args.get("attributes") is not None:
                written_attrs.setdefault(o.args["element"], set()).add(jkey(o.args["attributes"]))
        elif o.kind == "vsets.setattr" and o.args.get("new_attributes") is not None:
            written_attrs.setdefault(o.args["element"], set()).add(jkey(o.args["new_attributes"]))
    singles = _single_writes(ops)
    rewritten = _rewritten(ops)
    removals = _removals(ops)
    deletes = [o for o in ops if o.kind == "vsets.delete" and o.may_have_happened()]
    deletes += [o for o in ops if o.kind == "keys.delete" and o.may_have_happened()]
    for rid, read in reads.items():
        elements = elements_of_read(read)
        held = elements or {}
        dim = None if not read or "dim" not in read else read["dim"]
        for e, (vec, attrs) in held.items():
            if jkey(vec) not in written_vecs.get(e, set()):
                rep.add(
                    "vset-converge",
                    "phantom-vector",
                    key,
                    f"at {rid} {e!r} holds {vec}, which no VADD of it wrote",
                    [],
                )
            if len(vec) != dim:
                rep.add(
                    "vset-converge",
                    "wrong-dimension",
                    key,
                    f"at {rid} {e!r} has {len(vec)} dimensions, the set {dim}",
                    [],
                )
            if attrs is not None and jkey(orjson.loads(attrs)) not in written_attrs.get(e, set()):
                rep.add(
                    "vset-converge",
                    "phantom-attributes",
                    key,
                    f"at {rid} {e!r} has attributes {attrs} nobody wrote to it",
                    [],
                )
        for e, add in singles.items():
            hidden = dim is not None and len(add.args["vector"]) != dim
            if not add.acked or e in held or hidden:
                continue
            excused = any(
                not strictly_before(r, add)
                for r in ops
                if r.kind == "vsets.remove" and r.args["element"] == e and r.may_have_happened()
            ) or any(not strictly_before(d, add) for d in deletes)
            if not excused:
                rep.add(
                    "vset-converge",
                    "lost-add",
                    key,
                    f"at {rid} {e!r} is absent, though {add.describe()} was acknowledged "
                    "and no VREM or DEL could have removed it",
                    [add.idx],
                )
        for r in removals:
            e = r.args["element"]
            if e in held and e in singles and e not in rewritten:
                rep.add(
                    "vset-converge",
                    "resurrected",
                    key,
                    f"at {rid} {e!r} is back after {r.describe()} removed its only write "
                    f"{singles[e].describe()}",
                    [singles[e].idx, r.idx],
                )


def _check_history_searches(rep: _Report, key: str, ops: list[Op]) -> None:
    """White-box: each answer against the state the search read."""
    for o in ops:
        if o.kind not in SEARCHES or o.status != "ok" or o.meta is None:
            continue
        got = _matches(o.result)
        state = o.meta.state
        if got is None or not isinstance(state, VSet):
            continue
        elements = elements_of_state(state)
        flt = o.args.get("filter")
        if _truth(o.args):
            query = _query_of(o, elements)
            if query is None:
                continue
            want = expected_answer(elements, query, _count(o.args), flt)
            if _answer_differs(got, want):
                rep.add(
                    "vset-truth-equal",
                    "wrong-answer",
                    key,
                    f"{o.describe()}: the exact answer of the state it read is {want}",
                    [o.idx],
                )
            continue
        for m in got:
            e = m["element"]
            if e not in elements:
                rep.add(
                    "vset-ann-no-removed",
                    "not-held",
                    key,
                    f"{o.describe()} answers {e!r}, which the state it read does not hold",
                    [o.idx],
                )
                continue
            vec, attrs = elements[e]
            if not _accepts(flt, attrs):
                rep.add(
                    "vset-ann-no-removed",
                    "filter",
                    key,
                    f"{o.describe()} answers {e!r}, whose attributes {attrs} fail the filter",
                    [o.idx],
                )
            query = _query_of(o, elements)
            if query is not None and abs(m["score"] - ref_score(vec, _f32(query))) > SCORE_TOL:
                rep.add(
                    "vset-ann-no-removed",
                    "wrong-score",
                    key,
                    f"{o.describe()}: {e!r} scores {ref_score(vec, _f32(query))}",
                    [o.idx],
                )


def _check_removed_not_answered(rep: _Report, key: str, ops: list[Op]) -> None:
    """Black-box: a replica that removed an element written once never answers it again."""
    singles = _single_writes(ops)
    rewritten = _rewritten(ops)
    removed_at: dict[tuple[str, str], Op] = {}  # (replica, element) -> its earliest removal
    for r in _removals(ops):
        e = r.args["element"]
        if e in singles and e not in rewritten:
            k = (r.replica, e)
            if k not in removed_at or done_ms(r) < done_ms(removed_at[k]):
                removed_at[k] = r
    if not removed_at:
        return
    for o in ops:
        got = _matches(o.result) if o.kind in SEARCHES and o.status == "ok" else None
        for m in got or ():
            rm = removed_at.get((o.replica, m["element"]))
            if rm is not None and done_ms(rm) < o.invoke_ms:
                what = "TRUTH" if _truth(o.args) else "ANN"
                rep.add(
                    "vset-ann-no-removed",
                    "removed-in-answer",
                    key,
                    f"{o.describe()}: the {what} answer names {m['element']!r}, which "
                    f"{rm.describe()} removed there before, its only write being "
                    f"{singles[m['element']].describe()}",
                    [rm.idx, o.idx],
                )


def _check_final_searches(rep: _Report, final: Final) -> None:
    """The searches run at every replica at the end."""
    truth: dict[tuple[str, str], dict[str, str]] = {}
    for rid, searches in sorted(final.vset_searches.items()):
        for key, fields, result in searches:
            read = final.reads.get(rid, {}).get((NS, key))
            elements = elements_of_read(read)
            got = _matches(result)
            flt = fields.get("filter")
            if _truth(fields):
                truth.setdefault((key, jkey(fields)), {})[rid] = jkey(result)
                if got is not None and elements is not None:
                    want = expected_answer(elements, fields["query"], _count(fields), flt)
                    if _answer_differs(got, want):
                        rep.add(
                            "vset-truth-equal",
                            "wrong-answer",
                            key,
                            f"at {rid} TRUTH {fields} answers {got}; its final read ranks {want}",
                            [],
                        )
                continue
            for m in got or ():
                if elements is None or m["element"] not in elements:
                    rep.add(
                        "vset-ann-no-removed",
                        "not-held",
                        key,
                        f"at {rid} the final ANN search {fields} answers {m['element']!r}, "
                        "which its final read does not hold",
                        [],
                    )
                elif not _accepts(flt, elements[m["element"]][1]):
                    rep.add(
                        "vset-ann-no-removed",
                        "filter",
                        key,
                        f"at {rid} the final ANN search {fields} answers "
                        f"{m['element']!r}, which fails the filter",
                        [],
                    )
    for (key, asked), answers in sorted(truth.items()):
        if len(set(answers.values())) > 1:
            rep.add(
                "vset-truth-equal",
                "answers-differ",
                key,
                f"TRUTH {asked} answers differently at the replicas: {answers}",
                [],
            )

"""Vector sets in the simulator: the workload, the three vset checkers, their canaries.

- the workload draws every vector-set op of ``MIXES["vsets"]``: contended and
  once-written elements, 4-dimensional vectors (3 now and then on the last key);
- the checkers' rules on hand-made histories: what they must flag (replicas that
  differ, a phantom vector, a lost or resurrected element, a wrong TRUTH ranking,
  an answer naming a removed element) and what they must not;
- each canary is caught by its checker, the black-box rules included, and the
  clean build passes the same runs;
- a short campaign of vector-set keys with every fault kind finds nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from simulations.campaign import CampaignOptions, config_for, repro_command
from simulations.canaries import CANARIES
from simulations.checkers import CHECKERS
from simulations.checkers.vsets import check_vsets, expected_answer, ref_score
from simulations.config import FAULT_KINDS
from simulations.history import Final, History, Op
from simulations.sim import Simulation
from simulations.workload import MIXES, VSET_ELEMENTS, Workload, keyspace

VSET_CHECKERS = ("vset-converge", "vset-truth-equal", "vset-ann-no-removed")
VSET_CANARIES = {
    "vset-index-keeps-removed": "vset-ann-no-removed",
    "vset-join-ignores-removes": "vset-converge",
    "vset-truth-ties-by-insertion": "vset-truth-equal",
}


# -- the workload ------------------------------------------------------------------------------
def test_the_workload_draws_every_vset_op() -> None:
    keys = keyspace(3)
    assert keys["vsets"] == ["vs0", "vs1"]
    w = Workload(2, random.Random(3), keys, classes=["vsets"])
    drawn = [w.next_op() for _ in range(3_000)]
    assert {kind for kind, _, _ in drawn} == {name for name, _, _ in MIXES["vsets"]}
    adds = [(key, a) for kind, key, a in drawn if kind == "vsets.add"]
    dims = Counter((key, len(a["vector"])) for key, a in adds)
    assert set(dims) == {("vs0", 4), ("vs1", 4), ("vs1", 3)}  # the other dimension: last key
    assert dims[("vs1", 3)] < dims[("vs1", 4)] / 2
    assert all(any(a["vector"]) for _, a in adds)
    unique = [a["element"] for _, a in adds if a["element"] not in VSET_ELEMENTS]
    assert len(unique) == len(set(unique)) > 300 and all(e.startswith("c2-") for e in unique)
    searches = [a for kind, _, a in drawn if kind == "vsets.search"]
    assert 0.2 < sum(bool(a.get("truth")) for a in searches) / len(searches) < 0.6
    assert any("filter" in a for a in searches)
    # VREM and VSETATTR name contended elements or ones the client added.
    named = [a["element"] for kind, _, a in drawn if kind in ("vsets.remove", "vsets.setattr")]
    assert sum(e in VSET_ELEMENTS or e in unique for e in named) > 0.9 * len(named)


def test_every_vset_checker_has_a_canary() -> None:
    assert set(VSET_CHECKERS) <= set(CHECKERS)
    assert all(CANARIES[c].checker == want for c, want in VSET_CANARIES.items())


# -- the rules on hand-made histories -----------------------------------------------------------
def _op(
    kind: str,
    args: dict[str, Any],
    at: tuple[int, int | None],
    result: dict[str, Any] | None = None,
    *,
    replica: str = "r0",
    status: str = "ok",
) -> Op:
    return Op(0, 0, kind, "vs0", args, replica, at[0], at[1], status, result)


def _add(e: str, vec: list[float], at: tuple[int, int], **kw: Any) -> Op:
    return _op("vsets.add", {"element": e, "vector": vec}, at, {"added": True}, **kw)


def _read(elements: dict[str, list[float]]) -> dict[str, Any]:
    dim = len(next(iter(elements.values())))
    return {
        "dim": dim,
        "card": len(elements),
        "elements": {e: {"vector": v, "attributes": None} for e, v in elements.items()},
    }


def _check(ops: list[Op], *reads: dict[str, Any], searches: list[Any] | None = None) -> list[str]:
    history = History(keys={"vsets": ["vs0"]})
    for o in ops:
        history.add(o)
    final = Final()
    for i, r in enumerate(reads):
        final.reads[f"r{i}"] = {("vsets", "vs0"): r}
        if searches is not None:
            final.vset_searches[f"r{i}"] = searches[i]
    return [f"{v.checker}/{v.kind}" for v in check_vsets(history, final)]


A, B = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]


def test_replicas_and_phantoms_are_reported() -> None:
    ops = [_add("a", A, (0, 10)), _add("b", B, (0, 10), replica="r1")]
    both = _read({"a": A, "b": B})
    assert _check(ops, both, both) == []
    assert _check(ops, both, _read({"a": A, "b": A})) == [
        "vset-converge/reads-differ",
        "vset-converge/phantom-vector",
    ]
    assert _check(ops, _read({"a": A, "b": B, "z": A})) == ["vset-converge/phantom-vector"]
    # The vector of an operation in doubt may show; a refused one's may not.
    unknown = _op("vsets.add", {"element": "z", "vector": A}, (0, None), status="unknown")
    assert _check([*ops, unknown], _read({"a": A, "b": B, "z": A})) == []
    refused = replace(unknown, status="fail")
    assert _check([*ops, refused], _read({"a": A, "b": B, "z": A})) == [
        "vset-converge/phantom-vector"
    ]


def test_an_acknowledged_add_is_lost_only_if_nothing_could_have_removed_it() -> None:
    add = _add("a", A, (10, 15))
    assert _check([add, _add("b", B, (0, 5))], _read({"b": B})) == ["vset-converge/lost-add"]
    for remover in (
        _op("vsets.remove", {"element": "a"}, (12, 20), {"removed": True}),
        _op("vsets.remove", {"element": "a"}, (20, None), status="unknown"),
        _op("vsets.delete", {}, (16, 20), {"ok": True}),
    ):
        assert _check([add, _add("b", B, (0, 5)), remover], _read({"b": B})) == []
    before = _op("vsets.remove", {"element": "a"}, (0, 5), {"removed": True})
    assert _check([add, _add("b", B, (0, 5)), before], _read({"b": B})) == [
        "vset-converge/lost-add"
    ]
    # Another dimension than the set's: hidden, not lost.
    assert (
        _check([_add("a", [1.0, 0.0, 0.0], (10, 15)), _add("b", B, (0, 5))], _read({"b": B})) == []
    )


def test_an_element_removed_after_its_only_write_stays_removed() -> None:
    ops = [
        _add("a", A, (0, 5)),
        _op("vsets.remove", {"element": "a"}, (10, 20), {"removed": True}, replica="r1"),
    ]
    assert _check(ops, _read({"a": A})) == ["vset-converge/resurrected"]
    # A VSETATTR that may have rewritten it (add-wins), or a second VADD: it may stay.
    attr = _op("vsets.setattr", {"element": "a", "new_attributes": {}}, (8, 12), {"updated": True})
    assert _check([*ops, attr], _read({"a": A})) == []
    assert _check([*ops, _add("a", A, (8, 12))], _read({"a": A})) == []
    noop = replace(attr, result={"updated": False})
    assert _check([*ops, noop], _read({"a": A})) == ["vset-converge/resurrected"]


def _search(
    query: list[float], matches: list[tuple[str, float]], at: tuple[int, int], **kw: Any
) -> Op:
    truth = kw.pop("truth", False)
    args: dict[str, Any] = {"query": query, "search_count": 5, **({"truth": True} if truth else {})}
    result = {"matches": [{"element": e, "score": s} for e, s in matches]}
    return _op("vsets.search", args, at, result, **kw)


def test_a_search_after_a_removal_at_that_replica_must_not_answer_it() -> None:
    ops = [
        _add("a", A, (0, 5)),
        _add("b", B, (0, 5)),
        _op("vsets.remove", {"element": "a"}, (10, 20), {"removed": True}),
    ]
    final = _read({"b": B})
    bad = _search(A, [("a", 1.0), ("b", 0.5)], (30, 40))
    assert _check([*ops, bad], final) == ["vset-ann-no-removed/removed-in-answer"]
    # At another replica (the removal may not have reached it), or begun before it ended.
    assert _check([*ops, replace(bad, replica="r1")], final) == []
    assert _check([*ops, replace(bad, invoke_ms=15)], final) == []
    assert _check([*ops, _search(A, [("b", 0.5)], (30, 40))], final) == []


def test_final_searches_truth_equal_and_ann_held() -> None:
    ops = [_add("a", A, (0, 5)), _add("b", B, (0, 5)), _add("c", [1.0, 1.0, 0.0, 0.0], (0, 5))]
    held = {"a": A, "b": B, "c": [1.0, 1.0, 0.0, 0.0]}
    final = _read(held)
    elements = {e: (v, None) for e, v in held.items()}
    q = [1.0, 0.5, 0.0, 0.0]
    want = expected_answer(elements, q, 5)
    assert [e for e, _ in want] == ["c", "a", "b"]
    assert want[0][1] == pytest.approx(ref_score(held["c"], q))
    truth = {"query": q, "search_count": 5, "truth": True}
    ann = {"query": q, "search_count": 5}

    def answer(pairs: list[tuple[str, float]]) -> dict[str, Any]:
        return {"matches": [{"element": e, "score": s} for e, s in pairs]}

    good = [("vs0", truth, answer(want)), ("vs0", ann, answer(want[:2]))]
    assert _check(ops, final, final, searches=[good, good]) == []
    swapped = [("vs0", truth, answer([want[1], want[0], want[2]])), good[1]]
    assert _check(ops, final, final, searches=[good, swapped]) == [
        "vset-truth-equal/wrong-answer",
        "vset-truth-equal/answers-differ",
    ]
    removed = [good[0], ("vs0", ann, answer([*want, ("gone", 0.5)]))]
    assert _check(ops, final, final, searches=[good, removed]) == ["vset-ann-no-removed/not-held"]


# -- the canaries --------------------------------------------------------------------------------
def _run(name: str, seed: int, *, patched: bool) -> tuple[Simulation, Any]:
    cfg = config_for(CampaignOptions(seed=seed, canary=name, duration_ms=2_000), seed)
    if not patched:
        cfg.canary = None
    sim = Simulation(cfg)
    if patched:
        with CANARIES[name].patch():
            return sim, sim.run()
    return sim, sim.run()


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("vset-index-keeps-removed",
         {"vset-ann-no-removed/not-held", "vset-ann-no-removed/removed-in-answer"}),
        ("vset-join-ignores-removes", {"vset-converge/reads-differ", "vset-converge/resurrected"}),
        ("vset-truth-ties-by-insertion",
         {"vset-truth-equal/wrong-answer", "vset-truth-equal/answers-differ"}),
    ],
)  # fmt: skip
def test_a_vset_canary_is_caught_by_its_checker(name: str, kinds: set[str]) -> None:
    union: set[str] = set()
    for seed in (1, 2):
        _, result = _run(name, seed, patched=True)
        found = {f"{v.checker}/{v.kind}" for v in result.violations}
        assert kinds & found, (seed, sorted(found))  # each seed caught ...
        union |= found
    assert kinds <= union, sorted(union)  # ... and every rule named catches it in one


@pytest.mark.parametrize("name", sorted(VSET_CANARIES))
def test_the_clean_build_passes_the_runs_a_vset_canary_fails(name: str) -> None:
    searched = 0
    for seed in (1, 2):
        sim, result = _run(name, seed, patched=False)
        assert result.ok, [v.line()[:300] for v in result.violations[:5]]
        searched += sum(
            1 for o in sim.history.ops if o.kind == "vsets.search" and o.acked and o.result
        )
    assert searched > 100


# -- a campaign ----------------------------------------------------------------------------------
def test_a_campaign_of_vset_seeds_with_every_fault_finds_no_violation() -> None:
    failures: list[str] = []
    seen: Counter[str] = Counter()
    for seed in range(900, 916):
        opts = CampaignOptions(faults=list(FAULT_KINDS), duration_ms=3_000, key_classes=["vsets"])
        sim = Simulation(config_for(opts, seed))
        result = sim.run()
        for o in sim.history.ops:
            if o.kind in ("vsets.search", "vsets.similar") and o.acked and o.result:
                seen["truth" if o.args.get("truth") else "ann"] += 1
            if o.kind == "vsets.remove" and o.acked and o.result:
                seen["removed"] += bool(o.result.get("removed"))
            if o.kind == "vsets.add" and o.error and "DimensionMismatch" in o.error:
                seen["dimension refused"] += 1
        if not result.ok:
            lines = "\n    ".join(v.line()[:300] for v in result.violations[:5])
            failures.append(f"seed {seed}: {repro_command(opts, seed)}\n    {lines}")
    assert not failures, "\n".join(failures)
    assert min(seen["truth"], seen["ann"]) > 100 and seen["removed"] > 30, seen
    assert seen["dimension refused"] > 0, seen

"""Lists in the simulator: the workload, the four list checkers, their canaries.

- the workload draws every list op of ``MIXES["lists"]`` with traceable values;
- each checker's black-box rules on hand-made histories: what it must flag
  (an element nothing could have removed, pushes of one replica out of order,
  interleaved pushes, replicas that differ) and what it must not (a push a
  concurrent DEL, pop, LREM, LTRIM, LSET or LMOVE may have taken, pushes at two
  replicas or concurrent ones, moved values, LINSERTed elements);
- each list canary is caught by its checker's white-box part, and the black-box
  parts alone (no ``Meta``, as against real processes) catch three of them;
- the clean build passes the runs each list canary fails, and a campaign of list
  keys with every fault kind (``CRDTKV_SLOW=1`` adds 150 seeds at 4 s).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from crdtkv.crdts.causal import CausalContext
from crdtkv.crdts.rlist import RList, dot_of, level
from crdtkv.replica.keyspace import DeltaGroup
from simulations.campaign import CampaignOptions, config_for, repro_command
from simulations.canaries import CANARIES
from simulations.checkers import CHECKERS
from simulations.checkers.lists import check_lists, list_values
from simulations.config import FAULT_KINDS
from simulations.history import Final, History, Meta, Op
from simulations.sim import Simulation
from simulations.workload import MIXES, Workload, keyspace
from tests.procs import ROOT, clean_env

LS0 = ("list", "ls0")
LIST_CHECKERS = ("list-converge", "list-pushes-kept", "list-replica-order", "list-no-interleave")
LIST_CANARIES = {
    "list-runs-by-arrival": "list-converge",
    "list-clear-drops-unobserved": "list-pushes-kept",
    "list-runs-newest-first": "list-replica-order",
    "list-push-new-major": "list-no-interleave",
}


# -- the workload ------------------------------------------------------------------------------
def test_the_workload_draws_every_list_op_with_traceable_values() -> None:
    keys = keyspace(3)
    assert keys["lists"] == ["ls0", "ls1"]
    w = Workload(4, random.Random(7), keys, classes=["lists"])
    drawn = [w.next_op() for _ in range(3_000)]
    assert {kind for kind, _, _ in drawn} == {name for name, _, _ in MIXES["lists"]}
    written: list[str] = []
    for kind, key, args in drawn:
        assert key in keys["lists"]
        if kind in ("lists.lpush", "lists.rpush"):
            assert 1 <= len(args["values"]) <= 3
            written += args["values"]
        elif kind in ("lists.set", "lists.insert"):
            written.append(args["element"])
        elif kind == "lists.move":
            assert args["destination"] in keys["lists"]
            assert {args["from_end"], args["to_end"]} <= {"left", "right"}
    assert len(written) == len(set(written)) > 1_000  # unique per write ...
    assert all(v.startswith("c4-") for v in written)  # ... and name the client
    # LREM, LINSERT's pivot and LPOS name values the client wrote to the key.
    named = [a.get("element", a.get("pivot")) for k, _, a in drawn if k == "lists.remove"]
    assert sum(v in written for v in named) > 0.9 * len(named)
    # The pops and trims outweigh the pushes enough for lists to stay small.
    kinds = Counter(kind for kind, _, _ in drawn)
    assert kinds["lists.trim"] + kinds["lists.delete"] > 30


def test_every_list_checker_has_a_canary() -> None:
    assert set(LIST_CHECKERS) <= set(CHECKERS)
    assert {CANARIES[c].checker for c in LIST_CANARIES} == set(LIST_CHECKERS)
    assert all(CANARIES[c].checker == want for c, want in LIST_CANARIES.items())


# -- the black-box rules on hand-made histories ---------------------------------------------------
def _op(
    kind: str,
    args: dict[str, Any],
    at: tuple[int, int | None],
    result: dict[str, Any] | None = None,
    *,
    key: str = "ls0",
    replica: str = "r0",
    status: str = "ok",
) -> Op:
    return Op(0, 0, kind, key, args, replica, at[0], at[1], status, result)


def _push(
    values: list[str], at: tuple[int, int], *, left: bool = False, replica: str = "r0", **kw: Any
) -> Op:
    kind = "lists.lpush" if left else "lists.rpush"
    return _op(kind, {"values": values}, at, {"length": len(values)}, replica=replica, **kw)


def _check(ops: list[Op], *finals: list[str] | dict[str, Any], key: str = "ls0") -> list[str]:
    """The list checkers' violations (checker/kind) of ``ops``, the final reads of the
    replicas given in order; a dict is a read result as is (not_found, wrong_type)."""
    history = History(keys={"lists": ["ls0", "ls1"]})
    for o in ops:
        history.add(o)
    final = Final()
    for i, got in enumerate(finals or ([],)):
        result = got if isinstance(got, dict) else {"values": got, "length": len(got)}
        final.reads[f"r{i}"] = {("lists", "ls0"): {"not_found": True}, ("lists", key): result}
    return [f"{v.checker}/{v.kind}" for v in check_lists(history, final)]


def test_a_push_nothing_could_have_removed_is_reported_lost() -> None:
    push = _push(["a"], (0, 10))
    assert _check([push], []) == ["list-pushes-kept/lost-push"]
    history = History(keys={"lists": ["ls0"]})
    history.add(push)
    final = Final(reads={"r0": {("lists", "ls0"): {"values": ["x"], "length": 1}}})
    (v,) = check_lists(history, final)
    assert "lists/ls0" in v.detail and "'a'" in v.detail and "at r0" in v.detail
    assert v.ops == [0]
    # An absent or wrong-typed final read holds nothing.
    assert _check([push], {"not_found": True}) == ["list-pushes-kept/lost-push"]
    assert _check([push], {"wrong_type": True}) == ["list-pushes-kept/lost-push"]
    # Present: nothing to report; a push whose outcome is unknown may not have happened.
    assert _check([push], ["a"]) == []
    assert _check([replace(push, status="unknown", result=None)], []) == []
    # RPUSHX of an absent list pushed nothing (length 0).
    pushx = _op("lists.rpush", {"values": ["a"], "exists": True}, (0, 10), {"length": 0})
    assert _check([pushx], []) == []


@pytest.mark.parametrize(
    ("remover", "excuses"),
    [
        (_op("lists.delete", {}, (20, 30), {"ok": True}), True),
        (_op("keys.delete", {}, (20, 30), {"deleted": True}), True),
        (_op("lists.delete", {}, (0, 5), {"ok": True}), False),  # finished before the push
        (_op("lists.delete", {}, (0, None), status="unknown"), True),  # may land any time
        (_op("lists.delete", {}, (20, 30), status="fail"), False),  # refused: did not happen
        (_op("lists.trim", {"start": 0, "stop": 0}, (20, 30), {"ok": True}), True),
        (_op("lists.set", {"index": 0, "element": "w"}, (20, 30), {"ok": True}), True),
        (_op("lists.lpop", {}, (20, 30), {"values": ["a"]}), True),
        (_op("lists.lpop", {}, (20, 30), {"values": ["b"]}), False),  # popped another
        (_op("lists.rpop", {"pop_count": 2}, (20, None), status="unknown"), True),
        (_op("lists.remove", {"rem_count": 0, "element": "a"}, (20, 30), {"removed": 1}), True),
        (_op("lists.remove", {"rem_count": 0, "element": "a"}, (20, 30), {"removed": 0}), False),
        (_op("lists.remove", {"rem_count": 0, "element": "b"}, (20, 30), {"removed": 1}), False),
        (_op("lists.move", {"destination": "ls1"}, (20, 30), {"value": "a"}), True),
        (_op("lists.move", {"destination": "ls1"}, (20, 30), {"value": "b"}), False),
        (_op("lists.move", {"destination": "ls1"}, (20, None), status="unknown"), True),
        (_op("lists.rpush", {"values": ["b"]}, (20, 30), {"length": 2}), False),
        (_op("lists.lpop", {}, (20, 30), {"values": ["a"]}, key="ls1"), False),  # another key
    ],
)
def test_a_push_is_lost_only_if_no_removal_could_have_taken_it(remover: Op, excuses: bool) -> None:
    history = History(keys={"lists": ["ls0", "ls1"]})
    for o in (_push(["a"], (10, 15)), remover):
        history.add(o)
    final = Final(reads={"r0": {}})  # both lists absent at the end
    lost = [v for v in check_lists(history, final) if "lists/ls0: 'a' is absent" in v.detail]
    assert [v.kind for v in lost] == ([] if excuses else ["lost-push"])


def test_a_moved_element_must_be_kept_at_its_destination() -> None:
    move = _op(
        "lists.move", {"destination": "ls1", "from_end": "left", "to_end": "left"}, (20, 30),
        {"value": "a"},
    )  # fmt: skip
    ops = [_push(["a"], (0, 10)), move]
    assert _check(ops, ["a"], key="ls1") == []
    assert _check(ops, [], key="ls1") == ["list-pushes-kept/lost-push"]


def test_pushes_of_one_replica_keep_their_order() -> None:
    a, b = _push(["a1", "a2"], (0, 10)), _push(["b"], (20, 30))
    assert _check([a, b], ["a1", "a2", "b"]) == []
    assert _check([a, b], ["b", "a1", "a2"]) == ["list-replica-order/push-order"]
    assert _check([a, b], ["a1", "b", "a2"]) == [
        "list-replica-order/push-order",
        "list-no-interleave/interleaved-push",
    ]
    assert _check([a], ["a2", "a1"]) == ["list-replica-order/push-order"]  # within one push
    # LPUSH: each value in turn at the head, the later push before the earlier.
    la, lb = _push(["a1", "a2"], (0, 10), left=True), _push(["b"], (20, 30), left=True)
    assert _check([la, lb], ["b", "a2", "a1"]) == []
    assert _check([la, lb], ["a2", "a1", "b"]) == ["list-replica-order/push-order"]
    assert _check([la], ["a1", "a2"]) == ["list-replica-order/push-order"]
    # Another replica, a concurrent push, the other end: no order to keep.
    assert _check([a, replace(b, replica="r1")], ["b", "a1", "a2"]) == []
    assert _check([a, replace(b, invoke_ms=5)], ["b", "a1", "a2"]) == []
    assert _check([a, lb], ["b", "a1", "a2"]) == []
    # An unknown first push proves nothing; an unknown second one that shows is checked.
    assert _check([replace(a, status="unknown"), b], ["b", "a1", "a2"]) == []
    assert _check([a, replace(b, status="unknown")], ["b", "a1", "a2"]) == [
        "list-replica-order/push-order"
    ]


def test_moved_and_repeated_values_are_not_held_to_their_push_order() -> None:
    a, b = _push(["a"], (0, 10)), _push(["b"], (20, 30))
    move = {"destination": "ls0", "from_end": "left", "to_end": "right"}
    moved = _op("lists.move", move, (40, 50), {"value": "a"})
    assert _check([a, b, moved], ["b", "a"]) == []  # "a" now is the moved element
    unknown = _op("lists.move", move, (40, None), status="unknown")
    assert _check([a, b, unknown], ["b", "a"]) == []  # it may have moved anything
    other = _op("lists.move", move, (40, 50), {"value": "z"})
    assert _check([a, b, other], ["b", "a", "z"]) == ["list-replica-order/push-order"]
    assert _check([a, b], ["b", "a", "a"]) == []  # "a" twice: which is which?


def test_the_values_of_one_push_are_contiguous() -> None:
    a, b = _push(["a1", "a2"], (0, 10)), _push(["b1", "b2"], (0, 10), replica="r1")
    assert _check([a, b], ["a1", "a2", "b1", "b2"]) == []
    assert _check([a, b], ["b1", "b2", "a1", "a2"]) == []
    assert _check([a, b], ["a1", "b1", "a2", "b2"]) == ["list-no-interleave/interleaved-push"] * 2
    assert _check([a, b], ["a1", "b1", "b2", "a2"]) == ["list-no-interleave/interleaved-push"]
    # An element LINSERTed between two of them is no push.
    ins = _op("lists.insert", {"where": "after", "pivot": "a1", "element": "x"}, (20, 30))
    ins.result = {"length": 5}
    assert _check([a, b, ins], ["a1", "x", "a2", "b1", "b2"]) == []


def test_the_order_rules_hold_at_every_whole_read() -> None:
    a, b = _push(["a1", "a2"], (0, 10)), _push(["b"], (0, 10), replica="r1")
    read = _op("lists.get", {}, (20, 30), {"values": ["a1", "b", "a2"], "length": 3})
    got = _check([a, b, read], ["a1", "a2", "b"])
    assert got == ["list-no-interleave/interleaved-push"]
    part = _op("lists.range", {"start": 0, "stop": 1}, (20, 30), {"values": ["a2", "a1"]})
    assert _check([a, b, part], ["a1", "a2", "b"]) == []  # a partial range: not a whole list


def test_replicas_that_answer_differently_are_reported() -> None:
    push = _push(["a", "b"], (0, 10))
    assert _check([push], ["a", "b"], ["a", "b"]) == []
    got = _check([push], ["a", "b"], ["b", "a"])
    assert got[0] == "list-converge/reads-differ"
    assert "list-replica-order/push-order" in got  # r1's order is the wrong one


# -- the white-box rules on hand-made deltas -----------------------------------------------------
ACTOR = "r0~i0"


def _executed(op: Op, delta: RList, seq: int) -> Op:
    """``op`` as executed at r0 (incarnation i0), its delta of ls0 committed as ``seq``."""
    op.meta = Meta(
        op.invoke_ms, op.invoke_ms, "i0", groups=[DeltaGroup((ACTOR, seq), {LS0: delta})]
    )
    op.meta.exec_seq = seq
    return op


def _white(ops: list[Op], state: RList, read: list[str] | None = None) -> list[str]:
    history = History(keys={"lists": ["ls0"]})
    for o in ops:
        history.add(o)
    values = state.values() if read is None else read
    final = Final(
        reads={"r0": {("lists", "ls0"): {"values": values, "length": len(values)}}},
        replica_states={"r0": {LS0: state}},
    )
    return [f"{v.checker}/{v.kind}" for v in check_lists(history, final)]


def _pushed_and_popped() -> tuple[list[Op], RList, RList]:
    """RPUSH a b, then LPOP (a), at r0: the ops, the list after the push, after the pop."""
    rl = RList()
    d1 = rl.push(ACTOR, ["a", "b"], left=False)
    pushed = rl.copy()
    d2, _ = rl.remove([rl.order[0]])
    ops = [
        _executed(_push(["a", "b"], (0, 10)), d1, 1),
        _executed(_op("lists.lpop", {}, (20, 30), {"values": ["a"]}), d2, 2),
    ]
    return ops, pushed, rl


def test_the_white_box_rules_hold_of_what_the_deltas_leave() -> None:
    ops, pushed, popped = _pushed_and_popped()
    assert _white(ops, popped.copy()) == []
    # The popped element is back: resurrected.
    assert _white(ops, pushed.copy()) == ["list-converge/resurrected-element"]
    # The remaining one is gone, though nothing removed it: lost (and lost-push, black-box).
    empty = popped.copy()
    empty.remove(list(empty.order))
    assert _white(ops, empty) == ["list-pushes-kept/lost-push", "list-pushes-kept/lost-element"]
    # An element no operation minted.
    extra = popped.copy()
    extra.push("r9~x", ["z"], left=False)
    assert _white(ops, extra) == ["list-converge/phantom-element"]
    # A read that is not the state in position order.
    got = _white(ops, pushed.copy(), read=["b", "a"])
    assert "list-converge/wrong-order" in got


def test_a_dot_minted_twice_leaves_only_the_black_box_rules() -> None:
    ops, _, popped = _pushed_and_popped()
    again = RList()
    d = again.push(ACTOR, ["c"], left=False)  # dot (r0~i0, 1) again: a crash took "a" back
    ops.append(_executed(_push(["c"], (40, 50)), d, 3))
    empty = popped.copy()
    empty.remove(list(empty.order))
    got = _white(ops, empty)
    assert "list-pushes-kept/lost-element" not in got
    assert got.count("list-pushes-kept/lost-push") == 2  # b and c


def _minted(pos: str, value: str) -> RList:
    return RList({pos: value}, CausalContext(cloud=[dot_of(pos)]), narrow=True)


def _runs_of_two(a_levels: list[tuple[int, int]], b_levels: list[tuple[int, int]]) -> list[str]:
    """r0 RPUSHes a1 then a2 (a run: a2's push found a1 at the tail), r1 b1 then b2, at
    positions (major, k) given; the checkers' verdict on the list holding all four."""
    ops: list[Op] = []
    state = RList()
    for rid, levels, x in (("r0", a_levels, "a"), ("r1", b_levels, "b")):
        actor = f"{rid}~i{rid[1]}"
        before: RList | None = None
        for i, (major, k) in enumerate(levels):
            pos, value = level(major, actor, k), f"{x}{i + 1}"
            push = _push([value], (10 * i, 10 * i + 5), replica=rid)
            o = _executed(push, _minted(pos, value), i + 1)
            assert o.meta is not None
            o.meta.incarnation, o.meta.before = actor[3:], before
            before = RList({pos: value}, CausalContext(cloud=[dot_of(pos)]))
            state.merge(_minted(pos, value))
            ops.append(o)
    return _white(ops, RList(dict(state.entries), state.ctx.copy()))


def test_the_white_box_order_rules_read_the_actor_and_its_runs() -> None:
    # One major per run (the real rule): a1 a2 b1 b2.
    assert _runs_of_two([(1, 1), (1, 2)], [(1, 1), (1, 2)]) == []
    # A new major per push: a1 b1 a2 b2, both runs broken (one value per push: only
    # the white-box runs span two pushes).
    assert (
        _runs_of_two([(1, 1), (2, 2)], [(1, 1), (2, 2)])
        == ["list-no-interleave/interleaved-run"] * 2
    )
    # Runs one after the other by major: a1 a2 b1 b2 with a new major each is fine.
    assert _runs_of_two([(1, 1), (2, 2)], [(3, 1), (4, 2)]) == []
    # A run ordered newest first: a2 a1 at the tail.
    got = _runs_of_two([(1, 1), (1, -2)], [(3, 1), (3, 2)])
    assert got == ["list-replica-order/push-order", "list-replica-order/element-order"]


# -- the canaries, white-box and black-box ---------------------------------------------------
def _canary_run(name: str, seed: int = 1) -> tuple[Simulation, Any, Final]:
    cfg = config_for(CampaignOptions(seed=seed, canary=name, duration_ms=1_500, replicas=3), seed)
    sim = Simulation(cfg)
    with CANARIES[name].patch():
        result = sim.run()
        final = sim.final_state()
    return sim, result, final


def _black_box(history: History, final: Final) -> tuple[History, Final]:
    """The history and final reads as real processes give them: no ``Meta``, no states.
    Real processes lose no data directory: here an operation whose effect a lost one
    may have undone is in doubt, and a replica that restarted empty is another one."""
    out = History(keys=history.keys, skew_slack_ms=history.skew_slack_ms)
    for o in history.ops:
        m = o.meta
        status = "unknown" if m is not None and m.possibly_lost else o.status
        replica = o.replica if m is None else f"{o.replica}~{m.incarnation}"
        out.ops.append(replace(o, meta=None, status=status, replica=replica))
    return out, Final(reads=final.reads, at_ms=final.at_ms)


@pytest.mark.parametrize(
    ("name", "white", "black"),
    [
        ("list-runs-by-arrival", "list-converge/wrong-order", "list-converge/reads-differ"),
        ("list-clear-drops-unobserved", "list-pushes-kept/lost-element", None),
        ("list-runs-newest-first", "list-replica-order/element-order",
         "list-replica-order/push-order"),
        ("list-push-new-major", "list-no-interleave/interleaved-run",
         "list-no-interleave/interleaved-push"),
    ],
)  # fmt: skip
def test_a_list_canary_is_caught_by_both_parts_of_its_checker(
    name: str, white: str, black: str | None
) -> None:
    sim, result, final = _canary_run(name)
    kinds = {f"{v.checker}/{v.kind}" for v in result.violations}
    assert white in kinds, sorted(kinds)
    details = [v.detail for v in result.violations if f"{v.checker}/{v.kind}" == white]
    assert all("lists/ls0" in d for d in details)
    if black is not None:
        blind = check_lists(*_black_box(sim.history, final))
        assert black in {f"{v.checker}/{v.kind}" for v in blind}


@pytest.mark.parametrize("name", sorted(LIST_CANARIES))
def test_the_clean_build_passes_the_runs_a_list_canary_fails(name: str) -> None:
    checked = 0
    for seed in (1, 2):
        cfg = config_for(
            CampaignOptions(seed=seed, canary=name, duration_ms=1_500, replicas=3), seed
        )
        cfg.canary = None  # the canary's configuration, without its patch
        sim = Simulation(cfg)
        result = sim.run()
        assert result.ok, [v.line()[:300] for v in result.violations[:5]]
        checked += sum(1 for o in sim.history.ops if o.kind.startswith("lists.") and o.acked)
    assert checked > 500


# -- campaigns ------------------------------------------------------------------------------
def _list_campaign(first: int, seeds: int, duration_ms: int) -> tuple[list[str], Counter[str]]:
    failures: list[str] = []
    seen: Counter[str] = Counter()
    for seed in range(first, first + seeds):
        opts = CampaignOptions(
            faults=list(FAULT_KINDS), duration_ms=duration_ms, key_classes=["lists"]
        )
        sim = Simulation(config_for(opts, seed))
        result = sim.run()
        final = sim.final_state()
        for rid in final.reads:
            for (ns, _), read in final.reads[rid].items():
                if ns == "lists":
                    seen["final elements"] += len(list_values(read))
        seen["black-box only"] += len(check_lists(*_black_box(sim.history, final)))
        if not result.ok:
            lines = "\n    ".join(v.line()[:300] for v in result.violations[:5])
            failures.append(f"seed {seed}: {repro_command(opts, seed)}\n    {lines}")
    return failures, seen


def test_a_campaign_of_list_seeds_with_every_fault_finds_no_violation() -> None:
    failures, seen = _list_campaign(700, 30, 3_000)
    assert not failures, "\n".join(failures)
    assert seen["black-box only"] == 0
    assert seen["final elements"] > 1_000  # the lists held something to check


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CRDTKV_SLOW") != "1", reason="set CRDTKV_SLOW=1")
@pytest.mark.parametrize("block", range(3))
def test_a_campaign_of_150_list_seeds_with_every_fault(block: int) -> None:
    failures, _ = _list_campaign(1 + 50 * block, 50, 4_000)
    assert not failures, "\n".join(failures)


# -- the command line -----------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulations", *args],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_line_narrows_the_workload_to_list_keys() -> None:
    out = _cli("run", "--seed", "5", "--key-classes", "lists", "--duration", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verdict: ok" in out.stdout
    bad = _cli("run", "--seed", "5", "--key-classes", "lists,queues")
    assert bad.returncode == 2
    assert "unknown key class(es) queues" in bad.stderr
    empty = _cli("run", "--seed", "5", "--key-classes", ",")
    assert empty.returncode == 2
    opts = CampaignOptions(key_classes=["lists", "sets"])
    assert repro_command(opts, 9).endswith("--key-classes lists,sets")
    assert config_for(opts, 9).key_classes == ["lists", "sets"]

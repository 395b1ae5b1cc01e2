"""Stability levels (``replication.reach``): what a replica knows beyond its peers,
how levels complete, when headers carry them, and their wire format."""

from __future__ import annotations

import msgpack
import pytest

from crdtkv.errors import CodecError
from replication import messages
from replication.messages import Header, Reply
from replication.reach import LEVELS_MAX, Level, PeerReport, complete_level, levels, needs_levels
from simulations.harness import LinkFaults, SimCluster


def report(rid: str, peers: list[str] | None, floor: dict[str, int], *reach: Level) -> PeerReport:
    return PeerReport(rid, None if peers is None else frozenset(peers), floor, dict(floor), reach)


def test_a_chain_end_completes_only_with_the_far_end_s_floor() -> None:
    # a - b - c, seen from a: level 1 covers a and b and knows c exists.
    b_level1 = Level(
        frozenset("abc"), frozenset("abc"), {"x": 1}, {"x": 3, "c": 2}
    )  # b's own level 1: complete, with c's floor in it
    b = report("b", ["a", "c"], {"x": 5})
    first = levels("a", ["b"], {"x": 7}, {"x": 7}, [b])
    assert [lv.complete for lv in first] == [False]  # b sent no level 1 yet
    assert first[0].covered == {"a", "b"} and first[0].members == {"a", "b", "c"}
    assert complete_level(first) is None

    b = report("b", ["a", "c"], {"x": 5}, b_level1)
    got = levels("a", ["b"], {"x": 7}, {"x": 7}, [b])
    assert [lv.complete for lv in got] == [False, True]
    assert got[1].floor == {"x": 1}  # the meet reaches c's floor through b
    assert got[1].applied == {"x": 7, "c": 2}  # and the join c's applied vector
    assert complete_level(got) is got[1]


def test_a_mesh_completes_at_level_1_and_its_stability_is_the_meet_of_its_peers() -> None:
    peers = [report("b", ["a", "c"], {"x": 4, "y": 1}), report("c", ["a", "b"], {"x": 2})]
    got = levels("a", ["b", "c"], {"x": 9, "y": 9}, {"x": 9, "y": 9}, peers)
    assert len(got) == 1 and got[0].complete
    assert got[0].floor == {"x": 2}  # y: 0 at c


def test_a_peer_that_sends_no_peers_is_taken_to_be_in_a_mesh_and_unheard_blocks_all() -> None:
    # Not heard yet: its floor is empty, so the (mesh) level is complete but
    # nothing is stable.
    got = levels("a", ["b"], {"x": 1}, {"x": 1}, [report("b", None, {})])
    level = complete_level(got)
    assert level is not None and level.floor == {}
    # An older replica (no peer list), heard: taken to peer with all of ours.
    old = report("b", None, {"x": 1})
    got = levels("a", ["b", "c"], {"x": 2}, {"x": 2}, [old, report("c", ["a", "b"], {"x": 1})])
    assert len(got) == 1 and got[0].complete and got[0].floor == {"x": 1}
    # But a peer that names a replica beyond ours leaves level 1 incomplete.
    far = report("c", ["a", "z"], {"x": 1})
    got = levels("a", ["b", "c"], {"x": 2}, {"x": 2}, [old, far])
    assert complete_level(got) is None


def test_a_single_replica_is_its_own_complete_level() -> None:
    got = levels("a", [], {"x": 3}, {"x": 3}, [])
    assert len(got) == 1 and got[0].complete and got[0].floor == {"x": 3}


def test_levels_stop_at_the_bound_in_a_chain_too_long() -> None:
    # An endless chain seen from one end: every level below is incomplete.
    def chain_level(k: int) -> Level:
        ids = frozenset(f"n{i}" for i in range(1, k + 2))
        return Level(ids, ids | {f"n{k + 2}"}, {}, {})

    b = report("n1", ["a", "n2"], {}, *(chain_level(k) for k in range(1, LEVELS_MAX + 2)))
    got = levels("a", ["n1"], {}, {}, [b])
    assert len(got) == LEVELS_MAX and complete_level(got) is None


def test_only_peers_that_can_need_them_get_levels() -> None:
    mesh = [report("b", ["a", "c"], {}), report("c", ["a", "b"], {})]
    assert not needs_levels("a", mesh, "b") and not needs_levels("a", mesh, "c")
    star_hub = [report("l1", ["hub"], {}), report("l2", ["hub"], {})]
    assert needs_levels("hub", star_hub, "l1")
    star_leaf = [report("hub", ["l1", "l2"], {})]
    assert needs_levels("l1", star_leaf, "hub")  # its own level 1 is not complete
    # Not heard yet: taken to be meshed with us, until its peer list says otherwise.
    assert not needs_levels("a", [report("b", None, {})], "b")


def test_a_header_with_levels_round_trips_and_a_mesh_header_carries_none() -> None:
    level = Level(frozenset("ab"), frozenset("abc"), {"a~1": 3}, {"a~1": 4, "c~2": 1})
    head = Header("a", "inc", {"a~1": 4}, None, ("b",), (level,))
    back = messages.decode(messages.encode(Reply(head, 7)))
    assert back.head == head
    legacy = Header("a", "inc", {"a~1": 4}, {"a~1": 2})
    assert messages.decode(messages.encode(Reply(legacy, 7))).head == legacy

    c = SimCluster(3, 1, faults=LinkFaults(5, 0))
    c.run_for(100)
    h = c.nodes["r0"].rep.header("r1")
    assert h.peers == ("r1", "r2") and h.reach == ()
    chain = SimCluster(
        3, 1, faults=LinkFaults(5, 0), topology={"r0": ["r1"], "r1": ["r0", "r2"], "r2": ["r1"]}
    )
    chain.run_for(100)
    h = chain.nodes["r1"].rep.header("r0")
    assert h.peers == ("r0", "r2") and h.reach and h.reach[-1].complete


def _with_head_vectors(vectors: object) -> bytes:
    return msgpack.packb(["reply", "a", "inc", vectors, 0, 0, [], [], False])


def test_malformed_levels_are_refused_before_anything_changes() -> None:
    good = [{"a~1": 1}, None, ["b"], []]
    assert messages.decode(_with_head_vectors(good)).head.peers == ("b",)
    bad = [
        [{"a~1": 1}, None, ["b"]],  # three fields
        [{"a~1": 1}, None, "b", []],  # peers not a list
        [{"a~1": 1}, None, ["b"], [[["a", "z"], ["a"], {}, {}]]],  # covers a non-member
        [{"a~1": 1}, None, ["b"], [[["a"], ["a"], {}]]],  # a level of three fields
        [{"a~1": 1}, None, ["b"], [[["a"], ["a"], {}, {}]] * (LEVELS_MAX + 1)],
        [{"a~1": 1}, None, [7], []],  # a peer id that is not a string
    ]
    for vectors in bad:
        with pytest.raises(CodecError):
            messages.decode(_with_head_vectors(vectors))

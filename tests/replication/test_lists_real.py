"""Lists across a real partition: three ``crdtkv serve`` processes, one cut off, healed.

The cluster is test_types_real.py's: real RocksDB, real HTTP replication,
every replica reaching each peer through a blocking proxy per directed link.
``r3_cut_off`` blocks every link to and from r3 (r1 and r2 still replicate
with each other), checks on leaving the block that the cut held (each side
has writes the other has not acknowledged), and heals.  Every test writes at
both sides, checks what each side reads while cut off, heals, waits until the
three agree (``converge``, bounded) and asserts the exact list, read at every
replica.

The rules under test are the list's conflict rules (``crdtkv.crdts.rlist``):
concurrent pushes at one end are all kept, each replica's run contiguous, in
one order everywhere; concurrent pops of one element both return it and
after healing it is gone once; DEL is observed-remove (a concurrent push
survives); LSET is last-writer-wins on the element and an element removed
concurrently stays removed; LMOVE is one delta group (atomic at a replica,
not across replicas).

One cluster serves the module (distinct keys per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crdtkv import Client, NotFound, WrongType
from crdtkv.errors import BadRequest
from tests.procs import server_group, wait_until
from tests.replication.real_cluster import CONVERGE_S, Key, converge, read
from tests.replication.test_types_real import (
    ProxiedCluster,
    after_a_pause,
    db,
    r3_cut_off,
    setup_everywhere,
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedCluster]:
    with server_group() as group:
        c = ProxiedCluster(group, tmp_path_factory.mktemp("lists"))
        try:
            yield c
        finally:
            group.close()  # the replicas first, so none talks to a closing proxy
            c.close()


def lst(name: str) -> Key:
    return ("lists", name)


def view(values: list[str]) -> dict[str, Any] | None:
    """What GET /v1/lists/{key} reads for ``values`` (None: the key is absent)."""
    return {"values": values, "length": len(values)} if values else None


def values_at(c: ProxiedCluster, rid: str, name: str) -> list[str]:
    with db(c.server(rid)) as x:
        out: list[str] = x.lists.values(name)
        return out


def wait_values(c: ProxiedCluster, rid: str, name: str, expected: list[str]) -> None:
    wait_until(
        lambda: values_at(c, rid, name) == expected,
        CONVERGE_S,
        what=f"list {name!r} to read {expected!r} at {rid}",
    )


def merged(c: ProxiedCluster, *names: str) -> dict[str, list[str]]:
    """Heal has happened: wait until the three agree, and the lists they agree on."""
    reads, _ = converge(c.servers, [lst(n) for n in names])
    out: dict[str, list[str]] = {}
    for n in names:
        body = reads[lst(n)]
        out[n] = [] if body is None else body["values"]
        assert body is None or body["length"] == len(body["values"]), body
    # The client reads the same at every replica (converge compared the raw bodies).
    for rid in ("r1", "r2", "r3"):
        for n in names:
            assert values_at(c, rid, n) == out[n], (rid, n)
    return out


def seed(c: ProxiedCluster, values: dict[str, list[str]], at: str = "r2") -> None:
    """RPUSH each list's values at ``at``, and wait until every replica has them."""
    with db(c.server(at)) as x:
        for name, vs in values.items():
            assert x.lists.rpush(name, *vs) == len(vs)
    reads = setup_everywhere(c, [lst(n) for n in values])
    for name, vs in values.items():
        assert reads[lst(name)] == view(vs)


def contiguous_runs(got: list[str], runs: list[list[str]]) -> list[int]:
    """Where each run starts in ``got``; AssertionError unless each is there, contiguous."""
    starts = []
    for run in runs:
        i = got.index(run[0])
        assert got[i : i + len(run)] == run, (got, run)
        starts.append(i)
    return starts


# -- pushes --------------------------------------------------------------------------------------


def test_lpush_on_one_side_and_rpush_on_the_other_are_all_kept(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-ends": ["base"], "l-ends-2": ["base"]})
    left = [f"r1-{i}" for i in range(5)]
    right = [f"r3-{i}" for i in range(5)]
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        for i, v in enumerate(left):  # one op per element: a run of pushes
            assert a.lists.lpush("l-ends", v) == i + 2
            assert z.lists.lpush("l-ends-2", v) == i + 2
        assert z.lists.rpush("l-ends", *right) == 6  # one op, five values
        assert a.lists.rpush("l-ends-2", *right) == 6
        assert values_at(cluster, "r3", "l-ends") == ["base", *right]
        wait_values(cluster, "r2", "l-ends", [*left[::-1], "base"])
    got = merged(cluster, "l-ends", "l-ends-2")
    # Each end has one writer: the order is forced.
    assert got["l-ends"] == got["l-ends-2"] == [*left[::-1], "base", *right]


def test_concurrent_runs_at_the_same_end_are_kept_contiguous(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-same-r": ["base"], "l-same-l": ["base"]})
    at_r1 = [f"r1-{i}" for i in range(6)]
    at_r2 = [f"r2-{i}" for i in range(3)]
    at_r3 = [f"r3-{i}" for i in range(6)]
    with r3_cut_off(cluster):
        with db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
            # Interleaved in time, one element per op, at both sides.
            for v1, v3 in zip(at_r1, at_r3, strict=True):
                a.lists.rpush("l-same-r", v1)
                z.lists.rpush("l-same-r", v3)
                z.lists.lpush("l-same-l", v3)
                a.lists.lpush("l-same-l", v1)
        # r2 (on r1's side) pushes after it has seen r1's run: its run follows r1's.
        wait_values(cluster, "r2", "l-same-r", ["base", *at_r1])
        wait_values(cluster, "r2", "l-same-l", [*at_r1[::-1], "base"])
        with db(cluster.server("r2")) as b:
            for v in at_r2:
                b.lists.rpush("l-same-r", v)
                b.lists.lpush("l-same-l", v)
        assert values_at(cluster, "r3", "l-same-r") == ["base", *at_r3]
        assert values_at(cluster, "r3", "l-same-l") == [*at_r3[::-1], "base"]
        wait_values(cluster, "r1", "l-same-r", ["base", *at_r1, *at_r2])
    got = merged(cluster, "l-same-r", "l-same-l")

    # Three runs (r1's, r2's and r3's), each contiguous; r2's after r1's at the tail (it
    # saw r1's run there) and before it at the head.  Where r3's lands among them is the
    # merge's choice, the same everywhere (``merged`` read it at every replica).
    tail = got["l-same-r"]
    assert sorted(tail) == sorted(["base", *at_r1, *at_r2, *at_r3])  # all kept, none twice
    assert tail[0] == "base"
    s1, s2, _ = contiguous_runs(tail, [at_r1, at_r2, at_r3])
    assert s1 < s2
    head = got["l-same-l"]
    assert sorted(head) == sorted(["base", *at_r1, *at_r2, *at_r3])
    assert head[-1] == "base"
    s1, s2, _ = contiguous_runs(head, [at_r1[::-1], at_r2[::-1], at_r3[::-1]])
    assert s2 < s1


# -- pops ----------------------------------------------------------------------------------------


def test_concurrent_pops_of_the_head_both_return_it_and_it_is_gone_once(
    cluster: ProxiedCluster,
) -> None:
    seed(cluster, {"l-pop": ["h", "m1", "m2", "m3", "t"], "l-pop-n": list("abcdef")})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        assert a.lists.lpop("l-pop") == ["h"]
        assert z.lists.lpop("l-pop") == ["h"]  # at-least-once: both sides return it
        assert z.lists.rpop("l-pop") == ["t"]
        # Overlapping pops with a count at both ends.
        assert a.lists.lpop("l-pop-n", 2) == ["a", "b"]
        assert z.lists.lpop("l-pop-n", 3) == ["a", "b", "c"]
        assert z.lists.rpop("l-pop-n", 1) == ["f"]
        assert a.lists.rpop("l-pop-n", 2) == ["f", "e"]
        assert values_at(cluster, "r1", "l-pop") == ["m1", "m2", "m3", "t"]
        assert values_at(cluster, "r3", "l-pop-n") == ["d", "e"]
        assert values_at(cluster, "r1", "l-pop-n") == ["c", "d"]
    got = merged(cluster, "l-pop", "l-pop-n")
    assert got["l-pop"] == ["m1", "m2", "m3"]  # h gone once, the others intact
    assert got["l-pop-n"] == ["d"]  # the union of what either side popped is gone


def test_pops_that_empty_the_list_on_both_sides_leave_it_absent(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-empty": ["x", "y"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        assert a.lists.lpop("l-empty", 5) == ["x", "y"]
        assert z.lists.rpop("l-empty") == ["y"]
        assert a.lists.lpop("l-empty") == []  # absent at r1 now
        assert a.lists.length("l-empty") == 0
        assert read(cluster.server("r1"), lst("l-empty")) is None
        with pytest.raises(NotFound):
            a.lists.set("l-empty", 0, "no")
        assert z.lists.values("l-empty") == ["x"]
    assert merged(cluster, "l-empty") == {"l-empty": []}
    assert read(cluster.server("r3"), lst("l-empty")) is None


# -- DEL racing a push -----------------------------------------------------------------------------


def test_del_racing_a_push_keeps_the_push(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-del-1": ["a", "b"], "l-del-2": ["a", "b"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        # The pushes first: a DEL that saw one (a leaky cut) would remove it.
        assert z.lists.rpush("l-del-1", "pushed-at-r3") == 3
        assert a.lists.lpush("l-del-2", "pushed-at-r1") == 3
        a.lists.delete("l-del-1")
        z.lists.delete("l-del-2")
        assert read(cluster.server("r1"), lst("l-del-1")) is None
        assert read(cluster.server("r3"), lst("l-del-2")) is None
        assert z.lists.values("l-del-1") == ["a", "b", "pushed-at-r3"]
    got = merged(cluster, "l-del-1", "l-del-2")
    assert got == {"l-del-1": ["pushed-at-r3"], "l-del-2": ["pushed-at-r1"]}
    # The survivor is an ordinary list again: pushes at either end go around it.
    with db(cluster.server("r2")) as b:
        assert b.lists.lpush("l-del-1", "new-head") == 2
        assert b.lists.rpush("l-del-1", "new-tail") == 3
    assert merged(cluster, "l-del-1")["l-del-1"] == ["new-head", "pushed-at-r3", "new-tail"]


# -- LINSERT racing LREM of its pivot ------------------------------------------------------------


def test_linsert_racing_lrem_of_its_pivot(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-ins-1": ["a", "p", "b", "c"], "l-ins-2": ["a", "b", "p", "c"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        # LINSERT at r1 before the pivot, LREM of the pivot at r3; and the mirror image.
        assert a.lists.insert("l-ins-1", "before", "p", "x") == 5
        assert z.lists.remove("l-ins-1", 0, "p") == 1
        assert z.lists.insert("l-ins-2", "after", "p", "y") == 5
        assert a.lists.remove("l-ins-2", 1, "p") == 1
        # The pivot is gone on the side that removed it: LINSERT finds nothing there.
        assert z.lists.insert("l-ins-1", "after", "p", "never") == -1
        assert a.lists.insert("l-ins-2", "before", "p", "never") == -1
        assert z.lists.insert("l-no-such-list", "before", "p", "never") == 0
        assert values_at(cluster, "r1", "l-ins-1") == ["a", "x", "p", "b", "c"]
        assert values_at(cluster, "r3", "l-ins-1") == ["a", "b", "c"]
    got = merged(cluster, "l-ins-1", "l-ins-2", "l-no-such-list")
    assert got["l-ins-1"] == ["a", "x", "b", "c"]
    assert got["l-ins-2"] == ["a", "b", "y", "c"]
    assert got["l-no-such-list"] == []


# -- LSET ----------------------------------------------------------------------------------------


def test_lset_racing_a_pop_of_the_element_leaves_it_removed(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-set-1": ["a", "b", "c"], "l-set-2": ["a", "b", "c"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        # The LSETs first: a pop that saw one (a leaky cut) would return the new value.
        a.lists.set("l-set-1", 0, "A")
        z.lists.set("l-set-2", -1, "C")
        assert z.lists.lpop("l-set-1") == ["a"]
        assert a.lists.rpop("l-set-2") == ["c"]
        assert values_at(cluster, "r1", "l-set-1") == ["A", "b", "c"]
        assert values_at(cluster, "r3", "l-set-2") == ["a", "b", "C"]
        with pytest.raises(BadRequest):
            z.lists.set("l-set-1", 2, "out of range")  # two elements left at r3
    got = merged(cluster, "l-set-1", "l-set-2")
    assert got == {"l-set-1": ["b", "c"], "l-set-2": ["a", "b"]}


def test_concurrent_lsets_of_one_element_have_one_lww_winner(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-lww-1": ["a", "b", "c"], "l-lww-2": ["a", "b", "c"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        a.lists.set("l-lww-1", 1, "r1")
        z.lists.set("l-lww-2", 1, "r3")
        after_a_pause()
        z.lists.set("l-lww-1", -2, "r3")  # the same element, from the tail
        a.lists.set("l-lww-2", 1, "r1")
    got = merged(cluster, "l-lww-1", "l-lww-2")
    assert got == {"l-lww-1": ["a", "r3", "c"], "l-lww-2": ["a", "r1", "c"]}


# -- LMOVE ---------------------------------------------------------------------------------------


def test_lmove_moves_one_element_into_exactly_one_list(cluster: ProxiedCluster) -> None:
    seed(cluster, {"l-src": ["a", "b", "c"], "l-dst": ["x"], "l-r3": ["r3"]})
    r2 = cluster.server("r2")
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        assert a.lists.move("l-src", "l-dst", "right", "left") == "c"
        assert a.lists.move("l-src", "l-new", "left", "right") == "a"  # creates the destination
        z.lists.rpush("l-r3", "more")  # r3 writes too, elsewhere: nobody else moves from l-src
        # At r2 the move arrives as one group: a batch read of both lists (one request,
        # read at one instant) never sees "c" in both, or in neither.
        with db(r2) as b:

            def moved() -> bool:
                src, dst = b.batch(
                    [{"op": "lists.get", "key": "l-src"}, {"op": "lists.get", "key": "l-dst"}]
                )
                assert ("c" in src["values"]) != ("c" in dst["values"]), (src, dst)
                return src["values"] == ["b"]

            wait_until(moved, CONVERGE_S, interval_s=0.005, what="the moves to reach r2")
        assert values_at(cluster, "r3", "l-src") == ["a", "b", "c"]
        assert read(cluster.server("r3"), lst("l-new")) is None
    got = merged(cluster, "l-src", "l-dst", "l-new", "l-r3")
    assert got == {"l-src": ["b"], "l-dst": ["c", "x"], "l-new": ["a"], "l-r3": ["r3", "more"]}


def test_concurrent_lmoves_of_one_element_move_it_at_least_once(cluster: ProxiedCluster) -> None:
    """LMOVE is a pop and a push: both sides pop the same tail (at-least-once), so it
    lands in both destinations and is gone from the source."""
    seed(cluster, {"l-msrc": ["a", "b", "c"]})
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        assert a.lists.move("l-msrc", "l-mdst-1") == "c"
        assert z.lists.move("l-msrc", "l-mdst-3") == "c"
        assert z.lists.move("l-msrc", "l-msrc", "left", "right") == "a"  # a rotation at r3
    got = merged(cluster, "l-msrc", "l-mdst-1", "l-mdst-3")
    assert got == {"l-msrc": ["b", "a"], "l-mdst-1": ["c"], "l-mdst-3": ["c"]}


# -- types -----------------------------------------------------------------------------------------


def test_a_list_and_a_hash_under_one_name_show_the_later_type(cluster: ProxiedCluster) -> None:
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        a.hashes.set("l-vs-hash", {"f": "hash at r1"})
        after_a_pause()
        z.lists.rpush("l-vs-hash", "list at r3")
        with pytest.raises(WrongType):
            a.lists.lpush("l-vs-hash", "no")
        with pytest.raises(WrongType):
            z.hashes.set("l-vs-hash", {"f": "no"})
    reads, _ = converge(cluster.servers, [("keys", "l-vs-hash"), lst("l-vs-hash")])
    assert reads[("keys", "l-vs-hash")] == {"type": "list", "ttl_ms": -1}
    assert reads[lst("l-vs-hash")] == view(["list at r3"])
    for s in cluster.servers:
        with Client([s.url]) as x:
            with pytest.raises(WrongType):
                x.hashes.get("l-vs-hash", "f")
            with pytest.raises(WrongType):
                x.hashes.set("l-vs-hash", {"f": "no"})
            with pytest.raises(BadRequest):
                x.lists.rpush("l-vs-hash")  # no values
            assert x.lists.range("l-vs-hash", 0, -1) == ["list at r3"]

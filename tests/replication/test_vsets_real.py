"""Vector sets across a real partition and real restarts (issue 17).

The cluster is test_types_real.py's: three ``crdtkv serve`` processes (real
RocksDB, real HTTP replication), every replica reaching each peer through a
blocking proxy per directed link.  ``r3_cut_off`` blocks every link to and
from r3, checks on leaving the block that the cut held, and heals.

The rules under test are the vector set's (``crdtkv.crdts.vset``):
- VADDs at both sides all survive; one vector (and one set of attributes)
  wins per element, the later write's (the replicas share this machine's
  clock, so a write made after a pause has the higher HLC);
- after healing every replica answers VSIM TRUTH identically (the exact
  scan breaks ties by element), and VSIM without TRUTH (the local ANN
  index) never answers an element the replica does not hold;
- presence is add-wins: a VREM racing a VSETATTR or VADD of the element
  loses, a VREM that has seen the write wins;
- a set created concurrently with two dimensions shows the earlier
  creation's; the other's elements are hidden from every read, count and
  search, and come back when the winner's elements are all removed;
- the index is derived state: a replica restarted (SIGTERM, kill -9) with a
  set large enough to be indexed in the background answers exactly at once,
  then from its index, and its exact answers are those it gave before.

One cluster serves the module (distinct keys per test).
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from crdtkv import Client
from crdtkv.errors import BadRequest
from tests.procs import server_group, wait_until
from tests.replication.real_cluster import CONVERGE_S, IDS, Key, converge, read
from tests.replication.test_types_real import (
    ProxiedCluster,
    after_a_pause,
    db,
    r3_cut_off,
    setup_everywhere,
)

BIG = 3_000  # > SYNC_BUILD_MAX (2,000): the node builds the index in the background
BIG_DIM = 16
INDEX_S = 60.0  # bound on a background build of BIG x BIG_DIM (it takes well under a second)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedCluster]:
    with server_group() as group:
        c = ProxiedCluster(group, tmp_path_factory.mktemp("vsets"))
        try:
            yield c
        finally:
            group.close()  # the replicas first, so none talks to a closing proxy
            c.close()


def vs(name: str) -> Key:
    return ("vsets", name)


def f32(values: list[float]) -> list[float]:
    """``values`` as the server stores and returns them (float32)."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def gauss(rng: random.Random, dim: int) -> list[float]:
    return f32([rng.gauss(0.0, 1.0) for _ in range(dim)])


def score(a: list[float], b: list[float]) -> float:
    """Redis's score (1: the same direction), computed independently of the server."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na = math.fsum(x * x for x in a)
    nb = math.fsum(y * y for y in b)
    return min(1.0, max(0.0, 1.0 - (1.0 - dot / math.sqrt(na * nb)) / 2.0))


def expected_truth(
    elements: dict[str, dict[str, Any]], query: list[float], count: int
) -> list[str]:
    """The exact answer's elements: best score first, ties by element."""
    ranked = sorted(elements, key=lambda e: (-score(elements[e]["vector"], query), e))
    return ranked[:count]


def vinfo(x: Client, name: str) -> dict[str, Any]:
    """VINFO through a batch (db.vsets.info returns None)."""
    (out,) = x.batch([{"op": "vsets.info", "key": name}])
    assert isinstance(out, dict), out
    return out


def search(
    c: ProxiedCluster, rid: str, name: str, query: list[float], *, count: int, truth: bool
) -> list[dict[str, Any]]:
    with db(c.server(rid)) as x:
        out: list[dict[str, Any]] = x.vsets.search(
            name, query, count=count, truth=truth, with_attributes=True
        )
        return out


def names(matches: list[dict[str, Any]]) -> list[str]:
    return [m["element"] for m in matches]


def elements_at(c: ProxiedCluster, rid: str, name: str) -> dict[str, dict[str, Any]]:
    got = read(c.server(rid), vs(name))  # GET /v1/vsets/{key} (db.vsets.get returns None)
    return {} if got is None else dict(got["elements"])


def same_truth_everywhere(
    c: ProxiedCluster, name: str, queries: list[list[float]], count: int
) -> list[list[dict[str, Any]]]:
    """The TRUTH answers to ``queries``, asserted identical (elements, scores,
    attributes) at every replica and equal to the exact ranking of the set."""
    elements = elements_at(c, "r1", name)
    answers = [search(c, "r1", name, q, count=count, truth=True) for q in queries]
    for rid in IDS[1:]:
        here = [search(c, rid, name, q, count=count, truth=True) for q in queries]
        assert here == answers, rid
    for q, answer in zip(queries, answers, strict=True):
        assert names(answer) == expected_truth(elements, q, count)
        for m in answer:
            assert m["score"] == pytest.approx(score(elements[m["element"]]["vector"], q))
            assert m["attributes"] == elements[m["element"]]["attributes"]
    return answers


def ann_within(c: ProxiedCluster, name: str, queries: list[list[float]], count: int) -> None:
    """ANN answers at every replica name only elements that replica holds, at most ``count``."""
    for rid in IDS:
        held = elements_at(c, rid, name)
        for q in queries:
            got = names(search(c, rid, name, q, count=count, truth=False))
            assert len(got) == min(count, len(held)), (rid, got)
            assert set(got) <= set(held), (rid, sorted(set(got) - set(held)))


# -- VADD at both sides --------------------------------------------------------------------------


def test_vadds_at_both_sides_converge_to_one_truth(cluster: ProxiedCluster) -> None:
    rng = random.Random(17)
    with db(cluster.server("r2")) as b:
        assert b.vsets.add("v-part", "base", [1.0, 0.0, 0.0, 0.0], attributes={"side": "r2"})
    setup_everywhere(cluster, [vs("v-part")])
    at_r1 = {f"a{i}": gauss(rng, 4) for i in range(6)}
    at_r3 = {f"z{i}": gauss(rng, 4) for i in range(6)}
    first, later = gauss(rng, 4), gauss(rng, 4)
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        for e, v in at_r1.items():
            assert a.vsets.add("v-part", e, v, attributes={"side": "r1"}) is True
        for e, v in at_r3.items():
            assert z.vsets.add("v-part", e, v) is True
        # One element written at both sides: r1 first, r3 after a pause (the later HLC) ...
        assert a.vsets.add("v-part", "shared", first, attributes={"side": "r1"}) is True
        after_a_pause()
        assert z.vsets.add("v-part", "shared", later, attributes={"side": "r3"}) is True
        # ... and another the other way round; the base element too, at r3 then r1.
        assert z.vsets.add("v-part", "shared-2", later, attributes={"side": "r3"}) is True
        assert z.vsets.add("v-part", "base", later) is False  # keeps base's attributes
        after_a_pause()
        assert a.vsets.add("v-part", "shared-2", first, attributes={"side": "r1"}) is True
        assert a.vsets.add("v-part", "base", first, attributes={"side": "r1"}) is False
        # The cut holds: each side holds only its own elements.
        assert set(elements_at(cluster, "r3", "v-part")) == {"base", "shared", "shared-2", *at_r3}
        wait_until(
            lambda: (
                set(elements_at(cluster, "r2", "v-part")) == {"base", "shared", "shared-2", *at_r1}
            ),
            CONVERGE_S,
            what="r1's elements to reach r2",
        )
        assert elements_at(cluster, "r3", "v-part")["base"]["attributes"] == {"side": "r2"}
    reads, _ = converge(cluster.servers, [vs("v-part")])
    got = reads[vs("v-part")]
    assert got["dim"] == 4
    assert got["card"] == len(got["elements"]) == 3 + len(at_r1) + len(at_r3)
    for e, v in [*at_r1.items(), *at_r3.items()]:
        assert got["elements"][e]["vector"] == v
    assert got["elements"]["a0"]["attributes"] == {"side": "r1"}
    assert got["elements"]["z0"]["attributes"] is None
    # The later write wins each element, vector and attributes alike.
    assert got["elements"]["shared"] == {"vector": later, "attributes": {"side": "r3"}}
    assert got["elements"]["shared-2"] == {"vector": first, "attributes": {"side": "r1"}}
    assert got["elements"]["base"] == {"vector": first, "attributes": {"side": "r1"}}
    for x in cluster.servers:
        with Client([x.url]) as y:
            assert y.vsets.vector("v-part", "shared") == later
            assert y.vsets.attributes("v-part", "shared") == {"side": "r3"}
            assert y.vsets.card("v-part") == got["card"]
    queries = [first, later, *(gauss(rng, 4) for _ in range(8))]
    answers = same_truth_everywhere(cluster, "v-part", queries, count=5)
    assert names(answers[1])[0] == "shared"  # later's own vector: score 1, first
    assert answers[1][0]["score"] == pytest.approx(1.0)
    # All of the set, and more than it holds: the whole ranking, the same everywhere.
    same_truth_everywhere(cluster, "v-part", queries[:3], count=50)
    ann_within(cluster, "v-part", queries, count=5)


# -- VREM racing VSETATTR and VADD -----------------------------------------------------------


def test_vrem_racing_vsetattr_or_vadd_keeps_the_element(cluster: ProxiedCluster) -> None:
    v = {f"e{i}": f32([float(i + 1), 1.0, -1.0, 0.5]) for i in range(4)}
    new_vec = f32([-2.0, 0.25, 3.0, 1.0])
    with db(cluster.server("r2")) as b:
        for e, vec in v.items():
            b.vsets.add("v-race", e, vec, attributes={"v": 0})
    setup_everywhere(cluster, [vs("v-race")])
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        # The writes first: a VREM that saw one (a leaky cut) would win.
        assert a.vsets.set_attributes("v-race", "e0", {"v": 1}) is True
        assert z.vsets.set_attributes("v-race", "e1", {"v": 3}) is True
        assert a.vsets.add("v-race", "e2", new_vec) is False
        assert z.vsets.remove("v-race", "e0") is True
        assert a.vsets.remove("v-race", "e1") is True
        assert z.vsets.remove("v-race", "e2") is True
        assert a.vsets.remove("v-race", "e3") is True  # nobody else touches e3
        assert a.vsets.set_attributes("v-race", "e3", {"v": 9}) is False  # gone here
        assert set(elements_at(cluster, "r3", "v-race")) == {"e1", "e3"}
        assert set(elements_at(cluster, "r1", "v-race")) == {"e0", "e2"}
        # ANN at each side never answers what that side removed.
        for rid, removed in (("r1", {"e1", "e3"}), ("r3", {"e0", "e2"})):
            for vec in v.values():
                got = names(search(cluster, rid, "v-race", vec, count=4, truth=False))
                assert not set(got) & removed, (rid, got)
    reads, _ = converge(cluster.servers, [vs("v-race")])
    got = reads[vs("v-race")]["elements"]
    assert got == {
        "e0": {"vector": v["e0"], "attributes": {"v": 1}},
        "e1": {"vector": v["e1"], "attributes": {"v": 3}},
        "e2": {"vector": new_vec, "attributes": {"v": 0}},
    }
    ann_within(cluster, "v-race", list(v.values()), count=4)
    same_truth_everywhere(cluster, "v-race", list(v.values()), count=4)

    # A VREM that has seen the write wins: remove e0 at r3, now that it holds e0's VSETATTR.
    with db(cluster.server("r3")) as z:
        assert z.vsets.remove("v-race", "e0") is True
    reads, _ = converge(cluster.servers, [vs("v-race")])
    assert set(reads[vs("v-race")]["elements"]) == {"e1", "e2"}
    for rid in IDS:
        got_ann = names(search(cluster, rid, "v-race", v["e0"], count=4, truth=False))
        assert sorted(got_ann) == ["e1", "e2"], rid
    # And the set's last elements removed at two replicas at once leave the key absent.
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        assert z.vsets.add("v-race", "e4", v["e3"]) is True  # so that r3 has a write to ship
        assert a.vsets.remove("v-race", "e1") and a.vsets.remove("v-race", "e2")
        assert z.vsets.remove("v-race", "e1") and z.vsets.remove("v-race", "e2")
        assert read(cluster.server("r1"), vs("v-race")) is None
    reads, _ = converge(cluster.servers, [vs("v-race")])
    assert reads[vs("v-race")]["elements"] == {"e4": {"vector": v["e3"], "attributes": None}}


# -- a dimension conflict ----------------------------------------------------------------------


def test_concurrent_creations_with_two_dimensions_show_the_earlier(
    cluster: ProxiedCluster,
) -> None:
    rng = random.Random(3)
    three = {f"d3-{i}": gauss(rng, 3) for i in range(4)}
    four = {f"d4-{i}": gauss(rng, 4) for i in range(5)}
    with r3_cut_off(cluster), db(cluster.server("r1")) as a, db(cluster.server("r3")) as z:
        for e, v in three.items():
            assert a.vsets.add("v-dim", e, v) is True
            if e == "d3-0":
                after_a_pause()  # r1's creation has the lower HLC
        for e, v in four.items():
            assert z.vsets.add("v-dim", e, v, attributes={"dim": 4}) is True
        assert z.vsets.dim("v-dim") == 4 and z.vsets.card("v-dim") == len(four)
        assert a.vsets.dim("v-dim") == 3
    reads, _ = converge(cluster.servers, [vs("v-dim")])
    got = reads[vs("v-dim")]
    assert got["dim"] == 3
    assert got["card"] == len(three)
    assert got["elements"] == {e: {"vector": v, "attributes": None} for e, v in three.items()}
    for x in cluster.servers:
        with Client([x.url]) as y:
            assert y.vsets.dim("v-dim") == 3
            assert y.vsets.card("v-dim") == len(three)
            info = vinfo(y, "v-dim")
            assert (info["dim"], info["card"]) == (3, len(three))
            assert y.vsets.contains("v-dim", "d4-0") is False
            assert y.vsets.vector("v-dim", "d4-0") is None
            assert y.vsets.attributes("v-dim", "d4-0") is None
            assert set(y.vsets.random("v-dim", 100)) == set(three)
            assert y.vsets.set_attributes("v-dim", "d4-1", {"x": 1}) is False  # hidden: absent
            with pytest.raises(BadRequest, match="dimension mismatch"):
                y.vsets.add("v-dim", "d4-new", four["d4-0"])
            with pytest.raises(BadRequest, match="dimension mismatch"):
                y.vsets.search("v-dim", four["d4-0"])
            with pytest.raises(BadRequest):
                y.vsets.similar("v-dim", "d4-0")  # not in the set
            for truth in (True, False):
                for q in [*three.values(), *(gauss(rng, 3) for _ in range(5))]:
                    found = names(y.vsets.search("v-dim", q, count=20, truth=truth))
                    assert sorted(found) == sorted(three), (x.replica_id, truth, found)
    same_truth_everywhere(cluster, "v-dim", [gauss(rng, 3) for _ in range(5)], count=3)

    # Remove every element of the winning dimension: the others become visible everywhere.
    with db(cluster.server("r2")) as b:
        for e in three:
            assert b.vsets.remove("v-dim", e) is True
    reads, _ = converge(cluster.servers, [vs("v-dim")])
    got = reads[vs("v-dim")]
    assert got["dim"] == 4
    assert got["elements"] == {e: {"vector": v, "attributes": {"dim": 4}} for e, v in four.items()}
    queries = [*four.values(), *(gauss(rng, 4) for _ in range(4))]
    same_truth_everywhere(cluster, "v-dim", queries, count=3)
    ann_within(cluster, "v-dim", queries, count=3)
    for x in cluster.servers:
        with Client([x.url]) as y, pytest.raises(BadRequest, match="dimension mismatch"):
            y.vsets.add("v-dim", "d3-0", three["d3-0"])


# -- ANN after removals, on a set indexed in the background -------------------------------------


def load(c: ProxiedCluster, rid: str, name: str, vectors: dict[str, list[float]]) -> None:
    """VADD every element at ``rid`` in batches of 1,000 ops."""
    items = list(vectors.items())
    with db(c.server(rid)) as x:
        for i in range(0, len(items), 1_000):
            ops = [
                {"op": "vsets.add", "key": name, "element": e, "vector": v, "attributes": {"i": j}}
                for j, (e, v) in enumerate(items[i : i + 1_000], start=i)
            ]
            results = x.batch(ops)
            assert all(r == {"added": True} for r in results), results[:3]


def remove_all(c: ProxiedCluster, rid: str, name: str, elements: list[str]) -> None:
    with db(c.server(rid)) as x:
        results = x.batch([{"op": "vsets.remove", "key": name, "element": e} for e in elements])
    assert all(r == {"removed": True} for r in results)


def wait_card(c: ProxiedCluster, name: str, card: int, rids: list[str] = IDS) -> None:
    for rid in rids:
        with db(c.server(rid)) as x:
            wait_until(
                lambda x=x: x.vsets.card(name) == card,
                CONVERGE_S,
                what=f"{name} to hold {card} elements at {rid}",
            )


def wait_indexed(c: ProxiedCluster, rid: str, name: str, card: int) -> dict[str, Any]:
    """Ask for an ANN answer (which starts the background build), wait until the
    replica's index is ready and holds ``card`` elements; its VINFO."""
    with db(c.server(rid)) as x:
        q = [1.0] * BIG_DIM
        x.vsets.search(name, q, count=1)

        def ready() -> dict[str, Any] | None:
            info: dict[str, Any] = vinfo(x, name)
            return info if info["index"] == "ready" else None

        info = wait_until(ready, INDEX_S, what=f"{name}'s index at {rid}")
        assert info["indexed"] == card == info["card"], info
        return info


def test_ann_never_answers_elements_removed_at_another_replica(cluster: ProxiedCluster) -> None:
    rng = random.Random(5)
    vectors = {f"b{i}": gauss(rng, BIG_DIM) for i in range(BIG)}
    load(cluster, "r1", "v-big", vectors)
    wait_card(cluster, "v-big", BIG)
    for rid in IDS:
        info = wait_indexed(cluster, rid, "v-big", BIG)
        assert info["quant"] == "q8"
    removed = [f"b{i}" for i in range(0, BIG, 7)]  # 429 of them, spread over the set
    kept = [e for e in vectors if e not in set(removed)]
    # Before the removals each would find itself first (sanity: the index answers).
    with db(cluster.server("r2")) as b:
        tops = [names(b.vsets.search("v-big", vectors[e], count=1))[0] for e in removed[:50]]
    assert sum(t == e for t, e in zip(tops, removed[:50], strict=False)) >= 45
    remove_all(cluster, "r1", "v-big", removed)
    wait_card(cluster, "v-big", len(kept))
    gone = set(removed)
    for rid in IDS:
        with db(cluster.server(rid)) as x:
            info = vinfo(x, "v-big")
            assert info["index"] == "ready" and info["indexed"] == len(kept), (rid, info)
            # The removed elements' own vectors: an index that kept them answers them first.
            for e in removed[:150]:
                got = x.vsets.search("v-big", vectors[e], count=10)
                assert len(got) == 10
                assert not gone & set(names(got)), (rid, e, names(got))
                assert got[0]["score"] < 1.0
            # Through a selective FILTER too (attributes "i": the element's number).
            for e in removed[:20]:
                i = int(e[1:])
                got = x.vsets.search(
                    "v-big", vectors[e], count=5, filter=f".i >= {i - 30} and .i <= {i + 30}"
                )
                assert got and not gone & set(names(got)), (rid, e, names(got))
            for e in kept[:20]:  # and a kept element still finds itself
                assert names(x.vsets.search("v-big", vectors[e], count=1)) == [e]


# -- restarts ----------------------------------------------------------------------------------


def kept_prefix(before: list[dict[str, Any]], gone: set[str]) -> list[dict[str, Any]]:
    return [m for m in before if m["element"] not in gone]


def test_a_restarted_replica_answers_exactly_at_once_then_from_its_index(
    cluster: ProxiedCluster,
) -> None:
    """r3 holds 3,000 elements with a ready index; it is stopped (SIGTERM, then
    kill -9), r1 removes elements meanwhile, and r3 starts again still cut off:
    it answers TRUTH exactly as before at once, ANN from an exact scan until its
    index is rebuilt, then from the index; healed, it catches up and no answer
    holds a removed element."""
    rng = random.Random(11)
    vectors = {f"r{i}": gauss(rng, BIG_DIM) for i in range(BIG)}
    load(cluster, "r2", "v-restart", vectors)
    wait_card(cluster, "v-restart", BIG)
    r3 = cluster.server("r3")
    wait_indexed(cluster, "r3", "v-restart", BIG)
    queries = [gauss(rng, BIG_DIM) for _ in range(12)]
    before = [search(cluster, "r3", "v-restart", q, count=10, truth=True) for q in queries]
    card = BIG
    removed: list[str] = []
    scans_seen = 0
    for kill in (False, True):
        cluster.cut_off("r3")
        try:
            if kill:
                r3.kill9()
            else:
                assert r3.stop() == 0
            batch = [f"r{i}" for i in range(len(removed), len(removed) + 40)]
            remove_all(cluster, "r1", "v-restart", batch)
            wait_card(cluster, "v-restart", card - len(batch), ["r1", "r2"])
            r3.start()
            with db(r3) as z:
                # At once, whatever its index's state: the exact answers it gave before
                # (less what it had caught up on before the restart).
                old = set(removed)
                now = [
                    z.vsets.search("v-restart", q, count=10, truth=True, with_attributes=True)
                    for q in queries
                ]
                for b, n in zip(before, now, strict=True):
                    assert kept_prefix(b, old) == n[: len(kept_prefix(b, old))]
                    assert not old & set(names(n))
                ann = z.vsets.search("v-restart", queries[0], count=10, with_attributes=True)
                if vinfo(z, "v-restart")["index"] != "ready":
                    scans_seen += 1  # no index yet when it answered: an exact scan
                    assert ann == now[0]
                assert not old & set(names(ann))
            wait_indexed(cluster, "r3", "v-restart", card)
            with db(r3) as z:
                hits = sum(
                    names(z.vsets.search("v-restart", vectors[e], count=1)) == [e]
                    for e in list(vectors)[300:350]
                )
                assert hits >= 45, hits
        finally:
            cluster.heal()
        removed += batch
        card -= len(batch)
        gone = set(removed)
        wait_card(cluster, "v-restart", card, ["r3"])
        with db(r3) as z:
            info = vinfo(z, "v-restart")
            assert info["index"] == "ready" and info["indexed"] == card, info
            for e in batch:  # caught up through its index: the removed are gone from it
                got = names(z.vsets.search("v-restart", vectors[e], count=10))
                assert len(got) == 10 and not gone & set(got), (e, got)
        for rid in IDS:
            for q, b in zip(queries, before, strict=True):
                got = search(cluster, rid, "v-restart", q, count=10, truth=True)
                assert kept_prefix(b, gone) == got[: len(kept_prefix(b, gone))], rid
                assert not gone & set(names(got))
    answers = [search(cluster, "r1", "v-restart", q, count=10, truth=True) for q in queries]
    for rid in IDS[1:]:
        assert [search(cluster, rid, "v-restart", q, count=10, truth=True) for q in queries] == (
            answers
        )
    print(f"ANN answers r3 gave by an exact scan right after a restart: {scans_seen} of 2")

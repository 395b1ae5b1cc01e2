"""The ANN index, the exact scan, VSIM and the background build, against a
stand-in set with VSet's hooks (tests/vectors/standin.py)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from crdtkv.errors import BadRequest
from crdtkv.vectors import search as search_mod
from crdtkv.vectors.ann import AnnIndex
from crdtkv.vectors.builder import IndexBuilder
from crdtkv.vectors.exact import ExactIndex, exact_score, redis_score
from crdtkv.vectors.search import PendingBuild, SetIndex, needs_background_build, vsim

from .standin import StandInVSet, f32

DIM = 32


def clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Gaussian clusters that overlap: noise as wide as the spread of the centres."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((20, dim))
    return (centres[rng.integers(0, 20, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def filled(n: int, seed: int = 1) -> tuple[StandInVSet, np.ndarray]:
    data = clustered(n, seed)
    vs = StandInVSet()
    for i, row in enumerate(data):
        vs.add(f"e{i}", row.tobytes(), json.dumps({"i": i, "tenth": i % 10 == 0}))
    return vs, data


@pytest.mark.parametrize("quant", ["noquant", "q8", "bin"])
def test_upsert_replaces_and_removed_elements_never_come_back(quant: str) -> None:
    data = clustered(600, 3)
    ann = AnnIndex(DIM, quant=quant)  # type: ignore[arg-type]
    for i, row in enumerate(data):
        ann.upsert(f"e{i}", row.tobytes())
    assert len(ann) == 600
    # Upsert replaces: e0 takes e1's vector and becomes its twin.
    ann.upsert("e0", data[1].tobytes())
    assert len(ann) == 600
    top = dict(ann.search(data[1].tobytes(), 2, ef=200))
    assert set(top) == {"e0", "e1"}
    assert top["e0"] == pytest.approx(1.0, abs=1e-3)
    # Remove most of the set, in many steps: none of them ever answers.
    removed: set[str] = set()
    rng = np.random.default_rng(5)
    for step in range(10):
        for i in rng.choice(600, 50, replace=False).tolist():
            ann.remove(f"e{i}")
            removed.add(f"e{i}")
        for q in data[step * 20 : step * 20 + 20]:
            got = [e for e, _ in ann.search(q.tobytes(), 20, ef=100)]
            assert not set(got) & removed
            assert len(got) == min(20, 600 - len(removed))
    assert len(ann) == 600 - len(removed)
    # A removed element added again is found again.
    back = sorted(removed)[0]
    ann.upsert(back, data[int(back[1:])].tobytes())
    assert ann.search(data[int(back[1:])].tobytes(), 1, ef=100)[0][0] == back


def test_scores_are_redis_scores() -> None:
    ex = ExactIndex(3)
    ex.upsert("same", f32([1, 0, 0]))
    ex.upsert("orth", f32([0, 5, 0]))
    ex.upsert("opp", f32([-2, 0, 0]))
    ex.upsert("zero", f32([0, 0, 0]))
    got = ex.search(f32([3, 0, 0]), 4)
    assert got == [("same", 1.0), ("orth", 0.5), ("zero", 0.5), ("opp", 0.0)]
    ann = AnnIndex(3, quant="noquant")
    for e in ("same", "orth", "opp"):
        v = ex.vector(e)
        assert v is not None
        ann.upsert(e, v.tobytes())
    assert [(e, round(s, 5)) for e, s in ann.search(f32([3, 0, 0]), 3)] == [
        ("same", 1.0),
        ("orth", 0.5),
        ("opp", 0.0),
    ]
    assert exact_score(f32([1, 1]), f32([1, 0])) == pytest.approx((1 + 2**-0.5) / 2)


def test_exact_answers_do_not_depend_on_insertion_order() -> None:
    data = clustered(500, 8)
    # Many exact ties: duplicated vectors under different names.
    pairs = [(f"e{i}", data[i % 100].tobytes()) for i in range(500)]
    a = ExactIndex.from_pairs(DIM, pairs)
    b = ExactIndex(DIM)
    for e, v in reversed(pairs):
        b.upsert(e, v)
    for q in data[:30]:
        assert a.search(q.tobytes(), 10) == b.search(q.tobytes(), 10)


def test_ann_recall_at_defaults_on_a_clustered_set() -> None:
    vs, _ = filled(search_mod.SYNC_BUILD_MAX)
    queries = clustered(100, 2)
    hits = 0
    for q in queries:
        truth = {e for e, _ in vsim(vs, q.tobytes(), count=10, truth=True)}
        got = {e for e, _ in vsim(vs, q.tobytes(), count=10)}
        hits += len(truth & got)
    assert isinstance(vs.ann, SetIndex)  # built on first use
    assert hits / 1000 >= 0.9


def test_filtered_search_returns_count_under_a_selective_filter() -> None:
    vs, data = filled(1500)
    q = data[7].tobytes()
    # 1 element in 100 passes: the graph's first candidates hold few of them.
    got = vsim(vs, q, count=10, filter=".i % 100 == 3")
    assert len(got) == 10
    assert all(int(e[1:]) % 100 == 3 for e, _ in got)
    assert got == vsim(vs, q, count=10, filter=".i % 100 == 3", truth=True)
    # Fewer matches than COUNT: all of them.
    few = vsim(vs, q, count=10, filter=".i < 4")
    assert sorted(e for e, _ in few) == ["e0", "e1", "e2", "e3"]
    # A tight FILTER-EF still answers COUNT (the exact scan finishes the job).
    assert len(vsim(vs, q, count=10, filter=".i % 100 == 3", filter_ef=20)) == 10
    # No attributes, no match.
    vs.add("bare", data[7].tobytes())
    assert "bare" not in {e for e, _ in vsim(vs, q, count=50, filter=".i >= 0")}


def test_vsim_follows_writes_and_rejects_bad_input() -> None:
    vs, data = filled(300)
    q = data[0].tobytes()
    assert vsim(vs, q, count=1)[0][0] == "e0"
    assert isinstance(vs.ann, SetIndex)
    vs.remove("e0")
    assert "e0" not in {e for e, _ in vsim(vs, q, count=300)}
    assert len(vsim(vs, q, count=1000)) == 299
    vs.add("new", q)
    assert vsim(vs, q, count=1) == [("new", 1.0)]
    with pytest.raises(BadRequest, match="dimension mismatch - got 3 but set has 32"):
        vsim(vs, f32([1, 2, 3]), count=1)
    with pytest.raises(BadRequest, match="syntax error in FILTER"):
        vsim(vs, q, count=1, filter=".a ==")
    assert vsim(StandInVSet(), q, count=3) == []


def test_large_set_waits_for_a_build_and_scans_exactly_meanwhile(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(search_mod, "SYNC_BUILD_MAX", 100)
    vs, data = filled(400)
    q = data[3].tobytes()
    assert needs_background_build(vs)
    exact_before = vsim(vs, q, count=5)
    assert vs.ann is None  # not built inline
    assert exact_before[0] == ("e3", 1.0)


def test_builder_replays_changes_made_during_the_build(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(search_mod, "SYNC_BUILD_MAX", 100)
    monkeypatch.setattr(search_mod, "BUILD_BATCH", 100)
    vs, data = filled(500)
    builder = IndexBuilder("k", vs, threads=1, log_every=0.0)
    pending = builder.pending
    # Changes after the snapshot, before and during the build.
    vs.remove("e1")
    vs.add("e2", data[100].tobytes(), json.dumps({"i": 2}))  # moved
    vs.add("late", data[5].tobytes(), json.dumps({"i": -1}))
    q1, q5 = data[1].tobytes(), data[5].tobytes()
    # Exact answers during the build see the changes.
    assert "e1" not in {e for e, _ in vsim(vs, q1, count=20, pending=pending)}
    assert {e for e, _ in vsim(vs, q5, count=2, pending=pending)} == {"e5", "late"}
    with caplog.at_level(logging.INFO, logger="crdtkv.vectors"):
        builder.start()
        vs.remove("e10")  # while the thread runs (or just after): replayed all the same
        assert builder.wait(60)
    assert builder.error is None
    assert any("index build 100/500 elements" in r.getMessage() for r in caplog.records)
    assert builder.attach(vs)
    assert isinstance(vs.ann, SetIndex)
    index = vs.ann
    assert "e1" not in index.ann and "e10" not in index.ann and "late" in index.ann
    assert len(index.ann) == len(index.exact) == len(vs) == 499
    assert "e1" not in {e for e, _ in vsim(vs, q1, count=50)}
    assert {e for e, _ in vsim(vs, q5, count=2, ef=200)} == {"e5", "late"}
    top = vsim(vs, data[100].tobytes(), count=2, ef=200)
    assert {e for e, _ in top} == {"e2", "e100"}


def test_pending_build_is_dropped_when_the_dimension_changed(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(search_mod, "SYNC_BUILD_MAX", 10)
    vs, _ = filled(50)
    pending = PendingBuild(vs)
    pending.run()
    other = StandInVSet()
    other.add("x", f32([1, 2, 3]))
    assert not pending.attach(other)
    assert other.ann is None


def test_snapshot_save_and_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = clustered(800, 4)
    ann = AnnIndex(DIM)
    ann.add_batch([f"e{i}" for i in range(800)], data)
    ann.remove("e3")
    path = str(tmp_path / "idx")
    ann.save(path)
    for view in (False, True):
        back = AnnIndex.load(path, view=view)
        assert len(back) == 799 and back.quant == "q8" and back.m == 16
        for q in data[:20]:
            assert back.search(q.tobytes(), 5) == ann.search(q.tobytes(), 5)
    loaded = AnnIndex.load(path)
    loaded.upsert("e3", data[3].tobytes())
    assert loaded.search(data[3].tobytes(), 1)[0][0] == "e3"


def _cos_reference(a: list[float], b: list[float]) -> float:
    """Cosine with every product and sum in Python floats, each sum rounded once."""
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.fsum(x * x for x in a), math.fsum(y * y for y in b)
    return 0.0 if na == 0.0 or nb == 0.0 else dot / math.sqrt(na * nb)


def test_exact_scores_are_the_exactly_rounded_cosine() -> None:
    """The score is a function of the bytes alone (every replica agrees), down to the
    last bit, for any scale a float32 vector can have: subnormal to near its maximum."""
    rng = np.random.default_rng(11)
    for i in range(3_000):
        n = int(rng.integers(1, 200))
        scale = float(10 ** rng.uniform(-44, 37))
        a, b = ((rng.standard_normal(n) * scale).astype(np.float32) for _ in range(2))
        if i % 7 == 0:
            b[: n // 2] = 0.0  # sparse, and all zero when n is 1
        want = redis_score(_cos_reference(a.tolist(), b.tolist()))
        assert exact_score(a.tobytes(), b.tobytes()) == want, (n, scale)

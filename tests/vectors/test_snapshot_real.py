"""A large vector set's index across restarts, with real processes: a clean stop
saves a snapshot of the index, the next start loads it and brings it up to date
with the state (which may have moved on after a kill -9), and a snapshot that
does not fit is not used."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from crdtkv import Client
from crdtkv.vectors.search import SYNC_BUILD_MAX
from tests.procs import Server, server_group, wait_until

N = SYNC_BUILD_MAX + 1_000  # large enough for the background path
DIM = 8


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with server_group() as g:
        yield g.add(Server("v1", tmp_path / "v1"))


def vectors(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, DIM))
    return (centers[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(np.float32)


def fill(db: Client, n: int) -> np.ndarray:
    vecs = vectors(1, n)
    for lo in range(0, n, 500):
        ops = [
            {"op": "vsets.add", "key": "big", "element": f"e{i}", "vector": vecs[i].tolist()}
            for i in range(lo, min(n, lo + 500))
        ]
        assert all("added" in r for r in db.batch(ops))
    return vecs


def ready(db: Client) -> bool:
    info = db.vsets.info("big")
    return bool(info["index"] == "ready" and info["indexed"] == info["card"])


def elements(matches: list[dict[str, object]]) -> list[object]:
    return [m["element"] for m in matches]


def test_a_clean_stop_saves_the_index_and_the_next_start_loads_and_updates_it(
    server: Server,
) -> None:
    server.start()
    queries = vectors(2, 20)
    with Client([server.url]) as db:
        fill(db, N)
        db.vsets.search("big", queries[0].tolist())  # no index yet: asks for a build
        wait_until(lambda: ready(db), 120, what="the background build")
        before = [elements(db.vsets.search("big", q.tolist(), count=10)) for q in queries]
    assert server.stop(signal.SIGTERM) == 0
    assert "index snapshot saved" in server.log_tail(40)
    snapshot_files = list((server.data_dir / "vset-index").glob("*.usearch*"))
    assert len(snapshot_files) == 3, snapshot_files  # the graph, its labels, the digests

    server.start()
    with Client([server.url]) as db:
        wait_until(lambda: ready(db), 60, what="the snapshot load")
        assert "index snapshot loaded" in server.log_tail(40)
        assert "index build started" not in server.log_tail(40).split("--- start 1 ---")[-1]
        after = [elements(db.vsets.search("big", q.tolist(), count=10)) for q in queries]
        assert after == before  # the same graph answers the same
        # The state moves on, then the process dies without saving.
        for i in range(0, 300):
            db.vsets.remove("big", f"e{i}")
        moved = vectors(3, 100)  # new vectors, from elsewhere
        for i in range(300, 400):
            db.vsets.add("big", f"e{i}", moved[i - 300].tolist())
    server.kill9()

    server.start()
    with Client([server.url]) as db:
        wait_until(lambda: ready(db), 60, what="the stale snapshot's load")
        tail = server.log_tail(60).split("--- start 2 ---")[-1]
        assert "index snapshot loaded" in tail and "400 brought up to date" in tail, tail
        assert db.vsets.card("big") == N - 300
        removed = {f"e{i}" for i in range(300)}
        for q in [*queries, *vectors(3, 10)]:
            got = elements(db.vsets.search("big", q.tolist(), count=50))
            assert not removed & set(got)
            truth = elements(db.vsets.search("big", q.tolist(), count=10, truth=True))
            assert len(set(got) & set(truth)) >= 8  # the updated graph finds the moved ones


def test_a_snapshot_that_does_not_fit_is_not_used(server: Server) -> None:
    server.start()
    with Client([server.url]) as db:
        fill(db, N)
        db.vsets.search("big", vectors(2, 1)[0].tolist())
        wait_until(lambda: ready(db), 120, what="the background build")
    assert server.stop(signal.SIGTERM) == 0
    [graph] = (server.data_dir / "vset-index").glob("*.usearch")
    Path(str(graph) + ".digests").write_bytes(b"\x81\xa6format\x63")  # another format
    server.start()
    with Client([server.url]) as db:
        wait_until(lambda: ready(db), 120, what="the rebuild")
        tail = server.log_tail(60).split("--- start 1 ---")[-1]
        assert "index snapshot not used" in tail and "index build started" in tail, tail
        q = vectors(2, 1)[0].tolist()
        assert (
            elements(db.vsets.search("big", q, count=5, truth=True))[0]
            == elements(db.vsets.search("big", q, count=5))[0]
        )

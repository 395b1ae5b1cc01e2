"""Vector-set index at restart: build from scratch vs load a usearch snapshot.

    .venv/bin/python benchmarks/vset_index_bench.py --sizes 100000,300000,1000000

For each size N (vectors of 128 dimensions, clustered Gaussians with overlap:
1,000 centres, per-point noise as large as the spread of the centres, seeded
numpy), with crdtkv.vectors at its defaults (q8, M 16, EF construction 200):

- ``exact_load_s``: the exact scan's rows from the (element, bytes) pairs, what
  a restart can serve from at once; ``exact_query_ms``: one exact top-10 query;
- ``build_s``: the HNSW index built from scratch, one process, every core;
- ``save_s``, ``load_s`` (usearch restore into memory), ``view_s`` (memory map);
- ``memory``: usearch's own figure and the process RSS growth over the build;
- recall@10 against the exact top-10 of 1,000 queries at search EF 100 (the
  default), 200, 400, and p50 of a single query in-process.

Writes ``benchmarks/results/vset_index.json``.  Times move with the machine's
load (2 shared cores here): compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crdtkv.vectors.ann import AnnIndex
from crdtkv.vectors.exact import ExactIndex
from crdtkv.vectors.search import BUILD_BATCH

DIM = 128
CENTRES = 1_000
QUERIES = 1_000
K = 10
OUT = Path(__file__).resolve().parent / "results" / "vset_index.json"


def clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((CENTRES, DIM)).astype(np.float32)
    which = rng.integers(0, CENTRES, n)
    return (centres[which] + rng.standard_normal((n, DIM)).astype(np.float32)).astype(np.float32)


def truth(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    dn = data / np.linalg.norm(data, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.empty((len(queries), K), dtype=np.int64)
    for s in range(0, len(queries), 100):
        sims = qn[s : s + 100] @ dn.T
        top = np.argpartition(-sims, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        out[s : s + 100] = np.take_along_axis(top, order, axis=1)
    return out


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def recall(ann: AnnIndex, queries: np.ndarray, gt: np.ndarray, ef: int) -> tuple[float, float]:
    hits = 0
    lat = []
    for i, q in enumerate(queries):
        qb = q.tobytes()
        t0 = time.perf_counter()
        res = ann.search(qb, K, ef)
        lat.append(time.perf_counter() - t0)
        got = {int(e) for e, _ in res}
        hits += len(got & set(gt[i].tolist()))
    return hits / (len(queries) * K), statistics.median(lat) * 1000


def run(n: int, quant: str) -> dict[str, object]:
    print(f"== N={n:,} x {DIM}, quant {quant}", flush=True)
    data = clustered(n, seed=1)
    queries = clustered(QUERIES, seed=2)
    names = [str(i) for i in range(n)]
    t0 = time.perf_counter()
    gt = truth(data, queries)
    truth_s = time.perf_counter() - t0

    pairs = [(names[i], data[i].tobytes()) for i in range(n)]
    t0 = time.perf_counter()
    exact = ExactIndex.from_pairs(DIM, pairs)
    exact_load_s = time.perf_counter() - t0
    exact.search(queries[0].tobytes(), K)  # warm-up (BLAS threads)
    t0 = time.perf_counter()
    for q in queries[:20]:
        exact.search(q.tobytes(), K)
    exact_query_ms = (time.perf_counter() - t0) / 20 * 1000
    del exact, pairs

    rss0 = rss_mb()
    ann = AnnIndex(DIM, quant=quant)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    with tqdm(total=n, unit="vec", mininterval=5) as bar:
        for s in range(0, n, BUILD_BATCH):
            chunk = data[s : s + BUILD_BATCH]
            ann.add_batch(names[s : s + len(chunk)], chunk, threads=0)
            bar.update(len(chunk))
    build_s = time.perf_counter() - t0
    rss_build = rss_mb() - rss0
    mem = ann.memory_usage()

    rec = {}
    p50 = {}
    for ef in (100, 200, 400):
        r, lat = recall(ann, queries, gt, ef)
        rec[str(ef)] = round(r, 4)
        p50[str(ef)] = round(lat, 3)
        print(f"   recall@10 EF {ef}: {r:.4f}  p50 {lat:.3f} ms", flush=True)

    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        path = os.path.join(tmp, "idx.usearch")
        t0 = time.perf_counter()
        ann.save(path)
        save_s = time.perf_counter() - t0
        size = os.path.getsize(path) + os.path.getsize(path + ".labels")
        del ann
        t0 = time.perf_counter()
        loaded = AnnIndex.load(path)
        load_s = time.perf_counter() - t0
        r_loaded, _ = recall(loaded, queries[:200], gt[:200], 100)
        del loaded
        t0 = time.perf_counter()
        viewed = AnnIndex.load(path, view=True)
        view_s = time.perf_counter() - t0
        del viewed
    out = {
        "n": n,
        "dim": DIM,
        "quant": quant,
        "m": 16,
        "ef_construction": 200,
        "cpus": os.cpu_count(),
        "truth_s": round(truth_s, 2),
        "exact_load_s": round(exact_load_s, 3),
        "exact_query_ms": round(exact_query_ms, 2),
        "build_s": round(build_s, 1),
        "build_vectors_per_s": round(n / build_s),
        "usearch_memory_mb": round(mem / 2**20, 1),
        "rss_growth_build_mb": round(rss_build, 1),
        "snapshot_bytes": size,
        "save_s": round(save_s, 2),
        "load_s": round(load_s, 2),
        "view_s": round(view_s, 3),
        "recall_at_10": rec,
        "recall_at_10_after_load_ef100": round(r_loaded, 4),
        "query_p50_ms": p50,
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,300000")
    ap.add_argument("--quant", default="q8", choices=["noquant", "q8", "bin"])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    results = []
    prior: list[dict[str, object]] = []
    if Path(args.out).exists():
        prior = json.loads(Path(args.out).read_text()).get("runs", [])
    for n in [int(x) for x in args.sizes.split(",")]:
        results.append(run(n, args.quant))
        keep = [
            r for r in prior if (r["n"], r["quant"]) not in {(x["n"], x["quant"]) for x in results}
        ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"runs": sorted(keep + results, key=lambda r: (str(r["quant"]), int(r["n"])))},
                indent=1,
            )  # type: ignore[call-overload]
            + "\n"
        )


if __name__ == "__main__":
    main()

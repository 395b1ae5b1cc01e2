"""Start-up at 1M and 10M small keys, and memory per small key against Redis.

    .venv/bin/python benchmarks/keyspace_bench.py --startup 1000000 10000000
    .venv/bin/python benchmarks/keyspace_bench.py --memory 200000
    .venv/bin/python benchmarks/keyspace_bench.py --startup 1000000 --memory 200000 --json out.json

``--startup N``: builds a data directory of N string keys (a 10-byte value each)
by writing the storage records directly with the project's own code
(``crdtkv.replica.records``, ``RocksStorage``): not through the API, which
would take hours at 10M on this machine.  Each key has the two records a
``SET`` leaves (its string and its metadata), encoded once by ``codec.pack``
and repeated with each key's value.  Then it times ``crdtkv serve`` on the
directory from the spawn to the first 200 on ``/healthz``: a start that reads
the records (the first, and any after a crash), a clean stop (which saves the
keyspace snapshot), and a start that loads the snapshot; each start then reads
one key and writes one.

``--memory N``: for each kind of small key (a 10-byte string, a counter, a set
of 3 members), loads N keys into a fresh ``crdtkv serve`` through ``/v1/batch``
(MessagePack, 1,000 ops a batch) and into a fresh ``redis-server`` through
redis-py pipelines, and reports the server's RSS growth per key (after the
checkpoint that follows the load) and Redis's ``used_memory`` growth per key
(and its RSS growth), with an in-process breakdown of a crdtkv key's bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from startup import Server, http_json, settled_rss, wait_healthz, warm_up

from crdtkv.crdts import (
    KeyMeta,
    NumericRegister,
    codec,
)
from crdtkv.crdts.causal import CausalContext
from crdtkv.crdts.hlc import Timestamp
from crdtkv.replica import records as rec
from crdtkv.replica.persist import load_replica
from crdtkv.storage.base import WriteBatch
from crdtkv.storage.rocks import RocksStorage
from crdtkv.tools.bench.fetch import MSGPACK_TYPE, RawFetcher, Request
from crdtkv.tools.bench.machine import proc_rss_kb
from crdtkv.tools.procs import free_port

VALUE = "0123456789"  # 10 bytes
MEMBERS = ["alpha", "bravo", "charlie"]


def key_name(i: int) -> str:
    return f"key:{i:09d}"


# -- a data directory written directly -------------------------------------------------------------
def build_dir(path: Path, n: int, replica_id: str = "r1") -> float:
    """N string keys as the records a SET leaves, written directly; the seconds it took."""
    t0 = time.monotonic()
    with RocksStorage(path) as storage:
        load_replica(storage, replica_id, "build")
        actor = f"{replica_id}~build"
        ts = Timestamp(1_767_225_600_000, 0, actor)
        reg = NumericRegister()
        reg.assign(actor, ts, "\x00" * len(VALUE))
        blob = codec.pack(reg)
        marker = msgpack.packb("\x00" * len(VALUE), use_bin_type=True)
        assert blob.endswith(marker)
        head = blob[: -len(marker)]
        meta = KeyMeta()
        meta.stamp("string", ts)
        meta_blob = codec.pack(meta)
        step = 50_000
        for lo in range(0, n, step):
            batch = WriteBatch()
            for i in range(lo, min(n, lo + step)):
                name = key_name(i).encode()
                value = f"{i % 10**10:010d}"
                batch.put("states", b"string/" + name, head + msgpack.packb(value))
                batch.put("states", b"meta/" + name, meta_blob)
            storage.write(batch, sync=False)
            if lo and not lo % 1_000_000:
                print(f"  built {lo:,} keys", file=sys.stderr, flush=True)
        applied = CausalContext()
        final = WriteBatch()
        final.put("meta", rec.META_APPLIED, rec.encode_applied(applied))
        final.put("meta", rec.META_HLC, rec.pack(ts.wall_ms))
        storage.write(final, sync=True)
    return time.monotonic() - t0


def _start(server: Server) -> dict[str, float]:
    t0 = time.monotonic()
    server.spawn()
    healthz = wait_healthz(server.url, t0)
    probe = key_name(7)
    got = http_json("GET", f"{server.url}/v1/registers/{probe}")
    if got.get("value") != "0000000007":
        raise RuntimeError(f"{probe}: unexpected {got!r}")
    http_json("PUT", f"{server.url}/v1/registers/written-after-start", {"value": 1})
    first = time.monotonic() - t0
    return {"healthz_s": round(healthz, 2), "first_read_and_write_s": round(first, 2)}


def startup(n: int, work: Path) -> dict[str, Any]:
    data = work / f"start-{n}"
    out: dict[str, Any] = {"keys": n}
    out["build_s"] = round(build_dir(data, n), 1)
    server = Server(data, free_port(), "fsync", work / f"start-{n}.log")
    try:
        out["from_records"] = _start(server)
        out["from_records"]["rss_mb"] = round(settled_rss(server.pid) / 1024)
        out["stop_s"] = round(server.stop(), 2)
        snap = data / "keyspace.snapshot"
        out["snapshot_mb"] = round(snap.stat().st_size / 2**20, 1) if snap.exists() else None
        out["from_snapshot"] = _start(server)
        out["from_snapshot"]["rss_mb"] = round(settled_rss(server.pid) / 1024)
        server.kill()  # kill -9: the next start reads the records again
        out["after_kill_9"] = _start(server)
        server.stop()
    finally:
        server.kill()
        shutil.rmtree(data, ignore_errors=True)
    return out


# -- memory per key --------------------------------------------------------------------------------
def _ops(kind: str, lo: int, hi: int) -> list[dict[str, Any]]:
    if kind == "string":
        return [{"op": "registers.set", "key": key_name(i), "value": VALUE} for i in range(lo, hi)]
    if kind == "counter":
        return [{"op": "counters.incr", "key": key_name(i), "delta": 12345} for i in range(lo, hi)]
    return [{"op": "sets.add", "key": key_name(i), "members": MEMBERS} for i in range(lo, hi)]


async def _load(url: str, kind: str, n: int, batch: int = 1000, connections: int = 4) -> None:
    next_key = 0

    async def worker() -> None:
        nonlocal next_key
        fetcher = RawFetcher(url, None, 120.0)
        try:
            while next_key < n:
                lo, next_key = next_key, min(n, next_key + batch)
                body = msgpack.packb({"ops": _ops(kind, lo, next_key)}, use_bin_type=True)
                status, _, raw = await fetcher.fetch(
                    Request("POST", "/v1/batch", body, next_key - lo, MSGPACK_TYPE)
                )
                if status != 200:
                    raise RuntimeError(f"batch failed: HTTP {status} {raw[:200]!r}")
        finally:
            await fetcher.close()

    await asyncio.gather(*(worker() for _ in range(connections)))


def crdtkv_memory(kind: str, n: int, work: Path) -> dict[str, Any]:
    data = work / f"mem-{kind}"
    server = Server(data, free_port(), "fsync", work / f"mem-{kind}.log")
    try:
        server.spawn()
        wait_healthz(server.url, time.monotonic())
        warm_up(server.url)
        base = settled_rss(server.pid)
        t0 = time.monotonic()
        asyncio.run(_load(server.url, kind, n))
        load_s = time.monotonic() - t0
        time.sleep(6)  # the checkpoint after the load (every 5 s) cools the keys
        after = settled_rss(server.pid, 2.0)
        server.stop()
        server.spawn()
        wait_healthz(server.url, time.monotonic())
        restarted = settled_rss(server.pid)
        server.stop()
    finally:
        server.kill()
        shutil.rmtree(data, ignore_errors=True)
    return {
        "load_ops_s": round(n / load_s),
        "rss_bytes_per_key": round((after - base) * 1024 / n),
        "rss_after_restart_bytes_per_key": round((restarted - base) * 1024 / n),
    }


def redis_memory(kind: str, n: int, work: Path) -> dict[str, Any]:
    import redis

    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        info0 = client.info("memory")
        for lo in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for i in range(lo, min(n, lo + 1000)):
                if kind == "string":
                    pipe.set(key_name(i), VALUE)
                elif kind == "counter":
                    pipe.incrby(key_name(i), 12345)
                else:
                    pipe.sadd(key_name(i), *MEMBERS)
            pipe.execute()
        info1 = client.info("memory")
        rss_kb = proc_rss_kb(proc.pid) or 0
    finally:
        proc.terminate()
        proc.wait()
    return {
        "used_memory_bytes_per_key": round((info1["used_memory"] - info0["used_memory"]) / n),
        "rss_bytes_per_key": round((info1["used_memory_rss"] - info0["used_memory_rss"]) / n),
        "rss_mb": round(rss_kb / 1024),
    }


def breakdown(kind: str, n: int = 20_000) -> dict[str, float]:
    """Bytes a cold key costs in the store, by part (in-process, ``sys.getsizeof``)."""
    from crdtkv.ops import apply_op
    from crdtkv.replica import Replica

    r = Replica("r1", "0123abcd")
    for i in range(0, n, 1000):
        for op in _ops(kind, i, i + 1000):
            apply_op(r, op, 1_767_225_600_000 + i)
    r.take_pending()
    r.take_dirty()  # what a checkpoint does: cools every key it writes
    cold = r.states.cold
    names = list(cold)
    blobs = [cold[k] for k in names]
    rec_bytes = sum(len(b) for b in blobs) / len(blobs)
    return {
        "record_bytes (payload)": round(rec_bytes, 1),
        "bytes object": round(sum(sys.getsizeof(b) for b in blobs) / len(blobs), 1),
        "name str": round(sum(sys.getsizeof(k) for k in names) / len(names), 1),
        "dict slot (states.cold)": round(sys.getsizeof(cold) / len(cold), 1),
        "name index (SortedList, a pointer)": 8.0,
    }


def memory(n: int, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"keys": n}
    for kind in ("string", "counter", "set"):
        c = crdtkv_memory(kind, n, work)
        r = redis_memory(kind, n, work)
        out[kind] = {
            "crdtkv": c,
            "redis": r,
            "ratio_rss_to_used_memory": round(
                c["rss_bytes_per_key"] / max(1, r["used_memory_bytes_per_key"]), 2
            ),
            "breakdown": breakdown(kind),
        }
        print(json.dumps({kind: out[kind]}), file=sys.stderr, flush=True)
    return out


def render(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    for s in doc.get("startup", []):
        lines.append(
            f"start-up {s['keys']:,} keys: /healthz {s['from_records']['healthz_s']} s reading "
            f"records, {s['from_snapshot']['healthz_s']} s from the snapshot "
            f"({s['snapshot_mb']} MB), {s['after_kill_9']['healthz_s']} s after kill -9; "
            f"RSS {s['from_snapshot']['rss_mb']} MB; clean stop {s['stop_s']} s"
        )
    mem = doc.get("memory")
    if mem:
        for kind in ("string", "counter", "set"):
            m = mem[kind]
            lines.append(
                f"memory {kind} ({mem['keys']:,} keys): crdtkv RSS "
                f"{m['crdtkv']['rss_bytes_per_key']} B/key "
                f"({m['crdtkv']['rss_after_restart_bytes_per_key']} after a restart), "
                f"Redis used_memory {m['redis']['used_memory_bytes_per_key']} B/key "
                f"(RSS {m['redis']['rss_bytes_per_key']}): {m['ratio_rss_to_used_memory']}x"
            )
    return "\n".join(lines)


def run(startup_keys: list[int], memory_keys: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="crdtkv-keyspace-") as tmp:
        work = Path(tmp)
        if startup_keys:
            doc["startup"] = []
            for n in startup_keys:
                doc["startup"].append(startup(n, work))
                print(json.dumps(doc["startup"][-1]), file=sys.stderr, flush=True)
        if memory_keys:
            doc["memory"] = memory(memory_keys, work)
    return doc


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--startup", type=int, nargs="*", default=[], metavar="N")
    p.add_argument("--memory", type=int, metavar="N")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    doc = run(args.startup, args.memory)
    print(render(doc))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

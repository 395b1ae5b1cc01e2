"""Lists of 1,000 to 1,000,000 elements: the cost per op, the bytes of a push, the memory.

    .venv/bin/python benchmarks/list_bench.py            # 1k, 10k, 100k and 1M elements
    .venv/bin/python benchmarks/list_bench.py --quick    # 1k and 10k, a few rounds (a smoke run)

The issue asks that at a 1,000,000-element list push, pop, LINDEX in the
middle and LRANGE of 100 cost within 2x of the same ops on a 1,000-element
list, and that a push cost O(1) bytes on the wire and in storage.

For each size it builds a list at an in-process ``Replica`` through the op
table (``crdtkv.ops.table.apply_op``), 10,000 values an RPUSH, untimed, with
the collector off as ``crdtkv serve`` loads its keyspace; then sets the
collector as ``crdtkv serve`` does after loading (what exists frozen out of
its reach, a first threshold of 50,000).  Every measured op goes through
``apply_op``: validation, the list's CRDT mutation and its delta, the key's
metadata stamp, the replica-level dot and the log entry: the server's CPU
per op without HTTP and storage I/O.  Ops run in rounds (the sizes taking
turns, so a change in the shared machine's load falls on all alike); the
figure is the median round's mean time per op, wall and CPU
(``time.thread_time``: the pass/fail column checks the CPU ratio, the op's
own cost; wall time also holds waits for a core).  What a round adds or
removes is put back after it, untimed, so each list keeps its size.

The ops: LPUSH and RPUSH of one value, LPOP and RPOP of one, LINDEX, LSET and
LRANGE of 100 at a random index in the middle 2% of the list, LINSERT after
the element at index 10 (the insert itself: its pivot search walks 11
elements), and LINSERT before the element in the middle.  LINSERT finds its
pivot by walking the list from the head, O(n), as Redis does: that row has
no aim, and is shown.

Then, per size, the bytes of one push and one pop: the encoded delta group
(``records.pack(records.encode_group(...))``: what a replication push
carries), the log record (key and value), and the checkpoint that follows
(``records.write_state`` of the dirty keys: the list's header and one
record per changed element, and the key's metadata).  And the memory of the
list: the growth of the process's RSS while it was built, per element, and
what its Python objects account for (``sys.getsizeof`` of the position and
value strings, the entries dict, and the sorted index: its (position, element)
pairs and its lists).

Alongside, with ``redis-server`` on PATH (and not ``--no-redis``), the same
commands with the same picks at the same sizes in a ``redis-server`` started
here: its own time per call (``INFO commandstats``: the data structure's
cost, no network), and ``MEMORY USAGE`` of each list per element.  crdtkv
does not serve the list commands over RESP yet, so there is no end-to-end
RESP comparison here.

Writes ``list_bench.json`` and ``list_bench.png`` to ``--out-dir`` (default
``benchmarks/results``; with ``--quick``, a temporary directory, so a smoke
run leaves the kept figures alone).  The verdict on the aims is printed (and
kept in the JSON); the exit status is 0 either way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from crdtkv.crdts import RList
from crdtkv.ops.table import apply_op
from crdtkv.replica import records
from crdtkv.replica.keyspace import Replica
from crdtkv.storage.base import Delete, DeleteRange, Put, WriteBatch
from crdtkv.tools.bench.machine import machine_info, proc_rss_kb
from crdtkv.tools.bench.report import text_table as table
from crdtkv.tools.procs import free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REPLICA_ID = "bench"
INCARNATION = "5f3a9c1e"
KEY = "l"
FILL_PER_OP = 10_000  # limits.MEMBERS_PER_OP_MAX: the most values one push carries
RANGE_LEN = 100
NEAR_HEAD = 10  # LINSERT after the element at this index: the insert, not the search
AIM_RATIO = 2.0  # the issue: at 1M within 2x of the same op at 1k
NOW_MS = 1_767_225_600_000
REDIS_START_TIMEOUT_S = 30.0
REDIS_STOP_TIMEOUT_S = 10.0
INSTALL_HINT = "apt-get install -y redis-server"


@dataclass(frozen=True, slots=True)
class Params:
    sizes: tuple[int, ...]  # list lengths, ascending
    rounds: int  # rounds per op; the median round is reported
    ops_per_round: int  # ops timed in one round
    scan_rounds: int  # the same for LINSERT at the middle (O(n) per op)
    scan_ops: int


FULL = Params((1_000, 10_000, 100_000, 1_000_000), 15, 200, 5, 3)
QUICK = Params((1_000, 10_000), 3, 40, 2, 2)


@dataclass(frozen=True, slots=True)
class OpDef:
    name: str
    command: str  # Redis's command (what INFO commandstats counts)
    aim: float | None  # the most its largest / smallest ratio may be; None: O(n), shown only
    write: bool
    scan: bool = False  # O(n) per op: fewer rounds


OPS: tuple[OpDef, ...] = (
    OpDef("LPUSH", "lpush", AIM_RATIO, True),
    OpDef("RPUSH", "rpush", AIM_RATIO, True),
    OpDef("LPOP", "lpop", AIM_RATIO, True),
    OpDef("RPOP", "rpop", AIM_RATIO, True),
    OpDef("LINDEX middle", "lindex", AIM_RATIO, False),
    OpDef("LSET middle", "lset", AIM_RATIO, True),
    OpDef("LRANGE 100 middle", "lrange", AIM_RATIO, False),
    OpDef("LINSERT near the head", "linsert", AIM_RATIO, True),
    OpDef("LINSERT middle (pivot search O(n))", "linsert", None, True, scan=True),
)
OP_NAMES = tuple(o.name for o in OPS)


def value_name(i: int) -> str:
    return f"v-{i:07d}"


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1_000}k" if n % 1_000 == 0 else str(n)


@dataclass
class Progress:
    bar: Any = None

    def step(self, what: str, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)
            self.bar.update(n)


@contextlib.contextmanager
def server_gc() -> Iterator[None]:
    """The collector as ``crdtkv serve`` sets it after loading (``cli._tune_gc``)."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def rss_bytes() -> int:
    kb = proc_rss_kb(os.getpid())
    return 0 if kb is None else kb * 1024


# -- the op picks (shared by crdtkv and Redis) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pick:
    """One op's arguments, whatever runs it."""

    index: int = 0  # LINDEX, LSET, LRANGE's start
    value: str = ""  # pushed, set or inserted
    pivot: str = ""  # LINSERT


def picks(op: OpDef, n: int, rnd: int, count: int, pivot: str) -> list[Pick]:
    """The args of one round (one seed per op, size and round: the same for both systems)."""
    rng = random.Random(f"{op.name}/{n}/{rnd}")
    span = max(1, n // 100)
    out = []
    for i in range(count):
        index = n // 2 - span + rng.randrange(2 * span)
        out.append(Pick(index, f"new-{rnd}-{i}", pivot))
    return out


def shape(p: Params, op: OpDef) -> tuple[int, int]:
    """(rounds, ops per round) of ``op``."""
    return (p.scan_rounds, p.scan_ops) if op.scan else (p.rounds, p.ops_per_round)


def pivot_index(op: OpDef, n: int) -> int | None:
    if op.name == "LINSERT near the head":
        return NEAR_HEAD
    if op.scan:
        return n // 2
    return None


# -- crdtkv: the op layer --------------------------------------------------------------------------


def crdtkv_op(op: OpDef, p: Pick) -> dict[str, Any]:
    k = KEY
    match op.name:
        case "LPUSH":
            return {"op": "lists.lpush", "key": k, "values": [p.value]}
        case "RPUSH":
            return {"op": "lists.rpush", "key": k, "values": [p.value]}
        case "LPOP":
            return {"op": "lists.lpop", "key": k}
        case "RPOP":
            return {"op": "lists.rpop", "key": k}
        case "LINDEX middle":
            return {"op": "lists.index", "key": k, "index": p.index}
        case "LSET middle":
            return {"op": "lists.set", "key": k, "index": p.index, "element": p.value}
        case "LRANGE 100 middle":
            return {"op": "lists.range", "key": k, "start": p.index, "stop": p.index + 99}
        case "LINSERT near the head":
            return {"op": "lists.insert", "key": k, "where": "after", "pivot": p.pivot}
        case _:
            assert op.scan, op.name
            return {"op": "lists.insert", "key": k, "where": "before", "pivot": p.pivot}


def crdtkv_ops(op: OpDef, ps: Sequence[Pick]) -> list[dict[str, Any]]:
    out = []
    for p in ps:
        o = crdtkv_op(op, p)
        if o["op"] == "lists.insert":
            o["element"] = "ins"
        out.append(o)
    return out


def check_result(op: OpDef, n: int, i: int, result: dict[str, Any]) -> None:
    """A cheap check that the op did what it is named for (outside the clock)."""
    if op.name in ("LPUSH", "RPUSH") or op.name.startswith("LINSERT"):
        assert result == {"length": n + i + 1}, (op.name, n, i, result)
    elif op.name in ("LPOP", "RPOP"):
        assert len(result["values"]) == 1, result
    elif op.name == "LINDEX middle":
        assert isinstance(result["value"], str), result
    elif op.name == "LSET middle":
        assert result == {"ok": True}, result
    else:
        assert len(result["values"]) == RANGE_LEN, (op.name, len(result["values"]))


def crdtkv_undo(op: OpDef, count: int, results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The op that puts back what a round changed in the list's length."""
    if op.name == "LPUSH":
        return {"op": "lists.lpop", "key": KEY, "pop_count": count}
    if op.name == "RPUSH":
        return {"op": "lists.rpop", "key": KEY, "pop_count": count}
    popped = [r["values"][0] for r in results] if op.name in ("LPOP", "RPOP") else []
    if op.name == "LPOP":
        return {"op": "lists.lpush", "key": KEY, "values": popped[::-1]}
    if op.name == "RPOP":
        return {"op": "lists.rpush", "key": KEY, "values": popped[::-1]}
    if op.name.startswith("LINSERT"):  # the first ``count`` matches from the head: those
        return {"op": "lists.remove", "key": KEY, "rem_count": count, "element": "ins"}
    return None


@dataclass
class Samples:
    rounds_us: list[float] = field(default_factory=list)
    rounds_cpu_us: list[float] = field(default_factory=list)


@dataclass(slots=True)
class OpResult:
    op: str
    elements: int
    us_per_op: float  # median over rounds of the round's mean wall time per op
    cpu_us_per_op: float  # the same in this thread's CPU time
    rounds_us: list[float]
    rounds_cpu_us: list[float]


def settle(r: Replica) -> None:
    """What the node takes from the replica after each batch (the log, the dirty keys)."""
    r.take_pending()
    r.take_dirty()
    r.take_digest_dirty()


def element_at(r: Replica, index: int) -> str:
    out: str = apply_op(r, {"op": "lists.index", "key": KEY, "index": index}, NOW_MS)["value"]
    return out


def crdtkv_round(r: Replica, op: OpDef, n: int, rnd: int, count: int, out: Samples) -> None:
    pi = pivot_index(op, n)
    pivot = element_at(r, pi) if pi is not None else ""
    ops = crdtkv_ops(op, picks(op, n, rnd, count, pivot))
    now = NOW_MS + rnd
    settle(r)
    results: list[dict[str, Any]] = []
    append = results.append
    cpu0, t0 = time.thread_time(), time.perf_counter()
    for o in ops:
        append(apply_op(r, o, now))
    t1, cpu1 = time.perf_counter(), time.thread_time()
    out.rounds_us.append((t1 - t0) / len(ops) * 1e6)
    out.rounds_cpu_us.append((cpu1 - cpu0) / len(ops) * 1e6)
    for i, res in enumerate(results):
        check_result(op, n, i, res)
    undo = crdtkv_undo(op, len(ops), results)
    if undo is not None:
        apply_op(r, undo, now)
    settle(r)
    length = apply_op(r, {"op": "lists.length", "key": KEY}, now)["length"]
    assert length == n, (op.name, n, length)


def interleaved(sizes: Sequence[int], rounds: int) -> Iterator[tuple[int, int]]:
    """(round, size): every round runs every size, in alternating order."""
    for rnd in range(rounds):
        for n in sizes if rnd % 2 == 0 else reversed(sizes):
            yield rnd, n


def fill(r: Replica, n: int, progress: Progress) -> None:
    for lo in range(0, n, FILL_PER_OP):
        hi = min(n, lo + FILL_PER_OP)
        values = [value_name(i) for i in range(lo, hi)]
        apply_op(r, {"op": "lists.rpush", "key": KEY, "values": values}, NOW_MS)
        settle(r)
        progress.step(f"crdtkv: fill {size_label(n)}", hi - lo)


@dataclass(slots=True)
class Memory:
    elements: int
    rss_growth_bytes: int  # RSS after the build minus before, the collector run at both
    rss_bytes_per_element: float
    objects_bytes_per_element: float  # what sys.getsizeof accounts for (below)
    parts: dict[str, int]  # bytes by part: positions, values, entries dict, sorted index
    redis_bytes_per_element: float | None = None  # MEMORY USAGE of the same list in Redis


def objects_bytes(rl: RList) -> dict[str, int]:
    """The list's Python objects by part, ``sys.getsizeof`` (shared strings counted once)."""
    size = sys.getsizeof
    index = rl._index()  # the sorted (position, element) pairs
    lists = index._lists  # its sublists; with its maxes and its positional index
    pairs = sum(size(t) for sub in lists for t in sub)
    tree = size(lists) + sum(size(x) for x in lists) + size(index._maxes) + size(index._index)
    return {
        "positions": sum(size(p) for p in rl.entries),
        "values": sum(size(e) for e in rl.entries.values()),
        "entries_dict": size(rl.entries),
        "index_pairs": pairs,
        "index_lists": tree,
    }


@dataclass(slots=True)
class Bytes:
    """One write's bytes at one size."""

    op: str
    elements: int
    delta_group: int  # the encoded delta group: what a replication push carries
    log_record: int  # its log record: 8-byte key and value
    checkpoint_list: int  # the checkpoint's records of the list: header and elements
    checkpoint_elements: int  # of which element records (puts and deletes)
    checkpoint_total: int  # the whole checkpoint of the dirty keys (with the key's metadata)


def batch_bytes(ops: Sequence[Any]) -> int:
    total = 0
    for o in ops:
        if isinstance(o, Put):
            total += len(o.key) + len(o.value)
        elif isinstance(o, Delete):
            total += len(o.key)
        elif isinstance(o, DeleteRange):
            total += len(o.start) + len(o.end)
    return total


def measure_bytes(r: Replica, n: int) -> list[Bytes]:
    """One LPUSH, RPUSH, LPOP and RPOP: their delta group, log record and checkpoint."""
    rl = r.states[("list", KEY)]
    assert isinstance(rl, RList)
    rl.touched = set()  # as storage leaves it after a checkpoint
    settle(r)
    prefix = records.field_prefix("list", KEY)
    header = records.encode_state_key(("list", KEY))
    out = []
    for name, o in (
        ("LPUSH", {"op": "lists.lpush", "key": KEY, "values": ["probe-left"]}),
        ("RPUSH", {"op": "lists.rpush", "key": KEY, "values": ["probe-right"]}),
        ("LPOP", {"op": "lists.lpop", "key": KEY}),
        ("RPOP", {"op": "lists.rpop", "key": KEY}),
    ):
        apply_op(r, o, NOW_MS)
        (entry,) = r.take_pending()
        wire = len(records.pack(records.encode_group(entry.group)))
        log = len(records.log_key(entry.pos)) + len(records.encode_log_entry(entry))
        batch = WriteBatch()
        for key, state in r.take_dirty().items():
            records.write_state(batch, key, state)
        r.take_digest_dirty()
        elements = [x for x in batch.ops if getattr(x, "cf", "") == "fields"]
        assert all(isinstance(x, Put | Delete) and x.key.startswith(prefix) for x in elements)
        assert len(elements) == 1, elements  # the one element pushed or popped
        mine = [x for x in batch.ops if isinstance(x, Put) and x.key == header]
        out.append(
            Bytes(
                name,
                n,
                wire,
                log,
                batch_bytes([*mine, *elements]),
                batch_bytes(elements),
                batch_bytes(batch.ops),
            )
        )
    return out


def run_crdtkv(
    p: Params, progress: Progress
) -> tuple[list[OpResult], list[Bytes], list[Memory], list[dict[str, int]]]:
    replicas: dict[int, Replica] = {}
    memory: list[Memory] = []
    try:
        gc.disable()  # as crdtkv serve loads its keyspace
        try:
            for n in p.sizes:
                gc.collect()
                before = rss_bytes()
                r = Replica(REPLICA_ID, INCARNATION)
                fill(r, n, progress)
                gc.collect()
                grown = rss_bytes() - before
                rl = r.states[("list", KEY)]
                assert isinstance(rl, RList) and len(rl) == n
                parts = objects_bytes(rl)
                memory.append(Memory(n, grown, grown / n, sum(parts.values()) / n, parts))
                replicas[n] = r
        finally:
            gc.enable()
        results: list[OpResult] = []
        with server_gc():
            for op in OPS:
                rounds, count = shape(p, op)
                samples = {n: Samples() for n in p.sizes}
                for rnd, n in interleaved(p.sizes, rounds):
                    crdtkv_round(replicas[n], op, n, rnd, count, samples[n])
                    progress.step(f"crdtkv: {op.name}")
                med = statistics.median
                for n in p.sizes:
                    s = samples[n]
                    results.append(
                        OpResult(
                            op.name,
                            n,
                            med(s.rounds_us),
                            med(s.rounds_cpu_us),
                            [round(x, 3) for x in s.rounds_us],
                            [round(x, 3) for x in s.rounds_cpu_us],
                        )
                    )
            sizes: list[Bytes] = []
            for n in p.sizes:
                sizes += measure_bytes(replicas[n], n)
                progress.step(f"crdtkv: bytes at {size_label(n)}")
        gc_stats = [dict(s) for s in gc.get_stats()]
        return results, sizes, memory, gc_stats
    finally:
        replicas.clear()
        gc.collect()


# -- Redis -----------------------------------------------------------------------------------------


class RedisError(Exception):
    pass


@dataclass
class RedisServer:
    tmp: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    version: str = ""

    def start(self) -> Any:
        import redis

        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--dir", str(self.tmp), "--save", "", "--appendonly", "no"]
        cmd += ["--daemonize", "no", "--protected-mode", "no"]
        with open(self.tmp / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        c = redis.Redis(port=self.port, socket_timeout=120)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RedisError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(redis.RedisError, OSError):
                if c.ping():
                    self.version = str(c.info("server")["redis_version"])
                    return c
            if time.monotonic() > deadline:
                raise RedisError(f"redis-server did not answer in {REDIS_START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], REDIS_STOP_TIMEOUT_S)
            self.proc = None


@dataclass(slots=True)
class RedisResult:
    op: str
    elements: int
    server_us: float  # median over rounds of INFO commandstats usec / calls


def redis_key(n: int) -> str:
    return f"{KEY}:{n}"


def redis_command(op: OpDef, key: str, p: Pick) -> list[Any]:
    match op.name:
        case "LPUSH" | "RPUSH":
            return [op.command.upper(), key, p.value]
        case "LPOP" | "RPOP":
            return [op.command.upper(), key]
        case "LINDEX middle":
            return ["LINDEX", key, p.index]
        case "LSET middle":
            return ["LSET", key, p.index, p.value]
        case "LRANGE 100 middle":
            return ["LRANGE", key, p.index, p.index + 99]
        case "LINSERT near the head":
            return ["LINSERT", key, "AFTER", p.pivot, "ins"]
        case _:
            return ["LINSERT", key, "BEFORE", p.pivot, "ins"]


def commandstats(c: Any, command: str) -> float:
    stats = c.info("commandstats")[f"cmdstat_{command}"]
    return float(stats["usec"]) / int(stats["calls"])


def redis_round(c: Any, op: OpDef, n: int, rnd: int, count: int) -> float:
    key = redis_key(n)
    pi = pivot_index(op, n)
    pivot = c.lindex(key, pi).decode() if pi is not None else ""
    cmds = [redis_command(op, key, p) for p in picks(op, n, rnd, count, pivot)]
    c.config_resetstat()
    pipe = c.pipeline(transaction=False)
    for cmd in cmds:
        pipe.execute_command(*cmd)
    replies = pipe.execute()
    server = commandstats(c, op.command)
    if op.name in ("LPUSH", "RPUSH"):
        c.execute_command("LPOP" if op.name == "LPUSH" else "RPOP", key, count)
    elif op.name in ("LPOP", "RPOP"):
        back = [r.decode() for r in replies][::-1]
        c.execute_command("LPUSH" if op.name == "LPOP" else "RPUSH", key, *back)
    elif op.name.startswith("LINSERT"):
        assert all(r > n for r in replies), replies
        c.lrem(key, count, "ins")
    elif op.name == "LRANGE 100 middle":
        assert all(len(r) == RANGE_LEN for r in replies)
    assert c.llen(key) == n, (op.name, n)
    return server


def run_redis(
    p: Params, progress: Progress, work: Path
) -> tuple[list[RedisResult], dict[int, float], str]:
    tmp = Path(tempfile.mkdtemp(prefix="redis-", dir=work))
    srv = RedisServer(tmp)
    try:
        c = srv.start()
        memory: dict[int, float] = {}
        for n in p.sizes:
            key = redis_key(n)
            for lo in range(0, n, FILL_PER_OP):
                c.rpush(key, *(value_name(i) for i in range(lo, min(n, lo + FILL_PER_OP))))
                progress.step(f"redis: fill {size_label(n)}", min(n, lo + FILL_PER_OP) - lo)
            assert c.llen(key) == n
            memory[n] = int(c.memory_usage(key, samples=0)) / n
        out: list[RedisResult] = []
        for op in OPS:
            rounds, count = shape(p, op)
            server: dict[int, list[float]] = {n: [] for n in p.sizes}
            for rnd, n in interleaved(p.sizes, rounds):
                server[n].append(redis_round(c, op, n, rnd, count))
                progress.step(f"redis: {op.name}")
            out += [RedisResult(op.name, n, statistics.median(server[n])) for n in p.sizes]
        c.close()
        return out, memory, srv.version
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------


def _f(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


@dataclass
class Row:
    """One op across the sizes."""

    op: str
    aim: float | None
    us: list[float]  # wall time per op, by size
    cpu_us: list[float]  # CPU time per op, by size
    redis_us: list[float] | None  # Redis's server time per call, by size
    ratio: float = field(init=False)  # largest / smallest, wall
    cpu_ratio: float = field(init=False)  # largest / smallest, CPU: what the status checks
    redis_ratio: float | None = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.us[-1] / self.us[0]
        self.cpu_ratio = self.cpu_us[-1] / self.cpu_us[0]
        self.redis_ratio = None if self.redis_us is None else self.redis_us[-1] / self.redis_us[0]

    @property
    def status(self) -> str:
        if self.aim is None:
            return "O(n), no aim"
        return "pass" if self.cpu_ratio <= self.aim else "FAIL"


def build_rows(
    p: Params, res: Sequence[OpResult], redis: Sequence[RedisResult] | None
) -> list[Row]:
    by = {(r.op, r.elements): r for r in res}
    rby = {(r.op, r.elements): r for r in redis or ()}
    rows = []
    for o in OPS:
        rs = [by[o.name, n] for n in p.sizes]
        red = [rby[o.name, n].server_us for n in p.sizes] if redis else None
        rows.append(
            Row(o.name, o.aim, [r.us_per_op for r in rs], [r.cpu_us_per_op for r in rs], red)
        )
    return rows


def render(
    p: Params,
    rows: Sequence[Row],
    sizes: Sequence[Bytes],
    memory: Sequence[Memory],
) -> str:
    labels = [size_label(n) for n in p.sizes]
    s, b = labels[0], labels[-1]
    have_redis = any(r.redis_us for r in rows)
    fmt = [(".1f" if r.aim is None else ".2f") for r in rows]
    out = [
        f"µs per op at the op layer (apply_op on a Replica), median of {p.rounds} rounds of "
        f"{p.ops_per_round} ops ({p.scan_rounds} of {p.scan_ops} for the O(n) row), the sizes "
        "taking turns; CPU: the ratio of CPU time per op, which the status checks",
        table(
            ["op", *labels, f"{b}/{s}", "CPU", "aim", "status"],
            [
                [
                    r.op,
                    *(_f(v, f) for v in r.us),
                    _f(r.ratio, ".2f", "x"),
                    _f(r.cpu_ratio, ".2f", "x"),
                    _f(r.aim, "g", "x"),
                    r.status,
                ]
                for r, f in zip(rows, fmt, strict=True)
            ],
        ),
    ]
    if have_redis:
        out += [
            "",
            "Redis: the server's own µs per call (INFO commandstats), same picks",
            table(
                ["op", *labels, f"{b}/{s}"],
                [
                    [r.op, *(_f(v) for v in r.redis_us or ()), _f(r.redis_ratio, ".2f", "x")]
                    for r in rows
                ],
            ),
        ]
    out += [
        "",
        "Bytes of one write, by list size: the encoded delta group (wire), its log record, "
        "the checkpoint's records of the list (header + element records) and the whole "
        "checkpoint of the dirty keys",
        table(
            ["op", "elements", "delta group", "log record", "ckpt list", "ckpt elements", "ckpt"],
            [
                [
                    x.op,
                    f"{x.elements:,}",
                    str(x.delta_group),
                    str(x.log_record),
                    str(x.checkpoint_list),
                    str(x.checkpoint_elements),
                    str(x.checkpoint_total),
                ]
                for x in sizes
            ],
        ),
        "",
        "Memory per element: RSS growth while building the list / elements, and what its "
        "Python objects account for (sys.getsizeof)",
        table(
            ["elements", "RSS B/elem", "objects B/elem", "positions", "values", "dict"]
            + ["index pairs", "index lists"]
            + (["redis B/elem"] if have_redis else []),
            [
                [
                    f"{m.elements:,}",
                    _f(m.rss_bytes_per_element, ".1f"),
                    _f(m.objects_bytes_per_element, ".1f"),
                    *(_f(m.parts[k] / m.elements, ".1f") for k in m.parts),
                ]
                + ([_f(m.redis_bytes_per_element, ".1f")] if have_redis else [])
                for m in memory
            ],
        ),
    ]
    return "\n".join(out)


def write_chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = doc["params"]["sizes"]
    rows = doc["rows"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    markers = "os^vDPX*h"
    for r, m in zip(rows, markers, strict=False):
        left.plot(sizes, r["cpu_us"], marker=m, label=r["op"])
        if r["aim"] is not None:
            right.plot(sizes, [v / r["cpu_us"][0] for v in r["cpu_us"]], marker=m, label=r["op"])
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("list length (elements)")
    left.set_ylabel("CPU µs per op (log scale)")
    left.set_title("Time per op at the op layer (apply_op)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    right.axhline(doc["aim_ratio"], color="black", linestyle="dashed", label="the issue's 2x")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set_xscale("log")
    right.set_ylim(0, max(3.0, doc["aim_ratio"] + 0.5))
    right.set_xlabel("list length (elements)")
    right.set_ylabel(f"CPU time per op / the same at {size_label(sizes[0])}")
    right.set_title("Ratio to the smallest list (the O(log n) ops)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    m = doc["machine"]
    fig.suptitle(f"Lists of {size_label(sizes[0])} to {size_label(sizes[-1])} elements "
                 f"({m['nproc']} CPUs, shared)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="1k and 10k, a few rounds (a smoke run)")
    ap.add_argument(
        "--out-dir",
        type=Path,
        help="where list_bench.json and .png go (default benchmarks/results; with --quick, "
        "a temporary directory)",
    )
    ap.add_argument("--no-redis", action="store_true", help="leave the Redis side out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap.parse_args(list(argv))


def progress_total(p: Params, redis: bool) -> int:
    per_op = sum(p.scan_rounds if o.scan else p.rounds for o in OPS) * len(p.sizes)
    total = sum(p.sizes) + per_op + len(p.sizes)
    if redis:
        total += sum(p.sizes) + per_op
    return total


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    p = QUICK if args.quick else FULL
    redis_missing = shutil.which("redis-server") is None
    use_redis = not args.no_redis and not redis_missing
    if redis_missing and not args.no_redis:
        print(
            "list_bench.py: redis-server is not on PATH: the Redis side is skipped "
            f"(install it with: {INSTALL_HINT})",
            file=sys.stderr,
        )
    out_dir = args.out_dir
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="list-bench-")) if args.quick else RESULTS
    started = datetime.datetime.now(datetime.UTC)
    info = machine_info()
    print(
        f"list_bench: {', '.join(size_label(n) for n in p.sizes)} elements, "
        f"{info['cpu_model']}, {info['nproc']} CPUs, Python {info['python']}",
        flush=True,
    )
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="list-bench-work-"))
    bar = tqdm(total=progress_total(p, use_redis), disable=args.no_progress, unit="step")
    progress = Progress(bar)
    redis: list[RedisResult] | None = None
    redis_version = None
    try:
        res, sizes, memory, gc_stats = run_crdtkv(p, progress)
        if use_redis:
            try:
                redis, redis_mem, redis_version = run_redis(p, progress, work)
            except (RedisError, OSError) as e:
                print(f"list_bench.py: the Redis side failed: {e}", file=sys.stderr)
                return 1
            for m in memory:
                m.redis_bytes_per_element = redis_mem[m.elements]
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    rows = build_rows(p, res, redis)
    print(render(p, rows, sizes, memory))
    failed = [r.op for r in rows if r.status == "FAIL"]
    s, b = size_label(p.sizes[0]), size_label(p.sizes[-1])
    verdict = "every aimed op within it" if not failed else f"missed by: {', '.join(failed)}"
    print(f"\nThe issue's bound ({b} within {AIM_RATIO:g}x of {s}, by CPU time): {verdict}")
    doc: dict[str, Any] = {
        "tool": "benchmarks/list_bench.py",
        "command": " ".join([".venv/bin/python benchmarks/list_bench.py", *argv]),
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {**info, "load_avg_end": list(os.getloadavg())},
        "params": asdict(p),
        "aim_ratio": AIM_RATIO,
        "rows": [{**asdict(r), "status": r.status} for r in rows],
        "crdtkv": [asdict(r) for r in res],
        "bytes": [asdict(x) for x in sizes],
        "memory": [asdict(m) for m in memory],
        "gc_stats_end": gc_stats,
        "redis": None if redis is None else [asdict(r) for r in redis],
        "redis_version": redis_version,
        "redis_skipped": None
        if use_redis
        else ("--no-redis" if args.no_redis else "redis-server not on PATH"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "list_bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_chart(doc, out_dir / "list_bench.png")
    print(f"(total {doc['seconds']} s) wrote {out_dir / 'list_bench.json'} and list_bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Hashes and sorted sets at 1,000 and 1,000,000 entries, on a real replica, with Redis alongside.

    .venv/bin/python benchmarks/types_bench.py            # 1,000 and 1,000,000 entries
    .venv/bin/python benchmarks/types_bench.py --quick    # 1,000 and 20,000, a few rounds

For each size N it builds a hash of N fields and a sorted set of N members at
an in-process replica: a ``NodeCore`` over ``RocksStorage`` in a temporary
directory, driven synchronously the way the asyncio shell drives it (apply,
finish, group commit, the ``Write`` action carried out on RocksDB,
``write_done``).  The fill goes through the op table too, 10,000 entries an
op, untimed.  Then every measured op takes the whole real path, one op per
storage batch: validation in the op table, the CRDT mutation and its delta,
the delta group, the log entry, the RocksDB write batch and its write
(unsynced: the `wal` durability mode; the one synced write a second that mode
makes is done before each round, so fsync latency, the same at any size,
stays out of the figures).  Reads take the same path (and write nothing).

Per op: the median over rounds of the mean time of the round's ops (µs/op);
for writes also the encoded delta group (``records.pack(records.encode_group
(...))``: what a replication push carries for it) and the bytes of the
storage batch the op produced (its log entry and the HLC bound).  Then a
checkpoint of the value after one small write, as the node writes one at its
interval: a hash or sorted set is stored as a header (its causal context)
and one record per field, and a checkpoint writes the header and the fields
changed since the last one (``records.write_state``), so its size and time
are O(changed fields).  The first checkpoint of a new value writes every
field; it is made before the measured ones, untimed.

Alongside, redis-server (started here on a free port, ``--save ""
--appendonly no``) with the same ops at the same sizes over a raw RESP
socket, the fill pipelined: per op, the server's own time per call (``INFO
commandstats``: the data structure's cost, no network) and the client's time
per op in a pipeline of a round's ops (loopback and this Python client's RESP
parsing included).  Without redis-server on PATH the Redis columns are left
out, with a message.

Prints the table (crdtkv at both sizes and the ratio, Redis the same) and
checks the issue's bounds: a write on the large value within 1.5x of the
small one, a range of 100 within 3x.  Writes ``types_bench.json`` and
``types_bench.png`` to ``--out-dir`` (default ``benchmarks/results``; with
``--quick``, a temporary directory, so a smoke run leaves the kept figures
alone).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import random
import shutil
import socket
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

from crdtkv.node.core import Durable, NodeCore, Write
from crdtkv.replica import records
from crdtkv.replica.keyspace import LogEntry
from crdtkv.replica.persist import Checkpointer, load_replica
from crdtkv.storage.base import Delete, DeleteRange, Put, WriteBatch
from crdtkv.storage.rocks import RocksStorage
from crdtkv.tools.bench.machine import machine_info
from crdtkv.tools.bench.report import text_table as table
from crdtkv.tools.procs import free_port, stop_processes

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REPLICA_ID = "bench"
INCARNATION = "5f3a9c1e"
HASH_KEY = "h"
ZSET_KEY = "z"
FILL_PER_OP = 10_000  # limits.MEMBERS_PER_OP_MAX: the most one op may carry
RANGE_LEN = 100
AIM_WRITE_RATIO = 1.5  # the issue: a write on 1M entries within 1.5x of one on 1k
AIM_RANGE_RATIO = 3.0  # the issue: a range of 100 from 1M within 3x of the same from 1k
REDIS_START_TIMEOUT_S = 30.0
REDIS_STOP_TIMEOUT_S = 10.0
INSTALL_HINT = "apt-get install -y redis-server"


@dataclass(frozen=True, slots=True)
class Params:
    sizes: tuple[int, int]  # entries of the small and the large hash / sorted set
    rounds: int  # rounds per op; the median round is reported
    ops_per_round: int  # ops timed in one round
    checkpoints: int  # checkpoints timed per value and size


FULL = Params(sizes=(1_000, 1_000_000), rounds=15, ops_per_round=200, checkpoints=2)
QUICK = Params(sizes=(1_000, 20_000), rounds=3, ops_per_round=50, checkpoints=1)


@dataclass(frozen=True, slots=True)
class OpDef:
    """One measured op: its row, how it reads in Redis, and which aim applies."""

    name: str  # the row
    kind: str  # "hash" or "zset": which value it runs on
    aim: float | None  # the most its 1M / 1k time ratio may be (None: the issue sets none)
    write: bool


OPS: tuple[OpDef, ...] = (
    OpDef("HSET new field", "hash", AIM_WRITE_RATIO, True),
    OpDef("HINCRBY", "hash", AIM_WRITE_RATIO, True),
    OpDef("HGET", "hash", None, False),
    OpDef("ZADD new member", "zset", AIM_WRITE_RATIO, True),
    OpDef("ZINCRBY", "zset", AIM_WRITE_RATIO, True),
    OpDef("ZRANGE 0 99", "zset", AIM_RANGE_RATIO, False),
    OpDef("ZRANGE at a random rank", "zset", AIM_RANGE_RATIO, False),
    OpDef("ZRANGEBYSCORE LIMIT 100", "zset", AIM_RANGE_RATIO, False),
)
OP_NAMES = tuple(o.name for o in OPS)
REDIS_COMMAND = {  # the command INFO commandstats counts for each row
    "HSET new field": "hset",
    "HINCRBY": "hincrby",
    "HGET": "hget",
    "ZADD new member": "zadd",
    "ZINCRBY": "zincrby",
    "ZRANGE 0 99": "zrange",
    "ZRANGE at a random rank": "zrange",
    "ZRANGEBYSCORE LIMIT 100": "zrangebyscore",
}


@dataclass(slots=True)
class OpResult:
    """One op at one size, in crdtkv."""

    op: str
    entries: int
    us_per_op: float  # median over rounds of the round's mean wall time per op
    cpu_us_per_op: float  # the same in this thread's CPU time (time.thread_time)
    rounds_us: list[float] = field(default_factory=list)  # every round's mean wall time
    rounds_cpu_us: list[float] = field(default_factory=list)  # and CPU time
    delta_group_bytes: int | None = None  # writes: median encoded delta group (wire)
    batch_bytes: int | None = None  # writes: median bytes of the op's RocksDB write batch
    log_entry_bytes: int | None = None  # writes: of which its log entry (key + value)


@dataclass(slots=True)
class CheckpointResult:
    """A checkpoint of one value at one size, after a write of one entry."""

    kind: str  # "hash" or "zset"
    entries: int
    state_bytes: int  # the value's header and field records (keys + values) in the batch
    batch_bytes: int  # the whole checkpoint batch
    encode_s: float  # median: building the batch (encoding the state), on the node's thread
    write_s: float  # median: the RocksDB write of the batch (synced)


@dataclass(slots=True)
class RedisResult:
    op: str
    entries: int
    server_us: float  # median over rounds of INFO commandstats usec / calls
    client_us: float  # median over rounds of a round's pipelined wall time / ops


@dataclass
class Progress:
    bar: Any = None

    def step(self, what: str, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)
            self.bar.update(n)


# -- crdtkv: a replica over RocksDB, driven synchronously ---------------------------------------


def wall_ms() -> int:
    return int(time.time() * 1000)


def batch_bytes(batch: WriteBatch) -> int:
    """What a batch puts into RocksDB: keys and values."""
    total = 0
    for op in batch.ops:
        if isinstance(op, Put):
            total += len(op.key) + len(op.value)
        elif isinstance(op, Delete):
            total += len(op.key)
        elif isinstance(op, DeleteRange):
            total += len(op.start) + len(op.end)
    return total


class Shell:
    """A ``NodeCore`` over ``RocksStorage``, its actions carried out at once, in order
    (as ``crdtkv.node.aio`` does, without the event loop and the storage thread)."""

    def __init__(self, directory: Path) -> None:
        self.storage = RocksStorage(directory / "db")
        replica = load_replica(self.storage, REPLICA_ID, INCARNATION, wal=True)
        # Checkpoints only when asked: each is measured on its own (``checkpoint``).
        never = Checkpointer(dirty_keys_max=2**62, log_entries_max=2**62, interval_ms=2**62)
        self.core = NodeCore(replica, durability="wal", checkpointer=never, now_ms=wall_ms())
        self.tickets = itertools.count(1)
        self.batches: list[WriteBatch] = []  # written since the last take
        self.entries: list[LogEntry] = []  # made durable since the last take

    def op(self, op: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """One request: apply, finish, group commit, the write, its completion."""
        core = self.core
        result = core.apply(op, now_ms)
        core.finish(next(self.tickets), None)
        core.flush(now_ms)
        self._carry_out(now_ms)
        return result

    def settle(self, now_ms: int) -> None:
        """What is due (in `wal` mode, the synced write of each second), done now."""
        self.core.tick(now_ms)
        self._carry_out(now_ms)
        self.take()

    def checkpoint(self, now_ms: int) -> tuple[WriteBatch, float, float]:
        """A checkpoint: its batch, the time to build it, the time to write it."""
        core = self.core
        t0 = time.perf_counter()
        core.checkpoint(next(self.tickets))
        core.flush(now_ms)
        actions = core.take_actions()
        t1 = time.perf_counter()
        writes = [a for a in actions if isinstance(a, Write)]
        assert len(writes) == 1, actions
        self.storage.write(writes[0].batch, sync=writes[0].sync)
        t2 = time.perf_counter()
        core.write_done(now_ms)
        self._carry_out(now_ms)
        self.take()
        return writes[0].batch, t1 - t0, t2 - t1

    def take(self) -> tuple[list[WriteBatch], list[LogEntry]]:
        out = self.batches, self.entries
        self.batches, self.entries = [], []
        return out

    def _carry_out(self, now_ms: int) -> None:
        core = self.core
        while actions := core.take_actions():
            for a in actions:
                if isinstance(a, Write):
                    self.storage.write(a.batch, sync=a.sync)
                    self.batches.append(a.batch)
                    core.write_done(now_ms)
                elif isinstance(a, Durable):
                    self.entries.extend(a.entries)

    def close(self) -> None:
        self.storage.close()


@contextlib.contextmanager
def server_gc() -> Iterator[None]:
    """The collector as ``crdtkv serve`` sets it after loading (``cli._tune_gc``): what
    exists now frozen out of its reach, a first threshold of 50,000."""
    old = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def field_name(i: int) -> str:
    return f"field-{i:07d}"


def member_name(i: int) -> str:
    return f"member-{i:07d}"


def fill_crdtkv(shell: Shell, kind: str, n: int, progress: Progress) -> None:
    """``n`` entries through the op table, FILL_PER_OP an op (untimed)."""
    now = wall_ms()
    for lo in range(0, n, FILL_PER_OP):
        hi = min(n, lo + FILL_PER_OP)
        if kind == "hash":
            fields = {field_name(i): i for i in range(lo, hi)}
            op: dict[str, Any] = {"op": "hashes.set", "key": HASH_KEY, "fields": fields}
        else:
            scores = {member_name(i): float(i) for i in range(lo, hi)}
            op = {"op": "zsets.add", "key": ZSET_KEY, "scores": scores}
        shell.op(op, now)
        shell.take()
        progress.step(f"crdtkv: fill {kind} {n:,}", hi - lo)


def crdtkv_ops(name: str, n: int, rnd: int, count: int) -> list[dict[str, Any]]:
    """The ops of one round (the same picks as ``redis_ops``: one seed per op, size, round)."""
    rng = random.Random(f"{name}/{n}/{rnd}")
    out: list[dict[str, Any]] = []
    for i in range(count):
        if name == "HSET new field":
            out.append({"op": "hashes.set", "key": HASH_KEY, "fields": {f"new-{rnd}-{i}": i}})
        elif name == "HINCRBY":
            f = field_name(rng.randrange(n))
            out.append({"op": "hashes.incr", "key": HASH_KEY, "field": f, "delta": 1})
        elif name == "HGET":
            out.append({"op": "hashes.get", "key": HASH_KEY, "field": field_name(rng.randrange(n))})
        elif name == "ZADD new member":
            scores = {f"new-{rnd}-{i}": rng.uniform(0, n)}
            out.append({"op": "zsets.add", "key": ZSET_KEY, "scores": scores})
        elif name == "ZINCRBY":
            m = member_name(rng.randrange(n))
            out.append({"op": "zsets.incr", "key": ZSET_KEY, "member": m, "increment": 1.0})
        elif name == "ZRANGE 0 99":
            out.append({"op": "zsets.range", "key": ZSET_KEY, "start": 0, "stop": RANGE_LEN - 1})
            out[-1]["withscores"] = True
        elif name == "ZRANGE at a random rank":
            start = rng.randrange(n - RANGE_LEN)
            out.append({"op": "zsets.range", "key": ZSET_KEY, "start": start})
            out[-1].update(stop=start + RANGE_LEN - 1, withscores=True)
        elif name == "ZRANGEBYSCORE LIMIT 100":
            lo = rng.randrange(n - 2 * RANGE_LEN)
            out.append({"op": "zsets.rangebyscore", "key": ZSET_KEY, "min": lo, "max": "+inf"})
            out[-1].update(limit=RANGE_LEN, withscores=True)
        else:
            raise AssertionError(name)
    return out


def crdtkv_undo(name: str, rnd: int, count: int) -> dict[str, Any] | None:
    """The op that takes out what a round added, so the value stays at its size."""
    added = [f"new-{rnd}-{i}" for i in range(count)]
    if name == "HSET new field":
        return {"op": "hashes.remove", "key": HASH_KEY, "names": added}
    if name == "ZADD new member":
        return {"op": "zsets.remove", "key": ZSET_KEY, "members": added}
    return None


def check_result(name: str, result: dict[str, Any]) -> None:
    """A cheap sanity check that an op did what it is named for (outside the clock)."""
    if name == "HSET new field":
        assert result == {"added": 1}, result
    elif name == "ZADD new member":
        assert result["added"] == 1, result
    elif name.startswith("ZRANGE"):
        assert len(result["items"]) == RANGE_LEN, (name, len(result["items"]))
    elif name == "HGET":
        assert isinstance(result["value"], int), result


@dataclass
class Samples:
    """What the rounds of one op at one size measured."""

    rounds_us: list[float] = field(default_factory=list)
    rounds_cpu_us: list[float] = field(default_factory=list)
    wire: list[int] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    log_bytes: list[int] = field(default_factory=list)

    def result(self, op: OpDef, n: int) -> OpResult:
        med = statistics.median
        res = OpResult(op.name, n, med(self.rounds_us), med(self.rounds_cpu_us))
        res.rounds_us = [round(x, 3) for x in self.rounds_us]
        res.rounds_cpu_us = [round(x, 3) for x in self.rounds_cpu_us]
        if op.write:
            res.delta_group_bytes = int(statistics.median(self.wire))
            res.batch_bytes = int(statistics.median(self.written))
            res.log_entry_bytes = int(statistics.median(self.log_bytes))
        return res


def crdtkv_round(shell: Shell, op: OpDef, n: int, rnd: int, p: Params, out: Samples) -> None:
    """One round of ``op`` at size ``n``: the mean wall and CPU time per op, and the bytes
    of each write (counted after the clock stops)."""
    ops = crdtkv_ops(op.name, n, rnd, p.ops_per_round)
    now = wall_ms()
    shell.settle(now)
    run = shell.op
    results: list[dict[str, Any]] = []
    append = results.append
    cpu0, t0 = time.thread_time(), time.perf_counter()
    for o in ops:
        append(run(o, now))
    t1, cpu1 = time.perf_counter(), time.thread_time()
    out.rounds_us.append((t1 - t0) / len(ops) * 1e6)
    out.rounds_cpu_us.append((cpu1 - cpu0) / len(ops) * 1e6)
    for result in results:
        check_result(op.name, result)
    batches, entries = shell.take()
    if op.write:  # one storage batch and one log entry per op
        assert len(batches) == len(ops) and len(entries) == len(ops), (batches, entries)
        for batch, entry in zip(batches, entries, strict=True):
            out.wire.append(len(records.pack(records.encode_group(entry.group))))
            out.written.append(batch_bytes(batch))
            logged = [x for x in batch.ops if isinstance(x, Put) and x.cf == "log"]
            out.log_bytes.append(sum(len(x.key) + len(x.value) for x in logged))
    else:
        assert not entries, entries
    undo = crdtkv_undo(op.name, rnd, p.ops_per_round)
    if undo is not None:
        shell.op(undo, wall_ms())
        shell.take()


def interleaved(sizes: Sequence[int], rounds: int) -> Iterator[tuple[int, int]]:
    """(round, size): every round runs every size, in alternating order, so a change in
    the machine's load (it is shared) falls on both sizes alike."""
    for rnd in range(rounds):
        for n in sizes if rnd % 2 == 0 else reversed(sizes):
            yield rnd, n


def measure_crdtkv_op(
    shells: dict[int, Shell], op: OpDef, p: Params, progress: Progress
) -> list[OpResult]:
    samples = {n: Samples() for n in p.sizes}
    for rnd, n in interleaved(p.sizes, p.rounds):
        crdtkv_round(shells[n], op, n, rnd, p, samples[n])
        progress.step(f"crdtkv: {op.name}")
    return [samples[n].result(op, n) for n in p.sizes]


def measure_checkpoints(
    shell: Shell, kind: str, n: int, p: Params, progress: Progress
) -> CheckpointResult:
    key = (kind, HASH_KEY if kind == "hash" else ZSET_KEY)
    state_key = records.encode_state_key(key)
    encode: list[float] = []
    write: list[float] = []
    state = total = 0
    shell.checkpoint(wall_ms())  # the first one writes every field of the new value
    for i in range(p.checkpoints):
        # One small write first, so the value is dirty, as it is after any write.
        if kind == "hash":
            op = {"op": "hashes.incr", "key": HASH_KEY, "field": field_name(i), "delta": 1}
        else:
            op = {"op": "zsets.incr", "key": ZSET_KEY, "member": member_name(i), "increment": 1}
        shell.op(op, wall_ms())
        shell.take()
        batch, enc_s, wr_s = shell.checkpoint(wall_ms())
        puts = [o for o in batch.ops if isinstance(o, Put) and o.cf == "states"]
        # The value's header, and the key's small metadata record (TTL, type stamps).
        mine = [o for o in puts if o.key == state_key]
        assert len(mine) == 1 and len(puts) <= 2, [o.key for o in puts]
        fields = [o for o in batch.ops if isinstance(o, Put) and o.cf == "fields"]
        assert len(fields) == 1, len(fields)  # the one entry written
        state = sum(len(o.key) + len(o.value) for o in [*mine, *fields])
        total = batch_bytes(batch)
        encode.append(enc_s)
        write.append(wr_s)
        progress.step(f"crdtkv: checkpoint {kind} at {n:,}")
    return CheckpointResult(
        kind, n, state, total, statistics.median(encode), statistics.median(write)
    )


def run_crdtkv(
    p: Params, progress: Progress, work: Path
) -> tuple[list[OpResult], list[CheckpointResult]]:
    """Per value type: both sizes built (each at its own replica), then every op
    measured on both, round by round."""
    results: list[OpResult] = []
    checkpoints: list[CheckpointResult] = []
    for kind in ("hash", "zset"):
        shells: dict[int, Shell] = {}
        dirs: list[Path] = []
        try:
            gc.disable()  # as crdtkv serve loads its keyspace: no collections meanwhile
            try:
                for n in p.sizes:
                    dirs.append(Path(tempfile.mkdtemp(prefix=f"crdtkv-{kind}-{n}-", dir=work)))
                    shells[n] = Shell(dirs[-1])
                    fill_crdtkv(shells[n], kind, n, progress)
            finally:
                gc.enable()
            with server_gc():
                for op in OPS:
                    if op.kind == kind:
                        results += measure_crdtkv_op(shells, op, p, progress)
                for n in p.sizes:
                    checkpoints.append(measure_checkpoints(shells[n], kind, n, p, progress))
        finally:
            for shell in shells.values():
                shell.close()
            shells.clear()
            gc.collect()
            for d in dirs:
                shutil.rmtree(d, ignore_errors=True)
    order = {(o.name, n): i for i, (o, n) in enumerate(itertools.product(OPS, p.sizes))}
    results.sort(key=lambda r: order[r.op, r.entries])
    return results, checkpoints


# -- Redis -----------------------------------------------------------------------------------------


class RedisError(Exception):
    pass


class Resp:
    """A minimal RESP2 client over one socket: pipelines of commands, replies parsed."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def close(self) -> None:
        self.sock.close()

    @staticmethod
    def encode(cmd: Sequence[str | int | float]) -> bytes:
        parts = [b"*%d\r\n" % len(cmd)]
        for a in cmd:
            b = a.encode() if isinstance(a, str) else repr(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(parts)

    def pipeline(self, cmds: Sequence[Sequence[str | int | float]]) -> list[Any]:
        self.sock.sendall(b"".join(self.encode(c) for c in cmds))
        return [self._reply() for _ in cmds]

    def call(self, *cmd: str | int | float) -> Any:
        return self.pipeline([cmd])[0]

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RedisError("redis closed the connection")
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n", self.pos)) < 0:
            self._more()
        line = self.buf[self.pos : end]
        self.pos = end + 2
        return line

    def _reply(self) -> Any:
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) - self.pos < n + 2:
                self._more()
            out = self.buf[self.pos : self.pos + n]
            self.pos += n + 2
            return out
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError(f"unexpected reply {line[:80]!r}")


@dataclass
class RedisServer:
    tmp: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    version: str = ""

    def start(self) -> None:
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--dir", str(self.tmp), "--save", "", "--appendonly", "no"]
        cmd += ["--daemonize", "no", "--protected-mode", "no"]
        with open(self.tmp / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RedisError(f"redis-server exited with {self.proc.returncode}")
            with contextlib.suppress(OSError, RedisError):
                c = Resp(self.port)
                try:
                    if c.call("PING") == "PONG":
                        info = c.call("INFO", "server").decode()
                        self.version = next(
                            (ln.split(":", 1)[1].strip() for ln in info.splitlines()
                             if ln.startswith("redis_version:")), "",
                        )  # fmt: skip
                        return
                finally:
                    c.close()
            if time.monotonic() > deadline:
                raise RedisError(f"redis-server did not answer in {REDIS_START_TIMEOUT_S:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], REDIS_STOP_TIMEOUT_S)
            self.proc = None


def redis_key(kind: str, n: int) -> str:
    """One Redis holds both sizes: a key per size."""
    return f"{HASH_KEY if kind == 'hash' else ZSET_KEY}:{n}"


def redis_ops(name: str, n: int, rnd: int, count: int) -> list[list[str | int | float]]:
    """The Redis commands of one round: the same picks as ``crdtkv_ops``."""
    h, z = redis_key("hash", n), redis_key("zset", n)
    out: list[list[str | int | float]] = []
    for o in crdtkv_ops(name, n, rnd, count):
        if name == "HSET new field":
            ((f, v),) = o["fields"].items()
            out.append(["HSET", h, f, v])
        elif name == "HINCRBY":
            out.append(["HINCRBY", h, o["field"], 1])
        elif name == "HGET":
            out.append(["HGET", h, o["field"]])
        elif name == "ZADD new member":
            ((m, score),) = o["scores"].items()
            out.append(["ZADD", z, score, m])
        elif name == "ZINCRBY":
            out.append(["ZINCRBY", z, 1, o["member"]])
        elif name.startswith("ZRANGE "):
            out.append(["ZRANGE", z, o["start"], o["stop"], "WITHSCORES"])
        elif name == "ZRANGEBYSCORE LIMIT 100":
            out.append(["ZRANGEBYSCORE", z, o["min"], "+inf", "WITHSCORES", "LIMIT", 0, RANGE_LEN])
        else:
            raise AssertionError(name)
    return out


def fill_redis(c: Resp, kind: str, n: int, progress: Progress) -> None:
    key = redis_key(kind, n)
    c.call("DEL", key)
    step = 1_000
    cmds: list[list[str | int | float]] = []
    for lo in range(0, n, step):
        cmd: list[str | int | float]
        if kind == "hash":
            cmd = ["HSET", key]
            for i in range(lo, min(n, lo + step)):
                cmd += [field_name(i), i]
        else:
            cmd = ["ZADD", key]
            for i in range(lo, min(n, lo + step)):
                cmd += [float(i), member_name(i)]
        cmds.append(cmd)
        if len(cmds) == 100 or lo + step >= n:
            c.pipeline(cmds)
            progress.step(f"redis: fill {kind} {n:,}", sum((len(x) - 2) // 2 for x in cmds))
            cmds = []
    size = c.call("HLEN" if kind == "hash" else "ZCARD", key)
    assert size == n, (kind, size, n)


def commandstats(c: Resp, command: str) -> float:
    """The server's microseconds per call of ``command`` since the last CONFIG RESETSTAT."""
    info = c.call("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            stats = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            return float(stats["usec"]) / int(stats["calls"])
    raise RedisError(f"INFO commandstats has no {command}")


def redis_round(c: Resp, op: OpDef, n: int, rnd: int, p: Params) -> tuple[float, float]:
    """One round of ``op`` at size ``n``: (server µs per call, client µs per op)."""
    cmds = redis_ops(op.name, n, rnd, p.ops_per_round)
    c.call("CONFIG", "RESETSTAT")
    t0 = time.perf_counter()
    replies = c.pipeline(cmds)
    elapsed = time.perf_counter() - t0
    server = commandstats(c, REDIS_COMMAND[op.name])
    if op.name.startswith("ZRANGE"):
        assert all(len(r) == 2 * RANGE_LEN for r in replies), op.name
    if op.name == "HSET new field":
        assert replies == [1] * len(cmds), replies
        c.call("HDEL", redis_key("hash", n), *(x[2] for x in cmds))
    elif op.name == "ZADD new member":
        assert replies == [1] * len(cmds), replies
        c.call("ZREM", redis_key("zset", n), *(x[3] for x in cmds))
    return server, elapsed / len(cmds) * 1e6


def run_redis(p: Params, progress: Progress, work: Path) -> tuple[list[RedisResult], str]:
    tmp = Path(tempfile.mkdtemp(prefix="redis-", dir=work))
    srv = RedisServer(tmp)
    try:
        srv.start()
        c = Resp(srv.port)
        try:
            out: list[RedisResult] = []
            for kind in ("hash", "zset"):
                for n in p.sizes:
                    fill_redis(c, kind, n, progress)
                for op in OPS:
                    if op.kind != kind:
                        continue
                    server: dict[int, list[float]] = {n: [] for n in p.sizes}
                    client: dict[int, list[float]] = {n: [] for n in p.sizes}
                    for rnd, n in interleaved(p.sizes, p.rounds):
                        sv, cl = redis_round(c, op, n, rnd, p)
                        server[n].append(sv)
                        client[n].append(cl)
                        progress.step(f"redis: {op.name}")
                    for n in p.sizes:
                        med = statistics.median
                        out.append(RedisResult(op.name, n, med(server[n]), med(client[n])))
                for n in p.sizes:
                    c.call("DEL", redis_key(kind, n))
            return out, srv.version
        finally:
            c.close()
    finally:
        srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------


def _f(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if v is None else format(v, spec) + suffix


@dataclass
class Row:
    """One op across both sizes and both systems."""

    op: str
    write: bool
    aim: float | None
    crdtkv_us: tuple[float, float]  # wall time per op
    crdtkv_cpu_us: tuple[float, float]  # CPU time per op
    redis_server_us: tuple[float, float] | None
    redis_client_us: tuple[float, float] | None
    delta_group_bytes: tuple[int, int] | None
    batch_bytes: tuple[int, int] | None
    ratio: float = field(init=False)  # large / small, wall time
    cpu_ratio: float = field(init=False)  # large / small, CPU time: what the status checks

    def __post_init__(self) -> None:
        self.ratio = self.crdtkv_us[1] / self.crdtkv_us[0]
        self.cpu_ratio = self.crdtkv_cpu_us[1] / self.crdtkv_cpu_us[0]

    @property
    def status(self) -> str:
        """Against the aim by CPU time: the cost of the op itself.  Wall time also holds
        the time the process waited for a core, which on a shared machine is noise."""
        if self.aim is None:
            return "no aim"
        return "pass" if self.cpu_ratio <= self.aim else "FAIL"


def ratio(pair: tuple[float, float] | None) -> float | None:
    return None if pair is None or not pair[0] else pair[1] / pair[0]


def build_rows(
    p: Params, crdtkv: Sequence[OpResult], redis: Sequence[RedisResult] | None
) -> list[Row]:
    small, large = p.sizes
    by = {(r.op, r.entries): r for r in crdtkv}
    rby = {(r.op, r.entries): r for r in redis or ()}
    rows: list[Row] = []
    for o in OPS:
        a, b = by[o.name, small], by[o.name, large]
        ra, rb = rby.get((o.name, small)), rby.get((o.name, large))
        rows.append(
            Row(
                o.name,
                o.write,
                o.aim,
                (a.us_per_op, b.us_per_op),
                (a.cpu_us_per_op, b.cpu_us_per_op),
                (ra.server_us, rb.server_us) if ra and rb else None,
                (ra.client_us, rb.client_us) if ra and rb else None,
                (a.delta_group_bytes or 0, b.delta_group_bytes or 0) if o.write else None,
                (a.batch_bytes or 0, b.batch_bytes or 0) if o.write else None,
            )
        )
    return rows


def size_label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1_000}k"


def render(p: Params, rows: Sequence[Row], checkpoints: Sequence[CheckpointResult]) -> str:
    s, b = (size_label(n) for n in p.sizes)
    have_redis = any(r.redis_server_us for r in rows)
    out = [
        f"µs per op, median of {p.rounds} rounds of {p.ops_per_round} ops, the sizes "
        "alternating; crdtkv in-process through the op table, the log and a RocksDB write per "
        "op (wall time; CPU: the ratio of CPU time per op, which the status checks); Redis: "
        "server time per call (INFO commandstats)",
        table(
            [
                "op",
                f"crdtkv {s}",
                f"crdtkv {b}",
                f"{b}/{s}",
                "CPU",
                "aim",
                "status",
                f"redis {s}",
                f"redis {b}",
                f"{b}/{s}",
            ],
            [
                [
                    r.op,
                    _f(r.crdtkv_us[0]),
                    _f(r.crdtkv_us[1]),
                    _f(r.ratio, ".2f", "x"),
                    _f(r.cpu_ratio, ".2f", "x"),
                    _f(r.aim, "g", "x"),
                    r.status,
                    _f(r.redis_server_us and r.redis_server_us[0]),
                    _f(r.redis_server_us and r.redis_server_us[1]),
                    _f(ratio(r.redis_server_us), ".2f", "x"),
                ]
                for r in rows
            ],
        ),
    ]
    if have_redis:
        out += [
            "",
            f"Redis client side: µs per op in a pipeline of {p.ops_per_round} "
            "(loopback and this Python client's RESP parsing included)",
            table(
                ["op", f"redis {s}", f"redis {b}", f"{b}/{s}"],
                [
                    [
                        r.op,
                        _f(r.redis_client_us and r.redis_client_us[0]),
                        _f(r.redis_client_us and r.redis_client_us[1]),
                        _f(ratio(r.redis_client_us), ".2f", "x"),
                    ]
                    for r in rows
                ],
            ),
        ]
    out += [
        "",
        "Bytes per write (median): the encoded delta group (what a push carries) and the "
        "RocksDB write batch of the op (its log entry and the HLC bound)",
        table(
            ["op", f"delta {s}", f"delta {b}", f"{b}/{s}", f"batch {s}", f"batch {b}", f"{b}/{s}"],
            [
                [
                    r.op,
                    str(r.delta_group_bytes[0]),
                    str(r.delta_group_bytes[1]),
                    _f(ratio(r.delta_group_bytes), ".2f", "x"),
                    str(r.batch_bytes[0]),
                    str(r.batch_bytes[1]),
                    _f(ratio(r.batch_bytes), ".2f", "x"),
                ]
                for r in rows
                if r.delta_group_bytes is not None and r.batch_bytes is not None
            ],
        ),
        "",
        "Checkpoint of the value (median of "
        f"{p.checkpoints}, after a write of one entry): the header and the changed field",
        table(
            ["value", "entries", "state bytes", "encode ms", "write ms"],
            [
                [
                    c.kind,
                    f"{c.entries:,}",
                    f"{c.state_bytes:,}",
                    _f(c.encode_s * 1e3, ".1f"),
                    _f(c.write_s * 1e3, ".1f"),
                ]
                for c in checkpoints
            ],
        ),
    ]
    return "\n".join(out)


def write_chart(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    s, b = (size_label(n) for n in doc["params"]["sizes"])
    labels = [r["op"].replace(" ", "\n", 1) for r in rows]
    xs = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5))
    w = 0.2
    series = [
        (f"crdtkv {s}", [r["crdtkv_us"][0] for r in rows]),
        (f"crdtkv {b}", [r["crdtkv_us"][1] for r in rows]),
    ]
    if doc["redis"] is not None:
        series += [
            (f"redis {s} (server)", [r["redis_server_us"][0] for r in rows]),
            (f"redis {b} (server)", [r["redis_server_us"][1] for r in rows]),
        ]
    for i, (name, vals) in enumerate(series):
        left.bar([x + (i - (len(series) - 1) / 2) * w for x in xs], vals, w, label=name)
    left.set_yscale("log")
    left.set_ylabel("µs per op (log scale)")
    left.set_title("Time per op")
    left.set_xticks(list(xs))
    left.set_xticklabels(labels, fontsize=7)
    left.legend(fontsize=8)
    bars = [("crdtkv, wall", [r["ratio"] for r in rows])]
    bars.append(("crdtkv, CPU", [r["cpu_ratio"] for r in rows]))
    if doc["redis"] is not None:
        bars.append(("redis (server)", [r["redis_server_ratio"] or 0.0 for r in rows]))
    w = 0.8 / len(bars)
    for i, (name, vals) in enumerate(bars):
        right.bar([x + (i - (len(bars) - 1) / 2) * w for x in xs], vals, w, label=name)
    for x, r in zip(xs, rows, strict=True):
        if r["aim"] is not None:
            right.hlines(r["aim"], x - 0.45, x + 0.45, colors="black", linestyles="dashed")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set_ylabel(f"time per op, {b} / {s}")
    right.set_title("Ratio large / small (dashed: the issue's bound)")
    right.set_xticks(list(xs))
    right.set_xticklabels(labels, fontsize=7)
    right.legend(fontsize=8)
    m = doc["machine"]
    fig.suptitle(f"Hashes and sorted sets at {s} and {b} entries ({m['nproc']} CPUs, shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument(
        "--quick", action="store_true", help="1,000 and 20,000 entries, fewer rounds (a smoke run)"
    )
    ap.add_argument(
        "--out-dir",
        type=Path,
        help="where types_bench.json and .png go (default benchmarks/results; with --quick, "
        "a temporary directory)",
    )
    ap.add_argument("--no-redis", action="store_true", help="leave the Redis side out")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument(
        "--work-dir", type=Path, help="where the temporary databases go (default: the system's)"
    )
    return ap.parse_args(list(argv))


def progress_total(p: Params, redis: bool) -> int:
    per_size = len(OPS) * p.rounds + 2 * p.checkpoints
    total = sum(2 * n + per_size for n in p.sizes)
    if redis:
        total += sum(2 * n + len(OPS) * p.rounds for n in p.sizes)
    return total


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    p = QUICK if args.quick else FULL
    redis_missing = shutil.which("redis-server") is None
    use_redis = not args.no_redis and not redis_missing
    if redis_missing and not args.no_redis:
        print(
            "types_bench.py: redis-server is not on PATH: the Redis side is skipped "
            f"(install it with: {INSTALL_HINT})",
            file=sys.stderr,
        )
    out_dir = args.out_dir
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="types-bench-")) if args.quick else RESULTS
    started = datetime.datetime.now(datetime.UTC)
    info = machine_info()
    print(
        f"types_bench: {size_label(p.sizes[0])} and {size_label(p.sizes[1])} entries, "
        f"{info['cpu_model']}, {info['nproc']} CPUs, Python {info['python']}",
        flush=True,
    )
    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="types-bench-work-", dir=args.work_dir))
    bar = tqdm(total=progress_total(p, use_redis), disable=args.no_progress, unit="step")
    progress = Progress(bar)
    try:
        crdtkv, checkpoints = run_crdtkv(p, progress, work)
        redis: list[RedisResult] | None = None
        redis_version = None
        if use_redis:
            try:
                redis, redis_version = run_redis(p, progress, work)
            except (RedisError, OSError) as e:
                print(f"types_bench.py: the Redis side failed: {e}", file=sys.stderr)
                return 1
    finally:
        bar.close()
        shutil.rmtree(work, ignore_errors=True)
    rows = build_rows(p, crdtkv, redis)
    print(render(p, rows, checkpoints))
    failed = [r.op for r in rows if r.status == "FAIL"]
    verdict = "every bound met" if not failed else f"bounds missed: {', '.join(failed)}"
    print(f"\nThe issue's bounds (writes {AIM_WRITE_RATIO}x, ranges {AIM_RANGE_RATIO}x): {verdict}")
    doc: dict[str, Any] = {
        "tool": "benchmarks/types_bench.py",
        "command": " ".join([".venv/bin/python benchmarks/types_bench.py", *argv]),
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "machine": {**info, "load_avg_end": list(os.getloadavg())},
        "params": asdict(p),
        "aims": {"write_ratio": AIM_WRITE_RATIO, "range_ratio": AIM_RANGE_RATIO},
        "rows": [
            {
                **asdict(r),
                "ratio": r.ratio,
                "status": r.status,
                "redis_server_ratio": ratio(r.redis_server_us),
                "redis_client_ratio": ratio(r.redis_client_us),
            }
            for r in rows
        ],
        "crdtkv": [asdict(r) for r in crdtkv],
        "checkpoints": [asdict(c) for c in checkpoints],
        "redis": None if redis is None else [asdict(r) for r in redis],
        "redis_version": redis_version,
        "redis_skipped": None
        if use_redis
        else ("--no-redis" if args.no_redis else "redis-server not on PATH"),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "types_bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    write_chart(doc, out_dir / "types_bench.png")
    print(f"(total {doc['seconds']} s) wrote {out_dir / 'types_bench.json'} and types_bench.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

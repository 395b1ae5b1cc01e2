"""Micro-benchmarks of the CRDT core, in-process, on one core.

What it measures (``time.perf_counter``, median of a few repetitions):

- per type (counter, register, OR-set, HLL): delta-mutations per second,
  joins of another replica's deltas per second (already decoded, and from
  bytes through ``codec.unpack``), and the encoded size of a typical delta;
- an OR-set of 100,000 members against an empty one: the time and the
  encoded delta size of one more add and one remove (and of joining those
  deltas into a remote copy), which must not grow with the set;
- operations per second through the replica core, ``ops.apply_op``, which
  adds validation, the replica-level dot and the delta-group log record, with
  the share of that time spent in Python's cyclic garbage collector; a set
  add of ten members per operation shows what batching buys;
- a hash (``ORMap``) and a sorted set (``ZSet``) of 1,000 and of 1,000,000
  entries: the time of one HSET, HINCRBY, ZADD and ZINCRBY of an existing
  entry, of joining its delta into a remote copy, and the delta's encoded
  size; the time of a ZRANGE by rank of 100 entries from the middle; and the
  1,000,000 / 1,000 ratio of each, which should stay near 1 (the writes
  within 1.5x, the range within 3x: costs of O(1) and O(log n + k)).

Inputs are built before the clock starts and frozen out of the collector's
reach (``gc.freeze``); state the timed code creates is collected as usual.
The aims checked at the end are the issue's: 200,000 counter increments and
100,000 OR-set adds per second on one core.

Usage::

    .venv/bin/python benchmarks/crdt_bench.py            # full run
    .venv/bin/python benchmarks/crdt_bench.py --quick    # a short smoke run
    .venv/bin/python benchmarks/crdt_bench.py --json out.json
    .venv/bin/python benchmarks/crdt_bench.py --profile  # cProfile of the aimed paths
    .venv/bin/python benchmarks/crdt_bench.py --values-only  # only the hash and sorted set rows

Nothing here is part of the store; it only drives the pure core.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from crdtkv.crdts import HLC, HLL, LWWRegister, ORMap, ORSet, PNCounter, ZSet, pack, unpack
from crdtkv.crdts.base import CRDT
from crdtkv.ops import apply_op
from crdtkv.replica.keyspace import Replica
from crdtkv.tools.bench.report import text_table as table

# Realistic actor ids: "<replica_id>~<incarnation>" as the replica mints them.
REPLICA_A = "eu-west-1"
REPLICA_B = "us-east-1"
INCARNATION = "5f3a9c1e7b2d4086"
ACTOR_A = f"{REPLICA_A}~{INCARNATION}"
ACTOR_B = f"{REPLICA_B}~{INCARNATION}"
WALL_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z; the core never reads a clock

AIM_COUNTER_INCR_PER_S = 200_000
AIM_SET_ADD_PER_S = 100_000
AIM_VALUE_WRITE_RATIO = 1.5  # a write on a 1,000,000-entry hash or sorted set vs 1,000
AIM_VALUE_RANGE_RATIO = 3.0  # a ZRANGE of 100 by rank, the same sizes
RANGE_LEN = 100
DRAIN_EVERY_OPS = 1_000  # hand pending log records to "storage" like a group commit

T = TypeVar("T", bound=CRDT)


@dataclass(frozen=True, slots=True)
class Params:
    ops_per_rep: int  # mutations / merges / apply_op calls timed in one repetition
    reps: int  # repetitions; the median is reported
    big_set_members: int  # size of the large OR-set for the size-independence check
    single_op_samples: int  # single add/remove samples per set size
    # Deltas joined per repetition for the OR-set.  Lower than ops_per_rep because
    # ORSet.merge of a delta into a full state scanned every member when the figures
    # of docs/performance.md were measured (fixed since), so 200,000 joins took hours.
    set_merge_ops: int
    value_sizes: tuple[int, int]  # entries of the small and the large hash / sorted set
    value_samples: int  # single writes (and ranges) timed per row


FULL = Params(
    ops_per_rep=200_000,
    reps=5,
    big_set_members=100_000,
    single_op_samples=2_000,
    set_merge_ops=10_000,
    value_sizes=(1_000, 1_000_000),
    value_samples=5_000,
)
QUICK = Params(
    ops_per_rep=20_000,
    reps=3,
    big_set_members=100_000,
    single_op_samples=200,
    set_merge_ops=2_000,
    value_sizes=(1_000, 20_000),
    value_samples=500,
)


@dataclass(frozen=True, slots=True)
class TypeRow:
    type_name: str  # "counter", "register", "or-set", "hll"
    mutation: str  # what one mutation is
    mutations_per_s: float  # median over repetitions
    merged: int  # deltas joined per repetition (HLL: only adds that raised a register)
    merges_per_s: float  # joins of decoded deltas from another replica
    unpack_merges_per_s: float  # codec.unpack + join, from bytes
    delta_bytes: int  # median codec.pack size of the deltas produced


@dataclass(frozen=True, slots=True)
class SetSizeRow:
    members: int  # set size before each add
    add_us: float  # median time of ORSet.add of one new member
    remove_us: float  # median time of ORSet.remove of one member
    merge_add_us: float  # median time of joining the add delta into a remote copy
    merge_remove_us: float  # the same for the remove delta
    add_delta_bytes: int  # median codec.pack size of the add delta
    remove_delta_bytes: int  # median codec.pack size of the remove delta


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    op: str  # the apply_op operation name
    per_op: int  # members or items per operation (1 for counters and registers)
    ops_per_s: float  # median over repetitions
    us_per_op: float  # 1e6 / ops_per_s
    elements_per_s: float  # ops_per_s * per_op: members or items added per second
    gc_share: float  # median share of the time spent in the cyclic garbage collector


@dataclass(frozen=True, slots=True)
class ValueRow:
    op: str  # "HSET", "HINCRBY", "ZADD", "ZINCRBY" (of an existing entry) or "ZRANGE"
    entries: int  # entries of the hash or sorted set
    op_us: float  # median time of one operation on the local value
    merge_us: float | None  # median time of joining its delta into a remote copy (writes)
    delta_bytes: int | None  # median codec.pack size of its delta (writes)


@dataclass(frozen=True, slots=True)
class RatioRow:
    op: str
    op_ratio: float  # large / small, op_us
    merge_ratio: float | None  # large / small, merge_us
    aim: float  # the most either ratio may be

    @property
    def met(self) -> bool:
        return self.op_ratio <= self.aim and (self.merge_ratio or 0.0) <= self.aim


# -- timing helpers ---------------------------------------------------------------------
Setup = Callable[[], Callable[[], int]]
"""Builds fresh state (not timed) and returns the timed body, which returns its op count."""


class GCClock:
    """Wall time spent inside the cyclic garbage collector, through ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total_s += time.perf_counter() - self._start


@contextmanager
def gc_frozen() -> Iterator[None]:
    """Collect, then keep every object that exists now out of the collector's reach."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def timed(setup: Setup, reps: int) -> tuple[float, float]:
    """Median operations per second of ``reps`` timed runs, each on fresh state,
    and the median share of the time spent in the garbage collector.

    The collector stays on (it is part of the real cost), but objects that
    exist before the timed body starts, the pre-built inputs above all, are
    frozen out of its reach: a server does not hold 200,000 requests in
    memory, so their scanning cost would be an artefact of the benchmark.
    """
    rates: list[float] = []
    gc_shares: list[float] = []
    for _ in range(reps):
        body = setup()
        clock = GCClock()
        with gc_frozen():
            gc.callbacks.append(clock)
            try:
                t0 = time.perf_counter()
                n = body()
                elapsed = time.perf_counter() - t0
            finally:
                gc.callbacks.remove(clock)
        rates.append(n / elapsed)
        gc_shares.append(clock.total_s / elapsed)
    return statistics.median(rates), statistics.median(gc_shares)


def rate(setup: Setup, reps: int) -> float:
    """Median operations per second (see ``timed``)."""
    return timed(setup, reps)[0]


def median_int(values: Sequence[int]) -> int:
    return int(statistics.median(values))


def names(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(start, start + n)]


# -- counter ----------------------------------------------------------------------------
def counter_deltas(n: int) -> list[PNCounter]:
    b = PNCounter()
    return [b.incr(ACTOR_B, 1) for _ in range(n)]


def bench_counter(p: Params) -> TypeRow:
    n = p.ops_per_rep

    def mutate() -> Callable[[], int]:
        c = PNCounter()

        def body() -> int:
            for _ in range(n):
                c.incr(ACTOR_A, 1)
            return n

        return body

    deltas = counter_deltas(n)
    return TypeRow(
        "counter",
        "incr(actor, 1)",
        rate(mutate, p.reps),
        len(deltas),
        rate(merger(PNCounter, deltas, own=lambda s: s.incr(ACTOR_A, 5)), p.reps),
        rate(unpack_merger(PNCounter, deltas, own=lambda s: s.incr(ACTOR_A, 5)), p.reps),
        median_int([len(pack(d)) for d in deltas]),
    )


# -- generic merge bodies -----------------------------------------------------------------
def merger(cls: type[T], deltas: Sequence[T], own: Callable[[T], object]) -> Setup:
    """Join ``deltas`` (from replica B, in order) into a state that holds A's own writes."""

    def setup() -> Callable[[], int]:
        state = cls()
        own(state)

        def body() -> int:
            merge = state.merge
            for d in deltas:
                merge(d)
            return len(deltas)

        return body

    return setup


def unpack_merger(cls: type[T], deltas: Sequence[T], own: Callable[[T], object]) -> Setup:
    """Like ``merger`` but from bytes: ``codec.unpack`` (with validation) then join."""
    blobs = [pack(d) for d in deltas]

    def setup() -> Callable[[], int]:
        state = cls()
        own(state)

        def body() -> int:
            merge = state.merge
            for blob in blobs:
                merge(cast(T, unpack(blob, cls)))
            return len(blobs)

        return body

    return setup


# -- register ---------------------------------------------------------------------------
def register_deltas(n: int) -> list[LWWRegister]:
    clock = HLC(ACTOR_B)
    b = LWWRegister()
    return [b.assign(clock.now(WALL_MS), f"value-{i}") for i in range(n)]


def bench_register(p: Params) -> TypeRow:
    n = p.ops_per_rep
    values = [f"value-{i}" for i in range(n)]

    def mutate() -> Callable[[], int]:
        reg = LWWRegister()
        clock = HLC(ACTOR_A)

        def body() -> int:
            for v in values:
                reg.assign(clock.now(WALL_MS), v)
            return n

        return body

    deltas = register_deltas(n)

    def own(reg: LWWRegister) -> None:
        reg.assign(HLC(ACTOR_A).now(WALL_MS - 1), "old")

    return TypeRow(
        "register",
        "assign(hlc.now(), value)",
        rate(mutate, p.reps),
        len(deltas),
        rate(merger(LWWRegister, deltas, own), p.reps),
        rate(unpack_merger(LWWRegister, deltas, own), p.reps),
        median_int([len(pack(d)) for d in deltas]),
    )


# -- OR-set -----------------------------------------------------------------------------
def set_deltas(n: int) -> list[ORSet]:
    b = ORSet()
    return [b.add(ACTOR_B, (m,))[0] for m in names("b", n)]


def bench_set(p: Params) -> TypeRow:
    n = p.ops_per_rep
    members = [(m,) for m in names("a", n)]

    def mutate() -> Callable[[], int]:
        s = ORSet()

        def body() -> int:
            for m in members:
                s.add(ACTOR_A, m)
            return n

        return body

    deltas = set_deltas(p.set_merge_ops)

    def own(s: ORSet) -> None:
        s.add(ACTOR_A, names("own", 100))

    return TypeRow(
        "or-set",
        "add(actor, [new member])",
        rate(mutate, p.reps),
        len(deltas),
        rate(merger(ORSet, deltas, own), p.reps),
        rate(unpack_merger(ORSet, deltas, own), p.reps),
        median_int([len(pack(d)) for d in deltas]),
    )


# -- HLL --------------------------------------------------------------------------------
def hll_deltas(n: int) -> list[HLL]:
    """Deltas of B adding ``n`` distinct items; adds that raised no register mint none."""
    b = HLL()
    out = [b.add((item,)) for item in names("b", n)]
    return [d for d in out if d.has_registers()]


def bench_hll(p: Params) -> TypeRow:
    n = p.ops_per_rep
    items = [(m,) for m in names("a", n)]

    def mutate() -> Callable[[], int]:
        h = HLL()

        def body() -> int:
            for item in items:
                h.add(item)
            return n

        return body

    deltas = hll_deltas(n)

    def own(h: HLL) -> None:
        h.add(names("own", 50_000))  # a dense state, as a busy key has

    return TypeRow(
        "hll",
        "add([item])",
        rate(mutate, p.reps),
        len(deltas),
        rate(merger(HLL, deltas, own), p.reps),
        rate(unpack_merger(HLL, deltas, own), p.reps),
        median_int([len(pack(d)) for d in deltas]),
    )


# -- OR-set size independence -------------------------------------------------------------
def bench_set_size(members: int, samples: int) -> SetSizeRow:
    """At a fixed set size: add one new member then remove it, ``samples`` times.

    The local mutations are timed first; their deltas are then joined, in the
    same order, into a remote copy of the set, timing each join.  Keeping the
    two phases apart stops one side's allocations from disturbing the other's
    timings.
    """
    s = ORSet()
    for i in range(0, members, 10_000):  # build in large batches: setup, not timed
        s.add(ACTOR_A, names("base", min(10_000, members - i), start=i))
    remote = s.copy()
    clock = time.perf_counter
    add_t: list[float] = []
    rm_t: list[float] = []
    deltas: list[tuple[ORSet, ORSet]] = []
    with gc_frozen():  # the prebuilt sets are inputs, as in ``timed``
        for m in names("extra", samples):
            one = (m,)
            t0 = clock()
            d_add, _ = s.add(ACTOR_A, one)
            t1 = clock()
            d_rm, _ = s.remove(one)
            t2 = clock()
            add_t.append(t1 - t0)
            rm_t.append(t2 - t1)
            deltas.append((d_add, d_rm))
    madd_t: list[float] = []
    mrm_t: list[float] = []
    with gc_frozen():
        for d_add, d_rm in deltas:
            t0 = clock()
            remote.merge(d_add)
            t1 = clock()
            remote.merge(d_rm)
            t2 = clock()
            madd_t.append(t1 - t0)
            mrm_t.append(t2 - t1)
    assert len(s) == members and remote == s, "the remote copy did not converge"
    us = 1e6
    return SetSizeRow(
        members,
        statistics.median(add_t) * us,
        statistics.median(rm_t) * us,
        statistics.median(madd_t) * us,
        statistics.median(mrm_t) * us,
        median_int([len(pack(a)) for a, _ in deltas]),
        median_int([len(pack(r)) for _, r in deltas]),
    )


# -- hash and sorted set by size ---------------------------------------------------------------
BUILD_CHUNK = 10_000  # entries per write while building a large value (setup, not timed)


def build_hash(n: int) -> ORMap:
    """A hash of ``n`` fields ``field-0000000``..., each holding an integer."""
    h, clock = ORMap(), HLC(ACTOR_A)
    for i in range(0, n, BUILD_CHUNK):
        fields = names("field", min(BUILD_CHUNK, n - i), start=i)
        h.set(ACTOR_A, clock.now(WALL_MS), [(f, i + k) for k, f in enumerate(fields)])
    return h


def build_zset(n: int) -> ZSet:
    """A sorted set of ``n`` members ``member-0000000``... with scores 0.0, 1.0, ..."""
    z, clock = ZSet(), HLC(ACTOR_A)
    for i in range(0, n, BUILD_CHUNK):
        members = names("member", min(BUILD_CHUNK, n - i), start=i)
        z.add(ACTOR_A, clock.now(WALL_MS), [(m, float(i + k)) for k, m in enumerate(members)])
    return z


def time_writes(op: str, n: int, state: T, writes: Sequence[Callable[[], T]]) -> ValueRow:
    """Time each write on ``state``, then the join of each delta into a copy taken before.

    The two phases are kept apart, as in ``bench_set_size``; the prebuilt value
    and the prepared writes are inputs, frozen out of the collector's reach.
    """
    remote = state.copy()
    clock = time.perf_counter
    op_t: list[float] = []
    deltas: list[T] = []
    with gc_frozen():
        for write in writes:
            t0 = clock()
            d = write()
            op_t.append(clock() - t0)
            deltas.append(d)
    merge_t: list[float] = []
    with gc_frozen():
        for d in deltas:
            t0 = clock()
            remote.merge(d)
            merge_t.append(clock() - t0)
    assert remote == state, f"{op}: the remote copy did not converge"
    us = 1e6
    return ValueRow(
        op,
        n,
        statistics.median(op_t) * us,
        statistics.median(merge_t) * us,
        median_int([len(pack(d)) for d in deltas]),
    )


def _hset(h: ORMap, clock: HLC, field: str, value: int) -> ORMap:
    return h.set(ACTOR_A, clock.now(WALL_MS), ((field, value),))[0]


def _hincrby(h: ORMap, field: str) -> ORMap:
    return h.incr(ACTOR_A, field, 1)[0]


def _zadd(z: ZSet, clock: HLC, member: str, score: float) -> ZSet:
    return z.add(ACTOR_A, clock.now(WALL_MS), ((member, score),))[0]


def _zincrby(z: ZSet, member: str) -> ZSet:
    return z.incr(ACTOR_A, member, 1.0)[0]


def bench_hash_size(n: int, samples: int) -> list[ValueRow]:
    """HSET and HINCRBY of existing fields, spread over the hash, on ``n`` fields."""
    h = build_hash(n)
    rng = random.Random(n)
    clock = HLC(ACTOR_A)
    picks = [f"field-{rng.randrange(n):07d}" for _ in range(samples)]
    sets = [partial(_hset, h, clock, f, v) for v, f in enumerate(picks)]
    incrs = [partial(_hincrby, h, f) for f in picks]
    return [time_writes("HSET", n, h, sets), time_writes("HINCRBY", n, h, incrs)]


def bench_zset_size(n: int, samples: int) -> list[ValueRow]:
    """ZADD (a new score: the member moves in the index) and ZINCRBY of existing
    members, and ZRANGE of ``RANGE_LEN`` by rank from the middle, on ``n`` members."""
    z = build_zset(n)
    rng = random.Random(n)
    clock = HLC(ACTOR_A)
    picks = [f"member-{rng.randrange(n):07d}" for _ in range(samples)]
    adds = [partial(_zadd, z, clock, m, rng.uniform(0, n)) for m in picks]
    incrs = [partial(_zincrby, z, m) for m in picks]
    rows = [time_writes("ZADD", n, z, adds), time_writes("ZINCRBY", n, z, incrs)]
    mid = n // 2 - RANGE_LEN // 2
    range_t: list[float] = []
    with gc_frozen():
        for _ in range(samples):
            t0 = time.perf_counter()
            got = z.range_by_rank(mid, mid + RANGE_LEN - 1)
            range_t.append(time.perf_counter() - t0)
    assert len(got) == RANGE_LEN
    rows.append(ValueRow("ZRANGE", n, statistics.median(range_t) * 1e6, None, None))
    return rows


def bench_values(p: Params) -> list[ValueRow]:
    rows: list[ValueRow] = []
    for n in p.value_sizes:
        rows += bench_hash_size(n, p.value_samples)
        gc.collect()  # drop the large hash before building the sorted set
        rows += bench_zset_size(n, p.value_samples)
        gc.collect()
    return rows


def value_ratios(rows: Sequence[ValueRow], sizes: tuple[int, int]) -> list[RatioRow]:
    """Large / small of each op's times."""
    by = {(r.op, r.entries): r for r in rows}
    out: list[RatioRow] = []
    for op in dict.fromkeys(r.op for r in rows):
        small, large = by[op, sizes[0]], by[op, sizes[1]]
        merge = None
        if small.merge_us and large.merge_us is not None:
            merge = large.merge_us / small.merge_us
        aim = AIM_VALUE_RANGE_RATIO if op == "ZRANGE" else AIM_VALUE_WRITE_RATIO
        out.append(RatioRow(op, large.op_us / small.op_us, merge, aim))
    return out


# -- replica core -------------------------------------------------------------------------
def replica_setup(ops: Sequence[dict[str, Any]]) -> Setup:
    """Apply ``ops`` through ``apply_op`` on a fresh replica, draining the log as a shell would."""

    def setup() -> Callable[[], int]:
        r = Replica(REPLICA_A, INCARNATION)

        def body() -> int:
            for i, op in enumerate(ops):
                apply_op(r, op, WALL_MS)
                if i % DRAIN_EVERY_OPS == 0:
                    r.take_pending()
            r.take_pending()
            return len(ops)

        return body

    return setup


def replica_ops(name: str, n: int, per_op: int = 1) -> list[dict[str, Any]]:
    """``n`` operations; set adds and HLL adds carry ``per_op`` new members or items each."""
    if name == "counters.incr":
        one = {"op": name, "key": "visits", "delta": 1}
        return [one] * n
    if name == "registers.set":
        return [{"op": name, "key": "greeting", "value": f"value-{i}"} for i in range(n)]
    field = {"sets.add": "members", "hlls.add": "items"}[name]
    flat = names("a", n * per_op)
    return [
        {"op": name, "key": "k", field: flat[i : i + per_op]} for i in range(0, len(flat), per_op)
    ]


# (op, members or items per op): single-element ops, then a batched add for comparison.
REPLICA_OPS = (
    ("counters.incr", 1),
    ("registers.set", 1),
    ("sets.add", 1),
    ("hlls.add", 1),
    ("sets.add", 10),
)


def bench_replica(p: Params) -> list[ReplicaRow]:
    rows: list[ReplicaRow] = []
    for name, per_op in REPLICA_OPS:
        n = p.ops_per_rep // per_op  # the same number of elements for every row
        r, gc_share = timed(replica_setup(replica_ops(name, n, per_op)), p.reps)
        rows.append(ReplicaRow(name, per_op, r, 1e6 / r, r * per_op, gc_share))
    return rows


# -- profiling ---------------------------------------------------------------------------
def profile(p: Params, top: int) -> None:
    """cProfile (self time first) of the paths the aims are about."""
    n = p.ops_per_rep
    members = [(m,) for m in names("a", n)]

    def counter_incr() -> None:
        c = PNCounter()
        for _ in range(n):
            c.incr(ACTOR_A, 1)

    def set_add() -> None:
        s = ORSet()
        for m in members:
            s.add(ACTOR_A, m)

    targets: dict[str, Callable[[], object]] = {
        "PNCounter.incr": counter_incr,
        "ORSet.add": set_add,
        "apply_op counters.incr": replica_setup(replica_ops("counters.incr", n))(),
        "apply_op sets.add": replica_setup(replica_ops("sets.add", n))(),
    }
    for label, fn in targets.items():
        print(f"\n== profile: {label} ({n:,} ops) ==")
        prof = cProfile.Profile()
        prof.runcall(fn)
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(top)


# -- reporting ---------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def fmt_us(x: float) -> str:
    return f"{x:.2f}"


def aims(types: Sequence[TypeRow], replica: Sequence[ReplicaRow]) -> list[tuple[str, float, int]]:
    by_type = {r.type_name: r for r in types}
    by_op = {(r.op, r.per_op): r for r in replica}
    return [
        (
            "counter incr, PNCounter.incr",
            by_type["counter"].mutations_per_s,
            AIM_COUNTER_INCR_PER_S,
        ),
        ("OR-set add, ORSet.add", by_type["or-set"].mutations_per_s, AIM_SET_ADD_PER_S),
        (
            "counter incr, apply_op",
            by_op["counters.incr", 1].ops_per_s,
            AIM_COUNTER_INCR_PER_S,
        ),
        ("OR-set add, apply_op", by_op["sets.add", 1].ops_per_s, AIM_SET_ADD_PER_S),
        (
            "OR-set add, apply_op, 10 per op",
            by_op["sets.add", 10].elements_per_s,
            AIM_SET_ADD_PER_S,
        ),
    ]


def report(
    p: Params, types: list[TypeRow], sizes: list[SetSizeRow], replica: list[ReplicaRow]
) -> str:
    parts = [
        f"Per type ({p.ops_per_rep:,} ops per repetition, median of {p.reps})",
        table(
            ["type", "mutation", "mutations/s", "merged", "merges/s", "unpack+merge/s", "delta B"],
            [
                [
                    r.type_name,
                    r.mutation,
                    fmt_rate(r.mutations_per_s),
                    f"{r.merged:,}",
                    fmt_rate(r.merges_per_s),
                    fmt_rate(r.unpack_merges_per_s),
                    str(r.delta_bytes),
                ]
                for r in types
            ],
        ),
        "merged: deltas from another replica joined per repetition, in order, into a state",
        "that holds this replica's own writes (the OR-set grows from 100 members to 100 + merged);",
        "delta B: median codec.pack size of one delta.",
        "",
        f"OR-set: one more add / remove by set size (median of {p.single_op_samples:,} samples)",
        table(
            ["members", "add us", "remove us", "merge add us", "merge rm us", "add B", "rm B"],
            [
                [
                    f"{r.members:,}",
                    fmt_us(r.add_us),
                    fmt_us(r.remove_us),
                    fmt_us(r.merge_add_us),
                    fmt_us(r.merge_remove_us),
                    str(r.add_delta_bytes),
                    str(r.remove_delta_bytes),
                ]
                for r in sizes
            ],
        ),
        "",
        f"Replica core: apply_op (validation, replica-level dot, log record; "
        f"log drained every {DRAIN_EVERY_OPS:,} ops)",
        table(
            ["op", "per op", "ops/s", "us/op", "elements/s", "GC time"],
            [
                [
                    r.op,
                    str(r.per_op),
                    fmt_rate(r.ops_per_s),
                    fmt_us(r.us_per_op),
                    fmt_rate(r.elements_per_s),
                    f"{r.gc_share:.0%}",
                ]
                for r in replica
            ],
        ),
        "per op: members or items in each add; elements/s = ops/s x per op;",
        "GC time: share of the run spent in the cyclic garbage collector (gc.callbacks).",
        "",
        "Aims (one core, in-process)",
        table(
            ["path", "measured/s", "aim/s", "status"],
            [
                [label, fmt_rate(got), fmt_rate(aim), "met" if got >= aim else "MISSED"]
                for label, got, aim in aims(types, replica)
            ],
        ),
    ]
    return "\n".join(parts)


def report_values(p: Params, rows: Sequence[ValueRow]) -> str:
    small, large = p.value_sizes
    return "\n".join(
        [
            f"Hash and sorted set by size (median of {p.value_samples:,} samples; "
            f"a write updates an existing entry)",
            table(
                ["op", "entries", "op us", "merge us", "delta B"],
                [
                    [
                        r.op if r.op != "ZRANGE" else f"ZRANGE {RANGE_LEN} by rank",
                        f"{r.entries:,}",
                        fmt_us(r.op_us),
                        "-" if r.merge_us is None else fmt_us(r.merge_us),
                        "-" if r.delta_bytes is None else str(r.delta_bytes),
                    ]
                    for r in rows
                ],
            ),
            "merge us: joining the write's delta into a copy of the value taken before.",
            "",
            f"Ratios, {large:,} / {small:,} entries (aims: writes within "
            f"{AIM_VALUE_WRITE_RATIO}x, the range within {AIM_VALUE_RANGE_RATIO}x)",
            table(
                ["op", "op time", "merge time", "aim", "status"],
                [
                    [
                        r.op,
                        f"{r.op_ratio:.2f}x",
                        "-" if r.merge_ratio is None else f"{r.merge_ratio:.2f}x",
                        f"{r.aim}x",
                        "met" if r.met else "MISSED",
                    ]
                    for r in value_ratios(rows, p.value_sizes)
                ],
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="a short run (fewer ops and samples)")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    ap.add_argument(
        "--profile", action="store_true", help="print cProfile of the aimed paths instead"
    )
    ap.add_argument("--top", type=int, default=15, help="rows per profile (default 15)")
    ap.add_argument(
        "--values-only", action="store_true", help="only the hash and sorted set rows by size"
    )
    args = ap.parse_args(argv)
    p = QUICK if args.quick else FULL
    if args.profile:
        profile(p, args.top)
        return 0
    info = machine()
    print(f"crdtkv CRDT core benchmark: {info['date']}")
    print(f"{info['cpu_model']}, {info['cpus']} CPUs, {info['python']}, one core in-process\n")
    t0 = time.perf_counter()
    doc: dict[str, Any] = {
        "benchmark": "crdt_core",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": info,
        "params": asdict(p),
    }
    if not args.values_only:
        types = [bench_counter(p), bench_register(p), bench_set(p), bench_hll(p)]
        sizes = [
            bench_set_size(0, p.single_op_samples),
            bench_set_size(p.big_set_members, p.single_op_samples),
        ]
        replica = bench_replica(p)
        print(report(p, types, sizes, replica) + "\n")
        doc["types"] = [asdict(r) for r in types]
        doc["or_set_by_size"] = [asdict(r) for r in sizes]
        doc["replica_core"] = [asdict(r) for r in replica]
        doc["aims"] = [
            {"path": label, "measured_per_s": got, "aim_per_s": aim, "met": got >= aim}
            for label, got, aim in aims(types, replica)
        ]
    values = bench_values(p)
    print(report_values(p, values))
    doc["values_by_size"] = [asdict(r) for r in values]
    doc["value_ratios"] = [{**asdict(r), "met": r.met} for r in value_ratios(values, p.value_sizes)]
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The write path's cost per op, phase by phase, in-process (no HTTP, no event loop).

    .venv/bin/python benchmarks/write_path.py                 # batches of 100 register sets
    .venv/bin/python benchmarks/write_path.py --load incr     # single counter increments
    .venv/bin/python benchmarks/write_path.py --requests 2000 --batch 100 --group-commit 16

Runs what the server does for each request, on a real replica with RocksDB in a
temporary directory, and times each phase in CPU time of this thread
(``time.thread_time``: steadier than wall time on a shared machine; a synced
write's wait for the disk is not counted):

- ``parse``: the request body decoded and checked, as ``/v1/batch`` and the
  single-key routes do (``crdtkv.api.codec.decode_body``);
- ``apply``: the ops applied to the replica core (``crdtkv.api.routes.apply_batch``,
  or one op), the replica's log records and bookkeeping included (a batch's
  deltas are encoded here, as its ops commit);
- ``encode``: the group commit's storage batch (``NodeCore.flush`` ->
  ``persist.build_batch``: log records, checkpoints when due);
- ``persist``: ``Storage.write`` of that batch (``--sync``: synced, as
  ``--durability fsync``);
- ``ship``: the durable entries handed to replication (``NodeCore.write_done``
  -> ``Replication.on_durable``: the shipping log's bytes), with one peer
  configured so the replication core exists, as on a replicated server
  (``--no-peer``: none, as in ``benchmarks/compare.py``);
- ``reply``: the response body (``encode_response``).

A group commit covers ``--group-commit`` requests (the server's takes every
request that arrived while the previous write was in flight: 16 batches or
about 24 increments under the comparison's load).  Prints µs per op for each
phase and their sum, and the log records and storage writes per op.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

PHASES = ("parse", "apply", "encode", "persist", "ship", "reply")


def _use_tree(tree: str) -> None:
    """Import crdtkv from another source tree (``--tree``: before/after in one run)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, str(Path(tree).resolve()))


class _CoreNode:
    """What the routes call on a node, over a ``NodeCore`` (no event loop)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.now = 0

    def apply(self, op: Any, asking: bool = False) -> dict[str, Any]:
        if asking:  # a tree before sharding has no such argument
            return self.core.apply(op, self.now, asking)
        return self.core.apply(op, self.now)

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        group = getattr(self.core, "group", contextlib.nullcontext)  # older trees have none
        with group():
            yield


def _batch_applier() -> Any:
    from crdtkv.api import routes

    if hasattr(routes, "apply_batch"):
        return routes.apply_batch

    def apply_batch(node: Any, ops: list[Any]) -> list[Any]:  # before apply_batch existed
        return [routes._apply_one(node, op) for op in ops]

    return apply_batch


def _bodies(load: str, batch: int, n: int, keyspace: int) -> list[bytes]:
    rnd = random.Random(1)
    out = []
    for _ in range(n):
        if load == "batch":
            ops = [
                {
                    "op": "registers.set",
                    "key": f"key:{rnd.randrange(keyspace):012d}",
                    "value": "xxx",
                }
                for _ in range(batch)
            ]
            out.append(orjson.dumps({"ops": ops}))
        else:
            out.append(b'{"delta":1}')
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from crdtkv.api.codec import decode_body, encode_response
    from crdtkv.node.core import NodeCore
    from crdtkv.replica.persist import load_replica
    from crdtkv.storage.rocks import RocksStorage
    from replication.protocol import Replication

    apply_batch = _batch_applier()
    tmp = Path(tempfile.mkdtemp(prefix="crdtkv-writepath-"))
    storage = RocksStorage(tmp / "data")
    replica = load_replica(storage, "r1", "inc1")
    core = NodeCore(replica, durability="fsync" if args.sync else "wal", now_ms=0)
    if args.peer:
        core.attach(Replication(replica, ["r2"], boot=1))
    node = _CoreNode(core)
    bodies = _bodies(args.load, args.batch, args.requests, args.keyspace)
    rnd = random.Random(2)
    t = dict.fromkeys(PHASES, 0.0)
    ops = records = writes = 0
    clock = time.thread_time  # CPU of this thread: steady on a shared machine
    pending: list[int] = []
    prof = None
    if args.calls:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    started = clock()
    for i, raw in enumerate(bodies):
        node.now = int((clock() - started) * 1000)
        t0 = clock()
        body = decode_body(raw, "json")
        t1 = clock()
        if args.load == "batch":
            results: Any = {"results": apply_batch(node, body["ops"])}
            ops += len(body["ops"])
        else:
            op = {"op": "counters.incr", "key": f"ctr:{rnd.randrange(args.keyspace):012d}"}
            op.update(body)
            results = node.apply(op)
            ops += 1
        t2 = clock()
        reply = encode_response(results, "json")
        t3 = clock()
        assert reply.body
        t["parse"] += t1 - t0
        t["apply"] += t2 - t1
        t["reply"] += t3 - t2
        pending.append(i)
        if len(pending) >= args.group_commit or i == len(bodies) - 1:
            pending.clear()
            t4 = clock()
            core.flush(node.now)
            actions = core.take_actions()
            t5 = clock()
            for a in actions:
                if hasattr(a, "batch"):
                    records += sum(1 for o in a.batch.ops if getattr(o, "cf", "") == "log")
                    storage.write(a.batch, sync=a.sync)
                    writes += 1
            t6 = clock()
            core.write_done(node.now)
            core.take_actions()
            t7 = clock()
            t["encode"] += t5 - t4
            t["persist"] += t6 - t5
            t["ship"] += t7 - t6
    calls = None
    if prof is not None:
        import pstats

        prof.disable()
        calls = pstats.Stats(prof).total_calls  # type: ignore[attr-defined]
    storage.close()
    per_op = {k: 1e6 * v / ops for k, v in t.items()}
    return {
        "load": args.load,
        "batch": args.batch if args.load == "batch" else 1,
        "requests": args.requests,
        "ops": ops,
        "group_commit": args.group_commit,
        "sync": args.sync,
        "peer": args.peer,
        "us_per_op": per_op,
        "us_per_op_total": sum(per_op.values()),
        "us_per_op_cpu": sum(v for k, v in per_op.items() if k != "persist"),
        "log_records_per_op": records / ops,
        "storage_writes": writes,
        "python_calls_per_op": None if calls is None else calls / ops,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--load", choices=["batch", "incr"], default="batch")
    p.add_argument("--batch", type=int, default=100, help="ops per batch request (default 100)")
    p.add_argument("--requests", type=int, help="requests (default 1000 batches, 50000 incr)")
    p.add_argument("--group-commit", type=int, help="requests per group commit (16 / 24)")
    p.add_argument("--keyspace", type=int, default=10_000)
    p.add_argument("--sync", action="store_true", help="synced writes (fsync durability)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--calls",
        action="store_true",
        help="count Python function calls per op (cProfile; a figure the machine's load does "
        "not move; the times are then the profiler's)",
    )
    p.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="no replication core (a replica without peers, as in benchmarks/compare.py): "
        "no shipping log to hand entries to",
    )
    p.add_argument("--tree", help="import crdtkv from this source tree (e.g. a git archive)")
    args = p.parse_args(argv)
    if args.tree:
        _use_tree(args.tree)
    if args.requests is None:
        args.requests = 1000 if args.load == "batch" else 50_000
    if args.group_commit is None:
        args.group_commit = 16 if args.load == "batch" else 24
    res = run(args)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    what = f"{res['load']} x{res['batch']}, {res['requests']} requests, {res['ops']} ops"
    print(f"{what}, group commit of {res['group_commit']} requests, sync={res['sync']}")
    for k, v in res["us_per_op"].items():
        print(f"  {k:<8} {v:8.2f} us/op")
    print(f"  {'total':<8} {res['us_per_op_total']:8.2f} us/op "
          f"({res['us_per_op_cpu']:.2f} without persist)")  # fmt: skip
    print(f"  log records per op {res['log_records_per_op']:.3f}, "
          f"{res['storage_writes']} storage writes")  # fmt: skip
    if res["python_calls_per_op"] is not None:
        print(f"  Python function calls per op {res['python_calls_per_op']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

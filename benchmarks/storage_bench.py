"""Write throughput of RocksStorage: batches/s for 1-put and 100-put batches,
with sync=True (fsync durability) and sync=False (WAL in the page cache).

    .venv/bin/python benchmarks/storage_bench.py [--seconds 3] [--value-size 64] [--dir DIR]

Each case runs in a fresh RocksDB directory (a temp dir under --dir, which
should be on the disk you want to measure) for about --seconds seconds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from crdtkv.storage import WriteBatch
from crdtkv.storage.rocks import RocksStorage


def run_case(
    directory: str, puts_per_batch: int, sync: bool, seconds: float, value_size: int
) -> tuple[int, float]:
    """Write batches for ``seconds``; return (batches written, elapsed)."""
    value = os.urandom(value_size)
    with (
        tempfile.TemporaryDirectory(dir=directory) as tmp,
        RocksStorage(os.path.join(tmp, "db")) as store,
    ):
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        now = start
        while now < deadline:
            for _ in range(16):  # check the clock every 16 batches
                batch = WriteBatch()
                for i in range(puts_per_batch):
                    batch.put("log", b"%012d/%04d" % (n, i), value)
                store.write(batch, sync=sync)
                n += 1
            now = time.perf_counter()
        return n, now - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case")
    parser.add_argument("--value-size", type=int, default=64, help="bytes per value")
    parser.add_argument("--dir", default=None, help="where to create the temp databases")
    args = parser.parse_args()
    directory = args.dir or tempfile.gettempdir()
    print(f"RocksStorage in {directory}, {args.value_size}-byte values, {args.seconds}s per case")
    print(f"{'puts/batch':>10} {'sync':>5} {'batches':>9} {'batches/s':>11} {'puts/s':>11}")
    for puts in (1, 100):
        for sync in (True, False):
            n, elapsed = run_case(directory, puts, sync, args.seconds, args.value_size)
            rate = n / elapsed
            print(f"{puts:>10} {sync!s:>5} {n:>9} {rate:>11,.0f} {rate * puts:>11,.0f}")


if __name__ == "__main__":
    main()

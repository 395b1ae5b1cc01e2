"""A replica with its storage, in asyncio: group commit and checkpoints.

This is a shell: it owns the event-loop plumbing and the storage thread, and
leaves every decision about state to the pure core (``crdtkv.replica``).

Group commit: a request applies its operation to memory synchronously, then
awaits ``durable(pos)``.  A single writer task takes every log entry pending
at that moment and writes them as one storage batch on a dedicated thread,
so all requests that arrived while the previous batch was being written
share the next write.  No request is answered before the batch holding its
operation is written (and, in ``fsync`` mode, synced).  Reads also wait for
the operations they can see, so nobody observes a write that could still be
lost.  A failed storage write fails every waiting request and stops the
node (fail-stop): memory may be ahead of disk, and serving on would risk
acknowledging what is not durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crdtkv.crdts.causal import VersionVector, vv_dominates
from crdtkv.errors import StorageError
from crdtkv.metrics import MetricsRegistry
from crdtkv.replica import Replica, apply_op
from crdtkv.replica.keyspace import LogEntry
from crdtkv.replica.persist import WAL_SYNC_MS, Checkpointer, build_batch, mark_clean
from crdtkv.storage.base import Storage, WriteBatch

__all__ = ["APPLIED_WAITERS_MAX", "Node", "wall_clock_ms"]

log = logging.getLogger("crdtkv.node")

# Requests parked in ``wait_applied`` (session tokens ahead of this replica).
# Each holds a connection; past this many, a new one is refused at once rather
# than letting a lagging replica pile up unbounded waiters.
APPLIED_WAITERS_MAX = 10_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    def __init__(
        self,
        replica: Replica,
        storage: Storage,
        *,
        durability: str = "fsync",
        clock: Callable[[], int] = wall_clock_ms,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        if durability not in ("fsync", "wal"):
            raise ValueError("durability must be 'fsync' or 'wal'")
        self.replica = replica
        self.storage = storage
        self.sync = durability == "fsync"
        self.clock = clock
        self.checkpointer = checkpointer or Checkpointer()
        self.durable_pos = replica.log_pos  # every log entry up to here is written
        self.failed: BaseException | None = None
        self.stopped = asyncio.Event()
        self.log_floor: Callable[[], int | None] = lambda: replica.checkpoint_pos
        # Called with the log entries of each batch once it is durable (replication).
        self.on_durable: list[Callable[[list[LogEntry]], None]] = []
        self.batches_written = 0
        self.entries_written = 0
        self.metrics = MetricsRegistry()  # every layer's collectors; /metrics renders it
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._applied_waiters: dict[asyncio.Future[None], VersionVector] = {}
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crdtkv-storage")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_sync_ms = 0

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self.checkpointer.last_ms = self.clock()
        self._task = asyncio.get_running_loop().create_task(self._writer(), name="group-commit")

    async def close(self) -> None:
        """Write everything pending plus a final checkpoint, then close storage."""
        if self._closing:
            return
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.failed is None:
            try:
                await self._write_once(force_checkpoint=True)
                # Last: the next start knows nothing unsynced was lost (B8).
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, mark_clean, self.storage
                )
            except StorageError as e:
                log.error("final flush failed: %s", e)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.storage.close)
        self._executor.shutdown(wait=True)

    # -- requests ------------------------------------------------------------------
    def now_ms(self) -> int:
        return self.clock()

    def apply(self, op: Any) -> dict[str, Any]:
        """Apply one op to memory (raises on refusal; nothing changes then)."""
        if self.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        result = apply_op(self.replica, op, self.clock())
        if self.replica.pending:
            self._wakeup.set()
            if self._applied_waiters:
                self.notify_applied()
        return result

    async def durable(self, pos: int | None = None) -> None:
        """Wait until every log entry up to ``pos`` (default: all so far) is written."""
        target = self.replica.log_pos if pos is None else pos
        if target <= self.durable_pos:
            return
        if self.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._wakeup.set()
        await fut

    # -- session waits ---------------------------------------------------------------
    async def wait_applied(self, vv: VersionVector, timeout_s: float) -> bool:
        """Wait until ``replica.applied.vv`` dominates ``vv``; False after ``timeout_s``.

        Whoever applies remote deltas calls ``notify_applied`` afterwards.
        """
        if vv_dominates(self.replica.applied.vv, vv):
            return True
        if timeout_s <= 0 or len(self._applied_waiters) >= APPLIED_WAITERS_MAX:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters[fut] = vv
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._applied_waiters.pop(fut, None)

    def notify_applied(self) -> None:
        """Wake the ``wait_applied`` callers whose vector is now covered."""
        applied = self.replica.applied.vv
        for fut, vv in self._applied_waiters.items():
            if not fut.done() and vv_dominates(applied, vv):
                fut.set_result(None)

    async def checkpoint_now(self) -> None:
        """Write a checkpoint (with everything pending) and wait for it."""
        if self.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        try:
            await self._write_once(force_checkpoint=True)
        except StorageError as e:
            self._fail(e)
            raise

    # -- the writer --------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            timer = None
            if not self.sync and self.replica.durable_vv != self.replica.applied.vv:
                # In `wal` mode, sync at least every WAL_SYNC_MS while something
                # applied is not yet synced (see Replica.durable_vv).  A timer,
                # not wait_for: wait_for can swallow a cancellation (3.11).
                timer = asyncio.get_running_loop().call_later(WAL_SYNC_MS / 1000, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                if timer is not None:
                    timer.cancel()
            self._wakeup.clear()
            try:
                await self._write_once(force_checkpoint=False)
            except StorageError as e:
                self._fail(e)
                return

    async def _write_once(self, *, force_checkpoint: bool) -> None:
        replica = self.replica
        entries = replica.take_pending()
        now = self.clock()
        checkpoint = (
            force_checkpoint or replica.checkpoint_requested or self.checkpointer.due(replica, now)
        )
        sync = self.sync or force_checkpoint or now - self._last_sync_ms >= WAL_SYNC_MS
        sync_due = sync and replica.durable_vv != replica.applied.vv
        if not (entries or replica.gc_deleted or replica.checkpoint_requested or sync_due) and not (
            checkpoint and replica.dirty
        ):
            return
        if checkpoint:
            self.checkpointer.last_ms = now
        applied = dict(replica.applied.vv)  # all of it is in this batch or an earlier one
        batch = build_batch(replica, entries, checkpoint=checkpoint, log_floor=self.log_floor())
        target = entries[-1].pos if entries else self.durable_pos
        await self._write(batch, sync)
        if sync:
            self._last_sync_ms = now
            replica.durable_vv = applied
        self.batches_written += 1
        self.entries_written += len(entries)
        self.durable_pos = max(self.durable_pos, target)
        self._release(self.durable_pos)
        for cb in self.on_durable:
            cb(entries)
        if replica.pending:
            self._wakeup.set()

    async def _write(self, batch: WriteBatch, sync: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _write, self.storage, batch, sync)
        except StorageError:
            raise
        except Exception as e:  # anything the storage engine throws is a storage failure
            raise StorageError(f"storage write failed: {e}") from e

    def _release(self, pos: int) -> None:
        waiters = self._waiters
        # Waiters are appended with non-decreasing targets except for explicit
        # positions; scan until the first one still ahead.
        keep: deque[tuple[int, asyncio.Future[None]]] = deque()
        while waiters:
            target, fut = waiters.popleft()
            if target <= pos:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._waiters = keep

    def _fail(self, exc: StorageError) -> None:
        log.critical("storage write failed, stopping the replica: %s", exc)
        self.failed = exc
        while self._waiters:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(StorageError("storage write failed; the write is not durable"))
        self.stopped.set()


def _write(storage: Storage, batch: WriteBatch, sync: bool) -> None:
    storage.write(batch, sync=sync)

"""The asyncio shell of the node core: futures, a storage thread and a timer.

Every decision (when a session is covered, when a request may be answered,
what goes into a storage batch, when to sync, checkpoint or collect) is made
by ``crdtkv.node.core.NodeCore``; this module only carries out its actions:

- ``Write``: the batch goes to storage on one dedicated thread (so the event
  loop never blocks on an fsync); ``write_done`` or ``write_failed`` follows.
- ``Admit``, ``Answer``, ``Reply``, ``Ready``: the future of the request or
  peer message they name is resolved.
- ``Durable``: the ``on_durable`` hooks run (replication wakes its senders).

Group commit: a request applies its operation to memory synchronously, then
awaits ``finish``.  The flush is scheduled with ``call_soon``, so every
request of the same event-loop turn shares one storage batch, and requests
arriving while a batch is being written share the next one.  A failed write
fails every waiting request and stops the node (``stopped`` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from crdtkv.cluster.state import ClusterState
from crdtkv.crdts.vset import IndexOptions, VSet
from crdtkv.errors import StorageError
from crdtkv.metrics import MetricsRegistry
from crdtkv.node.core import Action, Admit, Answer, Durable, NodeCore, Ready, Reply, Write
from crdtkv.ops.spec import OpSpec
from crdtkv.replica import Replica
from crdtkv.replica.keyspace import LogEntry
from crdtkv.replica.persist import Checkpointer, mark_clean, snapshot_parts
from crdtkv.sessions import SessionToken
from crdtkv.storage.base import Storage, WriteBatch
from crdtkv.vectors.builder import IndexBuilder, save_snapshot, snapshot_path
from crdtkv.vectors.search import SYNC_BUILD_MAX, SetIndex, needs_background_build
from replication.messages import Message
from replication.protocol import Replication

__all__ = ["Node", "wall_clock_ms"]

log = logging.getLogger("crdtkv.node")


KEYS_EXACT_MAX = 100_000  # live_keys counts at once up to this many names
KEYS_RECOUNT_S = 5.0  # and past it, walks again when its count is older than this
KEYS_COUNT_SLICE = 10_000  # names counted between two turns of the event loop


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


VECTORSET = "vectorset"
VSET_INDEX_POLL_S = 1.0  # how often the index builder looks for sets that need one
BUILD_STOP_WAIT_S = 60  # a stop waits this long at most for a build's batch to end


class Node:
    """One replica in asyncio: the node core, its storage and its timers."""

    def __init__(
        self,
        replica: Replica,
        storage: Storage,
        *,
        durability: str = "fsync",
        clock: Callable[[], int] = wall_clock_ms,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.clock = clock
        self.core = NodeCore(
            replica, durability=durability, checkpointer=checkpointer, now_ms=clock()
        )
        self.replica = replica
        self.storage = storage
        self.stopped = asyncio.Event()
        self.metrics = MetricsRegistry()  # every layer's collectors; /metrics renders it
        # Called with the log entries of each batch once it is durable (replication).
        self.on_durable: list[Callable[[list[LogEntry]], None]] = []
        self._tickets = itertools.count(1)
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crdtkv-storage")
        self._write_task: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._started = False
        self._closing = False
        # The count of visible keys of a large keyspace, walked in the background.
        self._key_count: int | None = None
        self._key_count_at: float | None = None  # time.monotonic() of that walk's end
        self._key_count_task: asyncio.Task[None] | None = None
        self._index_task: asyncio.Task[None] | None = None
        # Where large vector sets' index snapshots go at a clean stop (None: nowhere).
        self.index_dir: Path | None = None
        # Where the keyspace snapshot goes at a clean stop (None: no snapshot).
        self.keyspace_snapshot: Path | None = None
        self._builder: IndexBuilder | None = None  # the index build running, if any
        # Sharded (``--cluster-map``): the map and this process's slots; None: one shard.
        self.cluster: ClusterState | None = None
        # Sharded: the slot mover (crdtkv.api.moves), whose progress /v1/status shows.
        self.mover: Any = None

    # -- what others read ---------------------------------------------------------------------
    @property
    def failed(self) -> StorageError | None:
        return self.core.failed

    @property
    def durable_pos(self) -> int:
        return self.core.durable_pos

    @property
    def batches_written(self) -> int:
        return self.core.stats.batches_written

    @property
    def entries_written(self) -> int:
        return self.core.stats.entries_written

    def now_ms(self) -> int:
        return self.clock()

    def live_keys(self) -> int:
        """The keys a read would find (``/v1/status``, ``/metrics``, DBSIZE, INFO).

        Exact while the keyspace holds at most ``KEYS_EXACT_MAX`` names.  Past that,
        counting takes a second per million keys, so it is the count of the last walk
        made in the background, in slices between requests (a new walk starts when
        the last one is over ``KEYS_RECOUNT_S`` old); until the first walk ends, the
        number of names held, an upper bound."""
        r = self.replica
        if len(r.names) <= KEYS_EXACT_MAX:
            return r.live_keys(self.clock())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to count in the background: count now
            return r.live_keys(self.clock())
        at = self._key_count_at
        if self._key_count_task is None and (at is None or time.monotonic() - at > KEYS_RECOUNT_S):
            self._key_count_task = loop.create_task(self._count_keys(), name="count-keys")
        return self._key_count if self._key_count is not None else len(r.names)

    async def _count_keys(self) -> None:
        r = self.replica
        try:
            n = i = 0
            while True:
                names = r.names[i : i + KEYS_COUNT_SLICE]
                if not names:
                    break
                now = self.clock()
                n += sum(1 for name in names if r.visible_type(name, now) is not None)
                i += len(names)
                await asyncio.sleep(0)  # let requests run between slices
            self._key_count, self._key_count_at = n, time.monotonic()
        finally:
            self._key_count_task = None

    def attach_replication(self, replication: Replication) -> None:
        self.core.attach(replication)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        self.core.checkpointer.last_ms = self.clock()
        self._arm_timer()
        self._index_task = asyncio.get_running_loop().create_task(
            self._vset_indexes(), name="vset-indexes"
        )

    async def _vset_indexes(self) -> None:
        """Build, one at a time in a background thread, the ANN index of every vector
        set too large to index inline: at start those loaded from disk, later those a
        search found without one (``Replica.vset_builds``).  Searches scan exactly
        meanwhile (``crdtkv.vectors.search.PendingBuild``); progress is logged."""
        r = self.replica
        names = {name for t, name in list(r.states.hot) if t == VECTORSET}  # never cold
        while not self._closing:
            for name in sorted(names):
                vs = r.states.get((VECTORSET, name))
                if isinstance(vs, VSet) and vs.pending is None and needs_background_build(vs):
                    await self._build_index(name, vs)
            await asyncio.sleep(VSET_INDEX_POLL_S)
            names, r.vset_builds = r.vset_builds, set()

    async def _save_index_snapshots(self, loop: asyncio.AbstractEventLoop) -> None:
        """At a clean stop: save the index of every large vector set that has one, so
        the next start loads it (and brings it up to date) instead of building it."""
        if self.index_dir is None:
            return
        saved = set()
        for (t, name), vs in self.replica.states.hot_items():  # vector sets are never cold
            if t != VECTORSET or not isinstance(vs, VSet) or not isinstance(vs.ann, SetIndex):
                continue
            if len(vs) <= SYNC_BUILD_MAX:
                continue
            path = snapshot_path(self.index_dir, name)
            pairs = [(e, v) for e, v, _ in vs.items()]
            try:
                await loop.run_in_executor(None, save_snapshot, path, name, vs.ann, pairs)
                saved.add(path.name)
                log.info("vset %s: index snapshot saved, %d elements", name, len(pairs))
            except Exception as e:  # a snapshot is a shortcut for the next start
                log.warning("vset %s: index snapshot not saved: %s", name, e)
        with contextlib.suppress(OSError):  # drop the snapshots of sets that are gone
            for old in self.index_dir.glob("*.usearch"):
                if old.name not in saved:
                    for suffix in ("", ".labels", ".digests"):
                        Path(str(old) + suffix).unlink(missing_ok=True)

    async def _save_keyspace_snapshot(self, loop: asyncio.AbstractEventLoop) -> list[Any] | None:
        """At a clean stop, after the final checkpoint: save the keyspace beside the
        database, for the next start to load instead of every record; returns the
        mark ``mark_clean`` records (None: no snapshot, the next start reads records)."""
        path = self.keyspace_snapshot
        if path is None:
            return None
        r = self.replica
        token = secrets.token_hex(8)
        started = time.monotonic()
        parts = snapshot_parts(r, token)
        if parts is None:
            return None
        pos = r.log_pos
        try:
            await loop.run_in_executor(self._executor, _write_file, path, parts)
        except OSError as e:  # a snapshot is a shortcut for the next start
            log.warning("keyspace snapshot not saved: %s", e)
            return None
        if r.dirty or r.log_pos != pos or r.gc_deleted:  # changed meanwhile: not exact
            return None
        took = time.monotonic() - started
        # Worth a line when it took a while; a small keyspace's stays in DEBUG.
        log.log(
            logging.INFO if took >= 0.5 else logging.DEBUG,
            "keyspace snapshot saved: %d bytes in %.1f s",
            sum(map(len, parts)),
            took,
        )
        return [token, r.checkpoint_pos]

    async def _build_index(self, name: str, vs: VSet) -> None:
        snapshot = snapshot_path(self.index_dir, name) if self.index_dir is not None else None
        builder = IndexBuilder(name, vs, vs.index_options or IndexOptions(), snapshot=snapshot)
        vs.pending = builder.pending
        builder.start()  # a thread the stop cancels and waits for (close)
        self._builder = builder
        try:
            while not builder.done:
                await asyncio.sleep(0.2)
            current = self.replica.states.get((VECTORSET, name))
            if isinstance(current, VSet) and current.pending is builder.pending:
                builder.attach(current)
        finally:
            self._builder = None
            for v in (vs, self.replica.states.get((VECTORSET, name))):
                if isinstance(v, VSet) and v.pending is builder.pending:
                    v.pending = None

    async def close(self) -> None:
        """Write everything pending plus a final checkpoint, then close storage."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._index_task is not None:
            self._index_task.cancel()
        builder = self._builder
        if builder is not None:  # usearch must not be mid-batch when the process exits
            builder.cancel()
            for _ in range(BUILD_STOP_WAIT_S * 10):
                if builder.done:
                    break
                await asyncio.sleep(0.1)
        loop = asyncio.get_running_loop()
        await self._save_index_snapshots(loop)
        if self.core.failed is None:
            try:
                await self._await(lambda t: self.core.checkpoint(t))
                mark = await self._save_keyspace_snapshot(loop)
                # Last: the next start knows nothing unsynced was lost (B8).
                await loop.run_in_executor(self._executor, mark_clean, self.storage, mark)
            except StorageError as e:
                log.error("final flush failed: %s", e)
        if self._write_task is not None:
            with contextlib.suppress(Exception):
                await self._write_task
        await loop.run_in_executor(self._executor, self.storage.close)
        self._executor.shutdown(wait=True)

    # -- client requests --------------------------------------------------------------------------
    async def enter(self, token: SessionToken | None, wait_ms: int, *, writes: bool) -> None:
        """Wait until this replica may serve ``token``'s session; raises the refusal."""
        ticket = next(self._tickets)
        if self.core.admit(ticket, token, wait_ms, writes=writes, now_ms=self.clock()):
            return
        fut = self._future(ticket)
        self._arm_timer()
        try:
            # The wait is also bounded in real time: the node's clock may be
            # a test's clock that does not move by itself.  asyncio.wait, not
            # wait_for: on a timeout wait_for cancels the future and yields, and
            # a decision the core takes meanwhile (its own deadline refusing the
            # ticket) would find the future cancelled and be lost; the request
            # was then served as if admitted (tests/node/test_session_wait.py).
            # Done: the core decided (it resolves the future as it pops the
            # ticket).  Else still parked: ``expire`` refuses it.
            await asyncio.wait((fut,), timeout=wait_ms / 1000)
            error = fut.result() if fut.done() else self.core.expire(ticket)
        finally:
            self.core.cancel(ticket)
            self._futures.pop(ticket, None)
        if error is not None:
            raise error
        self.core.check_up()

    def apply(self, op: Any, asking: bool = False) -> dict[str, Any]:
        """Apply one op to memory (raises on refusal; nothing changes then)."""
        result = self.core.apply(op, self.clock(), asking)
        self._after_event()
        return result

    def group(self) -> contextlib.AbstractContextManager[None]:
        return self.core.group()

    async def finish(self, token: SessionToken | None) -> SessionToken:
        """Wait until what the request saw is durable; the token to answer with."""
        ticket = next(self._tickets)
        out = self.core.finish(ticket, token)
        if out is not None:  # nothing it saw is still being written: the usual read
            return out
        fut = self._future(ticket)
        try:
            self._after_event()
            answer: Answer = await fut
        finally:
            self._futures.pop(ticket, None)
        if answer.error is not None:
            raise answer.error
        return answer.token

    def run(self, spec: OpSpec, op: dict[str, Any], asking: bool = False) -> dict[str, Any]:
        """``apply`` of an op whose spec the caller already knows (the RESP server)."""
        result = self.core.run(spec, op, self.clock(), asking)
        if spec.writes:
            self._after_event()
        return result

    def admit_now(self, token: SessionToken, wait_ms: int, *, writes: bool) -> bool:
        """``enter`` without waiting: True when the session may be served now (a write
        absorbs the token's clock); False when ``enter`` would wait.  Raises the refusal."""
        ticket = next(self._tickets)
        if self.core.admit(ticket, token, wait_ms, writes=writes, now_ms=self.clock()):
            return True
        self.core.cancel(ticket)  # the caller waits with ``enter``
        return False

    def finish_nowait(
        self, token: SessionToken | None
    ) -> SessionToken | asyncio.Future[SessionToken]:
        """``finish`` without a coroutine (the RESP server calls it once per read batch):
        the token now, or a future of it that fails with the storage error."""
        core = self.core
        if token is None and core.failed is None and core.settled():
            return _NO_SESSION  # the caller keeps no session: no token to compute
        ticket = next(self._tickets)
        out = self.core.finish(ticket, token)
        if out is not None:
            return out
        loop = asyncio.get_running_loop()
        inner = self._future(ticket)
        result: asyncio.Future[SessionToken] = loop.create_future()

        def done(f: asyncio.Future[Any]) -> None:
            self._futures.pop(ticket, None)
            if result.done():
                return
            if f.cancelled():
                result.cancel()
                return
            answer: Answer = f.result()
            if answer.error is not None:
                result.set_exception(answer.error)
            else:
                result.set_result(answer.token)

        inner.add_done_callback(done)
        self._after_event()
        return result

    def token_now(self, token: SessionToken | None) -> SessionToken:
        return self.core.token_now(token)

    async def durable(self, pos: int | None = None) -> None:
        """Wait until every log entry up to ``pos`` (default: all so far) is written."""
        if self.core.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        target = self.replica.log_pos if pos is None else pos
        if target <= self.core.durable_pos:
            return
        ready: Ready = await self._await(lambda t: self.core.wait_durable(t, pos))
        if ready.error is not None:
            raise ready.error

    async def checkpoint_now(self) -> None:
        """Write a checkpoint (with everything pending) and wait for it."""
        if self.core.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        ready: Ready = await self._await(lambda t: self.core.checkpoint(t))
        if ready.error is not None:
            raise ready.error

    async def write_meta(self, key: bytes, value: bytes | None) -> None:
        """Put (None: delete) one record of the ``meta`` column, synced, on the storage
        thread (after any batch in flight): the shells' own records (the cluster map,
        a slot move's progress)."""
        if self.core.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        batch = WriteBatch()
        if value is None:
            batch.delete("meta", key)
        else:
            batch.put("meta", key, value)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _write, self.storage, batch, True)

    async def write_meta_batch(self, batch: WriteBatch) -> None:
        """Write ``batch`` (meta records outside the core's log: the cluster map) synced,
        on the storage thread, after the writes before it; StorageError if it fails
        (the replica keeps running: nothing of its log is lost)."""
        if self.core.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _write, self.storage, batch, True)
        except Exception as e:
            raise StorageError(f"storage write failed: {e}") from e

    def notify_applied(self) -> None:
        """Re-check parked sessions now (the core also does after every merge)."""
        self.core.tick(self.clock())
        self._after_event()

    # -- peers ------------------------------------------------------------------------------------
    async def peer_message(self, peer: str, msg: Message) -> Message:
        """A replication request; the reply once what it merged is durable."""
        reply: Reply = await self._await(
            lambda t: self.core.peer_message(t, peer, msg, self.clock())
        )
        if reply.error is not None:
            raise reply.error
        if reply.reply is None:
            raise AssertionError("a reply without a message")
        return reply.reply

    def peer_reply(self, peer: str, msg: Message) -> None:
        self.core.peer_reply(peer, msg, self.clock())
        self._after_event()

    # -- carrying out the core's actions -----------------------------------------------------
    async def _await(self, event: Callable[[int], None]) -> Any:
        """Feed ``event`` a new ticket; wait for the action that names it."""
        ticket = next(self._tickets)
        fut = self._future(ticket)
        try:
            event(ticket)
            self._after_event()
            return await fut
        finally:
            self._futures.pop(ticket, None)

    def _future(self, ticket: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[ticket] = fut
        return fut

    def _after_event(self) -> None:
        self._run(self.core.take_actions())
        if not self._flush_scheduled and self.core.failed is None and self.core.flush_wanted:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.core.flush(self.clock())
        self._run(self.core.take_actions())
        self._arm_timer()

    def _run(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Write):
                self._write_task = asyncio.get_running_loop().create_task(
                    self._write(a.batch, a.sync), name="group-commit"
                )
            elif isinstance(a, Durable):
                for cb in self.on_durable:
                    cb(a.entries)
            else:
                self._resolve(a)

    def _resolve(self, a: Admit | Answer | Reply | Ready) -> None:
        fut = self._futures.get(a.ticket)
        if fut is None or fut.done():
            return  # the request went away
        fut.set_result(a.error if isinstance(a, Admit) else a)

    async def _write(self, batch: WriteBatch, sync: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, _write, self.storage, batch, sync)
        except Exception as e:  # anything the storage engine throws is a storage failure
            err = e if isinstance(e, StorageError) else StorageError(f"storage write failed: {e}")
            log.critical("storage write failed, stopping the replica: %s", err)
            self.core.write_failed(err)
            self._run(self.core.take_actions())
            self.stopped.set()
            return
        self.core.write_done(self.clock())
        self._run(self.core.take_actions())
        self._arm_timer()

    def _arm_timer(self) -> None:
        """Wake the core at its next deadline (session refusals, `wal` sync, ...)."""
        if not self._started or self._closing or self.core.failed is not None:
            return
        at = self.core.next_deadline_ms()
        if at is None or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        delay_s = max(0.0, (at - self.clock()) / 1000)
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        try:
            self.core.tick(self.clock())
        except Exception:  # pragma: no cover - a bug in GC must not stop the node's timer
            log.exception("node tick failed")
        self._run(self.core.take_actions())
        self._arm_timer()


_NO_SESSION = SessionToken()


def _write(storage: Storage, batch: WriteBatch, sync: bool) -> None:
    storage.write(batch, sync=sync)


def _write_file(path: Path, parts: list[bytes]) -> None:
    """Write ``parts`` to ``path`` atomically and durably (a temporary file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        for part in parts:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

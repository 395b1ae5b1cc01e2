"""The node core: one replica's request, storage and peer loop, with no I/O.

Both shells drive this one object: the asyncio shell (``crdtkv.node.aio``,
behind the HTTP API and the replication transport) and the simulator
(``simulations.harness``).  A shell feeds it *events* and carries out the
*actions* it returns (``take_actions()``), in order:

====================================  =============================================
event (method)                        what the core decides
====================================  =============================================
``admit(ticket, token, wait_ms)``     serve now, park until the token is covered,
                                      or refuse (``SessionUnavailable``)
``apply(op)``                         the operation, on the replica core
``finish(ticket, token)``             ``Answer`` with the merged token once
                                      everything the request saw is durable
``peer_message(ticket, peer, msg)``   ``Reply`` once the merged deltas are durable
``peer_reply(peer, msg)``             acknowledgements; parked sessions re-checked
``flush()``                           group commit: one ``Write`` of everything
                                      pending, if none is in flight
``write_done()`` / ``write_failed()`` release what the batch made durable / stop
``tick()``                            session deadlines, `wal` sync, checkpoints
                                      and garbage collection that are due
``wait_durable(ticket, pos)``         ``Ready`` once the log up to ``pos`` is written
====================================  =============================================

Rules it keeps, whoever drives it:

- No answer and no replication reply leaves before the storage batch holding
  what it depends on is written (and synced in ``fsync`` mode).  Reads wait
  too: nobody may observe a write that a crash could still take back.
- One write at a time; everything that arrives meanwhile shares the next one
  (group commit).  A shell calls ``flush()`` once per turn of its loop.
- A session token is served only once this replica has applied everything it
  covers; the request is parked for at most its wait, then refused.  A
  refusal read and wrote nothing, so it carries the request's token
  unchanged.
- A failed write stops the node (fail-stop): memory may be ahead of disk.

Time comes in as ``now_ms`` arguments; storage is written by the shell.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crdtkv.cluster.state import ClusterState
from crdtkv.crdts.causal import VersionVector, vv_dominates
from crdtkv.crdts.hlc import Timestamp
from crdtkv.errors import CrdtkvError, SessionUnavailable, StorageError
from crdtkv.ops import apply_op
from crdtkv.ops.spec import OpSpec
from crdtkv.ops.table import op_spec
from crdtkv.replica import Replica
from crdtkv.replica.keyspace import LogEntry
from crdtkv.replica.persist import WAL_SYNC_MS, Checkpointer, build_batch, encode_entries
from crdtkv.sessions import SessionToken
from crdtkv.storage.base import WriteBatch
from replication.messages import Message
from replication.protocol import Replication

__all__ = [
    "APPLIED_WAITERS_MAX",
    "COLLECT_INTERVAL_MS",
    "Action",
    "Admit",
    "Answer",
    "Durable",
    "NodeCore",
    "Ready",
    "Reply",
    "Write",
]

# Requests parked until their session token is covered.  Each holds a client
# connection; past this many a new one is refused at once, rather than letting
# a lagging replica pile up unbounded waiters.
APPLIED_WAITERS_MAX = 10_000
COLLECT_INTERVAL_MS = 1_000  # log truncation


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Write:
    """Write ``batch`` to storage (synced when ``sync``), then call ``write_done``."""

    batch: WriteBatch  # the atomic storage batch
    sync: bool  # fsync it (every write in `fsync` mode; at most every WAL_SYNC_MS in `wal`)


@dataclass(frozen=True, slots=True)
class Admit:
    """A parked request may go on (``error`` None) or is refused with ``error``."""

    ticket: int  # the shell's id of the request
    error: CrdtkvError | None  # SessionUnavailable after the wait, or the HLC refusal


@dataclass(frozen=True, slots=True)
class Answer:
    """The request may be answered now: what it saw is durable."""

    ticket: int  # the shell's id of the request
    token: SessionToken  # the session token to answer with
    error: StorageError | None = None  # the write failed: answer this instead


@dataclass(frozen=True, slots=True)
class Reply:
    """The reply to a peer's message may leave now (or ``error`` instead)."""

    ticket: int  # the shell's id of the peer request
    reply: Message | None  # the protocol's reply
    error: StorageError | None = None  # the write failed


@dataclass(frozen=True, slots=True)
class Ready:
    """The log up to the position ``wait_durable`` named is written."""

    ticket: int  # the shell's id of the waiter
    error: StorageError | None = None  # the write failed


@dataclass(frozen=True, slots=True)
class Durable:
    """A batch was written: these log entries are durable (wake the senders)."""

    entries: list[LogEntry]  # the log entries of the batch, in log order


Action = Write | Admit | Answer | Reply | Ready | Durable


# -- bookkeeping --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Parked:
    token: SessionToken  # what the request's session has seen
    writes: bool  # a write: absorb the token's HLC when admitted
    deadline_ms: int  # refused at this time if still not covered
    wait_ms: int  # the wait it asked for (for the refusal's message)


@dataclass(slots=True)
class _Held:
    pos: int  # released once the log up to here is written ...
    writes_needed: int  # ... and this many writes have completed
    action: Answer | Reply | Ready  # what to release


@dataclass(slots=True)
class _InFlight:
    entries: list[LogEntry]  # the log entries in the batch
    blobs: list[bytes]  # their encoded groups, written in the batch and shipped as they are
    target: int  # the log position it makes durable
    applied: VersionVector  # the applied vector it reflects (durable once synced)
    hlc: tuple[int, int]  # the replica's clock when it was built (answers' tokens)
    sync: bool  # whether it is synced
    started_ms: int  # when it was handed to the shell


@dataclass
class CoreStats:
    batches_written: int = 0  # storage batches written
    entries_written: int = 0  # log entries in them
    refusals: int = 0  # session refusals answered
    parked_max: int = 0  # the most requests parked at once


# -- the core -----------------------------------------------------------------------------------
class NodeCore:
    def __init__(
        self,
        replica: Replica,
        *,
        durability: str = "fsync",
        checkpointer: Checkpointer | None = None,
        collect_interval_ms: int = COLLECT_INTERVAL_MS,
        now_ms: int = 0,
    ) -> None:
        if durability not in ("fsync", "wal"):
            raise ValueError("durability must be 'fsync' or 'wal'")
        self.replica = replica
        self.sync = durability == "fsync"
        self.checkpointer = checkpointer or Checkpointer()
        self.checkpointer.last_ms = now_ms
        self.collect_interval_ms = collect_interval_ms
        self.replication: Replication | None = None
        # Sharded: the map and this process's slots; a keyed op on a slot it does not
        # serve raises Moved, one over several slots CrossSlot (crdtkv.cluster).
        self.cluster: ClusterState | None = None
        self.durable_pos = replica.log_pos  # every log entry up to here is written
        self.failed: StorageError | None = None
        self.stats = CoreStats()
        self._actions: list[Action] = []
        self._parked: dict[int, _Parked] = {}
        self._held: list[_Held] = []
        self._inflight: _InFlight | None = None
        self._writes_started = 0
        self._writes_done = 0
        self._force_checkpoint = False
        self._last_sync_ms = now_ms
        self._last_collect_ms = now_ms

    def attach(self, replication: Replication) -> None:
        """The replication core whose log, acks and GC this node drives."""
        self.replication = replication

    def take_actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    @property
    def parked(self) -> int:
        return len(self._parked)

    @property
    def writing(self) -> bool:
        return self._inflight is not None

    # -- client requests ------------------------------------------------------------------------
    def admit(
        self, ticket: int, token: SessionToken | None, wait_ms: int, *, writes: bool, now_ms: int
    ) -> bool:
        """True: serve the request now.  False: parked; an ``Admit`` action follows.

        Raises ``SessionUnavailable`` (nothing to wait for, or too many
        waiting) and ``BadRequest`` (the token's clock is too far ahead).
        """
        self.check_up()
        if token is None:
            return True
        if not self._covered(token.vv):
            if wait_ms <= 0 or len(self._parked) >= APPLIED_WAITERS_MAX:
                self.stats.refusals += 1
                raise self._refusal(wait_ms)
            self._parked[ticket] = _Parked(token, writes, now_ms + wait_ms, wait_ms)
            self.stats.parked_max = max(self.stats.parked_max, len(self._parked))
            return False
        if writes:
            self._absorb(token, now_ms)
        return True

    def cancel(self, ticket: int) -> None:
        """The request went away (client gone, shell stopping)."""
        self._parked.pop(ticket, None)

    def expire(self, ticket: int) -> SessionUnavailable | None:
        """The shell's own timer ran out for a parked request: its refusal
        (None when it was admitted or refused already)."""
        p = self._parked.pop(ticket, None)
        if p is None:
            return None
        self.stats.refusals += 1
        return self._refusal(p.wait_ms)

    def apply(self, op: Any, now_ms: int, asking: bool = False) -> dict[str, Any]:
        """Apply one operation to memory (raises on refusal: nothing changed then).
        ``asking``: sharded, the client follows an ``Ask`` redirect."""
        self.check_up()
        if self.cluster is not None:
            spec = op_spec(op)
            parsed = spec.parse(op)
            self.cluster.check_keys(spec.key_names(parsed), asking)
            result = spec.apply(self.replica, parsed, now_ms)
        else:
            result = apply_op(self.replica, op, now_ms)
        if self._parked and self.replica.pending:
            self._recheck(now_ms)
        return result

    @contextlib.contextmanager
    def group(self) -> Iterator[None]:
        """The local operations applied inside share one dot and one log record
        (``Replica.open_group``): a ``/v1/batch`` request."""
        self.replica.open_group()
        try:
            yield
        finally:
            self.replica.close_group()

    def run(
        self, spec: OpSpec, op: dict[str, Any], now_ms: int, asking: bool = False
    ) -> dict[str, Any]:
        """``apply`` of an op whose spec the caller already knows (the RESP server)."""
        self.check_up()
        parsed = spec.parse(op)
        if self.cluster is not None:
            self.cluster.check_keys(spec.key_names(parsed), asking)
        result = spec.apply(self.replica, parsed, now_ms)
        if self._parked and self.replica.pending:
            self._recheck(now_ms)
        return result

    def settled(self) -> bool:
        """Whether everything applied so far is durable: a request without a session
        may be answered now (``finish`` would answer at once)."""
        return self.replica.log_pos <= self.durable_pos

    def finish(self, ticket: int, token: SessionToken | None) -> SessionToken | None:
        """The request is done: the token to answer with, if what it saw is
        already durable; else None, and an ``Answer`` follows once it is.

        When the write that releases the ``Answer`` made durable an applied vector
        and clock that cover its token (the usual case: the request's writes are
        in that write), the answer carries those instead, a token that covers
        more and names only durable dots.  So the answers one group commit
        releases share one token, which the HTTP shell signs once instead of once
        per request."""
        out = self.token_now(token)
        held = _Held(self.replica.log_pos, 0, Answer(ticket, out))
        if self._is_released(held):
            return out
        self._held.append(held)
        return None

    @property
    def flush_wanted(self) -> bool:
        """Whether a ``flush()`` now would write something events asked for."""
        r = self.replica
        return bool(r.pending or self._held or r.checkpoint_requested or self._force_checkpoint)

    def token_now(self, token: SessionToken | None) -> SessionToken:
        """``token`` merged with what this replica has applied, and its clock."""
        r = self.replica
        return (token or SessionToken()).merge(r.applied.vv, (r.hlc.wall_ms, r.hlc.logical))

    def wait_durable(self, ticket: int, pos: int | None = None) -> None:
        """``Ready`` once the log up to ``pos`` (default: all of it) is written."""
        target = self.replica.log_pos if pos is None else pos
        self._hold(_Held(target, 0, Ready(ticket)))

    def checkpoint(self, ticket: int) -> None:
        """Write a checkpoint with the next batch; ``Ready`` once it is written."""
        self._force_checkpoint = True
        self._hold(_Held(self.replica.log_pos, self._writes_started + 1, Ready(ticket)))

    # -- peers ------------------------------------------------------------------------------------
    def peer_message(self, ticket: int, peer: str, msg: Message, now_ms: int) -> None:
        """A replication request: ``Reply`` once what it merged is durable.

        Raises ``CrdtkvError`` for a message the protocol refuses (nothing
        changed then); the shell answers the error at once.
        """
        self.check_up()
        rep = self._replication()
        reply = rep.receive(peer, msg, now_ms)
        # A finished state sync asks for a checkpoint: its states have no log
        # entries, so the reply waits for the next write, which carries them.
        writes = self._writes_started + 1 if self.replica.checkpoint_requested else 0
        self._hold(_Held(self.replica.log_pos, writes, Reply(ticket, reply)))
        if self._parked:
            self._recheck(now_ms)

    def peer_reply(self, peer: str, msg: Message, now_ms: int) -> None:
        """The reply to our request to ``peer``."""
        self._replication().receive_reply(peer, msg, now_ms)
        if self._parked:
            self._recheck(now_ms)

    # -- storage ----------------------------------------------------------------------------------
    def flush(self, now_ms: int) -> None:
        """Start a group commit of everything pending, unless one is in flight."""
        if self._inflight is not None or self.failed is not None:
            return
        r = self.replica
        checkpoint = (
            self._force_checkpoint or r.checkpoint_requested or self.checkpointer.due(r, now_ms)
        )
        sync = self.sync or self._force_checkpoint or now_ms - self._last_sync_ms >= WAL_SYNC_MS
        sync_due = sync and r.durable_vv != r.applied.vv
        needed = any(h.writes_needed > self._writes_started for h in self._held)
        if not (r.pending or r.gc_deleted or r.checkpoint_requested or sync_due or needed) and not (
            checkpoint and (r.dirty or self._force_checkpoint)
        ):
            return
        entries = r.take_pending()
        if checkpoint:
            self.checkpointer.last_ms = now_ms
        self._force_checkpoint = False
        applied = dict(r.applied.vv)  # all of it is in this batch or an earlier one
        hlc = (r.hlc.wall_ms, r.hlc.logical)
        floor = self.replication.log_floor() if self.replication else r.checkpoint_pos
        blobs = encode_entries(r, entries)
        batch = build_batch(r, entries, checkpoint=checkpoint, log_floor=floor, blobs=blobs)
        target = entries[-1].pos if entries else self.durable_pos
        self._inflight = _InFlight(entries, blobs, target, applied, hlc, sync, now_ms)
        self._writes_started += 1
        self._actions.append(Write(batch, sync))

    def write_done(self, now_ms: int) -> None:
        """The batch of the last ``Write`` is written (and synced if asked)."""
        done = self._inflight
        if done is None:
            raise AssertionError("write_done without a write in flight")
        self._inflight = None
        self._writes_done += 1
        if done.sync:
            self._last_sync_ms = done.started_ms
            self.replica.mark_synced(done.applied)
        self.stats.batches_written += 1
        self.stats.entries_written += len(done.entries)
        self.durable_pos = max(self.durable_pos, done.target)
        self._release(done)
        if self.replication is not None:
            self.replication.on_durable(done.entries, now_ms, done.blobs)
        self._actions.append(Durable(done.entries))
        self.flush(now_ms)  # whatever arrived meanwhile, or a checkpoint asked for

    def write_failed(self, error: StorageError) -> None:
        """The write failed: stop, and fail everything that waited for it."""
        self._inflight = None
        self.failed = error
        lost = StorageError("storage write failed; the write is not durable")
        for h in self._held:
            a = h.action
            if isinstance(a, Answer):
                self._actions.append(Answer(a.ticket, a.token, lost))
            elif isinstance(a, Reply):
                self._actions.append(Reply(a.ticket, None, lost))
            else:
                self._actions.append(Ready(a.ticket, lost))
        self._held.clear()
        for ticket in list(self._parked):
            self._actions.append(Admit(ticket, lost))
        self._parked.clear()

    # -- time -------------------------------------------------------------------------------------
    def tick(self, now_ms: int) -> None:
        """Whatever is due: session refusals, key expiry, log truncation, `wal` sync,
        checkpoints."""
        if self._parked:
            self._recheck(now_ms)
        self.replica.expire_due(now_ms)
        if self.replication is not None and (
            now_ms - self._last_collect_ms >= self.collect_interval_ms
        ):
            self._last_collect_ms = now_ms
            self.replication.collect(now_ms)
        self.flush(now_ms)

    def next_deadline_ms(self) -> int | None:
        """When ``tick`` next has something to do (None: only events can wake it)."""
        times = [p.deadline_ms for p in self._parked.values()]
        r = self.replica
        if self._inflight is None:  # else write_done flushes what is due
            if not self.sync and r.durable_vv != r.applied.vv:
                times.append(self._last_sync_ms + WAL_SYNC_MS)
            if r.dirty:
                times.append(self.checkpointer.last_ms + self.checkpointer.interval_ms)
        if self.replication is not None:
            times.append(self._last_collect_ms + self.collect_interval_ms)
        expiry = r.next_expiry_ms()
        if expiry is not None:
            times.append(expiry)
        return min(times) if times else None

    # -- helpers ----------------------------------------------------------------------------------
    def _covered(self, vv: VersionVector) -> bool:
        return vv_dominates(self.replica.applied.vv, vv)

    def _absorb(self, token: SessionToken, now_ms: int) -> None:
        # A write is timestamped after everything its session has seen (writes
        # follow reads, even across replicas with skewed clocks); observe()
        # refuses a clock too far ahead of ours with BadRequest.
        if token.hlc > (0, 0):
            self.replica.hlc.observe(Timestamp(token.hlc[0], token.hlc[1], ""), now_ms)

    def _refusal(self, wait_ms: int) -> SessionUnavailable:
        return SessionUnavailable(
            f"replica {self.replica.replica_id} has not yet applied everything this session "
            f"has seen (waited {wait_ms} ms); try another replica or later"
        )

    def _recheck(self, now_ms: int) -> None:
        """Admit the parked requests now covered; refuse those past their deadline."""
        for ticket, p in list(self._parked.items()):
            if self._covered(p.token.vv):
                del self._parked[ticket]
                error: CrdtkvError | None = None
                if p.writes:
                    try:
                        self._absorb(p.token, now_ms)
                    except CrdtkvError as e:
                        error = e
                self._actions.append(Admit(ticket, error))
            elif now_ms >= p.deadline_ms:
                del self._parked[ticket]
                self.stats.refusals += 1
                self._actions.append(Admit(ticket, self._refusal(p.wait_ms)))

    def _hold(self, held: _Held) -> None:
        if self._is_released(held):
            self._actions.append(held.action)
        else:
            self._held.append(held)

    def _is_released(self, h: _Held) -> bool:
        return h.pos <= self.durable_pos and h.writes_needed <= self._writes_done

    def _release(self, done: _InFlight | None = None) -> None:
        """Release what is durable now; ``done``: the write that just completed."""
        keep: list[_Held] = []
        shared: SessionToken | None = None  # what ``done`` made durable, as a token
        for h in self._held:
            if self._is_released(h):
                a = h.action
                if (
                    done is not None
                    and isinstance(a, Answer)
                    and a.token.hlc <= done.hlc
                    and vv_dominates(done.applied, a.token.vv)
                ):
                    if shared is None:
                        shared = SessionToken(dict(done.applied), done.hlc)
                    a = Answer(a.ticket, shared)
                self._actions.append(a)
            else:
                keep.append(h)
        self._held = keep

    def check_up(self) -> None:
        if self.failed is not None:
            raise StorageError("replica stopped after a storage failure")

    def _replication(self) -> Replication:
        if self.replication is None:
            raise AssertionError("this node has no replication attached")
        return self.replication

"""The replica's keyspace: typed keys -> CRDT states, plus its causal bookkeeping.

Every mutation mints one replica-level dot ``(actor, seq)`` and produces a
``DeltaGroup`` (the dot and the deltas of the keys it touched) that is
appended to the replica's log of pending records: the shell persists them
(group commit) and replication ships them.  ``applied`` is the causal
context of every replica-level dot this replica has applied; its gap-free
part (``applied.vv``) is what session tokens are compared against.  A remote
group whose dot is already applied is recognised by that dot and ignored,
which is also what keeps a garbage-collected tombstone from being undone by a
late delta.

The actor id is ``<replica_id>~<incarnation>``: a replica whose data
directory was lost starts under a new incarnation and so can never reissue a
dot (or an HLC timestamp) that peers have already seen.

Pure: time comes in as ``now_ms`` arguments; nothing here does I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from crdtkv.crdts import HLL, LWWRegister, ORSet, PNCounter
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, VersionVector, vv_dominates
from crdtkv.crdts.hlc import HLC, ZERO, Timestamp
from crdtkv.errors import BadRequest
from crdtkv.replica.peers import PeerBook

__all__ = ["NAMESPACES", "DeltaGroup", "Key", "LogEntry", "Replica", "is_live"]

NAMESPACES: dict[str, type[CRDT]] = {
    "registers": LWWRegister,
    "counters": PNCounter,
    "sets": ORSet,
    "hlls": HLL,
}

Key = tuple[str, str]
"""(namespace, key): ``counters/visits`` and ``sets/visits`` are different keys."""


@dataclass(frozen=True, slots=True)
class DeltaGroup:
    """What one operation changed: the unit of replication and of the log."""

    dot: Dot  # the replica-level dot the operation minted (origin actor, seq)
    deltas: dict[Key, CRDT]  # per touched key, the delta (a value of the key's type)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One record of the delta log, in local log order."""

    pos: int  # local log position, 1, 2, 3, ... (not the dot's seq)
    origin: str  # who sent it: "<peer id>~<its incarnation>"; "" for a local operation
    group: DeltaGroup  # the operation's dot and deltas


def is_live(state: CRDT, now_ms: int) -> bool:
    """Whether a key reads as present (not never-written, deleted, expired or empty)."""
    if isinstance(state, LWWRegister):
        return state.present(now_ms)
    if isinstance(state, PNCounter):
        return any(p != fp or n != fn for p, n, fp, fn in state.entries.values())
    if isinstance(state, ORSet):
        return bool(state.entries)
    if isinstance(state, HLL):
        return state.size() > 0
    raise AssertionError(f"unknown state type {type(state)!r}")


def timestamps_of(delta: CRDT) -> Iterator[Timestamp]:
    if isinstance(delta, LWWRegister) and delta.ts != ZERO:
        yield delta.ts
    elif isinstance(delta, HLL) and delta.epoch != ZERO:
        yield delta.epoch


@dataclass
class Replica:
    """One replica's in-memory state.  Mutate synchronously; the shell persists."""

    replica_id: str
    incarnation: str
    max_offset_ms: int = 500
    states: dict[Key, CRDT] = field(default_factory=dict)
    applied: CausalContext = field(default_factory=CausalContext)
    log_pos: int = 0  # last log position assigned
    checkpoint_pos: int = 0  # log position the last checkpoint reflects
    log_truncated_to: int = 0  # log entries at or below this were deleted from storage
    pending: list[LogEntry] = field(default_factory=list)  # not yet handed to storage
    dirty: set[Key] = field(default_factory=set)  # keys changed since the last checkpoint
    # Register tombstones (deletes, expiries) -> the applied vector when noticed;
    # dropped once every replica has applied that much (``collect_tombstones``).
    tombstones: dict[Key, VersionVector] = field(default_factory=dict)
    expiring: list[tuple[int, Key]] = field(default_factory=list)  # heap of (expires_ms, key)
    gc_deleted: set[Key] = field(default_factory=set)  # dropped keys not yet deleted on disk
    checkpoint_requested: bool = False  # a state sync ended: persist states now
    # For replication, written here only (the methods say who takes them):
    # keys changed since the digest cache last took them (``take_digest_dirty``),
    digest_dirty: set[Key] = field(default_factory=set)
    # the log read at start, until the replication core takes it (``take_loaded_log``),
    loaded_log: list[LogEntry] = field(default_factory=list)
    # and copy-on-write snapshots of the keyspace, one per outgoing state sync
    # (``open_snapshot``/``close_snapshot``): the state of each key as it was
    # when the sync started (None: absent), taken just before the key's first
    # change.  A sync ships its snapshot, so the states it ships carry exactly
    # the effects of the context it ships.
    snapshots: list[dict[Key, CRDT | None]] = field(default_factory=list)
    # The replication core's persisted bookkeeping: peer acknowledgements and
    # the dots learnt by state sync (``crdtkv.replica.peers``).
    peer_book: PeerBook = field(default_factory=PeerBook)
    # The applied vector as of the last *synced* storage write: what a power
    # loss cannot take back.  In `wal` durability it trails ``applied``; the
    # replica reports it as its stability floor, so no tombstone is collected
    # while some replica could still roll back to before its delete.
    durable_vv: VersionVector = field(default_factory=dict)
    hlc: HLC = field(init=False)

    def __post_init__(self) -> None:
        self.actor = f"{self.replica_id}~{self.incarnation}"
        self.hlc = HLC(self.actor, self.max_offset_ms)

    # -- reading ------------------------------------------------------------------
    def get(self, key: Key) -> CRDT | None:
        return self.states.get(key)

    def for_update(self, key: Key) -> CRDT | None:
        """The state of ``key`` for a caller about to change it in place."""
        if self.snapshots:
            self.preserve(key)
        return self.states.get(key)

    def preserve(self, key: Key) -> None:
        """Record ``key``'s current state in every open snapshot that lacks it."""
        for snap in self.snapshots:
            if key not in snap:
                state = self.states.get(key)
                snap[key] = None if state is None else state.copy()

    def open_snapshot(self) -> dict[Key, CRDT | None]:
        """Start a copy-on-write snapshot of the keyspace as it is now."""
        snapshot: dict[Key, CRDT | None] = {}
        self.snapshots.append(snapshot)
        return snapshot

    def close_snapshot(self, snapshot: dict[Key, CRDT | None]) -> None:
        """Stop maintaining ``snapshot`` (its sync ended)."""
        for i, snap in enumerate(self.snapshots):
            if snap is snapshot:
                del self.snapshots[i]
                return

    def state_for_write(self, key: Key) -> CRDT:
        if self.snapshots:
            self.preserve(key)
        state = self.states.get(key)
        if state is None:
            state = NAMESPACES[key[0]]()
            self.states[key] = state
        return state

    def adopt(self, key: Key, state: CRDT) -> None:
        """``state`` (built by an op from nothing) becomes ``key``'s state."""
        self.states[key] = state

    def drop_empty(self, key: Key) -> None:
        """An op created ``key``'s state for nothing: it goes again."""
        del self.states[key]

    def live_keys(self, now_ms: int) -> int:
        return sum(1 for s in self.states.values() if is_live(s, now_ms))

    @property
    def seq(self) -> int:
        """The last sequence number this replica's actor minted."""
        return self.applied.vv.get(self.actor, 0)

    # -- local mutations ------------------------------------------------------------
    def commit_local(self, deltas: dict[Key, CRDT]) -> Dot | None:
        """Record a local operation's deltas (already applied): mint its dot, log it.

        Deltas that are bottom (the operation changed nothing) mint no dot.
        """
        if len(deltas) == 1:  # the common case: one key, no filtering copy
            if next(iter(deltas.values())).is_bottom():
                return None
        else:
            deltas = {k: d for k, d in deltas.items() if not d.is_bottom()}
            if not deltas:
                return None
        dot = (self.actor, self.seq + 1)
        self.applied.add(dot)
        self._append("", DeltaGroup(dot, deltas))
        return dot

    def _append(self, origin: str, group: DeltaGroup) -> None:
        self.log_pos += 1
        self.pending.append(LogEntry(self.log_pos, origin, group))
        self.touched(group.deltas)

    def touched(self, keys: Iterable[Key]) -> None:
        """Bookkeeping after keys changed: persistence, digests, register tombstones."""
        for key in keys:
            self.dirty.add(key)
            self.digest_dirty.add(key)
            self.gc_deleted.discard(key)
            if key[0] != "registers":
                continue
            reg = self.states.get(key)
            if not isinstance(reg, LWWRegister):
                continue
            if reg.tombstone:
                self.tombstones[key] = self.applied_bound()
            else:
                self.tombstones.pop(key, None)
                if reg.expires_ms is not None:
                    heapq.heappush(self.expiring, (reg.expires_ms, key))

    def applied_bound(self) -> VersionVector:
        """A vector covering every dot applied here, gap-free or not: a tombstone
        stamped with it is stable only once every replica applied the delete."""
        vv = dict(self.applied.vv)
        for actor, seq in self.applied.cloud:
            if seq > vv.get(actor, 0):
                vv[actor] = seq
        return vv

    def collect_tombstones(self, stable: VersionVector, now_ms: int) -> int:
        """Drop register tombstones every replica has applied; returns how many.

        ``stable`` must be the pointwise minimum of every replica's applied
        vector, and the caller must have applied everything any peer reported
        (so no write concurrent with a tombstone is still on its way here).
        Only registers are collected: a later write always has a larger HLC
        timestamp than a tombstone its replica has applied, so nothing can be
        mistaken for an old write.  Deleted counters, sets and HLLs keep their
        compact causal summary (one entry per writer) for the same reason.
        """
        while self.expiring and self.expiring[0][0] <= now_ms:
            _, key = heapq.heappop(self.expiring)
            reg = self.states.get(key)
            if (
                isinstance(reg, LWWRegister)
                and not reg.present(now_ms)
                and key not in self.tombstones
            ):
                self.tombstones[key] = self.applied_bound()
        dropped = [k for k, vv in self.tombstones.items() if vv_dominates(stable, vv)]
        for key in dropped:
            del self.tombstones[key]
            reg = self.states.get(key)
            if not isinstance(reg, LWWRegister):
                continue
            if reg.present(now_ms):
                # Noted as expired, but the clock has stepped back since: note
                # it again when it expires on this clock (B7).
                if reg.expires_ms is not None:
                    heapq.heappush(self.expiring, (reg.expires_ms, key))
                continue
            if self.snapshots:
                self.preserve(key)
            del self.states[key]
            self.dirty.discard(key)
            self.digest_dirty.add(key)
            self.gc_deleted.add(key)
            # The deletion must be persisted with a checkpoint: a restart
            # replays the log after the checkpoint position onto the stored
            # states, and an older write of this key still in that part of
            # the log would otherwise come back (B16).
            self.checkpoint_requested = True
        return len(dropped)

    # -- remote deltas ----------------------------------------------------------------
    def check_group(self, group: DeltaGroup, now_ms: int) -> None:
        """Refuse, before anything changes, a group this replica must not apply."""
        for (ns, _), delta in group.deltas.items():
            expected = NAMESPACES.get(ns)
            if expected is None or type(delta) is not expected:
                raise BadRequest(f"delta for namespace {ns!r} has the wrong type")
            for ts in timestamps_of(delta):
                self.hlc.check(ts, now_ms)

    def apply_remote(self, group: DeltaGroup, origin: str, now_ms: int) -> bool:
        """Join a group received from ``origin``.  False when it was already applied."""
        if self.applied.contains(group.dot):
            return False
        self.check_group(group, now_ms)
        for key, delta in group.deltas.items():
            self.state_for_write(key).merge(delta)
            for ts in timestamps_of(delta):
                self.hlc.observe(ts, now_ms)
        self.applied.add(group.dot)
        self._append(origin, group)
        return True

    # -- hand-offs ------------------------------------------------------------------------
    def take_digest_dirty(self) -> set[Key]:
        """Keys changed since the last call (the digest cache recomputes them)."""
        out, self.digest_dirty = self.digest_dirty, set()
        return out

    def take_loaded_log(self) -> list[LogEntry]:
        """The log entries read at start (the replication core ships them)."""
        out, self.loaded_log = self.loaded_log, []
        return out

    def request_checkpoint(self) -> None:
        """Persist the states with the next write (a state sync merged states
        that have no log entries)."""
        self.checkpoint_requested = True

    def mark_synced(self, applied: VersionVector) -> None:
        """A synced storage write reflected ``applied``: a power loss cannot take it back."""
        self.durable_vv = applied

    def take_gc_deleted(self) -> set[Key]:
        """Collected keys not yet deleted on disk, handed to the next batch."""
        out, self.gc_deleted = self.gc_deleted, set()
        return out

    def take_checkpoint_request(self) -> bool:
        out, self.checkpoint_requested = self.checkpoint_requested, False
        return out

    def checkpointed(self, pos: int) -> None:
        """A batch carries a checkpoint of every state as of log position ``pos``."""
        self.checkpoint_pos = pos

    def log_truncated(self, pos: int) -> None:
        """Log entries at or below ``pos`` are deleted from storage."""
        self.log_truncated_to = pos

    def take_pending(self) -> list[LogEntry]:
        out, self.pending = self.pending, []
        return out

    def take_dirty(self) -> dict[Key, CRDT]:
        """Keys changed since the last checkpoint, with their current states."""
        out = {k: self.states[k] for k in self.dirty if k in self.states}
        self.dirty = set()
        return out

    def restore(
        self,
        hlc_wall_ms: int,
        applied: CausalContext,
        checkpoint_pos: int,
        states: Iterable[tuple[Key, CRDT]],
        log: Iterable[LogEntry],
    ) -> None:
        """Rebuild from storage: checkpointed states, then the log replayed after them.

        Replaying an entry already reflected in a checkpoint is harmless (joins
        are idempotent), so the checkpoint position only has to be a lower bound.
        """
        # One millisecond past the persisted bound: never reissue a timestamp.
        self.hlc.wall_ms, self.hlc.logical = max(self.hlc.wall_ms, hlc_wall_ms + 1), 0
        self.applied = applied.copy()
        self.states = dict(states)
        self.log_pos = checkpoint_pos
        for entry in log:
            self.loaded_log.append(entry)
            self.log_pos = max(self.log_pos, entry.pos)
            if entry.pos <= checkpoint_pos:
                continue
            for key, delta in entry.group.deltas.items():
                self.state_for_write(key).merge(delta)
                for ts in timestamps_of(delta):
                    if ts > self.hlc.last:
                        self.hlc.wall_ms, self.hlc.logical = ts.wall_ms, ts.logical
            self.applied.add(entry.group.dot)
            self.dirty.update(entry.group.deltas)
        self.durable_vv = dict(self.applied.vv)  # everything loaded survived
        for key, state in self.states.items():
            if isinstance(state, LWWRegister):
                if state.tombstone:
                    self.tombstones[key] = dict(self.applied.vv)
                elif state.expires_ms is not None:
                    heapq.heappush(self.expiring, (state.expires_ms, key))

"""The replica's keyspace: typed keys -> CRDT states, plus its causal bookkeeping.

Every mutation mints one replica-level dot ``(actor, seq)`` and produces a
``DeltaGroup`` (the dot and the deltas of the keys it touched) that is
appended to the replica's log of pending records: the shell persists them
(group commit) and replication ships them.  Between ``open_group`` and
``close_group`` (a ``/v1/batch`` request) the operations share one dot and one
record instead: each joins its deltas into the open group, encoded as it
commits (``crdtkv.replica.wire``), so the group's bytes are ready when it is
written and are what replication ships.  ``applied`` is the causal
context of every replica-level dot this replica has applied; its gap-free
part (``applied.vv``) is what session tokens are compared against.  A remote
group whose dot is already applied is recognised by that dot and ignored,
which is also what keeps a late copy of a deleted write from coming back
(a DEL is observed-remove and leaves the key's causal context behind).

The actor id is ``<replica_id>~<incarnation>``: a replica whose data
directory was lost starts under a new incarnation and so can never reissue a
dot (or an HLC timestamp) that peers have already seen.

Pure: time comes in as ``now_ms`` arguments; nothing here does I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from sortedcontainers import SortedList

from crdtkv.crdts import HLL, KeyMeta, NumericRegister, ORMap, ORSet, RList, VSet, ZSet
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, VersionVector
from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.hlc import HLC, ZERO, Timestamp
from crdtkv.crdts.numeric import Write
from crdtkv.errors import BadRequest, WrongType
from crdtkv.replica import wire
from crdtkv.replica.peers import PeerBook
from crdtkv.replica.store import StateStore

__all__ = [
    "GROUP_BYTES_MAX",
    "META",
    "STATE_TYPES",
    "TYPES",
    "DeltaGroup",
    "Key",
    "LogEntry",
    "Replica",
    "is_live",
]

TYPES: dict[str, type[CRDT]] = {
    "string": NumericRegister,
    "hash": ORMap,
    "zset": ZSet,
    "set": ORSet,
    "hll": HLL,
    "list": RList,
    "vectorset": VSet,
}
"""The types a key can have, by the name ``TYPE`` reports."""
META = "meta"
STATE_TYPES: dict[str, type[CRDT]] = {**TYPES, META: KeyMeta}
"""What a ``Key``'s first part can be: a type, or the key's metadata."""

Key = tuple[str, str]
"""(type, name): the state of one type of the key ``name``, or (``meta``, name).

A name normally has one type state; replicas that created it with different
types concurrently leave several, and the visible one is chosen by the
key's metadata (``crdtkv.crdts.key_meta``)."""


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


GROUP_BYTES_MAX = 256 * 1024
"""An open group takes no more operations once its encoded deltas pass this many
bytes (the next one starts a new group).  Each operation's delta is bounded
(``limits.OP_DELTA_OVERHEAD_BYTES`` beyond its body); so stays a group, and
every log entry keeps fitting one replication message."""


class _OpenGroup:
    """The log entry that the operations of an open group join, and the encoded
    ``[namespace, key, delta]`` of each operation's deltas, in order."""

    __slots__ = ("chunks", "copied", "count", "entry", "size")

    def __init__(self, entry: LogEntry) -> None:
        self.entry = entry
        self.chunks: list[tuple[bytes, tuple[Key, ...]]] = []  # per operation: its deltas
        self.count = 0  # deltas in the chunks
        self.size = 0  # bytes of the chunks
        # Keys two operations changed: the group holds its own copy of their delta
        # (the join of both), encoded again when the group is sealed.
        self.copied: set[Key] = set()

    def encode(self, deltas: dict[Key, CRDT]) -> None:
        chunk = wire.delta_parts(deltas)
        self.chunks.append((chunk, tuple(deltas)))
        self.count += len(deltas)
        self.size += len(chunk)

    def blob(self) -> bytes:
        group = self.entry.group
        copied = self.copied
        if not copied:
            return wire.group_blob(group.dot, (c for c, _ in self.chunks), self.count)
        # Chunks without a joined key are kept; the others' other keys are encoded
        # again, and each joined key once, last.  (A key appears once in a group;
        # the order of its deltas does not matter.)
        deltas = group.deltas
        parts: list[bytes] = []
        for chunk, keys in self.chunks:
            if copied.isdisjoint(keys):
                parts.append(chunk)
                continue
            rest = {k: deltas[k] for k in keys if k not in copied}
            if rest:
                parts.append(wire.delta_parts(rest))
        parts.append(wire.delta_parts({k: deltas[k] for k in copied}))
        return wire.group_blob(group.dot, parts, len(deltas))


def is_live(state: CRDT) -> bool:
    """Whether a type state holds anything (not never-written, deleted or emptied).

    Expiry is the key's, not the state's: see ``Replica.visible_type``."""
    if isinstance(state, NumericRegister):
        return bool(state.cell)
    if isinstance(state, CausalMap):
        return len(state) > 0
    if isinstance(state, ORSet):
        return bool(state.entries)
    if isinstance(state, RList | VSet):
        return len(state) > 0
    if isinstance(state, HLL):
        return state.size() > 0
    if isinstance(state, KeyMeta):
        return False
    raise AssertionError(f"unknown state type {type(state)!r}")


def _writes(cell: Iterable[object]) -> Iterator[Timestamp]:
    for e in cell:
        if isinstance(e, Write):
            yield e.ts


def timestamps_of(delta: CRDT) -> Iterator[Timestamp]:
    """Every HLC timestamp a delta (or state) carries: checked against our clock's
    offset before it is applied, and observed by our clock after."""
    if isinstance(delta, KeyMeta):
        yield from delta.stamps.values()
    elif isinstance(delta, NumericRegister):
        yield from _writes(delta.cell)
    elif isinstance(delta, CausalMap):
        for cell in delta.entries.values():
            yield from _writes(cell)
    elif isinstance(delta, RList):
        for e in delta.entries.values():
            if isinstance(e, tuple):
                yield e[1]
    elif isinstance(delta, VSet):
        for vcell in delta.entries.values():
            for v in vcell:
                yield from (v.born, v.vts, v.ats) if v.ats != ZERO else (v.born, v.vts)
    elif isinstance(delta, HLL) and delta.epoch != ZERO:
        yield delta.epoch


def _clear(state: CRDT, ts: Timestamp) -> CRDT:
    """DEL of one type state: observed-remove for every type but the HLL (an epoch)."""
    if isinstance(state, HLL):
        return state.clear(ts)
    if isinstance(state, NumericRegister | CausalMap | ORSet | RList | VSet):
        return state.clear()
    raise AssertionError(f"cannot clear {type(state)!r}")


@dataclass
class Replica:
    """One replica's in-memory state.  Mutate synchronously; the shell persists."""

    replica_id: str
    incarnation: str
    max_offset_ms: int = 500
    # Decoded objects for keys in use, compact records for the rest (``StateStore``).
    states: StateStore = field(default_factory=StateStore)
    applied: CausalContext = field(default_factory=CausalContext)
    log_pos: int = 0  # last log position assigned
    checkpoint_pos: int = 0  # log position the last checkpoint reflects
    log_truncated_to: int = 0  # log entries at or below this were deleted from storage
    pending: list[LogEntry] = field(default_factory=list)  # not yet handed to storage
    dirty: set[Key] = field(default_factory=set)  # keys changed since the last checkpoint
    # Every key name that has a state, sorted: what SCAN walks.
    names: SortedList[str] = field(default_factory=SortedList)
    # Names whose TTL may pass: a heap of (expires_ms, name), rechecked when due.
    expiring: list[tuple[int, str]] = field(default_factory=list)
    # Names with more than one live type (replicas created them with different
    # types concurrently): the type-conflict metric.
    conflicts: set[str] = field(default_factory=set)
    gc_deleted: set[Key] = field(default_factory=set)  # dropped keys not yet deleted on disk
    checkpoint_requested: bool = False  # a state sync ended: persist states now
    # For replication, written here only (the methods say who takes them):
    # keys changed since the digest cache last took them (``take_digest_dirty``),
    # (tracked only once the digest cache has taken them a first time: before that
    # its first refresh reads every key anyway),
    digest_dirty: set[Key] = field(default_factory=set)
    digest_tracking: bool = False
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
    # Vector sets too large to index inline that a search found without an index:
    # the shell builds their indexes in the background (crdtkv.vectors.builder).
    vset_builds: set[str] = field(default_factory=set)
    # Sharded (``crdtkv.cluster.move``): which names to watch (a move's slots, slots
    # this process no longer serves), and the watched names changed since the
    # mover last took them (``take_watched``).  None: nothing is watched.
    watch: Callable[[str], bool] | None = None
    watched: set[str] = field(default_factory=set)
    # Log entries whose group was encoded as it was committed (grouped commits):
    # log position -> ``[dot, deltas]`` bytes, taken by the group commit.
    encoded: dict[int, bytes] = field(default_factory=dict)
    hlc: HLC = field(init=False)
    _group_depth: int = field(default=0, init=False, repr=False)
    _open: _OpenGroup | None = field(default=None, init=False, repr=False)

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
        self._seal()  # the snapshot's log position is a whole entry
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
            state = STATE_TYPES[key[0]]()
            self._create(key, state)
        return state

    def _create(self, key: Key, state: CRDT) -> None:
        if not self._has_name(key[1]):
            self.names.add(key[1])
        self.states[key] = state

    def _has_name(self, name: str) -> bool:
        states = self.states
        return any((t, name) in states for t in STATE_TYPES)

    def adopt(self, key: Key, state: CRDT) -> None:
        """``state`` (built by an op from nothing) becomes ``key``'s state."""
        self._create(key, state)

    def drop_empty(self, key: Key) -> None:
        """An op created ``key``'s state for nothing: it goes again."""
        del self.states[key]
        if not self._has_name(key[1]):
            self.names.remove(key[1])

    def live_keys(self, now_ms: int) -> int:
        return sum(1 for name in self.names if self.visible_type(name, now_ms) is not None)

    # -- the keyspace: one type per key ------------------------------------------------------
    def meta(self, name: str) -> KeyMeta | None:
        return self.states.get((META, name))  # type: ignore[return-value]

    def live_types(self, name: str) -> list[str]:
        """The types holding something under ``name`` (usually one)."""
        states = self.states
        out = []
        for t in TYPES:
            s = states.get((t, name))
            if s is not None and is_live(s):
                out.append(t)
        return out

    def visible_type(self, name: str, now_ms: int) -> str | None:
        """The type ``name`` reads as, or None when it is absent (never written,
        deleted, emptied or expired).  Of several live types, the one whose
        latest write has the highest HLC timestamp."""
        meta = self.meta(name)
        if meta is not None and meta.ttl and meta.expired(now_ms):
            return None
        live = self.live_types(name)
        if len(live) <= 1:
            return live[0] if live else None
        stamps = meta.stamps if meta is not None else {}
        return max(live, key=lambda t: (stamps.get(t, ZERO), t))

    def read(self, name: str, type_: str, now_ms: int) -> CRDT | None:
        """The state of ``name`` for a read as ``type_``: None when absent;
        ``WrongType`` when the key is visible as another type."""
        states = self.states
        state = states.get((type_, name))
        if state is not None and name not in self.conflicts and is_live(state):
            # The usual case: the key holds this type only (``conflicts`` lists the
            # names with several live types); only its expiry remains to check.
            meta = states.get((META, name))
            if meta is not None and meta.ttl and meta.expired(now_ms):  # type: ignore[attr-defined]
                return None
            return state
        if state is None and name not in self.names:
            return None  # no state of any type under this name
        visible = self.visible_type(name, now_ms)
        if visible is None:
            return None
        if visible != type_:
            raise WrongType(f"key {name!r} holds a {visible}, not a {type_}")
        return self.states[(type_, name)]

    def prepare_write(self, name: str, type_: str, now_ms: int) -> CRDT | None:
        """Before a write of ``type_`` to ``name``: refuse it (``WrongType``) if the key
        is visible as another type; if the key has died (deleted, emptied, expired)
        with something left, drop what is left first (its own operation), so the
        new value starts empty, with no TTL.  Returns the existing state of the
        type (for the caller to change in place), or None."""
        visible = self.visible_type(name, now_ms)
        if visible is not None and visible != type_:
            raise WrongType(f"key {name!r} holds a {visible}, not a {type_}")
        if visible is None:
            meta = self.meta(name)
            if (meta is not None and meta.ttl) or self.live_types(name):
                self._reset(name, now_ms, keep_ttl=False)
        return self.for_update((type_, name))

    def commit_write(
        self,
        name: str,
        type_: str,
        state: CRDT,
        delta: CRDT,
        now_ms: int,
        ts: Timestamp | None = None,
        extra: dict[Key, CRDT] | None = None,
    ) -> Dot | None:
        """Record a write of ``type_`` to ``name`` (``delta``, already applied to
        ``state``, which becomes the key's state if it was new).  The key's
        metadata records the write's HLC timestamp ``ts`` (a new one if None).
        ``extra``: other deltas of the same operation (a TTL change)."""
        key = (type_, name)
        if delta.is_bottom() and not extra:
            return None
        if key not in self.states:
            self.adopt(key, state)
        mkey = (META, name)
        meta = self.for_update(mkey)
        if not isinstance(meta, KeyMeta):
            meta = KeyMeta()
            self.adopt(mkey, meta)
        mdelta = meta.stamp(type_, ts if ts is not None else self.hlc.now(now_ms))
        deltas: dict[Key, CRDT] = {key: delta}
        for k, d in (extra or {}).items():
            if k == mkey:
                d.merge(mdelta)
                mdelta = d  # type: ignore[assignment]
            else:
                deltas[k] = d
        deltas[mkey] = mdelta
        return self.commit_local(deltas)

    def delete(self, name: str, now_ms: int) -> bool:
        """DEL: remove what this replica has seen of every type of ``name`` and its
        TTL (a concurrent write survives; an HLL is cleared by epoch).  Returns
        whether the key existed (was visible)."""
        existed = self.visible_type(name, now_ms) is not None
        self._reset(name, now_ms, keep_ttl=False)
        return existed

    def _reset(self, name: str, now_ms: int, keep_ttl: bool) -> None:
        deltas: dict[Key, CRDT] = {}
        ts: Timestamp | None = None
        for t in self.live_types(name):
            if ts is None:
                ts = self.hlc.now(now_ms)
            key = (t, name)
            deltas[key] = _clear(self.for_update(key), ts)  # type: ignore[arg-type]
        meta = self.for_update((META, name))
        if not keep_ttl and isinstance(meta, KeyMeta) and meta.ttl:
            deltas[(META, name)] = meta.clear_ttl()
        if deltas:
            self.commit_local(deltas)

    def set_ttl(self, name: str, expires_ms: int | None, now_ms: int) -> bool:
        """EXPIRE (``expires_ms``) or PERSIST (None) of a visible key; False (nothing
        changed) when the key is absent, or for PERSIST when it has no TTL."""
        if self.visible_type(name, now_ms) is None:
            return False
        meta = self.for_update((META, name))
        if not isinstance(meta, KeyMeta):
            meta = KeyMeta()
            self.adopt((META, name), meta)
        if expires_ms is None and meta.expires_ms() is None:
            return False
        self.commit_local({(META, name): meta.set_ttl(self.actor, expires_ms)})
        return True

    def clear_ttl_delta(self, name: str) -> dict[Key, CRDT]:
        """The delta that drops the TTL of ``name`` (SET without KEEPTTL), for
        ``commit_write``'s ``extra``; empty when it has none."""
        meta = self.for_update((META, name))
        if isinstance(meta, KeyMeta) and meta.ttl:
            return {(META, name): meta.clear_ttl()}
        return {}

    def ttl_ms(self, name: str, now_ms: int) -> int:
        """Remaining time to live in ms; -1 with no TTL; -2 when absent (Redis's PTTL)."""
        if self.visible_type(name, now_ms) is None:
            return -2
        meta = self.meta(name)
        exp = meta.expires_ms() if meta is not None else None
        return -1 if exp is None else max(0, exp - now_ms)

    def scan(
        self,
        cursor: str,
        count: int,
        now_ms: int,
        match: Callable[[str], bool] | None = None,
        type_: str | None = None,
    ) -> tuple[list[str], str]:
        """Up to ``count`` names after ``cursor`` (in name order) that are visible,
        match and have type ``type_``; and the next cursor ("" when done).  A name
        present for the whole scan is returned once; others may or may not be."""
        names = self.names
        i = names.bisect_right(cursor) if cursor else 0
        out: list[str] = []
        examined = 0
        last = ""
        n = len(names)
        while i < n and examined < count:
            name = names[i]
            i += 1
            examined += 1
            last = name
            if match is not None and not match(name):
                continue
            vt = self.visible_type(name, now_ms)
            if vt is None or (type_ is not None and vt != type_):
                continue
            out.append(name)
        return out, (last if i < n else "")

    def expire_due(self, now_ms: int) -> int:
        """Drop the contents of keys whose TTL has passed (each its own local
        operation; the TTL stays, so a concurrent write that arrives later stays
        hidden).  Returns how many keys were emptied."""
        emptied = 0
        while self.expiring and self.expiring[0][0] <= now_ms:
            _, name = heapq.heappop(self.expiring)
            meta = self.meta(name)
            if meta is None or not meta.expired(now_ms) or not self.live_types(name):
                continue
            self._reset(name, now_ms, keep_ttl=True)
            emptied += 1
        return emptied

    def next_expiry_ms(self) -> int | None:
        return self.expiring[0][0] if self.expiring else None

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
            for d in deltas.values():
                if d.is_bottom():  # rare: filter the bottoms out
                    deltas = {k: d for k, d in deltas.items() if not d.is_bottom()}
                    if not deltas:
                        return None
                    break
        if self._group_depth:
            return self._commit_grouped(deltas)
        dot = (self.actor, self.seq + 1)
        self.applied.add(dot)
        self._append("", DeltaGroup(dot, deltas))
        return dot

    # -- grouped commits: one dot and one log record for many operations ---------------------
    def open_group(self) -> None:
        """The local operations until ``close_group`` share one dot and one log record
        (nested calls join the outermost group).  The group is also closed by anything
        that must see it whole: a remote group, a snapshot, the group commit taking
        the pending records (``take_pending``); operations after that start another."""
        self._group_depth += 1

    def close_group(self) -> None:
        self._group_depth -= 1
        if self._group_depth <= 0:
            self._group_depth = 0
            self._seal()

    def _commit_grouped(self, deltas: dict[Key, CRDT]) -> Dot:
        g = self._open
        if g is not None and g.size >= GROUP_BYTES_MAX:
            self._seal()
            g = None
        if g is None:
            dot = (self.actor, self.seq + 1)
            self.applied.add(dot)
            self._append("", DeltaGroup(dot, dict(deltas)))
            g = self._open = _OpenGroup(self.pending[-1])
            g.encode(deltas)
            return dot
        joined = g.entry.group.deltas
        for k, d in deltas.items():
            mine = joined.get(k)
            if mine is None:
                joined[k] = d
            else:
                # The join of two deltas of one key is a delta of both.  The group's
                # delta may be an object the operation still holds: join into a copy.
                if k not in g.copied:
                    joined[k] = mine = mine.copy()
                    g.copied.add(k)
                mine.merge(d)
        g.encode(deltas)  # its bytes count towards the bound, joined or not
        self.touched(deltas)
        return g.entry.group.dot

    def _seal(self) -> None:
        """The open group takes no more operations: its bytes are final."""
        g = self._open
        if g is None:
            return
        self._open = None
        self.encoded[g.entry.pos] = g.blob()

    def _append(self, origin: str, group: DeltaGroup) -> None:
        if origin and self._open is not None:
            self._seal()
        self.log_pos += 1
        self.pending.append(LogEntry(self.log_pos, origin, group))
        self.touched(group.deltas)

    def touched(self, keys: Iterable[Key]) -> None:
        """Bookkeeping after keys changed: persistence, digests, expiry, type conflicts."""
        names: set[str] = set()
        dirty, digest_dirty, gc_deleted = self.dirty, self.digest_dirty, self.gc_deleted
        for key in keys:
            dirty.add(key)
            if self.digest_tracking:
                digest_dirty.add(key)
            if gc_deleted:
                gc_deleted.discard(key)
            names.add(key[1])
            if key[0] == META:
                meta = self.states.get(key)
                exp = meta.expires_ms() if isinstance(meta, KeyMeta) else None
                if exp is not None:
                    heapq.heappush(self.expiring, (exp, key[1]))
        for name in names:
            if self._several_live(name):
                self.conflicts.add(name)
            elif self.conflicts:
                self.conflicts.discard(name)
        watch = self.watch
        if watch is not None:
            self.watched.update(name for name in names if watch(name))

    def take_watched(self) -> set[str]:
        """The watched names changed since the last call (``watch``)."""
        out, self.watched = self.watched, set()
        return out

    def set_watch(self, watch: Callable[[str], bool] | None) -> None:
        """Watch the names ``watch`` selects from now on (None: none); the names
        already noted stay until taken."""
        self.watch = watch

    def drop_names(self, names: Iterable[str]) -> int:
        """Forget ``names`` here, local only: no dot is minted and nothing is
        replicated; every state of each name goes from memory now and from storage
        with the next batch.  For the keys of slots moved to another shard
        (``crdtkv.cluster.move``): their state lives on at the new owner.  Open
        snapshots (outgoing state syncs) keep the state they saw.  Returns how
        many names were dropped."""
        dropped = 0
        states = self.states
        for name in names:
            found = False
            for t in STATE_TYPES:
                key = (t, name)
                if key not in states:
                    continue
                if self.snapshots:
                    self.preserve(key)
                del states[key]
                self.dirty.discard(key)
                self.digest_dirty.add(key)
                self.gc_deleted.add(key)
                found = True
            if found:
                dropped += 1
                self.names.discard(name)
                self.conflicts.discard(name)
                self.watched.discard(name)
                self.vset_builds.discard(name)
        return dropped

    def _several_live(self, name: str) -> bool:
        """Whether more than one type holds something under ``name`` (a type conflict)."""
        states = self.states
        found = False
        for t in TYPES:
            s = states.get((t, name))
            if s is not None and is_live(s):
                if found:
                    return True
                found = True
        return False

    # -- remote deltas ----------------------------------------------------------------
    def check_group(self, group: DeltaGroup, now_ms: int) -> None:
        """Refuse, before anything changes, a group this replica must not apply."""
        for (ns, _), delta in group.deltas.items():
            expected = STATE_TYPES.get(ns)
            if expected is None or type(delta) is not expected:
                raise BadRequest(f"delta for type {ns!r} has the wrong type")
            for ts in timestamps_of(delta):
                self.hlc.check(ts, now_ms)

    def apply_remote(self, group: DeltaGroup, origin: str, now_ms: int) -> bool:
        """Join a group received from ``origin``.  False when it was already applied."""
        if self.applied.contains(group.dot):
            return False
        self.check_group(group, now_ms)
        self._seal()  # what follows may depend on this group: a later record
        for key, delta in group.deltas.items():
            self.state_for_write(key).merge(delta)
            for ts in timestamps_of(delta):
                self.hlc.observe(ts, now_ms)
        self.applied.add(group.dot)
        self._append(origin, group)
        return True

    def _restore_merge(self, key: Key, delta: CRDT) -> None:
        state = self.states.get(key)
        if state is None:
            self.states[key] = state = STATE_TYPES[key[0]]()
        state.merge(delta)

    # -- hand-offs ------------------------------------------------------------------------
    def take_digest_dirty(self) -> set[Key]:
        """Keys changed since the last call (the digest cache recomputes them)."""
        out, self.digest_dirty = self.digest_dirty, set()
        self.digest_tracking = True
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
        self._seal()  # a record handed to storage takes no more operations
        out, self.pending = self.pending, []
        return out

    def take_dirty(self) -> dict[Key, CRDT]:
        """Keys changed since the last checkpoint, with their current states."""
        states = self.states
        out = {k: s for k in self.dirty if (s := states.get(k)) is not None}
        self.dirty = set()
        # The checkpoint writes them now: hold the small ones compactly again, and
        # the ones reads decoded since the last checkpoint (``StateStore.cool``).
        for key in out:
            states.thawed.add(key[1])
        states.cool_thawed()
        return out

    def restore(
        self,
        hlc_wall_ms: int,
        applied: CausalContext,
        checkpoint_pos: int,
        states: Iterable[tuple[Key, CRDT]] | StateStore,
        log: Iterable[LogEntry],
    ) -> None:
        """Rebuild from storage: checkpointed states, then the log replayed after them.

        Replaying an entry already reflected in a checkpoint is harmless (joins
        are idempotent), so the checkpoint position only has to be a lower bound.
        """
        # One millisecond past the persisted bound: never reissue a timestamp.
        self.hlc.wall_ms, self.hlc.logical = max(self.hlc.wall_ms, hlc_wall_ms + 1), 0
        self.applied = applied.copy()
        self.states = states if isinstance(states, StateStore) else StateStore(states)
        self.names = SortedList()
        self.log_pos = checkpoint_pos
        for entry in log:
            self.loaded_log.append(entry)
            self.log_pos = max(self.log_pos, entry.pos)
            if entry.pos <= checkpoint_pos:
                continue
            for key, delta in entry.group.deltas.items():
                self._restore_merge(key, delta)
                for ts in timestamps_of(delta):
                    if ts > self.hlc.last:
                        self.hlc.wall_ms, self.hlc.logical = ts.wall_ms, ts.logical
            self.applied.add(entry.group.dot)
            self.dirty.update(entry.group.deltas)
        self.durable_vv = dict(self.applied.vv)  # everything loaded survived
        # A name is either cold (all its states) or hot: the two lists do not overlap.
        hot_names = {name for _, name in self.states.hot}
        self.names = SortedList([*self.states.cold, *hot_names])
        # Cold records hold no TTL and no type conflict (``StateStore.cool``).
        for (t, name), state in self.states.hot_items():
            if t == META:
                exp = state.expires_ms() if isinstance(state, KeyMeta) else None
                if exp is not None:
                    heapq.heappush(self.expiring, (exp, name))
            elif len(self.live_types(name)) > 1:
                self.conflicts.add(name)

"""How a replica is saved to and loaded from a ``Storage`` (pure: the storage
object is passed in, so the simulator runs this with the in-memory fake).

Write path: every group commit writes the log entries of the operations in
the group (the delta log doubles as the write-ahead record) and the HLC
bound.  A write therefore costs in proportion to its delta, never to the
size of the value it changed.  Every so often (see ``Checkpointer``) the
states of keys changed since the last checkpoint are written in the same
atomic batch, with the applied context and the log position they reflect.

Load path: meta, then every checkpointed state, then the log entries after
the checkpoint position, joined in.  Replaying an entry twice is harmless.

Storage formats: this build reads format ``records.FORMAT`` (2).  A format-1
directory is migrated when it is opened (``crdtkv.replica.migrate``), in one
synced write batch: a crash before it leaves format 1 as it was, after it
format 2 is complete.  Any other format is refused (``DataDirMismatch``)
before anything is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from crdtkv.crdts.causal import CausalContext, decode_vv
from crdtkv.errors import CodecError, StorageError
from crdtkv.replica import migrate, wire
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import LogEntry, Replica
from crdtkv.replica.store import StateStore
from crdtkv.storage.base import Storage, WriteBatch
from crdtkv.versions import RELEASE

__all__ = [
    "WAL_SYNC_MS",
    "Checkpointer",
    "DataDirMismatch",
    "build_batch",
    "cluster_map_batch",
    "encode_entries",
    "load_replica",
    "mark_clean",
    "migrate_format_1",
    "read_cluster_map",
    "snapshot_parts",
]


# In `wal` durability, the longest an applied operation stays unsynced while
# the replica is up (one synced write per interval at most).  Until it is
# synced a replica does not count it as stable (see Replica.durable_vv).
WAL_SYNC_MS = 1_000


log = logging.getLogger(__name__)


class DataDirMismatch(StorageError):
    """The data directory belongs to another replica id, or has a storage format
    this build neither reads nor migrates."""


def _refuse_format(found: str, *, newer: bool = False, by: str = "") -> DataDirMismatch:
    """The refusal of a format this build neither reads nor migrates: what was
    ``found`` (and the release ``by`` that last started on it, when recorded),
    what this build reads, and what to do."""
    if by:
        found += f", last opened by crdtkv {by}"
    if newer:
        todo = (
            "it was written by a newer crdtkv: run that release (or a later one) on it, "
            "or start this replica on an empty data directory and let its peers catch it up"
        )
    else:
        todo = (
            "check that --data-dir names this replica's directory; if it does, move the "
            "directory aside and start on an empty one (peers catch the replica up by state sync)"
        )
    return DataDirMismatch(
        f"data directory has storage {found}; this build (crdtkv {RELEASE}) reads storage "
        f"format {rec.FORMAT} "
        f"and migrates format {migrate.FROM_FORMAT} to it: {todo}"
    )


def _read_format(storage: Storage) -> int:
    """The directory's storage format; ``DataDirMismatch`` unless it is a number."""
    raw = storage.get("meta", rec.META_FORMAT)
    if raw is None:
        raise _refuse_format("format 0 (no format record, but data)")
    try:
        fmt = rec.unpack(raw, "meta format")
    except CodecError:
        fmt = None
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 0:
        raise _refuse_format(f"format record {raw[:32]!r}, which is not a format number")
    return fmt


def _release_of(storage: Storage) -> str:
    """The release recorded by the last start, or "" (before 0.2.0, or unreadable)."""
    raw = storage.get("meta", rec.META_RELEASE)
    if raw is None:
        return ""
    try:
        release = rec.unpack(raw, "meta release")
    except CodecError:
        return ""
    return release[:32] if isinstance(release, str) else ""


def _has_records(storage: Storage) -> bool:
    return any(
        next(storage.items(cf), None) is not None for cf in ("states", "fields", "log", "meta")
    )


def _meta_int(storage: Storage, key: bytes, default: int) -> int:
    raw = storage.get("meta", key)
    if raw is None:
        return default
    v = rec.unpack(raw, f"meta {key.decode()}")
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise CodecError(f"meta {key.decode()}: expected a non-negative int")
    return v


def load_replica(
    storage: Storage,
    replica_id: str,
    new_incarnation: str,
    max_offset_ms: int = 500,
    *,
    wal: bool = False,
    now_ms: int = 0,
    snapshot: Iterator[Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Replica:
    """Open (or initialise) a replica's state from ``storage``.

    Every start runs under ``new_incarnation``, a new actor: the replica never
    mints a dot under an actor of an earlier start.  Nothing on the directory
    can tell that it is the newest this replica wrote: it may be a copy
    restored from a backup, a disk rolled back by a power loss in ``wal``
    durability (the unsynced suffix of the log gone), or a snapshot of a
    volume.  Peers may hold later dots of the old actor with other contents;
    re-minting them would split the cluster for ever (B8, and the restore of
    issue 20).  Under the new incarnation the data kept is served as is,
    peers see the incarnation change and catch the replica up by a state
    sync, which brings back its own newer writes too.  The cost: one more
    actor in the applied vector per start, and in the context of each key the
    replica writes after it.
    ``wal`` says how this process will run (recorded for the next start).
    ``now_ms``: physical time, used only by a migration from format 1 (a
    format-1 register whose TTL has passed is left out).
    ``snapshot``: the decoded MessagePack objects of the keyspace snapshot a clean
    stop saved beside the database (``snapshot_parts``), if there is one: used
    instead of reading every state record when the directory says that stop was
    the last one (``META_SNAPSHOT`` matches it), ignored otherwise.
    ``progress``: called with a line to log now and then while loading.
    """
    raw_id = storage.get("meta", rec.META_REPLICA_ID)
    if raw_id is None:
        if _has_records(storage):  # not ours to initialise over
            raise _refuse_format("format 0 (no replica id or format record, but data)")
        batch = WriteBatch()
        batch.put("meta", rec.META_FORMAT, rec.pack(rec.FORMAT))
        batch.put("meta", rec.META_REPLICA_ID, rec.pack(replica_id))
        batch.put("meta", rec.META_INCARNATION, rec.pack(new_incarnation))
        batch.put("meta", rec.META_WAL, rec.pack(wal))
        batch.put("meta", rec.META_RELEASE, rec.pack(RELEASE))
        storage.write(batch, sync=True)
        return Replica(replica_id, new_incarnation, max_offset_ms)
    stored_id = rec.unpack(raw_id, "meta replica_id")
    if stored_id != replica_id:
        raise DataDirMismatch(
            f"data directory belongs to replica {stored_id!r}, not {replica_id!r}"
        )
    fmt = _read_format(storage)
    if fmt == migrate.FROM_FORMAT:
        migrate_format_1(storage, now_ms)
    elif fmt != rec.FORMAT:
        raise _refuse_format(f"format {fmt}", newer=fmt > rec.FORMAT, by=_release_of(storage))
    previous = _release_of(storage)
    if previous != RELEASE:
        logging.getLogger(__name__).info(
            "data directory (storage format %d) last opened by crdtkv %s, now by crdtkv %s",
            rec.FORMAT,
            previous or "before 0.2.0",
            RELEASE,
        )
    snapshot_mark = _snapshot_mark(storage)
    raw_inc = storage.get("meta", rec.META_INCARNATION)
    incarnation = rec.unpack(raw_inc, "meta incarnation") if raw_inc is not None else None
    if not isinstance(incarnation, str) or not incarnation:
        raise CodecError("meta incarnation: missing or not a string")
    start = WriteBatch()  # this run is not clean until it closes cleanly
    start.delete("meta", rec.META_CLEAN)
    start.delete("meta", rec.META_SNAPSHOT)  # this run changes what the snapshot holds
    start.put("meta", rec.META_WAL, rec.pack(wal))
    start.put("meta", rec.META_RELEASE, rec.pack(RELEASE))
    incarnation = new_incarnation  # the caller's: new at every start (the CLI's is random)
    start.put("meta", rec.META_INCARNATION, rec.pack(incarnation))
    storage.write(start, sync=True)
    replica = Replica(replica_id, incarnation, max_offset_ms)
    raw_applied = storage.get("meta", rec.META_APPLIED)
    applied = rec.decode_applied(raw_applied) if raw_applied is not None else CausalContext()
    checkpoint_pos = _meta_int(storage, rec.META_CHECKPOINT_POS, 0)
    states = None
    if snapshot is not None and snapshot_mark is not None:
        states = _load_snapshot(storage, snapshot, snapshot_mark, checkpoint_pos, progress)
    if states is None:
        states = _load_records(storage, progress)
    log = (rec.decode_log_entry(rec.log_pos_of(k), v) for k, v in storage.items("log"))
    replica.restore(_meta_int(storage, rec.META_HLC, 0), applied, checkpoint_pos, states, log)
    replica.checkpointed(checkpoint_pos)
    raw_peers = storage.get("meta", rec.META_PEERS)
    raw_synced = storage.get("meta", rec.META_SYNCED)
    replica.peer_book.restore(
        rec.decode_peers(raw_peers) if raw_peers is not None else {},
        decode_vv(rec.unpack(raw_synced, "meta synced_vv")) if raw_synced is not None else {},
    )
    return replica


def _snapshot_mark(storage: Storage) -> list[Any] | None:
    """``[token, checkpoint position]`` of the snapshot saved by the last stop, when
    that stop was clean (None otherwise, or when unreadable)."""
    raw = storage.get("meta", rec.META_SNAPSHOT)
    if raw is None or storage.get("meta", rec.META_CLEAN) is None:
        return None
    try:
        mark = rec.unpack(raw, "meta keyspace_snapshot")
    except CodecError:
        return None
    return mark if isinstance(mark, list) and len(mark) == 2 else None


def _load_records(storage: Storage, progress: Callable[[str], None] | None) -> StateStore:
    def report(n: int) -> None:
        if progress is not None:
            progress(f"loading: {n:,} state records read")

    return rec.load_store(storage.items("states"), storage.items("fields"), report)


def _load_snapshot(
    storage: Storage,
    snapshot: Iterator[Any],
    mark: list[Any],
    checkpoint_pos: int,
    progress: Callable[[str], None] | None,
) -> StateStore | None:
    """The keyspace from the clean stop's snapshot, plus the states it left out (read
    from storage); None when the snapshot is not the one ``mark`` names, or damaged."""
    try:
        head = StateStore.read_snapshot_header(snapshot)
        if [head.get("token"), head.get("pos")] != mark or mark[1] != checkpoint_pos:
            log.warning("keyspace snapshot is not the last clean stop's: reading the records")
            return None
        hot = head.get("hot")
        if not isinstance(hot, list):
            raise CodecError("keyspace snapshot: malformed header")
        if progress is not None:
            progress(f"loading: keyspace snapshot of {head.get('cold_states', 0):,} states")
        store = StateStore()
        store.load_snapshot(head, snapshot)
    except CodecError as e:
        log.warning("%s: reading the records instead", e.message)
        return None
    # The states kept decoded (large, or not small types) are read from storage.
    keys = [(t, n) for t, n in hot if isinstance(t, str) and isinstance(n, str)]
    recs = [(k, v) for k in keys if (v := storage.get("states", rec.encode_state_key(k)))]
    fields: list[tuple[bytes, bytes]] = []
    for t, n in keys:
        if t in rec.SPLIT_TYPES:
            prefix = rec.field_prefix(t, n)
            fields.extend(storage.items("fields", prefix, rec.prefix_end(prefix)))
    raw = sorted((rec.encode_state_key(k), v) for k, v in recs)
    for key, state in rec.load_states(raw, fields):
        store.hot[key] = state
    return store


def snapshot_parts(replica: Replica, token: str) -> list[bytes] | None:
    """The replica's keyspace as a snapshot file's parts, for a clean stop to save
    after its final checkpoint, then record with ``mark_clean(storage, mark)``;
    None when storage does not hold exactly the in-memory states (a write since the
    last checkpoint)."""
    if (
        replica.dirty
        or replica.pending
        or replica.gc_deleted
        or replica.checkpoint_requested
        or replica.checkpoint_pos != replica.log_pos
    ):
        return None
    states = replica.states
    states.cool_all()
    header = {"token": token, "pos": replica.checkpoint_pos, "hot": [list(k) for k in states.hot]}
    return list(states.snapshot_chunks(header))


def migrate_format_1(storage: Storage, now_ms: int) -> migrate.Migration:
    """Rewrite a format-1 directory as format 2 in one synced batch (module docstring
    of ``crdtkv.replica.migrate``): its states converted, its log replayed into them
    and cleared, and every peer marked for a state sync (our log is gone, and peers
    converted their own states: only whole states reconcile the two).  Meta records
    not listed here (replica id, incarnation, wal, clean, synced) are kept."""
    raw_applied = storage.get("meta", rec.META_APPLIED)
    raw_peers = storage.get("meta", rec.META_PEERS)
    m = migrate.migrate(
        storage.items("states"),
        ((rec.log_pos_of(k), v) for k, v in storage.items("log")),
        rec.decode_applied(raw_applied) if raw_applied is not None else CausalContext(),
        _meta_int(storage, rec.META_CHECKPOINT_POS, 0),
        _meta_int(storage, rec.META_HLC, 0),
        now_ms,
    )
    peers = rec.decode_peers(raw_peers) if raw_peers is not None else {}
    batch = WriteBatch()
    # State keys and log keys of any length sort below b"\xff" * 9 (UTF-8 never
    # holds 0xff; log keys are 8 bytes).
    batch.delete_range("states", b"", _ABOVE_ALL)
    batch.delete_range("fields", b"", _ABOVE_ALL)  # format 1 had none: for completeness
    for key, state in m.states.items():
        rec.write_state(batch, key, state)
    batch.delete_range("log", b"", _ABOVE_ALL)
    batch.put("meta", rec.META_APPLIED, rec.encode_applied(m.applied))
    batch.put("meta", rec.META_CHECKPOINT_POS, rec.pack(m.checkpoint_pos))
    batch.put("meta", rec.META_HLC, rec.pack(m.hlc_wall_ms))
    resync = {p: replace(r, resync=True) for p, r in peers.items()}
    batch.put("meta", rec.META_PEERS, rec.encode_peers(resync))
    batch.put("meta", rec.META_FORMAT, rec.pack(rec.FORMAT))
    storage.write(batch, sync=True)
    _log_migration(m, len(peers))
    return m


_ABOVE_ALL = b"\xff" * 9


def _log_migration(m: migrate.Migration, peers: int) -> None:
    counts = m.counts()
    log.info(
        "data directory migrated from storage format %d to %d: converted %d registers, "
        "%d counters, %d sets and %d hlls (left out %d deleted and %d expired registers; "
        "%d log entries replayed first); wrote %d string, %d set, %d hll and %d meta states; "
        "%d peers marked to resync by state sync",
        migrate.FROM_FORMAT,
        rec.FORMAT,
        m.carried["registers"],
        m.carried["counters"],
        m.carried["sets"],
        m.carried["hlls"],
        m.tombstones,
        m.expired,
        m.replayed,
        counts.get("string", 0),
        counts.get("set", 0),
        counts.get("hll", 0),
        counts.get("meta", 0),
        peers,
    )
    several = "live as several types now and read as one (the others are kept, hidden)"
    merged = "held a register and a counter: one string now, the value plus the increments"
    for names, what in ((m.several, several), (m.merged, merged)):
        if names:
            shown = ", ".join(repr(n[:64]) for n in names[:10])
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            log.warning(
                "storage format 2 has one type per key: %d names %s: %s%s",
                len(names),
                what,
                shown,
                more,
            )


def mark_clean(storage: Storage, snapshot: list[Any] | None = None) -> None:
    """Record a clean close: everything is written and synced (the last write);
    ``snapshot``: the mark of the keyspace snapshot this stop saved (synced first)."""
    batch = WriteBatch()
    batch.put("meta", rec.META_CLEAN, rec.pack(True))
    if snapshot is not None:
        batch.put("meta", rec.META_SNAPSHOT, rec.pack(snapshot))
    storage.write(batch, sync=True)


def read_cluster_map(storage: Storage) -> dict[str, Any] | None:
    """The cluster map persisted in the data directory (its JSON form, unchecked:
    the caller parses it with ``ClusterMap.from_json``), or None."""
    raw = storage.get("meta", rec.META_CLUSTER_MAP)
    if raw is None:
        return None
    obj = rec.unpack(raw, "meta cluster_map")
    if not isinstance(obj, dict):
        raise CodecError("meta cluster_map: expected a map object")
    return obj


def cluster_map_batch(map_json: dict[str, Any]) -> WriteBatch:
    """The batch that persists a cluster map (write it synced before acknowledging it)."""
    batch = WriteBatch()
    batch.put("meta", rec.META_CLUSTER_MAP, rec.pack(map_json))
    return batch


def encode_entries(replica: Replica, entries: list[LogEntry]) -> list[bytes]:
    """Each entry's encoded group ``[dot, deltas]``: the bytes its grouped commit
    already encoded (``Replica.encoded``), else encoded now.  The group commit
    writes them in the log records and hands them to replication, which ships them
    as they are: every delta is encoded once."""
    encoded = replica.encoded
    out = []
    for e in entries:
        blob = encoded.pop(e.pos, None) if encoded else None
        out.append(blob if blob is not None else wire.group_blob_of(e.group.dot, e.group.deltas))
    return out


def build_batch(
    replica: Replica,
    entries: list[LogEntry],
    *,
    checkpoint: bool,
    log_floor: int | None = None,
    blobs: list[bytes] | None = None,
) -> WriteBatch:
    """One atomic batch: the entries, the HLC bound, and optionally a checkpoint.

    ``blobs``: the entries' encoded groups (``encode_entries``; encoded here if None).
    ``log_floor``: log entries at or below it are no longer needed by anyone
    (checkpointed and acknowledged by every peer) and are deleted.
    """
    batch = WriteBatch()
    if blobs is None:
        blobs = encode_entries(replica, entries)
    for entry, blob in zip(entries, blobs, strict=True):
        batch.put("log", rec.log_key(entry.pos), wire.log_record(entry.origin, blob))
    batch.put("meta", rec.META_HLC, rec.pack(replica.hlc.wall_ms))
    for key in replica.take_gc_deleted():
        rec.delete_state(batch, key)
    checkpoint = replica.take_checkpoint_request() or checkpoint
    if checkpoint:
        for key, state in replica.take_dirty().items():
            rec.write_state(batch, key, state)
        batch.put("meta", rec.META_APPLIED, rec.encode_applied(replica.applied))
        batch.put("meta", rec.META_CHECKPOINT_POS, rec.pack(replica.log_pos))
        batch.put("meta", rec.META_SYNCED, rec.pack(replica.peer_book.synced_vv))
        replica.checkpointed(replica.log_pos)
    # Written whenever they change, not only at checkpoints: the log is
    # truncated up to the peers' acknowledgements, so the persisted ones
    # must never lag behind, or every restart needs a state sync (B9).
    peers = replica.peer_book.take_records(force=checkpoint)
    if peers is not None:
        batch.put("meta", rec.META_PEERS, rec.encode_peers(peers))
    if log_floor is not None:
        floor = min(log_floor, replica.checkpoint_pos)
        if floor > replica.log_truncated_to:
            batch.delete_range("log", rec.log_key(0), rec.log_key(floor + 1))
            replica.log_truncated(floor)
    return batch


@dataclass
class Checkpointer:
    """When to write a checkpoint: enough dirty keys, enough log, or enough time."""

    dirty_keys_max: int = 20_000  # bounds the size of one checkpoint batch
    log_entries_max: int = 200_000  # bounds restart replay time
    interval_ms: int = 5_000  # bounds how long a quiet replica's log stays unreplayed
    last_ms: int = 0

    def due(self, replica: Replica, now_ms: int) -> bool:
        if not replica.dirty:
            return False
        return (
            len(replica.dirty) >= self.dirty_keys_max
            or replica.log_pos - replica.checkpoint_pos >= self.log_entries_max
            or now_ms - self.last_ms >= self.interval_ms
        )

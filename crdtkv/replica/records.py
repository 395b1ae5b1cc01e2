"""Storage records of a replica: how states, log entries and metadata are
laid out in the column families, encoded (MessagePack) and validated.

Every record is checked when encoded and again when decoded; a record that
does not decode raises ``CodecError`` naming the column family and key.

Column families (see ``crdtkv.storage``):

- ``states``: ``b"<namespace>/<key>"`` -> ``codec`` encoding of the key's state;
  for a hash, a sorted set or a set (``SPLIT_TYPES``) only its header: the
  value with its causal context and no entries
- ``fields``: ``field_key(type, key, field)`` -> the ``numeric`` cell of one
  field of a hash or member of a sorted set, or the dots of a set member.
  One record per field, so a checkpoint of a large value writes the fields
  that changed (``write_state``), not the whole value
- ``log``:    8-byte big-endian log position -> ``[origin, dot, [[ns, key, delta], ...]]``
- ``meta``:   a few named records, below
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack

from crdtkv.crdts import codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_dot, decode_vv
from crdtkv.crdts.causal_map import CausalMap
from crdtkv.crdts.numeric import decode_cell, encode_cell
from crdtkv.crdts.or_set import ORSet
from crdtkv.crdts.rlist import RList, check_position, decode_elem, encode_elem
from crdtkv.crdts.vset import VSet, check_vectors, decode_vcell, encode_vcell
from crdtkv.errors import CodecError
from crdtkv.replica.keyspace import STATE_TYPES, DeltaGroup, Key, LogEntry
from crdtkv.replica.peers import PeerRecord
from crdtkv.replica.store import RAW_BOTH, RAW_META, RAW_STRING, StateStore
from crdtkv.storage.base import WriteBatch

__all__ = [
    "META_APPLIED",
    "META_CHECKPOINT_POS",
    "META_CLEAN",
    "META_CLUSTER_MAP",
    "META_FORMAT",
    "META_HLC",
    "META_INCARNATION",
    "META_PEERS",
    "META_RELEASE",
    "META_REPLICA_ID",
    "META_SNAPSHOT",
    "META_SYNCED",
    "META_WAL",
    "SPLIT_TYPES",
    "decode_field_key",
    "decode_group",
    "decode_log_entry",
    "decode_peers",
    "decode_state_key",
    "delete_state",
    "encode_group",
    "encode_log_entry",
    "encode_peers",
    "encode_state_key",
    "field_key",
    "field_prefix",
    "load_states",
    "load_store",
    "log_key",
    "log_pos_of",
    "pack",
    "prefix_end",
    "unpack",
    "write_state",
]

FORMAT = 2  # 1: four namespaces (registers, counters, sets, hlls); see replica.migrate
META_FORMAT = b"format"  # storage format version of this data directory
META_REPLICA_ID = b"replica_id"  # the replica id the directory was created for
META_INCARNATION = b"incarnation"  # random id minted when the directory was created
META_HLC = b"hlc"  # upper bound of HLC wall time handed out (ms); restart resumes past it
META_APPLIED = b"applied"  # applied causal context as of the checkpoint
META_CHECKPOINT_POS = b"checkpoint_pos"  # log position the states CF reflects at least
META_PEERS = b"peers"  # per peer: [acked log position (-1: resync pending), peer incarnation]
META_SYNCED = b"synced_vv"  # upper bound of the dots learnt by state sync (see Replica)
META_WAL = b"wal"  # True while a process runs on this directory in `wal` durability
META_CLEAN = b"clean"  # present only after a clean close (written last, synced)
META_RELEASE = b"release"  # the crdtkv release of the last start (from 0.2.0 on)
# The cluster map this process holds (sharded, --cluster-map): its JSON form
# (ClusterMap.to_json), written before a new map is acknowledged.
META_CLUSTER_MAP = b"cluster_map"
# Written with META_CLEAN when a clean stop saved a keyspace snapshot beside the
# database: [token, checkpoint position]; deleted by every start (crdtkv.replica.store).
META_SNAPSHOT = b"keyspace_snapshot"


def pack(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def unpack(blob: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types on garbage
        raise CodecError(f"{what}: not valid MessagePack ({e.__class__.__name__})") from e


def encode_state_key(key: Key) -> bytes:
    return f"{key[0]}/{key[1]}".encode()


def decode_state_key(raw: bytes) -> Key:
    try:
        ns, _, name = raw.decode("utf-8").partition("/")
    except UnicodeDecodeError as e:
        raise CodecError("state key is not UTF-8") from e
    if ns not in STATE_TYPES or not name:
        raise CodecError(f"state key {raw[:64]!r} has no known namespace")
    return (ns, name)


def log_key(pos: int) -> bytes:
    return struct.pack(">Q", pos)


def log_pos_of(raw: bytes) -> int:
    if len(raw) != 8:
        raise CodecError("log key must be 8 bytes")
    return int(struct.unpack(">Q", raw)[0])


def encode_group(group: DeltaGroup) -> list[Any]:
    return [
        list(group.dot),
        [[ns, name, codec.encode(delta)] for (ns, name), delta in group.deltas.items()],
    ]


def decode_group(data: object) -> DeltaGroup:
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise CodecError("delta group: expected [dot, deltas]")
    dot = decode_dot(data[0])
    raw = data[1]
    if not isinstance(raw, list | tuple) or not raw:
        raise CodecError("delta group: deltas must be a non-empty list")
    deltas: dict[Key, CRDT] = {}
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise CodecError("delta group: each delta is [namespace, key, value]")
        ns, name, enc = item
        expected = STATE_TYPES.get(ns) if isinstance(ns, str) else None
        if expected is None:
            raise CodecError(f"delta group: unknown namespace {ns!r}")
        if not isinstance(name, str) or not name or len(name.encode("utf-8", "replace")) > 1024:
            raise CodecError("delta group: bad key")
        deltas[(ns, name)] = codec.decode(enc, expected)
    return DeltaGroup(dot, deltas)


def encode_log_entry(entry: LogEntry) -> bytes:
    return pack([entry.origin, *encode_group(entry.group)])


def decode_log_entry(pos: int, blob: bytes) -> LogEntry:
    data = unpack(blob, f"log entry {pos}")
    if not isinstance(data, list) or len(data) != 3 or not isinstance(data[0], str):
        raise CodecError(f"log entry {pos}: expected [origin, dot, deltas]")
    try:
        return LogEntry(pos, data[0], decode_group(data[1:]))
    except CodecError as e:
        raise CodecError(f"log entry {pos}: {e.message}") from e


def encode_state(state: CRDT) -> bytes:
    return codec.pack(state)


def decode_state(key: Key, blob: bytes) -> CRDT:
    try:
        return codec.unpack(blob, STATE_TYPES[key[0]])
    except CodecError as e:
        raise CodecError(f"state {key[0]}/{key[1][:64]}: {e.message}") from e


# -- hashes and sorted sets: a header record and one record per field ------------------------
SPLIT_TYPES = frozenset({"hash", "zset", "set", "list", "vectorset"})
Split = CausalMap | ORSet | RList | VSet


def _field_value(state: Split, field: str) -> object | None:
    """What a field record holds (a numeric cell, a set member's dots, a list element);
    None when the field is absent."""
    if isinstance(state, RList):
        return encode_elem(state.entries.get(field))
    if isinstance(state, VSet):
        vcell = state.entries.get(field)
        return encode_vcell(vcell) if vcell else None
    if isinstance(state, ORSet):
        dots = state.entries.get(field)
        return [list(d) for d in dots] if dots else None
    cell = state.entries.get(field)
    return encode_cell(cell) if cell else None


def _decode_field(state: Split, raw: object, where: str) -> Any:
    """A field record's value for ``state``: a cell, a member's dots (each within the
    context) or a list element; raises ``CodecError``."""
    if isinstance(state, RList):
        return decode_elem(raw)
    if isinstance(state, VSet):
        return decode_vcell(raw, state.ctx, check=False)  # checked all at once: load_states
    if isinstance(state, ORSet):
        if not isinstance(raw, list | tuple):
            raise CodecError(f"{where}: dots must be a list")
        dots = tuple(sorted({decode_dot(d) for d in raw}))
        if len(dots) != len(raw):
            raise CodecError(f"{where}: duplicate dot")
        for d in dots:
            if not state.ctx.contains(d):
                raise CodecError(f"{where}: a dot is outside the context")
        return dots
    return decode_cell(raw, state.ctx, state.SCORES_ONLY)


def _list_dot(state: RList, pos: str, where: str) -> Dot:
    """The dot of a list element record's position, which must lie in the context."""
    try:
        dot = check_position(pos)
    except CodecError as e:
        raise CodecError(f"{where}: {e.message}") from e
    if not state.ctx.contains(dot):
        raise CodecError(f"{where}: a dot is outside the context")
    return dot


def field_prefix(type_: str, name: str) -> bytes:
    """The prefix of every field record of ``(type_, name)``: the name's length (2
    bytes), the name, the type and a NUL.  The length makes the name unambiguous,
    the NUL ends the type, so no key's prefix is a prefix of another's."""
    nb = name.encode("utf-8")
    return struct.pack(">H", len(nb)) + nb + type_.encode() + b"\x00"


def prefix_end(prefix: bytes) -> bytes:
    """The first key above every key that starts with ``prefix`` (which ends in NUL)."""
    return prefix[:-1] + b"\x01"


def field_key(type_: str, name: str, field: str) -> bytes:
    return field_prefix(type_, name) + field.encode("utf-8")


def decode_field_key(raw: bytes) -> tuple[Key, str]:
    """``((type, name), field)`` of a field record's key."""
    try:
        if len(raw) < 2:
            raise ValueError
        (n,) = struct.unpack(">H", raw[:2])
        name = raw[2 : 2 + n].decode("utf-8")
        type_b, sep, field_b = raw[2 + n :].partition(b"\x00")
        type_ = type_b.decode("ascii")
        field = field_b.decode("utf-8")
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise CodecError(f"field record key {raw[:64]!r} is malformed") from e
    if len(name.encode("utf-8")) != n or not name or not sep or type_ not in SPLIT_TYPES:
        raise CodecError(f"field record key {raw[:64]!r} is malformed")
    return (type_, name), field


def write_state(batch: WriteBatch, key: Key, state: CRDT) -> None:
    """Put ``key``'s state into a checkpoint ``batch``.

    A hash, a sorted set or a set is written as a header (its causal context)
    in ``states`` and a record per field (member) in ``fields``: every field when the map
    may have changed anywhere (``touched`` is None: new, replaced or cleared),
    else only the fields changed since the last write, a deleted one removed.
    """
    skey = encode_state_key(key)
    if key[0] not in SPLIT_TYPES or not isinstance(state, Split):
        batch.put("states", skey, encode_state(state))
        return
    batch.put("states", skey, encode_state(type(state)({}, state.ctx)))
    prefix = field_prefix(key[0], key[1])
    touched = state.touched
    if touched is None:
        batch.delete_range("fields", prefix, prefix_end(prefix))
        fields: Iterable[str] = state.entries
    else:
        fields = touched
    for field in fields:
        value = _field_value(state, field)
        fkey = prefix + field.encode("utf-8")
        if value is not None:
            batch.put("fields", fkey, pack(value))
        elif touched is not None:
            batch.delete("fields", fkey)
    state.touched = set()


def delete_state(batch: WriteBatch, key: Key) -> None:
    """Remove every record of ``key``'s state from storage."""
    batch.delete("states", encode_state_key(key))
    if key[0] in SPLIT_TYPES:
        prefix = field_prefix(key[0], key[1])
        batch.delete_range("fields", prefix, prefix_end(prefix))


def load_states(
    states: Iterable[tuple[bytes, bytes]], fields: Iterable[tuple[bytes, bytes]]
) -> Iterator[tuple[Key, CRDT]]:
    """Every stored state, each hash and sorted set with its field records joined in.

    Raises ``CodecError`` for a malformed record, a field whose dots lie outside
    its map's context or are held by another field, and a field record whose
    map has no header.
    """
    raw_fields: dict[Key, list[tuple[str, bytes]]] = {}
    for k, v in fields:
        key, field = decode_field_key(k)
        raw_fields.setdefault(key, []).append((field, v))
    for k, blob in states:
        key = decode_state_key(k)
        state = decode_state(key, blob)
        if key[0] in SPLIT_TYPES and isinstance(state, Split):
            if state.entries:
                raise CodecError(f"state {key[0]}/{key[1][:64]}: a header holds no entries")
            entries: dict[str, Any] = {}
            seen: set[Dot] = set()
            for field, v in raw_fields.pop(key, ()):
                where = f"field {key[0]}/{key[1][:64]}/{field[:64]}"
                try:
                    value = _decode_field(state, unpack(v, where), where)
                except CodecError as e:
                    raise CodecError(f"{where}: {e.message}") from e
                if isinstance(state, RList):
                    dots = [_list_dot(state, field, where)]
                elif not value:
                    raise CodecError(f"{where}: an empty record")
                else:
                    dots = [e if isinstance(state, ORSet) else e.dot for e in value]
                for dot in dots:
                    if dot in seen:
                        raise CodecError(f"{where}: a dot held by two fields")
                    seen.add(dot)
                entries[field] = value
            state.entries = entries
            if isinstance(state, VSet):
                try:
                    check_vectors(e.vec for cell in entries.values() for e in cell)
                except CodecError as e:
                    raise CodecError(f"state {key[0]}/{key[1][:64]}: {e.message}") from e
            if isinstance(state, CausalMap | RList | VSet):
                state._rebuilt()
            state.touched = set()  # what storage holds, exactly
        yield key, state
    if raw_fields:
        t, name = next(iter(raw_fields))
        raise CodecError(f"field records of {t}/{name[:64]} whose state record is missing")


def encode_applied(ctx: CausalContext) -> bytes:
    return pack(ctx.encode())


def decode_applied(blob: bytes) -> CausalContext:
    return CausalContext.decode(unpack(blob, "applied context"))


def encode_peers(records: dict[str, PeerRecord]) -> bytes:
    """``{peer: [acked, incarnation]}``, plus the bound of the dots acknowledged when
    known (``[acked, incarnation, {actor: seq}]``); a pending resync is stored as acked -1."""
    out: dict[str, list[Any]] = {}
    for p, r in records.items():
        v: list[Any] = [-1 if r.resync else r.acked, r.incarnation]
        if r.acked_vv is not None:
            v.append(r.acked_vv)
        out[p] = v
    return pack(out)


def decode_peers(blob: bytes) -> dict[str, PeerRecord]:
    data = unpack(blob, "meta peers")
    if not isinstance(data, dict):
        raise CodecError("meta peers: expected a map")
    out: dict[str, PeerRecord] = {}
    for peer, v in data.items():
        if (
            not isinstance(peer, str)
            or not isinstance(v, list)
            or len(v) not in (2, 3)
            or type(v[0]) is not int
            or not isinstance(v[1], str)
        ):
            raise CodecError("meta peers: expected peer -> [acked, incarnation, acked_vv?]")
        acked, incarnation = v[0], v[1]
        acked_vv = decode_vv(v[2]) if len(v) == 3 else None
        out[peer] = PeerRecord(max(0, acked), incarnation, resync=acked < 0, acked_vv=acked_vv)
    return out


# What the records of a string and of key metadata start with (``codec.pack``):
# a 3-element array, the type tag, format version 1.
_NUM_HEAD = b"\x93\xa3num\x01"
_META_HEAD = b"\x93\xa4meta\x01"
_NO_TTL_TAIL = b"\x90"  # a KeyMeta record ends with its TTL list: empty


def load_store(
    states: Iterable[tuple[bytes, bytes]],
    fields: Iterable[tuple[bytes, bytes]],
    progress: Callable[[int], None] | None = None,
) -> StateStore:
    """Every stored state into a ``StateStore``: a string key's records (its string
    and its metadata without a TTL) kept undecoded (``StateStore.put_raw``),
    decoded when first used; every other state decoded now (``load_states``).

    Only the records' heads are checked here; a string or metadata record that
    does not decode raises ``CodecError`` when its key is first used.
    ``progress(n)`` is called every 1,000,000 records read.
    """
    store = StateStore()
    cold = store.cold
    # Names as bytes until kept: "meta/" sorts before "set/", "string/", ...
    pending_meta: dict[bytes, bytes] = {}
    eager: list[tuple[bytes, bytes]] = []
    hot_names: set[bytes] = set()
    raw_string, raw_meta, raw_both = RAW_STRING, RAW_META, RAW_BOTH
    kept = 0
    for n, (k, blob) in enumerate(states, 1):
        if progress is not None and not n % 1_000_000:
            progress(n)
        ns, _, nb = k.partition(b"/")
        if ns == b"string" and nb and nb not in hot_names and blob.startswith(_NUM_HEAD):
            try:
                name = nb.decode("utf-8")
            except UnicodeDecodeError:
                eager.append((k, blob))  # refused by load_states, which names the record
                continue
            meta = pending_meta.pop(nb, None)
            if meta is None:
                cold[name] = raw_string + blob
                kept += 1
            else:
                cold[name] = b"".join((raw_both, len(blob).to_bytes(4, "little"), blob, meta))
                kept += 2
        elif (
            ns == b"meta"
            and nb
            and nb not in hot_names
            and blob.startswith(_META_HEAD)
            and blob.endswith(_NO_TTL_TAIL)
        ):
            pending_meta[nb] = blob
        else:
            hot_names.add(nb)
            if ns != b"meta":
                meta = pending_meta.pop(nb, None)
                if meta is not None:
                    eager.append((b"meta/" + nb, meta))
            eager.append((k, blob))
    for nb, meta in pending_meta.items():
        try:
            name = nb.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        if nb in hot_names or not name:
            eager.append((b"meta/" + nb, meta))
        else:
            cold[name] = raw_meta + meta
            kept += 1
    store.cold_states += kept
    eager.sort()
    for key, state in load_states(eager, fields):
        store.hot[key] = state
    for nb in hot_names:  # a string and another type: all decoded
        with contextlib.suppress(UnicodeDecodeError):
            store.thaw(nb.decode("utf-8"))
    return store

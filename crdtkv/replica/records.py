"""Storage records of a replica: how states, log entries and metadata are
laid out in the column families, encoded (MessagePack) and validated.

Every record is checked when encoded and again when decoded; a record that
does not decode raises ``CodecError`` naming the column family and key.

Column families (see ``crdtkv.storage``):

- ``states``: ``b"<namespace>/<key>"`` -> ``codec`` encoding of the key's state
- ``log``:    8-byte big-endian log position -> ``[origin, dot, [[ns, key, delta], ...]]``
- ``meta``:   a few named records, below
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from crdtkv.crdts import codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, decode_dot
from crdtkv.errors import CodecError
from crdtkv.replica.keyspace import STATE_TYPES, DeltaGroup, Key, LogEntry
from crdtkv.replica.peers import PeerRecord

__all__ = [
    "META_APPLIED",
    "META_CHECKPOINT_POS",
    "META_CLEAN",
    "META_FORMAT",
    "META_HLC",
    "META_INCARNATION",
    "META_PEERS",
    "META_REPLICA_ID",
    "META_SYNCED",
    "META_WAL",
    "decode_group",
    "decode_log_entry",
    "decode_peers",
    "decode_state_key",
    "encode_group",
    "encode_log_entry",
    "encode_peers",
    "encode_state_key",
    "log_key",
    "log_pos_of",
    "pack",
    "unpack",
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


def encode_applied(ctx: CausalContext) -> bytes:
    return pack(ctx.encode())


def decode_applied(blob: bytes) -> CausalContext:
    return CausalContext.decode(unpack(blob, "applied context"))


def encode_peers(records: dict[str, PeerRecord]) -> bytes:
    """``{peer: [acked, incarnation]}``; a pending resync is stored as acked -1."""
    return pack({p: [-1 if r.resync else r.acked, r.incarnation] for p, r in records.items()})


def decode_peers(blob: bytes) -> dict[str, PeerRecord]:
    data = unpack(blob, "meta peers")
    if not isinstance(data, dict):
        raise CodecError("meta peers: expected a map")
    out: dict[str, PeerRecord] = {}
    for peer, v in data.items():
        if (
            not isinstance(peer, str)
            or not isinstance(v, list)
            or len(v) != 2
            or type(v[0]) is not int
            or not isinstance(v[1], str)
        ):
            raise CodecError("meta peers: expected peer -> [acked, incarnation]")
        acked, incarnation = v
        out[peer] = PeerRecord(max(0, acked), incarnation, resync=acked < 0)
    return out

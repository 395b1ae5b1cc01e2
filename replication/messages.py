"""Wire messages between replicas: frozen, slotted dataclasses, MessagePack.

Every message is ``[kind, sender, incarnation, applied, body...]`` where
``applied`` is the sender's applied version vector (so every replica always
knows how far each peer is), or ``[applied, floor]`` while its stability
floor is lower, or ``[applied, floor or nil, peers, levels]`` from replicas
that send their configured peers and, when the receiver needs them, their
levels (``replication.reach``: stability beyond a replica's peers).
``decode`` validates types and sizes of every field and raises
``CodecError`` (a ``BadRequest``) for anything else, so a hostile or garbled
message is refused before it touches state.

Requests (from the replica that pushes) and the one reply type:

    Push        log entries (after, upto] of the sender's delta log
    SyncDigest  start of a catch-up: digests of every key bucket
    SyncKeys    (key, hash) of the sender's keys in some differing buckets
    SyncStates  full states of keys the receiver asked for
    SyncDone    end of the catch-up: the sender's applied context and log position
    Reply       acknowledgement, and for sync steps the buckets / keys wanted

On the wire a body may be compressed (``compress`` / ``decompress``, raw zlib
at level 1, announced by the shell in ``X-Crdtkv-Encoding: zlib``): a push
repeats the same actor ids and key prefixes in every entry, and compression
takes a push of counter increments from about 1.8 to well under 1 times the
size of its delta groups (docs/performance.md, "Replication").  Decompression
is bounded by ``MESSAGE_BYTES_MAX``, so a small hostile body cannot expand
into a large one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import msgpack

from crdtkv.crdts.causal import CausalContext, VersionVector, decode_actor, decode_seq, decode_vv
from crdtkv.errors import CodecError, PayloadTooLarge
from crdtkv.limits import (
    DIGEST_BUCKETS_MAX,
    KEY_BYTES_MAX,
    MESSAGE_BYTES_MAX,
    PUSH_ENTRIES_MAX,
    SYNC_KEYS_MAX,
)
from crdtkv.replica.keyspace import STATE_TYPES, Key
from replication.reach import LEVELS_MAX, MEMBERS_MAX, Level

__all__ = [
    "MESSAGE_BYTES_MAX",
    "Message",
    "Push",
    "Reply",
    "SyncDigest",
    "SyncDone",
    "SyncKeys",
    "SyncStates",
    "compress",
    "decode",
    "decompress",
    "encode",
]

# The bounds every receiver enforces (MESSAGE_BYTES_MAX, PUSH_ENTRIES_MAX,
# SYNC_KEYS_MAX, DIGEST_BUCKETS_MAX) live in crdtkv.limits, next to the
# settings that must stay within them.
COMPRESS_MIN_BYTES = 128  # smaller bodies (heartbeats, most replies) travel as they are
ZLIB = "zlib"  # the one wire encoding besides none


@dataclass(frozen=True, slots=True)
class Header:
    sender: str  # the sending replica's id (as configured in --peer)
    incarnation: str  # the sender's incarnation: changes when its data directory is new
    applied: VersionVector  # the sender's applied (gap-free) version vector
    # While the sender ships snapshots (state syncs in progress), the meet of
    # its applied vector and the snapshots' contexts: states it may still ship
    # are only that fresh, so tombstones newer than it must not be collected
    # anywhere yet.  None: no snapshot open (the floor is ``applied``).
    floor: VersionVector | None = None
    # The sender's configured peers (None: not sent, by a replica older than
    # topologies) and, when the receiver may need them, the sender's levels:
    # what it knows of the replicas beyond its peers (``replication.reach``).
    peers: tuple[str, ...] | None = None
    reach: tuple[Level, ...] = ()


@dataclass(frozen=True, slots=True)
class Push:
    head: Header
    after: int  # the receiver's last acknowledged position this push starts from
    upto: int  # last position this push covers (skipped entries included)
    entries: tuple[tuple[int, bytes], ...]  # (position, encoded delta group)
    # The receiver's incarnation as the sender knows it.  A receiver whose
    # data directory is new refuses a push meant for its old incarnation: the
    # push leaves out what that incarnation minted or sent (no back-propagation),
    # so applying it would apply writes without the writes they depend on.
    target: str = ""


@dataclass(frozen=True, slots=True)
class SyncDigest:
    head: Header
    sync_id: int  # identifies one catch-up run; replies carry it back
    digests: tuple[int, ...]  # per bucket, XOR of the 64-bit hashes of its keys' states


@dataclass(frozen=True, slots=True)
class SyncKeys:
    head: Header
    sync_id: int  # the catch-up run
    keys: tuple[tuple[str, str, int], ...]  # (namespace, key, state hash) of the sender


@dataclass(frozen=True, slots=True)
class SyncStates:
    head: Header
    sync_id: int  # the catch-up run
    states: tuple[tuple[str, str, bytes], ...]  # (namespace, key, encoded full state)


@dataclass(frozen=True, slots=True)
class SyncDone:
    head: Header
    sync_id: int  # the catch-up run
    applied_ctx: CausalContext  # the sender's applied context when the run started
    upto: int  # the sender's log position when the run started
    states: int = 0  # distinct keys whose states the receiver acknowledged in this run


@dataclass(frozen=True, slots=True)
class Reply:
    head: Header
    acked: int  # highest position of the requester's log now durably applied (-1: n/a)
    sync_id: int = 0  # the catch-up run this answers, 0 for a push
    buckets: tuple[int, ...] = ()  # SyncDigest reply: buckets whose digests differ
    want: tuple[tuple[str, str], ...] = ()  # SyncKeys reply: keys whose states to send
    # The receiver does not know this catch-up run (it restarted, or lost the
    # states shipped so far): the sender must abandon the run and start over.
    restart: bool = False


Message = Push | SyncDigest | SyncKeys | SyncStates | SyncDone | Reply

_KINDS: dict[type[Any], str] = {
    Push: "push",
    SyncDigest: "sdig",
    SyncKeys: "skeys",
    SyncStates: "sstates",
    SyncDone: "sdone",
    Reply: "reply",
}


def _head(h: Header) -> list[Any]:
    applied: Any
    if h.peers is not None:
        floor = None if h.floor is None else dict(h.floor)
        reach = [_level(lv) for lv in h.reach]
        applied = [dict(h.applied), floor, list(h.peers), reach]
    elif h.floor is not None:
        applied = [dict(h.applied), dict(h.floor)]
    else:
        applied = dict(h.applied)
    return [h.sender, h.incarnation, applied]


def _level(lv: Level) -> list[Any]:
    return [sorted(lv.covered), sorted(lv.members), dict(lv.floor), dict(lv.applied)]


def encode(msg: Message) -> bytes:
    body: list[Any]
    if isinstance(msg, Push):
        body = [msg.after, msg.upto, [list(e) for e in msg.entries], msg.target]
    elif isinstance(msg, SyncDigest):
        body = [msg.sync_id, list(msg.digests)]
    elif isinstance(msg, SyncKeys):
        body = [msg.sync_id, [list(k) for k in msg.keys]]
    elif isinstance(msg, SyncStates):
        body = [msg.sync_id, [list(s) for s in msg.states]]
    elif isinstance(msg, SyncDone):
        body = [msg.sync_id, msg.applied_ctx.encode(), msg.upto, msg.states]
    else:
        want = [list(w) for w in msg.want]
        body = [msg.acked, msg.sync_id, list(msg.buckets), want, msg.restart]
    return msgpack.packb([_KINDS[type(msg)], *_head(msg.head), *body], use_bin_type=True)


def compress(body: bytes) -> tuple[bytes, str | None]:
    """The body as it goes on the wire, and its encoding (None: as it is).

    Compressed only when that makes it smaller: a body under
    ``COMPRESS_MIN_BYTES`` or one that does not shrink travels as it is."""
    if len(body) < COMPRESS_MIN_BYTES:
        return body, None
    packed = zlib.compress(body, 1)
    if len(packed) >= len(body):
        return body, None
    return packed, ZLIB


def decompress(wire: bytes, encoding: str | None) -> bytes:
    """The body a wire payload carries.  ``CodecError`` for an unknown encoding
    or corrupt data, ``PayloadTooLarge`` for a body that would expand past
    ``MESSAGE_BYTES_MAX`` (it stops decompressing there)."""
    if not encoding:
        return wire
    if encoding != ZLIB:
        raise CodecError(f"unknown replication body encoding {encoding[:32]!r}")
    d = zlib.decompressobj()
    try:
        body = d.decompress(wire, MESSAGE_BYTES_MAX + 1)
    except zlib.error as e:
        raise CodecError(f"replication body is not valid zlib data ({e})") from None
    if len(body) > MESSAGE_BYTES_MAX or d.unconsumed_tail:
        raise PayloadTooLarge(f"replication body expands past {MESSAGE_BYTES_MAX} bytes")
    if not d.eof or d.unused_data:
        raise CodecError("replication body is truncated zlib data or has trailing bytes")
    return body


# -- decoding with validation ----------------------------------------------------------
def _list(v: object, what: str, max_len: int) -> list[Any]:
    if not isinstance(v, list):
        raise CodecError(f"{what}: expected a list")
    if len(v) > max_len:
        raise CodecError(f"{what}: {len(v)} entries, at most {max_len}")
    return v


def _tuple(v: object, what: str, n: int) -> list[Any]:
    if not isinstance(v, list) or len(v) != n:
        raise CodecError(f"{what}: expected a list of {n}")
    return v


def _int(v: object, what: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CodecError(f"{what}: expected an integer in [{lo}, {hi}]")
    return v


def _key(ns: object, key: object) -> Key:
    if not isinstance(ns, str) or ns not in STATE_TYPES:
        raise CodecError(f"unknown key type {ns!r}")
    if not isinstance(key, str) or not key or len(key.encode("utf-8", "replace")) > KEY_BYTES_MAX:
        raise CodecError("bad key")
    return (ns, key)


def _bytes(v: object, what: str) -> bytes:
    if not isinstance(v, bytes):
        raise CodecError(f"{what}: expected bytes")
    return v


def decode(blob: bytes) -> Message:
    if len(blob) > MESSAGE_BYTES_MAX:
        raise CodecError(f"message of {len(blob)} bytes is over {MESSAGE_BYTES_MAX}")
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated exception types on garbage
        raise CodecError(f"message is not valid MessagePack ({e.__class__.__name__})") from e
    if not isinstance(data, list) or len(data) < 4:
        raise CodecError("message: expected [kind, sender, incarnation, applied, ...]")
    kind = data[0]
    head = Header(decode_actor(data[1]), decode_actor(data[2]), *_decode_vectors(data[3]))
    body = data[4:]
    try:
        return _decode_body(kind, head, body)
    except (IndexError, ValueError, TypeError) as e:
        raise CodecError(f"message {kind!r}: malformed body") from e


def _decode_vectors(
    v: object,
) -> tuple[VersionVector, VersionVector | None, tuple[str, ...] | None, tuple[Level, ...]]:
    """applied; [applied, floor]; or [applied, floor or nil, peers, levels]."""
    if not isinstance(v, list):
        return decode_vv(v), None, None, ()
    if len(v) == 2:
        return decode_vv(v[0]), decode_vv(v[1]), None, ()
    f = _tuple(v, "applied, floor, peers and levels", 4)
    floor = None if f[1] is None else decode_vv(f[1])
    peers = tuple(_ids(f[2], "peers"))
    reach = tuple(_decode_level(lv) for lv in _list(f[3], "levels", LEVELS_MAX))
    return decode_vv(f[0]), floor, peers, reach


def _ids(v: object, what: str) -> list[str]:
    return [decode_actor(x) for x in _list(v, what, MEMBERS_MAX)]


def _decode_level(v: object) -> Level:
    f = _tuple(v, "level", 4)
    covered, members = frozenset(_ids(f[0], "covered")), frozenset(_ids(f[1], "members"))
    if not covered <= members:
        raise CodecError("level: covers a replica that is not a member")
    return Level(covered, members, decode_vv(f[2]), decode_vv(f[3]))


def _decode_body(kind: object, head: Header, b: list[Any]) -> Message:
    if kind == "push" and len(b) == 4:
        raw = [_tuple(e, "entry", 2) for e in _list(b[2], "entries", PUSH_ENTRIES_MAX)]
        entries = tuple((_int(e[0], "entry position", 1), _bytes(e[1], "entry")) for e in raw)
        target = b[3]
        if not isinstance(target, str) or len(target) > 128:
            raise CodecError("push: target must be an incarnation string")
        return Push(head, _int(b[0], "after"), _int(b[1], "upto"), entries, target)
    if kind == "sdig" and len(b) == 2:
        digests = tuple(
            _int(d, "digest", 0, 2**64 - 1) for d in _list(b[1], "digests", DIGEST_BUCKETS_MAX)
        )
        return SyncDigest(head, _int(b[0], "sync_id", 1), digests)
    if kind == "skeys" and len(b) == 2:
        raw = [_tuple(k, "key", 3) for k in _list(b[1], "keys", SYNC_KEYS_MAX)]
        keys = tuple((*_key(k[0], k[1]), _int(k[2], "hash", 0, 2**64 - 1)) for k in raw)
        return SyncKeys(head, _int(b[0], "sync_id", 1), keys)
    if kind == "sstates" and len(b) == 2:
        raw = [_tuple(x, "state", 3) for x in _list(b[1], "states", SYNC_KEYS_MAX)]
        states = tuple((*_key(x[0], x[1]), _bytes(x[2], "state")) for x in raw)
        return SyncStates(head, _int(b[0], "sync_id", 1), states)
    if kind == "sdone" and len(b) == 4:
        ctx = CausalContext.decode(b[1])
        shipped = _int(b[3], "states")
        return SyncDone(head, _int(b[0], "sync_id", 1), ctx, decode_seq(b[2]), shipped)
    if kind == "reply" and len(b) == 5:
        buckets = tuple(
            _int(x, "bucket", 0, DIGEST_BUCKETS_MAX - 1)
            for x in _list(b[2], "buckets", DIGEST_BUCKETS_MAX)
        )
        want = tuple(_key(*_tuple(w, "wanted key", 2)) for w in _list(b[3], "want", SYNC_KEYS_MAX))
        if not isinstance(b[4], bool):
            raise CodecError("reply: restart must be a boolean")
        return Reply(head, _int(b[0], "acked", -1), _int(b[1], "sync_id"), buckets, want, b[4])
    raise CodecError(f"unknown message kind {kind!r} or wrong field count")

"""Where a replica holds its states: decoded objects for the keys in use, compact
bytes for the rest.

A small key held as Python objects costs about 700 bytes (a ``NumericRegister``,
its ``CausalContext`` with a dict and a set, a cell tuple, a ``Write``, a
``Timestamp``, a ``KeyMeta`` with its own context, two ``(type, name)`` tuples
and their dict slots).  ``StateStore`` keeps such a key *cold*: one ``bytes``
record per name, holding every state of the name (its type state and its
``meta``), with replica ids replaced by indexes into the store's actor table.
A cold record costs its bytes (about 50 for a short string) plus a slot in one
dict and the name.  The first access to any state of the name (a read or a
write, ``get``) decodes the record into objects (*thaws* it) and the name stays
hot until ``cool`` encodes it again; the replica cools the keys a checkpoint
has just written (``Replica.take_dirty``) and the ones reads thawed.

Which names are cooled (``coolable``): those whose states are all strings,
key metadata without a TTL, or sets of at most ``SET_COOL_MAX`` members, with
at most one live type.  Everything else (hashes, sorted sets, lists, vector
sets, HLLs, TTL keys, type conflicts) stays hot, so the replica's expiry heap,
conflict set and vector indexes only ever look at hot objects.

A cold record can also be *raw*: the key's storage records as read from
RocksDB (``codec`` encodings, full replica ids), kept undecoded by a start that
loads from storage (``put_raw``), so a start does not decode every key.

The store is a mapping from ``(type, name)`` to states.  ``get`` and
``__getitem__`` thaw; iteration (``keys``, ``items``, ``values``) decodes cold
records without thawing them, so the objects it yields for cold keys are
copies: read them, never change them (``items``' callers only read or copy).

``snapshot_chunks`` / ``load_snapshot`` write and read the whole store in a few
large MessagePack records (every key cooled first): a clean stop saves one and
the next start loads it instead of reading every storage record.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgpack
import xxhash

from crdtkv.crdts import KeyMeta, NumericRegister, ORSet, codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.numeric import Entry, Incr, Write
from crdtkv.errors import CodecError

__all__ = [
    "RAW_BOTH",
    "RAW_META",
    "RAW_STRING",
    "SET_COOL_MAX",
    "SNAPSHOT_MAGIC",
    "TYPE_NAMES",
    "StateStore",
]

Key = tuple[str, str]

# The order of the bits of a record's type mask (and of its payloads).
TYPE_NAMES = ("string", "hash", "zset", "set", "hll", "list", "vectorset", "meta")
_CODE = {t: i for i, t in enumerate(TYPE_NAMES)}
_STRING, _SET, _META = _CODE["string"], _CODE["set"], _CODE["meta"]
_COOL_TYPES: dict[str, type[CRDT]] = {"string": NumericRegister, "set": ORSet, "meta": KeyMeta}
SET_COOL_MAX = 16  # a larger set stays decoded (its checkpoints write fields, not all)

_COMPACT = 0  # record forms (the byte after the mask)
_RAW = 1

# The heads of raw records (``put_raw``): a string's, a metadata's, both.
RAW_STRING = bytes((1 << _STRING, _RAW))
RAW_META = bytes((1 << _META, _RAW))
RAW_BOTH = bytes((1 << _STRING | 1 << _META, _RAW))

SNAPSHOT_MAGIC = b"crdtkv-keyspace-snapshot/1\n"
SNAPSHOT_CHUNK = 200_000  # names per chunk record


def _unpack(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True)


def _pack(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


class StateStore:
    """``(type, name) -> CRDT``: hot objects and cold records (module docstring)."""

    __slots__ = ("_actor_ix", "actors", "cold", "cold_states", "hot", "thawed")

    def __init__(self, states: Iterable[tuple[Key, CRDT]] = ()) -> None:
        self.hot: dict[Key, CRDT] = dict(states)
        self.cold: dict[str, bytes] = {}  # name -> record: mask, form, payload
        self.cold_states = 0  # how many states the cold records hold
        self.actors: list[str] = []  # interned replica ids, by index
        self._actor_ix: dict[str, int] = {}
        self.thawed: set[str] = set()  # names thawed since the last cool_thawed()

    # -- the mapping ------------------------------------------------------------------------
    def get(self, key: Key, default: CRDT | None = None) -> CRDT | None:
        state = self.hot.get(key)
        if state is not None:
            return state
        if self.cold:
            blob = self.cold.get(key[1])
            if blob is not None and blob[0] >> _CODE.get(key[0], 8) & 1:
                self._thaw(key[1], blob)
                return self.hot[key]
        return default

    def __getitem__(self, key: Key) -> CRDT:
        state = self.get(key)
        if state is None:
            raise KeyError(key)
        return state

    def __contains__(self, key: object) -> bool:
        if key in self.hot:
            return True
        if not self.cold or not isinstance(key, tuple):
            return False
        blob = self.cold.get(key[1])
        return blob is not None and bool(blob[0] >> _CODE.get(key[0], 8) & 1)

    def __setitem__(self, key: Key, state: CRDT) -> None:
        if self.cold and key[1] in self.cold:
            self._thaw(key[1], self.cold[key[1]])
        self.hot[key] = state

    def __delitem__(self, key: Key) -> None:
        if self.cold and key[1] in self.cold:
            self._thaw(key[1], self.cold[key[1]])
        del self.hot[key]

    def pop(self, key: Key, default: CRDT | None = None) -> CRDT | None:
        if self.cold and key[1] in self.cold:
            self._thaw(key[1], self.cold[key[1]])
        return self.hot.pop(key, default)

    def __len__(self) -> int:
        return len(self.hot) + self.cold_states

    def __bool__(self) -> bool:
        return bool(self.hot) or bool(self.cold)

    def __iter__(self) -> Iterator[Key]:
        yield from list(self.hot)
        for name, blob in list(self.cold.items()):
            mask = blob[0]
            for code, t in enumerate(TYPE_NAMES):
                if mask >> code & 1:
                    yield (t, name)

    def keys(self) -> Iterator[Key]:
        return iter(self)

    def items(self) -> Iterator[tuple[Key, CRDT]]:
        """Every state; cold ones decoded but not thawed: copies, to read only."""
        yield from list(self.hot.items())
        for name, blob in list(self.cold.items()):
            for t, state in self._decode(name, blob):
                yield (t, name), state

    def values(self) -> Iterator[CRDT]:
        for _, state in self.items():
            yield state

    def peek(self, key: Key) -> CRDT | None:
        """``key``'s state without thawing it (a copy when cold: read only)."""
        state = self.hot.get(key)
        if state is not None or not self.cold:
            return state
        blob = self.cold.get(key[1])
        if blob is None or not blob[0] >> _CODE.get(key[0], 8) & 1:
            return None
        for t, s in self._decode(key[1], blob):
            if t == key[0]:
                return s
        return None

    def names(self) -> Iterator[str]:
        """Every name with a state (hot names may repeat)."""
        for _, name in self.hot:
            yield name
        yield from self.cold

    def hot_items(self) -> list[tuple[Key, CRDT]]:
        """The decoded states (every state that is not small: vector sets, lists, ...)."""
        return list(self.hot.items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StateStore):
            return dict(self.items()) == dict(other.items())
        if isinstance(other, dict):
            return dict(self.items()) == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StateStore({len(self.hot)} hot, {len(self.cold)} cold names)"

    # -- thawing and cooling -------------------------------------------------------------------
    def thaw(self, name: str) -> None:
        """Decode ``name``'s cold record, if it has one."""
        blob = self.cold.get(name)
        if blob is not None:
            self._thaw(name, blob)

    def _thaw(self, name: str, blob: bytes) -> None:
        del self.cold[name]
        decoded = self._decode(name, blob)
        self.cold_states -= len(decoded)
        hot = self.hot
        for t, state in decoded:
            hot[(t, name)] = state
        self.thawed.add(name)

    def cool(self, name: str) -> bool:
        """Encode every state of ``name`` into a cold record, if they are all small
        (module docstring); False (nothing changed) otherwise."""
        if name in self.cold:
            return True
        hot = self.hot
        found: list[tuple[int, CRDT]] = []
        live = 0
        for t in TYPE_NAMES:
            state = hot.get((t, name))
            if state is None:
                continue
            kind = _COOL_TYPES.get(t)
            if kind is None or type(state) is not kind:
                return False
            if isinstance(state, KeyMeta):
                if state.ttl:
                    return False
            elif isinstance(state, ORSet):
                if len(state.entries) > SET_COOL_MAX or state.narrow:
                    return False
                if state.entries:
                    live += 1
            elif isinstance(state, NumericRegister) and state.cell:
                live += 1
            found.append((_CODE[t], state))
        if not found or live > 1:
            return False
        mask = 0
        payload: list[object] = []
        for code, state in found:
            mask |= 1 << code
            payload.append(self._encode(state))
        self.cold[name] = bytes((mask, _COMPACT)) + _pack(payload)
        for code, _ in found:
            del hot[(TYPE_NAMES[code], name)]
        self.cold_states += len(found)
        return True

    def cool_thawed(self) -> int:
        """Cool again the names thawed since the last call that are still small."""
        names, self.thawed = self.thawed, set()
        return sum(1 for name in names if self.cool(name))

    def cool_all(self) -> int:
        """Cool every small name held decoded (before a snapshot)."""
        names = {name for _, name in self.hot}
        self.thawed = set()
        return sum(1 for name in names if self.cool(name))

    def put_raw(self, name: str, string: bytes | None, meta: bytes | None) -> None:
        """Hold ``name``'s storage records (``codec`` encodings of its string and of
        its metadata, either may be absent) undecoded until first use; checked when
        thawed.  The record: the mask, the form, then the string's length (4 bytes)
        and the two blobs."""
        if string is None:
            assert meta is not None
            self.cold[name] = RAW_META + meta
            self.cold_states += 1
        elif meta is None:
            self.cold[name] = RAW_STRING + string
            self.cold_states += 1
        else:
            self.cold[name] = b"".join((RAW_BOTH, len(string).to_bytes(4, "little"), string, meta))
            self.cold_states += 2

    # -- compact encoding ------------------------------------------------------------------------
    def _ix(self, actor: str) -> int:
        ix = self._actor_ix.get(actor)
        if ix is None:
            ix = self._actor_ix[actor] = len(self.actors)
            self.actors.append(actor)
        return ix

    def _ctx(self, ctx: CausalContext) -> list[int]:
        out: list[int] = []
        for a, s in ctx.vv.items():
            out += (self._ix(a), s)
        if ctx.cloud:
            out.append(-1)
            for a, s in sorted(ctx.cloud):
                out += (self._ix(a), s)
        return out

    def _unctx(self, flat: list[int]) -> CausalContext:
        actors = self.actors
        ctx = CausalContext.__new__(CausalContext)
        vv: dict[str, int] = {}
        cloud: set[Dot] = set()
        target: Any = vv
        i = 0
        n = len(flat)
        while i < n:
            a = flat[i]
            if a == -1:
                target = cloud
                i += 1
                continue
            if target is vv:
                vv[actors[a]] = flat[i + 1]
            else:
                cloud.add((actors[a], flat[i + 1]))
            i += 2
        ctx.vv = vv
        ctx.cloud = cloud
        return ctx

    def _encode(self, state: CRDT) -> list[object]:
        ix = self._ix
        if isinstance(state, NumericRegister):
            entries: list[object] = []
            for e in state.cell:
                if isinstance(e, Write):
                    ts = e.ts
                    entries.append(
                        [ix(e.dot[0]), e.dot[1], ts.wall_ms, ts.logical, ix(ts.actor), e.value]
                    )
                else:
                    entries.append([ix(e.dot[0]), e.dot[1], e.i, e.f])
            return [self._ctx(state.ctx), entries]
        if isinstance(state, KeyMeta):
            stamps: list[object] = []
            for t, ts in state.stamps.items():
                stamps += (_CODE.get(t, t), ts.wall_ms, ts.logical, ix(ts.actor))
            return [stamps, self._ctx(state.ctx)]  # no TTL: cool() keeps those hot
        assert isinstance(state, ORSet)
        members: list[object] = []
        for m, dots in state.entries.items():
            flat: list[int] = []
            for a, s in dots:
                flat += (ix(a), s)
            members += (m, flat)
        return [self._ctx(state.ctx), members]

    def _decode(self, name: str, blob: bytes) -> list[tuple[str, CRDT]]:
        mask, form = blob[0], blob[1]
        types = [t for code, t in enumerate(TYPE_NAMES) if mask >> code & 1]
        if form == _RAW:
            if len(types) == 2:
                n = int.from_bytes(blob[2:6], "little")
                raws = [blob[6 : 6 + n], blob[6 + n :]]
            else:
                raws = [blob[2:]]
            out: list[tuple[str, CRDT]] = []
            for t, raw in zip(types, raws, strict=True):
                try:
                    out.append((t, codec.unpack(raw, _COOL_TYPES[t])))
                except CodecError as e:
                    raise CodecError(f"state {t}/{name[:64]}: {e.message}") from e
            return out
        payload = _unpack(blob[2:])
        return [(t, self._decode_one(t, p)) for t, p in zip(types, payload, strict=True)]

    def _decode_one(self, t: str, p: list[Any]) -> CRDT:
        actors = self.actors
        if t == "string":
            cell: list[Entry] = []
            for e in p[1]:
                if len(e) == 6:
                    cell.append(
                        Write((actors[e[0]], e[1]), Timestamp(e[2], e[3], actors[e[4]]), e[5])
                    )
                else:
                    cell.append(Incr((actors[e[0]], e[1]), e[2], e[3]))
            return NumericRegister(tuple(cell), self._unctx(p[0]))
        if t == "meta":
            flat = p[0]
            stamps: dict[str, Timestamp] = {}
            for i in range(0, len(flat), 4):
                c = flat[i]
                stamps[TYPE_NAMES[c] if isinstance(c, int) else c] = Timestamp(
                    flat[i + 1], flat[i + 2], actors[flat[i + 3]]
                )
            return KeyMeta(stamps, (), self._unctx(p[1]))
        members = p[1]
        entries: dict[str, tuple[Dot, ...]] = {}
        for i in range(0, len(members), 2):
            flat = members[i + 1]
            entries[members[i]] = tuple(
                (actors[flat[j]], flat[j + 1]) for j in range(0, len(flat), 2)
            )
        s = ORSet(entries, self._unctx(p[0]))
        s.touched = set()  # what storage holds: a cold name was checkpointed
        return s

    # -- snapshots -----------------------------------------------------------------------------
    def snapshot_chunks(self, header: dict[str, Any]) -> Iterator[bytes]:
        """The store as a snapshot (after ``cool_all``): the magic, a header (``header``
        plus the actor table and the chunk count), then chunks of ``[names, records]``,
        each with its xxh3 checksum.  Hot states are not included: the caller lists
        them in ``header`` and the loader reads them from storage."""
        names = sorted(self.cold)
        cold = self.cold
        chunks = [names[i : i + SNAPSHOT_CHUNK] for i in range(0, len(names), SNAPSHOT_CHUNK)]
        yield _pack(SNAPSHOT_MAGIC)
        head = dict(header, actors=self.actors, chunks=len(chunks), cold_states=self.cold_states)
        yield _pack(head)
        for part in chunks:
            body = _pack([part, [cold[n] for n in part]])
            yield _pack([xxhash.xxh3_64_intdigest(body), body])

    @staticmethod
    def read_snapshot_header(objects: Iterator[Any]) -> dict[str, Any]:
        """The header of a snapshot from its decoded MessagePack objects."""
        if next(objects, None) != SNAPSHOT_MAGIC:
            raise CodecError("keyspace snapshot: not a snapshot of this format")
        head = next(objects, None)
        if not isinstance(head, dict) or not isinstance(head.get("actors"), list):
            raise CodecError("keyspace snapshot: malformed header")
        return head

    def load_snapshot(self, head: dict[str, Any], objects: Iterator[Any]) -> None:
        """Fill an empty store from a snapshot's chunks (``CodecError`` if any is damaged)."""
        actors = head["actors"]
        if not all(isinstance(a, str) for a in actors):
            raise CodecError("keyspace snapshot: malformed actor table")
        self.actors = list(actors)
        self._actor_ix = {a: i for i, a in enumerate(self.actors)}
        cold = self.cold
        for n in range(head.get("chunks", -1)):
            item = next(objects, None)
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[1], bytes)
                or xxhash.xxh3_64_intdigest(item[1]) != item[0]
            ):
                raise CodecError(f"keyspace snapshot: chunk {n} is damaged")
            names, blobs = _unpack(item[1])
            if len(names) != len(blobs):
                raise CodecError(f"keyspace snapshot: chunk {n} is damaged")
            cold.update(zip(names, blobs, strict=True))
        if next(objects, None) is not None:
            raise CodecError("keyspace snapshot: data after the last chunk")
        self.cold_states = int(head.get("cold_states", 0))

"""Moving slots between shards: the pure steps of ``crdtkv reshard``, on a Replica.

The protocol (docs/architecture.md, "Moving slots") copies the *states* of the
keys of the moving slots from the source shard's replica to the target's, in
each region, while both keep taking writes.  Every step here is a join or
forgets only what lives on elsewhere, so no step needs a lock:

- ``slot_names``: the names of a set of slots that this replica holds;
- ``export_chunks``: their full states (every type state and the key's meta),
  encoded in chunks of about ``CHUNK_BYTES`` (a chunk holds whole names: a name
  larger than the bound travels alone);
- ``decode_chunk`` and ``import_states``: at the target, a chunk joined into the
  keyspace as one local commit (a new dot of the target; its deltas are the
  imported states, so the commit is logged, made durable and replicated to the
  target's other regions like any write).  A join is idempotent, so copying a
  key twice, or a stale copy after a fresh one, changes nothing;
- ``forward_names``: of the names a replicated delta group (or a state sync)
  touched, those whose slot this process does not serve: the shell copies their
  states on to the owner (an import), which is how writes that reach the source
  after its last copy still reach the target;
- ``split_group``: the same split of one delta group into what this process
  keeps and what belongs to another shard (for a driver that forwards deltas
  rather than states, as the simulator may);
- ``drop_names``: at the source, once the target owns the slots everywhere, the
  local-only removal of the moved keys (no dot, no replicated delete: the other
  regions' source replicas drop their own copies, and the target's copies stay).

Pure: no I/O, time comes in as ``now_ms``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from crdtkv.cluster.slots import key_slot
from crdtkv.crdts import codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import Dot
from crdtkv.errors import BadRequest, CodecError
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import STATE_TYPES, DeltaGroup, Key, Replica, timestamps_of

__all__ = [
    "CHUNK_BYTES",
    "Chunk",
    "decode_chunk",
    "drop_names",
    "drop_slots",
    "encode_chunk",
    "export_chunks",
    "export_states",
    "forward_names",
    "import_states",
    "slot_names",
    "split_group",
]

CHUNK_BYTES = 1 << 20  # about this many encoded bytes per import request
NAME_BYTES_MAX = 1024  # a key name's bound (the API's)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One import request's worth of states: ``body`` is what travels."""

    names: tuple[str, ...]  # the names whose states it carries
    body: bytes  # ``encode_chunk`` of their states
    states: int  # how many (type, name) states


def slot_names(replica: Replica, slots: Collection[int]) -> list[str]:
    """The names this replica holds (any state, live or not) whose slot is in ``slots``,
    in name order."""
    if not slots:
        return []
    return [n for n in replica.names if key_slot(n) in slots]


def export_states(replica: Replica, names: Iterable[str]) -> dict[Key, CRDT]:
    """Copies of every state (each type's and the meta) of ``names``; a name held
    nowhere here has none."""
    states = replica.states
    out: dict[Key, CRDT] = {}
    for name in names:
        for t in STATE_TYPES:
            s = states.get((t, name))
            if s is not None:
                out[(t, name)] = s.copy()
    return out


def _item(key: Key, state: CRDT) -> list[object]:
    return [key[0], key[1], codec.encode(state)]


def encode_chunk(states: Mapping[Key, CRDT]) -> bytes:
    """The wire form of an import: MessagePack of ``[[type, name, state], ...]``."""
    return rec.pack([_item(k, s) for k, s in states.items()])


def decode_chunk(body: bytes) -> dict[Key, CRDT]:
    """An import's states; ``CodecError`` (nothing decoded) for anything malformed."""
    raw = rec.unpack(body, "import chunk")
    if not isinstance(raw, list):
        raise CodecError("import chunk: expected a list of [type, name, state]")
    out: dict[Key, CRDT] = {}
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 3:
            raise CodecError("import chunk: each state is [type, name, state]")
        ns, name, enc = item
        expected = STATE_TYPES.get(ns) if isinstance(ns, str) else None
        if expected is None:
            raise CodecError(f"import chunk: unknown type {ns!r}")
        if (
            not isinstance(name, str)
            or not name
            or len(name.encode("utf-8", "replace")) > NAME_BYTES_MAX
        ):
            raise CodecError("import chunk: bad key name")
        out[(ns, name)] = codec.decode(enc, expected)
    return out


def export_chunks(
    replica: Replica, names: Iterable[str], chunk_bytes: int = CHUNK_BYTES
) -> Iterator[Chunk]:
    """The states of ``names`` in chunks of about ``chunk_bytes`` encoded bytes.

    Lazy: each chunk is encoded from the states as they are when it is taken, so
    a driver may await between chunks while writes go on (a name gone meanwhile
    is skipped; a name changed after its chunk left is the final copy's)."""
    items: list[list[object]] = []
    chunk_names: list[str] = []
    size = 0
    states = replica.states
    for name in names:
        mine = []
        for t in STATE_TYPES:
            s = states.get((t, name))
            if s is not None:
                mine.append(_item((t, name), s))
        if not mine:
            continue
        n = len(rec.pack(mine))
        if items and size + n > chunk_bytes:
            yield Chunk(tuple(chunk_names), rec.pack(items), len(items))
            items, chunk_names, size = [], [], 0
        items.extend(mine)
        chunk_names.append(name)
        size += n
    if items:
        yield Chunk(tuple(chunk_names), rec.pack(items), len(items))


def import_states(replica: Replica, states: Mapping[Key, CRDT], now_ms: int) -> Dot | None:
    """Join ``states`` (a chunk from a move's source) into the keyspace as one local
    commit: its dot, or None when they changed nothing (nothing is logged then; of the
    states that did change something, each is logged whole).

    Checked before anything changes: each state's type, and its timestamps
    against the clock (``ClockOffsetError``, as for a replicated group), so a
    refused chunk leaves the replica as it was.  The logged deltas are the
    imported states themselves: a replica of the target in another region that
    joins them reaches the same state as this one."""
    for (ns, _), state in states.items():
        expected = STATE_TYPES.get(ns)
        if expected is None or type(state) is not expected:
            raise BadRequest(f"imported state for type {ns!r} has the wrong type")
        for ts in timestamps_of(state):
            replica.hlc.check(ts, now_ms)
    deltas: dict[Key, CRDT] = {}
    held = replica.states
    for key, state in states.items():
        before = held.get(key)
        before = None if before is None else before.copy()
        mine = replica.state_for_write(key)
        mine.merge(state)
        for ts in timestamps_of(state):
            replica.hlc.observe(ts, now_ms)
        if before is None or mine != before:  # a copy already joined is not logged again
            deltas[key] = state.copy()
    return replica.commit_local(deltas) if deltas else None


def forward_names(keys: Iterable[Key], serves: Callable[[int], bool]) -> set[str]:
    """The names among ``keys`` whose slot ``serves`` says this process does not
    serve: what it must forward to their owner."""
    out: set[str] = set()
    for _, name in keys:
        if name not in out and not serves(key_slot(name)):
            out.add(name)
    return out


def split_group(
    group: DeltaGroup, serves: Callable[[int], bool]
) -> tuple[dict[Key, CRDT], dict[Key, CRDT]]:
    """A replicated delta group's deltas split in two: those of keys whose slot this
    process serves (kept) and the others (to forward to their owner).  The union
    of the two is the group: nothing is lost by the split."""
    kept: dict[Key, CRDT] = {}
    forward: dict[Key, CRDT] = {}
    for key, delta in group.deltas.items():
        (kept if serves(key_slot(key[1])) else forward)[key] = delta
    return kept, forward


def drop_names(replica: Replica, names: Iterable[str]) -> int:
    """The local-only drop of moved keys (``Replica.drop_names``): no dot, nothing
    replicated; gone from memory now and from storage with the next batch."""
    return replica.drop_names(names)


def drop_slots(replica: Replica, slots: Collection[int]) -> int:
    """``drop_names`` of every name of ``slots``."""
    return replica.drop_names(slot_names(replica, slots))

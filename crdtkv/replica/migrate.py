"""Storage format 1 -> 2: four typed namespaces become one keyspace of typed keys.

Format 1 (crdtkv before issue 14) kept each key in one of four namespaces,
``b"<ns>/<key>"`` in the ``states`` column family, and the same namespaces in
the log's delta groups:

- ``registers``: ``["lww", 1, [ts, value, expires_ms, tombstone]]``, a
  last-writer-wins register whose winning write carries its own TTL (an
  absolute ``expires_ms``) or is a delete (``tombstone``);
- ``counters``: ``["ctr", 1, {actor: [P, N, FP, FN]}]``, a PN-counter with
  observed reset: the value is ``sum((P - FP) - (N - FN))``, a reset raises
  the floors FP, FN to what it saw, and every component joins by maximum;
- ``sets``: ``["orset", 1, ...]`` and ``hlls``: ``["hll", 1, ...]``, whose
  classes and encodings format 2 keeps unchanged.

Format 2 keys a state by type (``crdtkv.replica.keyspace.STATE_TYPES``) and
keeps, beside the type states of each name, a ``KeyMeta``: the timestamp of
each type's latest write and the key's TTL.

What ``migrate`` does (pure: it gets the records, returns what to write):

1. Loads the checkpointed states and replays the log entries after the
   checkpoint onto them with format 1's joins, exactly as a format-1 replica
   loaded its directory.  So a directory that was not closed cleanly
   migrates as well as one that was: its log is its write-ahead record, and
   replaying it is what format 1 did at every start.  The log entries
   cannot be kept as they are: format 2 cannot decode them, and converting
   each delta on its own would not give the conversion of their join (a
   register delete, or a counter reset, would lose the write it removed).
2. Converts each name's states (``convert``):

   - ``registers/k`` -> ``string/k``: the winning write becomes the base
     (``numeric.Write``) with the write's timestamp; its TTL becomes the
     key's (one ``KeyMeta`` TTL entry); ``KeyMeta`` stamps ``string`` with
     the write's timestamp.  A tombstone, a never-written register and one
     whose TTL has passed (at ``now_ms``) are absent in format 1 and are
     not carried over.
   - ``counters/k`` -> ``string/k``: per actor, one increment entry
     (``numeric.Incr``) holding ``(P - FP) - (N - FN)``: the increments not
     yet reset, which format 2 keeps as increments unobserved by any base.
     The value is unchanged, and a later INCR adds to it (5, INCR -> 6).
     An actor whose increments were all reset leaves no entry; a counter
     whose every actor was reset is absent, as in format 1.
   - ``sets/k`` -> ``set/k`` and ``hlls/k`` -> ``hll/k``: the state as is.
   - ``meta/k``: a ``KeyMeta`` stamping every type converted for ``k``
     (``ZERO``, "before any format-2 write", for a counter, set or HLL:
     they hold no write timestamp).

   A name that existed in several namespaces keeps every state, and
   ``KeyMeta`` decides which type is visible, as for types created
   concurrently: a register (which has a real timestamp) wins; otherwise the
   order of the type names (``string`` > ``set`` > ``hll``).  A register and
   a counter of the same name become one string: the register's value as the
   base plus the counter's increments, as format 2 joins a SET and an INCR
   that were concurrent: 10 and 5 read 15; a base that is not a number hides
   the increments (``"abc"`` and 5 read ``"abc"``).

Dots of converted entries are named after what they convert, so every
replica converts the same format-1 state to the same format-2 state, and two
different format-1 states never give one dot two contents (which would split
replicas for ever once they sync):

- a register's write: ``(<writer actor>@<wall_ms>.<logical>, 1)``, one actor
  per write (its timestamp is unique);
- a counter actor's entry: ``(<actor>#<FP>.<FN>, P + N)``: an actor per reset
  floor, and ``P + N`` grows with every change the actor made, so of two
  views of the same floor the newer one replaces the older when replicas
  sync.  The context also covers ``(<actor>#0.0, P + N)``: a view that had
  not seen the reset and is no newer is dropped.

``@`` and ``#`` never occur in a replica id (``[A-Za-z0-9_.-]``), so no
replica ever mints these dots itself.

What is not exact, precisely:

- A name held in several namespaces reads as one type; the others are kept
  but hidden, and go with the key's next DEL or expiry.  A register's TTL
  becomes the key's TTL, so the hidden states expire with it.
- Replicas that held different format-1 views of a key when they were
  upgraded (writes not yet replicated everywhere) are joined by format 2's
  rules after the upgrade, and these differ from format 1's:

  - a register deleted on one replica and not yet on another comes back
    (format 2 has no tombstone to carry the delete);
  - of two register writes the later one's value wins, but the earlier
    one's TTL survives if the later one had none or a shorter one (format
    2's rule for concurrent TTLs);
  - when one replica had seen a reset of actor X's increments and another
    had not but held later increments of X, the join counts X's increments
    as the second replica held them (the reset is lost for X) plus X's
    increments after the reset that the first replica held (so these count
    twice): 5 increments, a reset seen by A, 3 more seen by B only: 8
    (8 + 0), not 3; had A also seen 2 of the 3: 10 (8 + 2).

  One replica merely behind another (same resets seen, fewer writes) joins
  exactly.  An upgrade of a converged cluster (every replica stopped after
  replication caught up) loses none of this.
- A counter actor with ``P + N >= 2**63`` (increments totalling 2**63 in
  magnitude) gets an entry named after all four components instead: exact
  on its own, but two replicas with different views of that actor both
  keep theirs, and their sum is counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts import HLL, KeyMeta, NumericRegister, ORSet, codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_actor, decode_dot
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.crdts.key_meta import EXPIRES_MAX_MS, TtlEntry
from crdtkv.crdts.numeric import Entry, Incr, Write, check_value
from crdtkv.errors import CodecError, CounterOverflow, NotNumeric
from crdtkv.replica.keyspace import META, Key, is_live
from crdtkv.replica.records import pack, unpack

__all__ = [
    "FROM_FORMAT",
    "OLD_NAMESPACES",
    "Migration",
    "OldCounter",
    "OldRegister",
    "convert",
    "decode_old_log_entry",
    "decode_old_state",
    "join_old",
    "migrate",
]

FROM_FORMAT = 1  # the format migrated (to ``records.FORMAT``, 2)

OLD_NAMESPACES: dict[str, str] = {
    "registers": "lww",
    "counters": "ctr",
    "sets": "orset",
    "hlls": "hll",
}
"""Format 1's namespaces and the type tag of their states."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SEQ_LIMIT = 2**63  # a dot's sequence number is below it (causal.decode_seq)
_U64_MAX = 2**64 - 1  # a format-1 counter component is an unsigned 64-bit int
_ACTOR_CHARS_MAX = 128  # causal.decode_actor

OldKey = tuple[str, str]
"""(format-1 namespace, key name)."""


@dataclass(frozen=True, slots=True)
class OldRegister:
    """A format-1 register: its winning write, as ``["lww", 1, payload]`` held it."""

    ts: Timestamp  # the write's HLC timestamp; ZERO: never written
    value: Any  # any JSON value (None for a tombstone)
    expires_ms: int | None  # absolute expiry on the physical clock, or None
    tombstone: bool  # the winning write is a delete


@dataclass(slots=True)
class OldCounter:
    """A format-1 PN-counter: per actor ``[P, N, FP, FN]``, each joined by maximum."""

    entries: dict[str, list[int]]  # actor -> [P, N, FP, FN]


OldState = OldRegister | OldCounter | ORSet | HLL


# -- decoding format 1 -----------------------------------------------------------------------------
def _decode_register(payload: object) -> OldRegister:
    if not isinstance(payload, list | tuple) or len(payload) != 4:
        raise CodecError("register: expected [ts, value, expires_ms, tombstone]")
    ts_raw, value, expires_ms, tombstone = payload
    ts = Timestamp.decode(ts_raw)
    if expires_ms is not None and (
        not isinstance(expires_ms, int) or isinstance(expires_ms, bool) or expires_ms < 0
    ):
        raise CodecError("register: expires_ms must be a non-negative int or null")
    if not isinstance(tombstone, bool):
        raise CodecError("register: tombstone must be a bool")
    if tombstone and (value is not None or expires_ms is not None):
        raise CodecError("register: a tombstone carries no value or expiry")
    return OldRegister(ts, value, expires_ms, tombstone)


def _decode_counter(payload: object) -> OldCounter:
    if not isinstance(payload, dict):
        raise CodecError("counter: expected a map of actor -> [P, N, FP, FN]")
    entries: dict[str, list[int]] = {}
    for actor, e in payload.items():
        if not isinstance(e, list | tuple) or len(e) != 4:
            raise CodecError("counter: entry must be [P, N, FP, FN]")
        for v in e:
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _U64_MAX:
                raise CodecError("counter: components must be unsigned 64-bit ints")
        if e[2] > e[0] or e[3] > e[1]:
            raise CodecError("counter: a reset floor exceeds its component")
        entries[decode_actor(actor)] = list(e)
    return OldCounter(entries)


def decode_old_state(ns: str, data: object) -> OldState:
    """A format-1 encoded state or delta ``[tag, 1, payload]`` of namespace ``ns``."""
    tag = OLD_NAMESPACES.get(ns)
    if tag is None:
        raise CodecError(f"unknown format-1 namespace {ns!r}")
    if not isinstance(data, list | tuple) or len(data) != 3:
        raise CodecError("encoded value: expected [type_tag, version, payload]")
    if data[0] != tag:
        raise CodecError(f"encoded value: expected type {tag}, got {data[0]!r}")
    if data[1] != 1:
        raise CodecError(f"encoded {tag}: unsupported format version {data[1]!r}")
    if ns == "registers":
        return _decode_register(data[2])
    if ns == "counters":
        return _decode_counter(data[2])
    return codec.decode(data, ORSet if ns == "sets" else HLL)  # type: ignore[return-value]


def decode_old_state_key(raw: bytes) -> OldKey:
    try:
        ns, _, name = raw.decode("utf-8").partition("/")
    except UnicodeDecodeError as e:
        raise CodecError("format-1 state key is not UTF-8") from e
    if ns not in OLD_NAMESPACES or not name:
        raise CodecError(f"format-1 state key {raw[:64]!r} has no format-1 namespace")
    return (ns, name)


def decode_old_log_entry(pos: int, blob: bytes) -> tuple[Dot, list[tuple[OldKey, OldState]]]:
    """A format-1 log entry ``[origin, dot, [[ns, key, delta], ...]]``: its dot and deltas."""
    what = f"format-1 log entry {pos}"
    data = unpack(blob, what)
    if not isinstance(data, list) or len(data) != 3 or not isinstance(data[0], str):
        raise CodecError(f"{what}: expected [origin, dot, deltas]")
    try:
        dot = decode_dot(data[1])
        if not isinstance(data[2], list) or not data[2]:
            raise CodecError("deltas must be a non-empty list")
        deltas: list[tuple[OldKey, OldState]] = []
        for item in data[2]:
            if not isinstance(item, list) or len(item) != 3:
                raise CodecError("each delta is [namespace, key, value]")
            ns, name, enc = item
            if not isinstance(ns, str) or not isinstance(name, str) or not name:
                raise CodecError("bad namespace or key")
            deltas.append(((ns, name), decode_old_state(ns, enc)))
    except CodecError as e:
        raise CodecError(f"{what}: {e.message}") from e
    return dot, deltas


# -- format 1's joins ------------------------------------------------------------------------------
def _lww_tiebreak(r: OldRegister) -> bytes:
    """Format 1's total order on writes with equal timestamps (only reachable by misuse)."""
    return pack([r.tombstone, r.expires_ms or 0, r.value])


def join_old(mine: OldState, other: OldState) -> OldState:
    """Format 1's join of a state with a delta (or a state) of the same namespace."""
    if isinstance(mine, OldRegister):
        assert isinstance(other, OldRegister)
        if other.ts > mine.ts or (
            other.ts == mine.ts and other.ts != ZERO and _lww_tiebreak(other) > _lww_tiebreak(mine)
        ):
            return other
        return mine
    if isinstance(mine, OldCounter):
        assert isinstance(other, OldCounter)
        for actor, o in other.entries.items():
            e = mine.entries.get(actor)
            if e is None:
                mine.entries[actor] = list(o)
            else:
                mine.entries[actor] = [max(a, b) for a, b in zip(e, o, strict=True)]
        return mine
    mine.merge(other)  # type: ignore[arg-type]  # sets and HLLs: format 2's own classes
    return mine


def _empty_old(ns: str) -> OldState:
    if ns == "registers":
        return OldRegister(ZERO, None, None, False)
    if ns == "counters":
        return OldCounter({})
    return ORSet() if ns == "sets" else HLL()


# -- converting ------------------------------------------------------------------------------------
def _actor(name: str) -> str:
    """``name`` as an actor id: itself, or a digest of it when it is too long
    (``@`` first: never a replica's actor either)."""
    if len(name) <= _ACTOR_CHARS_MAX:
        return name
    return "@" + hashlib.sha256(name.encode()).hexdigest()[:40]


@dataclass(slots=True)
class _StringParts:
    """What one name's ``string`` state is built from (a register and/or a counter)."""

    entries: list[Entry] = field(default_factory=list)
    ctx: CausalContext = field(default_factory=CausalContext)

    def build(self) -> NumericRegister:
        return NumericRegister(tuple(sorted(self.entries, key=lambda e: e.dot)), self.ctx)


def _register_parts(name: str, reg: OldRegister, parts: _StringParts) -> TtlEntry | None:
    """Add a live register's write to ``parts``; returns its TTL entry (None: no TTL)."""
    try:
        value = check_value(reg.value)
    except (TypeError, CounterOverflow, NotNumeric) as e:
        raise CodecError(f"format-1 register {name[:64]!r}: value cannot be kept ({e})") from e
    dot = (_actor(f"{reg.ts.actor}@{reg.ts.wall_ms}.{reg.ts.logical}"), 1)
    parts.entries.append(Write(dot, reg.ts, value))
    parts.ctx.add(dot)
    if reg.expires_ms is None:
        return None
    return TtlEntry(dot, min(reg.expires_ms, EXPIRES_MAX_MS))


def _counter_parts(name: str, ctr: OldCounter, parts: _StringParts) -> None:
    """Add a counter's increments not yet reset to ``parts``, per actor."""
    for actor, (p, n, fp, fn) in sorted(ctr.entries.items()):
        if p + n == 0:
            continue  # never changed: nothing to carry, nothing to cover
        i = (p - fp) - (n - fn)
        if not _INT64_MIN <= i <= _INT64_MAX:
            raise CodecError(
                f"format-1 counter {name[:64]!r}: actor {actor!r} holds {i}, "
                "outside the 64-bit range format 2 keeps per writer"
            )
        seq = p + n
        if seq < _SEQ_LIMIT:
            dot: Dot = (_actor(f"{actor}#{fp}.{fn}"), seq)
            parts.ctx.merge(CausalContext({dot[0]: seq}))
            if fp + fn:
                parts.ctx.merge(CausalContext({_actor(f"{actor}#0.0"): seq}))
        else:
            dot = (_actor(f"{actor}#{fp}.{fn}#{p}.{n}"), 1)
            parts.ctx.add(dot)
        if (p, n) != (fp, fn):
            parts.entries.append(Incr(dot, i, None))


@dataclass(slots=True)
class Converted:
    """The format-2 states of the names converted so far, with what was counted."""

    states: dict[Key, CRDT] = field(default_factory=dict)
    # format-1 states converted, per format-1 namespace
    carried: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OLD_NAMESPACES, 0))
    tombstones: int = 0  # deleted registers, not carried
    expired: int = 0  # registers whose TTL had passed, not carried
    several: list[str] = field(default_factory=list)  # names now live as several types
    merged: list[str] = field(default_factory=list)  # live register + counter: one string
    hlc_wall_ms: int = 0  # the largest wall time of a timestamp carried over


def _convert_name(name: str, olds: dict[str, OldState], now_ms: int, out: Converted) -> None:
    stamps: dict[str, Timestamp] = {}
    ttl: tuple[TtlEntry, ...] = ()
    meta_ctx = CausalContext()
    string: _StringParts | None = None
    reg = olds.get("registers")
    if isinstance(reg, OldRegister):
        if reg.tombstone:
            out.tombstones += 1
        elif reg.expires_ms is not None and reg.expires_ms <= now_ms:
            out.expired += 1
        elif reg.ts != ZERO:
            string = _StringParts()
            entry = _register_parts(name, reg, string)
            out.carried["registers"] += 1
            stamps["string"] = reg.ts
            out.hlc_wall_ms = max(out.hlc_wall_ms, reg.ts.wall_ms)
            if entry is not None:
                ttl = (entry,)
                meta_ctx.add(entry.dot)
    ctr = olds.get("counters")
    if isinstance(ctr, OldCounter) and any(sum(e) for e in ctr.entries.values()):
        if string is not None and any(e[:2] != e[2:] for e in ctr.entries.values()):
            out.merged.append(name)
        string = string if string is not None else _StringParts()
        _counter_parts(name, ctr, string)
        out.carried["counters"] += 1
        stamps.setdefault("string", ZERO)
    if string is not None:
        out.states[("string", name)] = string.build()
    for ns, type_ in (("sets", "set"), ("hlls", "hll")):
        state = olds.get(ns)
        if isinstance(state, ORSet | HLL) and not state.is_bottom():
            out.states[(type_, name)] = state
            out.carried[ns] += 1
            stamps[type_] = ZERO
            if isinstance(state, HLL):
                out.hlc_wall_ms = max(out.hlc_wall_ms, state.epoch.wall_ms)
    if stamps:
        out.states[(META, name)] = KeyMeta(stamps, ttl, meta_ctx)
    if sum(is_live(out.states[(t, name)]) for t in stamps) > 1:
        out.several.append(name)


def convert(old: dict[OldKey, OldState], now_ms: int) -> Converted:
    """The format-2 states of format-1 ``old`` (see the module docstring).  ``now_ms``:
    physical time, to leave out registers whose TTL has passed."""
    by_name: dict[str, dict[str, OldState]] = {}
    for (ns, name), state in old.items():
        by_name.setdefault(name, {})[ns] = state
    out = Converted()
    for name in sorted(by_name):
        _convert_name(name, by_name[name], now_ms, out)
    return out


# -- the whole migration ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Migration:
    """What a format-2 directory holds after the migration (``persist`` writes it)."""

    states: dict[Key, CRDT]  # every format-2 state
    applied: CausalContext  # the checkpoint's context joined with the replayed log's dots
    checkpoint_pos: int  # the highest log position of the old log: positions go on from it
    hlc_wall_ms: int  # at least the old bound and every timestamp carried over
    carried: dict[str, int]  # format-1 states converted, per format-1 namespace
    tombstones: int  # deleted registers left out
    expired: int  # registers whose TTL had passed, left out
    several: list[str]  # names now live as several types (one visible, the others hidden)
    merged: list[str]  # names that held a live register and a live counter: one string now
    replayed: int  # log entries after the checkpoint joined in

    def counts(self) -> dict[str, int]:
        """Format-2 states written, per type (``meta`` included)."""
        out: dict[str, int] = {}
        for t, _ in self.states:
            out[t] = out.get(t, 0) + 1
        return out


def _load(states: Iterable[tuple[bytes, bytes]]) -> dict[OldKey, OldState]:
    out: dict[OldKey, OldState] = {}
    for raw_key, blob in states:
        key = decode_old_state_key(raw_key)
        what = f"format-1 state {key[0]}/{key[1][:64]}"
        try:
            out[key] = decode_old_state(key[0], unpack(blob, what))
        except CodecError as e:
            raise CodecError(f"{what}: {e.message}") from e
    return out


def _replay(
    old: dict[OldKey, OldState],
    log: Iterator[tuple[int, bytes]],
    applied: CausalContext,
    checkpoint_pos: int,
) -> tuple[int, int]:
    """Join the log entries after ``checkpoint_pos`` into ``old`` and their dots into
    ``applied``, as format 1's load did.  Returns (highest position, entries replayed)."""
    top = checkpoint_pos
    replayed = 0
    for pos, blob in log:
        top = max(top, pos)
        if pos <= checkpoint_pos:
            continue  # already in the checkpointed states
        dot, deltas = decode_old_log_entry(pos, blob)
        for key, delta in deltas:
            state = old.get(key)
            old[key] = join_old(state if state is not None else _empty_old(key[0]), delta)
        applied.add(dot)
        replayed += 1
    return top, replayed


def migrate(
    states: Iterable[tuple[bytes, bytes]],
    log: Iterable[tuple[int, bytes]],
    applied: CausalContext,
    checkpoint_pos: int,
    hlc_wall_ms: int,
    now_ms: int,
) -> Migration:
    """Format-1 records (raw ``states``, ``log`` as (position, blob), the decoded
    checkpoint meta) -> the format-2 directory's contents.  Raises ``CodecError``
    naming the record when one does not decode; nothing is written then."""
    old = _load(states)
    applied = applied.copy()
    top, replayed = _replay(old, iter(log), applied, checkpoint_pos)
    out = convert(old, now_ms)
    return Migration(
        states=out.states,
        applied=applied,
        checkpoint_pos=top,
        hlc_wall_ms=max(hlc_wall_ms, out.hlc_wall_ms),
        carried=out.carried,
        tombstones=out.tombstones,
        expired=out.expired,
        several=out.several,
        merged=out.merged,
        replayed=replayed,
    )

"""What the checkers read: every operation a client invoked, and how it ended.

The simulator and the real-process nemesis (``simulations.nemesis``) both
record an ``Op`` per invocation.  The simulator also records ``Meta``: facts
it can read from the replica it runs in-process (the dot the operation
minted, its delta, the state a read saw, the session token it carried).
Checkers use ``Meta`` when it is there (white-box checks) and the invocation
and response alone otherwise (black-box checks, which also run in the
simulator).

Status of an operation, from the client's point of view:

- ``ok``: a response arrived; the operation took effect (reads: saw a state);
- ``fail``: an error response arrived (``session_unavailable``, a refused
  clock): the operation did *not* take effect;
- ``unknown``: no response (lost request or reply, a crash in between,
  timeout): it may or may not have taken effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, VersionVector
from crdtkv.crdts.hlc import Timestamp
from crdtkv.ops.table import TABLE, VIEW_TYPES
from crdtkv.replica.keyspace import DeltaGroup, Key

__all__ = ["READS", "WRITES", "Final", "History", "Meta", "Op", "state_key"]

READS = frozenset(spec.name for spec in TABLE if spec.reads)
WRITES = frozenset(spec.name for spec in TABLE if spec.writes)


def state_key(namespace: str, key: str) -> Key:
    """The replica's key of an op's view and key: registers and counters are two
    views of one ``string`` key, so ``("counters", "k")`` is ``("string", "k")``."""
    return (VIEW_TYPES[namespace], key)


@dataclass
class Meta:
    """White-box facts about an operation that was executed by a replica."""

    exec_ms: int  # simulation time it was executed
    node_ms: int  # the executing replica's physical clock then
    incarnation: str  # the executing replica's incarnation
    dot: Dot | None = None  # the replica-level dot it minted (mutations that changed something)
    delta: CRDT | None = None  # its delta for its key, as committed to the log
    # Every delta group the operation committed, in order: a write to a key that had
    # expired first commits a reset of its own; a DEL clears every type of the name.
    groups: list[DeltaGroup] = field(default_factory=list)
    stamp: Timestamp | None = None  # the HLC timestamp its key metadata recorded (writes)
    before: CRDT | None = None  # string and list writes: a copy of the key's state before
    live_before: list[str] = field(default_factory=list)  # types live under the name before
    state: CRDT | None = None  # reads: a copy of the key's state it read (None: no state)
    token_vv: VersionVector = field(default_factory=dict)  # the session token it carried
    applied_vv: VersionVector = field(default_factory=dict)  # replica's applied vv afterwards
    sources: list[CRDT] = field(default_factory=list)  # hlls.merge: the sources it read
    epoch_after: Any = None  # hlls add/merge: the key's epoch afterwards
    possibly_lost: bool = False  # its effect may be gone (wipe, or crash in wal mode)
    acked: bool = False  # the node core released its answer (what it saw was durable)
    # Order of execution in the run: operations executed in the same
    # millisecond are ordered by it, not by when they were invoked.
    exec_seq: int = 0


@dataclass
class Op:
    idx: int  # position in the history
    client: int  # the client (one causal session each)
    kind: str  # e.g. "sets.add"
    key: str  # the key within the kind's namespace
    args: dict[str, Any]  # the other fields of the op
    replica: str  # where it was sent
    invoke_ms: int  # when the client sent it
    complete_ms: int | None = None  # when the client got its answer, or gave up
    status: str = "pending"  # ok | fail | unknown (pending while in flight)
    result: dict[str, Any] | None = None  # the response body ({"not_found": True} for 404)
    error: str | None = None  # the error code of a failed operation
    meta: Meta | None = None  # simulator only

    @property
    def namespace(self) -> str:
        return self.kind.split(".", 1)[0]

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES

    @property
    def is_read(self) -> bool:
        return self.kind in READS

    def may_have_happened(self) -> bool:
        return self.status in ("ok", "unknown")

    @property
    def acked(self) -> bool:
        """Acknowledged, and not possibly undone since by a lost data directory
        (a wipe, or a power loss in wal mode): checkers hold only these to
        their effect; the others are as good as in doubt."""
        return self.status == "ok" and not (self.meta is not None and self.meta.possibly_lost)

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.args.items()))
        out = (
            f"#{self.idx} client {self.client} {self.kind}({self.key!r}{', ' if args else ''}"
            f"{args}) at {self.replica} [{self.invoke_ms}..{self.complete_ms}] {self.status}"
        )
        if self.result is not None:
            out += f" -> {self.result}"
        if self.error:
            out += f" ({self.error})"
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "idx": self.idx,
            "client": self.client,
            "kind": self.kind,
            "key": self.key,
            "args": self.args,
            "replica": self.replica,
            "invoke_ms": self.invoke_ms,
            "complete_ms": self.complete_ms,
            "status": self.status,
            "result": self.result,
            "error": self.error,
        }


@dataclass
class Final:
    """What the replicas hold after the liveness phase."""

    # replica -> (namespace, key) -> the read result (as an Op.result) of that key there
    reads: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    # simulator only: the replica's key (type, name) -> the converged state (a copy)
    states: dict[Key, CRDT] | None = None
    applied: dict[str, CausalContext] | None = None  # simulator only: replica -> applied
    # simulator only: replica -> the replica's key (type, name) -> state (a copy)
    replica_states: dict[str, dict[Key, CRDT]] | None = None
    # simulator only: replica -> name -> the type the name reads as (None: absent)
    types: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # simulator only: replica -> the names it counts as conflicting (``Replica.conflicts``)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    # replica -> (key, search op fields, result) of the vector-set searches run at every
    # replica after the final reads (``checkers.vsets.final_searches``); the result is
    # {"error": code} for a refused search
    vset_searches: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = field(
        default_factory=dict
    )
    at_ms: int = 0  # simulation (or wall) time of the final reads
    node_ms: dict[str, int] = field(default_factory=dict)  # each replica's clock then


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)  # namespace -> keys used
    skew_slack_ms: int = 0  # clocks may differ by this much (real-time reasoning slack)
    durability: str = "fsync"

    _index: dict[tuple[str, str], list[Op]] | None = field(default=None, repr=False)

    def add(self, op: Op) -> Op:
        op.idx = len(self.ops)
        self.ops.append(op)
        self._index = None
        return op

    def on_key(self, namespace: str, key: str) -> list[Op]:
        """The operations on one key, in invocation order."""
        if self._index is None:
            index: dict[tuple[str, str], list[Op]] = {}
            for o in self.ops:
                index.setdefault((o.namespace, o.key), []).append(o)
            self._index = index
        return self._index.get((namespace, key), [])

    def on_name(self, key: str) -> list[Op]:
        """The operations on one name through any view, in invocation order."""
        return [o for o in self.ops if o.key == key]

    def by_client(self) -> dict[int, list[Op]]:
        out: dict[int, list[Op]] = {}
        for o in self.ops:
            out.setdefault(o.client, []).append(o)
        return out

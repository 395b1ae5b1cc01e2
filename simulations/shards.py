"""A sharded cluster in the simulator: S shards x R regions, and slot moves under faults.

``python -m simulations run --shards S`` runs this instead of the one-group
simulation of ``simulations.sim``.  Every ``SimNode`` runs the production core
(``NodeCore`` over the replica core) with ``core.cluster = ClusterState(map, id)``,
so every client op is checked against the node's slots (``Moved``, ``Ask``,
``TryAgain``) exactly as behind the HTTP and RESP shells.  A node replicates
only with its shard's replicas in the other regions (the harness topology).

The move (docs/architecture.md's protocol; ``SHARD.md``) is driven by a
simulated ``crdtkv reshard`` (``Driver``) and carried out by the nodes with the
pure steps of ``crdtkv.cluster.move``, every message a simulated message
(``SimCluster.deliver``: latency, loss, duplication, reordering, partitions):

1. the map with the slots moving is pushed to every node (each persists it
   before it answers) until every node has answered;
2. per region, the source replica S_r exports the slots' states in chunks
   (``export_chunks``) and sends each to the target T_r, which decodes it
   (``decode_chunk``) and joins it as one logged commit (``import_states``),
   answering once that commit is durable; S_r notes from the moving map on the
   names of the slots that change (``Replica.set_watch``);
3. hand-over: S_r holds the slots (``ClusterState.holding``: ``TryAgain``),
   copies the names changed since (the final copy), and only once that copy
   is acknowledged hands them over (``handed_over``: ``Ask``), persisted;
4. the flip (the target owns the slots) is pushed to every node;
5. forwarding: a node that finds, among the names a replicated group (or
   anything else) changed, names of slots it no longer serves
   (``forward_names``) copies their states on to the slot's node in its region;
6. once every node holds the flip, each S_r drops the moved names
   (``drop_names``: local, no dot); names that come back later (a late group
   from a peer, a log replayed after a restart) are forwarded and dropped again.

A node persists (a stand-in for its ``cluster_map`` and move meta keys, which
survive a crash): its map, the slots it handed over, the moves whose bulk copy
and hand-over it finished, and the slots it gave away and was told to drop.
Everything else of a move is volatile: a crash abandons a copy in flight, and
after a restart the node counts every name of a slot moving away from it (or
not its shard's) as changed, so the next copy or forward sends them all again
(imports are joins: sending twice is harmless).  The driver crashes too (with
the ``crash`` fault kind): it keeps only its move record (the move's maps and
phase) and starts the phase again, asking every node anew.

Simulated clients live in one region each and route every key by their own copy
of the map: ``Moved`` sends them to the named node and refreshes their map from
it, ``Ask`` resends once with ``asking``, ``TryAgain`` retries after a pause.
A client keeps a session token per shard.  Writes are unique per write (a set
member, a hash field, a list value) or positive counter increments, so that
the checker (``simulations.checkers.moves``) can say of every acknowledged
write whether its effect is at the slot's final owner in every region.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from crdtkv.cluster import move
from crdtkv.cluster.map import ClusterMap, MapError, NodeAddr, Shard
from crdtkv.cluster.slots import format_ranges, key_slot, parse_ranges, slots_of_ranges
from crdtkv.cluster.state import ClusterState
from crdtkv.errors import Ask, CrdtkvError, Moved, NotFound, TryAgain
from crdtkv.node.core import Admit, Answer, Ready
from crdtkv.ops import apply_op
from crdtkv.sessions import SessionToken
from replication.protocol import Settings
from simulations import checkers
from simulations.checkers.moves import MoveFinal, ShardOp, check_moves, check_read
from simulations.config import SimConfig, stream
from simulations.faults import Faults
from simulations.harness import LinkFaults, SimCluster, SimNode
from simulations.network import link_faults
from simulations.observer import Observer

if TYPE_CHECKING:  # simulations.sim imports this module
    from simulations.sim import RunResult, Simulation

__all__ = ["MoveBugs", "ShardSimulation", "build_map", "run_sharded"]

REGION_NAMES = "abc"
DRIVER = "driver"  # the reshard tool's end of the simulated links
CHUNK_BYTES = 600  # small chunks: a move of a few keys still takes several messages
RPC_TIMEOUT_MS = 700  # above the longest round trip (2 x 150 ms + jitter)
DRIVER_TICK_MS = 40
FORWARD_TICK_MS = 20
RETRY_MS = (20, 80)  # a failed copy or forward tries again after this long
MOVE_GAP_MS = (50, 800)  # between the end of a move and the start of the next
CLIENT_LATENCY_MS = (1, 4)  # client <-> node, one way
OP_TIMEOUT_MS = 1_500  # a client gives up on an op after this long (outcome unknown)
REDIRECTS_MAX = 5  # Moved/Ask per op, as a client's redirect limit
TRY_AGAIN_MAX = 40  # TryAgain answers per op before the client gives up on it
TRY_AGAIN_MS = (5, 30)
LIVENESS_STEP_MS = 100

# What clients do, by weight: writes unique per write, reads of whole keys.
CLASSES = ("sets", "hashes", "lists", "counters")
OP_WEIGHTS: list[tuple[str, str, int]] = [
    ("sets", "sets.add", 30),
    ("sets", "sets.remove", 8),
    ("sets", "sets.get", 10),
    ("hashes", "hashes.set", 12),
    ("hashes", "hashes.getall", 4),
    ("lists", "lists.rpush", 12),
    ("lists", "lists.range", 4),
    ("counters", "counters.incr", 12),
    ("counters", "counters.get", 4),
]
READ_OPS: dict[str, dict[str, Any]] = {
    "sets": {"op": "sets.get"},
    "hashes": {"op": "hashes.getall"},
    "lists": {"op": "lists.range", "start": 0, "stop": -1},
    "counters": {"op": "counters.get"},
}


class MoveBugs:
    """Bugs of the move, switched on by canaries (``simulations.canaries``)."""

    skip_final_copy = False  # the hand-over copies nothing changed since the bulk copy
    ask_before_final_copy = False  # the hand-over answers Ask before its final copy is acked


def build_map(shards: int, regions: int) -> ClusterMap:
    """Shard ``s<i>``'s replica in region ``r`` is node ``r<i * regions + r>``."""
    out = []
    for i in range(shards):
        reps = []
        for j in range(regions):
            rid = f"r{i * regions + j}"
            reps.append(NodeAddr(rid, REGION_NAMES[j], f"http://{rid}.sim:7000", f"{rid}.sim:6379"))
        out.append(Shard(f"s{i}", tuple(reps)))
    return ClusterMap.even(out)


def shard_keys(per_class: int) -> dict[str, list[str]]:
    return {cls: [f"{cls[0]}{i}" for i in range(per_class)] for cls in CLASSES}


# -- what a node persists ----------------------------------------------------------------------
@dataclass
class NodeMeta:
    """A node's persisted cluster state: it survives every crash (written before the
    node answers the message that changed it)."""

    map: ClusterMap
    handed_over: set[int] = field(default_factory=set)
    bulk_done: set[str] = field(default_factory=set)  # moves whose bulk copy is acked
    handed: set[str] = field(default_factory=set)  # moves handed over here
    dropped: set[int] = field(default_factory=set)  # slots given away and told to drop


@dataclass
class MoveSpec:
    id: str
    slots: list[int]
    source: str
    target: str

    def payload(self) -> bytes:
        return _js(
            {
                "move": self.id,
                "slots": format_ranges(self.slots),
                "from": self.source,
                "to": self.target,
            }
        ).encode()

    @classmethod
    def parse(cls, blob: bytes) -> MoveSpec:
        d = json.loads(blob)
        return cls(d["move"], slots_of_ranges(parse_ranges(d["slots"])), d["from"], d["to"])


# -- messages ----------------------------------------------------------------------------------
class Rpc:
    """Request and reply over the simulated links: ``on_reply(blob)`` once, or
    ``on_reply(None)`` when no reply came within ``RPC_TIMEOUT_MS``."""

    def __init__(self, sim: ShardSimulation) -> None:
        self.sim = sim
        self.ids = 0
        self.waiting: dict[int, Callable[[bytes | None], None]] = {}

    def call(
        self,
        src: str,
        dst: str,
        kind: str,
        payload: bytes,
        on_reply: Callable[[bytes | None], None],
    ) -> None:
        c = self.sim.cluster
        self.ids += 1
        rid = self.ids
        self.waiting[rid] = on_reply

        def arrive(blob: bytes) -> None:
            self.sim.handle(dst, src, kind, blob, lambda out: reply(out))

        def reply(out: bytes) -> None:
            c.deliver(dst, src, out, lambda b: self.done(rid, b))

        c.deliver(src, dst, payload, arrive)
        c.at(RPC_TIMEOUT_MS, lambda: self.done(rid, None))

    def done(self, rid: int, blob: bytes | None) -> None:
        cb = self.waiting.pop(rid, None)
        if cb is not None:
            cb(blob)


# -- a node's part of the move -----------------------------------------------------------------
class ShardNode:
    """The sharded shell around one ``SimNode``: its persisted cluster state, the
    copies it runs, and the forwarding of names of slots it does not serve."""

    def __init__(self, sim: ShardSimulation, node: SimNode, meta: NodeMeta) -> None:
        self.sim = sim
        self.node = node
        self.meta = meta
        self.changed: set[str] = set()  # watched names not yet copied or forwarded
        self.forwarding: set[str] = set()  # names whose forward is in flight
        self.tasks: dict[tuple[str, str], CopyTask] = {}  # (move, phase) -> its copy
        self.cs = self.open()

    @property
    def rid(self) -> str:
        return self.node.rid

    def open(self) -> ClusterState:
        """At every start: the cluster state from what was persisted; every held name
        of a slot moving away or not this shard's counts as changed."""
        cs = ClusterState(self.meta.map, self.node.rid)
        cs.handed_over = set(self.meta.handed_over) & set(cs.map.moving)
        self.cs = cs
        self.node.core.cluster = cs
        replica = self.node.replica

        def watch(name: str) -> bool:
            s = key_slot(name)
            return not cs.owns(s) or s in cs.map.moving

        replica.set_watch(watch)
        self.changed = {n for n in replica.names if watch(n)}
        self.forwarding = set()
        self.tasks = {}
        return cs

    def pull(self) -> None:
        self.changed |= self.node.replica.take_watched()

    # -- the driver's requests -----------------------------------------------------------------
    def on_map(self, blob: bytes, reply: Callable[[bytes], None]) -> None:
        new = ClusterMap.from_json(json.loads(blob))
        try:
            self.cs.set_map(new)
        except MapError:
            reply(_js({"epoch": self.cs.epoch}).encode())  # 409 stale_map, with ours
            return
        m = self.meta
        m.map = self.cs.map
        m.handed_over &= set(m.map.moving)
        m.dropped = {s for s in m.dropped if not self.cs.owns(s)}
        reply(_js({"epoch": self.cs.epoch}).encode())

    def target_in_region(self, mv: MoveSpec) -> str:
        return self.cs.map.shard(mv.target).in_region(self.cs.region).id

    def on_bulk(self, mv: MoveSpec, reply: Callable[[bytes], None]) -> None:
        if mv.id in self.meta.bulk_done:
            reply(b"done")
            return
        if (mv.id, "bulk") in self.tasks:
            reply(b"working")
            return
        if any(self.cs.map.moving.get(s) != mv.target for s in mv.slots):
            reply(b"no-map")  # the moving map has not reached this node (cannot be: asked)
            return
        names = move.slot_names(self.node.replica, set(mv.slots))

        def done() -> None:
            self.meta.bulk_done.add(mv.id)
            self.tasks.pop((mv.id, "bulk"), None)

        task = CopyTask(self, self.target_in_region(mv), names, done, "bulk")
        self.tasks[(mv.id, "bulk")] = task
        task.start()
        reply(b"working")

    def on_handover(self, mv: MoveSpec, reply: Callable[[bytes], None]) -> None:
        if mv.id in self.meta.handed:
            reply(b"done")
            return
        if (mv.id, "handover") in self.tasks:
            reply(b"working")
            return
        if mv.id not in self.meta.bulk_done:
            reply(b"no-bulk")
            return
        cs = self.cs
        slots = set(mv.slots)
        if MoveBugs.ask_before_final_copy:
            cs.handed_over |= slots
        else:
            cs.holding |= slots  # TryAgain until the final copy is acknowledged
        self.pull()
        names = {n for n in self.changed if key_slot(n) in slots}
        self.changed -= names
        if MoveBugs.skip_final_copy:
            names = set()

        def done() -> None:
            cs.holding -= slots
            cs.handed_over |= slots
            self.meta.handed_over |= slots
            self.meta.handed.add(mv.id)
            self.tasks.pop((mv.id, "handover"), None)

        self.sim.stats["final_copy_names"] += len(names)
        task = CopyTask(self, self.target_in_region(mv), sorted(names), done, "final")
        self.tasks[(mv.id, "handover")] = task
        task.start()
        reply(b"working")

    def on_drop(self, mv: MoveSpec, reply: Callable[[bytes], None]) -> None:
        cs = self.cs
        slots = {s for s in mv.slots if not cs.owns(s) and not cs.importing(s)}
        self.meta.dropped |= slots
        self.pull()
        keep = self.changed | self.forwarding  # dropped once forwarded
        names = [n for n in move.slot_names(self.node.replica, slots) if n not in keep]
        self.sim.stats["names_dropped"] += move.drop_names(self.node.replica, names)
        reply(b"done")

    def on_import(self, blob: bytes, reply: Callable[[bytes], None]) -> None:
        node = self.node
        try:
            states = move.decode_chunk(blob)
            move.import_states(node.replica, states, node.now())
        except CrdtkvError:
            reply(b"error")  # a 4xx: the sender tries again later
            return
        epoch = node.epoch

        def ready(a: Ready) -> None:
            if node.epoch == epoch and node.up and a.error is None:
                reply(b"ok")

        node.core.wait_durable(node.ticket(ready))
        node.step()

    # -- forwarding ----------------------------------------------------------------------------
    def forward(self) -> None:
        """Copy on the states of changed names of slots this node does not serve."""
        if not self.node.up:
            return
        self.pull()
        cs = self.cs
        out: dict[str, list[str]] = defaultdict(list)
        for name in sorted(move.forward_names((("", n) for n in self.changed), cs.serves)):
            s = key_slot(name)
            if cs.importing(s) or name in self.forwarding:
                if cs.importing(s):
                    self.changed.discard(name)  # an import here: nothing to forward
                continue
            if cs.owns(s):  # holding or handed over: to the move's target
                dest = cs.map.shard(cs.map.moving[s]).in_region(cs.region).id
            else:
                dest = cs.map.owner_in(s, cs.region).id
            self.changed.discard(name)
            out[dest].append(name)
        # Names of served slots: kept only while a move may still need them (the final copy).
        self.changed = {n for n in self.changed if _kept(cs, n) or n in self.forwarding}
        for dest, names in sorted(out.items()):
            self.forwarding |= set(names)
            self.sim.stats["forwards"] += 1
            self.sim.stats["names_forwarded"] += len(names)

            def done(names: list[str] = names) -> None:
                self.forwarding -= set(names)
                self.pull()
                drop = [
                    n
                    for n in names
                    if n not in self.changed
                    and (s := key_slot(n)) in self.meta.dropped
                    and not self.cs.owns(s)
                    and not self.cs.importing(s)
                ]
                self.sim.stats["names_dropped"] += move.drop_names(self.node.replica, drop)

            CopyTask(self, dest, names, done, "forward").start()

    def idle(self) -> bool:
        """Nothing left to copy or forward here."""
        self.pull()
        return (
            not self.forwarding
            and not self.tasks
            and not any(
                not _kept(self.cs, n) or not self.cs.serves(key_slot(n)) for n in self.changed
            )
        )


def _kept(cs: ClusterState, name: str) -> bool:
    """A changed name of a served slot the final copy of a move still needs."""
    s = key_slot(name)
    return cs.serves(s) and s in cs.map.moving


class CopyTask:
    """States of ``names`` from a node to ``dest``, chunk by chunk, each chunk sent
    until it is acknowledged (durable at ``dest``); ``done`` after the last.  A
    crash of the sender abandons it."""

    def __init__(
        self, sn: ShardNode, dest: str, names: list[str], done: Callable[[], None], what: str
    ) -> None:
        self.sn = sn
        self.dest = dest
        self.done = done
        self.what = what
        self.epoch = sn.node.epoch
        self.chunks = move.export_chunks(sn.node.replica, names, CHUNK_BYTES)
        self.body = b""

    def start(self) -> CopyTask:
        self.next()
        return self

    def alive(self) -> bool:
        return self.sn.node.epoch == self.epoch and self.sn.node.up

    def next(self) -> None:
        if not self.alive():
            return
        chunk = next(self.chunks, None)
        if chunk is None:
            self.done()
            return
        self.body = chunk.body
        stats = self.sn.sim.stats
        stats[f"{self.what}_chunks"] += 1
        stats[f"{self.what}_names"] += len(chunk.names)
        stats[f"{self.what}_bytes"] += len(chunk.body)
        self.send()

    def send(self) -> None:
        if not self.alive():
            return
        self.sn.sim.rpc.call(self.sn.rid, self.dest, "import", self.body, self.on_reply)

    def on_reply(self, blob: bytes | None) -> None:
        if not self.alive():
            return
        if blob == b"ok":
            self.next()
            return
        self.sn.sim.stats["copy_retries"] += 1
        self.sn.sim.cluster.at(self.sn.sim.rng.randint(*RETRY_MS), self.send)


# -- the reshard tool --------------------------------------------------------------------------
@dataclass
class MoveRecord:
    """What the driver persists (its move state, kept at the source in production):
    the move, its two maps, the phase it reached."""

    spec: MoveSpec
    moving: ClusterMap  # epoch E+1: the slots moving
    flipped: ClusterMap  # epoch E+2: the target owns them
    phase: str = "moving"  # moving -> copy -> flip -> drop -> done
    started_ms: int = 0
    finished_ms: int | None = None


class Driver:
    """``crdtkv reshard`` in the simulator: one move after the other, each through
    the protocol's phases; every step asks the nodes until each has answered, so a
    lost message, a crashed node or its own crash only delays it."""

    def __init__(self, sim: ShardSimulation, initial: ClusterMap) -> None:
        self.sim = sim
        self.rng = stream(sim.cfg.seed, "driver")
        self.map = initial  # the newest map it made (persisted)
        self.records: list[MoveRecord] = []  # persisted
        self.next_start_ms = sim.start_ms + self.rng.randint(0, max(1, sim.cfg.duration_ms // 4))
        self.up = True
        self.epoch = 0  # bumped by every crash: replies to an earlier life are dropped
        self.volatile_reset()

    def volatile_reset(self) -> None:
        self.answered: set[str] = set()  # nodes that answered this phase's request
        self.in_flight: set[str] = set()
        self.region_phase: dict[str, str] = {}  # region -> bulk | handover | done
        self.paused_until: dict[str, int] = {}

    @property
    def current(self) -> MoveRecord | None:
        if self.records and self.records[-1].phase != "done":
            return self.records[-1]
        return None

    def finished(self) -> bool:
        return self.current is None and len(self.records) >= self.sim.cfg.moves

    def crash(self, down_ms: int) -> None:
        if not self.up:
            return
        self.up = False
        self.epoch += 1
        self.volatile_reset()
        self.sim.stats["driver_crashes"] += 1
        self.sim.trace(f"driver crash down {down_ms}")

        def restart() -> None:
            self.up = True
            self.sim.trace("driver restart")

        self.sim.cluster.at(down_ms, restart)

    def tick(self) -> None:
        if self.up:
            self.step()
        self.sim.cluster.at(DRIVER_TICK_MS, self.tick)

    def step(self) -> None:
        rec = self.current
        sim = self.sim
        if rec is None:
            if len(self.records) >= sim.cfg.moves or sim.cluster.now_ms < self.next_start_ms:
                return
            rec = self.plan()
            if rec is None:
                return
            self.records.append(rec)
            self.volatile_reset()
            sim.trace(
                f"move {rec.spec.id} {format_ranges(rec.spec.slots)} "
                f"{rec.spec.source}->{rec.spec.target}"
            )
        if rec.phase == "moving":
            self.push(rec, rec.moving, "copy")
        elif rec.phase == "copy":
            self.copy(rec)
        elif rec.phase == "flip":
            self.push(rec, rec.flipped, "drop")
        elif rec.phase == "drop":
            self.ask_all(rec, self.source_nodes(rec), "drop", "done")

    def plan(self) -> MoveRecord | None:
        """The next move: a window of a source shard's slots around one of the keys,
        to another shard."""
        sim, m, rng = self.sim, self.map, self.rng
        keys = [k for ks in sim.keys.values() for k in ks]
        key = rng.choice(keys)
        slot = key_slot(key)
        source = m.owners[slot]
        target = rng.choice([s.id for s in m.shards if s.id != source])
        width = rng.choice([1, 64, 1024, 4096])
        owned = set(m.slots_of(source))
        lo = max(0, slot - rng.randint(0, width))
        slots = [s for s in range(lo, min(16384, lo + width + 1)) if s in owned]
        if slot not in slots:
            slots.append(slot)
        spec = MoveSpec(f"m{len(self.records) + 1}", sorted(slots), source, target)
        moving = m.with_moving(spec.slots, target)
        flipped = moving.with_owner(spec.slots, target)
        self.map = flipped
        return MoveRecord(spec, moving, flipped, started_ms=sim.cluster.now_ms)

    def source_nodes(self, rec: MoveRecord) -> list[str]:
        return [n.id for n in rec.moving.shard(rec.spec.source).replicas]

    def advance(self, rec: MoveRecord, phase: str) -> None:
        rec.phase = phase
        self.volatile_reset()
        self.sim.trace(f"move {rec.spec.id} phase {phase}")
        if phase == "done":
            rec.finished_ms = self.sim.cluster.now_ms
            self.sim.stats["moves_done"] += 1
            self.sim.stats["slots_moved"] += len(rec.spec.slots)
            self.next_start_ms = self.sim.cluster.now_ms + self.rng.randint(*MOVE_GAP_MS)

    def send(self, rid: str, kind: str, payload: bytes, on: Callable[[bytes], None]) -> None:
        if rid in self.in_flight:
            return
        self.in_flight.add(rid)
        epoch = self.epoch

        def reply(blob: bytes | None) -> None:
            if epoch != self.epoch or not self.up:
                return
            self.in_flight.discard(rid)
            if blob is not None:
                on(blob)

        self.sim.rpc.call(DRIVER, rid, kind, payload, reply)

    def push(self, rec: MoveRecord, m: ClusterMap, then: str) -> None:
        """Push ``m`` to every node; ``then`` once every node holds it (or newer)."""
        everyone = [n.id for n in m.nodes()]
        if set(everyone) <= self.answered:
            self.advance(rec, then)
            return
        blob = _js(m.to_json()).encode()
        for rid in everyone:
            if rid in self.answered:
                continue

            def on(out: bytes, rid: str = rid) -> None:
                if json.loads(out)["epoch"] >= m.epoch:
                    self.answered.add(rid)

            self.send(rid, "map", blob, on)

    def ask_all(self, rec: MoveRecord, rids: list[str], kind: str, then: str) -> None:
        if set(rids) <= self.answered:
            self.advance(rec, then)
            return
        for rid in rids:
            if rid in self.answered:
                continue

            def on(out: bytes, rid: str = rid) -> None:
                if out == b"done":
                    self.answered.add(rid)

            self.send(rid, kind, rec.spec.payload(), on)

    def copy(self, rec: MoveRecord) -> None:
        """Per region, in parallel: the bulk copy, a pause, the hand-over."""
        now = self.sim.cluster.now_ms
        sources = self.source_nodes(rec)
        for rid in sources:
            phase = self.region_phase.setdefault(rid, "bulk")
            if phase == "done" or now < self.paused_until.get(rid, 0):
                continue

            def on(out: bytes, rid: str = rid, phase: str = phase) -> None:
                if self.region_phase.get(rid) != phase:
                    return
                if out == b"done":
                    nxt = "handover" if phase == "bulk" else "done"
                    self.region_phase[rid] = nxt
                    if nxt == "handover":
                        self.paused_until[rid] = (
                            self.sim.cluster.now_ms + self.sim.cfg.handover_pause_ms
                        )
                elif out == b"no-bulk":
                    self.region_phase[rid] = "bulk"

            self.send(rid, phase, rec.spec.payload(), on)
        if all(self.region_phase.get(rid) == "done" for rid in sources):
            self.advance(rec, "flip")


# -- clients -----------------------------------------------------------------------------------
@dataclass
class ShardClient:
    cid: int
    region: str
    rng: Any
    map: ClusterMap
    tokens: dict[str, SessionToken] = field(default_factory=dict)
    pending: ShardOp | None = None
    stopped: bool = False
    n: int = 0  # writes issued (for unique values)
    # key -> members this client added and had acknowledged, not yet removed
    members: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))


class ShardClients:
    def __init__(self, sim: ShardSimulation) -> None:
        self.sim = sim
        self.all: list[ShardClient] = []
        self.weights = [w for _, _, w in OP_WEIGHTS]

    def start(self, initial: ClusterMap) -> None:
        sim = self.sim
        for cid in range(sim.cfg.clients):
            rng = stream(sim.cfg.seed, f"client{cid}")
            region = REGION_NAMES[cid % sim.cfg.regions]
            c = ShardClient(cid, region, rng, initial)
            self.all.append(c)
            sim.cluster.at(rng.randint(0, 20), functools.partial(self.issue, c))

    def busy(self) -> bool:
        return any(c.pending is not None or not c.stopped for c in self.all)

    def forget_replica(self, rid: str) -> None:
        """``Faults`` calls this after a crash; a sharded client keeps nothing per node."""

    def next_op(self, c: ShardClient) -> tuple[str, str, dict[str, Any]]:
        rng = c.rng
        cls, kind, _ = rng.choices(OP_WEIGHTS, weights=self.weights)[0]
        key = rng.choice(self.sim.keys[cls])
        value = f"c{c.cid}-{c.n}"
        if kind == "sets.remove":
            mine = c.members.get(key)
            if not mine:
                kind = "sets.add"
            else:
                return kind, key, {"members": [mine.pop(rng.randrange(len(mine)))]}
        if kind in ("sets.add", "hashes.set", "lists.rpush", "counters.incr"):
            c.n += 1
        if kind == "sets.add":
            return kind, key, {"members": [value]}
        if kind == "hashes.set":
            return kind, key, {"fields": {value: c.n}}
        if kind == "lists.rpush":
            return kind, key, {"values": [value]}
        if kind == "counters.incr":
            return kind, key, {"delta": rng.randint(1, 5)}
        return kind, key, {k: v for k, v in READ_OPS[cls].items() if k != "op"}

    def issue(self, c: ShardClient) -> None:
        sim = self.sim
        if sim.cluster.now_ms >= sim.fault_end_ms and sim.driver.finished():
            c.stopped = True  # after the fault phase, and once the last move is done
            return
        kind, key, args = self.next_op(c)
        op = ShardOp(len(sim.ops), c.cid, c.region, kind, key, args, sim.cluster.now_ms)
        sim.ops.append(op)
        c.pending = op
        sim.trace(f"invoke c{c.cid} #{op.idx} {kind} {key} {_js(args)}")
        sim.cluster.at(OP_TIMEOUT_MS, lambda: self.give_up(c, op))
        node = c.map.owner_in(key_slot(key), c.region).id
        self.send(c, op, node, asking=False)

    def send(self, c: ShardClient, op: ShardOp, rid: str, *, asking: bool) -> None:
        if op.status != "pending":
            return
        sim = self.sim
        op.nodes.append(rid + ("?" if asking else ""))
        if "loss" in sim.on and c.rng.random() < sim.cfg.intensities.loss / 4:
            return  # the request is lost: the client times out
        latency = c.rng.randint(*CLIENT_LATENCY_MS)
        attempt = len(op.nodes)
        sim.cluster.at(latency, lambda: self.arrive(c, op, rid, asking, attempt, latency))

    def arrive(
        self, c: ShardClient, op: ShardOp, rid: str, asking: bool, attempt: int, latency: int
    ) -> None:
        sim = self.sim
        node = sim.cluster.nodes[rid]
        if not node.up or op.status != "pending":
            return  # connection refused: the client times out
        epoch = node.epoch
        shard = sim.nodes[rid].cs.shard.id
        token = c.tokens.get(shard)

        def answer(status: str, result: Any, error: Exception | None, out: Any) -> None:
            def back() -> None:
                if node.epoch != epoch or not node.up:
                    return  # crashed before the answer left
                sim.cluster.at(
                    latency, lambda: self.answer(c, op, rid, attempt, shard, result, error, out)
                )

            sim.cluster.at(c.rng.randint(0, 2), back)

        def admitted(error: CrdtkvError | None) -> None:
            if node.epoch != epoch or not node.up:
                return
            if error is not None:
                answer("fail", None, error, None)
                return
            try:
                result = node.core.apply(_op(op), node.now(), asking)
            except NotFound:
                result = {"not_found": True}
            except CrdtkvError as e:
                node.step()
                answer("fail", None, e, None)
                return
            except Exception as e:  # the shell would answer 500: a bug
                sim.internal_error(rid, op, e)
                answer("fail", None, e, None)
                return

            def released(a: Answer) -> None:
                if node.epoch == epoch and node.up:
                    answer("ok", result, a.error, a.token)

            ticket = node.ticket(released)
            out = node.core.finish(ticket, token)
            if out is not None:
                node.forget(ticket)
                answer("ok", result, None, out)
            node.step()

        def on_admit(a: Admit) -> None:
            admitted(a.error)

        ticket = node.ticket(on_admit)
        try:
            served = node.core.admit(ticket, token, 1_000, writes=op.is_write, now_ms=node.now())
        except CrdtkvError as e:
            node.forget(ticket)
            admitted(e)
            return
        if served:
            node.forget(ticket)
            admitted(None)

    def answer(
        self,
        c: ShardClient,
        op: ShardOp,
        rid: str,
        attempt: int,
        shard: str,
        result: Any,
        error: Exception | None,
        token: SessionToken | None,
    ) -> None:
        sim = self.sim
        if op.status != "pending" or attempt != len(op.nodes):
            return
        if isinstance(error, Ask):
            sim.stats["asks"] += 1
            op.redirects += 1
            if op.redirects > REDIRECTS_MAX:
                self.complete(c, op, "fail", None, "too many redirects")
                return
            self.send(c, op, sim.node_of_url(error.url), asking=True)
            return
        if isinstance(error, Moved):
            sim.stats["moved"] += 1
            op.redirects += 1
            if op.redirects > REDIRECTS_MAX:
                self.complete(c, op, "fail", None, "too many redirects")
                return
            target = sim.node_of_url(error.url)
            self.refresh_map(c, target)
            self.send(c, op, target, asking=False)
            return
        if isinstance(error, TryAgain):
            sim.stats["try_again"] += 1
            op.tries += 1
            if op.tries > TRY_AGAIN_MAX:
                self.complete(c, op, "fail", None, "try_again")
                return

            def again() -> None:
                self.send(c, op, c.map.owner_in(key_slot(op.key), c.region).id, asking=False)

            sim.cluster.at(c.rng.randint(*TRY_AGAIN_MS), again)
            return
        if error is not None:
            code = error.code if isinstance(error, CrdtkvError) else "internal"
            self.complete(c, op, "fail", None, code)
            return
        if token is not None:
            c.tokens[shard] = token
        op.node = rid
        self.complete(c, op, "ok", result, None)

    def complete(
        self, c: ShardClient, op: ShardOp, status: str, result: Any, error: str | None
    ) -> None:
        sim = self.sim
        op.status, op.result, op.error = status, result, error
        op.complete_ms = sim.cluster.now_ms
        sim.trace(f"complete c{c.cid} #{op.idx} {status} {_js(result)} {error}")
        if status == "ok":
            if op.kind == "sets.add":
                c.members[op.key].extend(op.args["members"])
            elif op.kind in ("sets.get", "hashes.getall", "lists.range", "counters.get"):
                sim.violations += check_read(sim.ops, op)
        c.pending = None
        sim.cluster.at(c.rng.randint(0, sim.cfg.think_ms_max), lambda: self.issue(c))

    def give_up(self, c: ShardClient, op: ShardOp) -> None:
        if op.status != "pending":
            return
        op.status = "unknown"
        op.complete_ms = self.sim.cluster.now_ms
        self.sim.trace(f"timeout c{c.cid} #{op.idx}")
        c.pending = None
        self.sim.cluster.at(0, lambda: self.issue(c))

    def refresh_map(self, c: ShardClient, rid: str) -> None:
        """GET /v1/cluster/map from ``rid``: adopt it if newer."""
        sim = self.sim
        there = c.rng.randint(*CLIENT_LATENCY_MS)

        def fetch() -> None:
            node = sim.cluster.nodes[rid]
            if not node.up:
                return
            m = sim.nodes[rid].cs.map

            def adopt() -> None:
                if m.epoch > c.map.epoch:
                    c.map = m
                    sim.stats["map_refreshes"] += 1

            sim.cluster.at(there, adopt)

        sim.cluster.at(there, fetch)


def _op(op: ShardOp) -> dict[str, Any]:
    return {"op": op.kind, "key": op.key, **op.args}


# -- the simulation ----------------------------------------------------------------------------
class ShardSimulation:
    """One sharded run: the same phases as ``simulations.sim`` (faults while clients
    work and moves run, then healing and liveness), then ``check_moves``."""

    def __init__(self, cfg: SimConfig, *, metrics: bool = False) -> None:
        self.cfg = cfg
        inten = cfg.intensities
        self.map = build_map(cfg.shards, cfg.regions)
        topology = {n.id: [p.id for p in self.map.peers_of(n.id)] for n in self.map.nodes()}
        self.cluster = SimCluster(
            cfg.replicas,
            cfg.seed,
            fsync=True,
            settings=Settings(log_bytes_max=inten.log_bytes_max),
            tick_ms=cfg.tick_ms,
            max_offset_ms=cfg.max_offset_ms,
            timeout_ms=2 * (150 + inten.jitter_ms) + 200,
            topology=topology,
            connected=False,
        )
        self.ids = self.cluster.ids
        self.rng = stream(cfg.seed, "faults")
        self.on = set(cfg.faults)
        regions = {n.id: REGION_NAMES.index(n.region) for n in self.map.nodes()}
        regions[DRIVER] = 0
        self.cluster.faults = link_faults(
            [*self.ids, DRIVER],
            stream(cfg.seed, "geo"),
            geo="geo" in self.on,
            jitter_ms=inten.jitter_ms,
            loss=inten.loss,
            dup=inten.dup,
            regions=regions,
        )
        self.start_ms = self.cluster.now_ms
        self.fault_end_ms = self.start_ms + cfg.duration_ms
        self.heal_ms = self.start_ms
        self.observer = Observer(self.cluster, self.start_ms, metrics=False)
        self.keys = shard_keys(cfg.keys)
        self.stats: dict[str, Any] = defaultdict(int)
        self.violations: list[checkers.Violation] = []
        self.errors_reported: set[tuple[str, str]] = set()
        self.ops: list[ShardOp] = []
        self.rpc = Rpc(self)
        self.nodes: dict[str, ShardNode] = {}
        self.url_to_node = {n.http: n.id for n in self.map.nodes()}
        for rid, node in self.cluster.nodes.items():
            self.nodes[rid] = ShardNode(self, node, NodeMeta(self.map))
            node.on_open = self._reopen
        self.driver = Driver(self, self.map)
        self.clients = ShardClients(self)
        # What ``simulations.faults.Faults`` reads and writes (it runs unchanged).
        self.epochs = dict.fromkeys(self.ids, 0)
        self.down: set[str] = set()
        self.history = _NoHistory()
        self.lost_dots: set[Any] = set()
        # Faults types its simulation as the one-group one; it reads only what this
        # class provides as well (cfg, ids, rng, on, cluster, down, epochs, stats,
        # violations, trace, history.ops, clients.forget_replica).
        self.faults = Faults(cast("Simulation", self))

    def _reopen(self, node: SimNode) -> None:
        """A node started again: its cluster state from what it persisted."""
        self.nodes[node.rid].open()

    # -- hooks ``Faults`` calls ----------------------------------------------------------------
    def trace(self, line: str) -> None:
        self.observer.trace(line)

    def node_of_url(self, url: str) -> str:
        return self.url_to_node[url]

    def internal_error(self, rid: str, op: ShardOp, e: Exception) -> None:
        self.stats["internal_errors"] += 1
        what = (op.kind, type(e).__name__)
        if what in self.errors_reported:
            return
        self.errors_reported.add(what)
        self.violations.append(
            checkers.Violation(
                "errors",
                "internal-error",
                f"{op.describe()} raised {type(e).__name__}: {e} at {rid}",
                [op.idx],
            )
        )

    # -- messages ------------------------------------------------------------------------------
    def handle(
        self, dst: str, src: str, kind: str, blob: bytes, reply: Callable[[bytes], None]
    ) -> None:
        """A request arrives at ``dst`` (a node, or the driver for nothing)."""
        if dst == DRIVER:
            return
        node = self.cluster.nodes[dst]
        if not node.up:
            return
        sn = self.nodes[dst]
        epoch = node.epoch

        def guarded(out: bytes) -> None:
            if node.epoch == epoch and node.up:
                reply(out)

        if kind == "map":
            sn.on_map(blob, guarded)
        elif kind == "import":
            sn.on_import(blob, guarded)
        else:
            mv = MoveSpec.parse(blob)
            {"bulk": sn.on_bulk, "handover": sn.on_handover, "drop": sn.on_drop}[kind](mv, guarded)
        node.step()

    # -- periodic work -------------------------------------------------------------------------
    def forward_tick(self) -> None:
        for sn in self.nodes.values():
            sn.forward()
            if sn.node.up:
                sn.node.step()
        self.cluster.at(FORWARD_TICK_MS, self.forward_tick)

    def schedule_driver_crashes(self) -> None:
        """With ``crash``: the reshard tool dies now and then, and starts again."""
        if "crash" not in self.on:
            return
        rng = stream(self.cfg.seed, "driver-crashes")
        d = self.cfg.duration_ms
        for _ in range(rng.randint(1, 3)):
            at, down = rng.randint(0, d), rng.randint(10, 800)
            self.cluster.at(at, functools.partial(self.driver.crash, down))

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        from simulations.sim import RunResult

        wall = time.perf_counter()
        cfg = self.cfg
        self.trace(f"config {_js(cfg.to_json())}")
        converge_ms: int | None = None
        try:
            self.faults.schedule()
            self.schedule_driver_crashes()
            self.clients.start(self.map)
            self.cluster.at(0, self.forward_tick)
            self.cluster.at(0, self.driver.tick)
            self.cluster.run_for(cfg.duration_ms)
            self.heal()
            converge_ms = self.liveness()
            self.violations += check_moves(self.ops, self.final(converge_ms))
        except Exception as e:
            where = traceback.extract_tb(e.__traceback__)[-1]
            self.violations.append(
                checkers.Violation(
                    "errors",
                    "crashed",
                    f"the run stopped at {self.cluster.now_ms - self.start_ms} ms: "
                    f"{type(e).__name__}: {e} ({where.filename}:{where.lineno})",
                )
            )
            self.trace(f"crashed {type(e).__name__}")
        result = RunResult(
            cfg.seed, cfg, self.violations, self.observer.hexdigest(), self._stats(converge_ms)
        )
        result.wall_s = time.perf_counter() - wall
        return result

    def heal(self) -> None:
        c = self.cluster
        c.heal()
        c.faults = {
            k: LinkFaults(f.latency_ms, min(f.jitter_ms, 5), 0.0, 0.0) for k, f in c.faults.items()
        }
        bound = self.cfg.skew_bound_ms()
        for rid, node in c.nodes.items():
            node.skew_ms = max(-bound, min(bound, node.skew_ms))
            if not node.up:
                node.up = True
                self.down.discard(rid)
        if not self.driver.up:
            self.driver.up = True
        self.trace("heal")
        self.heal_ms = c.now_ms

    def liveness(self) -> int | None:
        """Run until the moves are done, nothing is left to copy or forward, and each
        shard's replicas converged; None if that never happens."""
        c = self.cluster
        while c.now_ms - self.heal_ms < self.cfg.liveness_ms:
            c.run_for(LIVENESS_STEP_MS)
            if self.clients.busy() or not self.driver.finished():
                continue
            if all(sn.idle() for sn in self.nodes.values()) and self.converged():
                return c.now_ms - self.heal_ms
        return None

    def shard_nodes(self) -> dict[str, list[SimNode]]:
        out: dict[str, list[SimNode]] = {}
        for s in self.map.shards:
            out[s.id] = [self.cluster.nodes[n.id] for n in s.replicas]
        return out

    def converged(self) -> bool:
        for nodes in self.shard_nodes().values():
            first = nodes[0]
            state = first.encoded_state()
            for n in nodes[1:]:
                if n.encoded_state() != state or n.replica.applied != first.replica.applied:
                    return False
            if any(n.rep.lag_ops(p) for n in nodes for p in n.peer_ids):
                return False
        return True

    def final(self, converge_ms: int | None) -> MoveFinal:
        final_map = self.driver.map
        f = MoveFinal(
            map=final_map,
            converged=converge_ms is not None,
            liveness_ms=self.cfg.liveness_ms,
            moves_planned=self.cfg.moves,
            moves_done=sum(1 for r in self.driver.records if r.phase == "done"),
        )
        for rid, node in self.cluster.nodes.items():
            sn = self.nodes[rid]
            now = node.now()
            f.epochs[rid] = sn.cs.epoch
            f.shard_of[rid] = sn.cs.shard.id
            f.region_of[rid] = sn.cs.region
            f.names[rid] = sorted(node.replica.names)
            reads: dict[str, Any] = {}
            for cls, keys in self.keys.items():
                for key in keys:
                    try:
                        reads[key] = apply_op(node.replica, {**READ_OPS[cls], "key": key}, now)
                    except NotFound:
                        reads[key] = {"not_found": True}
            f.reads[rid] = reads
        for sid, nodes in self.shard_nodes().items():
            states = [n.encoded_state() for n in nodes]
            f.shard_converged[sid] = all(s == states[0] for s in states[1:])
        return f

    def _stats(self, converge_ms: int | None) -> dict[str, Any]:
        s = dict(self.stats)
        ops = self.ops
        s["ops"] = len(ops)
        for status in ("ok", "fail", "unknown"):
            s[f"ops_{status}"] = sum(1 for o in ops if o.status == status)
        s["acked_writes"] = sum(1 for o in ops if o.status == "ok" and o.is_write)
        s["sim_ms"] = self.cluster.now_ms - self.start_ms
        s["converge_ms"] = converge_ms
        s["partition_ms_max"] = max((length for _, length in self.faults.partitions), default=0)
        s["messages"] = self.cluster.messages_on_wire
        s["bytes"] = self.cluster.bytes_on_wire
        s["state_syncs"] = sum(
            p.syncs_completed for n in self.cluster.nodes.values() for p in n.rep.peers.values()
        )
        s["moves_planned"] = self.cfg.moves
        s.setdefault("moves_done", 0)
        s["final_epoch"] = self.driver.map.epoch
        return s


class _NoHistory:
    """What ``Faults`` reads of the one-group history: no op there has a dot to check
    (the durability of a crash is checked on the node's applied dots only)."""

    ops: list[Any] = []


def run_sharded(cfg: SimConfig) -> RunResult:
    return ShardSimulation(cfg).run()


def _js(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)

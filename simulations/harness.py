"""A deterministic in-process cluster: real replica cores, simulated everything else.

Each ``SimNode`` runs the production core (``Replica``, ``apply_op``,
``Replication``, ``persist``) over a ``MemoryStorage`` that can lose its
unsynced suffix.  ``SimNetwork`` delivers request/reply pairs between nodes
on a virtual clock with per-link latency and jitter, loss, duplication,
reordering and partitions.  One ``random.Random`` drawn from the seed decides
every fault, so a run is reproduced by its seed.  No sockets, threads or
real time.

Each node reads its own physical clock, ``sim.now_ms + node.skew_ms``
(``SimCluster.node_now``): skew 0 (the default) is the shared virtual clock.
Hooks for the simulator (``simulations.sim``), all optional: ``SimNode.observers``
see every group commit, ``SimCluster.on_send`` every request before it leaves,
``SimCluster.tracer`` every message sent, delivered or dropped (the trace hash).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts import codec
from crdtkv.errors import CrdtkvError
from crdtkv.node.core import Durable, NodeCore, Ready, Reply, Write
from crdtkv.replica.keyspace import LogEntry
from crdtkv.replica.persist import Checkpointer, load_replica
from crdtkv.storage.memory import MemoryStorage
from replication import messages
from replication.protocol import Replication, Settings

__all__ = ["LinkFaults", "SimCluster", "SimNode"]

# How long a storage write takes (a batch is on disk only once it completes;
# a crash before that loses it): synced writes pay an fsync.
SYNC_WRITE_MS = (1, 4)
WRITE_MS = (0, 1)
ACK_WAIT_MS_MAX = 1_000  # SimNode.apply's bound on waiting for its write
# Log truncation (keys are never collected): more often than in production (1 s), so
# that short runs exercise truncation, and restarts right after it.
SIM_COLLECT_INTERVAL_MS = 100


Waiter = Callable[[Any], None]


class SimNode:
    """One replica: the production node core over in-memory storage, with
    simulated storage latency.  It carries out the core's actions the way the
    asyncio shell does (``crdtkv.node.aio``), on the virtual clock."""

    def __init__(
        self,
        rid: str,
        peers: list[str],
        storage: MemoryStorage,
        incarnation: str,
        *,
        cluster: SimCluster,
        fsync: bool = True,
        settings: Settings | None = None,
        max_offset_ms: int = 500,
    ) -> None:
        self.rid = rid
        self.peer_ids = peers
        self.storage = storage
        self.cluster = cluster
        self.fsync = fsync
        self.settings = settings
        self.max_offset_ms = max_offset_ms
        self.up = True
        self.skew_ms = 0  # this node's physical clock minus the simulation's clock
        # Called after every storage write with the log entries it made durable.
        self.observers: list[Callable[[SimNode, list[LogEntry], int], None]] = []
        self.boots = 0  # starts of this node: the replication core's boot number
        self.epoch = 0  # bumped by every start: actions of an earlier life are dropped
        self._waiters: dict[int, Waiter] = {}
        self._tickets = 0
        # A fault armed to strike while the next storage write is in flight.
        self.on_next_write: Callable[[], None] | None = None
        # Called after every start (the first and each restart) with the new core:
        # a sharded run sets ``core.cluster`` from what the node persisted.
        self.on_open: Callable[[SimNode], None] | None = None
        self._open(incarnation)

    def _open(self, incarnation: str) -> None:
        now = self.cluster.node_now(self.rid) if self.rid in self.cluster.nodes else 0
        self.replica = load_replica(
            self.storage, self.rid, incarnation, self.max_offset_ms, wal=not self.fsync
        )
        self.boots += 1
        self.epoch += 1
        self._waiters = {}
        self.rep = Replication(self.replica, self.peer_ids, self.settings, boot=self.boots)
        self.core = NodeCore(
            self.replica,
            durability="fsync" if self.fsync else "wal",
            checkpointer=Checkpointer(dirty_keys_max=500, log_entries_max=2_000),
            collect_interval_ms=SIM_COLLECT_INTERVAL_MS,
            now_ms=now,
        )
        self.core.attach(self.rep)
        if self.on_open is not None:
            self.on_open(self)

    def now(self) -> int:
        return self.cluster.node_now(self.rid)

    def ticket(self, waiter: Waiter) -> int:
        """A new ticket for an event whose action ``waiter`` takes."""
        self._tickets += 1
        self._waiters[self._tickets] = waiter
        return self._tickets

    def forget(self, ticket: int) -> None:
        self._waiters.pop(ticket, None)

    def apply(self, op: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
        """Apply an op outside any session (tests); its write starts at once and
        completes as simulated time passes."""
        result = self.core.apply(op, self.now() if now_ms is None else now_ms)
        self.step()
        return result

    def apply_acked(self, op: dict[str, Any]) -> dict[str, Any]:
        """``apply``, then run the clock until the op is durable, as a client's
        acknowledgement would (tests)."""
        result = self.apply(op)
        target = self.replica.log_pos
        for _ in range(ACK_WAIT_MS_MAX):
            if self.core.durable_pos >= target or not self.up:
                break
            self.cluster.run_for(1)
        return result

    def commit_now(self) -> None:
        """Write everything pending at once, with no simulated time passing (tests)."""
        self.core.flush(self.now())
        for a in self.core.take_actions():
            if not isinstance(a, Write):
                raise AssertionError(f"commit_now with {a!r} pending")
            self.storage.write(a.batch, sync=a.sync)
            self.core.write_done(self.now())
        self.run_actions()

    def step(self) -> None:
        """After an event: start a group commit if none is in flight, carry out actions."""
        self.core.flush(self.now())
        self.run_actions()

    def tick(self) -> None:
        self.core.tick(self.now())
        self.run_actions()

    def run_actions(self) -> None:
        for a in self.core.take_actions():
            if isinstance(a, Write):
                self._start_write(a)
            elif isinstance(a, Durable):
                for observe in self.observers:
                    observe(self, a.entries, self.now())
            else:
                waiter = self._waiters.pop(a.ticket, None)
                if waiter is not None:
                    waiter(a)

    def _start_write(self, w: Write) -> None:
        epoch = self.epoch
        lo, hi = SYNC_WRITE_MS if w.sync else WRITE_MS
        delay = self.cluster.rng.randint(lo, hi)

        def done() -> None:
            if self.epoch != epoch:
                return  # crashed while writing: the batch never reached the disk
            self.storage.write(w.batch, sync=w.sync)
            self.core.write_done(self.now())
            self.run_actions()

        self.cluster.at(delay, done)
        strike, self.on_next_write = self.on_next_write, None
        if strike is not None and delay > 0:
            self.cluster.at(self.cluster.rng.randint(0, delay - 1), strike)

    def crash(self, keep_unsynced: int | None, incarnation: str) -> None:
        """Power loss: unsynced writes beyond ``keep_unsynced`` batches are gone."""
        self.storage.crash(keep_unsynced)
        self._open(incarnation)

    def wipe(self, incarnation: str) -> None:
        """The data directory is lost: start empty under a new incarnation."""
        self.storage.wipe()
        self._open(incarnation)

    def restore(self, copy: MemoryStorage, incarnation: str) -> None:
        """The process dies and starts on ``copy``, an older copy of its data
        directory (``SimCluster.copy_storage``), as after a restore from a backup."""
        self.storage = copy
        self._open(incarnation)

    def encoded_state(self) -> dict[tuple[str, str], bytes]:
        return {k: codec.pack(v) for k, v in sorted(self.replica.states.items())}


@dataclass
class LinkFaults:
    latency_ms: int = 5  # one way
    jitter_ms: int = 2
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice


@dataclass(order=True)
class _Event:
    at_ms: int
    seq: int
    action: Callable[[], None] = field(compare=False)


class SimCluster:
    """N nodes, a virtual clock, and a network between them.  Replicas talk only
    to their peers (``peers``: a full mesh unless a topology is given)."""

    def __init__(
        self,
        n: int,
        seed: int,
        *,
        fsync: bool = True,
        settings: Settings | None = None,
        faults: LinkFaults | None = None,
        timeout_ms: int = 200,
        tick_ms: int = 5,
        max_offset_ms: int = 500,
        topology: dict[str, list[str]] | None = None,
        connected: bool = True,
    ) -> None:
        """``topology``: each replica's peers (symmetric and connected); None,
        the default, is a full mesh.  ``connected=False`` accepts a topology of
        several groups that never replicate with each other (the shards of a
        sharded run, ``simulations.shards``)."""
        self.rng = random.Random(seed)
        self.now_ms = 1_700_000_000_000
        self.ids = [f"r{i}" for i in range(n)]
        self.peers = self._checked_topology(topology, connected)
        self.nodes: dict[str, SimNode] = {}
        for rid in self.ids:
            self.nodes[rid] = SimNode(
                rid,
                list(self.peers[rid]),
                MemoryStorage(),
                self._incarnation(),
                cluster=self,
                fsync=fsync,
                settings=settings,
                max_offset_ms=max_offset_ms,
            )
        self.faults: dict[tuple[str, str], LinkFaults] = {
            (a, b): faults or LinkFaults() for a in self.ids for b in self.ids if a != b
        }
        self.blocked: set[tuple[str, str]] = set()  # one-way partitions
        self.timeout_ms = timeout_ms
        self.tick_ms = tick_ms
        self._events: list[_Event] = []
        self._seq = 0
        self._outstanding: dict[tuple[str, str], int] = {}  # (from, to) -> request id
        self._req_ids = 0
        self.bytes_on_wire = 0
        self.messages_on_wire = 0
        self.trace: list[str] = []
        # Optional hooks (see the module docstring).
        self.on_send: list[Callable[[str, str, messages.Message, bytes], None]] = []
        self.tracer: Callable[[str, str, str, bytes], None] | None = None

    def _checked_topology(
        self, topology: dict[str, list[str]] | None, connected: bool = True
    ) -> dict[str, list[str]]:
        ids = self.ids
        if topology is None:
            return {rid: [p for p in ids if p != rid] for rid in ids}
        if sorted(topology) != sorted(ids):
            raise ValueError(f"a topology names every replica once: {sorted(topology)} != {ids}")
        for rid, peers in topology.items():
            for p in peers:
                if p == rid or p not in topology or rid not in topology[p]:
                    raise ValueError(f"topology link {rid}-{p} is not symmetric between replicas")
        seen, todo = {ids[0]}, [ids[0]]
        while todo and connected:
            for p in topology[todo.pop()]:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        if connected and len(seen) != len(ids):
            unreached = sorted(set(ids) - seen)
            raise ValueError(f"topology is not connected: {unreached} unreachable from {ids[0]}")
        return {rid: sorted(set(topology[rid]), key=ids.index) for rid in ids}

    def node_now(self, rid: str) -> int:
        """Node ``rid``'s physical clock: the virtual clock plus its skew."""
        node = self.nodes.get(rid)
        return self.now_ms + (node.skew_ms if node is not None else 0)

    def _incarnation(self) -> str:
        return f"{self.rng.getrandbits(32):08x}"

    # -- scheduling ------------------------------------------------------------------------
    def at(self, delay_ms: int, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(self.now_ms + delay_ms, self._seq, action))

    def run_for(self, duration_ms: int) -> None:
        end = self.now_ms + duration_ms
        next_tick = self.now_ms
        while True:
            upcoming = self._events[0].at_ms if self._events else end + 1
            if next_tick <= min(upcoming, end):
                self.now_ms = next_tick
                self._tick()
                next_tick += self.tick_ms
                continue
            if upcoming > end:
                break
            ev = heapq.heappop(self._events)
            self.now_ms = ev.at_ms
            ev.action()
        self.now_ms = end

    def _tick(self) -> None:
        for rid, node in self.nodes.items():
            if not node.up:
                continue
            node.tick()
            for peer in node.peer_ids:
                self._maybe_send(rid, peer)

    # -- the network -------------------------------------------------------------------------
    def partition(self, a: str, b: str, *, both_ways: bool = True) -> None:
        self.blocked.add((a, b))
        if both_ways:
            self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    def _maybe_send(self, src: str, dst: str) -> None:
        node = self.nodes[src]
        out = node.rep.next_message(dst, self.now_ms + node.skew_ms)
        if out is None:
            return
        msg, ready_pos = out
        if ready_pos > node.core.durable_pos:  # never ship what a crash may still take back
            epoch = node.epoch

            def ready(a: Ready) -> None:
                if node.epoch != epoch or not node.up:
                    return
                if a.error is not None:
                    node.rep.request_failed(dst)
                else:
                    self._send(src, dst, msg)

            node.core.wait_durable(node.ticket(ready), ready_pos)
            node.run_actions()
            return
        self._send(src, dst, msg)

    def _send(self, src: str, dst: str, msg: messages.Message) -> None:
        self._req_ids += 1
        rid = self._req_ids
        self._outstanding[(src, dst)] = rid
        blob = messages.encode(msg)
        for hook in self.on_send:
            hook(src, dst, msg, blob)
        self.at(self.timeout_ms, lambda: self._timeout(src, dst, rid))
        self._deliver(src, dst, blob, lambda b: self._on_request(src, dst, rid, b))

    def deliver(self, src: str, dst: str, blob: bytes, handler: Callable[[bytes], None]) -> None:
        """Send ``blob`` from ``src`` to ``dst`` over the simulated link (its latency,
        loss, duplication, partitions): ``handler(blob)`` runs at each arrival.  For
        messages besides replication (a sharded run's map pushes and slot imports)."""
        self._deliver(src, dst, blob, handler)

    def _deliver(self, src: str, dst: str, blob: bytes, handler: Callable[[bytes], None]) -> None:
        f = self.faults[(src, dst)]
        self.bytes_on_wire += len(blob)
        self.messages_on_wire += 1
        tracer = self.tracer
        if (src, dst) in self.blocked or self.rng.random() < f.loss:
            if tracer is not None:
                tracer("drop", src, dst, blob)
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        if tracer is not None:
            tracer("send" if copies == 1 else "send2", src, dst, blob)
        for _ in range(copies):
            delay = f.latency_ms + self.rng.randint(0, f.jitter_ms)
            self.at(delay, lambda: self._arrive(src, dst, blob, handler))

    def _arrive(self, src: str, dst: str, blob: bytes, handler: Callable[[bytes], None]) -> None:
        if self.tracer is not None:
            self.tracer("recv", src, dst, blob)
        handler(blob)

    def _on_request(self, src: str, dst: str, rid: int, blob: bytes) -> None:
        node = self.nodes[dst]
        if not node.up:
            return
        epoch = node.epoch

        def answer(a: Reply) -> None:
            if node.epoch != epoch or not node.up:
                return  # crashed before the reply left
            out = b"" if a.reply is None else messages.encode(a.reply)
            self._deliver(dst, src, out, lambda b: self._on_reply(src, dst, rid, b))

        ticket = node.ticket(answer)
        try:
            node.core.peer_message(ticket, src, messages.decode(blob), node.now())
        except CrdtkvError:
            # The HTTP shell answers an error status (e.g. a timestamp too far
            # ahead of this clock); the sender counts the request as failed.
            node.forget(ticket)
            self._deliver(dst, src, b"", lambda b: self._on_reply(src, dst, rid, b))
        node.step()  # durable before the reply leaves

    def _on_reply(self, src: str, dst: str, rid: int, blob: bytes) -> None:
        node = self.nodes[src]
        if not node.up or self._outstanding.get((src, dst)) != rid:
            return  # a duplicate, or the reply to a request we gave up on
        del self._outstanding[(src, dst)]
        if not blob:  # an error answer
            node.rep.request_failed(dst)
            return
        node.core.peer_reply(dst, messages.decode(blob), node.now())
        node.step()

    def _timeout(self, src: str, dst: str, rid: int) -> None:
        if self._outstanding.get((src, dst)) == rid:
            del self._outstanding[(src, dst)]
            self.nodes[src].rep.request_failed(dst)

    # -- faults on nodes --------------------------------------------------------------------
    def crash(self, rid: str, keep_unsynced: int | None = None) -> None:
        node = self.nodes[rid]
        # Every start is a new incarnation (load_replica), as in production.
        node.crash(keep_unsynced, self._incarnation())
        self._forget(rid)

    def wipe(self, rid: str) -> None:
        self.nodes[rid].wipe(self._incarnation())
        self._forget(rid)

    def copy_storage(self, rid: str) -> MemoryStorage:
        """A copy of node ``rid``'s data directory as a crash now would leave it."""
        copy = deepcopy(self.nodes[rid].storage)
        copy.crash()
        return copy

    def restore(self, rid: str, copy: MemoryStorage) -> None:
        """Node ``rid`` dies and starts on ``copy`` (see ``copy_storage``)."""
        self.nodes[rid].restore(deepcopy(copy), self._incarnation())
        self._forget(rid)

    def _forget(self, rid: str) -> None:
        for key in [k for k in self._outstanding if rid in k]:
            del self._outstanding[key]
            if key[1] == rid:
                self.nodes[key[0]].rep.request_failed(rid)

    # -- checks --------------------------------------------------------------------------------
    def converged(self) -> bool:
        states = [n.encoded_state() for n in self.nodes.values()]
        return all(s == states[0] for s in states[1:])

    def settle(self, max_ms: int = 60_000, step_ms: int = 100) -> int:
        """Run until every replica holds the same state; returns the time it took."""
        start = self.now_ms
        while self.now_ms - start < max_ms:
            self.run_for(step_ms)
            if self.converged() and all(
                n.rep.lag_ops(p) == 0 for n in self.nodes.values() for p in n.peer_ids
            ):
                return self.now_ms - start
        raise AssertionError(f"no convergence within {max_ms} ms of simulated time")

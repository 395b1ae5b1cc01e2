"""Delta-state anti-entropy: the per-peer protocol core.  Pure: no I/O, time passed in.

Theory of operation
===================

Based on Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), Algorithm 2, with the back-propagation and
redundant-state optimisations of Enes et al. (arXiv 1803.02750).

The loop, as both drivers (the aiohttp shell and the simulator) run it::

    msg, ready_pos = rep.next_message(peer, now)        # None: nothing to say
    await node.durable(ready_pos)                       # never ship what may be lost
    reply = <send msg to peer; peer runs rep.receive(me, msg, now), makes
             its changes durable, and answers>
    rep.receive_reply(peer, reply, now)                 # or rep.request_failed(peer)

*Log.*  Every operation applied here, local or received, becomes one log
entry (a delta group with its replica-level dot) once it is durable
(``on_durable``).  The log is bounded in bytes.

*Push.*  Per peer we keep ``acked``: the highest position of our log the
peer has durably applied.  ``next_message`` sends the entries after it, in
order, bounded in entries and bytes, leaving out entries that came from that
peer or were minted by it (no back-propagation) and entries whose dot the
peer's last reported applied vector already covers (redundant state).  The
receiver joins only groups whose dot it has not applied, appends them to its
own log (so they travel on), makes them durable, then replies with the
position it reached; acknowledgements take the maximum, so duplicates and
reordering are harmless.  An idle link still exchanges a heartbeat every
``heartbeat_ms`` so applied vectors stay fresh.

*Applied vectors.*  Every message carries its sender's applied vector.  From
them: replication lag per peer, and causal stability, the pointwise minimum
over all replicas.  Register tombstones covered by it are dropped (only when
we have also applied everything any peer reported, so no write concurrent
with a tombstone is still on its way here).  Log entries acknowledged by
every peer are truncated.

*Catch-up.*  A peer whose ``acked`` is below the retained log (new, wiped,
or away longer than the log keeps) gets a state sync instead: we record our
applied context and log position and open a copy-on-write snapshot of the
keyspace, compare bucket digests, then per-key hashes of differing buckets,
then ship the snapshot states of keys that differ, in bounded chunks.  The
shipped states therefore carry exactly the effects of the recorded context,
no more (a state shipped as it is *now* would carry effects of dots the
context lacks, and the receiver would show them without a vector covering
them: B4).  The receiver buffers the states and applies nothing until
``SyncDone``; then, in one step, it joins the states, joins our context,
notes its register tombstones (stamped with a vector that covers the
deletes: B6), and makes it all durable before replying; only then does
``acked`` move, to the recorded position.  A receiver that restarted during
the run has lost its buffer: it answers any step of a run it does not know
with ``restart`` (and ``SyncDone`` names how many states it must hold), so
it never claims dots whose effects it lost (B3).  A run is known by its id and
the sender's incarnation, and ids are unique across the sender's restarts
too (``boot``): a sender that crashed mid-run (keeping its incarnation)
starts its next run under a new id, so the receiver drops what it buffered
for the dead run, whose snapshot may predate deletes collected since (B15).

*Dots learnt by sync.*  A state sync gives the receiver dots without log
entries, which it therefore never pushes.  It remembers an upper bound of
them (``Replica.synced_vv``, the gap-free part of every merged context).
Towards a peer whose applied vector does not cover that bound, it holds its
pushes (a later write would otherwise reach the peer before the writes it
depends on: B4) and, if the peer still lacks them after
``orphan_grace_ms`` (it may get them from their origin meanwhile), catches
it up by a state sync of its own (otherwise updates whose origin lost its
log, or its data, would never reach it: B2).

*Durability.*  A receiver replies only after what it applied is durable,
and a sender ships only what is durable on its side (``ready_pos``); a
crash can therefore lose neither an acknowledged delta nor reissue a dot a
peer has seen.

*Incarnations.*  A peer whose incarnation changes lost its data: its
``acked`` restarts from 0 and it is caught up by a state sync, always, even
when our log still reaches back to 0: a push leaves out what the peer
minted or sent us, and the new incarnation has none of it.  For the same
reason every push names the incarnation it is meant for, and a receiver
applies none meant for another (a sender that has not yet heard of the
wipe would otherwise deliver later writes without the ones they depend on).

*Stability.*  Register tombstones are dropped once the delete is applied
everywhere *and* no replica may still ship an older state of the register:
a state sync ships a snapshot from its start, and in ``wal`` durability a
power loss can roll a replica back to its last synced write.  So every
replica reports a ``floor``: the meet of its applied vector as of its last
synced write and the contexts of the snapshots it may still ship; stability
is the meet of every replica's floor.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, VersionVector, vv_dominates, vv_join, vv_meet
from crdtkv.errors import BadRequest, CodecError, CrdtkvError, Unauthorized
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import NAMESPACES, DeltaGroup, Key, LogEntry, Replica, timestamps_of
from replication.digest import BUCKETS, KeyspaceDigest, bucket_of
from replication.log import DeltaLog, ShippedEntry
from replication.messages import (
    Header,
    Message,
    Push,
    Reply,
    SyncDigest,
    SyncDone,
    SyncKeys,
    SyncStates,
)

__all__ = ["SYNC_IDS_PER_BOOT", "PeerState", "Replication", "Settings"]


SYNC_IDS_PER_BOOT = 2**31  # sync run ids of one start: boot * 2**31 + 1, + 2, ...


@dataclass(frozen=True)
class Settings:
    push_entries_max: int = 2_000  # entries in one push
    push_bytes_max: int = 1024 * 1024  # encoded group bytes in one push
    heartbeat_ms: int = 1_000  # an idle link still exchanges applied vectors this often
    log_bytes_max: int = 64 * 1024 * 1024  # retained log; beyond it peers need a state sync
    sync_keys_max: int = 5_000  # key hashes in one SyncKeys
    sync_bytes_max: int = 1024 * 1024  # state bytes in one SyncStates
    reachable_ms: int = 5_000  # a peer not heard from for this long is unreachable
    # A peer that lacks dots we learnt by state sync: pushes wait this long for
    # it to get them elsewhere, then we catch it up by a state sync.
    orphan_grace_ms: int = 1_000


class Stage(Enum):
    DIGEST = "digest"
    KEYS = "keys"
    STATES = "states"
    DONE = "done"


@dataclass
class SyncRun:
    sync_id: int  # identifies the run in replies
    upto: int  # our log position when the run started: acked moves here at the end
    ctx: CausalContext  # our applied context when the run started
    snapshot: dict[Key, CRDT | None]  # keys changed since the start, as they were then
    stage: Stage = Stage.DIGEST
    buckets: list[int] = field(default_factory=list)  # differing buckets still to compare
    want: list[Key] = field(default_factory=list)  # keys the peer asked for, not yet shipped
    # What the request in flight carries, to put back if it is lost: a lost
    # SyncKeys or SyncStates must not drop buckets or keys from the run.
    inflight_buckets: list[int] = field(default_factory=list)
    inflight_want: list[Key] = field(default_factory=list)
    inflight_shipped: list[Key] = field(default_factory=list)  # keys with a state in flight
    shipped: set[Key] = field(default_factory=set)  # keys whose states the peer acknowledged
    keys_compared: int = 0
    states_shipped: int = 0
    state_bytes: int = 0


@dataclass
class Incoming:
    """A catch-up run we are receiving: states are buffered until ``SyncDone``."""

    sync_id: int
    incarnation: str  # the sender's
    states: dict[Key, CRDT] = field(default_factory=dict)


@dataclass
class PeerState:
    peer_id: str
    acked: int = 0  # highest position of our log the peer durably applied
    incarnation: str = ""  # the peer's incarnation as last seen
    applied: VersionVector = field(default_factory=dict)  # the peer's applied vector, last seen
    floor: VersionVector = field(default_factory=dict)  # its stability floor (Header.floor)
    last_heard_ms: int | None = None
    last_sent_ms: int | None = None
    inflight: bool = False  # one request at a time per peer
    sync: SyncRun | None = None
    failures: int = 0  # consecutive failed requests (the shell's backoff)
    # The peer lost its data (new incarnation): catch it up by a state sync
    # before any push.  Our log may still hold entries it minted or sent us
    # under its old incarnation, which a push leaves out (no back-propagation).
    resync: bool = False
    held_since_ms: int | None = None  # pushes held: the peer lacks dots we learnt by sync
    # metrics
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    syncs_started: int = 0
    syncs_completed: int = 0
    sync_states_shipped: int = 0
    sync_bytes_shipped: int = 0


class Replication:
    def __init__(
        self,
        replica: Replica,
        peers: list[str],
        settings: Settings | None = None,
        now_ms: int = 0,
        *,
        boot: int,
    ) -> None:
        """``boot``: a number in [1, 2**31) that differs between two starts of
        this replica (the HTTP shell draws it at random, the simulator counts).
        It makes sync run ids unique across restarts: a receiver that still
        buffers states of a run from before our crash must not take a new run
        with the same id for its continuation (B15)."""
        if replica.replica_id in peers:
            raise ValueError("a replica is not its own peer")
        if not 1 <= boot < SYNC_IDS_PER_BOOT:
            raise ValueError(f"boot must be in [1, {SYNC_IDS_PER_BOOT})")
        self.replica = replica
        self.settings = settings or Settings()
        self.log = DeltaLog(self.settings.log_bytes_max, floor=0)
        self.peers: dict[str, PeerState] = {}
        for p in peers:
            acked, inc = replica.peer_meta.get(p, [0, ""])
            n = int(acked)  # type: ignore[call-overload]
            # A pending resync is persisted as acked -1 (see _heard).
            self.peers[p] = PeerState(p, max(0, n), str(inc), resync=n < 0)
        self.durable_pos = replica.log_pos
        self._sync_ids = itertools.count(boot * SYNC_IDS_PER_BOOT + 1)
        self.digest = KeyspaceDigest()
        self.incoming: dict[str, Incoming] = {}
        self.tombstones_dropped = 0
        self.syncs_restarted = 0  # runs a receiver did not know (it restarted)
        self._load_log(replica.loaded_log, now_ms)
        replica.loaded_log = []

    # -- the log ----------------------------------------------------------------------
    def _load_log(self, entries: list[LogEntry], now_ms: int) -> None:
        first = entries[0].pos if entries else self.replica.log_pos + 1
        self.log = DeltaLog(self.settings.log_bytes_max, floor=first - 1)
        self.on_durable(entries, now_ms)

    def on_durable(self, entries: list[LogEntry], now_ms: int) -> None:
        """The node's group commit made these entries durable."""
        for e in entries:
            blob = rec.pack(rec.encode_group(e.group))
            self.log.append(ShippedEntry(e.pos, e.origin, e.group.dot, blob, now_ms))
            self.durable_pos = max(self.durable_pos, e.pos)

    def log_floor(self) -> int:
        """Entries at or below this are acknowledged by every peer (may be deleted)."""
        floor = self.durable_pos
        for p in self.peers.values():
            floor = min(floor, p.acked)
        return floor

    # -- what to send ----------------------------------------------------------------------
    def header(self) -> Header:
        r = self.replica
        applied = dict(r.applied.vv)
        floor = self._floor()
        return Header(r.replica_id, r.incarnation, applied, None if floor == applied else floor)

    def _floor(self) -> VersionVector:
        """Our durable applied vector, lowered to the contexts of the snapshots
        we may still ship: no tombstone newer than it may be collected anywhere."""
        r = self.replica
        runs = [p.sync.ctx.vv for p in self.peers.values() if p.sync is not None]
        if not runs and r.durable_vv == r.applied.vv:
            return r.applied.vv
        return vv_meet([r.applied.vv, r.durable_vv, *runs])

    def next_message(self, peer_id: str, now_ms: int) -> tuple[Message, int] | None:
        """The next request for ``peer_id`` and the log position that must be
        durable before it is sent; None when there is nothing to say."""
        peer = self.peers[peer_id]
        if peer.inflight:
            return None
        hold = False
        if peer.sync is None:
            if peer.resync or not self.log.covers(peer.acked):
                self._start_sync(peer)
            elif not vv_dominates(peer.applied, self.replica.synced_vv):
                if peer.held_since_ms is None:
                    peer.held_since_ms = now_ms
                if now_ms - peer.held_since_ms >= self.settings.orphan_grace_ms:
                    self._start_sync(peer)
                else:
                    hold = True  # heartbeats only, until the peer has them
            else:
                peer.held_since_ms = None
        if peer.sync is not None:
            out = self._sync_step(peer)
        else:
            out = self._push(peer, now_ms, hold=hold)
        if out is not None:
            peer.inflight = True
            peer.last_sent_ms = now_ms
            peer.messages_sent += 1
        return out

    def _push(self, peer: PeerState, now_ms: int, *, hold: bool) -> tuple[Message, int] | None:
        s = self.settings
        entries: list[tuple[int, bytes]] = []
        size = 0
        upto = peer.acked
        for e in () if hold else self.log.after(peer.acked):
            if e.pos > self.durable_pos:
                break
            if len(entries) >= s.push_entries_max or (
                entries and size + len(e.blob) > s.push_bytes_max
            ):
                break
            upto = e.pos
            if self._peer_has(peer, e):
                continue
            entries.append((e.pos, e.blob))
            size += len(e.blob)
        heartbeat_due = peer.last_sent_ms is None or now_ms - peer.last_sent_ms >= s.heartbeat_ms
        if not entries and upto == peer.acked and not heartbeat_due:
            return None
        return Push(self.header(), peer.acked, upto, tuple(entries), peer.incarnation), upto

    def _peer_has(self, peer: PeerState, e: ShippedEntry) -> bool:
        """Whether the peer's *current* incarnation has the entry: it minted it,
        sent it to us, or reported it applied.  What an older incarnation of
        the peer minted or sent is gone with its data, and is shipped again."""
        actor, seq = e.dot
        current = f"{peer.peer_id}~{peer.incarnation}"
        if actor == current or e.origin == current:
            return True
        return seq <= peer.applied.get(actor, 0)

    # -- catch-up (sender side) ----------------------------------------------------------
    def _start_sync(self, peer: PeerState) -> None:
        r = self.replica
        snapshot: dict[Key, CRDT | None] = {}
        r.snapshots.append(snapshot)
        peer.sync = SyncRun(next(self._sync_ids), r.log_pos, r.applied.copy(), snapshot)
        peer.held_since_ms = None
        peer.syncs_started += 1

    def _end_sync(self, peer: PeerState) -> None:
        run = peer.sync
        if run is not None:
            snaps = self.replica.snapshots
            for i, snap in enumerate(snaps):
                if snap is run.snapshot:
                    del snaps[i]
                    break
        peer.sync = None

    def _sync_step(self, peer: PeerState) -> tuple[Message, int] | None:
        run = peer.sync
        assert run is not None
        head = self.header()
        if run.stage is Stage.DIGEST:
            self.digest.refresh(self.replica)
            return SyncDigest(head, run.sync_id, tuple(self.digest.digests())), 0
        if run.want:
            return self._ship_states(peer, run)
        if run.stage is Stage.KEYS and run.buckets:
            return self._send_keys(run)
        return SyncDone(head, run.sync_id, run.ctx, run.upto, len(run.shipped)), run.upto

    def _send_keys(self, run: SyncRun) -> tuple[Message, int]:
        self.digest.refresh(self.replica)
        keys: list[tuple[str, str, int]] = []
        while run.buckets and len(keys) < self.settings.sync_keys_max:
            b = run.buckets.pop()
            run.inflight_buckets.append(b)
            keys.extend((k[0], k[1], h) for k, h in self.digest.keys_in([b]))
        run.keys_compared += len(keys)
        return SyncKeys(self.header(), run.sync_id, tuple(keys)), 0

    def _ship_states(self, peer: PeerState, run: SyncRun) -> tuple[Message, int]:
        states: list[tuple[str, str, bytes]] = []
        size = 0
        snapshot = run.snapshot
        while run.want and size < self.settings.sync_bytes_max and len(states) < 50_000:
            key = run.want.pop()
            run.inflight_want.append(key)
            # As the key was when the run started (see the theory of operation).
            state = snapshot[key] if key in snapshot else self.replica.states.get(key)
            if state is None:
                continue
            blob = rec.encode_state(state)
            states.append((key[0], key[1], blob))
            run.inflight_shipped.append(key)
            size += len(blob)
        run.states_shipped += len(states)
        run.state_bytes += size
        peer.sync_states_shipped += len(states)
        peer.sync_bytes_shipped += size
        # The snapshot reflects the operations up to the run's start; ship it
        # only once all of those are durable here.
        return SyncStates(self.header(), run.sync_id, tuple(states)), run.upto

    # -- replies -----------------------------------------------------------------------------
    def receive_reply(self, peer_id: str, msg: Message, now_ms: int) -> None:
        peer = self.peers[peer_id]
        peer.inflight = False
        if not isinstance(msg, Reply):
            raise CodecError("expected a reply")
        self._heard(peer, msg.head, now_ms)
        peer.failures = 0
        run = peer.sync
        if msg.sync_id == 0:
            if run is None and msg.acked >= 0:
                peer.acked = max(peer.acked, min(msg.acked, self.log.last_pos))
                self._save_peer(peer)
            return
        if run is None or msg.sync_id != run.sync_id:
            return  # a stale reply of an abandoned run
        if msg.restart:
            # The peer does not know this run (it restarted): start over.
            self._end_sync(peer)
            self.syncs_restarted += 1
            return
        run.shipped.update(run.inflight_shipped)
        run.inflight_shipped.clear()
        run.inflight_buckets.clear()
        run.inflight_want.clear()
        if run.stage is Stage.DIGEST:
            run.buckets = [b for b in msg.buckets if 0 <= b < BUCKETS]
            run.stage = Stage.KEYS
        elif msg.want:
            run.want.extend(msg.want)
        elif msg.acked >= 0 and msg.acked == run.upto and not run.want and not run.buckets:
            peer.acked = max(peer.acked, run.upto)
            self._end_sync(peer)
            peer.resync = False
            peer.syncs_completed += 1
            self._save_peer(peer)

    def request_failed(self, peer_id: str) -> None:
        peer = self.peers[peer_id]
        peer.inflight = False
        peer.failures += 1
        run = peer.sync
        if run is not None:
            run.buckets.extend(run.inflight_buckets)
            run.want.extend(run.inflight_want)
            run.inflight_buckets.clear()
            run.inflight_want.clear()
            run.inflight_shipped.clear()

    def _save_peer(self, peer: PeerState) -> None:
        """Keep the persisted acknowledgement equal to the one the log is truncated by."""
        meta = [-1 if peer.resync else peer.acked, peer.incarnation]
        if self.replica.peer_meta.get(peer.peer_id) != meta:
            self.replica.peer_meta[peer.peer_id] = meta
            self.replica.peers_dirty = True

    def _heard(self, peer: PeerState, head: Header, now_ms: int) -> None:
        if head.sender != peer.peer_id:
            raise Unauthorized(f"message from {head.sender!r} on the link to {peer.peer_id!r}")
        if peer.incarnation and head.incarnation != peer.incarnation:
            # The peer lost its data directory: everything must be shipped again.
            peer.acked = 0
            self._end_sync(peer)
            peer.resync = True
            self.incoming.pop(peer.peer_id, None)
        peer.incarnation = head.incarnation
        peer.applied = dict(head.applied)
        peer.floor = dict(head.applied if head.floor is None else head.floor)
        peer.last_heard_ms = now_ms
        peer.messages_received += 1
        self._save_peer(peer)

    # -- requests (receiver side) -------------------------------------------------------------
    def receive(self, peer_id: str, msg: Message, now_ms: int) -> Reply:
        """Handle a request from ``peer_id``.  The caller must make the replica's
        changes durable (and, if ``replica.checkpoint_requested``, checkpoint)
        before sending the reply."""
        peer = self.peers.get(peer_id)
        if peer is None or msg.head.sender != peer_id:
            raise Unauthorized(f"replica {msg.head.sender!r} is not a configured peer")
        # Decode everything before any bookkeeping: a malformed message changes nothing.
        groups = self._decode_push(msg) if isinstance(msg, Push) else []
        self._heard(peer, msg.head, now_ms)
        head = self.header()
        head_inc = msg.head.incarnation
        if isinstance(msg, Push):
            if msg.target != self.replica.incarnation:
                # Meant for an incarnation of ours that lost its data: apply
                # nothing; the reply's header tells the sender to resync us.
                return Reply(head, -1)
            return Reply(head, self._receive_push(peer, msg, groups, now_ms))
        if isinstance(msg, SyncDigest):
            buckets = self._differing_buckets(msg)
            run = self.incoming.get(peer_id)
            if run is None or (run.sync_id, run.incarnation) != (msg.sync_id, head_inc):
                self.incoming[peer_id] = Incoming(msg.sync_id, head_inc)
            return Reply(head, -1, msg.sync_id, buckets=buckets)
        if not isinstance(msg, SyncKeys | SyncStates | SyncDone):
            raise BadRequest("a reply is not a request")
        run = self.incoming.get(peer_id)
        if run is None or (run.sync_id, run.incarnation) != (msg.sync_id, head_inc):
            return Reply(head, -1, msg.sync_id, restart=True)
        if isinstance(msg, SyncKeys):
            return Reply(head, -1, msg.sync_id, want=self._wanted(msg))
        if isinstance(msg, SyncStates):
            self._buffer_states(run, msg, now_ms)
            return Reply(head, -1, msg.sync_id)
        if len(run.states) < msg.states:
            # We lost states of this run (a stale SyncDigest reset it): start over.
            del self.incoming[peer_id]
            return Reply(head, -1, msg.sync_id, restart=True)
        self._finish_sync(run, msg, now_ms)
        del self.incoming[peer_id]
        return Reply(self.header(), msg.upto, msg.sync_id)

    @staticmethod
    def _decode_push(msg: Push) -> list[tuple[int, DeltaGroup]]:
        if msg.upto < msg.after or any(not msg.after < pos <= msg.upto for pos, _ in msg.entries):
            raise BadRequest("push entries outside (after, upto]")
        return [(pos, rec.decode_group(rec.unpack(blob, "group"))) for pos, blob in msg.entries]

    def _receive_push(
        self, peer: PeerState, msg: Push, groups: list[tuple[int, DeltaGroup]], now_ms: int
    ) -> int:
        reached = msg.after
        for pos, group in groups:
            try:
                # The origin is recorded with the incarnation that sent it.
                self.replica.apply_remote(group, f"{peer.peer_id}~{msg.head.incarnation}", now_ms)
            except CrdtkvError:
                # e.g. a timestamp too far ahead of our clock: stop here; the
                # sender retries from this position later.
                return reached
            reached = pos
        return msg.upto

    def _differing_buckets(self, msg: SyncDigest) -> tuple[int, ...]:
        if len(msg.digests) != BUCKETS:
            raise BadRequest(f"digest must have {BUCKETS} buckets")
        self.digest.refresh(self.replica)
        mine = self.digest.digests()
        return tuple(b for b in range(BUCKETS) if mine[b] != msg.digests[b])

    def _wanted(self, msg: SyncKeys) -> tuple[tuple[str, str], ...]:
        self.digest.refresh(self.replica)
        hashes = self.digest.hashes
        return tuple((ns, k) for ns, k, h in msg.keys if hashes.get((ns, k)) != h)

    def _buffer_states(self, run: Incoming, msg: SyncStates, now_ms: int) -> None:
        decoded = [((ns, k), rec.decode_state((ns, k), blob)) for ns, k, blob in msg.states]
        for key, state in decoded:
            if type(state) is not NAMESPACES[key[0]]:
                raise BadRequest("state of the wrong type for its namespace")
            for ts in timestamps_of(state):
                self.replica.hlc.check(ts, now_ms)  # refused before anything changes
        buffered = run.states
        for key, state in decoded:
            held = buffered.get(key)
            if held is None:
                buffered[key] = state
            else:
                held.merge(state)

    def _finish_sync(self, run: Incoming, msg: SyncDone, now_ms: int) -> None:
        """Join the buffered states and the sender's context in one step."""
        r = self.replica
        for state in run.states.values():
            for ts in timestamps_of(state):
                r.hlc.check(ts, now_ms)  # refused before anything changes
        for key, state in run.states.items():
            r.state_for_write(key).merge(state)
            # Later local writes (and HLL clears) must order after what arrived.
            for ts in timestamps_of(state):
                r.hlc.observe(ts, now_ms)
        r.applied.merge(msg.applied_ctx)
        r.synced_vv = vv_join(r.synced_vv, msg.applied_ctx.vv)
        r.touched(run.states)  # after the context: tombstone stamps cover the deletes
        r.checkpoint_requested = True

    # -- status, stability, garbage collection ------------------------------------------------
    def lag_ops(self, peer_id: str) -> int:
        return max(0, self.durable_pos - self.peers[peer_id].acked)

    def lag_ms(self, peer_id: str, now_ms: int) -> int:
        for e in self.log.after(self.peers[peer_id].acked):
            return max(0, now_ms - e.at_ms)
        return 0

    def reachable(self, peer_id: str, now_ms: int) -> bool:
        heard = self.peers[peer_id].last_heard_ms
        return heard is not None and now_ms - heard < self.settings.reachable_ms

    def stable_vector(self) -> VersionVector:
        """What every replica has applied and no replica may still ship older
        states of (a snapshot of an open state sync can carry a write a
        collected tombstone deleted, and bring it back)."""
        return vv_meet([self._floor(), *(p.floor for p in self.peers.values())])

    def collect(self, now_ms: int) -> int:
        """Truncate the acknowledged log and drop stable register tombstones."""
        self.log.truncate(self.log_floor())
        everything_reported = vv_join({}, {})
        for p in self.peers.values():
            everything_reported = vv_join(everything_reported, p.applied)
        if not vv_dominates(self.replica.applied.vv, everything_reported):
            return 0
        dropped = self.replica.collect_tombstones(self.stable_vector(), now_ms)
        self.tombstones_dropped += dropped
        return dropped

    def keys_of_bucket(self, key: Key) -> int:  # pragma: no cover - debugging aid
        return bucket_of(key)

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
we have also applied everything any replica reported, so no write concurrent
with a tombstone is still on its way here).  Log entries acknowledged by
every peer are truncated.

*Topology.*  Peers need not be fully meshed: any connected graph works (a
chain, a star, a ring).  What a replica applies, local or received, reaches
its other peers: a pushed group is logged and pushed on (leaving out the peer
it came from), and dots learnt by state sync are passed on by a state sync
(below).  Nothing goes back to where it came from.  Stability must cover
replicas we do not hear directly, so every header carries the sender's
configured peers and, when the receiver may need them, its *levels*: the
meet of the floors and the join of the applied vectors of every replica
within k hops (``replication.reach``).  A replica collects only once one of
its levels covers every replica; in a full mesh that is level 1, its peers'
own headers.  (Stability over peers alone let a chain's end collect a
tombstone the other end had not applied: B17.)

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
too (``boot``; every start is also a new incarnation now): a sender that
crashed mid-run starts its next run under a new id, so the receiver drops what it buffered
for the dead run, whose snapshot may predate deletes collected since (B15).

*Dots learnt by sync.*  A state sync gives the receiver dots without log
entries, which it therefore never pushes.  It remembers an upper bound of
them (``Replica.synced_vv``, the gap-free part of every merged context).
Towards a peer whose applied vector does not cover that bound, it holds its
pushes (a later write would otherwise reach the peer before the writes it
depends on: B4) and, if the peer still lacks them after
``orphan_grace_ms`` (it may get them from their origin meanwhile), catches
it up by a state sync of its own (otherwise updates whose origin lost its
log, or its data, would never reach it: B2).  This is also how what the
middle of a chain learnt by sync reaches the far end, whose only source is
the middle.  The replica that shipped the dots reported a vector covering
them, so no push is held and no sync is run back towards it.

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
is the meet of every replica's floor, relayed level by level where replicas
are not peers (*Topology*, above).

Modules
=======

This module is the entry point both drivers use (``Replication``); the work
is split by responsibility:

- ``replication.push``: building a push for a peer, decoding and applying one;
- ``replication.sync_sender``: state sync runs towards peers, with the run's
  state machine;
- ``replication.sync_receiver``: state sync runs from peers, buffered until
  ``SyncDone``, with the receiver's state machine;
- ``replication.stability``, ``replication.reach``: the stability floor, the
  stable vector over any connected topology (levels relayed in headers) and
  tombstone collection;
- ``replication.log``, ``replication.digest``, ``replication.messages``: the
  shipping log, key-range digests and the wire format;
- ``replication.peer_state``: what we know about each peer; its persisted
  part is a ``crdtkv.replica.peers.PeerRecord`` on the replica.

Settings and every bound a peer can make us hold are in ``crdtkv.limits``
(``ReplicationSettings``, exported here as ``Settings``), checked together
when they are built.
"""

from __future__ import annotations

from crdtkv.crdts.causal import VersionVector, context_bound, vv_dominates
from crdtkv.errors import ProtocolError, Unauthorized
from crdtkv.limits import ReplicationSettings as Settings
from crdtkv.replica import wire
from crdtkv.replica.keyspace import DeltaGroup, LogEntry, Replica
from replication import push, reach, stability
from replication.digest import KeyspaceDigest
from replication.log import DeltaLog, ShippedEntry
from replication.messages import Header, Message, Push, Reply
from replication.peer_state import PeerState
from replication.sync_receiver import Incoming, SyncReceiver
from replication.sync_sender import SYNC_IDS_PER_BOOT, SyncSender

__all__ = ["SYNC_IDS_PER_BOOT", "Incoming", "PeerState", "Replication", "Settings"]


class Replication:
    """One replica's side of every link: what to send each peer next, and
    what to do with what peers send.  Both drivers call only the public
    methods; ``replica`` is changed synchronously inside them."""

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
        self.replica = replica
        self.settings = settings or Settings()
        self.digest = KeyspaceDigest()
        self.sender = SyncSender(replica, self.digest, self.settings, boot)
        self.receiver = SyncReceiver(replica, self.digest, self.settings, self.header)
        self.peers = {p: PeerState.restored(p, replica.peer_book.get(p)) for p in peers}
        # Which peers may need our levels, for what we know of their peers.
        self._peers_of: dict[str, frozenset[str] | None] | None = None
        self._wanted: frozenset[str] = frozenset()
        self.durable_pos = replica.log_pos
        loaded = replica.take_loaded_log()
        first = loaded[0].pos if loaded else replica.log_pos + 1
        self.log = DeltaLog(self.settings.log_bytes_max, floor=first - 1)
        self.on_durable(loaded, now_ms)

    @property
    def incoming(self) -> dict[str, Incoming]:
        """The state sync runs we are receiving, by sender."""
        return self.receiver.runs

    @property
    def syncs_restarted(self) -> int:
        """Runs a receiver did not know (it restarted), so we started over."""
        return self.sender.restarted

    # -- the log ----------------------------------------------------------------------
    def on_durable(
        self, entries: list[LogEntry], now_ms: int, blobs: list[bytes] | None = None
    ) -> None:
        """The node's group commit made these entries durable.  ``blobs``: their
        encoded groups, as the group commit wrote them (encoded here if None)."""
        if blobs is None:
            blobs = [wire.group_blob_of(e.group.dot, e.group.deltas) for e in entries]
        for e, blob in zip(entries, blobs, strict=True):
            self.log.append(ShippedEntry(e.pos, e.origin, e.group.dot, blob, now_ms))
            self.durable_pos = max(self.durable_pos, e.pos)

    def log_floor(self) -> int:
        """Entries at or below this are acknowledged by every peer (may be deleted)."""
        floor = self.durable_pos
        for p in self.peers.values():
            floor = min(floor, p.acked)
        return floor

    # -- what to send ----------------------------------------------------------------------
    def header(self, peer_id: str | None = None) -> Header:
        """Our header, with our levels when ``peer_id`` may need them (``replication.reach``)."""
        r = self.replica
        applied = dict(r.applied.vv)
        floor = stability.own_floor(r, self.peers.values())
        levels: tuple[reach.Level, ...] = ()
        if peer_id is not None and peer_id in self._levels_wanted():
            reports = [p.report() for p in self.peers.values()]
            levels = tuple(reach.levels(r.replica_id, self.peers, floor, applied, reports))
        return Header(
            r.replica_id,
            r.incarnation,
            applied,
            None if floor == applied else floor,
            tuple(self.peers),
            levels,
        )

    def next_message(self, peer_id: str, now_ms: int) -> tuple[Message, int] | None:
        """The next request for ``peer_id`` and the log position that must be
        durable before it is sent; None when there is nothing to say."""
        peer = self.peers[peer_id]
        if peer.inflight:
            return None
        hold = False
        if peer.sync is None:
            if peer.resync or not self.log.covers(peer.acked):
                self.sender.start(peer)
            elif not vv_dominates(peer.applied, self.replica.peer_book.synced_vv):
                if peer.held_since_ms is None:
                    peer.held_since_ms = now_ms
                if now_ms - peer.held_since_ms >= self.settings.orphan_grace_ms:
                    self.sender.start(peer)
                else:
                    hold = True  # heartbeats only, until the peer has them
            else:
                peer.held_since_ms = None
        out: tuple[Message, int] | None
        if peer.sync is not None:
            out = self.sender.request(peer, peer.sync, self.header(peer_id))
        else:
            out = push.build_push(
                self.log,
                peer,
                self.header(peer_id),
                self.settings,
                durable_pos=self.durable_pos,
                hold=hold,
                now_ms=now_ms,
            )
        if out is not None:
            peer.inflight = True
            peer.last_sent_ms = now_ms
            peer.messages_sent += 1
        return out

    def _levels_wanted(self) -> frozenset[str]:
        """The peers that may need our levels; it changes only with what we
        know of our peers' peers (``replication.reach``)."""
        peers_of = {p.peer_id: p.peers for p in self.peers.values()}
        if peers_of != self._peers_of:
            self._peers_of = peers_of
            me, reports = self.replica.replica_id, [p.report() for p in self.peers.values()]
            self._wanted = frozenset(p for p in peers_of if reach.needs_levels(me, reports, p))
        return self._wanted

    # -- replies -----------------------------------------------------------------------------
    def receive_reply(self, peer_id: str, msg: Message, now_ms: int) -> None:
        peer = self.peers[peer_id]
        peer.inflight = False
        if not isinstance(msg, Reply):
            raise ProtocolError("expected a reply")
        self._heard(peer, msg.head, now_ms)
        peer.failures = 0
        if msg.sync_id == 0:
            if peer.sync is None and msg.acked >= 0:
                self._ack(peer, min(msg.acked, self.log.last_pos))
                self._save_peer(peer)
        elif self.sender.on_reply(peer, msg):
            self._save_peer(peer)

    def _ack(self, peer: PeerState, pos: int) -> None:
        """The peer acknowledged our log up to ``pos``."""
        if pos <= peer.acked:
            return
        dots: VersionVector = {}
        if self.log.covers(peer.acked):
            for e in self.log.after(peer.acked):
                if e.pos > pos:
                    break
                actor, seq = e.dot
                if seq > dots.get(actor, 0):
                    dots[actor] = seq
        else:  # entries gone from the log: bound them by everything applied
            dots = context_bound(self.replica.applied)
        peer.ack(pos, dots)

    def request_failed(self, peer_id: str) -> None:
        peer = self.peers[peer_id]
        peer.inflight = False
        peer.failures += 1
        if peer.sync is not None:
            self.sender.on_failure(peer.sync)

    def _save_peer(self, peer: PeerState) -> None:
        """Keep the persisted acknowledgement equal to the one the log is truncated by."""
        self.replica.peer_book.record(peer.peer_id, peer.record())

    def _heard(self, peer: PeerState, head: Header, now_ms: int) -> None:
        if head.sender != peer.peer_id:
            raise Unauthorized(f"message from {head.sender!r} on the link to {peer.peer_id!r}")
        if peer.incarnation and head.incarnation != peer.incarnation:
            # The peer restarted (every start is a new incarnation).  A sync run
            # towards its old incarnation is void.  If its applied vector does not
            # cover every entry it acknowledged, it lost data (a wiped directory, a
            # restored copy, a power loss in `wal` durability): everything must be
            # shipped again, its own newer writes included.  Else it lost nothing
            # and pushes go on from ``acked``.
            self.sender.end(peer)
            self.receiver.forget(peer.peer_id)
            if not (peer.acked_vv_known and vv_dominates(head.applied, peer.acked_vv)):
                peer.reset_acked()
                peer.resync = True
        peer.incarnation = head.incarnation
        peer.applied = dict(head.applied)
        peer.floor = dict(head.applied if head.floor is None else head.floor)
        peer.peers = None if head.peers is None else frozenset(head.peers)
        peer.reach = head.reach
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
        if isinstance(msg, Reply):
            raise ProtocolError("a reply is not a request")
        # Decode everything before any bookkeeping: a malformed message changes nothing.
        groups = push.decode_push(msg) if isinstance(msg, Push) else []
        self._heard(peer, msg.head, now_ms)
        if not isinstance(msg, Push):
            return self.receiver.receive(peer_id, msg, now_ms)
        if msg.target != self.replica.incarnation:
            # Meant for an incarnation of ours that lost its data: apply
            # nothing; the reply's header tells the sender to resync us.
            return Reply(self.header(peer_id), -1)
        return Reply(self.header(peer_id), self._receive_push(peer, msg, groups, now_ms))

    def _receive_push(
        self, peer: PeerState, msg: Push, groups: list[tuple[int, DeltaGroup]], now_ms: int
    ) -> int:
        # The origin is recorded with the incarnation that sent it.
        origin = f"{peer.peer_id}~{msg.head.incarnation}"
        return push.apply_push(self.replica, origin, msg, groups, now_ms)

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
        states of (``replication.stability``)."""
        return stability.stable_vector(self.replica, self.peers.values())

    def collect(self, now_ms: int) -> int:
        """Truncate the acknowledged log; returns the entries dropped."""
        return self.log.truncate(self.log_floor())

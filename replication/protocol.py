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
applied context and log position, compare bucket digests, then per-key
hashes of differing buckets, then ship the full states of keys that differ,
in bounded chunks.  Only at the end (``SyncDone``) does the peer join our
applied context (never earlier: it must not claim dots of keys not yet
shipped) and only then does ``acked`` move, to the recorded position.

*Durability.*  A receiver replies only after what it applied is durable,
and a sender ships only what is durable on its side (``ready_pos``); a
crash can therefore lose neither an acknowledged delta nor reissue a dot a
peer has seen.

*Incarnations.*  A peer whose incarnation changes lost its data: its
``acked`` restarts from 0 and it is caught up by a state sync, always, even
when our log still reaches back to 0: a push leaves out what the peer
minted or sent us, and the new incarnation has none of it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum

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

__all__ = ["PeerState", "Replication", "Settings"]


@dataclass(frozen=True)
class Settings:
    push_entries_max: int = 2_000  # entries in one push
    push_bytes_max: int = 1024 * 1024  # encoded group bytes in one push
    heartbeat_ms: int = 1_000  # an idle link still exchanges applied vectors this often
    log_bytes_max: int = 64 * 1024 * 1024  # retained log; beyond it peers need a state sync
    sync_keys_max: int = 5_000  # key hashes in one SyncKeys
    sync_bytes_max: int = 1024 * 1024  # state bytes in one SyncStates
    reachable_ms: int = 5_000  # a peer not heard from for this long is unreachable


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
    stage: Stage = Stage.DIGEST
    buckets: list[int] = field(default_factory=list)  # differing buckets still to compare
    want: list[Key] = field(default_factory=list)  # keys the peer asked for, not yet shipped
    # What the request in flight carries, to put back if it is lost: a lost
    # SyncKeys or SyncStates must not drop buckets or keys from the run.
    inflight_buckets: list[int] = field(default_factory=list)
    inflight_want: list[Key] = field(default_factory=list)
    keys_compared: int = 0
    states_shipped: int = 0
    state_bytes: int = 0


@dataclass
class PeerState:
    peer_id: str
    acked: int = 0  # highest position of our log the peer durably applied
    incarnation: str = ""  # the peer's incarnation as last seen
    applied: VersionVector = field(default_factory=dict)  # the peer's applied vector, last seen
    last_heard_ms: int | None = None
    last_sent_ms: int | None = None
    inflight: bool = False  # one request at a time per peer
    sync: SyncRun | None = None
    failures: int = 0  # consecutive failed requests (the shell's backoff)
    # The peer lost its data (new incarnation): catch it up by a state sync
    # before any push.  Our log may still hold entries it minted or sent us
    # under its old incarnation, which a push leaves out (no back-propagation).
    resync: bool = False
    # metrics
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    syncs_started: int = 0
    syncs_completed: int = 0
    sync_states_shipped: int = 0
    sync_bytes_shipped: int = 0


def _replica_of(actor: str) -> str:
    return actor.split("~", 1)[0]


class Replication:
    def __init__(
        self,
        replica: Replica,
        peers: list[str],
        settings: Settings | None = None,
        now_ms: int = 0,
    ) -> None:
        if replica.replica_id in peers:
            raise ValueError("a replica is not its own peer")
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
        self._sync_ids = itertools.count(1)
        self.digest = KeyspaceDigest()
        self.tombstones_dropped = 0
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
        return Header(r.replica_id, r.incarnation, dict(r.applied.vv))

    def next_message(self, peer_id: str, now_ms: int) -> tuple[Message, int] | None:
        """The next request for ``peer_id`` and the log position that must be
        durable before it is sent; None when there is nothing to say."""
        peer = self.peers[peer_id]
        if peer.inflight:
            return None
        if peer.sync is None and (peer.resync or not self.log.covers(peer.acked)):
            self._start_sync(peer)
        out = self._sync_step(peer) if peer.sync is not None else self._push(peer, now_ms)
        if out is not None:
            peer.inflight = True
            peer.last_sent_ms = now_ms
            peer.messages_sent += 1
        return out

    def _push(self, peer: PeerState, now_ms: int) -> tuple[Message, int] | None:
        s = self.settings
        entries: list[tuple[int, bytes]] = []
        size = 0
        upto = peer.acked
        for e in self.log.after(peer.acked):
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
        return Push(self.header(), peer.acked, upto, tuple(entries)), upto

    def _peer_has(self, peer: PeerState, e: ShippedEntry) -> bool:
        actor, seq = e.dot
        if e.origin == peer.peer_id or _replica_of(actor) == peer.peer_id:
            return True
        return seq <= peer.applied.get(actor, 0)

    # -- catch-up (sender side) ----------------------------------------------------------
    def _start_sync(self, peer: PeerState) -> None:
        r = self.replica
        peer.sync = SyncRun(next(self._sync_ids), r.log_pos, r.applied.copy())
        peer.syncs_started += 1

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
        return SyncDone(head, run.sync_id, run.ctx, run.upto), run.upto

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
        while run.want and size < self.settings.sync_bytes_max and len(states) < 50_000:
            key = run.want.pop()
            run.inflight_want.append(key)
            state = self.replica.states.get(key)
            if state is None:
                continue
            blob = rec.encode_state(state)
            states.append((key[0], key[1], blob))
            size += len(blob)
        run.states_shipped += len(states)
        run.state_bytes += size
        peer.sync_states_shipped += len(states)
        peer.sync_bytes_shipped += size
        # The states include every operation applied so far; ship them only
        # once all of those are durable here.
        return SyncStates(self.header(), run.sync_id, tuple(states)), self.replica.log_pos

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
            return
        if run is None or msg.sync_id != run.sync_id:
            return  # a stale reply of an abandoned run
        run.inflight_buckets.clear()
        run.inflight_want.clear()
        if run.stage is Stage.DIGEST:
            run.buckets = [b for b in msg.buckets if 0 <= b < BUCKETS]
            run.stage = Stage.KEYS
        elif msg.want:
            run.want.extend(msg.want)
        elif msg.acked >= 0 and msg.acked == run.upto and not run.want and not run.buckets:
            peer.acked = max(peer.acked, run.upto)
            peer.sync = None
            peer.resync = False
            peer.syncs_completed += 1

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

    def _heard(self, peer: PeerState, head: Header, now_ms: int) -> None:
        if head.sender != peer.peer_id:
            raise Unauthorized(f"message from {head.sender!r} on the link to {peer.peer_id!r}")
        if peer.incarnation and head.incarnation != peer.incarnation:
            # The peer lost its data directory: everything must be shipped again.
            peer.acked = 0
            peer.sync = None
            peer.resync = True
        peer.incarnation = head.incarnation
        peer.applied = dict(head.applied)
        peer.last_heard_ms = now_ms
        peer.messages_received += 1
        self.replica.peer_meta[peer.peer_id] = [
            -1 if peer.resync else peer.acked,
            peer.incarnation,
        ]

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
        if isinstance(msg, Push):
            return Reply(head, self._receive_push(peer, msg, groups, now_ms))
        if isinstance(msg, SyncDigest):
            return Reply(head, -1, msg.sync_id, buckets=self._differing_buckets(msg))
        if isinstance(msg, SyncKeys):
            return Reply(head, -1, msg.sync_id, want=self._wanted(msg))
        if isinstance(msg, SyncStates):
            self._merge_states(msg, now_ms)
            return Reply(head, -1, msg.sync_id)
        if isinstance(msg, SyncDone):
            self.replica.applied.merge(msg.applied_ctx)
            self.replica.checkpoint_requested = True
            return Reply(head, msg.upto, msg.sync_id)
        raise BadRequest("a reply is not a request")

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
                self.replica.apply_remote(group, peer.peer_id, now_ms)
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

    def _merge_states(self, msg: SyncStates, now_ms: int) -> None:
        decoded = [((ns, k), rec.decode_state((ns, k), blob)) for ns, k, blob in msg.states]
        for key, state in decoded:
            if type(state) is not NAMESPACES[key[0]]:
                raise BadRequest("state of the wrong type for its namespace")
            for ts in timestamps_of(state):
                self.replica.hlc.check(ts, now_ms)  # refused before anything changes
        for key, state in decoded:
            self.replica.state_for_write(key).merge(state)
            # Later local writes (and HLL clears) must order after what arrived.
            for ts in timestamps_of(state):
                self.replica.hlc.observe(ts, now_ms)
        self.replica.touched(k for k, _ in decoded)

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
        return vv_meet([self.replica.applied.vv, *(p.applied for p in self.peers.values())])

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

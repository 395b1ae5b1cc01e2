"""State sync, sender side: catching a peer up from a snapshot of our keyspace.

A run starts when the peer needs more than our log can give (see
``replication.protocol``, "Catch-up"): we record our applied context and log
position and open a copy-on-write snapshot of the keyspace, then compare
bucket digests, then the key hashes of differing buckets, then ship the
snapshot states of the keys that differ, and end with ``SyncDone``.  One
request is in flight at a time; the stage names it.

The run's state machine, all of it (``on_reply``, ``on_failure`` and the
protocol core's ``_heard``)::

    stage    event                                           next stage
    -------  ----------------------------------------------  -------------------------------
    DIGEST   send SyncDigest (every bucket's digest)         DIGEST
    DIGEST   reply: the buckets whose digests differ         KEYS, or DONE if none differ
    KEYS     send SyncKeys (key hashes of some buckets)      KEYS
    KEYS     reply: keys whose states the peer wants         STATES
    KEYS     reply: none wanted                              KEYS if buckets left, else DONE
    STATES   send SyncStates (snapshot states, bounded)      STATES
    STATES   reply                                           STATES if keys left, else KEYS
                                                             if buckets left, else DONE
    DONE     send SyncDone (context and log position)        DONE
    DONE     reply: acked == the run's log position          - completed: acked moves there
    DONE     any other reply                                 DONE (SyncDone again)
    any      request failed                                  the same stage; what was in
                                                             flight is put back
    any      reply: restart (the peer does not know the run) - abandoned; a new run starts
    any      the peer's incarnation changed                  - abandoned; a resync starts
    any      reply of another run                            the same stage (ignored)

Pure: no I/O.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, context_bound
from crdtkv.limits import ITEM_FRAMING_BYTES, SYNC_KEYS_MAX, ReplicationSettings
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import Key, Replica
from replication.digest import BUCKETS, KeyspaceDigest
from replication.messages import Header, Message, Reply, SyncDigest, SyncDone, SyncKeys, SyncStates
from replication.peer_state import PeerState

__all__ = ["SYNC_IDS_PER_BOOT", "Stage", "SyncRun", "SyncSender"]

SYNC_IDS_PER_BOOT = 2**31  # sync run ids of one start: boot * 2**31 + 1, + 2, ...


class Stage(Enum):
    """What the run sends next (or has in flight)."""

    DIGEST = "digest"
    KEYS = "keys"
    STATES = "states"
    DONE = "done"


@dataclass(slots=True)
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
    inflight_keys: int = 0  # key hashes in the SyncKeys in flight: the reply wants at most these
    shipped: set[Key] = field(default_factory=set)  # keys whose states the peer acknowledged
    keys_compared: int = 0
    states_shipped: int = 0
    state_bytes: int = 0

    def settle(self) -> None:
        """After a reply: the stage the run's remaining work calls for."""
        if self.want:
            self.stage = Stage.STATES
        elif self.buckets:
            self.stage = Stage.KEYS
        else:
            self.stage = Stage.DONE


class SyncSender:
    """Runs state syncs towards peers (one run per peer, on ``PeerState.sync``)."""

    def __init__(
        self, replica: Replica, digest: KeyspaceDigest, settings: ReplicationSettings, boot: int
    ) -> None:
        """``boot`` makes run ids unique across restarts (see ``Replication``)."""
        if not 1 <= boot < SYNC_IDS_PER_BOOT:
            raise ValueError(f"boot must be in [1, {SYNC_IDS_PER_BOOT})")
        self.replica = replica
        self.digest = digest
        self.settings = settings
        self._ids = itertools.count(boot * SYNC_IDS_PER_BOOT + 1)
        self.restarted = 0  # runs a receiver did not know (it restarted)

    def start(self, peer: PeerState) -> None:
        r = self.replica
        peer.sync = SyncRun(next(self._ids), r.log_pos, r.applied.copy(), r.open_snapshot())
        peer.held_since_ms = None
        peer.syncs_started += 1

    def end(self, peer: PeerState) -> None:
        """Drop the run towards ``peer`` (completed or abandoned), if any."""
        if peer.sync is not None:
            self.replica.close_snapshot(peer.sync.snapshot)
        peer.sync = None

    # -- sending ------------------------------------------------------------------------------
    def request(self, peer: PeerState, run: SyncRun, head: Header) -> tuple[Message, int]:
        """The run's next request and the log position that must be durable first."""
        if run.stage is Stage.DIGEST:
            self.digest.refresh(self.replica)
            return SyncDigest(head, run.sync_id, tuple(self.digest.digests())), 0
        if run.stage is Stage.KEYS:
            return self._send_keys(run, head)
        if run.stage is Stage.STATES:
            return self._ship_states(peer, run, head)
        return SyncDone(head, run.sync_id, run.ctx, run.upto, len(run.shipped)), run.upto

    def _send_keys(self, run: SyncRun, head: Header) -> tuple[Message, int]:
        """Key hashes of whole buckets, at most ``sync_keys_max`` of them unless
        one bucket alone holds more."""
        self.digest.refresh(self.replica)
        keys: list[tuple[str, str, int]] = []
        while run.buckets:
            in_bucket = self.digest.keys_in([run.buckets[-1]])
            if keys and len(keys) + len(in_bucket) > self.settings.sync_keys_max:
                break
            run.inflight_buckets.append(run.buckets.pop())
            keys.extend((k[0], k[1], h) for k, h in in_bucket)
        run.keys_compared += len(keys)
        run.inflight_keys = len(keys)
        return SyncKeys(head, run.sync_id, tuple(keys)), 0

    def _ship_states(self, peer: PeerState, run: SyncRun, head: Header) -> tuple[Message, int]:
        """Snapshot states of wanted keys, at most ``sync_bytes_max`` bytes (keys
        and framing included) unless one state alone is larger."""
        states: list[tuple[str, str, bytes]] = []
        size = state_bytes = 0
        snapshot = run.snapshot
        while run.want and len(states) < SYNC_KEYS_MAX:
            key = run.want[-1]
            # As the key was when the run started (see the theory of operation).
            state = snapshot[key] if key in snapshot else self.replica.states.peek(key)
            blob = b"" if state is None else rec.encode_state(state)
            cost = len(blob) + len(key[0]) + len(key[1].encode()) + ITEM_FRAMING_BYTES
            if states and state is not None and size + cost > self.settings.sync_bytes_max:
                break
            run.inflight_want.append(run.want.pop())
            if state is None:
                continue
            states.append((key[0], key[1], blob))
            run.inflight_shipped.append(key)
            size += cost
            state_bytes += len(blob)
        run.states_shipped += len(states)
        run.state_bytes += state_bytes
        peer.sync_states_shipped += len(states)
        peer.sync_bytes_shipped += state_bytes
        # The snapshot reflects the operations up to the run's start; ship it
        # only once all of those are durable here.
        return SyncStates(head, run.sync_id, tuple(states)), run.upto

    # -- events -------------------------------------------------------------------------------
    def on_reply(self, peer: PeerState, msg: Reply) -> bool:
        """A reply to one of the run's requests.  True when the run completed
        (``peer.acked`` moved: the caller persists it)."""
        run = peer.sync
        if run is None or msg.sync_id != run.sync_id:
            return False  # a stale reply of an abandoned run
        if msg.restart:
            # The peer does not know this run (it restarted): start over.
            self.end(peer)
            self.restarted += 1
            return False
        run.shipped.update(run.inflight_shipped)
        run.inflight_shipped.clear()
        run.inflight_buckets.clear()
        run.inflight_want.clear()
        if run.stage is Stage.DIGEST:
            run.buckets = [b for b in msg.buckets if 0 <= b < BUCKETS]
        elif run.stage is Stage.KEYS:
            # At most one key per hash we sent: a run never wants more keys than it compared.
            run.want.extend(msg.want[: run.inflight_keys])
        elif run.stage is Stage.DONE:
            if msg.acked == run.upto:
                peer.ack(run.upto, context_bound(run.ctx))
                self.end(peer)
                peer.resync = False
                peer.syncs_completed += 1
                return True
            return False
        run.settle()
        return False

    @staticmethod
    def on_failure(run: SyncRun) -> None:
        """The request in flight is lost: put back what it carried."""
        run.buckets.extend(run.inflight_buckets)
        run.want.extend(run.inflight_want)
        run.inflight_buckets.clear()
        run.inflight_want.clear()
        run.inflight_shipped.clear()
        run.inflight_keys = 0

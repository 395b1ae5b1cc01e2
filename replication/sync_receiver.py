"""State sync, receiver side: buffer a peer's catch-up, apply it in one step.

The receiver applies nothing until ``SyncDone``: it buffers the states (at
most ``sync_buffer_bytes_max`` encoded bytes), then joins them and the
sender's context at once, so it never holds effects without the dots that
made them, nor claims dots whose effects it lost (see
``replication.protocol``, "Catch-up").  A run is known by its id and the
sender's incarnation; there is at most one per peer.

The state machine per peer, all of it (``receive`` and the protocol core's
``_heard``)::

    state         event                                        next state: reply
    ------------  -------------------------------------------  -------------------------------
    none          SyncDigest of run R                          buffering R: differing buckets
    buffering R   SyncDigest of R (again)                      buffering R: differing buckets
    buffering R   SyncDigest of another run                    buffering it (R dropped): buckets
    buffering R   SyncKeys of R                                buffering R: keys it wants
    buffering R   SyncStates of R, within the buffer bound     buffering R and the states: ack
    buffering R   SyncStates of R, past the buffer bound       none: SyncTooLarge (413)
    buffering R   SyncDone of R, every state it names held     none: joined, acked = its position
    buffering R   SyncDone of R, states missing                none: restart
    none, or R    SyncKeys, SyncStates or SyncDone of          unchanged: restart (the sender
                  another run                                  abandons the run)
    any           the sender's incarnation changed             none

A message that does not decode or breaks the protocol changes nothing and
is refused with a typed error (``ProtocolError``, ``CodecError``).

Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from crdtkv.crdts.base import CRDT
from crdtkv.errors import ProtocolError, SyncTooLarge
from crdtkv.limits import ITEM_FRAMING_BYTES, ReplicationSettings
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import STATE_TYPES, Key, Replica, timestamps_of
from replication.digest import BUCKETS, KeyspaceDigest
from replication.messages import Header, Reply, SyncDigest, SyncDone, SyncKeys, SyncStates

__all__ = ["Incoming", "SyncReceiver", "SyncRequest"]

SyncRequest = SyncDigest | SyncKeys | SyncStates | SyncDone


@dataclass(slots=True)
class Incoming:
    """A catch-up run we are receiving: states are buffered until ``SyncDone``."""

    sync_id: int
    incarnation: str  # the sender's
    states: dict[Key, CRDT] = field(default_factory=dict)
    bytes: int = 0  # encoded bytes of the states received (keys and framing included)


class SyncReceiver:
    def __init__(
        self,
        replica: Replica,
        digest: KeyspaceDigest,
        settings: ReplicationSettings,
        header: Callable[[str], Header],
    ) -> None:
        """``header``: our message header for a peer as it is now (replies carry it)."""
        self.replica = replica
        self.digest = digest
        self.settings = settings
        self.header = header
        self.runs: dict[str, Incoming] = {}  # peer id -> the run we are receiving from it

    def forget(self, peer_id: str) -> None:
        """The peer lost its data: whatever it shipped so far is void."""
        self.runs.pop(peer_id, None)

    def receive(self, peer_id: str, msg: SyncRequest, now_ms: int) -> Reply:
        """One step of a run from ``peer_id`` (already authenticated and heard)."""
        head = self.header(peer_id)
        sender_inc = msg.head.incarnation
        run = self.runs.get(peer_id)
        known = run is not None and (run.sync_id, run.incarnation) == (msg.sync_id, sender_inc)
        if isinstance(msg, SyncDigest):
            buckets = self._differing_buckets(msg)
            if not known:
                self.runs[peer_id] = Incoming(msg.sync_id, sender_inc)
            return Reply(head, -1, msg.sync_id, buckets=buckets)
        if run is None or not known:
            return Reply(head, -1, msg.sync_id, restart=True)
        if isinstance(msg, SyncKeys):
            return Reply(head, -1, msg.sync_id, want=self._wanted(msg))
        if isinstance(msg, SyncStates):
            self._buffer_states(peer_id, run, msg, now_ms)
            return Reply(head, -1, msg.sync_id)
        if len(run.states) < msg.states:
            # We lost states of this run (a stale SyncDigest reset it): start over.
            del self.runs[peer_id]
            return Reply(head, -1, msg.sync_id, restart=True)
        self._finish(run, msg, now_ms)  # a refusal keeps the run: SyncDone comes again
        del self.runs[peer_id]
        return Reply(self.header(peer_id), msg.upto, msg.sync_id)

    def _differing_buckets(self, msg: SyncDigest) -> tuple[int, ...]:
        if len(msg.digests) != BUCKETS:
            raise ProtocolError(f"digest must have {BUCKETS} buckets")
        self.digest.refresh(self.replica)
        mine = self.digest.digests()
        return tuple(b for b in range(BUCKETS) if mine[b] != msg.digests[b])

    def _wanted(self, msg: SyncKeys) -> tuple[tuple[str, str], ...]:
        self.digest.refresh(self.replica)
        hashes = self.digest.hashes
        return tuple((ns, k) for ns, k, h in msg.keys if hashes.get((ns, k)) != h)

    def _buffer_states(self, peer_id: str, run: Incoming, msg: SyncStates, now_ms: int) -> None:
        decoded = [((ns, k), rec.decode_state((ns, k), blob)) for ns, k, blob in msg.states]
        for key, state in decoded:
            if type(state) is not STATE_TYPES[key[0]]:
                raise ProtocolError("state of the wrong type for its key type")
            for ts in timestamps_of(state):
                self.replica.hlc.check(ts, now_ms)  # refused before anything changes
        size = sum(
            len(b) + len(ns) + len(k.encode()) + ITEM_FRAMING_BYTES for ns, k, b in msg.states
        )
        bound = self.settings.sync_buffer_bytes_max
        if run.bytes + size > bound:
            del self.runs[peer_id]
            raise SyncTooLarge(
                f"state sync {run.sync_id} ships more than {bound} bytes of states "
                "(sync_buffer_bytes_max): run dropped"
            )
        run.bytes += size
        buffered = run.states
        for key, state in decoded:
            held = buffered.get(key)
            if held is None:
                buffered[key] = state
            else:
                held.merge(state)

    def _finish(self, run: Incoming, msg: SyncDone, now_ms: int) -> None:
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
        r.peer_book.learn_synced(msg.applied_ctx.vv)
        r.touched(run.states)  # after the context: tombstone stamps cover the deletes
        r.request_checkpoint()

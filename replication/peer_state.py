"""What the replication core knows about one peer while it runs.

``PeerState`` is the in-memory view of a link: the persisted part
(``acked``, ``incarnation``, ``resync``: see ``crdtkv.replica.peers``) plus
what is learnt from every message (applied vector, stability floor, last
heard), the sender's flow control (one request in flight), the state sync
run towards the peer, and counters for metrics.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crdtkv.crdts.causal import VersionVector, vv_join
from crdtkv.replica.peers import PeerRecord
from replication.reach import Level, PeerReport

if TYPE_CHECKING:
    from replication.sync_sender import SyncRun

__all__ = ["PeerState"]


@dataclass(slots=True)
class PeerState:
    peer_id: str
    acked: int = 0  # highest position of our log the peer durably applied
    incarnation: str = ""  # the peer's incarnation as last seen
    applied: VersionVector = field(default_factory=dict)  # the peer's applied vector, last seen
    # Per actor, the highest seq among the dots of our log entries up to ``acked``
    # (an upper bound): what a new incarnation of the peer must have applied to
    # have lost nothing (``Replication._heard``).  Persisted with ``acked``.
    acked_vv: VersionVector = field(default_factory=dict)
    acked_vv_known: bool = True  # False: restored from a record without it
    floor: VersionVector = field(default_factory=dict)  # its stability floor (Header.floor)
    # Its configured peers and its levels (``replication.reach``), last seen;
    # None: not heard yet, or a replica that does not send them.
    peers: frozenset[str] | None = None
    reach: tuple[Level, ...] = ()
    last_heard_ms: int | None = None
    last_sent_ms: int | None = None
    inflight: bool = False  # one request at a time per peer
    sync: SyncRun | None = None  # the state sync run towards the peer, if any
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

    @classmethod
    def restored(cls, peer_id: str, rec: PeerRecord | None) -> PeerState:
        """The peer as persisted (a new peer when ``rec`` is None)."""
        if rec is None:
            return cls(peer_id)
        out = cls(peer_id, rec.acked, rec.incarnation, resync=rec.resync)
        if rec.acked_vv is not None:
            out.acked_vv = dict(rec.acked_vv)
        else:  # an earlier build's record: exact only if nothing was acknowledged
            out.acked_vv_known = rec.acked == 0
        return out

    def report(self) -> PeerReport:
        """What it last told us about itself and beyond (``replication.reach``)."""
        return PeerReport(self.peer_id, self.peers, self.floor, self.applied, self.reach)

    def ack(self, pos: int, dots: VersionVector) -> None:
        """``acked`` moves to ``pos``; ``dots`` bounds the entries it passed."""
        if pos > self.acked:
            self.acked_vv = vv_join(self.acked_vv, dots)
            self.acked = pos

    def reset_acked(self) -> None:
        """The peer lost data: nothing of ours is acknowledged any more."""
        self.acked, self.acked_vv, self.acked_vv_known = 0, {}, True

    def record(self) -> PeerRecord:
        """The persisted part.  A pending resync restarts from 0 anyway."""
        if self.resync:
            return PeerRecord(0, self.incarnation, resync=True)
        acked_vv = dict(self.acked_vv) if self.acked_vv_known else None
        return PeerRecord(self.acked, self.incarnation, acked_vv=acked_vv)

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

from crdtkv.crdts.causal import VersionVector
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
    applied_known: bool = False  # ``applied`` was heard (now or before a restart of ours)
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
        if rec.applied is not None:
            out.applied, out.applied_known = dict(rec.applied), True
        return out

    def report(self) -> PeerReport:
        """What it last told us about itself and beyond (``replication.reach``)."""
        return PeerReport(self.peer_id, self.peers, self.floor, self.applied, self.reach)

    def record(self) -> PeerRecord:
        """The persisted part.  A pending resync restarts from 0 anyway."""
        if self.resync:
            return PeerRecord(0, self.incarnation, resync=True)
        applied = dict(self.applied) if self.applied_known else None
        return PeerRecord(self.acked, self.incarnation, applied=applied)

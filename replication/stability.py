"""Causal stability and what it lets us collect (see ``replication.protocol``,
"Applied vectors" and "Stability").

Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtkv.crdts.causal import VersionVector, vv_dominates, vv_join, vv_meet
from crdtkv.replica.keyspace import Replica
from replication.peer_state import PeerState

__all__ = ["collect_tombstones", "own_floor", "stable_vector"]


def own_floor(replica: Replica, peers: Iterable[PeerState]) -> VersionVector:
    """Our durable applied vector, lowered to the contexts of the snapshots
    we may still ship: no tombstone newer than it may be collected anywhere."""
    r = replica
    runs = [p.sync.ctx.vv for p in peers if p.sync is not None]
    if not runs and r.durable_vv == r.applied.vv:
        return r.applied.vv
    return vv_meet([r.applied.vv, r.durable_vv, *runs])


def stable_vector(replica: Replica, peers: Iterable[PeerState]) -> VersionVector:
    """What every replica has applied and no replica may still ship older
    states of (a snapshot of an open state sync can carry a write a
    collected tombstone deleted, and bring it back)."""
    peers = list(peers)
    return vv_meet([own_floor(replica, peers), *(p.floor for p in peers)])


def collect_tombstones(replica: Replica, peers: Iterable[PeerState], now_ms: int) -> int:
    """Drop stable register tombstones; returns how many.  Only once we have
    applied everything any peer reported: a write concurrent with a
    tombstone may otherwise still be on its way here."""
    peers = list(peers)
    everything_reported: VersionVector = {}
    for p in peers:
        everything_reported = vv_join(everything_reported, p.applied)
    if not vv_dominates(replica.applied.vv, everything_reported):
        return 0
    return replica.collect_tombstones(stable_vector(replica, peers), now_ms)

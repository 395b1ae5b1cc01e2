"""Causal stability and what it lets us collect (see ``replication.protocol``,
"Applied vectors" and "Stability"), over every replica of any connected
topology (``replication.reach``).

Pure: no I/O, time passed in.
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtkv.crdts.causal import VersionVector, vv_meet
from crdtkv.replica.keyspace import Replica
from replication import reach
from replication.peer_state import PeerState

__all__ = ["own_floor", "stable_level", "stable_vector"]


def own_floor(replica: Replica, peers: Iterable[PeerState]) -> VersionVector:
    """Our durable applied vector, lowered to the contexts of the snapshots
    we may still ship: no tombstone newer than it may be collected anywhere."""
    r = replica
    runs = [p.sync.ctx.vv for p in peers if p.sync is not None]
    if not runs and r.durable_vv == r.applied.vv:
        return r.applied.vv
    return vv_meet([r.applied.vv, r.durable_vv, *runs])


def stable_level(replica: Replica, peers: Iterable[PeerState]) -> reach.Level | None:
    """Our complete level (``replication.reach``): the floors and applied
    vectors of every replica, as last reported; None while we do not know
    every replica yet."""
    peers = list(peers)
    floor = own_floor(replica, peers)
    reports = [p.report() for p in peers]
    ids = [p.peer_id for p in peers]
    computed = reach.levels(replica.replica_id, ids, floor, replica.applied.vv, reports)
    return reach.complete_level(computed)


def stable_vector(replica: Replica, peers: Iterable[PeerState]) -> VersionVector:
    """What every replica has applied and no replica may still ship older
    states of (a snapshot of an open state sync can carry a write a
    collected tombstone deleted, and bring it back); empty while we do not
    know every replica yet."""
    level = stable_level(replica, peers)
    return {} if level is None else level.floor

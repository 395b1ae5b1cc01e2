"""Stability in any connected topology: what a replica knows of replicas beyond its peers.

A register tombstone may be dropped only once *every* replica has applied
the delete and may no longer ship an older state (``replication.stability``).
In a full mesh a replica hears every other one directly; in a chain, a star
or a ring it does not, so what it knows of the others must be relayed.

Relaying the other replicas' floors one by one would need to tell a fresh
report from a stale one that is still travelling around a ring, across
restarts and wipes.  Levels need no such ordering: each is recomputed, at
every message, from what the peers last said about the level below.

- Level 0 of a replica is itself: its floor and applied vector (the message
  header) and its configured peers (``Header.peers``).
- Level k of replica X joins X's level 0 with level k-1 of each of its peers:
  ``covered`` (the replicas whose reports it holds) is X and the peers'
  covered sets; ``members`` is X, X's peers and the peers' member sets;
  ``floor`` is the meet of X's floor and theirs; ``applied`` the join of the
  applied vectors.  ``covered`` is the ball of radius k around X.
- A level is *complete* when ``covered == members``: every covered replica's
  peers are covered too, so (the topology being connected) it covers every
  replica.  Its floor is then a stable vector, and its applied vector what
  must be applied here before anything is collected.

Every value in a level is one that some replica really reported, possibly a
while ago: floors only grow (a restart keeps what was durable), so an old
floor is a lower bound of the replica's floor now and the meet of old floors
only makes collection wait.  A floor and the applied vector that came with
it always travel together (level by level, in one header), so the check
"applied here covers what any replica had applied" holds for the very
reports whose floors made a tombstone look stable.  In a full mesh level 1
is complete and is exactly the stability of a mesh: the meet of the floors
heard from every peer.

A replica sends its levels to a peer only when the peer can need them: when
its own level 1 is not complete (some replica lies beyond its peers), or when
the peer does not itself peer with every replica it knows of.  In a full
mesh headers carry no levels.  A peer that has not told us its peers (not
heard yet, or built before topologies) is taken to peer with all of ours,
as a full mesh required before (``assumed_peers``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from crdtkv.crdts.causal import VersionVector, vv_join, vv_meet

__all__ = [
    "LEVELS_MAX",
    "MEMBERS_MAX",
    "Level",
    "PeerReport",
    "assumed_peers",
    "complete_level",
    "levels",
    "needs_levels",
]

# A chain longer than this never completes a level: nothing is collected.
LEVELS_MAX = 32
MEMBERS_MAX = 1024  # replicas one level may name (a decoding bound)


@dataclass(frozen=True, slots=True)
class Level:
    """What a replica knows of the replicas within k hops of it."""

    covered: frozenset[str]  # the replicas whose floor and applied vector are in here
    members: frozenset[str]  # the covered replicas and every peer of theirs
    floor: VersionVector  # meet of the covered replicas' floors
    applied: VersionVector  # join of their applied vectors

    @property
    def complete(self) -> bool:
        """Covers every replica of the (connected) cluster."""
        return self.covered == self.members


@dataclass(frozen=True, slots=True)
class PeerReport:
    """What one peer said about itself and beyond, in its last header."""

    peer_id: str
    peers: frozenset[str] | None  # its configured peers; None: not heard (or an older replica)
    floor: VersionVector
    applied: VersionVector
    reach: tuple[Level, ...]  # its levels 1.., as it sent them (maybe none)

    def level(self, k: int, near: frozenset[str]) -> Level | None:
        """Its level ``k``; None when it has not told us.  ``near``: we and our
        peers (see ``assumed_peers``)."""
        if k == 0:
            me = frozenset([self.peer_id])
            return Level(me, me | assumed_peers(self, near), self.floor, self.applied)
        if k <= len(self.reach):
            return self.reach[k - 1]
        # A complete level already covers everyone: higher levels are the same.
        last = self.reach[-1] if self.reach else None
        return last if last is not None and last.complete else None


def assumed_peers(report: PeerReport, near: frozenset[str]) -> frozenset[str]:
    """The peer's peers.  One that has not sent them is taken to peer with
    every replica we peer with, as every replica did before topologies (a
    full mesh was required).  Until we hear from a peer its floor is empty,
    so nothing is collected on that assumption; an older replica that sends
    no peers is safe only in a full mesh, as it always was."""
    if report.peers is not None:
        return report.peers
    return near - {report.peer_id}


def levels(
    me: str,
    my_peers: Iterable[str],
    floor: VersionVector,
    applied: VersionVector,
    reports: Sequence[PeerReport],
) -> list[Level]:
    """Our levels 1.., up to the first complete one.  Stops early where some
    peer has not told us the level below (not heard yet, or restarted)."""
    out: list[Level] = []
    base = frozenset([me, *my_peers])
    for k in range(1, LEVELS_MAX + 1):
        below: list[Level] = []
        for r in reports:
            lv = r.level(k - 1, base)
            if lv is None:
                return out
            below.append(lv)
        level = Level(
            frozenset([me]).union(*(b.covered for b in below)),
            base.union(*(b.members for b in below)),
            vv_meet([floor, *(b.floor for b in below)]),
            _join([applied, *(b.applied for b in below)]),
        )
        out.append(level)
        if level.complete:
            break
    return out


def complete_level(computed: Sequence[Level]) -> Level | None:
    """The complete level among ``computed`` (the last one, if any is)."""
    return computed[-1] if computed and computed[-1].complete else None


def needs_levels(me: str, reports: Sequence[PeerReport], peer: str) -> bool:
    """Whether ``peer`` can need our levels: unless we peer with every replica
    (our level 1 is complete by the topology alone) and so does ``peer``."""
    near = frozenset([me]).union(r.peer_id for r in reports)
    theirs: frozenset[str] = frozenset()
    for r in reports:
        peers = assumed_peers(r, near)
        if not peers <= near:
            return True  # some replica lies beyond our peers
        if r.peer_id == peer:
            theirs = peers
    return not near <= theirs | {peer}


def _join(vectors: Iterable[VersionVector]) -> VersionVector:
    out: VersionVector = {}
    for v in vectors:
        out = vv_join(out, v)
    return out

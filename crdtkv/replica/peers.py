"""What a replica remembers about its peers across restarts (the replication
layer's persisted bookkeeping, held on the ``Replica``).

- per peer, a ``PeerRecord``: how far the peer has durably applied our log,
  which incarnation of it that was, and whether it still needs a state sync;
- ``synced_vv``: an upper bound of the dots this replica learnt by state sync
  (see ``replication.protocol``, "Dots learnt by sync").

Only the replication core changes them (``record``, ``learn_synced``), only
persistence loads them (``restore``) and writes them (``take_records``), all
through the methods below: nothing else assigns these fields.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crdtkv.crdts.causal import VersionVector, vv_join

__all__ = ["PeerBook", "PeerRecord"]


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One peer, as persisted."""

    acked: int  # highest position of our log the peer durably applied
    incarnation: str  # the peer's incarnation as last seen ("" before we heard from it)
    # The peer lost its data (new incarnation): it gets a state sync before any
    # push.  Persisted, so a restart in between does not forget it.
    resync: bool = False
    # Per actor, the highest seq of the dots of our log entries up to ``acked``
    # (None: not recorded, as by earlier builds).  A new incarnation of the peer
    # whose applied vector covers it still has all it acknowledged: a restart
    # that lost nothing, which needs no state sync.
    acked_vv: VersionVector | None = None


@dataclass(slots=True)
class PeerBook:
    """The peers' records and the bound of dots learnt by sync, as persisted."""

    _records: dict[str, PeerRecord] = field(default_factory=dict)
    _changed: bool = False  # a record changed since persistence last took them
    synced_vv: VersionVector = field(default_factory=dict)  # read freely; join via learn_synced

    def get(self, peer: str) -> PeerRecord | None:
        return self._records.get(peer)

    def record(self, peer: str, rec: PeerRecord) -> None:
        """Keep ``rec`` for ``peer``; persistence writes it with the next batch."""
        if self._records.get(peer) != rec:
            self._records[peer] = rec
            self._changed = True

    def learn_synced(self, vv: VersionVector) -> None:
        """A state sync merged a context whose gap-free part is ``vv``."""
        self.synced_vv = vv_join(self.synced_vv, vv)

    def take_records(self, *, force: bool) -> dict[str, PeerRecord] | None:
        """The records to write, if any changed since the last call (or ``force``)."""
        if not (force or self._changed):
            return None
        self._changed = False
        return dict(self._records)

    def restore(self, records: dict[str, PeerRecord], synced_vv: VersionVector) -> None:
        """What storage held, at load."""
        self._records = dict(records)
        self._changed = False
        self.synced_vv = dict(synced_vv)

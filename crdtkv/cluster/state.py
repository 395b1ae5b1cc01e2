"""This process's place in the cluster: the map it holds, who it is, what it serves.

``ClusterState`` is what the HTTP and RESP layers ask before they run a keyed
request (``check_key``, ``check_keys``): a key whose slot this process does not
serve raises ``Moved`` (naming the owner's replica in this process's region),
and one request whose keys span slots raises ``CrossSlot``.  The map changes
only through ``set_map``, which refuses a map older than the one held.

Pure: no I/O (persisting and spreading the map are the shell's).
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtkv.cluster.map import ClusterMap, MapError, NodeAddr, Shard
from crdtkv.cluster.slots import key_slot
from crdtkv.errors import Ask, CrossSlot, Moved, TryAgain

__all__ = ["ClusterState"]


class ClusterState:
    def __init__(self, cluster_map: ClusterMap, me: str) -> None:
        if not cluster_map.has_node(me):
            raise MapError(f"replica {me!r} is not in the cluster map")
        self.me_id = me
        # Slots this process still owns in its map but has handed over to a move's
        # target (the move's last copy is done): requests for them get ``Ask``.
        self.handed_over: set[int] = set()
        # Slots this process is handing over right now (a move's last copy is in
        # flight, crdtkv.cluster.move): requests for them get ``TryAgain``, so that a
        # client sent on by ``Ask`` later finds its own writes at the target.
        self.holding: set[int] = set()
        self._set(cluster_map)

    def _set(self, m: ClusterMap) -> None:
        self.map = m
        self.me: NodeAddr = m.node(self.me_id)
        self.shard: Shard = m.shard_of(self.me_id)
        self.region = self.me.region
        sid = self.shard.id
        self._owned = bytearray(o == sid for o in m.owners)  # per slot: 1 if ours

    @property
    def epoch(self) -> int:
        return self.map.epoch

    def check_map(self, new: ClusterMap) -> bool:
        """What ``set_map(new)`` would do, changing nothing: True if it would take
        ``new``, False if ``new`` is the map held; MapError as ``set_map``.  (The
        shell checks, persists, and only then sets.)"""
        if not self.map.check_successor(new):
            return False
        if not new.has_node(self.me_id):
            raise MapError(f"the new cluster map (epoch {new.epoch}) drops this replica")
        if new.shard_of(self.me_id).id != self.shard.id:
            raise MapError(f"the new cluster map (epoch {new.epoch}) moves this replica's shard")
        return True

    def set_map(self, new: ClusterMap) -> bool:
        """Take ``new`` if its epoch is higher (True); False if it is the map held;
        MapError if it is older, conflicts, drops this process, or moves it to
        another shard (a process stays in its shard for its life)."""
        if not self.check_map(new):
            return False
        self._set(new)
        self.handed_over &= set(new.moving)  # a finished or abandoned move hands over nothing
        self.holding &= set(new.moving)
        return True

    def owns(self, slot: int) -> bool:
        return bool(self._owned[slot])

    def owns_key(self, key: str | bytes) -> bool:
        return bool(self._owned[key_slot(key)])

    def moved(self, slot: int) -> Moved:
        """The redirect for ``slot``: its owner's replica in this region."""
        node = self.map.owner_in(slot, self.region)
        resp = node.resp or ""
        return Moved(
            f"slot {slot} is served by {node.id} ({node.http}) in region {self.region}",
            slot=slot,
            url=node.http,
            resp=resp,
        )

    def ask(self, slot: int) -> Ask:
        """The one-time redirect for a handed-over ``slot``: the move's target here."""
        node = self.map.shard(self.map.moving[slot]).in_region(self.region)
        return Ask(
            f"slot {slot} is moving to {node.id} ({node.http}); ask it",
            slot=slot,
            url=node.http,
            resp=node.resp or "",
        )

    def importing(self, slot: int) -> bool:
        """Whether ``slot`` is moving to this process's shard."""
        return self.map.moving.get(slot) == self.shard.id

    def serves(self, slot: int, asking: bool = False) -> bool:
        if self._owned[slot]:
            return slot not in self.handed_over and slot not in self.holding
        return asking and self.importing(slot)

    def _refuse(self, slot: int, asking: bool) -> None:
        if self._owned[slot]:
            if slot in self.holding:
                raise TryAgain(f"slot {slot} is being handed over to its new shard; retry shortly")
            if slot in self.handed_over:
                raise self.ask(slot)
            return
        if not (asking and self.importing(slot)):
            raise self.moved(slot)

    def check_key(self, key: str | bytes, asking: bool = False) -> int:
        """The key's slot; raises ``Moved`` if this process does not serve it."""
        slot = key_slot(key)
        self._refuse(slot, asking)
        return slot

    def check_keys(self, keys: Iterable[str | bytes], asking: bool = False) -> int | None:
        """The one slot of ``keys`` (None if there are none); ``CrossSlot`` if they span
        slots, else ``Moved`` if this process does not serve that slot, ``Ask`` if it
        has handed it over to a move's target.  ``asking``: the client was redirected
        here by ``Ask`` (RESP ``ASKING``, HTTP ``X-Crdtkv-Asking: 1``): a slot moving to
        this shard is served."""
        slot: int | None = None
        for k in keys:
            s = key_slot(k)
            if slot is None:
                slot = s
            elif s != slot:
                raise CrossSlot("Keys in request don't hash to the same slot")
        if slot is not None:
            self._refuse(slot, asking)
        return slot

"""The cluster map: which shard owns each slot, and where each shard's replicas are.

A cluster is S shards x R regions.  A shard is a group of geo-replicas, one in
every region, that replicate with each other and with no one else.  Every
slot is owned by exactly one shard; in a region, the shard's replica of that
region serves it.  Clients of one region see one Redis Cluster: that region's
replicas, one per shard.

The map has an ``epoch``.  Every change makes a map with a higher epoch, and
a process refuses a map older than its own (``ClusterMap.check_successor``).
While a slot moves, the map names its target in ``moving``: the source still
owns it (and forwards the writes it takes to the target); the move ends with a
map in which the target owns it.

JSON form (``to_json``/``from_json``; ``docs/architecture.md`` "Sharding")::

    {"epoch": 1,
     "shards": [{"id": "s1", "slots": "0-8191",
                 "replicas": [{"id": "s1-a", "region": "a",
                               "http": "http://127.0.0.1:7001",
                               "resp": "127.0.0.1:6379"}, ...]},
                ...],
     "moving": {"100-199": "s2"}}

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from crdtkv.cluster.slots import SLOTS, format_ranges, parse_ranges, runs, slots_of_ranges

__all__ = ["ClusterMap", "MapError", "NodeAddr", "Shard"]

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
SHARDS_MAX = 1024


class MapError(ValueError):
    """A cluster map that is malformed, inconsistent, or older than the one held."""


@dataclass(frozen=True, slots=True)
class NodeAddr:
    """One process: a shard's replica in one region."""

    id: str  # its replica id (``crdtkv serve --replica-id``)
    region: str
    http: str  # base URL of its HTTP API (and replication): http(s)://host:port
    resp: str | None = None  # "host:port" of its Redis port; None: RESP is off

    @property
    def cluster_id(self) -> str:
        """Its Redis Cluster node id: 40 hex digits (SHA-1 of the replica id)."""
        return hashlib.sha1(self.id.encode()).hexdigest()

    @property
    def resp_host_port(self) -> tuple[str, int] | None:
        if self.resp is None:
            return None
        host, _, port = self.resp.rpartition(":")
        return host, int(port)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "region": self.region, "http": self.http, "resp": self.resp}


@dataclass(frozen=True, slots=True)
class Shard:
    id: str
    replicas: tuple[NodeAddr, ...]  # one per region, sorted by region

    def in_region(self, region: str) -> NodeAddr:
        for n in self.replicas:
            if n.region == region:
                return n
        raise MapError(f"shard {self.id!r} has no replica in region {region!r}")


@dataclass(frozen=True)
class ClusterMap:
    epoch: int
    shards: tuple[Shard, ...]
    owners: tuple[str, ...]  # per slot, the id of the shard that owns it
    moving: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    # Derived lookups (built once).
    _shards: dict[str, Shard] = field(init=False, repr=False, compare=False)
    _nodes: dict[str, tuple[Shard, NodeAddr]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_shards", {s.id: s for s in self.shards})
        object.__setattr__(self, "_nodes", {n.id: (s, n) for s in self.shards for n in s.replicas})
        object.__setattr__(self, "moving", MappingProxyType(dict(self.moving)))
        _validate(self)

    # -- lookups ---------------------------------------------------------------------------
    @property
    def regions(self) -> list[str]:
        return sorted(n.region for n in self.shards[0].replicas)

    def shard(self, shard_id: str) -> Shard:
        try:
            return self._shards[shard_id]
        except KeyError:
            raise MapError(f"no shard {shard_id!r} in the cluster map") from None

    def has_shard(self, shard_id: str) -> bool:
        return shard_id in self._shards

    def node(self, node_id: str) -> NodeAddr:
        try:
            return self._nodes[node_id][1]
        except KeyError:
            raise MapError(f"no replica {node_id!r} in the cluster map") from None

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes

    def shard_of(self, node_id: str) -> Shard:
        """The shard whose replica ``node_id`` is."""
        self.node(node_id)
        return self._nodes[node_id][0]

    def nodes(self) -> list[NodeAddr]:
        return [n for s in self.shards for n in s.replicas]

    def peers_of(self, node_id: str) -> list[NodeAddr]:
        """Whom ``node_id`` replicates with: its shard's replicas in the other regions."""
        return [n for n in self.shard_of(node_id).replicas if n.id != node_id]

    def owner(self, slot: int) -> Shard:
        return self._shards[self.owners[slot]]

    def owner_in(self, slot: int, region: str) -> NodeAddr:
        """The process that serves ``slot`` in ``region``."""
        return self.owner(slot).in_region(region)

    def slots_of(self, shard_id: str) -> list[int]:
        return [s for s, o in enumerate(self.owners) if o == shard_id]

    def ranges(self) -> list[tuple[int, int, str]]:
        """Maximal runs of slots with one owner: (low, high, shard id), by slot."""
        out: list[tuple[int, int, str]] = []
        for s, o in enumerate(self.owners):
            if out and out[-1][2] == o:
                out[-1] = (out[-1][0], s, o)
            else:
                out.append((s, s, o))
        return out

    # -- changes: each makes the next epoch ------------------------------------------------
    def with_owner(self, slots: Iterable[int], to: str) -> ClusterMap:
        """``slots`` now belong to shard ``to`` (a move's end); their moves are over."""
        self.shard(to)
        owners = list(self.owners)
        moved = set(slots)
        for s in moved:
            owners[s] = to
        moving = {s: t for s, t in self.moving.items() if s not in moved}
        return ClusterMap(self.epoch + 1, self.shards, tuple(owners), moving)

    def with_moving(self, slots: Iterable[int], to: str) -> ClusterMap:
        """``slots`` start moving to shard ``to`` (their owner keeps them meanwhile)."""
        self.shard(to)
        moving = dict(self.moving)
        for s in slots:
            if self.owners[s] == to:
                raise MapError(f"slot {s} is already owned by shard {to!r}")
            moving[s] = to
        return ClusterMap(self.epoch + 1, self.shards, self.owners, moving)

    def without_moving(self, slots: Iterable[int]) -> ClusterMap:
        """Abandon the moves of ``slots`` (their owner keeps them)."""
        gone = set(slots)
        moving = {s: t for s, t in self.moving.items() if s not in gone}
        return ClusterMap(self.epoch + 1, self.shards, self.owners, moving)

    def check_successor(self, new: ClusterMap) -> bool:
        """Whether ``new`` replaces this map: True if its epoch is higher, False if it
        is this same map; MapError if it is older, or another map of the same epoch."""
        if new.epoch > self.epoch:
            return True
        if new.epoch == self.epoch and new == self:
            return False
        if new.epoch == self.epoch:
            raise MapError(f"a different cluster map with the same epoch {new.epoch} is held")
        raise MapError(f"cluster map epoch {new.epoch} is older than this process's {self.epoch}")

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def even(cls, shards: Iterable[Shard], epoch: int = 1) -> ClusterMap:
        """Slots split evenly over ``shards`` in order, as ``redis-cli --cluster create``."""
        shards = tuple(shards)
        if not shards:
            raise MapError("a cluster map needs at least one shard")
        n = len(shards)
        owners: list[str] = []
        for i, sh in enumerate(shards):  # redis-cli's split: 0-5460, 5461-10922, 10923-16383
            owners += [sh.id] * (round((i + 1) * SLOTS / n) - len(owners))
        return cls(epoch, shards, tuple(owners))

    def to_json(self) -> dict[str, Any]:
        moving: dict[str, list[int]] = {}
        for s, t in self.moving.items():
            moving.setdefault(t, []).append(s)
        return {
            "epoch": self.epoch,
            "shards": [
                {
                    "id": s.id,
                    "slots": format_ranges(self.slots_of(s.id)),
                    "replicas": [n.to_json() for n in s.replicas],
                }
                for s in self.shards
            ],
            "moving": {
                f"{lo}" if lo == hi else f"{lo}-{hi}": t
                for t, slots in sorted(moving.items())
                for lo, hi in runs(sorted(slots))
            },
        }

    @classmethod
    def from_json(cls, obj: object) -> ClusterMap:
        """Parse and validate; MapError (one line, naming the part) if anything is off."""
        if not isinstance(obj, dict):
            raise MapError("a cluster map is a JSON object")
        unknown = set(obj) - {"epoch", "shards", "moving"}
        if unknown:
            raise MapError(f"unknown cluster map field(s): {', '.join(sorted(unknown))}")
        epoch = obj.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or not 1 <= epoch < 2**63:
            raise MapError("cluster map 'epoch' must be an integer from 1")
        raw_shards = obj.get("shards")
        if not isinstance(raw_shards, list) or not 1 <= len(raw_shards) <= SHARDS_MAX:
            raise MapError(f"cluster map 'shards' must be a list of 1 to {SHARDS_MAX} shards")
        shards: list[Shard] = []
        owners: list[str | None] = [None] * SLOTS
        for i, rs in enumerate(raw_shards):
            where = f"shards[{i}]"
            if not isinstance(rs, dict) or set(rs) - {"id", "slots", "replicas"}:
                raise MapError(f"{where} must be an object with 'id', 'slots', 'replicas'")
            sid = _ident(rs.get("id"), f"{where}.id")
            slots_text = rs.get("slots", "")
            if not isinstance(slots_text, str):
                raise MapError(f"{where}.slots must be a string such as '0-5460'")
            if slots_text.strip():
                try:
                    slots = slots_of_ranges(parse_ranges(slots_text))
                except ValueError as e:
                    raise MapError(f"{where}.slots: {e}") from None
                for s in slots:
                    if owners[s] is not None:
                        raise MapError(f"slot {s} is given to both {owners[s]!r} and {sid!r}")
                    owners[s] = sid
            reps = rs.get("replicas")
            if not isinstance(reps, list) or not reps:
                raise MapError(f"{where}.replicas must be a non-empty list")
            nodes = tuple(
                sorted(
                    (_node(r, f"{where}.replicas[{j}]") for j, r in enumerate(reps)),
                    key=lambda n: n.region,
                )
            )
            shards.append(Shard(sid, nodes))
        missing = [s for s, o in enumerate(owners) if o is None]
        if missing:
            raise MapError(
                f"{len(missing)} slot(s) have no shard, first {format_ranges(missing[:50])}:"
                " every slot from 0 to 16383 must be owned"
            )
        raw_moving = obj.get("moving", {})
        if not isinstance(raw_moving, dict):
            raise MapError("cluster map 'moving' must be an object of slot range -> shard id")
        moving: dict[int, str] = {}
        for text, target in raw_moving.items():
            try:
                slots = slots_of_ranges(parse_ranges(text))
            except ValueError as e:
                raise MapError(f"moving: {e}") from None
            for s in slots:
                moving[s] = _ident(target, f"moving[{text!r}]")
        return cls(epoch, tuple(shards), tuple(o for o in owners if o is not None), moving)


def _ident(v: object, where: str) -> str:
    if not isinstance(v, str) or not _ID.fullmatch(v):
        raise MapError(f"{where} must be 1 to 64 characters of [A-Za-z0-9_.-]")
    return v


def _node(r: object, where: str) -> NodeAddr:
    if not isinstance(r, dict) or set(r) - {"id", "region", "http", "resp"}:
        raise MapError(f"{where} must be an object with 'id', 'region', 'http' and 'resp'")
    nid = _ident(r.get("id"), f"{where}.id")
    region = _ident(r.get("region"), f"{where}.region")
    http = r.get("http")
    if not isinstance(http, str):
        raise MapError(f"{where}.http must be a URL such as http://10.0.0.1:7001")
    u = urlsplit(http)
    if u.scheme not in ("http", "https") or not u.hostname or u.path not in ("", "/"):
        raise MapError(f"{where}.http must be a URL such as http://10.0.0.1:7001, got {http!r}")
    resp = r.get("resp")
    if resp is not None:
        host, _, port = resp.rpartition(":") if isinstance(resp, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise MapError(f"{where}.resp must be 'host:port' or null, got {resp!r}")
    return NodeAddr(nid, region, http.rstrip("/"), resp)


def _validate(m: ClusterMap) -> None:
    if m.epoch < 1:
        raise MapError("cluster map epoch must be at least 1")
    if not m.shards:
        raise MapError("a cluster map needs at least one shard")
    if len(m._shards) != len(m.shards):
        raise MapError("two shards have the same id")
    if len(m._nodes) != sum(len(s.replicas) for s in m.shards):
        raise MapError("two replicas have the same id")
    regions = sorted(n.region for n in m.shards[0].replicas)
    if len(set(regions)) != len(regions):
        raise MapError(f"shard {m.shards[0].id!r} has two replicas in one region")
    for s in m.shards:
        rs = sorted(n.region for n in s.replicas)
        if rs != regions:
            raise MapError(
                f"shard {s.id!r} has replicas in regions {rs}, shard {m.shards[0].id!r} in"
                f" {regions}: every shard needs one replica in every region"
            )
    if len(m.owners) != SLOTS:
        raise MapError(f"the map must own all {SLOTS} slots")
    for slot, o in enumerate(m.owners):
        if o not in m._shards:
            raise MapError(f"slot {slot} is owned by unknown shard {o!r}")
    for slot, t in m.moving.items():
        if not 0 <= slot < SLOTS:
            raise MapError(f"moving slot {slot} is out of range")
        if t not in m._shards:
            raise MapError(f"slot {slot} moves to unknown shard {t!r}")
        if m.owners[slot] == t:
            raise MapError(f"slot {slot} moves to {t!r}, which already owns it")

"""Sharding inside a region: Redis Cluster's 16384 hash slots over shards.

``slots``: the slot of a key (CRC16-XMODEM of the key or its ``{hash tag}``).
``map``: the cluster map (slot -> shard, each shard's replica in every
region, an epoch), its JSON form and its changes.  Pure: no I/O.
"""

from crdtkv.cluster.map import ClusterMap, MapError, NodeAddr, Shard
from crdtkv.cluster.slots import SLOTS, format_ranges, key_slot, parse_ranges

__all__ = [
    "SLOTS",
    "ClusterMap",
    "MapError",
    "NodeAddr",
    "Shard",
    "format_ranges",
    "key_slot",
    "parse_ranges",
]

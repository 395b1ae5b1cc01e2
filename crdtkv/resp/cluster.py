"""Redis Cluster's commands: CLUSTER (SLOTS, SHARDS, NODES, INFO, KEYSLOT, MYID,
MYSHARDID, COUNTKEYSINSLOT, GETKEYSINSLOT, HELP), ASKING, READONLY, READWRITE.

A sharded replica (``crdtkv serve --cluster-map``, ``Node.cluster``) answers them
for the Redis Cluster its region's clients see: the replicas of this process's
region, one per shard, each a master of the slots its shard owns (the other
regions' replicas are geo-replicas, not Redis replicas, and are not listed).
Node ids are ``NodeAddr.cluster_id`` (40 hex digits), addresses the map's
``resp`` host:port.  An unsharded replica answers them as a Redis without
cluster support: ``ERR This instance has cluster support disabled``.

The redirects themselves (MOVED, ASK, CROSSSLOT) are the server's
(``Connection._misrouted``), made before a keyed command runs.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import TYPE_CHECKING, Any, cast

from crdtkv.cluster.slots import SLOTS, key_slot
from crdtkv.resp import args as A
from crdtkv.resp.commands import Context, command
from crdtkv.resp.values import OK, RespError, RMap

if TYPE_CHECKING:
    from crdtkv.cluster.map import NodeAddr
    from crdtkv.cluster.state import ClusterState
    from crdtkv.resp.server import Connection

__all__ = ["DISABLED", "cluster_info", "cluster_nodes", "shard_cluster_id"]

DISABLED = "ERR This instance has cluster support disabled"
_NO_KEYS = (0, 0, 0)

# CLUSTER's subcommands as Redis 7.2 has them, with their arity (with CLUSTER and the
# subcommand's name; negative: at least).  Those crdtkv does not answer are refused
# with a reason (the map changes only with ``crdtkv reshard``).
_SUBCOMMANDS = {
    "ADDSLOTS": -3,
    "ADDSLOTSRANGE": -4,
    "BUMPEPOCH": 2,
    "COUNT-FAILURE-REPORTS": 3,
    "COUNTKEYSINSLOT": 3,
    "DELSLOTS": -3,
    "DELSLOTSRANGE": -4,
    "FAILOVER": -2,
    "FLUSHSLOTS": 2,
    "FORGET": 3,
    "GETKEYSINSLOT": 4,
    "HELP": 2,
    "INFO": 2,
    "KEYSLOT": 3,
    "LINKS": 2,
    "MEET": -4,
    "MYID": 2,
    "MYSHARDID": 2,
    "NODES": 2,
    "REPLICAS": 3,
    "REPLICATE": 3,
    "RESET": -2,
    "SAVECONFIG": 2,
    "SET-CONFIG-EPOCH": 3,
    "SETSLOT": -4,
    "SHARDS": 2,
    "SLAVES": 3,
    "SLOTS": 2,
}

_HELP = [
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "HELP",
    "    Prints this help.",
    "(crdtkv: the map changes with `crdtkv reshard`, not with CLUSTER's other subcommands.)",
]


def _conn(ctx: Context) -> Connection:
    return cast("Connection", ctx)


def _state(ctx: Context) -> ClusterState:
    state = _conn(ctx).node.cluster
    if state is None:
        raise RespError(DISABLED)
    return state


def shard_cluster_id(shard_id: str) -> str:
    """A shard's id as CLUSTER MYSHARDID gives it: 40 hex digits (SHA-1 of its map id)."""
    return hashlib.sha1(f"shard:{shard_id}".encode()).hexdigest()


def _host_port(node: NodeAddr) -> tuple[str, int]:
    hp = node.resp_host_port
    return hp if hp is not None else ("", 0)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _region_nodes(state: ClusterState) -> list[tuple[NodeAddr, str]]:
    """This region's processes, one per shard (in the map's order), with their shard id."""
    region = state.region
    return [(sh.in_region(region), sh.id) for sh in state.map.shards]


def cluster_info(state: ClusterState) -> str:
    m = state.map
    owning = len(set(m.owners))
    return "\r\n".join(
        [
            "cluster_state:ok",
            f"cluster_slots_assigned:{SLOTS}",
            f"cluster_slots_ok:{SLOTS}",
            "cluster_slots_pfail:0",
            "cluster_slots_fail:0",
            f"cluster_known_nodes:{len(m.shards)}",
            f"cluster_size:{owning}",
            f"cluster_current_epoch:{m.epoch}",
            f"cluster_my_epoch:{m.epoch}",
            "cluster_stats_messages_sent:0",
            "cluster_stats_messages_received:0",
            "total_cluster_links_buffer_limit_exceeded:0",
            "",
        ]
    )


def cluster_nodes(state: ClusterState) -> str:
    """CLUSTER NODES: a line per process of this region, as Redis writes them:
    ``<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv>
    <config-epoch> <link-state> <slot> ...``; this process's line also shows its
    slots moving out (``[slot->-<target id>]``) and in (``[slot-<-<source id>]``)."""
    m = state.map
    region = state.region
    by_shard: dict[str, list[tuple[int, int]]] = {}
    for lo, hi, sid in m.ranges():
        by_shard.setdefault(sid, []).append((lo, hi))
    lines = []
    for node, sid in _region_nodes(state):
        host, port = _host_port(node)
        addr = f"{host}:{port}@0" if _is_ip(host) or not host else f"{host}:{port}@0,{host}"
        mine = node.id == state.me_id
        flags = "myself,master" if mine else "master"
        slots = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in by_shard.get(sid, [])]
        if mine:
            for slot, target in sorted(m.moving.items()):
                if m.owners[slot] == sid:
                    slots.append(f"[{slot}->-{m.shard(target).in_region(region).cluster_id}]")
                elif target == sid:
                    slots.append(f"[{slot}-<-{m.owner_in(slot, region).cluster_id}]")
        fields = [node.cluster_id, addr, flags, "-", "0", "0", str(m.epoch), "connected"]
        lines.append(" ".join(fields + slots))
    return "\n".join(lines) + "\n"


def _cluster_slots(state: ClusterState) -> list[Any]:
    region = state.region
    out: list[Any] = []
    for lo, hi, sid in state.map.ranges():
        node = state.map.shard(sid).in_region(region)
        host, port = _host_port(node)
        out.append([lo, hi, [host, port, node.cluster_id, RMap([])]])
    return out


def _cluster_shards(conn: Connection, state: ClusterState) -> list[Any]:
    m = state.map
    by_shard: dict[str, list[int]] = {}
    for lo, hi, sid in m.ranges():
        by_shard.setdefault(sid, []).extend((lo, hi))
    out: list[Any] = []
    for node, sid in _region_nodes(state):
        host, port = _host_port(node)
        offset = conn.node.replica.log_pos if node.id == state.me_id else 0
        fields: list[tuple[str, Any]] = [("id", node.cluster_id), ("port", port), ("ip", host)]
        fields.append(("endpoint", host))
        if host and not _is_ip(host):
            fields.append(("hostname", host))
        fields += [("role", "master"), ("replication-offset", offset), ("health", "online")]
        out.append(RMap([("slots", by_shard.get(sid, [])), ("nodes", [RMap(fields)])]))
    return out


def _slot(b: bytes, error: str) -> int:
    n = A.integer(b)  # Redis's "value is not an integer or out of range"
    if not 0 <= n < SLOTS:
        raise RespError(error)
    return n


def _keys_in_slot(conn: Connection, slot: int, limit: int | None) -> list[str]:
    """The keys of ``slot`` a read would find here, in name order (a walk over every key:
    crdtkv keeps no per-slot index)."""
    replica = conn.node.replica
    now = conn.node.clock()
    out: list[str] = []
    for name in replica.names:
        if key_slot(name) == slot and replica.visible_type(name, now) is not None:
            out.append(name)
            if limit is not None and len(out) >= limit:
                break
    return out


@command(
    "CLUSTER",
    -2,
    data=False,
    keys=_NO_KEYS,
    group="cluster",
    summary="The Redis Cluster this replica's region forms: SLOTS, SHARDS, NODES, INFO, "
    "KEYSLOT, MYID, MYSHARDID, COUNTKEYSINSLOT, GETKEYSINSLOT.",
)
def cluster(ctx: Context, argv: list[bytes]) -> Any:
    sub = A.upper(argv[0])
    arity = _SUBCOMMANDS.get(sub)
    if arity is None:
        name = argv[0].decode("utf-8", "replace")
        raise RespError(f"ERR unknown subcommand '{name}'. Try CLUSTER HELP.")
    argc = len(argv) + 1
    if (argc != arity) if arity >= 0 else (argc < -arity):
        raise RespError(f"ERR wrong number of arguments for 'cluster|{sub.lower()}' command")
    state = _state(ctx)
    conn = _conn(ctx)
    if sub == "SLOTS":
        return _cluster_slots(state)
    if sub == "SHARDS":
        return _cluster_shards(conn, state)
    if sub == "NODES":
        return cluster_nodes(state)
    if sub == "INFO":
        return cluster_info(state)
    if sub == "MYID":
        return state.me.cluster_id
    if sub == "MYSHARDID":
        return shard_cluster_id(state.shard.id)
    if sub == "KEYSLOT":
        return key_slot(argv[1])
    if sub == "COUNTKEYSINSLOT":
        return len(_keys_in_slot(conn, _slot(argv[1], "ERR Invalid slot"), None))
    if sub == "GETKEYSINSLOT":
        slot = A.integer(argv[1])
        count = A.integer(argv[2])
        if not 0 <= slot < SLOTS or count < 0:
            raise RespError("ERR Invalid slot or number of keys")
        return _keys_in_slot(conn, slot, count) if count else []
    if sub == "HELP":
        return _HELP
    raise RespError(
        f"ERR CLUSTER {sub} is not supported: crdtkv's cluster map changes only with "
        "`crdtkv reshard` (see docs/architecture.md, Sharding)"
    )


def _cluster_only(name: str, summary: str) -> None:
    @command(name, 1, data=False, keys=_NO_KEYS, group="cluster", flags=("fast",), summary=summary)
    def run(ctx: Context, argv: list[bytes]) -> Any:
        _state(ctx)
        if name == "ASKING":
            _conn(ctx)._ask_next = True
        return OK


_cluster_only(
    "ASKING",
    "The next command may use a slot moving to this replica (after an -ASK redirect).",
)
_cluster_only(
    "READONLY",
    "Accepted for Redis Cluster clients (every crdtkv replica serves reads and writes).",
)
_cluster_only(
    "READWRITE",
    "Accepted for Redis Cluster clients (every crdtkv replica serves reads and writes).",
)

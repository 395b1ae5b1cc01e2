"""Moves: no acknowledged write is lost across a slot move (sharded runs).

A sharded run (``simulations.shards``) writes only effects a final state can
be checked against one by one: set members, hash fields and list values unique
per write, and positive counter increments; removes take members their client
added.  After the liveness phase, with the final map (the last move's flip):

- *lost-write*: every acknowledged add, field and push is present at the
  slot's final owner in every region (an add unless a remove of it may have
  run: acknowledged, or with its outcome unknown);
- *removed-back*: a member whose remove was acknowledged is absent there
  (the remove observed the add: a client reads its writes across ``Ask``);
- *counter-bounds*: a counter reads, at its owner in every region, at least
  the sum of its acknowledged increments and at most that plus the
  increments whose outcome is unknown;
- *phantom*: no member, field or value is present that no write made;
- *left-behind*: no node holds a name of a slot its shard does not own
  (the source dropped what moved, and what came back later was forwarded
  and dropped again);
- *map-behind*: every node holds the final map's epoch;
- *unfinished*: every planned move finished within the liveness phase;
- *read-your-writes* (online, at each read's answer): a client's read of a
  key shows every effect of its own acknowledged writes to that key (reads
  follow ``Moved`` and ``Ask`` like the writes did: the hand-over's final copy
  is what makes this hold);
- *convergence/shard-diverged*: each shard's replicas hold the same states.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from crdtkv.cluster.map import ClusterMap
from crdtkv.cluster.slots import key_slot
from simulations.checkers.common import DETAILS_MAX, Violation

__all__ = ["MoveFinal", "ShardOp", "check_moves", "check_read"]

WRITES = {"sets.add", "sets.remove", "hashes.set", "lists.rpush", "counters.incr"}


@dataclass
class ShardOp:
    """One client operation of a sharded run, as the client saw it."""

    idx: int
    cid: int
    region: str
    kind: str
    key: str
    args: dict[str, Any]
    invoke_ms: int
    status: str = "pending"  # ok | fail | unknown
    complete_ms: int | None = None
    result: Any = None
    error: str | None = None
    node: str | None = None  # the node that answered ok
    nodes: list[str] = field(default_factory=list)  # every node it was sent to (? = asking)
    redirects: int = 0  # Moved and Ask followed
    tries: int = 0  # TryAgain answers

    @property
    def is_write(self) -> bool:
        return self.kind in WRITES

    def describe(self) -> str:
        return (
            f"#{self.idx} client {self.cid} (region {self.region}) {self.kind}({self.key!r}, "
            f"{self.args}) via {'>'.join(self.nodes)} [{self.invoke_ms}..{self.complete_ms}] "
            f"{self.status}"
        )

    def values(self) -> list[str]:
        """The unique values it writes (members, fields, list values)."""
        if self.kind in ("sets.add", "sets.remove"):
            return list(self.args["members"])
        if self.kind == "hashes.set":
            return list(self.args["fields"])
        if self.kind == "lists.rpush":
            return list(self.args["values"])
        return []


@dataclass
class MoveFinal:
    map: ClusterMap  # the final map (the last move's flip)
    converged: bool
    liveness_ms: int
    moves_planned: int
    moves_done: int
    epochs: dict[str, int] = field(default_factory=dict)  # node -> its map's epoch
    shard_of: dict[str, str] = field(default_factory=dict)
    region_of: dict[str, str] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)  # node -> names it holds
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> key -> read
    shard_converged: dict[str, bool] = field(default_factory=dict)


def present(read: dict[str, Any]) -> set[str]:
    """The values a final or client read shows: members, fields or list values."""
    if read.get("not_found"):
        return set()
    if "members" in read:
        return set(read["members"])
    if "fields" in read:
        return set(read["fields"])
    if "values" in read:
        return set(read["values"])
    return set()


def _counter(read: dict[str, Any]) -> int:
    return 0 if read.get("not_found") else int(read.get("value", 0))


def _removed(ops: list[ShardOp]) -> tuple[set[str], set[str]]:
    """Members whose remove may have run, and those whose remove was acknowledged."""
    maybe: set[str] = set()
    acked: set[str] = set()
    for o in ops:
        if o.kind == "sets.remove" and o.status in ("ok", "unknown", "pending"):
            maybe |= set(o.values())
            if o.status == "ok":
                acked |= set(o.values())
    return maybe, acked


def check_read(ops: list[ShardOp], read: ShardOp) -> list[Violation]:
    """Read-your-writes at one read: the client's own acknowledged writes to the key."""
    mine = [o for o in ops[: read.idx] if o.cid == read.cid and o.key == read.key]
    maybe_removed, _ = _removed(mine)
    result = read.result or {}
    if read.kind == "counters.get":
        want = sum(o.args["delta"] for o in mine if o.kind == "counters.incr" and o.status == "ok")
        got = _counter(result)
        if got < want:
            return [
                Violation(
                    "moves",
                    "read-your-writes",
                    f"{read.describe()} read {got}, below the {want} of the client's own "
                    "acknowledged increments",
                    [read.idx],
                )
            ]
        return []
    want_values = {
        v
        for o in mine
        if o.status == "ok" and o.kind in ("sets.add", "hashes.set", "lists.rpush")
        for v in o.values()
    } - maybe_removed
    missing = sorted(want_values - present(result))
    if not missing:
        return []
    return [
        Violation(
            "moves",
            "read-your-writes",
            f"{read.describe()} misses {missing[:5]} of the client's own acknowledged writes",
            [read.idx],
        )
    ]


def check_moves(ops: list[ShardOp], final: MoveFinal) -> list[Violation]:
    out: list[Violation] = []
    if not final.converged:
        out.append(
            Violation(
                "convergence",
                "no-convergence",
                f"the moves did not finish, or the shards did not converge with nothing left to "
                f"copy or forward, within {final.liveness_ms} ms after healing "
                f"({final.moves_done} of {final.moves_planned} moves done)",
            )
        )
    for sid, ok in sorted(final.shard_converged.items()):
        if not ok:
            out.append(Violation("convergence", "shard-diverged", f"shard {sid}'s replicas differ"))
    if final.moves_done < final.moves_planned:
        out.append(
            Violation(
                "moves",
                "unfinished",
                f"{final.moves_done} of {final.moves_planned} moves finished",
            )
        )
    m = final.map
    for rid, epoch in sorted(final.epochs.items()):
        if epoch != m.epoch:
            out.append(
                Violation(
                    "moves", "map-behind", f"{rid} holds map epoch {epoch}, not the final {m.epoch}"
                )
            )
    left = 0
    for rid, names in sorted(final.names.items()):
        stray = [n for n in names if m.owners[key_slot(n)] != final.shard_of[rid]]
        if stray and left < DETAILS_MAX:
            left += 1
            out.append(
                Violation(
                    "moves",
                    "left-behind",
                    f"{rid} (shard {final.shard_of[rid]}) still holds {sorted(stray)[:5]} of "
                    f"slots owned by {sorted({m.owners[key_slot(n)] for n in stray})}",
                )
            )
    by_key: dict[str, list[ShardOp]] = defaultdict(list)
    for o in ops:
        by_key[o.key].append(o)
    regions = m.regions
    for key, kops in sorted(by_key.items()):
        slot = key_slot(key)
        for region in regions:
            owner = m.owner_in(slot, region).id
            read = final.reads.get(owner, {}).get(key, {"not_found": True})
            out += _check_key(key, kops, owner, read)
            if len(out) >= 4 * DETAILS_MAX:
                return out
    return out


def _check_key(key: str, ops: list[ShardOp], owner: str, read: dict[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    maybe_removed, acked_removed = _removed(ops)
    if key.startswith("c"):
        lo = sum(o.args["delta"] for o in ops if o.kind == "counters.incr" and o.status == "ok")
        hi = lo + sum(
            o.args["delta"]
            for o in ops
            if o.kind == "counters.incr" and o.status in ("unknown", "pending")
        )
        got = _counter(read)
        if not lo <= got <= hi:
            out.append(
                Violation(
                    "moves",
                    "counter-bounds",
                    f"counter {key!r} reads {got} at its owner {owner}: acknowledged "
                    f"increments sum to {lo}, with those of unknown outcome {hi}",
                )
            )
        return out
    have = present(read)
    written: set[str] = set()
    for o in ops:
        if o.kind in ("sets.add", "hashes.set", "lists.rpush") and o.status != "fail":
            written |= set(o.values())
    lost = [
        o
        for o in ops
        if o.status == "ok"
        and o.kind in ("sets.add", "hashes.set", "lists.rpush")
        and not set(o.values()) <= have | maybe_removed
    ]
    for o in lost[:DETAILS_MAX]:
        out.append(
            Violation(
                "moves",
                "lost-write",
                f"{o.describe()}: its effect is not at {key!r}'s final owner {owner}",
                [o.idx],
            )
        )
    back = sorted(acked_removed & have)
    if back:
        idx = [o.idx for o in ops if o.kind == "sets.remove" and set(o.values()) & set(back)]
        out.append(
            Violation(
                "moves",
                "removed-back",
                f"{back[:5]} of {key!r} are at its final owner {owner} though their "
                "removes were acknowledged",
                idx[:DETAILS_MAX],
            )
        )
    phantom = sorted(have - written)
    if phantom:
        out.append(
            Violation(
                "moves",
                "phantom",
                f"{phantom[:5]} are in {key!r} at {owner}, and no write made them",
            )
        )
    return out

"""Real delta groups for tests that speak the replication protocol by hand.

A write to one key of the keyspace produces a group of several deltas (the
type's state and the key's ``KeyMeta``), so tests build them the way a
replica does: by applying the op at a scratch replica whose actor is the one
the test wants, and taking the group it logged.
"""

from __future__ import annotations

from typing import Any

from crdtkv.crdts.base import CRDT
from crdtkv.ops.table import apply_op
from crdtkv.replica.keyspace import DeltaGroup, Key, Replica

NOW_MS = 1_700_000_000_000


def groups_of(actor: str, ops: list[dict[str, Any]], now_ms: int = NOW_MS) -> list[DeltaGroup]:
    """The delta groups ``ops`` log at a fresh replica whose actor is ``actor``
    (``"<replica>~<incarnation>"``); the i-th group has the dot (actor, i + 1)."""
    rid, _, inc = actor.partition("~")
    replica = Replica(rid, inc or "x")
    for op in ops:
        apply_op(replica, op, now_ms)
    groups = [entry.group for entry in replica.take_pending()]
    assert [g.dot for g in groups] == [(replica.actor, i + 1) for i in range(len(groups))]
    return groups


def group_of(actor: str, op: dict[str, Any], now_ms: int = NOW_MS) -> DeltaGroup:
    """The one delta group ``op`` logs at a fresh replica of actor ``actor``."""
    (group,) = groups_of(actor, [op], now_ms)
    return group


def deltas_of(actor: str, op: dict[str, Any], now_ms: int = NOW_MS) -> dict[Key, CRDT]:
    """The deltas (key -> state) of ``op``'s group."""
    return dict(group_of(actor, op, now_ms).deltas)

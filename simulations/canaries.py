"""Canaries: deliberately broken variants, to prove each checker can fail.

A canary is injected by monkeypatching for the length of one simulated run
(``Canary.patch()`` is a context manager that restores everything after);
production code is never edited.  ``python -m simulations run --canary NAME``
must report a violation of the canary's ``checker`` and exit non-zero;
``tests/simulations/test_simulator.py`` runs every canary.

Canaries of the node core (session admission, group commit) patch the real
``NodeCore``, which the simulator drives exactly as the asyncio shell does.
The one canary of the client (adopting a refusal's token) switches a flag on
``ClientBugs``: the simulated client is a model of ``crdtkv.client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts import numeric, rlist, vset
from crdtkv.crdts.hlc import ZERO
from crdtkv.crdts.hll import HLL, REGISTER_MAX
from crdtkv.crdts.numeric import Incr, NumericRegister, Write
from crdtkv.crdts.or_map import ORMap
from crdtkv.crdts.or_set import ORSet
from crdtkv.crdts.rlist import RList
from crdtkv.crdts.vset import AnnLike, VEntry, VSet
from crdtkv.crdts.zset import ZSet
from crdtkv.node.core import NodeCore
from crdtkv.replica.keyspace import Replica
from crdtkv.sessions import SessionToken
from crdtkv.storage.base import WriteBatch
from crdtkv.storage.memory import MemoryStorage
from crdtkv.vectors.exact import ExactIndex
from replication.messages import Push
from replication.protocol import PeerState, Replication
from simulations.clients import ClientBugs
from simulations.shards import MoveBugs

__all__ = ["CANARIES", "Canary"]


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    own = isinstance(target, type) and name in vars(target)  # else inherited: delete after
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if own or not isinstance(target, type):
            setattr(target, name, old)
        else:
            delattr(target, name)


# -- the broken variants --------------------------------------------------------------------
def _ack_before_apply() -> contextlib.AbstractContextManager[None]:
    def receive_push(self: Replication, peer: PeerState, msg: Push, *rest: Any) -> int:
        return msg.upto  # acknowledged, never applied

    return _patched(Replication, "_receive_push", receive_push)


def _orset_remove_ignores_context() -> contextlib.AbstractContextManager[None]:
    original = ORSet.merge

    def merge(self: ORSet, other: ORSet) -> None:
        removed = [m for m, dots in other.entries.items() if not dots] if other.narrow else []
        original(self, other)
        for m in removed:  # a remove drops the member, whatever dots it observed
            if self.narrow:
                self.entries[m] = ()
            else:
                self.entries.pop(m, None)

    return _patched(ORSet, "merge", merge)


def _replica_first(e: Write) -> tuple[int, Any]:
    rid = e.dot[0].split("~")[0]
    return (-int(rid[1:]) if rid[1:].isdigit() else 0, e.ts)


def _lww_tiebreak_by_replica() -> contextlib.AbstractContextManager[None]:
    def split(cell: numeric.Cell) -> tuple[Write | None, list[Incr]]:
        # Orders base writes by the writing replica first (the lowest id wins),
        # then by the clock.
        base: Write | None = None
        incs: list[Incr] = []
        for e in cell:
            if isinstance(e, Incr):
                incs.append(e)
            elif base is None or _replica_first(e) > _replica_first(base):
                base = e
        return base, incs

    return _patched(numeric, "_split", split)


def _fsync_lies() -> contextlib.AbstractContextManager[None]:
    original = MemoryStorage.write

    def write(self: MemoryStorage, batch: WriteBatch, *, sync: bool) -> None:
        original(self, batch, sync=False)  # says synced; a power loss loses it

    return _patched(MemoryStorage, "write", write)


def _hll_merge_sum() -> contextlib.AbstractContextManager[None]:
    def merge_from(self: HLL, other: HLL) -> HLL:
        mine = self.registers
        pairs = [(i, min(REGISTER_MAX, mine[i] + v)) for i, v in enumerate(other.registers) if v]
        return self._delta(self._raise_all(pairs))  # sums registers instead of max

    return _patched(HLL, "merge_from", merge_from)


def _numeric_join_ignores_context() -> contextlib.AbstractContextManager[None]:
    def merge(self: NumericRegister, other: NumericRegister) -> None:
        # Keeps every entry of both sides: what the other side removed (a reset, a
        # writer's superseded running total) comes back, and totals count twice.
        mine = {e.dot: e for e in self.cell}
        mine.update((e.dot, e) for e in other.cell)
        self.cell = tuple(sorted(mine.values(), key=lambda e: e.dot))
        self.ctx.merge(other.ctx)

    return _patched(NumericRegister, "merge", merge)


def _ormap_join_ignores_context() -> contextlib.AbstractContextManager[None]:
    original = ORMap.merge

    def merge(self: ORMap, other: ORMap) -> None:
        # Keeps every entry this side held, whatever the other side's context says it
        # removed: an HDEL'd field comes back, an overwritten base lingers beside its
        # successor.
        before = {f: cell for f, cell in self.entries.items() if cell}
        original(self, other)
        for f, cell in before.items():
            now = self.entries.get(f)
            lost = [e for e in cell if e not in (now or ())]
            if lost:
                self._put(f, now, tuple(sorted((*(now or ()), *lost), key=_dot)), False)

    return _patched(ORMap, "merge", merge)


def _dot(e: numeric.Entry) -> Any:
    return e.dot


def _zset_join_drops_unobserved_increments() -> contextlib.AbstractContextManager[None]:
    original = ZSet.merge

    def merge(self: ZSet, other: ZSet) -> None:
        # Takes a score base for having observed every increment of the member it
        # meets: increments that arrive where the member has a base are dropped.
        seen = self.ctx.copy()
        original(self, other)
        for m in other.entries:
            cell = self.entries.get(m)
            if not cell or not any(isinstance(e, Write) for e in cell):
                continue
            keep = tuple(e for e in cell if not (isinstance(e, Incr) and e.dot not in seen))
            if keep != cell:
                self._put(m, cell, keep, False)

    return _patched(ZSet, "merge", merge)


def _zset_ties_by_insertion() -> contextlib.AbstractContextManager[None]:
    original = ZSet.range_by_rank

    def range_by_rank(
        self: ZSet, start: int, stop: int, reverse: bool = False
    ) -> list[tuple[str, float]]:
        # Orders members of one score by when this replica inserted them (the entries
        # dict's order), not by member: replicas that learnt them in different orders
        # rank them differently.
        arrival = {m: i for i, m in enumerate(self.entries)}
        ranked = sorted(original(self, 0, -1), key=lambda ms: (ms[1], arrival[ms[0]]))
        n = len(ranked)
        lo = max(start + n, 0) if start < 0 else start
        hi = min(stop + n if stop < 0 else stop, n - 1)
        if lo > hi:
            return []
        if reverse:
            return ranked[::-1][lo : hi + 1]
        return ranked[lo : hi + 1]

    def value(self: ZSet) -> list[tuple[str, float]]:
        return range_by_rank(self, 0, -1)

    return _patched_all(ZSet, range_by_rank=range_by_rank, value=value)


def _list_runs_by_arrival() -> contextlib.AbstractContextManager[None]:
    def values(self: RList) -> list[str]:
        # Orders the blocks of elements one actor pushed under one major (its runs) by
        # when this replica learnt the block, not by position: replicas that learnt
        # concurrent runs in different orders read the list in different orders.
        arrival: dict[tuple[int, str], int] = {}
        for p in self.entries:
            major, actor, _ = rlist.levels(p)[0]
            arrival.setdefault((major, actor), len(arrival))
        live = [p for p, e in self.entries.items() if e is not None]

        def rank(p: str) -> tuple[int, str]:
            major, actor, _ = rlist.levels(p)[0]
            return (arrival[(major, actor)], p)

        return [rlist.elem_value(self.entries[p]) for p in sorted(live, key=rank)]  # type: ignore[arg-type]

    return _patched(RList, "values", values)


def _list_clear_drops_unobserved() -> contextlib.AbstractContextManager[None]:
    original = RList.merge

    def merge(self: RList, other: RList) -> None:
        # A DEL (a full delta, or state, with no element) takes every element the
        # receiver holds, also the pushes it never observed.
        if not other.narrow and not any(e is not None for e in other.entries.values()):
            for p in [p for p, e in self.entries.items() if e is not None]:
                self._put(p, None, self.narrow)
        original(self, other)

    return _patched(RList, "merge", merge)


def _list_between(*, reversed_runs: bool) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """``rlist.between`` for pushes at an end, broken one of two ways: a run of one
    actor's pushes is ordered newest first (``reversed_runs``: the same-major candidate
    takes the sequence number with the wrong sign, unchecked), or every push takes a new
    major (the "same actor keeps the major" candidate dropped: concurrent runs interleave).
    """

    def patch() -> contextlib.AbstractContextManager[None]:
        original = rlist.between

        def between(x: str | None, y: str | None, actor: str, seq: int) -> str:
            if (x is None) == (y is None):
                return original(x, y, actor, seq)  # an insert, or the first element
            right = y is None
            end = x if right else y
            assert end is not None
            major, a, _ = rlist.levels(end)[0]
            if reversed_runs:
                if a == actor:
                    return rlist.level(major, actor, -seq if right else seq)
                return original(x, y, actor, seq)
            return rlist.level(major + 1 if right else major - 1, actor, seq if right else -seq)

        return _patched(rlist, "between", between)

    return patch


@contextlib.contextmanager
def _patched_all(target: Any, **values: Any) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for name, value in values.items():
            stack.enter_context(_patched(target, name, value))
        yield


def _negative_counter_read_raises() -> contextlib.AbstractContextManager[None]:
    original = NumericRegister.value

    def value(self: NumericRegister) -> numeric.Base:
        v = original(self)
        if isinstance(v, int) and v < 0:
            raise ValueError(f"negative counter value {v}")  # an unhandled edge case
        return v

    return _patched(NumericRegister, "value", value)


def _visible_type_lowest_stamp() -> contextlib.AbstractContextManager[None]:
    def visible_type(self: Replica, name: str, now_ms: int) -> str | None:
        meta = self.meta(name)
        if meta is not None and meta.ttl and meta.expired(now_ms):
            return None
        live = self.live_types(name)
        if len(live) <= 1:
            return live[0] if live else None
        stamps = meta.stamps if meta is not None else {}
        return min(live, key=lambda t: (stamps.get(t, ZERO), t))  # the earliest write wins

    return _patched(Replica, "visible_type", visible_type)


def _skip_session_check(*, reads: bool) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The node core serves reads (or writes) without checking the session token."""

    def patch() -> contextlib.AbstractContextManager[None]:
        original = NodeCore.admit

        def admit(
            self: NodeCore,
            ticket: int,
            token: SessionToken | None,
            wait_ms: int,
            *,
            writes: bool,
            now_ms: int,
        ) -> bool:
            if writes != reads:
                token = None
            return original(self, ticket, token, wait_ms, writes=writes, now_ms=now_ms)

        return _patched(NodeCore, "admit", admit)

    return patch


def _answers_before_durable() -> contextlib.AbstractContextManager[None]:
    def is_released(self: NodeCore, held: Any) -> bool:
        return True  # group commit: answers leave before their batch is written

    return _patched(NodeCore, "_is_released", is_released)


def _refusal_token_adopted() -> contextlib.AbstractContextManager[None]:
    return _patched(ClientBugs, "adopt_refusal_token", True)


def _move_skips_final_copy() -> contextlib.AbstractContextManager[None]:
    return _patched(MoveBugs, "skip_final_copy", True)


def _move_asks_before_final_copy() -> contextlib.AbstractContextManager[None]:
    return _patched(MoveBugs, "ask_before_final_copy", True)


@dataclass(frozen=True)
class Canary:
    name: str
    checker: str  # the checker that must report it
    description: str
    patch: Callable[[], contextlib.AbstractContextManager[None]]
    faults: tuple[str, ...] = ()  # fault kinds the run needs to show the bug
    overrides: dict[str, Any] = field(default_factory=dict)  # SimConfig fields to force
    shards: int = 0  # a canary of the move: a sharded run of this many shards


class _ForgetsRemovals:
    """An attached index as ``VSet._put`` sees it under the canary: removals are lost."""

    __slots__ = ("inner",)

    def __init__(self, inner: AnnLike) -> None:
        self.inner = inner

    def upsert(self, element: str, vec: bytes) -> None:
        self.inner.upsert(element, vec)

    def remove(self, element: str) -> None:
        pass  # forgotten: the element stays in the index


def _vset_index_keeps_removed() -> contextlib.AbstractContextManager[None]:
    original = VSet._put

    def _put(self: VSet, element: str, old: Any, new: Any, keep_empty: bool) -> None:
        ann = self.ann
        if ann is None:
            original(self, element, old, new, keep_empty)
            return
        forgetful = _ForgetsRemovals(ann)
        self.ann = forgetful
        try:
            original(self, element, old, new, keep_empty)
        finally:
            if self.ann is forgetful:  # (a change of dimension detaches the index: keep None)
                self.ann = ann

    return _patched(VSet, "_put", _put)


def _vset_join_ignores_removes() -> contextlib.AbstractContextManager[None]:
    def join(mine: Any, theirs: Any, my_ctx: Any, their_ctx: Any) -> tuple[VEntry, ...]:
        # Every entry of both sides, whatever the other side observed and removed.
        keep = {e.dot: e for e in mine}
        keep.update((e.dot, e) for e in theirs)
        return tuple(keep[d] for d in sorted(keep))

    return _patched(vset, "join_cells", join)  # the vector set's join of one element


def _vset_truth_ties_by_insertion() -> contextlib.AbstractContextManager[None]:
    original = ExactIndex.search

    def search(
        self: ExactIndex, query: bytes, count: int, accept: Any = None
    ) -> list[tuple[str, float]]:
        every = original(self, query, len(self), accept)
        rows = self._rows
        every.sort(key=lambda t: (-t[1], rows[t[0]]))  # ties by this replica's row order
        return every[:count]

    return _patched(ExactIndex, "search", search)


# Only vector-set keys, one of them, busy clients: concurrent VADDs, VREMs and searches.
_VSETS_AIM: dict[str, Any] = {
    "keys": 1,
    "clients": 6,
    "think_ms_max": 5,
    "switch_prob": 0.0,
    "key_classes": ["vsets"],
}

# Every key class but the lists (the workload as it was before them).
_BEFORE_LISTS = ["registers", "counters", "sets", "hlls", "numbers", "conflicts", "hashes", "zsets"]

# Only list keys, one of them, busy clients: concurrent pushes, pops and DELs of one list.
_LISTS_AIM: dict[str, Any] = {
    "keys": 1,
    "clients": 6,
    "think_ms_max": 5,
    "switch_prob": 0.0,
    "key_classes": ["lists"],
}

# Sharded: busy clients, three moves, a pause between bulk copy and hand-over.
_MOVES_AIM: dict[str, Any] = {
    "clients": 6,
    "think_ms_max": 5,
    "moves": 3,
    "handover_pause_ms": 200,
}

CANARIES: dict[str, Canary] = {
    c.name: c
    for c in [
        Canary(
            "ack-before-apply",
            "convergence",
            "the receiver of a push acknowledges it without applying it",
            _ack_before_apply,
            ("geo",),
        ),
        Canary(
            "orset-remove-ignores-context",
            "sets",
            "an OR-set remove drops the member everywhere, whatever dots it observed",
            _orset_remove_ignores_context,
            ("geo",),
            {"keys": 2, "clients": 6, "think_ms_max": 5, "switch_prob": 0.0},
        ),
        Canary(
            "lww-tiebreak-by-replica",
            "registers",
            "string keys order base writes by replica id (the lowest wins) before the clock",
            _lww_tiebreak_by_replica,
            ("geo", "partition"),
            # No TTLs: an expiry (a reset the history does not hold) weakens the check.
            # The key classes it was tuned on (hash and sorted-set writes dilute the
            # concurrent string writes that show it).
            {
                "keys": 1,
                "clients": 8,
                "think_ms_max": 5,
                "switch_prob": 0.0,
                "ttl_prob": 0.0,
                "key_classes": ["registers", "counters", "sets", "hlls", "numbers", "conflicts"],
            },
        ),
        Canary(
            "serve-undominated-token",
            "sessions",
            "a replica serves a session whose token it does not dominate",
            _skip_session_check(reads=True),
            ("geo", "partition"),
            {"switch_prob": 0.5},
        ),
        Canary(
            "writes-skip-session-wait",
            "sessions",
            "a replica applies a session's write before it has what the session saw "
            "(monotonic writes, writes follow reads)",
            _skip_session_check(reads=False),
            ("geo", "partition"),
            {"switch_prob": 0.5},
        ),
        Canary(
            "answers-before-durable",
            "durability",
            "the node core's group commit answers a request before its batch is written; "
            "a crash then loses acknowledged writes",
            _answers_before_durable,
            ("crash", "geo"),
            {"key_classes": ["registers", "counters", "sets"]},
        ),
        Canary(
            "refusal-token-adopted",
            "sessions",
            "a refusal carries the token merged with the refusing replica's vector and the "
            "client adopts it (the failover bug): no other replica can serve the session",
            _refusal_token_adopted,
            ("geo", "partition"),
            # A short session wait: refusals, and so refusal tokens, are common.
            {"switch_prob": 0.5, "clients": 8, "wait_ms": 20},
        ),
        Canary(
            "fsync-lies",
            "durability",
            "storage reports a sync that did not happen; a crash loses acknowledged writes",
            _fsync_lies,
            ("crash", "geo"),
        ),
        Canary(
            "hll-merge-sum",
            "hll",
            "HLL merge(dest, sources) sums registers instead of taking the maximum",
            _hll_merge_sum,
            (),
            # The key classes it was tuned on: list writes dilute the merges that show it.
            {"clients": 6, "think_ms_max": 10, "key_classes": _BEFORE_LISTS},
        ),
        Canary(
            "negative-counter-read-raises",
            "errors",
            "reading a counter whose value is negative raises an unexpected exception",
            _negative_counter_read_raises,
            (),
        ),
        Canary(
            "numeric-join-ignores-context",
            "counters",
            "the numeric register's join keeps every entry of both sides, whatever the "
            "other side removed: reset increments return, superseded totals count twice",
            _numeric_join_ignores_context,
            (),
        ),
        Canary(
            "ormap-join-ignores-context",
            "hash-converge",
            "the hash's join keeps every field entry it held, whatever the other side "
            "observed and removed: HDEL'd fields come back, overwritten values linger",
            _ormap_join_ignores_context,
            ("geo",),
            {"keys": 1, "clients": 6, "think_ms_max": 5, "key_classes": ["hashes"]},
        ),
        Canary(
            "zset-join-drops-increments",
            "zset-score",
            "the sorted set's join drops the increments it receives for a member that has a "
            "score base, as if the base had observed them",
            _zset_join_drops_unobserved_increments,
            ("geo",),
            {"keys": 1, "clients": 6, "think_ms_max": 5, "key_classes": ["zsets"]},
        ),
        Canary(
            "zset-ties-by-insertion",
            "zset-rank",
            "the sorted set ranks members of one score by when the replica inserted them, "
            "not by member",
            _zset_ties_by_insertion,
            ("geo", "partition"),
            {"keys": 1, "clients": 6, "think_ms_max": 5, "key_classes": ["zsets"]},
        ),
        Canary(
            "list-runs-by-arrival",
            "list-converge",
            "a list reads its elements grouped by run (one actor's pushes under one major), "
            "the runs in the order the replica learnt them, not by position",
            _list_runs_by_arrival,
            ("geo", "partition"),
            _LISTS_AIM,
        ),
        Canary(
            "list-clear-drops-unobserved",
            "list-pushes-kept",
            "a list's join applies a DEL to every element the receiver holds, also the "
            "pushes the DEL never observed",
            _list_clear_drops_unobserved,
            ("geo", "partition"),
            {**_LISTS_AIM, "clients": 8},
        ),
        Canary(
            "list-runs-newest-first",
            "list-replica-order",
            "a replica's run of pushes at one end is ordered newest first (the position "
            "that keeps the tail's major takes the wrong sign)",
            _list_between(reversed_runs=True),
            ("geo",),
            _LISTS_AIM,
        ),
        Canary(
            "list-push-new-major",
            "list-no-interleave",
            "every push takes a new major (head - 1, tail + 1), also within a replica's "
            "run: concurrent runs at one end interleave",
            _list_between(reversed_runs=False),
            ("geo", "partition"),
            _LISTS_AIM,
        ),
        Canary(
            "vset-index-keeps-removed",
            "vset-ann-no-removed",
            "a vector set's state forgets to remove an element from its attached index "
            "(VREM, DEL, a merged removal): searches answer elements the set no longer holds",
            _vset_index_keeps_removed,
            ("geo",),
            _VSETS_AIM,
        ),
        Canary(
            "vset-truth-ties-by-insertion",
            "vset-truth-equal",
            "the exact scan breaks ties of score by the row the replica stored the element "
            "in (the order it learnt them), not by element",
            _vset_truth_ties_by_insertion,
            ("geo", "partition"),
            _VSETS_AIM,
        ),
        Canary(
            "vset-join-ignores-removes",
            "vset-converge",
            "a vector set's join keeps every entry of both sides, whatever the other side "
            "observed: removed elements stay at the replicas that receive the VREM",
            _vset_join_ignores_removes,
            ("geo",),
            _VSETS_AIM,
        ),
        Canary(
            "move-skips-final-copy",
            "moves",
            "a slot move's hand-over copies nothing changed since the bulk copy: writes the "
            "source took meanwhile are not at the target when it answers ASK, nor after the drop",
            _move_skips_final_copy,
            ("geo", "partition"),
            _MOVES_AIM,
            shards=2,
        ),
        Canary(
            "move-asks-before-final-copy",
            "moves",
            "a slot move's source answers ASK as soon as its hand-over starts, not once the "
            "final copy is acknowledged: a client sent on to the target misses its own writes",
            _move_asks_before_final_copy,
            ("geo", "partition"),
            _MOVES_AIM,
            shards=2,
        ),
        Canary(
            "visible-type-lowest-stamp",
            "types",
            "of several live types of a key, the one written first is visible",
            _visible_type_lowest_stamp,
            ("geo", "partition"),
            {"clients": 8, "think_ms_max": 5, "switch_prob": 0.0, "key_classes": ["conflicts"]},
        ),
    ]
}

"""Canaries: deliberately broken variants, to prove each checker can fail.

A canary is injected by monkeypatching for the length of one simulated run
(``Canary.patch()`` is a context manager that restores everything after);
production code is never edited.  ``python -m simulations run --canary NAME``
must report a violation of the canary's ``checker`` and exit non-zero;
``tests/simulations/test_simulator.py`` runs every canary.

Canaries that break the simulated shell rather than the core (the session
wait, the token) switch flags on ``ShellBugs``, which ``simulations.sim``
reads: the production shell is aiohttp and is not run by the simulator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts.hll import HLL, REGISTER_MAX
from crdtkv.crdts.lww_register import LWWRegister
from crdtkv.crdts.or_set import ORSet
from crdtkv.crdts.pn_counter import PNCounter
from crdtkv.storage.base import WriteBatch
from crdtkv.storage.memory import MemoryStorage
from replication.messages import Push
from replication.protocol import PeerState, Replication

__all__ = ["CANARIES", "Canary", "ShellBugs"]


class ShellBugs:
    """Bugs of the simulated API shell, switched on by canaries."""

    serve_undominated_reads = False  # serve reads without waiting for the session token
    serve_undominated_writes = False  # serve writes without waiting for the session token


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, old)


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


def _lww_tiebreak_by_replica() -> contextlib.AbstractContextManager[None]:
    def merge(self: LWWRegister, other: LWWRegister) -> None:
        # Orders writes by the writing replica first, then the clock.
        mine = (self.ts.actor.split("~")[0], self.ts.wall_ms, self.ts.logical)
        theirs = (other.ts.actor.split("~")[0], other.ts.wall_ms, other.ts.logical)
        if other.ts.wall_ms and (self.ts.wall_ms == 0 or theirs > mine):
            self.ts, self.val = other.ts, other.val
            self.expires_ms, self.tombstone = other.expires_ms, other.tombstone

    return _patched(LWWRegister, "merge", merge)


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


def _counter_merge_sum() -> contextlib.AbstractContextManager[None]:
    def merge(self: PNCounter, other: PNCounter) -> None:
        for actor, o in other.entries.items():
            e = self.entries.setdefault(actor, [0, 0, 0, 0])
            for i in range(4):
                e[i] += o[i]  # sums instead of max: a delta carries totals

    return _patched(PNCounter, "merge", merge)


def _negative_counter_read_raises() -> contextlib.AbstractContextManager[None]:
    original = PNCounter.value

    def value(self: PNCounter) -> int:
        v = original(self)
        if v < 0:
            raise ValueError(f"negative counter value {v}")  # an unhandled edge case
        return v

    return _patched(PNCounter, "value", value)


def _shell_flag(name: str) -> Callable[[], contextlib.AbstractContextManager[None]]:
    return lambda: _patched(ShellBugs, name, True)


@dataclass(frozen=True)
class Canary:
    name: str
    checker: str  # the checker that must report it
    description: str
    patch: Callable[[], contextlib.AbstractContextManager[None]]
    faults: tuple[str, ...] = ()  # fault kinds the run needs to show the bug
    overrides: dict[str, Any] = field(default_factory=dict)  # SimConfig fields to force


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
            "LWW registers order writes by replica id before the clock",
            _lww_tiebreak_by_replica,
            ("geo",),
        ),
        Canary(
            "serve-undominated-token",
            "sessions",
            "a replica serves a session whose token it does not dominate",
            _shell_flag("serve_undominated_reads"),
            ("geo", "partition"),
            {"switch_prob": 0.5},
        ),
        Canary(
            "writes-skip-session-wait",
            "sessions",
            "a replica applies a session's write before it has what the session saw "
            "(monotonic writes, writes follow reads)",
            _shell_flag("serve_undominated_writes"),
            ("geo", "partition"),
            {"switch_prob": 0.5},
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
        ),
        Canary(
            "negative-counter-read-raises",
            "errors",
            "reading a counter whose value is negative raises an unexpected exception",
            _negative_counter_read_raises,
            (),
        ),
        Canary(
            "counter-merge-sum",
            "counters",
            "PN-counter join sums components instead of taking the maximum",
            _counter_merge_sum,
            (),
        ),
    ]
}

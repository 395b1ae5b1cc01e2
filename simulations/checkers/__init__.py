"""The checkers: what must hold of every run, each reporting violations with details.

Each checker has a black-box part, which reads only invocations, responses
and the final reads (so it also runs against real processes, see
``simulations.nemesis``), and, in the simulator, a white-box part that also
reads ``Meta`` (the dot and delta an operation produced, the state a read
saw).  ``docs/simulation.md`` states every rule precisely; in short (one module each):

- ``convergence``: after healing, every replica holds the same state.
- ``sets``: an acknowledged add is never lost unless a remove (or a delete of
  the set) could have observed it; no member appears that nobody added;
  a dot an acknowledged remove observed never comes back.
- ``counters``: without resets, the final value is the sum of acknowledged
  increments plus a subset of the in-doubt ones; with resets, exactly the
  increments no reset observed survive.
- ``registers``: the final value is the write with the largest HLC timestamp;
  a replica's register never goes back to an older write (no deleted value
  returns without a later write).
- ``hll``: counts are within 3 standard errors (plus 2) of the number of
  distinct items, merges are unions, and (white-box) registers are exactly
  those of the items added in the surviving epoch.
- ``types``: one name reads as one type everywhere, the one written last;
  hidden types are kept, a DEL clears them all.
- ``hashes_zsets``: *hash-converge*: after healing every replica holds the
  same fields and values of each hash, exactly the entries no executed
  HSET, HDEL or DEL removed, and no acknowledged HSET's field is lost unless
  a removal could have observed it; *zset-score*: each member's score is
  its surviving base plus the increments nothing observed; *zset-rank*:
  ranges answer in (score, member) order, the same order everywhere.
- ``lists``: *list-converge*: after healing every replica answers LRANGE
  0 -1 alike, and (white-box) that is its live elements in position order,
  exactly those an executed push, LINSERT or LMOVE minted and nothing
  executed removed, with their last written values; *list-pushes-kept*: an
  acknowledged push's value is present at the end unless an operation that
  may have happened after it began could have taken it (white-box: an element
  nothing removed is live); *list-replica-order*: one replica's pushes at one
  end keep their order; *list-no-interleave*: a replica's run of pushes at
  one end is contiguous with respect to other replicas' pushes.
- ``vsets``: *vset-converge*: after healing every replica reads each vector
  set alike, with only vectors and attributes written to that element, no
  acknowledged VADD lost that nothing could have removed, no removed element
  back; *vset-truth-equal*: TRUTH answers are the exact ranking of what the
  replica holds, the same at every replica; *vset-ann-no-removed*: no answer
  names an element the replica does not hold (or has removed).
- ``sessions``: read-your-writes, monotonic reads, monotonic writes and
  writes-follow-reads for every session.
- ``durability`` (fsync only): a crash never loses what was acknowledged.
- ``moves`` (sharded runs, ``simulations.shards``; ``checkers/moves.py``): no
  acknowledged write is lost across a slot move (at the final owner in every
  region), nothing is left at the source, every node holds the final map,
  a client reads its own writes across ``Moved`` and ``Ask``.
- ``errors``: no operation raises anything but the contract's errors (the
  API would answer 500), and no replica core raises during replication.

Timing rules are sound under concurrency: operation A is *strictly before*
B only if A was acknowledged before B was invoked; an operation whose outcome
is unknown may take effect at any time after its invocation.  Register
reasoning from real time allows ``History.skew_slack_ms`` for clock skew.
"""

from __future__ import annotations

from simulations.checkers.common import CHECKERS, Violation, strictly_before
from simulations.checkers.convergence import (
    check_applied_has_effect,
    check_final_reads_agree,
    no_convergence,
)
from simulations.checkers.counters import check_counters
from simulations.checkers.durability import check_final_durability, check_restart
from simulations.checkers.hashes_zsets import check_hashes, check_zsets
from simulations.checkers.hlls import check_hlls
from simulations.checkers.lists import check_lists
from simulations.checkers.numbers import check_numbers
from simulations.checkers.registers import check_registers
from simulations.checkers.sessions import check_sessions
from simulations.checkers.sets import check_sets, set_stats
from simulations.checkers.types import check_types
from simulations.checkers.vsets import check_vsets
from simulations.history import READS, WRITES, Final, History

__all__ = [
    "CHECKERS",
    "READS",
    "WRITES",
    "Violation",
    "check_all",
    "check_applied_has_effect",
    "check_counters",
    "check_final_durability",
    "check_final_reads_agree",
    "check_hashes",
    "check_hlls",
    "check_lists",
    "check_numbers",
    "check_registers",
    "check_restart",
    "check_sessions",
    "check_sets",
    "check_types",
    "check_vsets",
    "check_zsets",
    "no_convergence",
    "set_stats",
    "strictly_before",
]


def check_all(history: History, final: Final) -> list[Violation]:
    out: list[Violation] = []
    out += check_final_reads_agree(history, final)
    out += check_applied_has_effect(history, final)
    out += check_sets(history, final)
    out += check_counters(history, final)
    out += check_numbers(history, final)
    out += check_registers(history, final)
    out += check_hlls(history, final)
    out += check_types(history, final)
    out += check_hashes(history, final)
    out += check_zsets(history, final)
    out += check_lists(history, final)
    out += check_vsets(history, final)
    out += check_sessions(history, final)
    if history.durability == "fsync":
        out += check_final_durability(history, final)
    return out

"""Physical clocks of the simulated replicas: skew, jumps, and excess.

A replica's physical clock reads ``sim.now_ms + skew_ms``.  The HLC refuses
a remote timestamp more than ``max_offset_ms`` ahead of local physical time,
so while every |skew| stays within ``SimConfig.skew_bound_ms()`` (half the
bound, minus a margin) no replica ever refuses another's timestamps:

- ``skew``: each replica starts with a constant skew in [-S, S];
- ``jump``: at random moments a replica's skew jumps to a new value in
  [-S, S] (forwards or backwards: an NTP step);
- ``clock-excess``: for a window, one replica's clock is off by
  ``max_offset_ms + excess`` (ahead or behind), so timestamps are refused:
  replication from (or to) it stalls and session writes carrying a clock far
  ahead are refused.  The window closes before the heal; the liveness phase
  then waits for the clocks' HLCs to come back within the bound, which takes
  at most the excess, so convergence must still follow.

A schedule is a list of ``ClockChange(at_ms, rid, skew_ms)``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["ClockChange", "draw_clock_schedule", "initial_skews"]


@dataclass(frozen=True)
class ClockChange:
    at_ms: int  # offset from the start of the fault phase
    rid: str
    skew_ms: int  # the replica's new skew
    reason: str  # jump | excess | excess-end


def initial_skews(rng: random.Random, ids: list[str], bound_ms: int, on: bool) -> dict[str, int]:
    skews = {rid: rng.randint(-bound_ms, bound_ms) for rid in ids}
    return skews if on else dict.fromkeys(ids, 0)


def draw_clock_schedule(
    rng: random.Random,
    ids: list[str],
    duration_ms: int,
    *,
    bound_ms: int,
    jumps: int,
    excess_ms: int,
    max_offset_ms: int,
) -> list[ClockChange]:
    out = [
        ClockChange(
            rng.randint(0, duration_ms), rng.choice(ids), rng.randint(-bound_ms, bound_ms), "jump"
        )
        for _ in range(jumps)
    ]
    if excess_ms > 0:
        rid = rng.choice(ids)
        start = rng.randint(0, duration_ms // 2)
        end = rng.randint(start + 1, duration_ms)
        sign = rng.choice([-1, 1])
        out.append(ClockChange(start, rid, sign * (max_offset_ms + excess_ms), "excess"))
        out.append(ClockChange(end, rid, rng.randint(-bound_ms, bound_ms), "excess-end"))
    out.sort(key=lambda c: (c.at_ms, c.rid, c.reason))
    return out

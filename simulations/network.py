"""The simulated network: a geo latency matrix and partitions that come and go.

Regions: replica ``r<i>`` lives in region ``i % 3``.  With the ``geo`` fault
kind, one-way latency within a region is 1-5 ms and between two regions
30-150 ms (drawn per region pair, the same both ways); without it every link
has 5 ms.  Jitter (``reorder``) adds 0..jitter_ms per message, so messages
on one link overtake each other.

Partition shapes (``blocked_links``), each a set of blocked one-way links:

- ``isolate``: one replica cut off from all others, both ways;
- ``halves``: the replicas split into two groups of (nearly) equal size;
- ``minority``: a random minority group against the majority;
- ``ring``: each replica talks only to its two neighbours on a ring (with
  four or more replicas some pairs can reach each other only through others);
- ``oneway``: a random non-empty set of single links blocked in one direction.

An episode blocks its links from ``start_ms`` for ``length_ms``; episodes may
overlap, and the blocked set is the union of the active ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulations.harness import LinkFaults

__all__ = ["SHAPES", "Episode", "blocked_links", "draw_episodes", "link_faults", "region_of"]

SHAPES = ("isolate", "halves", "minority", "ring")
REGIONS = 3
Link = tuple[str, str]


def region_of(rid: str) -> int:
    return int(rid[1:]) % REGIONS


def _geo_matrix(rng: random.Random) -> dict[tuple[int, int], int]:
    m: dict[tuple[int, int], int] = {}
    for a in range(REGIONS):
        for b in range(a, REGIONS):
            ms = rng.randint(1, 5) if a == b else rng.randint(30, 150)
            m[(a, b)] = m[(b, a)] = ms
    return m


def link_faults(
    ids: list[str], rng: random.Random, *, geo: bool, jitter_ms: int, loss: float, dup: float
) -> dict[Link, LinkFaults]:
    matrix = _geo_matrix(rng)
    out: dict[Link, LinkFaults] = {}
    for a in ids:
        for b in ids:
            if a == b:
                continue
            latency = matrix[(region_of(a), region_of(b))] if geo else 5
            out[(a, b)] = LinkFaults(latency, jitter_ms, loss, dup)
    return out


def _both_ways(groups: list[list[str]]) -> set[Link]:
    out: set[Link] = set()
    for i, g in enumerate(groups):
        for h in groups[i + 1 :]:
            for a in g:
                for b in h:
                    out.add((a, b))
                    out.add((b, a))
    return out


def blocked_links(shape: str, ids: list[str], rng: random.Random) -> set[Link]:
    n = len(ids)
    shuffled = list(ids)
    rng.shuffle(shuffled)
    if shape == "isolate" or (n < 3 and shape != "oneway"):
        return _both_ways([shuffled[:1], shuffled[1:]])
    if shape == "halves":
        return _both_ways([shuffled[: n // 2], shuffled[n // 2 :]])
    if shape == "minority":
        k = rng.randint(1, (n - 1) // 2)
        return _both_ways([shuffled[:k], shuffled[k:]])
    if shape == "ring":
        allowed = {(shuffled[i], shuffled[(i + 1) % n]) for i in range(n)}
        allowed |= {(b, a) for a, b in allowed}
        return {(a, b) for a in ids for b in ids if a != b and (a, b) not in allowed}
    if shape == "oneway":
        links = [(a, b) for a in ids for b in ids if a != b]
        return set(rng.sample(links, rng.randint(1, max(1, len(links) // 2))))
    raise ValueError(f"unknown partition shape {shape!r}")


@dataclass
class Episode:
    start_ms: int  # offset from the start of the fault phase
    length_ms: int
    shape: str
    links: frozenset[Link]


def draw_episodes(
    rng: random.Random,
    ids: list[str],
    duration_ms: int,
    *,
    two_way: int,
    one_way: int,
    length_ms_max: int,
) -> list[Episode]:
    """Partition episodes; with probability 1/2 the last one lasts until the heal."""
    out: list[Episode] = []
    for i in range(two_way + one_way):
        shape = rng.choice(SHAPES) if i < two_way else "oneway"
        length = rng.randint(min(100, length_ms_max), max(100, length_ms_max))
        start = rng.randint(0, max(0, duration_ms - length))
        out.append(Episode(start, length, shape, frozenset(blocked_links(shape, ids, rng))))
    if out and rng.random() < 0.5:
        last = max(out, key=lambda e: e.start_ms)
        last.length_ms = duration_ms - last.start_ms
    return out

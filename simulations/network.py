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
overlap, and the blocked set is the union of the active ones.  Partitions cut
only links of the run's topology.

Topologies (``topology``, the ``topology`` fault kind): which replicas are
each other's peers, symmetric and connected.  ``mesh``: every replica peers
with every other (the default); ``chain``: a path through the replicas in a
random order; ``star``: one random hub peers with every other replica, the
leaves only with the hub; ``ring``: a cycle in a random order; ``random``: a
random spanning tree plus each other link with probability 1/3.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from simulations.harness import LinkFaults

__all__ = [
    "SHAPES",
    "TOPOLOGIES",
    "Episode",
    "Topology",
    "blocked_links",
    "describe_topology",
    "draw_episodes",
    "hub_of",
    "link_faults",
    "region_of",
    "topology",
    "topology_links",
]

SHAPES = ("isolate", "halves", "minority", "ring")
TOPOLOGIES = ("mesh", "chain", "star", "ring", "random")
REGIONS = 3
RANDOM_EXTRA_LINK = 1 / 3  # ``random``: chance of each link beyond the spanning tree
Link = tuple[str, str]
Topology = dict[str, list[str]]  # replica -> its peers (in ``ids`` order)


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
    ids: list[str],
    rng: random.Random,
    *,
    geo: bool,
    jitter_ms: int,
    loss: float,
    dup: float,
    regions: dict[str, int] | None = None,
) -> dict[Link, LinkFaults]:
    """Every link's faults.  ``regions``: each id's region (0 to 2); default
    ``region_of`` (a sharded run places its replicas itself)."""
    matrix = _geo_matrix(rng)
    out: dict[Link, LinkFaults] = {}
    where = regions if regions is not None else {rid: region_of(rid) for rid in ids}
    for a in ids:
        for b in ids:
            if a == b:
                continue
            latency = matrix[(where[a], where[b])] if geo else 5
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


def topology(shape: str, ids: list[str], rng: random.Random) -> Topology:
    """The peers of each replica in a topology of ``shape`` (see the module docstring)."""
    order = list(ids)
    rng.shuffle(order)
    links: set[Link] = set()
    if shape == "mesh":
        links = {(a, b) for a in ids for b in ids if a < b}
    elif shape == "chain":
        links = set(itertools.pairwise(order))
    elif shape == "star":
        links = {(order[0], leaf) for leaf in order[1:]}
    elif shape == "ring":
        links = set(itertools.pairwise(order))
        if len(order) > 2:
            links.add((order[-1], order[0]))
    elif shape == "random":
        for i, rid in enumerate(order[1:], 1):  # a random spanning tree: connected
            links.add((rng.choice(order[:i]), rid))
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                if (a, b) not in links and (b, a) not in links and rng.random() < RANDOM_EXTRA_LINK:
                    links.add((a, b))
    else:
        raise ValueError(f"unknown topology {shape!r}; known: {', '.join(TOPOLOGIES)}")
    peers: Topology = {rid: [] for rid in ids}
    for a, b in links:
        peers[a].append(b)
        peers[b].append(a)
    return {rid: sorted(ps, key=ids.index) for rid, ps in peers.items()}


def topology_links(peers: Topology) -> set[Link]:
    """Every one-way link of a topology."""
    return {(a, b) for a, ps in peers.items() for b in ps}


def describe_topology(peers: Topology) -> str:
    """Its links, e.g. ``r0-r1 r0-r2``."""
    return " ".join(f"{a}-{b}" for a, b in sorted(topology_links(peers)) if a < b)


def hub_of(peers: Topology) -> str | None:
    """The replica that peers with every other one, if exactly one does and no
    other pair is linked (a star of three or more replicas)."""
    n = len(peers)
    hubs = [rid for rid, ps in peers.items() if len(ps) == n - 1]
    if n < 3 or len(hubs) != 1 or any(len(ps) != 1 for rid, ps in peers.items() if rid != hubs[0]):
        return None
    return hubs[0]


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
    links: set[Link] | None = None,
) -> list[Episode]:
    """Partition episodes; with probability 1/2 the last one lasts until the heal.

    ``links``: the topology's links (None: every link); an episode blocks only those."""
    out: list[Episode] = []
    for i in range(two_way + one_way):
        shape = rng.choice(SHAPES) if i < two_way else "oneway"
        length = rng.randint(min(100, length_ms_max), max(100, length_ms_max))
        start = rng.randint(0, max(0, duration_ms - length))
        blocked = blocked_links(shape, ids, rng)
        if links is not None:
            blocked &= links
        out.append(Episode(start, length, shape, frozenset(blocked)))
    if out and rng.random() < 0.5:
        last = max(out, key=lambda e: e.start_ms)
        last.length_ms = duration_ms - last.start_ms
    return out

"""What one simulated run does, all of it drawn from the seed ("swarm testing").

Each run enables a random subset of the fault kinds, each with a random
intensity (Groce et al., "Swarm Testing", ISSTA 2012: a run that leaves some
faults out reaches states that a run with every fault at once rarely does).
The command line can pin the set of fault kinds (``--faults``), the number
of replicas, the durability mode and the fault phase's duration; everything
else still comes from the seed.

The ``topology`` kind is drawn apart from the others, from its own stream
(on in a quarter of swarm runs, so most runs are fully meshed), so that
adding it left every other draw of every seed as it was: a seed found before
still reproduces.  When it is on, the replicas peer in a chain, a star, a
ring or a random connected graph (``simulations.network.topology``) instead
of a full mesh.

Every random choice of a run is made by a ``random.Random`` seeded with a
string derived from the run's seed (``stream(seed, name)``): string seeds are
hashed with SHA-512 by ``random``, so the streams are the same in every
process, and the workload does not shift when a fault kind is switched off.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from simulations import network

__all__ = [
    "FAULT_KINDS",
    "SHARD_FAULT_KINDS",
    "TOPOLOGY_SHAPES",
    "Intensities",
    "SimConfig",
    "draw_config",
    "stream",
]

FAULT_KINDS: dict[str, str] = {
    "partition": "two-way partitions that come and go: isolate one, halves, minority, ring",
    "oneway": "one-way partitions of random links that come and go",
    "loss": "message loss, 0-30% per link",
    "dup": "message duplication",
    "reorder": "jitter on every link, so messages overtake each other",
    "geo": "three regions, 30-150 ms one way between them, a few ms within",
    "crash": "replicas crash (losing the unsynced storage suffix) and restart",
    "wipe": "replicas lose their whole data directory and restart empty",
    "skew": "each replica's physical clock is off by a constant, within the HLC bound",
    "jump": "replica clocks jump forwards and backwards, within the HLC bound",
    "clock-excess": "clocks further apart than the HLC bound for a while (remote writes refused)",
    "small-log": "a delta log of a few KB, so lagging peers need a state sync",
    "topology": "replicas peer in a chain, star, ring or random connected graph, not a full mesh",
}
# The kinds a sharded run (``--shards``, ``simulations.shards``) models; the others are
# left out of its draw: a wipe loses acknowledged writes by design (the checker of a
# move asks that none is lost), clocks past the HLC bound refuse imports for as long
# as they last, and the shards make the topology.
SHARD_FAULT_KINDS = [k for k in FAULT_KINDS if k not in ("wipe", "clock-excess", "topology")]
SHARD_REGIONS = (2, 3)  # a sharded run's regions, unless pinned
# Switched per seed with probability 1/2 each, from the configuration stream.
SWARM_KINDS = [k for k in FAULT_KINDS if k != "topology"]
TOPOLOGY_SWARM_P = 0.25  # ``topology``: its own stream, on in a quarter of swarm runs
TOPOLOGY_SHAPES = ("chain", "star", "ring", "random")
TOPOLOGY_REPLICAS = (3, 4, 5)  # a topology run's replicas, unless pinned

DURABILITY = ("fsync", "wal")


def stream(seed: int, name: str) -> random.Random:
    """An independent, process-stable random stream of run ``seed``."""
    return random.Random(f"crdtkv-sim:{seed}:{name}")


@dataclass
class Intensities:
    """How hard each enabled fault kind hits (unused for disabled kinds)."""

    partition_episodes: int = 0  # two-way partition episodes in the fault phase
    oneway_episodes: int = 0  # one-way partition episodes
    partition_ms_max: int = 0  # longest episode
    loss: float = 0.0  # probability a replication message is dropped
    dup: float = 0.0  # probability a message is delivered twice
    jitter_ms: int = 0  # extra random delay per message, 0..jitter_ms
    crash_rate_per_s: float = 0.0  # crashes per simulated second (whole cluster)
    down_ms_max: int = 0  # longest time a crashed replica stays down
    wipe_count: int = 0  # data directories lost in the fault phase
    skew_ms_max: int = 0  # |skew| bound of every clock while within the HLC bound
    jumps: int = 0  # clock jumps in the fault phase
    excess_ms: int = 0  # how far past the HLC bound clocks may drift (clock-excess)
    log_bytes_max: int = 64 * 1024 * 1024  # retained delta log (small-log: a few KB)


@dataclass
class SimConfig:
    seed: int
    replicas: int
    durability: str  # fsync | wal
    duration_ms: int  # the fault phase (clients run during it)
    faults: list[str]  # enabled fault kinds, sorted
    clients: int  # simulated clients, each with its own causal session
    think_ms_max: int  # pause between a client's operations, 0..think_ms_max
    switch_prob: float  # chance a client moves to another replica before an operation
    wait_ms: int  # how long a replica waits for a session token to be covered
    max_offset_ms: int  # the HLC's bound on remote timestamps ahead of local time
    liveness_ms: int  # convergence must happen within this long after healing
    tick_ms: int  # replication driver tick
    keys: int  # keys per namespace
    canary: str | None = None
    intensities: Intensities = field(default_factory=Intensities)
    topology: str = "mesh"  # mesh | chain | star | ring | random
    peers: dict[str, list[str]] | None = None  # each replica's peers; None: a full mesh
    ttl_prob: float = 0.2  # chance a register write carries a TTL (0: no expiry anywhere)
    # The key classes (``workload.TYPE_WEIGHTS`` entries) clients draw, at their
    # weights; None: every one.  Canaries narrow it to the types their bug touches.
    key_classes: list[str] | None = None
    # Sharded (``simulations.shards``): ``shards`` x ``regions`` replicas (0: not
    # sharded), ``moves`` slot moves one after the other, the move driver's pause
    # between a region's bulk copy and its hand-over.
    shards: int = 0
    regions: int = 0
    moves: int = 0
    handover_pause_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def skew_bound_ms(self) -> int:
        """Largest |skew| any clock may have outside a clock-excess window: two
        clocks then differ by at most ``max_offset_ms - 20``, so no replica
        ever refuses another's timestamps."""
        return max(0, self.max_offset_ms // 2 - 10)


def draw_config(
    seed: int,
    *,
    replicas: int | None = None,
    faults: list[str] | None = None,
    duration_ms: int | None = None,
    durability: str = "fsync",
    canary: str | None = None,
    exclude: list[str] | None = None,
    shards: int | None = None,
    regions: int | None = None,
) -> SimConfig:
    """The run of ``seed``; arguments that are not None override the draw.

    ``exclude``: fault kinds removed from whatever was drawn or given (the
    rest of the draw is unchanged).  ``shards``: a sharded run of that many
    shards (``replicas`` is then shards x regions; the kinds it does not model,
    outside ``SHARD_FAULT_KINDS``, are left out).
    """
    if durability not in DURABILITY:
        raise ValueError(f"durability must be one of {DURABILITY}")
    if shards is not None:
        if not 2 <= shards <= 6:
            raise ValueError("shards must be from 2 to 6 (a move needs two)")
        if regions is not None and not 1 <= regions <= 3:
            raise ValueError("regions must be from 1 to 3")
        if durability != "fsync":
            raise ValueError(
                "a sharded run checks that no acknowledged write is lost: durability fsync"
            )
    rng = stream(seed, "config")
    topo_rng = stream(seed, "topology")
    if faults is None:  # swarm: each kind with probability 1/2
        chosen = [k for k in SWARM_KINDS if rng.random() < 0.5]
        if topo_rng.random() < TOPOLOGY_SWARM_P:
            chosen = sorted([*chosen, "topology"])
    else:
        unknown = sorted(set(faults) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        chosen = sorted(set(faults))
        rng.random()  # keep the draws below aligned with the swarm case
    if exclude:
        unknown = sorted(set(exclude) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kind(s) {unknown}; known: {', '.join(FAULT_KINDS)}")
        chosen = [k for k in chosen if k not in exclude]
    n = replicas if replicas is not None else rng.choice([2, 3, 3, 3, 4, 5])
    if "topology" in chosen and replicas is None:
        n = topo_rng.choice(TOPOLOGY_REPLICAS)  # two replicas have one topology
    duration = duration_ms if duration_ms is not None else rng.choice([2_000, 4_000, 8_000])
    max_offset = rng.choice([250, 500, 1_000])
    cfg = SimConfig(
        seed=seed,
        replicas=n,
        durability=durability,
        duration_ms=duration,
        faults=sorted(chosen),
        clients=rng.randint(2, 8),
        think_ms_max=rng.choice([5, 20, 60]),
        switch_prob=rng.choice([0.05, 0.2, 0.5]),
        wait_ms=rng.choice([200, 1_000]),
        max_offset_ms=max_offset,
        liveness_ms=60_000,
        tick_ms=rng.choice([5, 10]),
        keys=rng.choice([2, 3, 5]),
        canary=canary,
    )
    cfg.intensities = _draw_intensities(rng, cfg)
    if shards is not None:
        _shard_config(cfg, shards, regions)
        return cfg
    if "topology" in cfg.faults:
        cfg.topology = topo_rng.choice(TOPOLOGY_SHAPES)
        ids = [f"r{i}" for i in range(n)]
        cfg.peers = network.topology(cfg.topology, ids, topo_rng)
    return cfg


def _shard_config(cfg: SimConfig, shards: int, regions: int | None) -> None:
    """A sharded run's own draws, from their own stream (the rest stays as drawn)."""
    rng = stream(cfg.seed, "shards")
    cfg.shards = shards
    cfg.regions = regions if regions is not None else rng.choice(SHARD_REGIONS)
    cfg.replicas = shards * cfg.regions
    cfg.faults = [k for k in cfg.faults if k in SHARD_FAULT_KINDS]
    cfg.moves = rng.randint(1, 3)
    cfg.keys = rng.choice([6, 10, 16])  # keys per class, spread over the slots
    cfg.handover_pause_ms = rng.choice([0, 50, 200])
    cfg.clients = max(cfg.clients, cfg.regions)  # a client in every region at least
    inten = cfg.intensities
    if "wipe" not in cfg.faults:
        inten.wipe_count = 0
    if "clock-excess" not in cfg.faults:
        inten.excess_ms = 0


def _draw_intensities(rng: random.Random, cfg: SimConfig) -> Intensities:
    on = set(cfg.faults)
    d = cfg.duration_ms
    i = Intensities()
    # Every draw is made whether or not its kind is on, so that switching one
    # kind off leaves the others' intensities unchanged.
    i.partition_episodes = rng.randint(1, 4)
    i.oneway_episodes = rng.randint(1, 4)
    i.partition_ms_max = rng.randint(max(200, d // 8), max(400, d // 2))
    i.loss = rng.uniform(0.0, 0.3)
    i.dup = rng.uniform(0.0, 0.2)
    i.jitter_ms = rng.choice([5, 20, 60, 150])
    i.crash_rate_per_s = rng.uniform(0.1, 1.0)
    i.down_ms_max = rng.choice([50, 500, 2_000])
    i.wipe_count = rng.randint(1, 2)
    i.skew_ms_max = rng.randint(0, cfg.skew_bound_ms())
    i.jumps = rng.randint(1, 6)
    i.excess_ms = rng.randint(50, 2 * cfg.max_offset_ms)
    i.log_bytes_max = rng.choice([2_000, 8_000, 30_000])
    if "partition" not in on:
        i.partition_episodes = 0
    if "oneway" not in on:
        i.oneway_episodes = 0
    if "partition" not in on and "oneway" not in on:
        i.partition_ms_max = 0
    if "loss" not in on:
        i.loss = 0.0
    if "dup" not in on:
        i.dup = 0.0
    if "reorder" not in on:
        i.jitter_ms = 0
    if "crash" not in on:
        i.crash_rate_per_s = 0.0
        i.down_ms_max = 0
    if "wipe" not in on:
        i.wipe_count = 0
    if "skew" not in on and "jump" not in on:
        i.skew_ms_max = 0
    if "jump" not in on:
        i.jumps = 0
    if "clock-excess" not in on:
        i.excess_ms = 0
    if "small-log" not in on:
        i.log_bytes_max = 64 * 1024 * 1024
    return i

"""One simulated run: a safety phase with faults, then a liveness phase.

``run(cfg)`` builds a ``SimCluster`` (the real replica core over in-memory
storage, see ``harness``), schedules every fault the seed drew, starts the
simulated clients, and runs on the virtual clock:

1. *Safety phase* (``cfg.duration_ms``): clients (``simulations.clients``)
   issue operations at random replicas through the production node core
   (session admission and wait, the operation, durability of the answer, the
   merged token back); partitions come and go, replicas crash and restart,
   clocks skew and jump (``simulations.faults``).
   Online checks run as it goes (durability across each crash, monotonic
   writes / writes-follow-reads at every read).
2. *Liveness phase*: the network heals (no partitions, loss or duplication),
   every replica is up, clocks are brought back within the HLC bound.
   Clients finish what they have in flight and stop.  The replicas must then
   converge (identical encoded state, identical applied causal context, and
   nothing left to ship on any link) within ``cfg.liveness_ms`` of simulated
   time.
3. The checkers (``simulations.checkers``) read the history and the final
   state.

Every event is folded into a SHA-256 trace hash (``simulations.observer``),
so two runs of one seed can be compared by one line.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdtkv.crdts.causal import Dot
from crdtkv.errors import NotFound, WrongType
from crdtkv.ops import apply_op, snapshot_read
from replication.protocol import Settings
from simulations import checkers
from simulations.canaries import CANARIES
from simulations.checkers.vsets import final_searches
from simulations.clients import Clients
from simulations.config import SimConfig, stream
from simulations.faults import Faults
from simulations.harness import LinkFaults, SimCluster, SimNode
from simulations.history import Final, History, Op
from simulations.network import link_faults
from simulations.observer import Observer
from simulations.workload import final_reads, keyspace

if TYPE_CHECKING:
    from simulations.shards import ShardSimulation

__all__ = ["RunResult", "Simulation", "run"]

LIVENESS_STEP_MS = 100


@dataclass
class RunResult:
    seed: int
    config: SimConfig
    violations: list[checkers.Violation]
    trace_hash: str
    stats: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def checkers_failed(self) -> list[str]:
        return sorted({v.checker for v in self.violations})

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ok": self.ok,
            "config": self.config.to_json(),
            "violations": [v.to_json() for v in self.violations],
            "trace_hash": self.trace_hash,
            "stats": self.stats,
            "wall_s": round(self.wall_s, 3),
        }


# -- the simulation ----------------------------------------------------------------------------
class Simulation:
    def __init__(self, cfg: SimConfig, *, metrics: bool = False) -> None:
        self.cfg = cfg
        inten = cfg.intensities
        settings = Settings(log_bytes_max=inten.log_bytes_max)
        self.cluster = SimCluster(
            cfg.replicas,
            cfg.seed,
            fsync=cfg.durability == "fsync",
            settings=settings,
            tick_ms=cfg.tick_ms,
            max_offset_ms=cfg.max_offset_ms,
            # Above the longest round trip (2 x 150 ms + jitter), or no request
            # on a far link would ever complete.
            timeout_ms=2 * (150 + inten.jitter_ms) + 200,
            topology=cfg.peers,
        )
        self.ids = self.cluster.ids
        self.rng = stream(cfg.seed, "faults")
        self.on = set(cfg.faults)
        self.cluster.faults = link_faults(
            self.ids,
            stream(cfg.seed, "geo"),
            geo="geo" in self.on,
            jitter_ms=inten.jitter_ms,
            loss=inten.loss,
            dup=inten.dup,
        )
        self.start_ms = self.cluster.now_ms
        self.fault_end_ms = self.start_ms + cfg.duration_ms
        self.observer = Observer(self.cluster, self.start_ms, metrics=metrics)
        self.keys = keyspace(cfg.keys)
        # Clocks differ by at most twice the largest |skew|; real-time order
        # implies timestamp order only for operations further apart than that.
        skew_max = cfg.max_offset_ms + inten.excess_ms if inten.excess_ms else cfg.skew_bound_ms()
        slack = 2 * skew_max + 2
        self.history = History(keys=self.keys, skew_slack_ms=slack, durability=cfg.durability)
        self.violations: list[checkers.Violation] = []
        self.epochs = dict.fromkeys(self.ids, 0)  # bumped by every crash and wipe
        self.down: set[str] = set()
        self.stats: dict[str, Any] = defaultdict(int)
        self.lost_dots: set[Dot] = set()  # dots possibly lost (wipes; crashes in wal mode)
        self.faults = Faults(self)
        self.clients = Clients(self)
        self.errors_reported: set[tuple[str, str]] = set()
        self.heal_ms = self.start_ms

    def trace(self, line: str) -> None:
        self.observer.trace(line)

    def internal_error(self, node: SimNode, op: Op, e: Exception) -> None:
        self.stats["internal_errors"] += 1
        what = (op.kind, type(e).__name__)
        if what in self.errors_reported:
            return
        self.errors_reported.add(what)
        self.violations.append(
            checkers.Violation(
                "errors",
                "internal-error",
                f"{op.describe()} raised {type(e).__name__}: {e} at {node.rid} "
                f"(the API would answer 500)",
                [op.idx],
            )
        )

    # -- phases ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        wall = time.perf_counter()
        cfg = self.cfg
        self.trace(f"config {_js(cfg.to_json())}")
        converge_ms: int | None = None
        try:
            self.faults.schedule()
            self.clients.start()
            self.cluster.run_for(cfg.duration_ms)
            self.heal()
            converge_ms = self.liveness()
            final = self.final_state()
            if converge_ms is None:
                self.violations.append(checkers.no_convergence(self.cluster, cfg.liveness_ms))
            self.violations += checkers.check_all(self.history, final)
        except Exception as e:  # a replica core (or the simulator) raised: report it
            where = traceback.extract_tb(e.__traceback__)[-1]
            self.violations.append(
                checkers.Violation(
                    "errors",
                    "crashed",
                    f"the run stopped at {self.cluster.now_ms - self.start_ms} ms: "
                    f"{type(e).__name__}: {e} ({where.filename}:{where.lineno})",
                )
            )
            self.trace(f"crashed {type(e).__name__}")
        result = RunResult(
            cfg.seed,
            cfg,
            self.violations,
            self.observer.hexdigest(),
            self._stats(converge_ms),
            self.observer.metrics(self.ids),
        )
        result.wall_s = time.perf_counter() - wall
        return result

    def heal(self) -> None:
        c = self.cluster
        c.heal()
        c.faults = {
            k: LinkFaults(f.latency_ms, min(f.jitter_ms, 5), 0.0, 0.0) for k, f in c.faults.items()
        }
        bound = self.cfg.skew_bound_ms()
        for rid, node in c.nodes.items():
            node.skew_ms = max(-bound, min(bound, node.skew_ms))
            if not node.up:
                node.up = True
                self.down.discard(rid)
        self.trace("heal")
        self.heal_ms = c.now_ms

    def liveness(self) -> int | None:
        """Run until converged with nothing left to ship; None if that never happens."""
        c = self.cluster
        limit = self.cfg.liveness_ms + self.cfg.intensities.excess_ms
        while c.now_ms - self.heal_ms < limit:
            c.run_for(LIVENESS_STEP_MS)
            if self.clients.busy():
                continue
            if c.converged() and self._caught_up():
                return c.now_ms - self.heal_ms
        return None

    def _caught_up(self) -> bool:
        """Nothing left to ship on any link, and every replica has applied the same."""
        nodes = list(self.cluster.nodes.values())
        if any(n.rep.lag_ops(p) for n in nodes for p in n.peer_ids):
            return False
        first = nodes[0].replica.applied
        return all(n.replica.applied == first for n in nodes[1:])

    def final_state(self) -> Final:
        c = self.cluster
        final = Final(at_ms=c.now_ms)
        for rid, node in c.nodes.items():
            now = c.node_now(rid)
            final.node_ms[rid] = now
            reads: dict[tuple[str, str], dict[str, Any]] = {}
            for ns, key in final_reads(self.keys):
                reads[(ns, key)] = final_read(node, ns, key, now)
            final.reads[rid] = reads
            final.vset_searches[rid] = final_searches(
                self.keys.get("vsets", []), functools.partial(_apply_at, node, now)
            )
            names = sorted({name for _, name in node.replica.states})
            final.types[rid] = {n: node.replica.visible_type(n, now) for n in names}
            final.conflicts[rid] = sorted(node.replica.conflicts)
        final.applied = {rid: n.replica.applied.copy() for rid, n in c.nodes.items()}
        final.replica_states = {
            rid: {k: s.copy() for k, s in n.replica.states.items()} for rid, n in c.nodes.items()
        }
        first = c.nodes[self.ids[0]].replica
        final.states = {k: s.copy() for k, s in first.states.items()}
        return final

    def _stats(self, converge_ms: int | None) -> dict[str, Any]:
        ops = self.history.ops
        s = dict(self.stats)
        s["ops"] = len(ops)
        for status in ("ok", "fail", "unknown"):
            s[f"ops_{status}"] = sum(1 for o in ops if o.status == status)
        s["sim_ms"] = self.cluster.now_ms - self.start_ms
        s["converge_ms"] = converge_ms
        s["partition_ms_max"] = max((length for _, length in self.faults.partitions), default=0)
        s["messages"] = self.cluster.messages_on_wire
        s["bytes"] = self.cluster.bytes_on_wire
        s["mutations"] = sum(1 for o in ops if o.meta is not None and o.meta.dot is not None)
        syncs = 0
        for node in self.cluster.nodes.values():
            syncs += sum(p.syncs_completed for p in node.rep.peers.values())
        s["state_syncs"] = syncs
        s["possibly_lost_ops"] = sum(1 for o in ops if o.meta is not None and o.meta.possibly_lost)
        s.update(checkers.set_stats(self.history))
        return s


def _apply_at(node: SimNode, now_ms: int, op: dict[str, Any]) -> dict[str, Any]:
    return apply_op(node.replica, op, now_ms)


def final_read(node: SimNode, ns: str, key: str, now_ms: int) -> dict[str, Any]:
    try:
        return apply_op(node.replica, {"op": snapshot_read(ns).name, "key": key}, now_ms)
    except NotFound:
        return {"not_found": True}
    except WrongType:
        return {"wrong_type": True}


def _js(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run(cfg: SimConfig, *, metrics: bool = False) -> RunResult:
    """Run one seed's configuration (with its canary injected, if any)."""
    canary = CANARIES[cfg.canary] if cfg.canary else None
    if canary is None:
        return _simulation(cfg, metrics).run()
    with canary.patch():
        return _simulation(cfg, metrics).run()


def _simulation(cfg: SimConfig, metrics: bool) -> Simulation | ShardSimulation:
    """The one-group simulation, or a sharded one (``cfg.shards``)."""
    if cfg.shards:
        from simulations.shards import ShardSimulation

        return ShardSimulation(cfg, metrics=metrics)
    return Simulation(cfg, metrics=metrics)

"""The faults of one run, drawn from its seed: partitions, crashes, wipes, clocks.

``Faults.schedule()`` puts every fault on the cluster's clock before the run
starts; ``fault_node`` crashes or wipes a replica (checking, in ``fsync``
mode, that it comes back with everything it acknowledged) and restarts it
after a while.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crdtkv.crdts.causal import CausalContext
from simulations import checkers
from simulations.clock import ClockChange, draw_clock_schedule, initial_skews
from simulations.network import draw_episodes, hub_of, topology_links

if TYPE_CHECKING:
    from simulations.sim import Simulation

__all__ = ["Faults"]

HUB_BIAS = 0.5  # in a star, the share of crashes and wipes that strike the hub


class Faults:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.partitions: list[tuple[int, int]] = []  # (start, length) of episodes

    def schedule(self) -> None:
        self._partitions()
        self._crashes()
        self._clocks()

    def _partitions(self) -> None:
        sim = self.sim
        cfg, inten, cluster = sim.cfg, sim.cfg.intensities, sim.cluster
        d = cfg.duration_ms
        episodes = draw_episodes(
            sim.rng,
            sim.ids,
            d,
            two_way=inten.partition_episodes,
            one_way=inten.oneway_episodes,
            length_ms_max=inten.partition_ms_max,
            links=None if cfg.peers is None else topology_links(cfg.peers),
        )
        active: dict[int, frozenset[tuple[str, str]]] = {}

        def set_blocked() -> None:
            blocked: set[tuple[str, str]] = set()
            for links in active.values():
                blocked |= links
            cluster.blocked = blocked

        for i, ep in enumerate(episodes):
            self.partitions.append((ep.start_ms, ep.length_ms))

            def start(i: int = i, links: frozenset[tuple[str, str]] = ep.links) -> None:
                active[i] = links
                set_blocked()
                sim.trace(f"partition+ {i} {sorted(links)}")

            def end(i: int = i) -> None:
                if active.pop(i, None) is not None:
                    set_blocked()
                    sim.trace(f"partition- {i}")

            cluster.at(ep.start_ms, start)
            if ep.start_ms + ep.length_ms < d:
                cluster.at(ep.start_ms + ep.length_ms, end)

    def _crashes(self) -> None:
        sim = self.sim
        inten, rng = sim.cfg.intensities, sim.rng
        d = sim.cfg.duration_ms
        crashes = round(inten.crash_rate_per_s * d / 1000)
        if inten.crash_rate_per_s > 0:
            crashes = max(1, crashes)
        hub = None if sim.cfg.peers is None else hub_of(sim.cfg.peers)

        def victim() -> str:
            # A star's hub is every path between leaves: half the faults strike it.
            if hub is not None and rng.random() < HUB_BIAS:
                return hub
            return rng.choice(sim.ids)

        plan = [("crash", rng.randint(0, d), victim()) for _ in range(crashes)]
        plan += [("wipe", rng.randint(0, d), victim()) for _ in range(inten.wipe_count)]
        for kind, at, rid in plan:
            down_ms = rng.randint(0, max(inten.down_ms_max, 200))

            mid_write = kind == "crash" and rng.random() < 0.5

            def act(
                kind: str = kind,
                rid: str = rid,
                down_ms: int = down_ms,
                mid_write: bool = mid_write,
            ) -> None:
                if mid_write:  # strike while the replica's next storage write is in flight
                    sim.cluster.nodes[rid].on_next_write = lambda: self.fault_node(
                        kind, rid, down_ms
                    )
                else:
                    self.fault_node(kind, rid, down_ms)

            sim.cluster.at(at, act)

    def _clocks(self) -> None:
        sim = self.sim
        cfg, inten = sim.cfg, sim.cfg.intensities
        bound = inten.skew_ms_max
        for rid, skew in initial_skews(sim.rng, sim.ids, bound, "skew" in sim.on).items():
            sim.cluster.nodes[rid].skew_ms = skew
        changes = draw_clock_schedule(
            sim.rng,
            sim.ids,
            cfg.duration_ms,
            bound_ms=bound,
            jumps=inten.jumps,
            excess_ms=inten.excess_ms,
            max_offset_ms=cfg.max_offset_ms,
        )
        for change in changes:

            def act(c: ClockChange = change) -> None:
                sim.cluster.nodes[c.rid].skew_ms = c.skew_ms
                sim.trace(f"clock {c.rid} {c.skew_ms} {c.reason}")

            sim.cluster.at(change.at_ms, act)

    def fault_node(self, kind: str, rid: str, down_ms: int) -> None:
        sim = self.sim
        if rid in sim.down:
            return
        node = sim.cluster.nodes[rid]
        before_applied = node.replica.applied.copy()
        # What the replica had written and synced: what a crash must not take back.
        durable = CausalContext(node.replica.durable_vv)
        before_states = {k: s.copy() for k, s in node.replica.states.items()}
        sim.epochs[rid] += 1
        if kind == "wipe":
            sim.cluster.wipe(rid)
            sim.stats["wipes"] += 1
        else:
            unsynced = node.storage.unsynced_batches
            if sim.cfg.durability == "wal" and sim.rng.random() < 0.5:
                keep = unsynced  # a process crash: the WAL survives
            else:
                keep = sim.rng.randint(0, unsynced)  # power loss
            sim.cluster.crash(rid, keep)
            sim.stats["crashes"] += 1
            sim.stats["unsynced_batches_lost"] += unsynced - keep
        sim.trace(f"{kind} {rid} down {down_ms}")
        # In fsync mode a crash may take back only what was never acknowledged.
        self._mark_lost(
            rid, before_applied, keep_acked=kind == "crash" and sim.cfg.durability == "fsync"
        )
        if kind == "crash" and sim.cfg.durability == "fsync":
            sim.violations += checkers.check_restart(
                rid, sim.cluster.now_ms, durable, before_states, node.replica, sim.history
            )
        sim.clients.forget_replica(rid)
        sim.down.add(rid)
        node.up = False

        def restart() -> None:
            sim.down.discard(rid)
            node.up = True
            sim.trace(f"restart {rid}")

        sim.cluster.at(down_ms, restart)

    def _mark_lost(self, rid: str, before: CausalContext, *, keep_acked: bool) -> None:
        """Dots this replica held that no replica holds now may be lost for good
        (``keep_acked``: except those of acknowledged operations, which the
        durability checkers then require)."""
        sim = self.sim
        holders = [n.replica.applied for n in sim.cluster.nodes.values()]
        for op in sim.history.ops:
            m = op.meta
            if m is None or m.dot is None or m.possibly_lost or (keep_acked and m.acked):
                continue
            if m.dot in before and not any(m.dot in h for h in holders):
                m.possibly_lost = True
                sim.lost_dots.add(m.dot)

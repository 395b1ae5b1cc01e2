"""One simulated run: a safety phase with faults, then a liveness phase.

``run(cfg)`` builds a ``SimCluster`` (the real replica core over in-memory
storage, see ``harness``), schedules every fault the seed drew, starts the
simulated clients, and runs on the virtual clock:

1. *Safety phase* (``cfg.duration_ms``): clients issue operations at random
   replicas through ``SimShell`` (the simulated API shell: session-token
   wait, HLC absorption of the token, the operation, the merged token back);
   partitions come and go, replicas crash and restart, clocks skew and jump.
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

Every event is folded into a SHA-256 trace hash (messages with their bytes,
operations with their results, faults), so two runs of one seed can be
compared by one line.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crdtkv.crdts import codec
from crdtkv.crdts.causal import CausalContext, Dot, VersionVector, vv_dominates
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.hll import HLL
from crdtkv.errors import CrdtkvError, NotFound, SessionUnavailable
from crdtkv.replica import apply_op
from crdtkv.replica.keyspace import Key, LogEntry
from crdtkv.sessions import SessionToken
from replication import messages
from replication.protocol import Settings
from simulations import checkers
from simulations.canaries import CANARIES, ShellBugs
from simulations.clock import ClockChange, draw_clock_schedule, initial_skews
from simulations.config import SimConfig, stream
from simulations.harness import LinkFaults, SimCluster, SimNode
from simulations.history import Final, History, Meta, Op
from simulations.network import draw_episodes, link_faults
from simulations.workload import Workload, keyspace, op_dict

__all__ = ["RunResult", "SimShell", "Simulation", "run"]

CLIENT_LATENCY_MS = (1, 4)  # client <-> replica, one way
SESSION_POLL_MS = 10  # how often a waiting request re-checks its token
PROCESSING_MS = (0, 2)  # from executing an operation to its response leaving
LIVENESS_STEP_MS = 100
MW_REPORTED_MAX = 10  # monotonic-writes violations listed per run (all are counted)


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


# -- clients -------------------------------------------------------------------------------------
@dataclass
class SimClient:
    cid: int
    workload: Workload
    replica: str  # where the next request goes
    token: SessionToken = field(default_factory=SessionToken)
    pending: Op | None = None
    stopped: bool = False
    retry: tuple[str, str, dict[str, Any]] | None = None  # an op to re-issue elsewhere


class SimShell:
    """What the aiohttp shell does around ``apply_op``, for a simulated replica.

    Mirrors ``crdtkv.api.app``: wait (bounded) until the replica's applied
    vector dominates the session token, absorb the token's HLC before a write,
    apply, and answer with the token merged with the replica's applied vector
    and HLC.  Reads wait for durability in production; here every operation
    is committed synchronously, so they need not.
    """

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def dominated(self, node: SimNode, token: SessionToken, kind: str) -> bool:
        if kind in checkers.READS and ShellBugs.serve_undominated_reads:
            return True
        if kind in checkers.WRITES and ShellBugs.serve_undominated_writes:
            return True
        return vv_dominates(node.replica.applied.vv, token.vv)

    def execute(
        self, node: SimNode, op: Op, token: SessionToken
    ) -> tuple[str, dict[str, Any] | None, str | None]:
        """Apply ``op`` now; returns (status, result, error code) and fills ``op.meta``."""
        sim = self.sim
        now = sim.cluster.node_now(node.rid)
        r = node.replica
        meta = Meta(sim.cluster.now_ms, now, r.incarnation, token_vv=dict(token.vv))
        body = op_dict(op.kind, op.key, op.args)
        try:
            if op.is_write and token.hlc > (0, 0):
                r.hlc.observe(Timestamp(token.hlc[0], token.hlc[1], ""), now)
            if op.kind == "hlls.merge":
                meta.sources = [
                    s.copy() for s in (r.get(("hlls", k)) for k in op.args["sources"]) if s
                ]
            seq_before = r.seq
            sim.last_committed = []
            try:
                result: dict[str, Any] = node.apply(body, now)
            except NotFound:
                result = {"not_found": True}
        except CrdtkvError as e:
            return "fail", None, _code(e)
        except Exception as e:  # the shell would answer 500 internal: a bug
            node.commit(now)  # whatever the operation left pending, as the node would
            sim.internal_error(node, op, e)
            return "unknown", None, "internal"
        key: Key = (op.namespace, op.key)
        if r.seq != seq_before:
            meta.dot = (r.actor, r.seq)
            for entry in sim.last_committed:
                if entry.group.dot == meta.dot:
                    meta.delta = entry.group.deltas.get(key)
        state = r.get(key)
        if op.is_read:
            meta.state = state.copy() if state is not None else None
        if isinstance(state, HLL):
            meta.epoch_after = state.epoch
        meta.applied_vv = dict(r.applied.vv)
        op.meta = meta
        return "ok", result, None


def _code(e: CrdtkvError) -> str:
    """The contract's error code; for a 400, also which refusal it was."""
    return f"{e.code}/{type(e).__name__}" if e.code == "bad_request" else e.code


# -- the simulation ----------------------------------------------------------------------------
class Simulation:
    def __init__(self, cfg: SimConfig, *, metrics: bool = False) -> None:
        self.cfg = cfg
        self.metrics_on = metrics
        self.canary = CANARIES[cfg.canary] if cfg.canary else None
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
        self._trace = hashlib.sha256()
        self.cluster.tracer = self._trace_message
        self.shell = SimShell(self)
        self.keys = keyspace(cfg.keys)
        # Clocks differ by at most twice the largest |skew|; real-time order
        # implies timestamp order only for operations further apart than that.
        skew_max = cfg.max_offset_ms + inten.excess_ms if inten.excess_ms else cfg.skew_bound_ms()
        slack = 2 * skew_max + 2
        self.history = History(keys=self.keys, skew_slack_ms=slack, durability=cfg.durability)
        self.violations: list[checkers.Violation] = []
        self.last_committed: list[LogEntry] = []
        self.epochs = dict.fromkeys(self.ids, 0)  # bumped by every crash and wipe
        self.down: set[str] = set()
        self.start_ms = self.cluster.now_ms
        self.fault_end_ms = self.start_ms + cfg.duration_ms
        self.stats: dict[str, Any] = defaultdict(int)
        self.lost_dots: set[Dot] = set()  # dots possibly lost (wipes; crashes in wal mode)
        # online monotonic-writes / writes-follow-reads check
        self.session_writes: dict[int, list[tuple[Dot, VersionVector, int]]] = defaultdict(list)
        self.mw_checked: dict[tuple[str, int], int] = {}
        self.mw_reported: set[tuple[int, int]] = set()
        # metrics
        self.mint_ms: dict[Dot, int] = {}
        self.lags: dict[str, list[int]] = defaultdict(list)
        # replica -> log position -> [(key, encoded size of its delta)] (for the wire figure)
        self.pos_keys: dict[str, dict[int, list[tuple[Key, int]]]] = defaultdict(dict)
        self.wire: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # ns -> [n, delta, full]
        self.partitions: list[tuple[int, int]] = []  # (start, length) of episodes
        for node in self.cluster.nodes.values():
            node.observers.append(self._on_commit)
        if metrics:
            self.cluster.on_send.append(self._on_send)
        self.clients: list[SimClient] = []
        self.errors_reported: set[tuple[str, str]] = set()

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

    # -- tracing ---------------------------------------------------------------------------
    def trace(self, line: str) -> None:
        self._trace.update(f"{self.cluster.now_ms - self.start_ms} {line}\n".encode())

    def _trace_message(self, what: str, src: str, dst: str, blob: bytes) -> None:
        self._trace.update(
            f"{self.cluster.now_ms - self.start_ms} {what} {src}>{dst} {len(blob)}\n".encode()
        )
        if what == "recv":
            self._trace.update(blob)

    # -- observers -----------------------------------------------------------------------------
    def _on_commit(self, node: SimNode, entries: list[LogEntry], now_ms: int) -> None:
        self.last_committed = entries
        if not self.metrics_on:
            return
        t = self.cluster.now_ms
        keys = self.pos_keys[node.rid]
        for e in entries:
            keys[e.pos] = [(k, len(codec.pack(d))) for k, d in e.group.deltas.items()]
            dot = e.group.dot
            if e.origin == "":
                self.mint_ms.setdefault(dot, t)
            elif dot in self.mint_ms:
                src = dot[0].split("~", 1)[0]
                self.lags[f"{src}>{node.rid}"].append(t - self.mint_ms[dot])

    def _on_send(self, src: str, dst: str, msg: messages.Message, blob: bytes) -> None:
        if not isinstance(msg, messages.Push):
            return
        node = self.cluster.nodes[src]
        keys = self.pos_keys[src]
        for pos, entry in msg.entries:
            # Full-state shipping would send the same entry with each touched
            # key's current full state in place of its delta.
            touched = keys.get(pos, [])
            full = len(entry)
            for key, delta_bytes in touched:
                state = node.replica.states.get(key)
                if state is not None:
                    full += len(codec.pack(state)) - delta_bytes
            ns = touched[0][0][0] if touched else "?"
            acc = self.wire[ns]
            acc[0] += 1
            acc[1] += len(entry)
            acc[2] += full

    # -- faults ----------------------------------------------------------------------------------
    def schedule_faults(self) -> None:
        cfg, inten, rng = self.cfg, self.cfg.intensities, self.rng
        d = cfg.duration_ms
        episodes = draw_episodes(
            rng,
            self.ids,
            d,
            two_way=inten.partition_episodes,
            one_way=inten.oneway_episodes,
            length_ms_max=inten.partition_ms_max,
        )
        active: dict[int, frozenset[tuple[str, str]]] = {}

        def set_blocked() -> None:
            blocked: set[tuple[str, str]] = set()
            for links in active.values():
                blocked |= links
            self.cluster.blocked = blocked

        for i, ep in enumerate(episodes):
            self.partitions.append((ep.start_ms, ep.length_ms))

            def start(i: int = i, links: frozenset[tuple[str, str]] = ep.links) -> None:
                active[i] = links
                set_blocked()
                self.trace(f"partition+ {i} {sorted(links)}")

            def end(i: int = i) -> None:
                if active.pop(i, None) is not None:
                    set_blocked()
                    self.trace(f"partition- {i}")

            self.cluster.at(ep.start_ms, start)
            if ep.start_ms + ep.length_ms < d:
                self.cluster.at(ep.start_ms + ep.length_ms, end)
        self._schedule_crashes()
        self._schedule_clocks()

    def _schedule_crashes(self) -> None:
        cfg, inten, rng = self.cfg, self.cfg.intensities, self.rng
        d = cfg.duration_ms
        crashes = round(inten.crash_rate_per_s * d / 1000)
        if inten.crash_rate_per_s > 0:
            crashes = max(1, crashes)
        plan = [("crash", rng.randint(0, d), rng.choice(self.ids)) for _ in range(crashes)]
        plan += [("wipe", rng.randint(0, d), rng.choice(self.ids)) for _ in range(inten.wipe_count)]
        for kind, at, rid in plan:
            down_ms = rng.randint(0, max(inten.down_ms_max, 200))

            def act(kind: str = kind, rid: str = rid, down_ms: int = down_ms) -> None:
                self.fault_node(kind, rid, down_ms)

            self.cluster.at(at, act)

    def _schedule_clocks(self) -> None:
        cfg, inten = self.cfg, self.cfg.intensities
        bound = inten.skew_ms_max
        for rid, skew in initial_skews(self.rng, self.ids, bound, "skew" in self.on).items():
            self.cluster.nodes[rid].skew_ms = skew
        changes = draw_clock_schedule(
            self.rng,
            self.ids,
            cfg.duration_ms,
            bound_ms=bound,
            jumps=inten.jumps,
            excess_ms=inten.excess_ms,
            max_offset_ms=cfg.max_offset_ms,
        )
        for change in changes:

            def act(c: ClockChange = change) -> None:
                self.cluster.nodes[c.rid].skew_ms = c.skew_ms
                self.trace(f"clock {c.rid} {c.skew_ms} {c.reason}")

            self.cluster.at(change.at_ms, act)

    def fault_node(self, kind: str, rid: str, down_ms: int) -> None:
        if rid in self.down:
            return
        node = self.cluster.nodes[rid]
        before_applied = node.replica.applied.copy()
        before_states = {k: s.copy() for k, s in node.replica.states.items()}
        self.epochs[rid] += 1
        if kind == "wipe":
            self.cluster.wipe(rid)
            self.stats["wipes"] += 1
        else:
            unsynced = node.storage.unsynced_batches
            if self.cfg.durability == "wal" and self.rng.random() < 0.5:
                keep = unsynced  # a process crash: the WAL survives
            else:
                keep = self.rng.randint(0, unsynced)  # power loss
            self.cluster.crash(rid, keep)
            self.stats["crashes"] += 1
            self.stats["unsynced_batches_lost"] += unsynced - keep
        self.trace(f"{kind} {rid} down {down_ms}")
        self._mark_lost(rid, before_applied)
        if kind == "crash" and self.cfg.durability == "fsync":
            self.violations += checkers.check_restart(
                rid, self.cluster.now_ms, before_applied, before_states, node.replica, self.history
            )
        self.mw_checked = {k: v for k, v in self.mw_checked.items() if k[0] != rid}
        self.down.add(rid)
        node.up = False

        def restart() -> None:
            self.down.discard(rid)
            node.up = True
            self.trace(f"restart {rid}")

        self.cluster.at(down_ms, restart)

    def _mark_lost(self, rid: str, before: CausalContext) -> None:
        """Dots this replica held that no replica holds now may be lost for good."""
        holders = [n.replica.applied for n in self.cluster.nodes.values()]
        for op in self.history.ops:
            m = op.meta
            if m is None or m.dot is None or m.possibly_lost:
                continue
            if m.dot in before and not any(m.dot in h for h in holders):
                m.possibly_lost = True
                self.lost_dots.add(m.dot)

    # -- clients ----------------------------------------------------------------------------------
    def start_clients(self) -> None:
        for cid in range(self.cfg.clients):
            rng = stream(self.cfg.seed, f"client{cid}")
            client = SimClient(cid, Workload(cid, rng, self.keys), self.ids[cid % len(self.ids)])
            self.clients.append(client)
            self.cluster.at(rng.randint(0, 20), self._issuer(client))

    def _issuer(self, client: SimClient) -> Callable[[], None]:
        return lambda: self.issue(client)

    def issue(self, client: SimClient) -> None:
        if self.cluster.now_ms >= self.fault_end_ms:
            client.stopped = True
            return
        rng = client.workload.rng
        if client.retry is not None:
            kind, key, args = client.retry
            client.retry = None
        else:
            kind, key, args = client.workload.next_op()
            if rng.random() < self.cfg.switch_prob:
                client.replica = rng.choice(self.ids)
        op = self.history.add(
            Op(0, client.cid, kind, key, args, client.replica, self.cluster.now_ms)
        )
        client.pending = op
        self.trace(f"invoke c{client.cid} #{op.idx} {kind} {key} {_js(args)} @{op.replica}")
        token = client.token
        latency = rng.randint(*CLIENT_LATENCY_MS)
        timeout = self.cfg.wait_ms + 500
        self.cluster.at(timeout, lambda: self.give_up(client, op))
        if self._client_lost(rng):
            return
        self.cluster.at(latency, lambda: self.arrive(client, op, token, latency))

    def _client_lost(self, rng: Any) -> bool:
        return "loss" in self.on and rng.random() < self.cfg.intensities.loss / 4

    def arrive(self, client: SimClient, op: Op, token: SessionToken, latency: int) -> None:
        node = self.cluster.nodes[op.replica]
        if not node.up:
            return  # connection refused: the client times out
        deadline = self.cluster.now_ms + self.cfg.wait_ms
        self.serve(client, op, token, self.epochs[op.replica], deadline, latency)

    def serve(
        self,
        client: SimClient,
        op: Op,
        token: SessionToken,
        epoch: int,
        deadline: int,
        latency: int,
    ) -> None:
        node = self.cluster.nodes[op.replica]
        if not node.up or self.epochs[op.replica] != epoch:
            return  # the replica crashed while the request waited
        if not self.shell.dominated(node, token, op.kind):
            if self.cluster.now_ms < deadline:
                self.cluster.at(
                    SESSION_POLL_MS,
                    lambda: self.serve(client, op, token, epoch, deadline, latency),
                )
                return
            status: str = "fail"
            result: dict[str, Any] | None = None
            error: str | None = SessionUnavailable.code
        else:
            status, result, error = self.shell.execute(node, op, token)
            if op.is_read and op.meta is not None:
                self._check_monotonic_writes(node, op)
            if status == "ok" and op.is_write and op.meta is not None and op.meta.dot:
                self.session_writes[client.cid].append(
                    (op.meta.dot, dict(op.meta.token_vv), op.idx)
                )
        r = node.replica
        if error == SessionUnavailable.code:
            merged = token  # a refusal carries the request's token unchanged
        else:
            merged = token.merge(r.applied.vv, (r.hlc.wall_ms, r.hlc.logical))
        rng = client.workload.rng
        processing = rng.randint(*PROCESSING_MS)

        def leave() -> None:
            if not node.up or self.epochs[op.replica] != epoch:
                return  # crashed before the response left: the client never hears
            if self._client_lost(rng):
                return
            self.cluster.at(latency, lambda: self.answer(client, op, status, result, error, merged))

        self.cluster.at(processing, leave)

    def answer(
        self,
        client: SimClient,
        op: Op,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
        token: SessionToken,
    ) -> None:
        if op.status != "pending":
            return  # the client gave up already
        op.status, op.result, op.error = status, result, error
        op.complete_ms = self.cluster.now_ms
        if error != SessionUnavailable.code:
            client.token = token  # never adopt a token from a refusal
        client.pending = None
        self.trace(f"complete c{client.cid} #{op.idx} {status} {_js(result)} {error}")
        if error == SessionUnavailable.code:
            client.retry = (op.kind, op.key, op.args)
            client.replica = self._other_replica(client)
            self.cluster.at(1, lambda: self.issue(client))
        else:
            self.cluster.at(
                client.workload.rng.randint(0, self.cfg.think_ms_max), lambda: self.issue(client)
            )

    def give_up(self, client: SimClient, op: Op) -> None:
        if op.status != "pending":
            return
        op.status = "unknown"
        op.complete_ms = self.cluster.now_ms
        client.pending = None
        self.trace(f"timeout c{client.cid} #{op.idx}")
        client.replica = self._other_replica(client)
        self.cluster.at(0, lambda: self.issue(client))

    def _other_replica(self, client: SimClient) -> str:
        others = [r for r in self.ids if r != client.replica] or self.ids
        return str(client.workload.rng.choice(others))

    # -- monotonic writes / writes follow reads, checked at every read -------------------------
    def _check_monotonic_writes(self, node: SimNode, read: Op) -> None:
        """Any replica that applied a session's write has applied everything the
        session had seen when it wrote (the token it carried): Terry's monotonic
        writes and writes-follow-reads, checked wherever a read is served."""
        applied = node.replica.applied
        for cid, writes in self.session_writes.items():
            start = self.mw_checked.get((node.rid, cid), 0)
            prefix = True
            for i in range(start, len(writes)):
                dot, seen, idx = writes[i]
                if dot not in applied:
                    prefix = False
                    continue
                missing = _missing(applied, seen) - self.lost_dots
                if missing and (cid, idx) not in self.mw_reported:
                    self.mw_reported.add((cid, idx))
                    self.stats["monotonic_writes_violations"] += 1
                    if len(self.mw_reported) <= MW_REPORTED_MAX:
                        self.violations.append(
                            checkers.Violation(
                                "sessions",
                                "monotonic-writes",
                                f"{node.rid} applied write #{idx} of session {cid} ({dot}) but "
                                f"not {len(missing)} dot(s) the session had seen when it wrote, "
                                f"e.g. {sorted(missing)[:3]} (seen at read #{read.idx})",
                                [idx, read.idx],
                            )
                        )
                if prefix:
                    self.mw_checked[(node.rid, cid)] = i + 1

    # -- phases ----------------------------------------------------------------------------------
    def run(self) -> RunResult:
        wall = time.perf_counter()
        cfg = self.cfg
        self.trace(f"config {_js(cfg.to_json())}")
        converge_ms: int | None = None
        try:
            self.schedule_faults()
            self.start_clients()
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
            self._trace.hexdigest(),
            self._stats(converge_ms),
            self._metrics(),
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
            if any(cl.pending is not None or not cl.stopped for cl in self.clients):
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
            for ns, keys in self.keys.items():
                for key in keys:
                    reads[(ns, key)] = final_read(node, ns, key, now)
            final.reads[rid] = reads
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
        s["partition_ms_max"] = max((length for _, length in self.partitions), default=0)
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

    def _metrics(self) -> dict[str, Any]:
        if not self.metrics_on:
            return {}
        return {
            "lags": dict(self.lags),
            "wire": {ns: list(v) for ns, v in self.wire.items()},
            "regions": {rid: int(rid[1:]) % 3 for rid in self.ids},
            "latency": {f"{a}>{b}": f.latency_ms for (a, b), f in self.cluster.faults.items()},
        }


def final_read(node: SimNode, ns: str, key: str, now_ms: int) -> dict[str, Any]:
    kind = {
        "registers": "registers.get",
        "counters": "counters.get",
        "sets": "sets.get",
        "hlls": "hlls.count",
    }[ns]
    try:
        return apply_op(node.replica, {"op": kind, "key": key}, now_ms)
    except NotFound:
        return {"not_found": True}


def _missing(applied: CausalContext, seen: VersionVector) -> set[Dot]:
    if vv_dominates(applied.vv, seen):
        return set()
    out: set[Dot] = set()
    for actor, top in seen.items():
        for seq in range(applied.vv.get(actor, 0) + 1, top + 1):
            if (actor, seq) not in applied.cloud:
                out.add((actor, seq))
    return out


def _js(data: object) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def run(cfg: SimConfig, *, metrics: bool = False) -> RunResult:
    """Run one seed's configuration (with its canary injected, if any)."""
    canary = CANARIES[cfg.canary] if cfg.canary else None
    if canary is None:
        return Simulation(cfg, metrics=metrics).run()
    with canary.patch():
        return Simulation(cfg, metrics=metrics).run()

"""Simulated clients: one causal session each, talking to replicas through the node core.

A request goes the way it goes in production (``crdtkv.api.app`` over
``crdtkv.node.aio``), through the same ``NodeCore`` methods:

1. ``admit``: the core serves the session now, parks it until its token is
   covered, or refuses it (after the wait, or at once);
2. ``apply``: the operation, on the replica core;
3. ``finish``: the core releases the answer once what it saw is durable,
   with the token merged with the replica's applied vector.  A refusal
   carries the request's token unchanged, and the client never adopts a
   token from a refusal.

Clients think for a while between operations, sometimes hop to another
replica, and move on after a refusal or a time-out.  Online checks run as
answers come in: monotonic writes and writes-follow-reads at every read, and
that every dot a session's token names was applied at a replica that served
the session (a token taken from a refusal breaks that).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crdtkv.crdts.causal import CausalContext, Dot, VersionVector, vv_dominates
from crdtkv.crdts.hll import HLL
from crdtkv.crdts.key_meta import KeyMeta
from crdtkv.errors import CrdtkvError, NotFound, SessionUnavailable
from crdtkv.node.core import Admit, Answer
from crdtkv.replica.keyspace import META, Key, Replica
from crdtkv.sessions import SessionToken
from simulations import checkers
from simulations.config import stream
from simulations.harness import SimNode
from simulations.history import Meta, Op, state_key
from simulations.workload import Workload, op_dict

if TYPE_CHECKING:
    from simulations.sim import Simulation

__all__ = ["ClientBugs", "Clients", "SimClient"]

CLIENT_LATENCY_MS = (1, 4)  # client <-> replica, one way
PROCESSING_MS = (0, 2)  # from an answer's release to its leaving the replica
MW_REPORTED_MAX = 10  # monotonic-writes violations listed per run (all are counted)
TOKEN_REPORTED_MAX = 10  # session-token violations listed per run (all are counted)


class ClientBugs:
    """Bugs of the simulated client and HTTP shell, switched on by canaries."""

    adopt_refusal_token = False  # the old failover bug: a refusal's merged token is adopted


@dataclass
class SimClient:
    cid: int
    workload: Workload
    replica: str  # where the next request goes
    token: SessionToken = field(default_factory=SessionToken)
    pending: Op | None = None
    stopped: bool = False
    retry: tuple[str, str, dict[str, Any]] | None = None  # an op to re-issue elsewhere
    served: VersionVector = field(default_factory=dict)  # join of the tokens served answers carried


@dataclass
class _Request:
    client: SimClient
    op: Op
    token: SessionToken  # what the client sent
    node: SimNode
    epoch: int  # the simulation's epoch of the replica when the request arrived
    latency: int  # one way, client <-> replica


class Clients:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.executed = 0  # operations executed so far (``Meta.exec_seq``)
        self.all: list[SimClient] = []
        self.session_writes: dict[int, list[tuple[Dot, VersionVector, int]]] = {}
        self.mw_checked: dict[tuple[str, int], int] = {}
        self.mw_reported: set[tuple[int, int]] = set()
        self.token_reported = 0

    def start(self) -> None:
        sim = self.sim
        for cid in range(sim.cfg.clients):
            rng = stream(sim.cfg.seed, f"client{cid}")
            client = SimClient(
                cid,
                Workload(
                    cid, rng, sim.keys, ttl_prob=sim.cfg.ttl_prob, classes=sim.cfg.key_classes
                ),
                sim.ids[cid % len(sim.ids)],
            )
            self.all.append(client)
            sim.cluster.at(rng.randint(0, 20), self._issuer(client))

    def _issuer(self, client: SimClient) -> Callable[[], None]:
        return lambda: self.issue(client)

    def busy(self) -> bool:
        return any(c.pending is not None or not c.stopped for c in self.all)

    # -- one request ---------------------------------------------------------------------------
    def issue(self, client: SimClient) -> None:
        sim = self.sim
        if sim.cluster.now_ms >= sim.fault_end_ms:
            client.stopped = True
            return
        rng = client.workload.rng
        if client.retry is not None:
            kind, key, args = client.retry
            client.retry = None
        else:
            kind, key, args = client.workload.next_op()
            if rng.random() < sim.cfg.switch_prob:
                client.replica = rng.choice(sim.ids)
        op = sim.history.add(Op(0, client.cid, kind, key, args, client.replica, sim.cluster.now_ms))
        client.pending = op
        sim.trace(f"invoke c{client.cid} #{op.idx} {kind} {key} {_js(args)} @{op.replica}")
        token = client.token
        latency = rng.randint(*CLIENT_LATENCY_MS)
        sim.cluster.at(sim.cfg.wait_ms + 500, lambda: self.give_up(client, op))
        if self._lost(client):
            return
        sim.cluster.at(latency, lambda: self.arrive(client, op, token, latency))

    def _lost(self, client: SimClient) -> bool:
        sim = self.sim
        return "loss" in sim.on and client.workload.rng.random() < sim.cfg.intensities.loss / 4

    def arrive(self, client: SimClient, op: Op, token: SessionToken, latency: int) -> None:
        sim = self.sim
        node = sim.cluster.nodes[op.replica]
        if not node.up:
            return  # connection refused: the client times out
        req = _Request(client, op, token, node, sim.epochs[op.replica], latency)

        def admitted(a: Admit) -> None:
            if self._alive(req):
                self._admitted(req, a.error)

        ticket = node.ticket(admitted)
        try:
            now = node.now()
            served = node.core.admit(ticket, token, sim.cfg.wait_ms, writes=op.is_write, now_ms=now)
        except CrdtkvError as e:
            node.forget(ticket)
            self._admitted(req, e)
            return
        if served:
            node.forget(ticket)
            self._admitted(req, None)

    def _alive(self, req: _Request) -> bool:
        return req.node.up and self.sim.epochs[req.op.replica] == req.epoch

    def _admitted(self, req: _Request, error: CrdtkvError | None) -> None:
        if error is not None:
            self._refused(req, error)
            return
        status, result, code = self.execute(req)
        op, node = req.op, req.node
        if op.is_read and op.meta is not None:
            self._check_monotonic_writes(node, op)

        def released(a: Answer) -> None:
            if self._alive(req):
                self._leave(req, status, result, code, a.token)

        ticket = node.ticket(released)
        out = node.core.finish(ticket, req.token)
        if out is not None:
            node.forget(ticket)
            self._leave(req, status, result, code, out)
        node.step()

    def _refused(self, req: _Request, error: CrdtkvError) -> None:
        token = req.token  # a refusal read and wrote nothing: the token goes back unchanged
        if ClientBugs.adopt_refusal_token and isinstance(error, SessionUnavailable):
            token = req.node.core.token_now(req.token)  # the old failover bug
        self._leave(req, "fail", None, _code(error), token)

    def execute(self, req: _Request) -> tuple[str, dict[str, Any] | None, str | None]:
        """Apply the op now; returns (status, result, error code) and fills ``op.meta``."""
        sim, op, node = self.sim, req.op, req.node
        r = node.replica
        now = node.now()
        meta = Meta(sim.cluster.now_ms, now, r.incarnation, token_vv=dict(req.token.vv))
        self.executed += 1
        meta.exec_seq = self.executed
        key = state_key(op.namespace, op.key)
        if op.kind == "hlls.merge":
            sources = (r.get(state_key("hlls", k)) for k in op.args["sources"])
            meta.sources = [s.copy() for s in sources if s]
        if op.is_write:
            meta.live_before = r.live_types(op.key)
            if key[0] in ("string", "list"):  # lists: where a push found the ends
                prior = r.get(key)
                meta.before = prior.copy() if prior is not None else None
        seq_before = r.seq
        try:
            try:
                result: dict[str, Any] = node.core.apply(op_dict(op.kind, op.key, op.args), now)
            except NotFound:
                result = {"not_found": True}
        except CrdtkvError as e:
            return "fail", None, _code(e)
        except Exception as e:  # the shell would answer 500 internal: a bug
            sim.internal_error(node, op, e)
            return "unknown", None, "internal"
        if r.seq != seq_before:
            self._record_groups(meta, r, seq_before, key)
        state = r.get(key)
        if op.is_read:
            meta.state = state.copy() if state is not None else None
        if isinstance(state, HLL):
            meta.epoch_after = state.epoch
        meta.applied_vv = dict(r.applied.vv)
        op.meta = meta
        return "ok", result, None

    @staticmethod
    def _record_groups(meta: Meta, r: Replica, seq_before: int, key: Key) -> None:
        """The groups the operation committed (its dots are the actor's after
        ``seq_before``), its delta of ``key`` and the stamp of its key metadata."""
        meta.dot = (r.actor, r.seq)
        meta.groups = [
            e.group
            for e in r.pending
            if e.origin == "" and e.group.dot[0] == r.actor and e.group.dot[1] > seq_before
        ]
        last = meta.groups[-1] if meta.groups else None
        if last is None or last.dot != meta.dot:
            return
        meta.delta = last.deltas.get(key)
        km = last.deltas.get((META, key[1]))
        if isinstance(km, KeyMeta):
            meta.stamp = km.stamps.get(key[0])

    def _leave(
        self,
        req: _Request,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
        token: SessionToken,
    ) -> None:
        op, meta = req.op, req.op.meta
        if meta is not None:
            meta.acked = True  # released by the core: what it saw is durable
            if status == "ok" and op.is_write and meta.dot:
                # Only now: a write lost to a crash before this never left its
                # replica, and its dot may be minted again for another write.
                writes = self.session_writes.setdefault(req.client.cid, [])
                writes.append((meta.dot, dict(meta.token_vv), op.idx))
        rng = req.client.workload.rng

        def send() -> None:
            if not self._alive(req):
                return  # crashed before the response left: the client never hears
            if self._lost(req.client):
                return
            self.sim.cluster.at(
                req.latency, lambda: self.answer(req.client, req.op, status, result, error, token)
            )

        self.sim.cluster.at(rng.randint(*PROCESSING_MS), send)

    def answer(
        self,
        client: SimClient,
        op: Op,
        status: str,
        result: dict[str, Any] | None,
        error: str | None,
        token: SessionToken,
    ) -> None:
        sim = self.sim
        if op.status != "pending":
            return  # the client gave up already
        op.status, op.result, op.error = status, result, error
        op.complete_ms = sim.cluster.now_ms
        refused = error == SessionUnavailable.code
        if not refused or ClientBugs.adopt_refusal_token:  # never adopt a refusal's token
            client.token = token
        if not refused:
            client.served = _join(client.served, token.vv)
        self._check_token(client, op)
        client.pending = None
        sim.trace(f"complete c{client.cid} #{op.idx} {status} {_js(result)} {error}")
        if refused:
            client.retry = (op.kind, op.key, op.args)
            client.replica = self._other_replica(client)
            sim.cluster.at(1, lambda: self.issue(client))
        else:
            think = client.workload.rng.randint(0, sim.cfg.think_ms_max)
            sim.cluster.at(think, lambda: self.issue(client))

    def give_up(self, client: SimClient, op: Op) -> None:
        sim = self.sim
        if op.status != "pending":
            return
        op.status = "unknown"
        op.complete_ms = sim.cluster.now_ms
        client.pending = None
        sim.trace(f"timeout c{client.cid} #{op.idx}")
        client.replica = self._other_replica(client)
        sim.cluster.at(0, lambda: self.issue(client))

    def _other_replica(self, client: SimClient) -> str:
        others = [r for r in self.sim.ids if r != client.replica] or self.sim.ids
        return str(client.workload.rng.choice(others))

    def forget_replica(self, rid: str) -> None:
        """A replica restarted: its monotonic-writes progress starts again."""
        self.mw_checked = {k: v for k, v in self.mw_checked.items() if k[0] != rid}

    # -- online session checks ------------------------------------------------------------------
    def _check_token(self, client: SimClient, op: Op) -> None:
        """Every dot a session's token names was applied at a replica that served the
        session: else no replica may be able to serve it (a token from a refusal)."""
        if vv_dominates(client.served, client.token.vv):
            return
        self.sim.stats["session_token_violations"] += 1
        self.token_reported += 1
        if self.token_reported > TOKEN_REPORTED_MAX:
            return
        extra = {a: s for a, s in client.token.vv.items() if client.served.get(a, 0) < s}
        self.sim.violations.append(
            checkers.Violation(
                "sessions",
                "token-not-served",
                f"session {client.cid} holds a token naming {extra} after #{op.idx}, which no "
                "replica that served it had applied: only the replica that refused it may "
                "ever serve the session",
                [op.idx],
            )
        )

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
                missing = _missing(applied, seen) - self.sim.lost_dots
                if missing and (cid, idx) not in self.mw_reported:
                    self._report_mw(node, read, cid, idx, dot, missing)
                if prefix:
                    self.mw_checked[(node.rid, cid)] = i + 1

    def _report_mw(
        self, node: SimNode, read: Op, cid: int, idx: int, dot: Dot, missing: set[Dot]
    ) -> None:
        self.mw_reported.add((cid, idx))
        self.sim.stats["monotonic_writes_violations"] += 1
        if len(self.mw_reported) > MW_REPORTED_MAX:
            return
        self.sim.violations.append(
            checkers.Violation(
                "sessions",
                "monotonic-writes",
                f"{node.rid} applied write #{idx} of session {cid} ({dot}) but "
                f"not {len(missing)} dot(s) the session had seen when it wrote, "
                f"e.g. {sorted(missing)[:3]} (seen at read #{read.idx})",
                [idx, read.idx],
            )
        )


def _code(e: CrdtkvError) -> str:
    """The error code; for a 400, also which refusal it was."""
    return f"{e.code}/{type(e).__name__}" if e.code == "bad_request" else e.code


def _join(a: VersionVector, b: VersionVector) -> VersionVector:
    out = dict(a)
    for actor, seq in b.items():
        if seq > out.get(actor, 0):
            out[actor] = seq
    return out


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

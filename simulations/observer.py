"""What a run records besides its history: the trace hash, and optional metrics.

Every event is folded into a SHA-256 trace hash (messages with their bytes,
operations with their results, faults), so two runs of one seed can be
compared by one line.  With ``metrics`` on, it also records replication lag
per link (from a dot's first durable write at its origin to its durable
write at each other replica) and the bytes a push ships against what
full-state shipping would have shipped.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from crdtkv.crdts import codec
from crdtkv.crdts.causal import Dot
from crdtkv.replica.keyspace import Key, LogEntry
from replication import messages
from simulations.harness import SimCluster, SimNode

__all__ = ["Observer"]


class Observer:
    def __init__(self, cluster: SimCluster, start_ms: int, *, metrics: bool) -> None:
        self.cluster = cluster
        self.start_ms = start_ms
        self.metrics_on = metrics
        self._trace = hashlib.sha256()
        self.mint_ms: dict[Dot, int] = {}
        self.lags: dict[str, list[int]] = defaultdict(list)
        # replica -> log position -> [(key, encoded size of its delta)] (for the wire figure)
        self.pos_keys: dict[str, dict[int, list[tuple[Key, int]]]] = defaultdict(dict)
        self.wire: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # ns -> [n, delta, full]
        cluster.tracer = self.trace_message
        if metrics:
            for node in cluster.nodes.values():
                node.observers.append(self.on_commit)
            cluster.on_send.append(self.on_send)

    def trace(self, line: str) -> None:
        self._trace.update(f"{self.cluster.now_ms - self.start_ms} {line}\n".encode())

    def hexdigest(self) -> str:
        return self._trace.hexdigest()

    def trace_message(self, what: str, src: str, dst: str, blob: bytes) -> None:
        self._trace.update(
            f"{self.cluster.now_ms - self.start_ms} {what} {src}>{dst} {len(blob)}\n".encode()
        )
        if what == "recv":
            self._trace.update(blob)

    def on_commit(self, node: SimNode, entries: list[LogEntry], now_ms: int) -> None:
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

    def on_send(self, src: str, dst: str, msg: messages.Message, blob: bytes) -> None:
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

    def metrics(self, ids: list[str]) -> dict[str, Any]:
        if not self.metrics_on:
            return {}
        return {
            "lags": dict(self.lags),
            "wire": {ns: list(v) for ns, v in self.wire.items()},
            "regions": {rid: int(rid[1:]) % 3 for rid in ids},
            "latency": {f"{a}>{b}": f.latency_ms for (a, b), f in self.cluster.faults.items()},
        }

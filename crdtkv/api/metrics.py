"""Prometheus metrics of one replica's API, in a registry of its own.

Each app gets its own ``CollectorRegistry`` (never the process-global one):
tests and ``crdtkv cluster`` build many apps in one process, and the global
registry refuses a second metric of the same name.  Other layers (the
replication shell) register their collectors into ``app[METRICS].registry``.

Values the node already counts (keys, delta log size, group commits) are
read at scrape time by a collector instead of being mirrored on every write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crdtkv.node import Node

__all__ = ["ApiMetrics", "PeersStatus"]

PeersStatus = Callable[[], Mapping[str, Mapping[str, Any]]]
"""Returns ``{peer_id: {"url", "acked", "lag_ops", "reachable"}}`` (the replication layer)."""

# Latency buckets from 0.5 ms (a read from memory) to 10 s (the longest session wait).
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# Methods outside this set are counted as "other": the label must stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class _NodeCollector(Collector):
    def __init__(self, node: Node, peers_status: PeersStatus | None) -> None:
        self._node = node
        self._peers_status = peers_status

    def collect(self) -> Iterable[Metric]:
        node, replica = self._node, self._node.replica
        yield GaugeMetricFamily(
            "crdtkv_keys", "Live keys at this replica", value=replica.live_keys(node.now_ms())
        )
        yield GaugeMetricFamily(
            "crdtkv_delta_log_entries",
            "Delta log entries not yet folded into a checkpoint",
            value=replica.log_pos - replica.checkpoint_pos,
        )
        yield CounterMetricFamily(
            "crdtkv_group_commit_batches", "Storage batches written", value=node.batches_written
        )
        yield CounterMetricFamily(
            "crdtkv_group_commit_entries",
            "Delta log entries written by group commits",
            value=node.entries_written,
        )
        if self._peers_status is not None:
            yield from _peer_metrics(self._peers_status())


def _peer_metrics(peers: Mapping[str, Mapping[str, Any]]) -> Iterable[Metric]:
    lag = GaugeMetricFamily(
        "crdtkv_replication_lag_ops",
        "Delta log entries a peer has not acknowledged",
        labels=["peer"],
    )
    up = GaugeMetricFamily(
        "crdtkv_peer_reachable", "1 if the peer answered lately", labels=["peer"]
    )
    for peer, info in sorted(peers.items()):
        lag.add_metric([peer], float(info.get("lag_ops", 0)))
        up.add_metric([peer], 1.0 if info.get("reachable") else 0.0)
    yield lag
    yield up


class ApiMetrics:
    """The API's metrics; ``render()`` is the /metrics body."""

    def __init__(self, node: Node, peers_status: PeersStatus | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "crdtkv_http_requests",
            "HTTP requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "crdtkv_http_errors",
            "HTTP error responses by error code",
            ["code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "crdtkv_http_request_duration_seconds",
            "Time from request to response, session waits and group commit included",
            ["route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_NodeCollector(node, peers_status))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)

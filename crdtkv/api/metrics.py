"""Prometheus metrics of one replica's API, in the node's registry.

``ApiMetrics`` registers its collectors in the node's ``MetricsRegistry``
(``crdtkv.metrics``), where the replication shell registers its own, and
``/metrics`` renders that registry: one registry per node, never the
process-global one (tests and ``crdtkv cluster`` run many nodes in one
process).

Values the node already counts (keys, delta log size, group commits) are
read at scrape time by a collector instead of being mirrored on every write.
The per-request metrics (requests, errors, latencies) are plain ints and
floats in dicts, turned into metric families at scrape time by a collector as
well: prometheus_client's ``Counter.labels().inc()`` and
``Histogram.observe`` take a lock, look up the label set and call
``os.getpid()`` on every request, 3 to 10% of a request's CPU
(docs/performance.md).  The names, labels and meaning of the samples are the
ones those classes would expose, ``_created`` samples included.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample

from crdtkv.node import Node

__all__ = ["ApiMetrics", "PeersStatus"]

PeersStatus = Callable[[], Mapping[str, Mapping[str, Any]]]
"""Returns ``{peer_id: {"url", "acked", "lag_ops", "reachable"}}`` (the replication layer)."""

# Latency buckets from 0.5 ms (a read from memory) to 10 s (the longest session wait).
_LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# Methods outside this set are counted as "other": the label must stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


# The node's own families: name, type, help (values read in _NodeCollector.collect).
_Family = type[GaugeMetricFamily] | type[CounterMetricFamily]
_NODE_FAMILIES: list[tuple[str, _Family, str]] = [
    ("crdtkv_keys", GaugeMetricFamily, "Live keys at this replica"),
    (
        "crdtkv_type_conflict_keys",
        GaugeMetricFamily,
        "Keys that replicas created with different types concurrently (every type's state"
        " is kept; the highest-HLC write's type is the visible one)",
    ),
    (
        "crdtkv_delta_log_entries",
        GaugeMetricFamily,
        "Delta log entries not yet folded into a checkpoint",
    ),
    ("crdtkv_group_commit_batches", CounterMetricFamily, "Storage batches written"),
    (
        "crdtkv_group_commit_entries",
        CounterMetricFamily,
        "Delta log entries written by group commits",
    ),
]


class _NodeCollector:
    def __init__(self, node: Node, peers_status: PeersStatus | None) -> None:
        self._node = node
        self._peers_status = peers_status

    def describe(self) -> Iterable[Metric]:
        out: list[Metric] = [kind(name, doc) for name, kind, doc in _NODE_FAMILIES]
        if self._peers_status is not None:
            out.extend(_peer_metrics({}))
        return out

    def collect(self) -> Iterable[Metric]:
        node, replica = self._node, self._node.replica
        values = (
            node.live_keys(),
            len(replica.conflicts),
            replica.log_pos - replica.checkpoint_pos,
            node.batches_written,
            node.entries_written,
        )
        for (name, kind, doc), value in zip(_NODE_FAMILIES, values, strict=True):
            yield kind(name, doc, value=value)
        if self._peers_status is not None:
            yield from _peer_metrics(self._peers_status())


def _peer_metrics(peers: Mapping[str, Mapping[str, Any]]) -> list[Metric]:
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
    return [lag, up]


class _Latency:
    """One route's histogram: a count per bucket (not cumulative), the sum, the creation time."""

    __slots__ = ("counts", "created", "total_s")

    def __init__(self) -> None:
        self.counts = [0] * (len(_LATENCY_BUCKETS_S) + 1)  # the last one is +Inf
        self.total_s = 0.0
        self.created = time.time()


_LATENCY = "crdtkv_http_request_duration_seconds"


class _RequestCollector:
    """``crdtkv_http_requests_total``, ``crdtkv_http_errors_total`` and the latency histogram."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._m = metrics

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, HistogramMetricFamily]:
        return (
            CounterMetricFamily(
                "crdtkv_http_requests",
                "HTTP requests answered",
                labels=["route", "method", "status"],
            ),
            CounterMetricFamily(
                "crdtkv_http_errors", "HTTP error responses by error code", labels=["code"]
            ),
            HistogramMetricFamily(
                _LATENCY,
                "Time from request to response, session waits and group commit included",
                labels=["route"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        m = self._m
        requests, errors, latency = self._families()
        for (route, method, status), n in m.requests.items():
            requests.add_metric(
                [route, method, str(status)], n, created=m.created[(route, method, status)]
            )
        yield requests
        for code, n in m.errors.items():
            errors.add_metric([code], n, created=m.created[code])
        yield errors
        bounds = [*(repr(float(b)) for b in _LATENCY_BUCKETS_S), "+Inf"]  # as Histogram has them
        for route, h in m.latency.items():
            cumulative, buckets = 0, []
            for bound, n in zip(bounds, h.counts, strict=True):
                cumulative += n
                buckets.append((bound, float(cumulative)))
            latency.add_metric([route], buckets, h.total_s)
            latency.samples.append(Sample(f"{_LATENCY}_created", {"route": route}, h.created))
        yield latency


class ApiMetrics:
    """The API's metrics, registered in ``node.metrics``; ``render()`` is the
    /metrics body (the node's whole registry).  A second app built for the
    same node takes the API's metrics over from the first."""

    def __init__(self, node: Node, peers_status: PeersStatus | None = None) -> None:
        self._node = node
        self.requests: dict[tuple[str, str, int], int] = {}  # (route, method, status) -> count
        self.errors: dict[str, int] = {}  # error code -> count
        self.latency: dict[str, _Latency] = {}  # route -> histogram
        self.created: dict[object, float] = {}  # a requests or errors label set -> first seen
        node.metrics.register(_RequestCollector(self), replace=True)
        node.metrics.register(_NodeCollector(node, peers_status), replace=True)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request (called for every request: keep it cheap)."""
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        requests = self.requests
        if key in requests:
            requests[key] += 1
        else:
            requests[key] = 1
            self.created[key] = time.time()
        h = self.latency.get(route)
        if h is None:
            h = self.latency[route] = _Latency()
        # Prometheus buckets are "less than or equal to the bound": bisect_left.
        h.counts[bisect.bisect_left(_LATENCY_BUCKETS_S, seconds)] += 1
        h.total_s += seconds

    def count_error(self, code: str) -> None:
        """One error response, by its error code (``CrdtkvError.code``)."""
        if code in self.errors:
            self.errors[code] += 1
        else:
            self.errors[code] = 1
            self.created[code] = time.time()

    def render(self) -> bytes:
        return self._node.metrics.render()

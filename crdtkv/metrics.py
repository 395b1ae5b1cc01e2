"""The node's one metrics registry: every layer registers its collectors here.

A node owns one ``MetricsRegistry`` (``Node.metrics``); the HTTP API
(``crdtkv.api.metrics``) and the replication shell register collectors in
it, and ``/metrics`` renders it.  Each registry wraps its own
prometheus_client ``CollectorRegistry``, never the process-global one: tests
and ``crdtkv cluster`` run many nodes in one process.

Collectors read what they report at scrape time.  Each must also
``describe()`` the families it yields (without samples), so that two
collectors of the same metric are refused instead of rendering it twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

__all__ = ["Collector", "MetricsRegistry"]


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]:
        """The families with their samples, read now."""
        ...

    def describe(self) -> Iterable[Metric]:
        """The same families, without samples (cheap)."""
        ...


class MetricsRegistry:
    def __init__(self) -> None:
        self._registry = CollectorRegistry()
        self._collectors: list[Collector] = []

    def register(self, collector: Collector, *, replace: bool = False) -> None:
        """Add ``collector``.  A collector of a metric already registered is
        refused (``ValueError``), unless ``replace``: then the collectors of
        those metrics are dropped first (a new HTTP app for the same node
        takes over the API's metrics)."""
        names = {m.name for m in collector.describe()}
        clashing = [c for c in self._collectors if names & {m.name for m in c.describe()}]
        if clashing and not replace:
            taken = sorted(names & {m.name for c in clashing for m in c.describe()})
            raise ValueError(f"metrics already registered: {', '.join(taken)}")
        for old in clashing:
            self._registry.unregister(old)
            self._collectors.remove(old)
        self._registry.register(collector)
        self._collectors.append(collector)

    def render(self) -> bytes:
        """The Prometheus text exposition of every registered collector."""
        return generate_latest(self._registry)

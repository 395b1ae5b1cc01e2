"""One metrics registry per node: the API and replication register in it, and
``/metrics`` renders it, every family once, under the names it always had."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.core import GaugeMetricFamily, Metric

from crdtkv.api import make_app
from crdtkv.config import ServeConfig
from crdtkv.metrics import MetricsRegistry
from crdtkv.node import Node
from crdtkv.replica.persist import load_replica
from crdtkv.storage.memory import MemoryStorage
from replication.http import ReplicationService

REPLICATION_FAMILIES = {
    "crdtkv_replication_lag_seconds": "gauge",
    "crdtkv_replication_bytes_sent": "counter",
    "crdtkv_replication_bytes_received": "counter",
    "crdtkv_replication_messages_sent": "counter",
    "crdtkv_replication_messages_received": "counter",
    "crdtkv_replication_syncs_completed": "counter",
    "crdtkv_replication_sync_bytes_shipped": "counter",
    "crdtkv_replication_log_entries": "gauge",
    "crdtkv_replication_log_bytes": "gauge",
}
API_FAMILIES = {
    "crdtkv_http_requests": "counter",
    "crdtkv_http_errors": "counter",
    "crdtkv_http_request_duration_seconds": "histogram",
    "crdtkv_keys": "gauge",
    "crdtkv_type_conflict_keys": "gauge",
    "crdtkv_delta_log_entries": "gauge",
    "crdtkv_group_commit_batches": "counter",
    "crdtkv_group_commit_entries": "counter",
    "crdtkv_replication_lag_ops": "gauge",
    "crdtkv_peer_reachable": "gauge",
}


class _Gauge:
    def __init__(self, name: str, value: float) -> None:
        self.name, self.value = name, value

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, "a test gauge")]

    def collect(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, "a test gauge", value=self.value)]


def test_the_registry_renders_its_collectors_and_refuses_a_second_of_a_metric() -> None:
    reg = MetricsRegistry()
    reg.register(_Gauge("a", 1))
    reg.register(_Gauge("b", 2))
    with pytest.raises(ValueError, match="metrics already registered: a"):
        reg.register(_Gauge("a", 3))
    text = reg.render().decode()
    assert "a 1.0" in text and "b 2.0" in text and "a 3.0" not in text
    reg.register(_Gauge("a", 3), replace=True)
    text = reg.render().decode()
    assert "a 3.0" in text and "a 1.0" not in text and text.count("# TYPE a gauge") == 1


def _types(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            if kind == "counter":
                name = name.removesuffix("_total")
            out.setdefault(name, []).append(kind)
    return out


async def test_metrics_renders_the_nodes_registry_with_every_family_once() -> None:
    node = Node(load_replica(MemoryStorage(), "r1", "inc1"), MemoryStorage())
    node.start()
    config = ServeConfig("r1", peers={"r2": "http://127.0.0.1:1"})
    service = ReplicationService(node, config.peers, secret=None)
    make_app(node, config, peers_status=service.status)  # replaced by the next one
    app = make_app(node, config, peers_status=service.status)
    service.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
    finally:
        await client.close()
        await node.close()
    types = _types(text)
    for name, kind in {**REPLICATION_FAMILIES, **API_FAMILIES}.items():
        assert types.get(name) == [kind], name
    assert 'crdtkv_replication_bytes_sent_total{peer="r2"} 0.0' in text
    with pytest.raises(ValueError, match="crdtkv_replication_lag_seconds"):
        ReplicationService(node, config.peers, secret=None)  # a node has one replication

"""What the real-cluster tests share: three ``crdtkv serve`` processes fully
meshed with a cluster secret, reading a key at one of them, waiting (bounded
by ``CONVERGE_S``) until all agree, writers started together in threads, and
raw signed replication requests."""

from __future__ import annotations

import http.client as httpclient
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from replication.http import REPLICATE_PATH, sign
from tests.procs import Server, ServerGroup, mesh, start_all, wait_until

SECRET = "real-cluster-test-secret"
CONVERGE_S = 20.0
IDS = ["r1", "r2", "r3"]

Key = tuple[str, str]  # (namespace, key)


def start_cluster(group: ServerGroup, root: Path, **kw: Any) -> list[Server]:
    """r1, r2 and r3, each a peer of the others, started and healthy."""
    servers = [group.add(s) for s in mesh(IDS, root, secret=SECRET, **kw)]
    start_all(servers)
    return servers


def read(server: Server, key: Key) -> Any:
    """The value a key reads as at ``server`` (None when absent)."""
    ns, k = key
    path = {"hlls": f"/v1/hlls/{quote(k, safe='')}"}.get(ns, f"/v1/{ns}/{quote(k, safe='')}")
    code, body = server.get(path)
    if code == 404:
        assert body["error"]["code"] == "not_found", body
        return None
    assert code == 200, (server.replica_id, key, code, body)
    return body


def converge(
    servers: list[Server], keys: list[Key], timeout_s: float = CONVERGE_S
) -> tuple[dict[Key, Any], dict[str, int]]:
    """Wait until every applied vector is equal, no peer lags, every peer is
    reachable, and every key reads the same everywhere; (reads, applied vector)."""

    def check() -> tuple[dict[Key, Any], dict[str, int]] | None:
        statuses = [s.status() for s in servers]
        vectors = [st["applied"] for st in statuses]
        if any(v != vectors[0] for v in vectors):
            return None
        for st in statuses:
            for peer in st["peers"].values():
                if peer["lag_ops"] != 0 or not peer["reachable"]:
                    return None
        reads = [{k: read(s, k) for k in keys} for s in servers]
        if any(r != reads[0] for r in reads):
            return None
        # Nothing moved while we were reading.
        if [s.status()["applied"] for s in servers] != vectors:
            return None
        return reads[0], vectors[0]

    def describe() -> str:
        out = []
        for s in servers:
            try:
                st = s.status()
                out.append(f"{s.replica_id}: applied={st['applied']} peers={st['peers']}")
            except Exception as e:  # pragma: no cover - diagnostics only
                out.append(f"{s.replica_id}: {e!r}")
        return "; ".join(out)

    try:
        result: tuple[dict[Key, Any], dict[str, int]] = wait_until(
            check, timeout_s, interval_s=0.1, what="convergence"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{describe()}") from None
    return result


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run the targets in parallel, starting together; re-raise the first failure."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                barrier.wait(timeout=10)
                fn()
            except BaseException as e:
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a writer hung"
    if errors:
        raise errors[0]


def actor_of(applied: dict[str, int], replica_id: str) -> list[str]:
    return sorted(a for a in applied if a.split("~", 1)[0] == replica_id)


def signed_headers(
    body: bytes, peer: str = "r2", secret: str = SECRET, ts_ms: int | None = None
) -> dict[str, str]:
    """The headers of a replication request from ``peer``, signed with ``secret``."""
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    return {
        "Content-Type": "application/msgpack",
        "X-Crdtkv-Peer": peer,
        "X-Crdtkv-Timestamp": str(ts),
        "X-Crdtkv-Signature": sign(secret, "POST", REPLICATE_PATH, ts, body),
    }


def http_raw(method: str, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    """(status, headers, raw body)."""
    parts = urlsplit(url)
    conn = httpclient.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, parts.path, body, headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()

"""Fixtures of the RESP tests: a real ``crdtkv serve`` with its RESP port, and a real
redis-server beside it (tests that compare with Redis skip without one)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.procs import Server, free_port

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (apt-get install redis-server)",
)


def wait_ping(client: redis.Redis, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def crdtkv_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One replica (durability ``wal``) serving RESP; shared by a module's tests."""
    root = tmp_path_factory.mktemp("resp")
    server = Server("r1", Path(root) / "r1", durability="wal", resp_port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill9()


@pytest.fixture
def ours(crdtkv_server: Server) -> Iterator[redis.Redis]:
    """A redis-py client of the replica (RESP2, strings decoded)."""
    assert crdtkv_server.resp_port is not None
    client = redis.Redis(port=crdtkv_server.resp_port, decode_responses=True)
    wait_ping(client)
    yield client
    client.close()


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A real redis-server without persistence, for side-by-side answers."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ping(redis.Redis(port=port))
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def theirs(redis_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_port, decode_responses=True)
    client.flushall()
    yield client
    client.close()

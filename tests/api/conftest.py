"""A real replica behind the real app: Node over RocksStorage in tmp_path, a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from crdtkv.api import make_app
from crdtkv.api.metrics import PeersStatus
from crdtkv.config import ServeConfig
from crdtkv.node import Node
from crdtkv.replica.persist import load_replica
from crdtkv.sessions import SESSION_HEADER, SessionToken, TokenSigner
from crdtkv.storage.rocks import RocksStorage

START_MS = 1_700_000_000_000
SECRET = "test-cluster-secret"


class FakeClock:
    """Physical time for the node, moved by the test."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


@dataclass
class Reply:
    status: int
    body: Any  # decoded JSON, or None when the body is not JSON
    headers: dict[str, str]
    raw: bytes

    @property
    def code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return code if isinstance(code, str) else None
        return None

    def token(self) -> SessionToken:
        return TokenSigner(SECRET).decode(self.headers[SESSION_HEADER])


@dataclass
class Served:
    """One replica served over HTTP; ``restart()`` reopens the same directory."""

    path: Path
    config: ServeConfig
    clock: FakeClock
    peers_status: PeersStatus | None = None
    node: Node = field(init=False)
    client: TestClient[Any, Any] = field(init=False)

    async def start(self) -> None:
        storage = RocksStorage(self.path)
        replica = load_replica(storage, self.config.replica_id, "inc1", self.config.max_offset_ms)
        self.node = Node(replica, storage, durability="wal", clock=self.clock)
        self.node.start()
        app = make_app(self.node, self.config, peers_status=self.peers_status)
        self.client = TestClient(TestServer(app))
        await self.client.start_server()

    async def stop(self) -> None:
        await self.client.close()
        await self.node.close()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        """``auth``: send the configured bearer token unless ``headers`` has one."""
        hdrs = dict(headers or {})
        if auth and self.config.auth_token and "Authorization" not in hdrs:
            hdrs["Authorization"] = f"Bearer {self.config.auth_token}"
        if body is not None:
            data = orjson.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        # encoded=True: the path goes out byte for byte as the test wrote it (yarl
        # would otherwise normalise %2E%2E into ".." and remove the segment).
        url = URL(f"http://{self.client.host}:{self.client.port}{path}", encoded=True)
        async with self.client.session.request(method, url, data=data, headers=hdrs) as resp:
            raw = await resp.read()
            try:
                decoded = orjson.loads(raw) if resp.content_type == "application/json" else None
            except orjson.JSONDecodeError:
                decoded = None
            return Reply(resp.status, decoded, dict(resp.headers), raw)

    async def ok(self, method: str, path: str, body: object = None) -> Any:
        reply = await self.request(method, path, body)
        assert reply.status == 200, (method, path, reply.status, reply.body)
        return reply.body


ServedFactory = Callable[..., Awaitable[Served]]


@pytest.fixture
async def make_served(tmp_path: Path) -> AsyncIterator[ServedFactory]:
    started: list[Served] = []

    async def make(
        *, peers_status: PeersStatus | None = None, name: str = "db", **overrides: Any
    ) -> Served:
        settings: dict[str, Any] = {"replica_id": "r1", "cluster_secret": SECRET, **overrides}
        served = Served(tmp_path / name, ServeConfig(**settings), FakeClock(), peers_status)
        await served.start()
        started.append(served)
        return served

    yield make
    for served in started:
        await served.stop()


@pytest.fixture
async def served(make_served: ServedFactory) -> Served:
    return await make_served()

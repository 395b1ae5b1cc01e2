"""The asyncio client: one aiohttp session with keep-alive connections."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

import aiohttp

from crdtkv.client._base import ClientBase
from crdtkv.client.model import Call
from crdtkv.client.namespaces import (
    AsyncKeys,
    Counters,
    Hashes,
    Hlls,
    Lists,
    Registers,
    Sets,
    Vsets,
    Zsets,
)
from crdtkv.client.routing import Failed, Plan, Reply, Send, Sleep

__all__ = ["AsyncClient"]


class AsyncClient(ClientBase):
    """The same methods as ``Client``, awaited: ``await db.counters.incr("visits")``."""

    def __init__(self, urls: Any, **kwargs: Any) -> None:
        super().__init__(urls, **kwargs)
        self._session: aiohttp.ClientSession | None = None
        self.registers = Registers(self)
        self.counters = Counters(self)
        self.sets = Sets(self)
        self.hlls = Hlls(self)
        self.keys = AsyncKeys(self)  # key-level operations on any type
        self.zsets = Zsets(self)
        self.hashes = Hashes(self)
        self.lists = Lists(self)
        self.vsets = Vsets(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def batch(self, ops: list[dict[str, Any]]) -> list[Any]:
        """Several ops; sharded: one request per shard, sent concurrently, results in order."""
        return await self._drive(self._plan_batch(ops))  # type: ignore[no-any-return]

    async def call(self, call: Call) -> Any:
        return await self._drive(self._plan(call))

    async def _drive(self, plan: Plan) -> Any:
        """Carry out a plan's steps; ``Parallel`` plans run concurrently."""
        outcome: Any = None
        while True:
            try:
                step = plan.send(outcome)
            except StopIteration as done:
                return done.value
            if isinstance(step, Send):
                outcome = await self._exchange(step)
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                outcome = None
            else:
                outcome = await asyncio.gather(
                    *(self._drive(p) for p in step.plans), return_exceptions=True
                )

    async def _exchange(self, step: Send) -> Reply | Failed:
        try:
            return Reply(*await self._send(step))
        except aiohttp.ClientConnectorError as e:  # never reached the server
            return Failed(e, reached=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return Failed(e, reached=True)

    async def _send(self, step: Send) -> tuple[int, Any, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(
                    ssl=self.ssl_context if self.ssl_context is not None else True
                ),
            )
        async with self._session.request(
            step.method, step.url + step.path, data=step.body, headers=step.headers
        ) as resp:
            return resp.status, resp.headers, await resp.read()

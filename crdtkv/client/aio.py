"""The asyncio client: one aiohttp session with keep-alive connections."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

import aiohttp

from crdtkv.client._base import ClientBase, idempotent
from crdtkv.client.model import Call, batch_call, result_of
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
from crdtkv.errors import ClusterUnavailable, SessionUnavailable

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
        return await self.call(batch_call(ops))  # type: ignore[no-any-return]

    async def call(self, call: Call) -> Any:
        last: Exception | None = None
        for attempt in range(self.attempts):
            url = self.url
            try:
                status, headers, data = await self._send(url, call)
            except aiohttp.ClientConnectorError as e:  # never reached the server
                last = e
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                if not idempotent(call):
                    raise ClusterUnavailable(
                        f"{url}: {e!r}; the request may or may not have been applied"
                    ) from e
                last = e
            else:
                self._absorb(status, headers)
                try:
                    return result_of(call, status, self._parse(data))
                except SessionUnavailable as e:
                    last = e
            self._failover()
            await asyncio.sleep(self._backoff_s(attempt))
        if isinstance(last, SessionUnavailable):
            raise last
        raise ClusterUnavailable(f"no replica answered ({last!r})")

    async def _send(self, url: str, call: Call) -> tuple[int, Any, bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(
                    ssl=self.ssl_context if self.ssl_context is not None else True
                ),
            )
        async with self._session.request(
            call.method, url + call.path, data=self._body(call), headers=self._headers(call)
        ) as resp:
            return resp.status, resp.headers, await resp.read()

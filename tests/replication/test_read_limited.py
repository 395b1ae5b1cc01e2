"""Replication bodies are read whole: aiohttp's ``read(n)`` returns what has arrived,
so a large message that arrives in pieces was cut short (and failed its signature)."""

from __future__ import annotations

import asyncio

from aiohttp import StreamReader
from aiohttp.base_protocol import BaseProtocol

from replication.http import read_limited

_tasks: list[asyncio.Task[None]] = []


class _Open(BaseProtocol):
    connected = True  # type: ignore[assignment]  # a connection without a transport


async def _stream(pieces: list[bytes]) -> StreamReader:
    loop = asyncio.get_running_loop()
    reader = StreamReader(_Open(loop), 2**16, loop=loop)

    async def feed() -> None:
        for p in pieces:
            await asyncio.sleep(0)
            reader.feed_data(p)
        reader.feed_eof()

    _tasks.append(loop.create_task(feed()))
    return reader


async def test_a_body_in_pieces_is_read_whole() -> None:
    pieces = [bytes([i]) * 70_000 for i in range(20)]
    reader = await _stream(pieces)
    assert (await reader.read(10**7)) != b"".join(pieces)  # the trap: what arrived so far
    body = await read_limited(await _stream(pieces), 10**7)
    assert body == b"".join(pieces)


async def test_a_body_over_the_limit_stops_past_it() -> None:
    body = await read_limited(await _stream([b"x" * 5000] * 10), 12_001)
    assert len(body) == 12_001


async def test_empty_body() -> None:
    assert await read_limited(await _stream([]), 100) == b""

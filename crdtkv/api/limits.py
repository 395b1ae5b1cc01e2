"""Limits the HTTP shell enforces before anything reaches the core.

- Body size: a declared ``Content-Length`` over the limit is refused before a
  byte is read; a chunked body is counted while it is read and refused as
  soon as it passes the limit, so a client can never make us buffer more
  than ``max_bytes``.  (aiohttp's ``client_max_size`` is set to the same
  limit, for any code path that uses ``request.read()``.)
- Nesting depth: checked after parsing, before anything is applied.  orjson
  itself refuses more than 1024 levels, which bounds the parser; this
  enforces the API's 64 (``limits.JSON_DEPTH_MAX``).
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from crdtkv import limits
from crdtkv.errors import BadRequest, PayloadTooLarge

__all__ = ["READ_CHUNK_BYTES", "check_depth", "read_body"]

READ_CHUNK_BYTES = 64 * 1024  # read granularity; the overshoot past the limit is at most this
_CONTAINERS = (dict, list, tuple)  # what JSON (and MessagePack) nest in


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The whole body, refusing anything over ``max_bytes`` with 413."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {max_bytes}")
    content = request.content
    if content.is_eof():
        # The usual case for a small body: the parser has already buffered all
        # of it (and no more than fits under the declared length, or aiohttp's
        # read buffer for a chunked body), so take it without an async loop.
        raw = content.read_nowait(-1)
        if len(raw) > max_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
        return raw
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"request body is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_depth(value: object, max_depth: int = limits.JSON_DEPTH_MAX) -> None:
    """Refuse containers nested deeper than ``max_depth`` (the outermost is level 1)."""
    if isinstance(value, _CONTAINERS):
        _check_depth(value, 1, max_depth)


def _check_depth(item: object, depth: int, max_depth: int) -> None:
    # Recursive, which is bounded: it raises before it goes deeper than max_depth
    # (64), far from Python's recursion limit.  Cheaper than an explicit stack of
    # (container, depth) tuples: a 100-op batch is 101 small containers.
    if depth > max_depth:
        raise BadRequest(f"JSON nested deeper than {max_depth} levels")
    children = item.values() if isinstance(item, dict) else item
    assert isinstance(children, Iterable)
    for child in children:
        if isinstance(child, _CONTAINERS):
            _check_depth(child, depth + 1, max_depth)

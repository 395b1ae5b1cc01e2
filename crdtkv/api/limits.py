"""Limits the HTTP shell enforces before anything reaches the core.

- Body size: a declared ``Content-Length`` over the limit is refused before a
  byte is read; a chunked body is counted while it is read and refused as
  soon as it passes the limit, so a client can never make us buffer more
  than ``max_bytes``.  (aiohttp's ``client_max_size`` is set to the same
  limit, for any code path that uses ``request.read()``.)
- Nesting depth: checked after parsing, iteratively, before anything is
  applied.  orjson itself refuses more than 1024 levels, which bounds the
  parser; this enforces the contract's 64.
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
    if not isinstance(value, _CONTAINERS):
        return
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise BadRequest(f"JSON nested deeper than {max_depth} levels")
        children = item.values() if isinstance(item, dict) else item
        assert isinstance(children, Iterable)
        # Only containers go on the stack: scalars cannot nest.
        stack.extend((c, depth + 1) for c in children if isinstance(c, _CONTAINERS))

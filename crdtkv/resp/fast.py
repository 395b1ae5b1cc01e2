"""Direct forms of the hottest reads (``Resp.run`` in the op table).

Each makes the same read as its op's function (``crdtkv.ops``), through
``Context.read`` (``Replica.read``: the same type and expiry rules), without
building the op's dict and validating it again: GET is the command a cache
sends most.  Imports nothing of the command table, so the op table can
import it.
"""

from __future__ import annotations

from typing import Any

from crdtkv.resp.args import key
from crdtkv.resp.values import json_bulk

__all__ = ["get"]

STRING = "string"  # crdtkv.ops.registers.STRING


def get(ctx: Any, argv: list[bytes]) -> Any:
    """GET: as ``crdtkv.ops.registers.get``, the value as GET's bulk string."""
    reg = ctx.read(key(argv[0]), STRING)
    return None if reg is None else json_bulk(reg.value())

"""Direct forms of the hottest reads (``Resp.run`` in the op table).

Each makes the same read as its op's function (``crdtkv.ops``), through
``Context.read`` (``Replica.read``: the same type and expiry rules), without
building the op's dict and validating it again: GET is the command a cache
sends most, and SCARD would otherwise sort every member.  Imports nothing of
the command table, so the op table can import it.
"""

from __future__ import annotations

from typing import Any

from crdtkv.resp.args import key
from crdtkv.resp.values import json_bulk

__all__ = ["get", "scard"]

STRING = "string"  # crdtkv.ops.registers.STRING
SET = "set"  # crdtkv.ops.sets.SET


def get(ctx: Any, argv: list[bytes]) -> Any:
    """GET: as ``crdtkv.ops.registers.get``, the value as GET's bulk string."""
    reg = ctx.read(key(argv[0]), STRING)
    return None if reg is None else json_bulk(reg.value())


def scard(ctx: Any, argv: list[bytes]) -> Any:
    """SCARD: the size ``crdtkv.ops.sets.get`` reports, without sorting the members
    (O(1) for a set with no removed members, O(members) at most)."""
    s = ctx.read(key(argv[0]), SET)
    return 0 if s is None else len(s)

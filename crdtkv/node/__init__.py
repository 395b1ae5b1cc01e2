"""A replica's node: the sans-IO core (``core``) and its asyncio shell (``aio``)."""

from crdtkv.node.aio import Node, wall_clock_ms
from crdtkv.node.core import APPLIED_WAITERS_MAX, NodeCore

__all__ = ["APPLIED_WAITERS_MAX", "Node", "NodeCore", "wall_clock_ms"]

"""The one contract every value type follows (after riak_dt and Akka ddata).

Each type lives in its own module, opens with its conflict rule and paper,
and implements:

- ``merge(other)``: in-place join (least upper bound).  A delta is a value of
  the same type, so the same ``merge`` applies a delta or a full state.
- delta-mutators (``incr``, ``add``, ``assign``, ...): change ``self`` and
  return the delta, a small value of the same type.  They take the actor id
  and timestamp explicitly; nothing here reads a clock or a random source.
  Law: ``old.copy().merge(delta) == new``.
- ``value(...)``: what a read returns.
- ``is_bottom()``: true for the initial (empty) state; ``size()`` a rough
  count of entries held, for limits and metrics.
- ``encode()`` / ``decode(payload)``: MessagePack-ready data.  The type tag
  and format version are added by ``crdtkv.crdts.codec``; ``decode`` raises
  ``CodecError`` for anything malformed, never another exception.

Mutators mutate synchronously and completely: no partial state is visible.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

__all__ = ["CRDT"]


class CRDT(ABC):
    TYPE_TAG: ClassVar[str]
    FORMAT_VERSION: ClassVar[int] = 1

    @abstractmethod
    def merge(self, other: Self) -> None:
        """In-place join with ``other`` (a full state or a delta)."""

    @abstractmethod
    def copy(self) -> Self: ...

    @abstractmethod
    def is_bottom(self) -> bool: ...

    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def encode(self) -> object:
        """MessagePack-ready payload (without tag and version)."""

    @classmethod
    @abstractmethod
    def decode(cls, payload: object) -> Self:
        """Inverse of ``encode``; raises ``CodecError`` on malformed input."""

    def joined(self, other: Self) -> Self:
        """Pure join: a new state, neither argument changed."""
        out = self.copy()
        out.merge(other)
        return out

    @abstractmethod
    def __eq__(self, other: object) -> bool: ...

    __hash__ = None  # type: ignore[assignment]

"""The typed namespaces of both clients: ``db.registers``, ``db.counters``, ...

Each method builds a ``Call`` and hands it to the client's ``call``: the
blocking client returns the result, the asyncio client an awaitable of it
(``await db.counters.incr("visits")``).  Return types below are those of the
result.
"""

from __future__ import annotations

from typing import Any, Protocol

from crdtkv.client.model import MISSING, Call, calls

__all__ = ["Counters", "Hlls", "Registers", "Sets"]


class Caller(Protocol):
    def call(self, call: Call) -> Any: ...


class Registers:
    def __init__(self, c: Caller) -> None:
        self._c = c

    def set(self, key: str, value: Any, ttl_ms: int | None = None) -> Any:
        return self._c.call(calls.registers_set(key, value, ttl_ms))

    def get(self, key: str, default: Any = MISSING) -> Any:
        """The value; raises ``KeyNotFound`` for an absent key unless ``default`` is given."""
        return self._c.call(calls.registers_get(key, default))

    def delete(self, key: str) -> Any:
        return self._c.call(calls.registers_delete(key))


class Counters:
    def __init__(self, c: Caller) -> None:
        self._c = c

    def incr(self, key: str, by: int = 1) -> Any:
        return self._c.call(calls.counters_incr(key, by))

    def decr(self, key: str, by: int = 1) -> Any:
        return self._c.call(calls.counters_incr(key, -by))

    def get(self, key: str) -> Any:
        """The value; 0 for an absent counter."""
        return self._c.call(calls.counters_get(key))

    def delete(self, key: str) -> Any:
        return self._c.call(calls.counters_delete(key))


class Sets:
    def __init__(self, c: Caller) -> None:
        self._c = c

    def add(self, key: str, *members: str) -> Any:
        return self._c.call(calls.sets_add(key, members))

    def remove(self, key: str, *members: str) -> Any:
        return self._c.call(calls.sets_remove(key, members))

    def members(self, key: str) -> Any:
        """Sorted members; [] for an absent set."""
        return self._c.call(calls.sets_members(key))

    def size(self, key: str) -> Any:
        return self._c.call(calls.sets_size(key))

    def contains(self, key: str, member: str) -> Any:
        return self._c.call(calls.sets_contains(key, member))

    def delete(self, key: str) -> Any:
        return self._c.call(calls.sets_delete(key))


class Hlls:
    def __init__(self, c: Caller) -> None:
        self._c = c

    def add(self, key: str, *items: str) -> Any:
        return self._c.call(calls.hlls_add(key, items))

    def count(self, key: str) -> Any:
        """Estimated distinct items; 0 for an absent HLL."""
        return self._c.call(calls.hlls_count(key))

    def merge(self, key: str, *sources: str) -> Any:
        return self._c.call(calls.hlls_merge(key, sources))

    def delete(self, key: str) -> Any:
        return self._c.call(calls.hlls_delete(key))

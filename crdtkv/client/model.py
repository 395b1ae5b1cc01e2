"""The request model both clients share: one ``Call`` per operation.

A ``Call`` is pure data: method, path, JSON body, and how to turn the
response body into the method's return value (``decode``) or what to return
for an absent key (``absent``).  ``Client`` and ``AsyncClient`` only differ
in how they move bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from crdtkv.errors import BadRequest, CrdtkvError, NotFound, error_for_code

__all__ = ["MISSING", "Call", "calls", "raise_for_error"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None  # JSON body, or None
    decode: Callable[[Any], Any] = lambda body: body
    absent: Any = MISSING  # value for a 404 not_found; MISSING re-raises


def _k(key: str) -> str:
    if not isinstance(key, str):
        raise BadRequest("keys are strings")
    return quote(key, safe="")


def _members(members: Iterable[str]) -> list[str]:
    if isinstance(members, str):
        raise BadRequest("pass members as separate arguments, not one string")
    out = list(members)
    if not all(isinstance(m, str) for m in out):
        raise BadRequest("members, items and sources are strings (pass them as separate arguments)")
    return out


class calls:
    # registers
    @staticmethod
    def registers_set(key: str, value: Any, ttl_ms: int | None = None) -> Call:
        body: dict[str, Any] = {"value": value}
        if ttl_ms is not None:
            body["ttl_ms"] = ttl_ms
        return Call("PUT", f"/v1/registers/{_k(key)}", body, lambda b: None)

    @staticmethod
    def registers_get(key: str, default: Any = MISSING) -> Call:
        return Call("GET", f"/v1/registers/{_k(key)}", None, lambda b: b["value"], default)

    @staticmethod
    def registers_delete(key: str) -> Call:
        return Call("DELETE", f"/v1/registers/{_k(key)}", None, lambda b: None)

    # counters
    @staticmethod
    def counters_incr(key: str, by: int = 1) -> Call:
        return Call("POST", f"/v1/counters/{_k(key)}", {"delta": by}, lambda b: b["value"])

    @staticmethod
    def counters_get(key: str) -> Call:
        return Call("GET", f"/v1/counters/{_k(key)}", None, lambda b: b["value"], 0)

    @staticmethod
    def counters_delete(key: str) -> Call:
        return Call("DELETE", f"/v1/counters/{_k(key)}", None, lambda b: None)

    # sets
    @staticmethod
    def sets_add(key: str, members: Iterable[str]) -> Call:
        body = {"members": _members(members)}
        return Call("POST", f"/v1/sets/{_k(key)}/add", body, lambda b: b["added"])

    @staticmethod
    def sets_remove(key: str, members: Iterable[str]) -> Call:
        body = {"members": _members(members)}
        return Call("POST", f"/v1/sets/{_k(key)}/remove", body, lambda b: b["removed"])

    @staticmethod
    def sets_members(key: str) -> Call:
        return Call("GET", f"/v1/sets/{_k(key)}", None, lambda b: b["members"], [])

    @staticmethod
    def sets_size(key: str) -> Call:
        return Call("GET", f"/v1/sets/{_k(key)}", None, lambda b: b["size"], 0)

    @staticmethod
    def sets_contains(key: str, member: str) -> Call:
        path = f"/v1/sets/{_k(key)}/members/{_k(member)}"
        return Call("GET", path, None, lambda b: b["present"], False)

    @staticmethod
    def sets_delete(key: str) -> Call:
        return Call("DELETE", f"/v1/sets/{_k(key)}", None, lambda b: None)

    # hlls
    @staticmethod
    def hlls_add(key: str, items: Iterable[str]) -> Call:
        body = {"items": _members(items)}
        return Call("POST", f"/v1/hlls/{_k(key)}/add", body, lambda b: b["changed"])

    @staticmethod
    def hlls_count(key: str) -> Call:
        return Call("GET", f"/v1/hlls/{_k(key)}", None, lambda b: b["count"], 0)

    @staticmethod
    def hlls_merge(key: str, sources: Iterable[str]) -> Call:
        body = {"sources": _members(sources)}
        return Call("POST", f"/v1/hlls/{_k(key)}/merge", body, lambda b: b["count"])

    @staticmethod
    def hlls_delete(key: str) -> Call:
        return Call("DELETE", f"/v1/hlls/{_k(key)}", None, lambda b: None)

    # batch
    @staticmethod
    def batch(ops: list[dict[str, Any]]) -> Call:
        return Call("POST", "/v1/batch", {"ops": list(ops)}, lambda b: b["results"])


def raise_for_error(status: int, body: Any) -> None:
    """Raise the ``CrdtkvError`` subclass for an error response."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        exc = error_for_code(str(err.get("code", "")), str(err.get("message", "")))
    else:
        exc = CrdtkvError(f"HTTP {status}")
    exc.status = status
    raise exc


def result_of(call: Call, status: int, body: Any) -> Any:
    if status == 200:
        return call.decode(body)
    try:
        raise_for_error(status, body)
    except NotFound:
        if call.absent is MISSING:
            raise
        return call.absent
    raise AssertionError("unreachable")

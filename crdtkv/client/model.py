"""The request model both clients share: one ``Call`` per operation.

A ``Call`` is pure data: method, path, JSON body, how to turn the response
body into the method's return value (``decode``), what to return for an
absent key (``absent``) and whether a retry is harmless.  ``op_call`` builds
it from an op's row of the table (``crdtkv.ops.table``) and one of the
row's client methods.  ``Client`` and ``AsyncClient`` only differ in how they
move bytes.
"""

from __future__ import annotations

import base64
import copy
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crdtkv.errors import BadRequest, CrdtkvError, NotFound, error_for_code
from crdtkv.ops.routing import http_request
from crdtkv.ops.spec import CALLER, RAISES, WHOLE, Kind, Method, OpSpec

__all__ = ["MISSING", "Call", "batch_call", "op_call", "raise_for_error", "result_of"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _none(body: Any) -> None:
    return None


def _same(body: Any) -> Any:
    return body


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    body: Any = None  # JSON body, or None
    decode: Callable[[Any], Any] = _same
    absent: Any = MISSING  # value for a 404 not_found; MISSING re-raises
    idempotent: bool = False  # safe to send twice: a retry after a lost reply cannot double-apply
    keys: tuple[str, ...] = ()  # the keys it names (a sharded cluster routes by the first)


def _path_value(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest("keys are strings")
    return value


def _members(members: Iterable[str]) -> list[str]:
    if isinstance(members, str):
        raise BadRequest("pass members as separate arguments, not one string")
    out = list(members)
    if not all(isinstance(m, str) for m in out):
        raise BadRequest("members, items and sources are strings (pass them as separate arguments)")
    return out


def _score(value: object) -> object:
    """An infinite score travels as Redis's text (JSON has no infinities)."""
    if isinstance(value, float) and math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return value


def _scores(scores: object) -> dict[str, object]:
    if not isinstance(scores, Mapping):
        raise BadRequest("scores are a mapping of member -> score")
    return {m: _score(s) for m, s in scores.items()}


def _field_map(fields: object) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise BadRequest("pass hash fields as a dict of field -> value")
    return dict(fields)


def _vector(value: Any) -> list[float] | str:
    """A vector as the op takes it: float32 bytes as base64 (the binary form), anything
    else (a list, a tuple, a numpy array) as a list of floats."""
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"a vector is a sequence of numbers or float32 bytes, not {value!r}")
    return [float(x) for x in value]


def op_call(spec: OpSpec, method: Method, given: Mapping[str, Any]) -> Call:
    """The call of client method ``method`` of op ``spec``; ``given``: its bound parameters."""
    fields: dict[str, Any] = {}
    for arg in spec.args:
        if arg.name in method.omit:
            continue
        value = given[arg.client_name]
        if value is None and not arg.required:
            fields[arg.name] = None  # not given: not sent
            continue
        if arg.kind in (Kind.STRINGS, Kind.KEYS):
            value = _members(value)
        elif arg.kind in (Kind.KEY, Kind.STRING, Kind.FIELD) and arg.required:
            value = _path_value(value)
        elif arg.kind is Kind.SCORES:
            value = _scores(value)
        elif arg.kind is Kind.SCORE_BOUND:
            value = _score(value)
        elif arg.kind is Kind.FIELDS:
            value = _field_map(value)
        elif arg.kind is Kind.VECTOR:
            value = _vector(value)
        if arg.name == method.negate:
            value = -value
        fields[arg.name] = value
    verb, path, body = http_request(spec, fields)
    if method.absent is CALLER:
        absent = given["default"]
    elif method.absent is RAISES:
        absent = MISSING
    else:
        absent = copy.copy(method.absent)  # a fresh [] for every call
    decode: Callable[[Any], Any]
    if method.returns is None:
        decode = _none
    elif method.returns == WHOLE:
        decode = dict
    elif isinstance(method.returns, tuple):
        decode = operator.itemgetter(*method.returns)  # a tuple of those fields
    else:
        decode = operator.itemgetter(method.returns)
    keys = tuple(k for k in spec.key_names(fields) if isinstance(k, str))
    return Call(verb, path, body, decode, absent, spec.retry_safe, keys)


def batch_call(ops: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> Call:
    """A batch; ``keys``: where to route it (a sharded client sends one per shard)."""
    return Call("POST", "/v1/batch", {"ops": list(ops)}, operator.itemgetter("results"), keys=keys)


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

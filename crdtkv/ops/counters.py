"""The counter view of string keys: 64-bit signed integer increments.

A string key is a numeric register: increments sum across replicas and
survive a concurrent SET on top of its base (see ``crdtkv.ops.registers``).
A key whose value is not an integer (``{"name": "ada"}``, ``"abc"``, 2.5)
refuses an increment and a counter read with 409 ``wrong_type``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import NumericRegister
from crdtkv.crdts.numeric import parse_number
from crdtkv.errors import NotAnInteger, NotFound, NotNumeric
from crdtkv.ops.registers import STRING, delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = ["decr", "delete", "get", "incr", "incrbyfloat"]


def _int_value(name: str, reg: NumericRegister) -> int:
    n = parse_number(reg.value())
    if isinstance(n, float) and n.is_integer() and -(2**63) <= n < 2**63:
        return int(n)  # a whole number left by INCRBYFLOAT counts (Redis stores 1.5+0.5 as "2")
    if not isinstance(n, int):
        raise NotAnInteger(f"key {name!r} holds a string that is not an integer")
    return n


def _add(r: Replica, name: str, by: int, now_ms: int) -> Result:
    existing = r.prepare_write(name, STRING, now_ms)
    reg = cast(NumericRegister, existing) if existing is not None else NumericRegister()
    if reg.cell:
        _int_value(name, reg)  # a fraction or a non-number: refused, nothing changes
    try:
        delta = reg.incr(r.actor, by)  # raises before any change
    except NotNumeric as e:
        raise NotAnInteger(f"key {name!r} holds a string that is not an integer") from e
    r.commit_write(name, STRING, reg, delta, now_ms)
    return {"value": _int_value(name, reg) if reg.cell else 0}


def incr(r: Replica, a: Args, now_ms: int) -> Result:
    return _add(r, a["key"], a["delta"], now_ms)


def decr(r: Replica, a: Args, now_ms: int) -> Result:
    return _add(r, a["key"], -a["delta"], now_ms)


def incrbyfloat(r: Replica, a: Args, now_ms: int) -> Result:
    """INCRBYFLOAT: a float increment, which counts alongside concurrent ones as an
    integer one does.  Refused (400) on a value that is not a number, or when the
    result would not be finite; nothing changes then."""
    name: str = a["key"]
    existing = r.prepare_write(name, STRING, now_ms)
    reg = cast(NumericRegister, existing) if existing is not None else NumericRegister()
    if reg.cell and parse_number(reg.value()) is None:
        raise NotNumeric("value is not a valid float")
    delta = reg.incr_float(r.actor, a["increment"])  # raises before any change
    r.commit_write(name, STRING, reg, delta, now_ms)
    value = parse_number(reg.value()) if reg.cell else 0
    return {"value": value}


def get(r: Replica, a: Args, now_ms: int) -> Result:
    reg = r.read(a["key"], STRING, now_ms)
    if reg is None:
        raise NotFound(f"counter {a['key']!r} not found")
    return {"value": _int_value(a["key"], cast(NumericRegister, reg))}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], STRING, now_ms)
    return {"ok": True}

"""The contract's operations as pure functions over a ``Replica``.

An operation is a plain dict, the same shape a ``/v1/batch`` op has::

    {"op": "counters.incr", "key": "visits", "delta": 1}

``apply_op(replica, op, now_ms)`` validates every field first (a bad op
raises ``BadRequest`` and changes nothing), applies it, records the delta
group for a mutation, and returns the contract's response body.  The single
HTTP endpoints build the same dicts, so one code path serves both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

from crdtkv import limits
from crdtkv.crdts import HLL, LWWRegister, ORSet, PNCounter
from crdtkv.errors import BadRequest, NotFound
from crdtkv.replica.keyspace import Key, Replica, is_live

__all__ = ["OPS", "apply_op", "check_json_value", "validate_key"]

Op = Mapping[str, Any]
Result = dict[str, Any]


# -- field validation -------------------------------------------------------------------
def validate_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str):
        raise BadRequest(f"{what} must be a string")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise BadRequest(f"{what} is not valid UTF-8") from e
    if n == 0:
        raise BadRequest(f"{what} must not be empty")
    if n > limits.KEY_BYTES_MAX:
        raise BadRequest(f"{what} is {n} bytes; the limit is {limits.KEY_BYTES_MAX}")
    return key


def _int(op: Op, name: str, *, lo: int, hi: int, default: int | None = None) -> int:
    if name not in op or op[name] is None:
        if default is not None:
            return default
        raise BadRequest(f"missing field {name!r}")
    v = op[name]
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"field {name!r} must be an integer")
    if not lo <= v <= hi:
        raise BadRequest(f"field {name!r} must be between {lo} and {hi}")
    return v


def _strings(op: Op, name: str) -> list[str]:
    v = op.get(name)
    if not isinstance(v, list):
        raise BadRequest(f"field {name!r} must be a list of strings")
    if len(v) > limits.MEMBERS_PER_OP_MAX:
        raise BadRequest(
            f"field {name!r} has {len(v)} entries; the limit is {limits.MEMBERS_PER_OP_MAX}"
        )
    for s in v:
        if not isinstance(s, str):
            raise BadRequest(f"field {name!r} must be a list of strings")
        if s.isascii():
            n = len(s)
        else:
            try:
                n = len(s.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise BadRequest(f"an entry of {name!r} is not valid UTF-8") from e
        if n > limits.MEMBER_BYTES_MAX:
            raise BadRequest(f"an entry of {name!r} is over {limits.MEMBER_BYTES_MAX} bytes")
    return v


def _check_utf8(s: str, what: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(f"{what} is not valid UTF-8") from e


def check_json_value(v: object, depth: int = 1) -> None:
    """A register value must be plain JSON, at most ``JSON_DEPTH_MAX`` deep.

    (Bodies arriving as MessagePack can carry bytes, huge ints or NaN; JSON
    bodies are already depth-checked by the parser, this is the same rule.)
    """
    if depth > limits.JSON_DEPTH_MAX:
        raise BadRequest(f"JSON nested deeper than {limits.JSON_DEPTH_MAX} levels")
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, str):
        _check_utf8(v, "a string")
    elif isinstance(v, int):
        if not limits.INT64_MIN <= v < 2**64:
            raise BadRequest("integers in values must fit in 64 bits")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise BadRequest("NaN and infinities are not JSON")
    elif isinstance(v, list):
        for x in v:
            check_json_value(x, depth + 1)
    elif isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise BadRequest("object keys must be strings")
            _check_utf8(k, "an object key")
            check_json_value(x, depth + 1)
    else:
        raise BadRequest(f"a {type(v).__name__} is not a JSON value")


# -- registers ------------------------------------------------------------------------
def registers_set(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("registers", validate_key(op.get("key")))
    if "value" not in op:
        raise BadRequest("missing field 'value'")
    value = op["value"]
    check_json_value(value)
    ttl_ms = op.get("ttl_ms")
    expires = None
    if ttl_ms is not None:
        expires = now_ms + _int(op, "ttl_ms", lo=1, hi=limits.TTL_MS_MAX)
    reg = cast(LWWRegister, r.state_for_write(key))
    r.commit_local({key: reg.assign(r.hlc.now(now_ms), value, expires)})
    return {"ok": True}


def registers_get(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("registers", validate_key(op.get("key")))
    reg = r.get(key)
    if reg is None or not cast(LWWRegister, reg).present(now_ms):
        raise NotFound(f"register {key[1]!r} not found")
    return {"value": cast(LWWRegister, reg).val}


def registers_delete(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("registers", validate_key(op.get("key")))
    reg = cast(LWWRegister, r.state_for_write(key))
    r.commit_local({key: reg.delete(r.hlc.now(now_ms))})
    return {"ok": True}


# -- counters -------------------------------------------------------------------------
def counters_incr(r: Replica, op: Op, now_ms: int, sign: int = 1) -> Result:
    key = ("counters", validate_key(op.get("key")))
    by = sign * _int(op, "delta", lo=limits.INT64_MIN, hi=limits.INT64_MAX)
    existing = r.for_update(key)
    ctr = cast(PNCounter, existing) if existing is not None else PNCounter()
    delta = ctr.incr(r.actor, by)  # raises CounterOverflow before any change
    if existing is None and not delta.is_bottom():
        r.states[key] = ctr
    r.commit_local({key: delta})
    return {"value": ctr.value()}


def counters_decr(r: Replica, op: Op, now_ms: int) -> Result:
    return counters_incr(r, op, now_ms, sign=-1)


def counters_get(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("counters", validate_key(op.get("key")))
    ctr = r.get(key)
    if ctr is None or not is_live(ctr, now_ms):
        raise NotFound(f"counter {key[1]!r} not found")
    return {"value": cast(PNCounter, ctr).value()}


def counters_delete(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("counters", validate_key(op.get("key")))
    ctr = r.for_update(key)
    if ctr is not None:
        r.commit_local({key: cast(PNCounter, ctr).reset()})
    return {"ok": True}


# -- sets -----------------------------------------------------------------------------
def sets_add(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("sets", validate_key(op.get("key")))
    members = _strings(op, "members")
    existing = r.for_update(key)
    s = cast(ORSet, existing) if existing is not None else ORSet()
    if len(s) + len(members) > limits.SET_MEMBERS_MAX:
        new = sum(1 for m in set(members) if not s.contains(m))
        if len(s) + new > limits.SET_MEMBERS_MAX:
            raise BadRequest(f"a set holds at most {limits.SET_MEMBERS_MAX} members")
    delta, added = s.add(r.actor, members)
    if existing is None and members:
        r.states[key] = s
    r.commit_local({key: delta})
    return {"added": added}


def sets_remove(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("sets", validate_key(op.get("key")))
    members = _strings(op, "members")
    s = r.for_update(key)
    if s is None:
        return {"removed": 0}
    delta, removed = cast(ORSet, s).remove(members)
    r.commit_local({key: delta})
    return {"removed": removed}


def _live_set(r: Replica, key: Key) -> ORSet:
    s = r.get(key)
    if s is None or not cast(ORSet, s).entries:
        raise NotFound(f"set {key[1]!r} not found")
    return cast(ORSet, s)


def sets_get(r: Replica, op: Op, now_ms: int) -> Result:
    s = _live_set(r, ("sets", validate_key(op.get("key"))))
    return {"members": s.members(), "size": len(s)}


def sets_contains(r: Replica, op: Op, now_ms: int) -> Result:
    s = _live_set(r, ("sets", validate_key(op.get("key"))))
    member = op.get("member")
    if not isinstance(member, str):
        raise BadRequest("field 'member' must be a string")
    return {"present": s.contains(member)}


def sets_delete(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("sets", validate_key(op.get("key")))
    s = r.for_update(key)
    if s is not None and cast(ORSet, s).entries:
        r.commit_local({key: cast(ORSet, s).clear()})
    return {"ok": True}


# -- hlls -----------------------------------------------------------------------------
def hlls_add(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("hlls", validate_key(op.get("key")))
    items = _strings(op, "items")
    existing = r.for_update(key)
    h = cast(HLL, existing) if existing is not None else HLL()
    delta = h.add(items)
    changed = delta.has_registers()
    if existing is None and changed:
        r.states[key] = h
    r.commit_local({key: delta})
    return {"changed": changed}


def _hll_sources(op: Op) -> list[str]:
    sources = op.get("sources")
    if not isinstance(sources, list) or not sources:
        raise BadRequest("field 'sources' must be a non-empty list of keys")
    if len(sources) > limits.HLL_SOURCES_MAX:
        raise BadRequest(f"at most {limits.HLL_SOURCES_MAX} sources")
    return [validate_key(s, "a source key") for s in sources]


def hlls_count(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("hlls", validate_key(op.get("key")))
    h = r.get(key)
    others = _hll_sources(op) if op.get("sources") is not None else []
    if not others:
        if h is None or not is_live(h, now_ms):
            raise NotFound(f"hll {key[1]!r} not found")
        return {"count": cast(HLL, h).count()}
    hlls = [cast(HLL, x) for x in [h, *(r.get(("hlls", s)) for s in others)] if x is not None]
    return {"count": HLL.union_count(hlls)}


def hlls_merge(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("hlls", validate_key(op.get("key")))
    sources = _hll_sources(op)
    h = cast(HLL, r.state_for_write(key))
    delta = HLL()
    for name in sources:
        src = r.get(("hlls", name))
        if src is not None and name != key[1]:
            delta.merge(h.merge_from(cast(HLL, src)))
    if h.is_bottom():
        del r.states[key]
    r.commit_local({key: delta})
    return {"count": h.count()}


def hlls_delete(r: Replica, op: Op, now_ms: int) -> Result:
    key = ("hlls", validate_key(op.get("key")))
    h = r.for_update(key)
    if h is not None and is_live(h, now_ms):
        r.commit_local({key: cast(HLL, h).clear(r.hlc.now(now_ms))})
    return {"ok": True}


OPS: dict[str, Callable[[Replica, Op, int], Result]] = {
    "registers.set": registers_set,
    "registers.get": registers_get,
    "registers.delete": registers_delete,
    "counters.incr": counters_incr,
    "counters.decr": counters_decr,
    "counters.get": counters_get,
    "counters.delete": counters_delete,
    "sets.add": sets_add,
    "sets.remove": sets_remove,
    "sets.get": sets_get,
    "sets.contains": sets_contains,
    "sets.delete": sets_delete,
    "hlls.add": hlls_add,
    "hlls.count": hlls_count,
    "hlls.merge": hlls_merge,
    "hlls.delete": hlls_delete,
}

READ_OPS = frozenset({"registers.get", "counters.get", "sets.get", "sets.contains", "hlls.count"})


def apply_op(replica: Replica, op: object, now_ms: int) -> Result:
    """Validate and apply one operation; raises a ``CrdtkvError`` subclass on refusal."""
    if not isinstance(op, dict):
        raise BadRequest("an op must be an object")
    name = op.get("op")
    fn = OPS.get(name) if isinstance(name, str) else None
    if fn is None:
        raise BadRequest(f"unknown op {name!r}; known: {', '.join(sorted(OPS))}")
    return fn(replica, op, now_ms)

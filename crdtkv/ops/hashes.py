"""Hash operations (Redis hashes: an observed-remove map of field -> numeric register).

Conflict rules are the ``ORMap``'s (``crdtkv.crdts.or_map``): concurrent HSETs of
different fields both survive, of one field the last writer wins; concurrent
HINCRBYs sum; HDEL removes only what this replica has seen.  As in Redis, an
empty hash does not exist: reads of it answer 404, and the HDEL of its last
field deletes the key.

Field values are strings, 64-bit integers and floats, returned as stored
(an HINCRBY of the string "5" returns and stores an integer).

Costs: every write is O(fields it names) plus O(log n) for the field index;
HLEN, HEXISTS, HGET are O(1); HSCAN is O(log n + count); HGETALL, HKEYS and
HVALS are O(n), as in Redis.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import cast

from crdtkv import limits
from crdtkv.crdts import ORMap
from crdtkv.crdts.numeric import Scalar, parse_number
from crdtkv.errors import BadRequest, NotFound, NotNumeric
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = [
    "delete",
    "exists",
    "get",
    "getall",
    "incr",
    "incrfloat",
    "keys",
    "len_",
    "mget",
    "remove",
    "removefield",
    "scan",
    "set_",
    "setnx",
    "strlen",
    "vals",
]

HASH = "hash"
SCAN_COUNT_DEFAULT = 10  # Redis's HSCAN default COUNT
NOT_INTEGER = "hash value is not an integer"  # Redis's texts
NOT_FLOAT = "hash value is not a float"


def _for_write(r: Replica, name: str, now_ms: int) -> ORMap:
    existing = r.prepare_write(name, HASH, now_ms)
    return cast(ORMap, existing) if existing is not None else ORMap()


def _check_room(h: ORMap, fields: list[str]) -> None:
    """Refuse a write that would take the hash past ``HASH_FIELDS_MAX`` (O(fields))."""
    if len(h) + len(fields) > limits.HASH_FIELDS_MAX:
        new = sum(1 for f in set(fields) if f not in h)
        if len(h) + new > limits.HASH_FIELDS_MAX:
            raise BadRequest(f"a hash holds at most {limits.HASH_FIELDS_MAX} fields")


def _write(r: Replica, name: str, h: ORMap, items: list[tuple[str, Scalar]], now_ms: int) -> int:
    if not items:
        return 0
    _check_room(h, [f for f, _ in items])
    ts = r.hlc.now(now_ms)
    delta, added = h.set(r.actor, ts, items)
    r.commit_write(name, HASH, h, delta, now_ms, ts)
    return added


def set_(r: Replica, a: Args, now_ms: int) -> Result:
    """HSET: each field gets a new value; returns how many fields were new."""
    name: str = a["key"]
    h = _for_write(r, name, now_ms)
    return {"added": _write(r, name, h, list(a["fields"].items()), now_ms)}


def setnx(r: Replica, a: Args, now_ms: int) -> Result:
    """HSETNX, for any number of fields: sets those absent here (a local check)."""
    name: str = a["key"]
    h = _for_write(r, name, now_ms)
    items = [(f, v) for f, v in a["fields"].items() if f not in h]
    return {"added": _write(r, name, h, items, now_ms)}


def _live(r: Replica, name: str, now_ms: int) -> ORMap:
    h = r.read(name, HASH, now_ms)
    if h is None:
        raise NotFound(f"hash {name!r} not found")
    return cast(ORMap, h)


def get(r: Replica, a: Args, now_ms: int) -> Result:
    """HGET: the value, null for an absent field of an existing hash."""
    return {"value": _live(r, a["key"], now_ms).get(a["field"])}


def mget(r: Replica, a: Args, now_ms: int) -> Result:
    h = _live(r, a["key"], now_ms)
    return {"values": [h.get(f) for f in a["names"]]}


def getall(r: Replica, a: Args, now_ms: int) -> Result:
    h = _live(r, a["key"], now_ms)
    return {"fields": h.value(), "size": len(h)}


def len_(r: Replica, a: Args, now_ms: int) -> Result:
    return {"size": len(_live(r, a["key"], now_ms))}


def exists(r: Replica, a: Args, now_ms: int) -> Result:
    return {"present": a["field"] in _live(r, a["key"], now_ms)}


def keys(r: Replica, a: Args, now_ms: int) -> Result:
    return {"fields": _live(r, a["key"], now_ms).fields()}


def vals(r: Replica, a: Args, now_ms: int) -> Result:
    return {"values": list(_live(r, a["key"], now_ms).value().values())}


def _text_bytes(v: Scalar | None) -> int:
    """Redis's HSTRLEN: the bytes of the value as text (a number as it prints)."""
    if v is None:
        return 0
    if isinstance(v, bytes):
        return len(v)
    if isinstance(v, str):
        return len(v.encode("utf-8"))
    return len(repr(v))


def strlen(r: Replica, a: Args, now_ms: int) -> Result:
    return {"length": _text_bytes(_live(r, a["key"], now_ms).get(a["field"]))}


def _remove(r: Replica, name: str, fields: list[str], now_ms: int) -> int:
    if r.read(name, HASH, now_ms) is None:
        return 0
    h = cast(ORMap, r.for_update((HASH, name)))
    delta, removed = h.remove(dict.fromkeys(fields))
    # The last field gone, the hash no longer exists (its state is empty, not live).
    r.commit_write(name, HASH, h, delta, now_ms)
    return removed


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    """HDEL: removes the fields this replica has seen; returns how many were present."""
    return {"removed": _remove(r, a["key"], a["names"], now_ms)}


def removefield(r: Replica, a: Args, now_ms: int) -> Result:
    return {"removed": _remove(r, a["key"], [a["field"]], now_ms)}


def _integral(value: Scalar) -> bool:
    """Whether HINCRBY may add to ``value``, as Redis decides from the value's text: a
    string must spell an integer ("5.0" does not), and a number left by HINCRBYFLOAT
    counts when it is whole (Redis stores 3.5 + 5.5 as "9")."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(parse_number(value), int)


def incr(r: Replica, a: Args, now_ms: int) -> Result:
    """HINCRBY: 64-bit checked; refused (400) on a value that is not an integer."""
    name: str = a["key"]
    field: str = a["field"]
    h = _for_write(r, name, now_ms)
    current = h.get(field)
    if current is not None and not _integral(current):
        raise BadRequest(NOT_INTEGER)
    _check_room(h, [field])
    try:
        delta, value = h.incr(r.actor, field, a["delta"])  # raises before any change
    except NotNumeric as e:
        raise BadRequest(NOT_INTEGER) from e
    r.commit_write(name, HASH, h, delta, now_ms)
    return {"value": value}


def incrfloat(r: Replica, a: Args, now_ms: int) -> Result:
    """HINCRBYFLOAT: refused (400) on a value that is not a number, or a result
    that is not finite."""
    name: str = a["key"]
    field: str = a["field"]
    h = _for_write(r, name, now_ms)
    _check_room(h, [field])
    try:
        delta, value = h.incr_float(r.actor, field, a["increment"])
    except NotNumeric as e:
        raise BadRequest(NOT_FLOAT) from e
    r.commit_write(name, HASH, h, delta, now_ms)
    return {"value": value}


def scan(r: Replica, a: Args, now_ms: int) -> Result:
    """HSCAN: the fields after ``cursor`` (of ``count`` examined, those matching the
    glob ``match``) with their values, and the next cursor: the last field examined,
    "" when done.  A field present for the whole scan is returned exactly once."""
    h = _live(r, a["key"], now_ms)
    match: str | None = a["match"]
    if match is not None and len(match) > limits.MEMBER_BYTES_MAX:
        raise BadRequest(f"field 'match' is over {limits.MEMBER_BYTES_MAX} characters")
    count: int = a["count"] if a["count"] is not None else SCAN_COUNT_DEFAULT
    fields, more = h.page(a["cursor"] or "", count)
    out: dict[str, Scalar] = {}
    for f in fields:
        if match is None or fnmatchcase(f, match):
            v = h.get(f)
            assert v is not None  # the index lists live fields only
            out[f] = v
    return {"fields": out, "cursor": fields[-1] if more and fields else ""}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], HASH, now_ms)
    return {"ok": True}

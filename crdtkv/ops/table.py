"""The op table: every operation of the store, declared once.

The HTTP routes and the batch endpoint's field checks (``crdtkv.api.routes``),
both clients' namespaces (``crdtkv.client``), the command-line client
(``crdtkv.tools.client_cli``), the OpenAPI document (``scripts/gen_openapi.py``)
and the simulator's workload and history are all built from ``TABLE``.  To add
an operation, write its function in the type's module and its row here.

Order matters: it is the order of the routes, of the OpenAPI document's
schemas and of the CLI's verbs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crdtkv import limits
from crdtkv.errors import BadRequest
from crdtkv.ops import counters, hashes, hlls, registers, sets
from crdtkv.ops.spec import (
    CALLER,
    Arg,
    Body,
    Doc,
    Field,
    In,
    Kind,
    Method,
    OpSpec,
    Out,
    Result,
    Route,
    Shape,
    Verb,
)
from crdtkv.replica.keyspace import Replica

__all__ = ["NAMESPACES", "OPS", "TABLE", "VIEW_TYPES", "apply_op", "op_dict", "snapshot_read"]

# -- arguments --------------------------------------------------------------------------------
KEY = Arg("key", Kind.KEY, http=In.PATH)
VALUE = Arg("value", Kind.JSON)
TTL_MS = Arg(
    "ttl_ms",
    Kind.INT,
    required=False,
    lo=1,
    hi=limits.TTL_MS_MAX,
    doc="Time to live in milliseconds, counted from the write (at most ten years). Absent or "
    "null: the value does not expire.",
    help="expire after this many milliseconds",
)
DELTA = Arg(
    "delta",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    param="by",
    default=1,
    help="amount (default 1; negative ok)",
)
MEMBERS = Arg("members", Kind.STRINGS, hi=limits.MEMBERS_PER_OP_MAX, doc="Set members")
MEMBER = Arg(
    "member", Kind.STRING, http=In.PATH, http_doc="The member to look for, percent-encoded."
)
ITEMS = Arg("items", Kind.STRINGS, hi=limits.MEMBERS_PER_OP_MAX, doc="HLL items")
_SOURCES_DOC = "Keys of other HLLs"
SOURCES = Arg("sources", Kind.KEYS, hi=limits.HLL_SOURCES_MAX, doc=_SOURCES_DOC)
UNION = Arg(
    "sources",
    Kind.KEYS,
    required=False,
    hi=limits.HLL_SOURCES_MAX,
    http=In.QUERY,
    query="union",
    doc=_SOURCES_DOC,
    http_doc="Count the union of this HLL and these (repeat the parameter: "
    "`?union=a&union=b`); absent HLLs count as empty and the answer is never 404.",
)

# -- result bodies ----------------------------------------------------------------------------
OK = Shape("Ok", (Field("ok", Out.OK),))
REGISTER_VALUE = Shape("RegisterValue", (Field("value", Out.JSON),))
COUNTER_VALUE = Shape("CounterValue", (Field("value", Out.INT64),))
SET_ADDED = Shape("SetAdded", (Field("added", Out.COUNT, "Members that were not present before."),))
SET_REMOVED = Shape("SetRemoved", (Field("removed", Out.COUNT, "Members that were present."),))
SET_VIEW = Shape(
    "SetView",
    (
        Field("members", Out.SORTED_STRINGS, "Sorted (by Unicode code point)."),
        Field("size", Out.COUNT),
    ),
)
SET_PRESENT = Shape("SetPresent", (Field("present", Out.BOOL),))
HLL_CHANGED = Shape("HllChanged", (Field("changed", Out.BOOL, "Whether the sketch changed."),))
HLL_COUNT = Shape("HllCount", (Field("count", Out.COUNT, "Estimated distinct items."),))

# -- request bodies, shared by the routes taking the same fields ------------------------------
SET_MEMBERS = Body("SetMembers", {"members": ["a", "b"]})

DELETED = "Deleted (also when it did not exist)."
DEL = Verb("del", "delete a key (--type registers|counters|sets|hlls|hashes)")


def _route(method: str, path: str) -> Route:
    return Route(method, "/v1/" + path)


REGISTERS: tuple[OpSpec, ...] = (
    OpSpec(
        "registers.set",
        (KEY, VALUE, TTL_MS),
        registers.set_,
        writes=True,
        result=OK,
        doc=Doc(
            "Write a register (last writer wins), optionally with a TTL",
            "Written.",
            {"ok": True},
        ),
        route=_route("PUT", "registers/{key}"),
        body=Body("RegisterSet", {"value": {"name": "ada"}, "ttl_ms": 60000}),
        client=(
            Method(
                "set",
                "Write ``value`` (any JSON), expiring ``ttl_ms`` after the write when given.",
                cli=Verb("set", "write a register"),
            ),
        ),
    ),
    OpSpec(
        "registers.get",
        (KEY,),
        registers.get,
        writes=False,
        result=REGISTER_VALUE,
        doc=Doc("Read a register", "The value.", {"value": {"name": "ada"}}),
        route=_route("GET", "registers/{key}"),
        snapshot=True,
        client=(
            Method(
                "get",
                "The value; raises ``KeyNotFound`` for an absent key unless ``default`` is given.",
                returns="value",
                absent=CALLER,
                cli=Verb("get", "read a register (prints JSON)"),
            ),
        ),
    ),
    OpSpec(
        "registers.delete",
        (KEY,),
        registers.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a register", DELETED, {"ok": True}),
        route=_route("DELETE", "registers/{key}"),
        client=(Method("delete", "Delete the register.", cli=DEL),),
    ),
)

COUNTERS: tuple[OpSpec, ...] = (
    OpSpec(
        "counters.incr",
        (KEY, DELTA),
        counters.incr,
        writes=True,
        retry_safe=False,
        result=COUNTER_VALUE,
        doc=Doc(
            "Add a delta to a counter", "The value at this replica after the change.", {"value": 3}
        ),
        route=_route("POST", "counters/{key}"),
        body=Body(
            "CounterIncr",
            {"delta": 3},
            "A negative delta decrements. A result outside the 64-bit signed range is refused "
            "(400) and changes nothing.",
        ),
        client=(
            Method(
                "incr",
                "Add ``by``; returns the value at this replica after the change.",
                returns="value",
                cli=Verb("incr", "add to a counter (prints the new value)"),
            ),
            # decr travels as incr: the single-key endpoint takes any delta.
            Method(
                "decr",
                "Subtract ``by``; returns the value at this replica after the change.",
                returns="value",
                negate="delta",
            ),
        ),
    ),
    OpSpec(
        "counters.decr",
        (KEY, DELTA),
        counters.decr,
        writes=True,
        retry_safe=False,
        result=COUNTER_VALUE,
        doc=Doc("counters.incr with the delta negated (batch only)"),
        route=None,
        client=None,  # the clients' decr is counters.incr with the delta negated
    ),
    OpSpec(
        "counters.get",
        (KEY,),
        counters.get,
        writes=False,
        result=COUNTER_VALUE,
        doc=Doc("Read a counter", "The value at this replica.", {"value": 3}),
        route=_route("GET", "counters/{key}"),
        snapshot=True,
        client=(Method("get", "The value; 0 for an absent counter.", returns="value", absent=0),),
    ),
    OpSpec(
        "counters.delete",
        (KEY,),
        counters.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a counter (reset it to 0)", DELETED, {"ok": True}),
        route=_route("DELETE", "counters/{key}"),
        client=(Method("delete", "Delete the counter (reset it to 0).", cli=DEL),),
    ),
)

SETS: tuple[OpSpec, ...] = (
    OpSpec(
        "sets.add",
        (KEY, MEMBERS),
        sets.add,
        writes=True,
        result=SET_ADDED,
        doc=Doc(
            "Add members to a set (add wins over a concurrent remove)",
            "How many were not present before.",
            {"added": 2},
        ),
        route=_route("POST", "sets/{key}/add"),
        body=SET_MEMBERS,
        client=(
            Method(
                "add",
                "Add members; returns how many were not present before.",
                returns="added",
                cli=Verb("sadd", "add members to a set (prints how many were new)"),
            ),
        ),
    ),
    OpSpec(
        "sets.remove",
        (KEY, MEMBERS),
        sets.remove,
        writes=True,
        result=SET_REMOVED,
        doc=Doc("Remove members from a set", "How many were present.", {"removed": 1}),
        route=_route("POST", "sets/{key}/remove"),
        body=SET_MEMBERS,
        client=(
            Method(
                "remove",
                "Remove members (the ones this replica has seen added); returns how many were "
                "present.",
                returns="removed",
                cli=Verb("srem", "remove members from a set (prints how many were removed)"),
            ),
        ),
    ),
    OpSpec(
        "sets.get",
        (KEY,),
        sets.get,
        writes=False,
        result=SET_VIEW,
        doc=Doc("Read a set's members", "Members, sorted.", {"members": ["a", "b"], "size": 2}),
        route=_route("GET", "sets/{key}"),
        snapshot=True,
        client=(
            Method(
                "members",
                "Sorted members; [] for an absent set.",
                returns="members",
                absent=[],
                cli=Verb("smembers", "list a set's members, one per line"),
            ),
            Method("size", "The number of members; 0 for an absent set.", returns="size", absent=0),
        ),
    ),
    OpSpec(
        "sets.contains",
        (KEY, MEMBER),
        sets.contains,
        writes=False,
        result=SET_PRESENT,
        doc=Doc(
            "Is a member in a set?",
            "Whether it is.",
            {"present": True},
            "404 when the set itself does not exist.",
        ),
        route=_route("GET", "sets/{key}/members/{member}"),
        client=(
            Method(
                "contains",
                "Whether ``member`` is in the set; False for an absent set.",
                returns="present",
                absent=False,
            ),
        ),
    ),
    OpSpec(
        "sets.delete",
        (KEY,),
        sets.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a set (remove every member this replica has seen)", DELETED, {"ok": True}),
        route=_route("DELETE", "sets/{key}"),
        client=(Method("delete", "Delete the set (every member this replica has seen).", cli=DEL),),
    ),
)

HLLS: tuple[OpSpec, ...] = (
    OpSpec(
        "hlls.add",
        (KEY, ITEMS),
        hlls.add,
        writes=True,
        result=HLL_CHANGED,
        doc=Doc("Add items to an HLL", "Whether the sketch changed.", {"changed": True}),
        route=_route("POST", "hlls/{key}/add"),
        body=Body("HllItems", {"items": ["u1", "u2"]}),
        client=(
            Method(
                "add",
                "Add items; returns whether the sketch changed.",
                returns="changed",
                cli=Verb("pfadd", "add items to a HyperLogLog (prints 1 if it changed)"),
            ),
        ),
    ),
    OpSpec(
        "hlls.count",
        (KEY, UNION),
        hlls.count,
        writes=False,
        result=HLL_COUNT,
        doc=Doc(
            "Estimate the distinct items of an HLL, or of a union of HLLs",
            "The estimate.",
            {"count": 2},
            "404 when the HLL does not exist and no `union` is given.",
        ),
        route=_route("GET", "hlls/{key}"),
        snapshot=True,
        client=(
            Method(
                "count",
                "Estimated distinct items; 0 for an absent HLL.",
                returns="count",
                absent=0,
                omit=("sources",),
                cli=Verb("pfcount", "estimated distinct items of a HyperLogLog"),
            ),
        ),
    ),
    OpSpec(
        "hlls.merge",
        (KEY, SOURCES),
        hlls.merge,
        writes=True,
        result=HLL_COUNT,
        doc=Doc(
            "Make an HLL the union of itself and other HLLs",
            "The estimate after the merge.",
            {"count": 5},
            "Absent sources count as empty.",
        ),
        route=_route("POST", "hlls/{key}/merge"),
        body=Body("HllMerge", {"sources": ["visitors:eu"]}),
        client=(
            Method(
                "merge",
                "Make the HLL the union of itself and ``sources`` (absent ones count as "
                "empty); returns the estimate after the merge.",
                returns="count",
            ),
        ),
    ),
    OpSpec(
        "hlls.delete",
        (KEY,),
        hlls.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete an HLL", DELETED, {"ok": True}),
        route=_route("DELETE", "hlls/{key}"),
        client=(Method("delete", "Delete the HLL.", cli=DEL),),
    ),
)

# -- hashes -----------------------------------------------------------------------------------
_FIELD_DOC = f"A hash field: 1 to {limits.MEMBER_BYTES_MAX} bytes of UTF-8."
FIELD = Arg(
    "field",
    Kind.FIELD,
    http=In.PATH,
    doc=_FIELD_DOC,
    http_doc="The field, percent-encoded.",
)
FIELD_IN_BODY = Arg("field", Kind.FIELD, doc=_FIELD_DOC)
HASH_FIELDS = Arg(
    "fields",
    Kind.FIELDS,
    hi=limits.MEMBERS_PER_OP_MAX,
    doc="Field -> value: a string, a 64-bit integer or a finite number",
)
HASH_NAMES = Arg(
    "names", Kind.STRINGS, hi=limits.MEMBERS_PER_OP_MAX, param="fields", doc="Hash fields"
)
INCREMENT = Arg(
    "increment", Kind.FLOAT, param="by", doc="A finite number to add.", help="amount (a number)"
)
CURSOR = Arg(
    "cursor",
    Kind.STRING,
    required=False,
    doc='Where to continue: the `cursor` of the previous page; absent or "" to start.',
)
SCAN_COUNT = Arg(
    "count",
    Kind.INT,
    required=False,
    lo=1,
    hi=limits.MEMBERS_PER_OP_MAX,
    doc=f"Fields to examine (default {hashes.SCAN_COUNT_DEFAULT}).",
)
MATCH = Arg(
    "match",
    Kind.STRING,
    required=False,
    doc="Only fields matching this glob (`*`, `?`, `[...]`), case-sensitive.",
)

HASH_ADDED = Shape("HashAdded", (Field("added", Out.COUNT, "Fields that were not present."),))
HASH_REMOVED = Shape("HashRemoved", (Field("removed", Out.COUNT, "Fields that were present."),))
HASH_VALUE = Shape("HashValue", (Field("value", Out.JSON, "The value; null: no such field."),))
HASH_VALUES = Shape("HashValues", (Field("values", Out.VALUES, "Null for an absent field."),))
HASH_VIEW = Shape(
    "HashView",
    (Field("fields", Out.HASH, "Field -> value, by field."), Field("size", Out.COUNT)),
)
HASH_SIZE = Shape("HashSize", (Field("size", Out.COUNT),))
HASH_PRESENT = Shape("HashPresent", (Field("present", Out.BOOL),))
HASH_KEYS = Shape("HashKeys", (Field("fields", Out.SORTED_STRINGS, "Sorted (by code point)."),))
HASH_LENGTH = Shape("HashLength", (Field("length", Out.COUNT, "UTF-8 bytes of the value."),))
HASH_NUMBER = Shape("HashNumber", (Field("value", Out.NUMBER),))
HASH_INT = Shape("HashInt", (Field("value", Out.INT64),))
HASH_PAGE = Shape(
    "HashPage",
    (
        Field("fields", Out.HASH, "This page's fields that match, by field."),
        Field("cursor", Out.STRING, 'The next page\'s cursor; "" when done.'),
    ),
)
HASH_SET_BODY = Body("HashFields", {"fields": {"name": "ada", "visits": 3}})
HASH_NAMES_BODY = Body("HashNames", {"names": ["name", "visits"]})
HASH_404 = "404 when the hash does not exist (an empty hash does not)."

HASHES: tuple[OpSpec, ...] = (
    OpSpec(
        "hashes.set",
        (KEY, HASH_FIELDS),
        hashes.set_,
        writes=True,
        result=HASH_ADDED,
        doc=Doc("Set fields of a hash (HSET)", "How many fields were new.", {"added": 2}),
        route=_route("PUT", "hashes/{key}"),
        body=HASH_SET_BODY,
        client=(
            Method(
                "set",
                "Set fields from a dict; returns how many were new.",
                returns="added",
                cli=Verb("hset", "set hash fields: KEY FIELD VALUE [FIELD VALUE ...]"),
            ),
        ),
    ),
    OpSpec(
        "hashes.setnx",
        (KEY, HASH_FIELDS),
        hashes.setnx,
        writes=True,
        result=HASH_ADDED,
        doc=Doc(
            "Set the fields a hash lacks (HSETNX)",
            "How many were set.",
            {"added": 1},
            "The check is local: a concurrent write of the field elsewhere may still win.",
        ),
        route=_route("POST", "hashes/{key}/setnx"),
        body=HASH_SET_BODY,
        client=(
            Method(
                "setnx",
                "Set the fields of the dict that the hash lacks; returns how many were set.",
                returns="added",
                cli=Verb("hsetnx", "set hash fields that are absent"),
            ),
        ),
    ),
    OpSpec(
        "hashes.getall",
        (KEY,),
        hashes.getall,
        writes=False,
        result=HASH_VIEW,
        doc=Doc(
            "Read a whole hash (HGETALL)",
            "Its fields.",
            {"fields": {"name": "ada", "visits": 3}, "size": 2},
            HASH_404,
        ),
        route=_route("GET", "hashes/{key}"),
        snapshot=True,
        client=(
            Method(
                "getall",
                "Field -> value; {} for an absent hash.",
                returns="fields",
                absent={},
                cli=Verb("hgetall", "read a hash (prints a JSON object)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.get",
        (KEY, FIELD),
        hashes.get,
        writes=False,
        result=HASH_VALUE,
        doc=Doc("Read a field of a hash (HGET)", "The value.", {"value": "ada"}, HASH_404),
        route=_route("GET", "hashes/{key}/fields/{field}"),
        client=(
            Method(
                "get",
                "The field's value; None when it or the hash is absent.",
                returns="value",
                absent=None,
                cli=Verb("hget", "read a hash field (prints JSON)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.mget",
        (KEY, HASH_NAMES),
        hashes.mget,
        writes=False,
        result=HASH_VALUES,
        doc=Doc("Read fields of a hash (HMGET)", "Their values.", {"values": ["ada", None]}),
        route=_route("POST", "hashes/{key}/mget"),
        body=HASH_NAMES_BODY,
        client=(
            Method(
                "mget",
                "The fields' values (None: absent); raises ``KeyNotFound`` for an absent hash.",
                returns="values",
                cli=Verb("hmget", "read hash fields (prints a JSON list)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.len",
        (KEY,),
        hashes.len_,
        writes=False,
        result=HASH_SIZE,
        doc=Doc("Count the fields of a hash (HLEN)", "The count.", {"size": 2}, HASH_404),
        route=_route("GET", "hashes/{key}/len"),
        client=(
            Method(
                "len",
                "The number of fields; 0 for an absent hash.",
                returns="size",
                absent=0,
                cli=Verb("hlen", "count a hash's fields"),
            ),
        ),
    ),
    OpSpec(
        "hashes.exists",
        (KEY, FIELD),
        hashes.exists,
        writes=False,
        result=HASH_PRESENT,
        doc=Doc("Does a hash have a field? (HEXISTS)", "Whether.", {"present": True}, HASH_404),
        route=_route("GET", "hashes/{key}/fields/{field}/exists"),
        client=(
            Method(
                "exists",
                "Whether the hash has the field; False for an absent hash.",
                returns="present",
                absent=False,
                cli=Verb("hexists", "whether a hash has a field (prints 1 or 0)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.keys",
        (KEY,),
        hashes.keys,
        writes=False,
        result=HASH_KEYS,
        doc=Doc("List a hash's fields (HKEYS)", "Fields.", {"fields": ["name"]}, HASH_404),
        route=_route("GET", "hashes/{key}/keys"),
        client=(
            Method(
                "keys",
                "Sorted fields; [] for an absent hash.",
                returns="fields",
                absent=[],
                cli=Verb("hkeys", "list a hash's fields, one per line"),
            ),
        ),
    ),
    OpSpec(
        "hashes.vals",
        (KEY,),
        hashes.vals,
        writes=False,
        result=HASH_VALUES,
        doc=Doc("List a hash's values (HVALS)", "Values, by field.", {"values": ["ada"]}, HASH_404),
        route=_route("GET", "hashes/{key}/vals"),
        client=(
            Method(
                "vals",
                "Values in field order; [] for an absent hash.",
                returns="values",
                absent=[],
                cli=Verb("hvals", "list a hash's values (prints a JSON list)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.strlen",
        (KEY, FIELD),
        hashes.strlen,
        writes=False,
        result=HASH_LENGTH,
        doc=Doc(
            "The length of a field's value (HSTRLEN)",
            "UTF-8 bytes of the value as text; 0 for an absent field.",
            {"length": 3},
            HASH_404,
        ),
        route=_route("GET", "hashes/{key}/fields/{field}/strlen"),
        client=(
            Method(
                "strlen",
                "Bytes of the field's value as text; 0 when absent.",
                returns="length",
                absent=0,
                cli=Verb("hstrlen", "bytes of a hash field's value"),
            ),
        ),
    ),
    OpSpec(
        "hashes.remove",
        (KEY, HASH_NAMES),
        hashes.remove,
        writes=True,
        result=HASH_REMOVED,
        doc=Doc(
            "Remove fields of a hash (HDEL)",
            "How many were present.",
            {"removed": 1},
            "Removing the last field deletes the hash.",
        ),
        route=_route("POST", "hashes/{key}/remove"),
        body=HASH_NAMES_BODY,
        client=(
            Method(
                "remove",
                "Remove fields (as this replica has seen them); returns how many were present.",
                returns="removed",
                cli=Verb("hdel", "remove hash fields (prints how many were present)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.removefield",
        (KEY, FIELD),
        hashes.removefield,
        writes=True,
        result=HASH_REMOVED,
        doc=Doc("Remove one field of a hash (HDEL)", "1 if it was present.", {"removed": 1}),
        route=_route("DELETE", "hashes/{key}/fields/{field}"),
        client=None,  # the clients' remove takes any number of fields
    ),
    OpSpec(
        "hashes.incr",
        (KEY, FIELD_IN_BODY, DELTA),
        hashes.incr,
        writes=True,
        retry_safe=False,
        result=HASH_INT,
        doc=Doc(
            "Add an integer to a hash field (HINCRBY)",
            "The value at this replica after the change.",
            {"value": 4},
            "An absent field counts as 0. A value that is not an integer, or a result outside "
            "64 bits, is refused (400) and changes nothing.",
        ),
        route=_route("POST", "hashes/{key}/incr"),
        body=Body("HashIncr", {"field": "visits", "delta": 1}),
        client=(
            Method(
                "incr",
                "Add ``by`` to the field; returns its value after the change.",
                returns="value",
                cli=Verb("hincrby", "add to a hash field (prints the new value)"),
            ),
        ),
    ),
    OpSpec(
        "hashes.incrfloat",
        (KEY, FIELD_IN_BODY, INCREMENT),
        hashes.incrfloat,
        writes=True,
        retry_safe=False,
        result=HASH_NUMBER,
        doc=Doc(
            "Add a number to a hash field (HINCRBYFLOAT)",
            "The value at this replica after the change.",
            {"value": 3.5},
            "An absent field counts as 0. A value that is not a number, or a result that is "
            "not finite, is refused (400) and changes nothing.",
        ),
        route=_route("POST", "hashes/{key}/incrfloat"),
        body=Body("HashIncrFloat", {"field": "score", "increment": 0.5}),
        client=(
            Method(
                "incrfloat",
                "Add the number ``by`` to the field; returns its value after the change.",
                returns="value",
            ),
        ),
    ),
    OpSpec(
        "hashes.scan",
        (KEY, CURSOR, SCAN_COUNT, MATCH),
        hashes.scan,
        writes=False,
        result=HASH_PAGE,
        doc=Doc(
            "Page through a hash's fields (HSCAN)",
            "One page.",
            {"fields": {"name": "ada"}, "cursor": "name"},
            "Fields in code-point order after `cursor`; `count` bounds the fields examined. "
            "A field present for the whole scan is returned exactly once. " + HASH_404,
        ),
        route=_route("POST", "hashes/{key}/scan"),
        body=Body("HashScan", {"cursor": "", "count": 100, "match": "user:*"}),
        client=(
            Method(
                "scan",
                'One page: (field -> value, next cursor); the cursor is "" when done.',
                returns=("fields", "cursor"),
            ),
        ),
    ),
    OpSpec(
        "hashes.delete",
        (KEY,),
        hashes.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a hash (every field this replica has seen)", DELETED, {"ok": True}),
        route=_route("DELETE", "hashes/{key}"),
        client=(Method("delete", "Delete the hash (every field this replica has seen).", cli=DEL),),
    ),
)

TABLE: tuple[OpSpec, ...] = (*REGISTERS, *COUNTERS, *SETS, *HLLS, *HASHES)
OPS: dict[str, OpSpec] = {spec.name: spec for spec in TABLE}
NAMESPACES: tuple[str, ...] = tuple(dict.fromkeys(spec.namespace for spec in TABLE))
"""The HTTP views (``/v1/<view>/...``), in table order."""
VIEW_TYPES: dict[str, str] = {
    "registers": "string",
    "counters": "string",
    "sets": "set",
    "hlls": "hll",
    "hashes": "hash",
}
"""The keyspace type (``crdtkv.replica.TYPES``) each view reads and writes."""


def snapshot_read(namespace: str) -> OpSpec:
    """The read that returns a whole value of ``namespace`` (what final reads compare)."""
    for spec in TABLE:
        if spec.snapshot and spec.namespace == namespace:
            return spec
    raise KeyError(f"no snapshot read for {namespace!r}")


def op_dict(name: str, key: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The op as ``apply_op`` and ``/v1/batch`` take it."""
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}")
    return {"op": name, "key": key, **fields}


def apply_op(replica: Replica, op: object, now_ms: int) -> Result:
    """Validate and apply one operation; raises a ``CrdtkvError`` subclass on refusal.

    Every argument is validated before anything changes, so a bad op raises
    ``BadRequest`` and changes nothing; a mutation records its delta group.
    """
    if not isinstance(op, dict):
        raise BadRequest("an op must be an object")
    name = op.get("op")
    spec = OPS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise BadRequest(f"unknown op {name!r}; known: {', '.join(sorted(OPS))}")
    return spec.apply(replica, spec.parse(op), now_ms)

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

import crdtkv.resp.args as resp_args
import crdtkv.resp.fast as resp_fast
from crdtkv import limits
from crdtkv.errors import BadRequest
from crdtkv.ops import counters, hlls, keys, registers, sets
from crdtkv.ops.hash_rows import COUNT, CURSOR, HASHES, INCREMENT, MATCH
from crdtkv.ops.list_rows import LISTS
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
    Resp,
    Result,
    Route,
    Shape,
    Verb,
)
from crdtkv.ops.vset_rows import VSETS
from crdtkv.ops.zset_rows import ZSETS
from crdtkv.replica.keyspace import TYPES, Replica
from crdtkv.resp.values import OK as RESP_OK
from crdtkv.resp.values import RSet, Status, human_double, json_bulk

__all__ = [
    "KEYS_NAMESPACE",
    "NAMESPACES",
    "OPS",
    "TABLE",
    "VIEW_TYPES",
    "apply_op",
    "op_dict",
    "op_spec",
    "snapshot_read",
]

# -- arguments --------------------------------------------------------------------------------
KEY = Arg("key", Kind.KEY, http=In.PATH)
VALUE = Arg("value", Kind.JSON)
TTL_MS = Arg(
    "ttl_ms",
    Kind.INT,
    required=False,
    lo=1,
    hi=limits.TTL_MS_MAX,
    doc="Time to live in milliseconds, counted from the write (at most ten years). Where it "
    "is optional, absent or null means the value does not expire.",
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
SET_PAGE = Shape(
    "SetPage",
    (
        Field("members", Out.SORTED_STRINGS, "This page's members that match, sorted."),
        Field("cursor", Out.STRING, 'The next page\'s cursor; "" when done.'),
    ),
)
HLL_CHANGED = Shape("HllChanged", (Field("changed", Out.BOOL, "Whether the sketch changed."),))
HLL_COUNT = Shape("HllCount", (Field("count", Out.COUNT, "Estimated distinct items."),))

# -- request bodies, shared by the routes taking the same fields ------------------------------
SET_MEMBERS = Body("SetMembers", {"members": ["a", "b"]})

DELETED = "Deleted (also when it did not exist)."
DEL = Verb(
    "del",
    "delete a key of any type (prints 1 if it existed); --type "
    "registers|counters|sets|hlls|zsets|hashes|lists deletes only a key of that type",
)


def _value(result: Result) -> Any:
    return result["value"]


def _ttl_seconds(result: Result) -> int:
    """TTL: PTTL's milliseconds rounded to the nearest second, as Redis rounds."""
    ms: int = result["ttl_ms"]
    return ms if ms < 0 else (ms + 500) // 1000


def _pf_keys(argv: list[bytes]) -> dict[str, Any]:
    """PFCOUNT key [key ...]: the first key, the others as ``sources``."""
    return {"key": resp_args.text(argv[0]), "sources": resp_args.texts(argv[1:]) or None}


def _pf_merge(argv: list[bytes]) -> dict[str, Any]:
    """PFMERGE dest [src ...]: with no source, the dest merges itself (a type check)."""
    key = resp_args.text(argv[0])
    return {"key": key, "sources": resp_args.texts(argv[1:]) or [key]}


# Redis's HyperLogLogs are strings; PF* on another string answers this.
HLL_WRONGTYPE = "WRONGTYPE Key is not a valid HyperLogLog string value."


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
        resp=(
            Resp(
                "GET",
                2,
                resp_args.key_only,
                lambda r: json_bulk(r["value"]),
                flags=("fast",),
                summary="Returns the string value of a key.",
                run=resp_fast.get,
            ),
        ),
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
        resp=(
            Resp(
                "INCR",
                2,
                resp_args.key_int("delta", 1),
                _value,
                flags=("fast",),
                summary="Increments the integer value of a key by one.",
            ),
            Resp(
                "INCRBY",
                3,
                resp_args.key_int("delta"),
                _value,
                flags=("fast",),
                summary="Increments the integer value of a key by a number.",
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
        resp=(
            Resp(
                "DECR",
                2,
                resp_args.key_int("delta", 1),
                _value,
                flags=("fast",),
                summary="Decrements the integer value of a key by one.",
            ),
            Resp(
                "DECRBY",
                3,
                resp_args.key_int("delta"),
                _value,
                flags=("fast",),
                summary="Decrements a number from the integer value of a key.",
            ),
        ),
    ),
    OpSpec(
        "counters.incrbyfloat",
        (KEY, INCREMENT),
        counters.incrbyfloat,
        writes=True,
        retry_safe=False,
        result=Shape("CounterFloat", (Field("value", Out.NUMBER),)),
        doc=Doc(
            "Add a float to a string key's number (INCRBYFLOAT; batch only)",
            "The value at this replica after the change.",
            {"value": 10.5},
        ),
        route=None,
        client=None,
        resp=(
            Resp(
                "INCRBYFLOAT",
                3,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "increment": resp_args.floating(argv[1]),
                },
                lambda r: human_double(float(r["value"])),  # a bulk string, as Redis
                flags=("fast",),
                summary="Increment the floating point value of a key by a number.",
            ),
        ),
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
        resp=(
            Resp(
                "SADD",
                -3,
                resp_args.key_members("members"),
                lambda r: r["added"],
                flags=("fast",),
                summary="Adds one or more members to a set. Creates the key if it doesn't exist.",
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
        resp=(
            Resp(
                "SREM",
                -3,
                resp_args.key_members("members"),
                lambda r: r["removed"],
                flags=("fast",),
                summary="Removes one or more members from a set. Deletes the set if the last "
                "member was removed.",
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
        resp=(
            Resp(
                "SMEMBERS",
                2,
                resp_args.key_only,
                lambda r: RSet(r["members"]),
                absent=RSet(),
                summary="Returns all members of a set.",
            ),
            Resp(
                "SCARD",
                2,
                resp_args.key_only,
                lambda r: r["size"],
                absent=0,
                flags=("fast",),
                summary="Returns the number of members in a set.",
                run=resp_fast.scard,
            ),
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
        resp=(
            Resp(
                "SISMEMBER",
                3,
                resp_args.key_member("member"),
                lambda r: int(r["present"]),
                absent=0,
                flags=("fast",),
                summary="Determines whether a member belongs to a set.",
            ),
        ),
    ),
    OpSpec(
        "sets.scan",
        (KEY, CURSOR, COUNT, MATCH),
        sets.scan,
        writes=False,
        result=SET_PAGE,
        doc=Doc(
            "Page through a set's members (SSCAN)",
            "One page.",
            {"members": ["a", "b"], "cursor": ">b"},
            "Members in code-point order after `cursor`; `count` bounds the members examined "
            "(default 10), so a page may hold fewer, even none, before the scan is done. A "
            "member present for the whole scan is returned exactly once. 404 when the set "
            "does not exist.",
        ),
        route=_route("POST", "sets/{key}/scan"),
        body=Body("SetScan", {"cursor": "", "count": 100, "match": "a*"}),
        client=(
            Method(
                "scan",
                'One page: (members, next cursor); the cursor is "" when done.',
                returns=("members", "cursor"),
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
        resp=(
            Resp(
                "PFADD",
                -2,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "items": resp_args.texts(argv[1:]),
                },
                lambda r: int(r["changed"]),
                flags=("fast",),
                summary="Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.",
                string_wrongtype=HLL_WRONGTYPE,
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
        resp=(
            Resp(
                "PFCOUNT",
                -2,
                _pf_keys,
                lambda r: r["count"],
                absent=0,
                keys=(1, -1, 1),
                summary="Returns the approximated cardinality of the set(s) observed by the "
                "HyperLogLog key(s).",
                string_wrongtype=HLL_WRONGTYPE,
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
        resp=(
            Resp(
                "PFMERGE",
                -2,
                _pf_merge,
                lambda r: RESP_OK,
                keys=(1, -1, 1),
                summary="Merges one or more HyperLogLog values into a single key.",
                string_wrongtype=HLL_WRONGTYPE,
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

# -- key-level operations: any type ----------------------------------------------------------
KEYS_NAMESPACE = "keys"
EXPIRE_TTL_MS = Arg(
    "ttl_ms",
    Kind.INT,
    lo=1,
    hi=limits.TTL_MS_MAX,
    doc=TTL_MS.doc,
    help="expire after this many milliseconds",
)
SCAN_CURSOR = Arg(
    "cursor",
    Kind.STRING,
    required=False,
    hi=keys.CURSOR_BYTES_MAX,
    http=In.QUERY,
    query="cursor",
    doc=keys.CURSOR_DOC,
    http_doc="The `cursor` of the previous page; absent or empty: from the start.",
    help="cursor from the last answer",
)
SCAN_MATCH = Arg(
    "match",
    Kind.STRING,
    required=False,
    hi=keys.MATCH_BYTES_MAX,
    http=In.QUERY,
    query="match",
    doc=keys.MATCH_DOC,
    http_doc="Only keys matching this glob (`*`, `?`, `[abc]`; case-sensitive).",
    help="only keys matching this glob",
)
SCAN_TYPE = Arg(
    "type",
    Kind.STRING,
    required=False,
    http=In.QUERY,
    query="type",
    choices=tuple(TYPES),
    doc="Only keys of this type.",
    http_doc="Only keys of this type.",
    help="only keys of this type",
)
SCAN_COUNT = Arg(
    "count",
    Kind.INT,
    required=False,
    lo=1,
    hi=keys.SCAN_COUNT_MAX,
    http=In.QUERY,
    query="count",
    doc=keys.COUNT_DOC,
    http_doc=f"How many names to examine, 1 to {keys.SCAN_COUNT_MAX} (default "
    f"{keys.SCAN_COUNT_DEFAULT}).",
    help=f"names to examine per page (default {keys.SCAN_COUNT_DEFAULT})",
)
KEY_DELETED = Shape("KeyDeleted", (Field("deleted", Out.BOOL, "Whether the key existed."),))
KEY_EXISTS = Shape("KeyExists", (Field("exists", Out.BOOL),))
_TYPE_DOC = "The key's type: " + ", ".join(TYPES) + "; `none` when absent."
KEY_TYPE = Shape("KeyType", (Field("type", Out.STRING, _TYPE_DOC),))
_TTL_DOC = "Remaining time to live in milliseconds; -1: no TTL; -2: absent (Redis's PTTL)."
KEY_TTL = Shape("KeyTtl", (Field("ttl_ms", Out.INT64, _TTL_DOC),))
KEY_INFO = Shape(
    "KeyInfo",
    (
        Field("type", Out.STRING, "The key's type: " + ", ".join(TYPES) + "."),
        Field("ttl_ms", Out.INT64, "Remaining time to live in milliseconds; -1: no TTL."),
    ),
)
TTL_CHANGED = Shape(
    "TtlChanged", (Field("changed", Out.BOOL, "False when the key is absent (or had no TTL)."),)
)
SCAN_PAGE = Shape(
    "ScanPage",
    (
        Field("keys", Out.SORTED_STRINGS, "The page's keys, in name order."),
        Field("cursor", Out.STRING, "Pass it to the next call; empty when the scan is done."),
    ),
)

KEYS: tuple[OpSpec, ...] = (
    OpSpec(
        "keys.delete",
        (KEY,),
        keys.delete,
        writes=True,
        result=KEY_DELETED,
        doc=Doc(
            "Delete a key of any type",
            "Whether the key existed.",
            {"deleted": True},
            "Removes what this replica has seen of the key and its TTL: a concurrent write "
            "elsewhere survives (an HLL is cleared whatever was added concurrently).",
        ),
        route=_route("DELETE", "keys/{key}"),
        client=(
            Method(
                "delete",
                "Delete the key, whatever its type; whether it existed.",
                returns="deleted",
                cli=DEL,
            ),
        ),
    ),
    OpSpec(
        "keys.get",
        (KEY,),
        keys.get,
        writes=False,
        result=KEY_INFO,
        doc=Doc("A key's type and TTL", "The key's type and TTL.", {"type": "hash", "ttl_ms": -1}),
        route=_route("GET", "keys/{key}"),
        client=(
            Method(
                "info",
                "The key's ``(type, ttl_ms)``; None for an absent key.",
                returns=("type", "ttl_ms"),
                absent=None,
            ),
        ),
    ),
    OpSpec(
        "keys.exists",
        (KEY,),
        keys.exists,
        writes=False,
        answers_absent=True,
        result=KEY_EXISTS,
        doc=Doc("Does a key exist?", "Whether it does (of any type).", {"exists": True}),
        route=_route("GET", "keys/{key}/exists"),
        client=(
            Method(
                "exists",
                "Whether the key exists (of any type).",
                returns="exists",
                cli=Verb("exists", "whether a key exists (prints 1 or 0)"),
            ),
        ),
    ),
    OpSpec(
        "keys.type",
        (KEY,),
        keys.type_,
        writes=False,
        answers_absent=True,
        result=KEY_TYPE,
        doc=Doc("A key's type", "Its type, or `none`.", {"type": "zset"}),
        route=_route("GET", "keys/{key}/type"),
        client=(
            Method(
                "type",
                "The key's type: " + ", ".join(TYPES) + ", or 'none'.",
                returns="type",
                cli=Verb("type", "a key's type (none when absent)"),
            ),
        ),
        resp=(
            Resp(
                "TYPE",
                2,
                resp_args.key_only,
                lambda r: Status(r["type"]),
                flags=("fast",),
                summary="Determines the type of value stored at a key.",
            ),
        ),
    ),
    OpSpec(
        "keys.ttl",
        (KEY,),
        keys.ttl,
        writes=False,
        answers_absent=True,
        result=KEY_TTL,
        doc=Doc(
            "A key's remaining time to live",
            "Milliseconds; -1: no TTL; -2: absent.",
            {"ttl_ms": 59_000},
        ),
        route=_route("GET", "keys/{key}/ttl"),
        client=(
            Method(
                "ttl",
                "Remaining milliseconds; -1 with no TTL, -2 for an absent key.",
                returns="ttl_ms",
                cli=Verb("ttl", "a key's remaining ms (-1 no TTL, -2 absent)"),
            ),
        ),
        resp=(
            Resp(
                "TTL",
                2,
                resp_args.key_only,
                _ttl_seconds,
                flags=("fast",),
                summary="Returns the expiration time in seconds of a key.",
            ),
            Resp(
                "PTTL",
                2,
                resp_args.key_only,
                lambda r: r["ttl_ms"],
                flags=("fast",),
                summary="Returns the expiration time in milliseconds of a key.",
            ),
        ),
    ),
    OpSpec(
        "keys.expire",
        (KEY, EXPIRE_TTL_MS),
        keys.expire,
        writes=True,
        result=TTL_CHANGED,
        doc=Doc(
            "Set a key's time to live (EXPIRE)",
            "Whether it was set: false for an absent key.",
            {"changed": True},
            "Concurrent EXPIREs on different replicas keep the longest TTL; a concurrent "
            "PERSIST beats them.",
        ),
        route=_route("PUT", "keys/{key}/ttl"),
        body=Body("KeyExpire", {"ttl_ms": 60000}),
        client=(
            Method(
                "expire",
                "Expire the key ``ttl_ms`` from now; False for an absent key.",
                returns="changed",
                cli=Verb("expire", "set a key's TTL in ms (prints 1, or 0 if absent)"),
            ),
        ),
    ),
    OpSpec(
        "keys.persist",
        (KEY,),
        keys.persist,
        writes=True,
        result=TTL_CHANGED,
        doc=Doc(
            "Remove a key's time to live (PERSIST)",
            "Whether a TTL was removed: false for an absent key or one without a TTL.",
            {"changed": True},
            "Beats an EXPIRE made concurrently on another replica.",
        ),
        route=_route("DELETE", "keys/{key}/ttl"),
        client=(
            Method(
                "persist",
                "Remove the key's TTL; False when absent or it had none.",
                returns="changed",
                cli=Verb("persist", "remove a key's TTL (prints 1, or 0)"),
            ),
        ),
        resp=(
            Resp(
                "PERSIST",
                2,
                resp_args.key_only,
                lambda r: int(r["changed"]),
                flags=("fast",),
                summary="Removes the expiration time of a key.",
            ),
        ),
    ),
    OpSpec(
        "keys.scan",
        (SCAN_CURSOR, SCAN_MATCH, SCAN_TYPE, SCAN_COUNT),
        keys.scan,
        writes=False,
        answers_absent=True,
        result=SCAN_PAGE,
        doc=Doc(
            "List keys, a page at a time (SCAN)",
            "A page of keys and the cursor of the next one.",
            {"keys": ["user:1", "user:2"], "cursor": "user:2"},
            "Pages go in name order. A key present for the whole scan is returned exactly "
            "once; one created or deleted during it may or may not be.",
        ),
        route=_route("GET", "keys"),
        client=(
            Method(
                "scan",
                "One page: ``(cursor, keys)``; the cursor is '' when done "
                "(``scan_iter`` follows it).",
                returns=("cursor", "keys"),
                cli=Verb(
                    "scan",
                    "one page of keys: the next cursor (empty when done), "
                    "then the keys, one per line",
                ),
            ),
        ),
    ),
)

TABLE: tuple[OpSpec, ...] = (
    *REGISTERS,
    *COUNTERS,
    *SETS,
    *HLLS,
    *KEYS,
    *ZSETS,  # the sorted set's rows: crdtkv.ops.zset_rows
    *HASHES,  # the hash's rows: crdtkv.ops.hash_rows
    *LISTS,  # the list's rows: crdtkv.ops.list_rows
    *VSETS,  # the vector set's rows: crdtkv.ops.vset_rows
)
OPS: dict[str, OpSpec] = {spec.name: spec for spec in TABLE}
NAMESPACES: tuple[str, ...] = tuple(dict.fromkeys(spec.namespace for spec in TABLE))
"""The HTTP namespaces (``/v1/<namespace>/...``), in table order: the typed views, and
``keys`` (key-level operations on any type)."""
VIEW_TYPES: dict[str, str] = {
    "registers": "string",
    "counters": "string",
    "sets": "set",
    "hlls": "hll",
    "zsets": "zset",
    "hashes": "hash",
    "lists": "list",
    "vsets": "vectorset",
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
    spec = op_spec(op)
    return spec.apply(replica, spec.parse(op), now_ms)  # type: ignore[arg-type]


def op_spec(op: object) -> OpSpec:
    """The spec of the op dict ``op`` (BadRequest if it is not one, or names no op)."""
    if not isinstance(op, dict):
        raise BadRequest("an op must be an object")
    name = op.get("op")
    spec = OPS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise BadRequest(f"unknown op {name!r}; known: {', '.join(sorted(OPS))}")
    return spec

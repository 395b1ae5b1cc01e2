"""The hash's rows of the op table (``crdtkv.ops.table`` appends ``HASHES``).

Kept apart from ``table.py`` only for size.  Arguments shared with other
rows (``key``, ``cursor``, ``count``, ``match``) are declared as there: an
argument name means one thing across the table (``tests/ops/test_table.py``
checks it).
"""

from __future__ import annotations

import crdtkv.resp.args as resp_args
import crdtkv.resp.hash_zset_args as HZ
from crdtkv import limits
from crdtkv.ops import hashes, keys
from crdtkv.ops.spec import (
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
    Route,
    Shape,
    Verb,
)
from crdtkv.resp.values import OK as OK_REPLY
from crdtkv.resp.values import RMap

__all__ = ["HASHES"]

KEY = Arg("key", Kind.KEY, http=In.PATH)
OK = Shape("Ok", (Field("ok", Out.OK),))
DELETED = "Deleted (also when it did not exist)."
DEL = Verb(
    "del",
    "delete a key of any type (prints 1 if it existed); --type "
    "registers|counters|sets|hlls|zsets|hashes|lists deletes only a key of that type",
)


def _route(method: str, path: str) -> Route:
    return Route(method, "/v1/" + path)


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
INCREMENT = Arg("increment", Kind.FLOAT, doc="A finite number (negative decrements).")
DELTA = Arg(
    "delta",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    param="by",
    default=1,
    help="amount (default 1; negative ok)",
)
CURSOR = Arg(
    "cursor",
    Kind.STRING,
    required=False,
    hi=keys.CURSOR_BYTES_MAX,
    doc=keys.CURSOR_DOC,
    help="cursor from the last answer",
)
COUNT = Arg(
    "count",
    Kind.INT,
    required=False,
    lo=1,
    hi=keys.SCAN_COUNT_MAX,
    doc=keys.COUNT_DOC,
    help="how many",
)
MATCH = Arg(
    "match",
    Kind.STRING,
    required=False,
    hi=keys.MATCH_BYTES_MAX,
    doc=keys.MATCH_DOC,
    help="only fields matching this glob",
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
        resp=(
            Resp(
                "HSET",
                -4,
                lambda argv: HZ.hash_pairs("hset", argv),
                lambda r: r["added"],
                flags=("fast",),
                summary="Creates or modifies the value of a field in a hash.",
            ),
            Resp(
                "HMSET",
                -4,
                lambda argv: HZ.hash_pairs("hmset", argv),
                lambda r: OK_REPLY,
                flags=("fast",),
                summary="Sets the values of multiple fields.",
            ),
        ),
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
        resp=(
            Resp(
                "HSETNX",
                4,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "fields": {resp_args.text(argv[1]): resp_args.text(argv[2])},
                },
                lambda r: r["added"],
                flags=("fast",),
                summary="Sets the value of a field in a hash only when the field doesn't exist.",
            ),
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
        resp=(
            Resp(
                "HGETALL",
                2,
                resp_args.key_only,
                lambda r: RMap((f, HZ.hash_text(v)) for f, v in r["fields"].items()),
                absent=RMap(),
                summary="Returns all fields and values in a hash.",
            ),
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
        resp=(
            Resp(
                "HGET",
                3,
                resp_args.key_member("field"),
                lambda r: None if r["value"] is None else HZ.hash_text(r["value"]),
                flags=("fast",),
                summary="Returns the value of a field in a hash.",
            ),
            Resp(
                "HSTRLEN",
                3,
                resp_args.key_member("field"),
                lambda r: 0 if r["value"] is None else len(HZ.hash_text(r["value"]).encode()),
                absent=0,
                flags=("fast",),
                summary="Returns the length of the value of a field.",
            ),
        ),
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
        resp=(
            Resp(
                "HLEN",
                2,
                resp_args.key_only,
                lambda r: r["size"],
                absent=0,
                flags=("fast",),
                summary="Returns the number of fields in a hash.",
            ),
        ),
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
        resp=(
            Resp(
                "HEXISTS",
                3,
                resp_args.key_member("field"),
                lambda r: int(r["present"]),
                absent=0,
                flags=("fast",),
                summary="Determines whether a field exists in a hash.",
            ),
        ),
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
        resp=(
            Resp(
                "HKEYS",
                2,
                resp_args.key_only,
                lambda r: r["fields"],
                absent=[],
                summary="Returns all fields in a hash.",
            ),
        ),
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
        resp=(
            Resp(
                "HVALS",
                2,
                resp_args.key_only,
                lambda r: [HZ.hash_text(v) for v in r["values"]],
                absent=[],
                summary="Returns all values in a hash.",
            ),
        ),
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
        resp=(
            Resp(
                "HDEL",
                -3,
                resp_args.key_members("names"),
                lambda r: r["removed"],
                flags=("fast",),
                summary="Deletes one or more fields and their values from a hash. "
                "Deletes the hash if no fields remain.",
            ),
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
        resp=(
            Resp(
                "HINCRBY",
                4,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "field": resp_args.text(argv[1]),
                    "delta": resp_args.integer(argv[2]),
                },
                lambda r: int(r["value"]),
                flags=("fast",),
                summary="Increments the integer value of a field in a hash by a number. "
                "Uses 0 as initial value if the field doesn't exist.",
            ),
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
        resp=(
            Resp(
                "HINCRBYFLOAT",
                4,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "field": resp_args.text(argv[1]),
                    "increment": HZ.hash_increment(argv[2]),
                },
                lambda r: HZ.hash_text(float(r["value"])),
                flags=("fast",),
                summary="Increments the floating point value of a field by a number. "
                "Uses 0 as initial value if the field doesn't exist.",
            ),
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
        (KEY, CURSOR, COUNT, MATCH),
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

"""The list's rows of the op table (``crdtkv.ops.table`` appends ``LISTS``).

Kept apart from ``table.py`` only for size.  Arguments shared with other
rows (``key``, ``start``, ``stop``, ``count``) are the same ``Arg`` as there:
an argument name means one thing across the table.  Reads that take more
than the key travel as POST with a JSON body, as the sorted set's do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import crdtkv.resp.args as resp_args
from crdtkv import limits
from crdtkv.ops import lists
from crdtkv.ops.hash_rows import DEL
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
from crdtkv.ops.zset_rows import START, STOP
from crdtkv.resp.values import OK as RESP_OK
from crdtkv.resp.values import syntax_error

__all__ = ["LISTS"]

# -- arguments --------------------------------------------------------------------------------
KEY = Arg("key", Kind.KEY, http=In.PATH)
VALUES = Arg(
    "values",
    Kind.STRINGS,
    hi=limits.MEMBERS_PER_OP_MAX,
    doc="Elements, pushed one after the other (at least one).",
)
ELEMENT = Arg("element", Kind.STRING, hi=limits.MEMBER_BYTES_MAX, doc="An element.")
EXISTS = Arg(
    "exists",
    Kind.BOOL,
    required=False,
    doc="Push only if the list exists (Redis LPUSHX and RPUSHX).",
    help="only if the list exists",
)
POP_COUNT = Arg(
    "pop_count",
    Kind.INT,
    required=False,
    lo=0,
    hi=limits.RANGE_MAX,
    doc="How many to pop (default 1).",
    param="count",
    help="how many",
)
INDEX = Arg(
    "index",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    doc="An index: 0 is the head, -1 the tail.",
)
WHERE = Arg("where", Kind.STRING, choices=("before", "after"), doc="Before or after the pivot.")
PIVOT = Arg("pivot", Kind.STRING, hi=limits.MEMBER_BYTES_MAX, doc="The element to insert next to.")
REM_COUNT = Arg(
    "rem_count",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    doc="How many to remove: > 0 the first ones from the head, < 0 from the tail, 0 all.",
    param="count",
)
RANK = Arg(
    "rank",
    Kind.INT,
    required=False,
    lo=-limits.INT64_MAX,
    hi=limits.INT64_MAX,
    doc="Start from the rank-th match (1: the first; negative: from the tail); not 0.",
    help="the rank-th match first",
)
MATCHES = Arg(
    "matches",
    Kind.INT,
    required=False,
    lo=0,
    hi=limits.RANGE_MAX,
    doc="How many matches to return (0: all); absent: the first only.",
    help="how many matches (0: all)",
)
MAXLEN = Arg(
    "maxlen",
    Kind.INT,
    required=False,
    lo=0,
    hi=limits.INT64_MAX,
    doc="Compare at most this many elements (0: all).",
    help="compare at most this many",
)
DESTINATION = Arg(
    "destination", Kind.STRING, hi=limits.KEY_BYTES_MAX, doc="The destination list's key."
)
_END = ("left", "right")
FROM = Arg(
    "from_end",
    Kind.STRING,
    choices=_END,
    default="right",
    doc="The source's end: left (head) or right.",
    help="the source's end: left or right",
)
TO = Arg(
    "to_end",
    Kind.STRING,
    choices=_END,
    default="left",
    doc="The destination's end: left (head) or right.",
    help="the destination's end: left or right",
)

# -- result bodies ----------------------------------------------------------------------------
OK = Shape("Ok", (Field("ok", Out.OK),))
LENGTH = Shape("ListLength", (Field("length", Out.COUNT, "The list's length after the push."),))
INSERTED = Shape(
    "ListInserted",
    (Field("length", Out.INT64, "The new length; -1: no such pivot; 0: no such list."),),
)
ELEMENTS = Shape("ListElements", (Field("values", Out.STRINGS, "Elements, head first."),))
POPPED = Shape("ListPopped", (Field("values", Out.STRINGS, "Popped elements, in pop order."),))
VIEW = Shape(
    "ListView", (Field("values", Out.STRINGS, "Elements, head first."), Field("length", Out.COUNT))
)
SIZE = Shape("ListSize", (Field("length", Out.COUNT),))
ELEMENT_OUT = Shape("ListElement", (Field("value", Out.OPT_STRING, "Null: out of range."),))
MOVED = Shape("ListMoved", (Field("value", Out.OPT_STRING, "Null: the source was empty."),))
REMOVED = Shape("ListRemoved", (Field("removed", Out.COUNT, "Elements removed."),))
POSITIONS = Shape("ListPositions", (Field("positions", Out.INDEXES, "Indexes of matches."),))

# -- request bodies ---------------------------------------------------------------------------
PUSH = Body("ListPush", {"values": ["a", "b"]})
POP = Body("ListPop", {"pop_count": 1})
RANGE = Body("ListRange", {"start": 0, "stop": -1})


# -- the Redis commands' arguments (crdtkv.resp) ----------------------------------------------
# Each reads a command's arguments after its name in Redis 7.0's order, with its error
# texts; the composite list commands (LPOP with a count, LINDEX, LSET, LPOS) are in
# crdtkv.resp.lists.
def _resp_push(exists: bool) -> Callable[[list[bytes]], dict[str, Any]]:
    def parse(argv: list[bytes]) -> dict[str, Any]:
        return {
            "key": resp_args.text(argv[0]),
            "values": resp_args.texts(argv[1:]),
            "exists": exists,
        }

    return parse


def _resp_range(argv: list[bytes]) -> dict[str, Any]:
    """LRANGE / LTRIM key start stop: the integers first, as Redis."""
    start, stop = resp_args.integer(argv[1]), resp_args.integer(argv[2])
    return {"key": resp_args.text(argv[0]), "start": start, "stop": stop}


def _resp_insert(argv: list[bytes]) -> dict[str, Any]:
    """LINSERT key BEFORE|AFTER pivot element."""
    where = resp_args.upper(argv[1])
    if where not in ("BEFORE", "AFTER"):
        raise syntax_error()
    return {
        "key": resp_args.text(argv[0]),
        "where": where.lower(),
        "pivot": resp_args.text(argv[2]),
        "element": resp_args.text(argv[3]),
    }


def _resp_rem(argv: list[bytes]) -> dict[str, Any]:
    """LREM key count element."""
    count = resp_args.integer(argv[1])
    return {"key": resp_args.text(argv[0]), "rem_count": count, "element": resp_args.text(argv[2])}


def _resp_end(b: bytes) -> str:
    end = resp_args.upper(b)
    if end not in ("LEFT", "RIGHT"):
        raise syntax_error()
    return end.lower()


def _resp_move(argv: list[bytes]) -> dict[str, Any]:
    """LMOVE source destination LEFT|RIGHT LEFT|RIGHT."""
    from_end, to_end = _resp_end(argv[2]), _resp_end(argv[3])
    return {
        "key": resp_args.text(argv[0]),
        "destination": resp_args.text(argv[1]),
        "from_end": from_end,
        "to_end": to_end,
    }


def _resp_rpoplpush(argv: list[bytes]) -> dict[str, Any]:
    return {
        "key": resp_args.text(argv[0]),
        "destination": resp_args.text(argv[1]),
        "from_end": "right",
        "to_end": "left",
    }


DELETED = "Deleted (also when it did not exist)."
_AT_LEAST_ONCE = (
    "At least once: two replicas may pop the same element concurrently; after they sync "
    "it is gone once."
)


def _route(method: str, path: str) -> Route:
    return Route(method, "/v1/lists/" + path)


def _push_row(end: str) -> OpSpec:
    left = end == "left"
    cmd = "lpush" if left else "rpush"
    where = "head" if left else "tail"
    verb = "Prepends" if left else "Appends"
    return OpSpec(
        f"lists.{cmd}",
        (KEY, VALUES, EXISTS),
        lists.lpush if left else lists.rpush,
        writes=True,
        retry_safe=False,
        result=LENGTH,
        doc=Doc(
            f"Push elements at the {where} (Redis {cmd.upper()}, {cmd.upper()}X with exists)",
            "The new length (0 when exists was set and the list is absent).",
            {"length": 2},
            f"Each value in turn at the {where}"
            + (", so the last value given ends first. " if left else ". ")
            + "Concurrent pushes at one end by two replicas are both kept, each replica's "
            "elements together, in one order everywhere.",
        ),
        route=_route("POST", "{key}/" + cmd),
        body=PUSH,
        resp=(
            Resp(
                cmd.upper(),
                -3,
                _resp_push(False),
                lambda r: r["length"],
                flags=("fast",),
                summary=f"{verb} one or more elements to a list. "
                "Creates the key if it doesn't exist.",
            ),
            Resp(
                cmd.upper() + "X",
                -3,
                _resp_push(True),
                lambda r: r["length"],
                flags=("fast",),
                summary=f"{verb} one or more elements to a list only when the list exists.",
            ),
        ),
        client=(
            Method(
                cmd,
                f"Push ``values`` at the {where}; returns the new length.",
                returns="length",
                cli=Verb(cmd, f"push elements at the {where} of a list (prints the length)"),
            ),
        ),
    )


def _pop_row(end: str) -> OpSpec:
    left = end == "left"
    cmd = "lpop" if left else "rpop"
    where = "head" if left else "tail"
    return OpSpec(
        f"lists.{cmd}",
        (KEY, POP_COUNT),
        lists.lpop if left else lists.rpop,
        writes=True,
        retry_safe=False,
        result=POPPED,
        doc=Doc(
            f"Remove and return elements from the {where} (Redis {cmd.upper()})",
            "The popped elements; [] when the list is absent.",
            {"values": ["a"]},
            _AT_LEAST_ONCE,
        ),
        route=_route("POST", "{key}/" + cmd),
        body=POP,
        client=(
            Method(
                cmd,
                f"Remove and return up to ``count`` (default 1) elements from the {where}.",
                returns="values",
                cli=Verb(cmd, f"pop elements from the {where} of a list (one per line)"),
            ),
        ),
    )


LISTS: tuple[OpSpec, ...] = (
    _push_row("left"),
    _push_row("right"),
    _pop_row("left"),
    _pop_row("right"),
    OpSpec(
        "lists.get",
        (KEY,),
        lists.get,
        writes=False,
        result=VIEW,
        snapshot=True,
        doc=Doc(
            "Read a whole list",
            "Its elements, head first.",
            {"values": ["a", "b"], "length": 2},
            f"A list of more than {limits.RANGE_MAX} elements is refused: read it by range.",
        ),
        route=_route("GET", "{key}"),
        client=(
            Method(
                "values",
                "Every element, head first; [] for an absent list.",
                returns="values",
                absent=[],
            ),
        ),
    ),
    OpSpec(
        "lists.range",
        (KEY, START, STOP),
        lists.range_,
        writes=False,
        result=ELEMENTS,
        doc=Doc(
            "Read a range of a list (Redis LRANGE)",
            "The elements from start to stop, both included.",
            {"values": ["a", "b"]},
            "Indexes from 0; negative ones count from the tail; out-of-range ones clamp. "
            f"O(log n + k). An answer of more than {limits.RANGE_MAX} elements is refused.",
        ),
        route=_route("POST", "{key}/range"),
        resp=(
            Resp(
                "LRANGE",
                4,
                _resp_range,
                lambda r: r["values"],
                absent=[],
                summary="Returns a range of elements from a list.",
            ),
        ),
        body=RANGE,
        client=(
            Method(
                "range",
                "The elements from ``start`` to ``stop`` (both included); [] when absent.",
                returns="values",
                absent=[],
                cli=Verb("lrange", "print a range of a list, one element per line"),
            ),
        ),
    ),
    OpSpec(
        "lists.length",
        (KEY,),
        lists.length,
        writes=False,
        result=SIZE,
        doc=Doc("A list's length (Redis LLEN)", "Its length.", {"length": 2}),
        route=_route("GET", "{key}/length"),
        resp=(
            Resp(
                "LLEN",
                2,
                resp_args.key_only,
                lambda r: r["length"],
                absent=0,
                flags=("fast",),
                summary="Returns the length of a list.",
            ),
        ),
        client=(
            Method(
                "length",
                "The number of elements; 0 for an absent list.",
                returns="length",
                absent=0,
                cli=Verb("llen", "print a list's length"),
            ),
        ),
    ),
    OpSpec(
        "lists.index",
        (KEY, INDEX),
        lists.index,
        writes=False,
        result=ELEMENT_OUT,
        doc=Doc(
            "The element at an index (Redis LINDEX)",
            "The element, or null out of range.",
            {"value": "a"},
            "O(log n).",
        ),
        route=_route("POST", "{key}/index"),
        body=Body("ListIndex", {"index": -1}),
        client=(
            Method(
                "index",
                "The element at ``index`` (negative: from the tail); None out of range or "
                "for an absent list.",
                returns="value",
                absent=None,
                cli=Verb("lindex", "print the element at an index"),
            ),
        ),
    ),
    OpSpec(
        "lists.set",
        (KEY, INDEX, ELEMENT),
        lists.set_,
        writes=True,
        needs_key=True,
        result=OK,
        doc=Doc(
            "Overwrite the element at an index (Redis LSET)",
            "Written.",
            {"ok": True},
            "Last writer wins on the element; an element removed concurrently stays "
            "removed. 404 for an absent list, 400 for an index out of range.",
        ),
        route=_route("POST", "{key}/set"),
        body=Body("ListSet", {"index": 0, "element": "a"}),
        client=(
            Method(
                "set",
                "Overwrite the element at ``index``.",
                cli=Verb("lset", "overwrite the element at an index"),
            ),
        ),
    ),
    OpSpec(
        "lists.insert",
        (KEY, WHERE, PIVOT, ELEMENT),
        lists.insert,
        writes=True,
        retry_safe=False,
        result=INSERTED,
        doc=Doc(
            "Insert an element before or after another (Redis LINSERT)",
            "The new length; -1 when no element equals the pivot; 0 when the list is absent.",
            {"length": 3},
            "Next to the first element (from the head) equal to the pivot; O(n) to find it.",
        ),
        route=_route("POST", "{key}/insert"),
        resp=(
            Resp(
                "LINSERT",
                5,
                _resp_insert,
                lambda r: r["length"],
                summary="Inserts an element before or after another element in a list.",
            ),
        ),
        body=Body("ListInsert", {"where": "before", "pivot": "b", "element": "a"}),
        client=(
            Method(
                "insert",
                "Insert ``element`` before or after the first ``pivot``; the new length "
                "(-1: no pivot; 0: no list).",
                returns="length",
                cli=Verb("linsert", "insert an element before or after a pivot"),
            ),
        ),
    ),
    OpSpec(
        "lists.remove",
        (KEY, REM_COUNT, ELEMENT),
        lists.remove,
        writes=True,
        retry_safe=False,
        result=REMOVED,
        doc=Doc(
            "Remove elements equal to a value (Redis LREM)",
            "How many were removed.",
            {"removed": 1},
            "count > 0: the first count from the head; < 0: from the tail; 0: all. O(n).",
        ),
        route=_route("POST", "{key}/remove"),
        resp=(
            Resp(
                "LREM",
                4,
                _resp_rem,
                lambda r: r["removed"],
                summary="Removes elements from a list. Deletes the list if the last element "
                "was removed.",
            ),
        ),
        body=Body("ListRemove", {"rem_count": 0, "element": "a"}),
        client=(
            Method(
                "remove",
                "Remove ``count`` elements equal to ``element`` (0: all; negative: from the "
                "tail); how many were removed.",
                returns="removed",
                cli=Verb("lrem", "remove elements equal to a value (prints how many)"),
            ),
        ),
    ),
    OpSpec(
        "lists.trim",
        (KEY, START, STOP),
        lists.trim,
        writes=True,
        retry_safe=False,  # LTRIM 1 -1 sent twice drops two elements
        result=OK,
        doc=Doc(
            "Keep only a range of a list (Redis LTRIM)",
            "Trimmed.",
            {"ok": True},
            "The elements outside start..stop (as LRANGE) are removed; an element pushed "
            "concurrently on another replica survives.",
        ),
        route=_route("POST", "{key}/trim"),
        resp=(
            Resp(
                "LTRIM",
                4,
                _resp_range,
                lambda r: RESP_OK,
                summary="Removes elements from both ends a list. Deletes the list if all "
                "elements were trimmed.",
            ),
        ),
        body=RANGE,
        client=(
            Method(
                "trim",
                "Keep only the elements from ``start`` to ``stop``.",
                cli=Verb("ltrim", "keep only a range of a list"),
            ),
        ),
    ),
    OpSpec(
        "lists.pos",
        (KEY, ELEMENT, RANK, MATCHES, MAXLEN),
        lists.pos,
        writes=False,
        result=POSITIONS,
        doc=Doc(
            "Find the indexes of an element (Redis LPOS)",
            "The indexes of the matches, in search order.",
            {"positions": [2]},
            "rank, matches and maxlen are Redis's RANK, COUNT and MAXLEN. O(n).",
        ),
        route=_route("POST", "{key}/pos"),
        body=Body("ListPos", {"element": "a", "rank": 1, "matches": 0}),
        client=(
            Method(
                "pos",
                "The indexes of elements equal to ``element`` ([] for an absent list).",
                returns="positions",
                absent=[],
                cli=Verb("lpos", "print the indexes of an element"),
            ),
        ),
    ),
    OpSpec(
        "lists.move",
        (KEY, DESTINATION, FROM, TO),
        lists.move,
        writes=True,
        retry_safe=False,
        result=MOVED,
        doc=Doc(
            "Pop an element from one list and push it onto another (Redis LMOVE)",
            "The element moved; null when the source is absent.",
            {"value": "a"},
            "One delta group: atomic on this replica and on the wire, but not across "
            "replicas: another replica may pop the same element concurrently (at least "
            "once). RPOPLPUSH is from right to left.",
        ),
        route=_route("POST", "{key}/move"),
        resp=(
            Resp(
                "LMOVE",
                5,
                _resp_move,
                lambda r: r["value"],
                keys=(1, 2, 1),
                summary="Returns an element after popping it from one list and pushing it "
                "to another. Deletes the list if the last element was moved.",
            ),
            Resp(
                "RPOPLPUSH",
                3,
                _resp_rpoplpush,
                lambda r: r["value"],
                keys=(1, 2, 1),
                summary="Returns the last element of a list after removing and pushing it "
                "to another list. Deletes the list if the last element was popped.",
            ),
        ),
        body=Body("ListMove", {"destination": "other", "from_end": "right", "to_end": "left"}),
        client=(
            Method(
                "move",
                "Pop from ``key``'s ``from_end`` and push onto ``destination``'s ``to_end`` "
                "(by default right to left: RPOPLPUSH); the element, or None.",
                returns="value",
                cli=Verb("lmove", "move an element from one list to another (prints it)"),
            ),
        ),
    ),
    OpSpec(
        "lists.delete",
        (KEY,),
        lists.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a list", DELETED, {"ok": True}),
        route=_route("DELETE", "{key}"),
        client=(Method("delete", "Delete the list (a concurrent push survives).", cli=DEL),),
    ),
)

"""The sorted set's rows of the op table (``crdtkv.ops.table`` appends ``ZSETS``).

Kept apart from ``table.py`` only for size.  Arguments shared with other
rows (``key``, ``member``, ``members``) are declared as there: an argument
name means one thing across the table (``tests/ops/test_table.py`` checks it).
Reads that take more than the key and a member travel as POST with a JSON
body (single-key routes carry scalars in bodies; query parameters are lists).
"""

from __future__ import annotations

import crdtkv.resp.args as resp_args
import crdtkv.resp.hash_zset_args as HZ
from crdtkv import limits
from crdtkv.ops import keys, zsets
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

__all__ = ["ZSETS"]

# -- arguments --------------------------------------------------------------------------------
KEY = Arg("key", Kind.KEY, http=In.PATH)
MEMBER = Arg(
    "member", Kind.STRING, http=In.PATH, http_doc="The member to look for, percent-encoded."
)
MEMBERS = Arg("members", Kind.STRINGS, hi=limits.MEMBERS_PER_OP_MAX, doc="Set members")
SCORES = Arg(
    "scores",
    Kind.SCORES,
    hi=limits.MEMBERS_PER_OP_MAX,
    doc='Member -> score: a number, or a string as Redis writes one ("1.5", "-inf", '
    '"+inf"); not NaN.',
)


def _flag(name: str, doc: str, help: str) -> Arg:
    return Arg(name, Kind.BOOL, required=False, doc=doc, help=help)


NX = _flag("nx", "Only add new members (Redis NX).", "only add new members")
XX = _flag("xx", "Only update existing members (Redis XX).", "only update existing members")
GT = _flag("gt", "Only update a score to a greater one (Redis GT).", "only raise scores")
LT = _flag("lt", "Only update a score to a lower one (Redis LT).", "only lower scores")
CH = _flag("ch", "Count changed members too, not only new ones (Redis CH).", "count changed too")
INCR = _flag(
    "incr", "Increment the one member's score instead (Redis INCR).", "increment (one member)"
)
REV = _flag("rev", "Highest score first (Redis REV).", "highest first")
WITHSCORES = _flag("withscores", "Return [member, score] pairs.", "print scores too")
MEMBER_BODY = Arg("member", Kind.STRING, http=In.BODY)
INCREMENT = Arg("increment", Kind.FLOAT, doc="A finite number (negative decrements).")
START = Arg(
    "start",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    doc="First rank (0 is the first; negative counts from the end).",
)
STOP = Arg(
    "stop",
    Kind.INT,
    lo=limits.INT64_MIN,
    hi=limits.INT64_MAX,
    doc="Last rank, included (negative counts from the end).",
)
_SCORE_BOUND_DOC = (
    'A score bound, included: a number or its text ("1.5", "-inf", "+inf"); "(1.5" excludes it.'
)
MIN = Arg("min", Kind.SCORE_BOUND, doc=_SCORE_BOUND_DOC + " The low end.")
MAX = Arg("max", Kind.SCORE_BOUND, doc=_SCORE_BOUND_DOC + " The high end.")
_LEX_BOUND_DOC = '"[a" includes a, "(a" excludes it, "-" and "+" are the lowest and highest.'
LEX_MIN = Arg("lex_min", Kind.LEX_BOUND, doc="The low member bound: " + _LEX_BOUND_DOC)
LEX_MAX = Arg("lex_max", Kind.LEX_BOUND, doc="The high member bound: " + _LEX_BOUND_DOC)
OFFSET = Arg(
    "offset",
    Kind.INT,
    required=False,
    lo=0,
    hi=limits.INT64_MAX,
    doc="Members to skip, in the result's order (Redis LIMIT offset).",
    help="members to skip",
)
LIMIT = Arg(
    "limit",
    Kind.INT,
    required=False,
    lo=limits.INT64_MIN,
    hi=limits.RANGE_MAX,
    doc=f"At most this many members (Redis LIMIT count); absent or negative: all, as in "
    f"Redis, and an answer of more than {limits.RANGE_MAX} is refused.",
    help="at most this many",
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
CURSOR = Arg(
    "cursor",
    Kind.STRING,
    required=False,
    hi=keys.CURSOR_BYTES_MAX,
    doc=keys.CURSOR_DOC,
    help="cursor from the last answer",
)

# -- result bodies ----------------------------------------------------------------------------
OK = Shape("Ok", (Field("ok", Out.OK),))
_ITEMS_DOC = 'Members, or [member, score] pairs, in order; a score is a number, "inf" or "-inf".'
ITEMS = Field("items", Out.ZITEMS, _ITEMS_DOC)
ZSET_ADDED = Shape(
    "ZsetAdded",
    (
        Field("added", Out.COUNT, "New members (with ch: new or with a changed score)."),
        Field("score", Out.SCORE, "With incr: the new score; null when not applied, or no incr."),
    ),
)
ZSET_SCORE = Shape("ZsetScore", (Field("score", Out.SCORE, "The new score."),))
ZSET_REMOVED = Shape("ZsetRemoved", (Field("removed", Out.COUNT, "Members that were present."),))
ZSET_ITEMS = Shape("ZsetItems", (ITEMS,))
ZSET_VIEW = Shape("ZsetView", (ITEMS, Field("size", Out.COUNT)))
ZSET_SIZE = Shape("ZsetSize", (Field("size", Out.COUNT),))
ZSET_MEMBER = Shape(
    "ZsetMember",
    (
        Field("score", Out.SCORE, "Its score; null when absent."),
        Field("rank", Out.RANK, "Its rank from the lowest score (0 first); null when absent."),
        Field("rev_rank", Out.RANK, "Its rank from the highest score; null when absent."),
    ),
)
ZSET_SCORES = Shape("ZsetScores", (Field("scores", Out.SCORES, "One per member; null: absent."),))
ZSET_COUNT = Shape("ZsetCount", (Field("count", Out.COUNT, "Members in the range."),))
ZSET_PAGE = Shape(
    "ZsetPage",
    (Field("cursor", Out.STRING, "The next cursor; empty when the scan is done."), ITEMS),
)

# -- request bodies ---------------------------------------------------------------------------
MEMBERS_BODY = Body("SetMembers", {"members": ["a", "b"]})
POP = Body("ZsetPop", {"count": 1})

DELETED = "Deleted (also when it did not exist)."
DEL = Verb("del", "delete a key (--type registers|counters|sets|hlls|zsets)")


def _route(method: str, path: str) -> Route:
    return Route(method, "/v1/zsets/" + path)


ZSETS: tuple[OpSpec, ...] = (
    OpSpec(
        "zsets.add",
        (KEY, SCORES, NX, XX, GT, LT, CH, INCR),
        zsets.add,
        writes=True,
        retry_safe=False,  # with incr or ch, a second send differs
        result=ZSET_ADDED,
        doc=Doc(
            "Add members with scores, or update their scores (Redis ZADD)",
            "How many were added (or changed, with ch), and the new score with incr.",
            {"added": 2, "score": None},
            "Options as Redis's: nx and xx, and gt, lt and nx, exclude each other; incr takes "
            "one member and returns its new score (null when nx, xx, gt or lt stopped it). A "
            "score is LWW; a concurrent increment survives on top of it.",
        ),
        route=_route("POST", "{key}/add"),
        body=Body("ZsetAdd", {"scores": {"a": 1.5, "b": "-inf"}, "nx": True}),
        client=(
            Method(
                "add",
                "Add or update ``scores`` (member -> score) with Redis's ZADD options; returns "
                "how many were added (or changed, with ``ch``).",
                returns="added",
                cli=Verb(
                    "zadd", "add members with scores (SCORE MEMBER pairs; Redis options as flags)"
                ),
            ),
        ),
    ),
    OpSpec(
        "zsets.incr",
        (KEY, INCREMENT, MEMBER_BODY),
        zsets.incr,
        writes=True,
        retry_safe=False,
        result=ZSET_SCORE,
        doc=Doc(
            "Add to a member's score (Redis ZINCRBY)",
            "The new score.",
            {"score": 3.5},
            "An absent member starts from 0. Concurrent increments sum.",
        ),
        route=_route("POST", "{key}/incr"),
        body=Body("ZsetIncr", {"increment": 2.0, "member": "a"}),
        client=(
            Method(
                "incr",
                "Add ``increment`` to ``member``'s score; returns the new score.",
                returns="score",
                cli=Verb("zincrby", "add to a member's score (prints the new score)"),
            ),
        ),
    ),
    OpSpec(
        "zsets.remove",
        (KEY, MEMBERS),
        zsets.remove,
        writes=True,
        result=ZSET_REMOVED,
        doc=Doc("Remove members (Redis ZREM)", "How many were present.", {"removed": 1}),
        resp=(
            Resp(
                "ZREM",
                -3,
                resp_args.key_members("members"),
                lambda r: r["removed"],
                flags=("fast",),
                summary="Removes one or more members from a sorted set. "
                "Deletes the sorted set if all members were removed.",
            ),
        ),
        route=_route("POST", "{key}/remove"),
        body=MEMBERS_BODY,
        client=(
            Method(
                "remove",
                "Remove members (what this replica has seen); returns how many were present.",
                returns="removed",
                cli=Verb("zrem", "remove members from a sorted set"),
            ),
        ),
    ),
    OpSpec(
        "zsets.popmin",
        (KEY, COUNT),
        zsets.popmin,
        writes=True,
        retry_safe=False,
        result=ZSET_ITEMS,
        doc=Doc(
            "Remove and return the lowest-scored members (Redis ZPOPMIN)",
            "[member, score] pairs, lowest first.",
            {"items": [["a", 1.5]]},
            "At least once: two replicas may pop the same member concurrently.",
        ),
        route=_route("POST", "{key}/popmin"),
        body=POP,
        client=(
            Method(
                "popmin",
                "Remove and return the ``count`` (default 1) lowest [member, score] pairs.",
                returns="items",
                cli=Verb("zpopmin", "pop the lowest members (prints member and score)"),
            ),
        ),
    ),
    OpSpec(
        "zsets.popmax",
        (KEY, COUNT),
        zsets.popmax,
        writes=True,
        retry_safe=False,
        result=ZSET_ITEMS,
        doc=Doc(
            "Remove and return the highest-scored members (Redis ZPOPMAX)",
            "[member, score] pairs, highest first.",
            {"items": [["b", 9]]},
            "At least once: two replicas may pop the same member concurrently.",
        ),
        route=_route("POST", "{key}/popmax"),
        body=POP,
        client=(
            Method(
                "popmax",
                "Remove and return the ``count`` (default 1) highest [member, score] pairs.",
                returns="items",
                cli=Verb("zpopmax", "pop the highest members (prints member and score)"),
            ),
        ),
    ),
    OpSpec(
        "zsets.get",
        (KEY,),
        zsets.get,
        writes=False,
        result=ZSET_VIEW,
        doc=Doc(
            "Read a sorted set whole",
            "[member, score] pairs by score, then member.",
            {"items": [["a", 1.5], ["b", 9]], "size": 2},
        ),
        route=_route("GET", "{key}"),
        snapshot=True,
        client=(
            Method(
                "items",
                "Every [member, score] pair in order; [] for an absent sorted set.",
                returns="items",
                absent=[],
            ),
        ),
    ),
    OpSpec(
        "zsets.card",
        (KEY,),
        zsets.card,
        writes=False,
        result=ZSET_SIZE,
        doc=Doc("Count a sorted set's members (Redis ZCARD)", "The count.", {"size": 2}),
        resp=(
            Resp(
                "ZCARD",
                2,
                resp_args.key_only,
                lambda r: r["size"],
                absent=0,
                flags=("fast",),
                summary="Returns the number of members in a sorted set.",
            ),
        ),
        route=_route("GET", "{key}/card"),
        client=(
            Method(
                "card",
                "The number of members; 0 for an absent sorted set.",
                returns="size",
                absent=0,
                cli=Verb("zcard", "count a sorted set's members"),
            ),
        ),
    ),
    OpSpec(
        "zsets.member",
        (KEY, MEMBER),
        zsets.member,
        writes=False,
        result=ZSET_MEMBER,
        doc=Doc(
            "A member's score and ranks (Redis ZSCORE, ZRANK, ZREVRANK)",
            "Score and ranks, null when the member is absent.",
            {"score": 1.5, "rank": 0, "rev_rank": 1},
            "404 when the sorted set itself does not exist. O(log n).",
        ),
        resp=(
            Resp(
                "ZSCORE",
                3,
                resp_args.key_member("member"),
                lambda r: None if r["score"] is None else HZ.score_reply(r["score"]),
                flags=("fast",),
                summary="Returns the score of a member in a sorted set.",
            ),
            Resp(
                "ZRANK",
                3,
                resp_args.key_member("member"),
                lambda r: r["rank"],
                flags=("fast",),
                summary="Returns the index of a member in a sorted set ordered by "
                "ascending scores.",
            ),
            Resp(
                "ZREVRANK",
                3,
                resp_args.key_member("member"),
                lambda r: r["rev_rank"],
                flags=("fast",),
                summary="Returns the index of a member in a sorted set ordered by "
                "descending scores.",
            ),
        ),
        route=_route("GET", "{key}/members/{member}"),
        client=(
            Method(
                "score",
                "``member``'s score; None when it or the sorted set is absent.",
                returns="score",
                absent=None,
                cli=Verb("zscore", "a member's score (prints nothing when absent)"),
            ),
            Method(
                "rank",
                "``member``'s rank from the lowest score; None when absent.",
                returns="rank",
                absent=None,
                cli=Verb("zrank", "a member's rank, lowest score first"),
            ),
            Method(
                "revrank",
                "``member``'s rank from the highest score; None when absent.",
                returns="rev_rank",
                absent=None,
                cli=Verb("zrevrank", "a member's rank, highest score first"),
            ),
        ),
    ),
    OpSpec(
        "zsets.scores",
        (KEY, MEMBERS),
        zsets.scores,
        writes=False,
        result=ZSET_SCORES,
        doc=Doc(
            "Several members' scores (Redis ZMSCORE)",
            "One score or null per member.",
            {"scores": [1.5, None]},
        ),
        route=_route("POST", "{key}/scores"),
        body=MEMBERS_BODY,
        client=(
            Method(
                "mscore",
                "One score (None: absent) per member; None for an absent sorted set.",
                returns="scores",
                absent=None,
                cli=Verb("zmscore", "members' scores, one per line (empty: absent)"),
            ),
        ),
    ),
    OpSpec(
        "zsets.count",
        (KEY, MIN, MAX),
        zsets.count,
        writes=False,
        result=ZSET_COUNT,
        doc=Doc("Count members in a score range (Redis ZCOUNT)", "The count.", {"count": 1}),
        resp=(
            Resp(
                "ZCOUNT",
                4,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "min": HZ.score_bound(argv[1]),
                    "max": HZ.score_bound(argv[2]),
                },
                lambda r: r["count"],
                absent=0,
                flags=("fast",),
                summary="Returns the count of members in a sorted set that have scores "
                "within a range.",
            ),
        ),
        route=_route("POST", "{key}/count"),
        body=Body("ZsetScoreRange", {"min": "(1", "max": "+inf"}),
        client=(
            Method(
                "count",
                "Members with ``min`` <= score <= ``max``; 0 for an absent sorted set.",
                returns="count",
                absent=0,
                cli=Verb("zcount", "count members in a score range"),
            ),
        ),
    ),
    OpSpec(
        "zsets.lexcount",
        (KEY, LEX_MIN, LEX_MAX),
        zsets.lexcount,
        writes=False,
        result=ZSET_COUNT,
        doc=Doc("Count members in a member range (Redis ZLEXCOUNT)", "The count.", {"count": 2}),
        resp=(
            Resp(
                "ZLEXCOUNT",
                4,
                lambda argv: {
                    "key": resp_args.text(argv[0]),
                    "lex_min": HZ.lex_bound(argv[1]),
                    "lex_max": HZ.lex_bound(argv[2]),
                },
                lambda r: r["count"],
                absent=0,
                flags=("fast",),
                summary="Returns the number of members in a sorted set within a "
                "lexicographical range.",
            ),
        ),
        route=_route("POST", "{key}/lexcount"),
        body=Body("ZsetLexRange", {"lex_min": "[a", "lex_max": "+"}),
        client=(
            Method(
                "lexcount",
                "Members between the member bounds; 0 for an absent sorted set.",
                returns="count",
                absent=0,
                cli=Verb("zlexcount", "count members in a member range"),
            ),
        ),
    ),
    OpSpec(
        "zsets.range",
        (KEY, START, STOP, REV, WITHSCORES),
        zsets.range_,
        writes=False,
        result=ZSET_ITEMS,
        doc=Doc(
            "Members by rank (Redis ZRANGE start stop [REV] [WITHSCORES])",
            "Members (or [member, score] pairs) in order.",
            {"items": ["a", "b"]},
            f"O(log n + k). An answer of more than {limits.RANGE_MAX} members is refused.",
        ),
        route=_route("POST", "{key}/range"),
        body=Body("ZsetRankRange", {"start": 0, "stop": -1, "withscores": True}),
        client=(
            Method(
                "range",
                "Members by rank, ``stop`` included (negative ranks count from the end); "
                "[] for an absent sorted set.",
                returns="items",
                absent=[],
                cli=Verb("zrange", "members by rank, one per line"),
            ),
        ),
    ),
    OpSpec(
        "zsets.rangebyscore",
        (KEY, MIN, MAX, REV, OFFSET, LIMIT, WITHSCORES),
        zsets.rangebyscore,
        writes=False,
        result=ZSET_ITEMS,
        doc=Doc(
            "Members in a score range (Redis ZRANGE BYSCORE, ZRANGEBYSCORE)",
            "Members (or [member, score] pairs) in order.",
            {"items": [["a", 1.5]]},
            "`min` is the low end also with `rev`; `offset` and `limit` count in the result's "
            "order. O(log n + k).",
        ),
        route=_route("POST", "{key}/rangebyscore"),
        body=Body("ZsetScoreWindow", {"min": "-inf", "max": 10, "limit": 10, "withscores": True}),
        client=(
            Method(
                "range_by_score",
                "Members with ``min`` <= score <= ``max``; [] for an absent sorted set.",
                returns="items",
                absent=[],
                cli=Verb("zrangebyscore", "members in a score range, one per line"),
            ),
        ),
    ),
    OpSpec(
        "zsets.rangebylex",
        (KEY, LEX_MIN, LEX_MAX, REV, OFFSET, LIMIT),
        zsets.rangebylex,
        writes=False,
        result=ZSET_ITEMS,
        doc=Doc(
            "Members in a member range (Redis ZRANGE BYLEX, ZRANGEBYLEX)",
            "Members in order.",
            {"items": ["a", "b"]},
            "Meaningful when every score is equal, as in Redis.",
        ),
        route=_route("POST", "{key}/rangebylex"),
        body=Body("ZsetLexWindow", {"lex_min": "[a", "lex_max": "(c", "limit": 10}),
        client=(
            Method(
                "range_by_lex",
                "Members between the member bounds; [] for an absent sorted set.",
                returns="items",
                absent=[],
                cli=Verb("zrangebylex", "members in a member range, one per line"),
            ),
        ),
    ),
    OpSpec(
        "zsets.scan",
        (KEY, CURSOR, COUNT),
        zsets.scan,
        writes=False,
        result=ZSET_PAGE,
        doc=Doc(
            "Walk a sorted set's members (Redis ZSCAN)",
            "The next cursor and [member, score] pairs.",
            {"cursor": "", "items": [["a", 1.5]]},
            "Members in code-point order after the cursor; one present for the whole scan "
            "comes exactly once.",
        ),
        route=_route("POST", "{key}/scan"),
        body=Body("ZsetScan", {"cursor": "", "count": 10}),
        client=None,  # two results (cursor and items): use the batch or the endpoint
    ),
    OpSpec(
        "zsets.delete",
        (KEY,),
        zsets.delete,
        writes=True,
        result=OK,
        doc=Doc("Delete a sorted set (every member this replica has seen)", DELETED, {"ok": True}),
        route=_route("DELETE", "{key}"),
        client=(Method("delete", "Delete the sorted set.", cli=DEL),),
    ),
)

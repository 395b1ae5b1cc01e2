"""Hash and sorted-set commands that are more than one op, or whose options choose the op.

The single-op ones (HSET, HGET, HGETALL, HINCRBY, ZREM, ZSCORE, ZCOUNT, ...) are the
RESP column of the hash and sorted-set rows (``crdtkv.ops.hash_rows``,
``crdtkv.ops.zset_rows``).  These parse their arguments in Redis 7.0's order and with
its error texts, then run one or a few ops in a row at this replica (atomic there, not
across replicas, as every composite command).

Reply shapes follow Redis 7.0 in both protocols: ``WITHSCORES`` is a flat array of
member, score in RESP2 and an array of [member, score] pairs in RESP3 (ZRANGE and its
older forms; ZPOPMIN/ZPOPMAX only when a count is given; HRANDFIELD WITHVALUES alike);
HSCAN and ZSCAN answer [cursor, flat array] with scores as bulk strings in both.

Scan cursors: an op's cursor is a string (the last field or ">" and the last member
examined, "" at the start and the end); over RESP it travels as the decimal integer
``int.from_bytes(b"\\x01" + cursor.encode(), "big")``, and "0" for "" (redis-py reads a
cursor with ``int()``).  Any other integer is an invalid cursor.

Deviations, by design of the store: ``ZINCRBY`` (and ``ZADD ... INCR``) with an infinite
increment is a score write (the register's increments are finite), so a concurrent
increment elsewhere does not add to it; ``MATCH`` globs are Python's ``fnmatchcase``
(as the HTTP scans): ``[!a]`` negates a class, ``\\`` does not escape.
"""

from __future__ import annotations

import math
import random
from fnmatch import fnmatchcase
from typing import Any

from crdtkv import limits
from crdtkv.errors import NotFound
from crdtkv.ops.keys import SCAN_COUNT_MAX
from crdtkv.resp import args as A
from crdtkv.resp import hash_zset_args as HZ
from crdtkv.resp.commands import WRONGTYPE, Context, command
from crdtkv.resp.values import RespError, format_double, syntax_error

__all__: list[str] = []

_HASH = "hash"
_ZSET = "zset"
_NAN = "ERR resulting score is not a number (NaN)"
_POSITIVE = "ERR value is out of range, must be positive"


# -- helpers ---------------------------------------------------------------------------------
def _exists(ctx: Context, key: str, type_: str) -> bool:
    """Whether ``key`` exists with the type ``type_`` (TYPE's name); WRONGTYPE for another."""
    t = ctx.apply({"op": "keys.type", "key": key})["type"]
    if t == "none":
        return False
    if t != type_:
        raise RespError(WRONGTYPE)
    return True


def _encode_cursor(cursor: str) -> str:
    """An op's cursor as a RESP cursor (``args.encode_cursor``)."""
    return str(A.encode_cursor(cursor))


def _decode_cursor(b: bytes) -> str:
    """Inverse of ``_encode_cursor``; "ERR invalid cursor" for anything else."""
    return A.decode_cursor(b)


def _scan_options(opts: list[bytes]) -> tuple[int, str | None]:
    """[MATCH pattern] [COUNT count], as Redis's scanGenericCommand reads them."""
    count, pattern, _ = A.scan_options(opts, 10)
    match = A.text(pattern) if pattern is not None else None
    return count, None if match == "*" else match


def _scan_start(
    ctx: Context, argv: list[bytes], type_: str
) -> tuple[str, str, int, str | None] | None:
    """A scan's key, cursor and options; None when the key is absent (an empty scan).
    Redis reads the cursor, then looks up the key, then reads the options."""
    key = A.text(argv[0])
    cursor = _decode_cursor(argv[1])
    try:
        count, match = _scan_options(argv[2:])
    except RespError:
        if not _exists(ctx, key, type_):
            return None
        raise
    return key, cursor, min(count, SCAN_COUNT_MAX), match


def _pairs(items: list[Any], proto: int, nested: bool) -> list[Any]:
    """[[member, score], ...] as Redis sends them: pairs when ``nested``, else flat."""
    if nested:
        return [[m, HZ.score_reply(s)] for m, s in items]
    out: list[Any] = []
    for m, s in items:
        out.append(m)
        out.append(HZ.score_reply(s))
    return out


# -- hashes ----------------------------------------------------------------------------------
@command(
    "HMGET",
    -3,
    group="hash",
    flags=("fast",),
    summary="Returns the values of all fields in a hash.",
)
def hmget(ctx: Context, argv: list[bytes]) -> Any:
    key, names = A.text(argv[0]), A.texts(argv[1:])
    try:
        values = ctx.apply({"op": "hashes.mget", "key": key, "names": names})["values"]
    except NotFound:
        return [None] * len(names)
    return [None if v is None else HZ.hash_text(v) for v in values]


@command(
    "HSCAN",
    -3,
    group="hash",
    summary="Iterates over fields and values of a hash.",
)
def hscan(ctx: Context, argv: list[bytes]) -> Any:
    start = _scan_start(ctx, argv, _HASH)
    if start is None:
        return ["0", []]
    key, cursor, count, match = start
    op = {"op": "hashes.scan", "key": key, "cursor": cursor, "count": count, "match": match}
    try:
        page = ctx.apply(op)
    except NotFound:
        return ["0", []]
    flat: list[str] = []
    for f, v in page["fields"].items():
        flat.append(f)
        flat.append(HZ.hash_text(v))
    return [_encode_cursor(page["cursor"]), flat]


_LONG_MAX = limits.INT64_MAX


@command(
    "HRANDFIELD",
    -2,
    group="hash",
    summary="Returns one or more random fields from a hash.",
)
def hrandfield(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    if len(argv) == 1:
        try:
            fields = ctx.apply({"op": "hashes.keys", "key": key})["fields"]
        except NotFound:
            return None
        return random.choice(fields) if fields else None
    n = A.integer(argv[1])
    if n < -_LONG_MAX:
        raise RespError(
            f"ERR value is out of range, value must between {-_LONG_MAX} and {_LONG_MAX}"
        )
    if len(argv) > 3 or (len(argv) == 3 and A.upper(argv[2]) != "WITHVALUES"):
        raise syntax_error()
    withvalues = len(argv) == 3
    if withvalues and not -_LONG_MAX // 2 <= n <= _LONG_MAX // 2:
        raise RespError("ERR value is out of range")
    try:
        items = list(ctx.apply({"op": "hashes.getall", "key": key})["fields"].items())
    except NotFound:
        return []
    if n == 0 or not items:
        return []
    if n > 0:
        picked = random.sample(items, min(n, len(items)))
    else:
        if -n > limits.RANGE_MAX:
            raise RespError(f"ERR an answer holds at most {limits.RANGE_MAX} entries")
        picked = random.choices(items, k=-n)
    if not withvalues:
        return [f for f, _ in picked]
    if ctx.proto > 2:
        return [[f, HZ.hash_text(v)] for f, v in picked]
    flat: list[str] = []
    for f, v in picked:
        flat.append(f)
        flat.append(HZ.hash_text(v))
    return flat


# -- sorted sets: writes ---------------------------------------------------------------------
def _score_of(ctx: Context, key: str, member: str) -> float | None:
    """``member``'s score; None when it or the sorted set is absent; WRONGTYPE."""
    try:
        s = ctx.apply({"op": "zsets.member", "key": key, "member": member})["score"]
    except NotFound:
        return None
    return None if s is None else HZ.score_reply(s)


def _incr_infinite(
    ctx: Context, key: str, member: str, by: float, nx: bool, xx: bool, gt: bool, lt: bool
) -> float | None:
    """An increment by an infinity, as Redis's zsetAdd: a score write of the sum."""
    cur = _score_of(ctx, key, member)
    if cur is None:
        if xx:
            return None
        new = by
    else:
        if nx:
            return None
        new = cur + by
        if math.isnan(new):
            raise RespError(_NAN)
        if (gt and new <= cur) or (lt and new >= cur):
            return None
    if new != cur:
        ctx.apply({"op": "zsets.add", "key": key, "scores": {member: new}})
    return new


_ZADD_FLAGS = ("NX", "XX", "CH", "INCR", "GT", "LT")


@command(
    "ZADD",
    -4,
    writes=True,
    group="sorted_set",
    flags=("fast",),
    summary="Adds one or more members to a sorted set, or updates their scores. "
    "Creates the key if it doesn't exist.",
)
def zadd(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    flags: set[str] = set()
    i = 1
    while i < len(argv) and (opt := A.upper(argv[i])) in _ZADD_FLAGS:
        flags.add(opt)
        i += 1
    rest = argv[i:]
    if not rest or len(rest) % 2:
        raise syntax_error()
    nx, xx, gt, lt = "NX" in flags, "XX" in flags, "GT" in flags, "LT" in flags
    incr, ch = "INCR" in flags, "CH" in flags
    if nx and xx:
        raise RespError("ERR XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise RespError("ERR GT, LT, and/or NX options at the same time are not compatible")
    if incr and len(rest) > 2:
        raise RespError("ERR INCR option supports a single increment-element pair")
    scores = [HZ.score(rest[j]) for j in range(0, len(rest), 2)]
    members = [A.text(rest[j]) for j in range(1, len(rest), 2)]
    opts = {"nx": nx, "xx": xx, "gt": gt, "lt": lt, "ch": ch}
    if incr:
        by, member = scores[0], members[0]
        if math.isinf(by):
            return _incr_infinite(ctx, key, member, by, nx, xx, gt, lt)
        r = ctx.apply({"op": "zsets.add", "key": key, "scores": {member: by}, "incr": True, **opts})
        return None if r["score"] is None else HZ.score_reply(r["score"])
    if len(set(members)) == len(members):
        op = {"op": "zsets.add", "key": key, "scores": dict(zip(members, scores, strict=True))}
        return ctx.apply(op | opts)["added"]
    # A member named twice: Redis applies the pairs one by one (GT, CH count each).
    added = 0
    for m, s in zip(members, scores, strict=True):
        added += ctx.apply({"op": "zsets.add", "key": key, "scores": {m: s}} | opts)["added"]
    return added


@command(
    "ZINCRBY",
    4,
    writes=True,
    group="sorted_set",
    flags=("fast",),
    summary="Increments the score of a member in a sorted set.",
)
def zincrby(ctx: Context, argv: list[bytes]) -> Any:
    key, by, member = A.text(argv[0]), HZ.score(argv[1]), A.text(argv[2])
    if math.isinf(by):
        return _incr_infinite(ctx, key, member, by, False, False, False, False)
    r = ctx.apply({"op": "zsets.incr", "key": key, "increment": by, "member": member})
    return HZ.score_reply(r["score"])


def _pop(ctx: Context, argv: list[bytes], op: str) -> Any:
    if len(argv) > 2:
        raise syntax_error()
    count = -1
    if len(argv) == 2:
        try:
            count = A.integer(argv[1])
        except RespError:
            count = -1
        if count < 0:  # a bad count gets this text too, as Redis
            raise RespError(_POSITIVE)
    key = A.text(argv[0])
    if count == 0:
        _exists(ctx, key, _ZSET)  # WRONGTYPE first, as Redis
        return []
    want = 1 if count == -1 else count
    items: list[Any] = []
    while want > 0:
        n = min(want, SCAN_COUNT_MAX)
        got = ctx.apply({"op": op, "key": key, "count": n})["items"]
        items.extend(got)
        want -= n
        if len(got) < n:
            break
    return _pairs(items, ctx.proto, nested=ctx.proto > 2 and count != -1)


@command(
    "ZPOPMIN",
    -2,
    writes=True,
    group="sorted_set",
    flags=("fast",),
    summary="Returns the lowest-scoring members from a sorted set after removing them. "
    "Deletes the sorted set if the last member was popped.",
)
def zpopmin(ctx: Context, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, "zsets.popmin")


@command(
    "ZPOPMAX",
    -2,
    writes=True,
    group="sorted_set",
    flags=("fast",),
    summary="Returns the highest-scoring members from a sorted set after removing them. "
    "Deletes the sorted set if the last member was popped.",
)
def zpopmax(ctx: Context, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, "zsets.popmax")


# -- sorted sets: reads ----------------------------------------------------------------------
@command(
    "ZMSCORE",
    -3,
    group="sorted_set",
    flags=("fast",),
    summary="Returns the score of one or more members in a sorted set.",
)
def zmscore(ctx: Context, argv: list[bytes]) -> Any:
    key, members = A.text(argv[0]), A.texts(argv[1:])
    try:
        scores = ctx.apply({"op": "zsets.scores", "key": key, "members": members})["scores"]
    except NotFound:
        return [None] * len(members)
    return [None if s is None else HZ.score_reply(s) for s in scores]


_RANK, _SCORE, _LEX = "rank", "score", "lex"


def _zrange(ctx: Context, argv: list[bytes], by: str | None, rev: bool | None) -> Any:
    """zrangeGenericCommand: ``by`` and ``rev`` None when the options may choose them."""
    key = A.text(argv[0])
    withscores = False
    offset, limit = 0, -1
    i = 3
    while i < len(argv):
        opt = A.upper(argv[i])
        if opt == "WITHSCORES":
            withscores = True
        elif opt == "LIMIT" and len(argv) - i - 1 >= 2:
            offset, limit = A.integer(argv[i + 1]), A.integer(argv[i + 2])
            i += 2
        elif rev is None and opt == "REV":
            rev = True
        elif by is None and opt == "BYLEX":
            by = _LEX
        elif by is None and opt == "BYSCORE":
            by = _SCORE
        else:
            raise syntax_error()
        i += 1
    rev = bool(rev)
    by = by or _RANK
    if limit != -1 and by == _RANK:
        raise RespError(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
        )
    if withscores and by == _LEX:
        raise RespError("ERR syntax error, WITHSCORES not supported in combination with BYLEX")
    lo, hi = (argv[2], argv[1]) if rev and by != _RANK else (argv[1], argv[2])
    op: dict[str, Any] = {"key": key, "rev": rev}
    if by == _RANK:
        op |= {"op": "zsets.range", "start": A.integer(lo), "stop": A.integer(hi)}
    elif by == _SCORE:
        op |= {"op": "zsets.rangebyscore", "min": HZ.score_bound(lo), "max": HZ.score_bound(hi)}
    else:
        op |= {"op": "zsets.rangebylex", "lex_min": HZ.lex_bound(lo), "lex_max": HZ.lex_bound(hi)}
    if by != _RANK:
        if offset < 0:  # Redis skips past the end: nothing
            _exists(ctx, key, _ZSET)
            return []
        op |= {"offset": offset, "limit": None if limit < 0 or limit > limits.RANGE_MAX else limit}
    if by != _LEX:
        op["withscores"] = withscores
    try:
        items = ctx.apply(op)["items"]
    except NotFound:
        return []
    if not withscores:
        return items
    return _pairs(items, ctx.proto, nested=ctx.proto > 2)


def _range_command(name: str, by: str | None, rev: bool | None, summary: str) -> None:
    def run(ctx: Context, argv: list[bytes]) -> Any:
        return _zrange(ctx, argv, by, rev)

    command(name, -4, group="sorted_set", summary=summary)(run)


_range_command("ZRANGE", None, None, "Returns members in a sorted set within a range of indexes.")
_range_command(
    "ZREVRANGE",
    _RANK,
    True,
    "Returns members in a sorted set within a range of indexes in reverse order.",
)
_range_command(
    "ZRANGEBYSCORE", _SCORE, False, "Returns members in a sorted set within a range of scores."
)
_range_command(
    "ZREVRANGEBYSCORE",
    _SCORE,
    True,
    "Returns members in a sorted set within a range of scores in reverse order.",
)
_range_command(
    "ZRANGEBYLEX",
    _LEX,
    False,
    "Returns members in a sorted set within a lexicographical range.",
)
_range_command(
    "ZREVRANGEBYLEX",
    _LEX,
    True,
    "Returns members in a sorted set within a lexicographical range in reverse order.",
)


@command(
    "ZSCAN",
    -3,
    group="sorted_set",
    summary="Iterates over members and scores of a sorted set.",
)
def zscan(ctx: Context, argv: list[bytes]) -> Any:
    start = _scan_start(ctx, argv, _ZSET)
    if start is None:
        return ["0", []]
    key, cursor, count, match = start
    try:
        page = ctx.apply({"op": "zsets.scan", "key": key, "cursor": cursor, "count": count})
    except NotFound:
        return ["0", []]
    flat: list[str] = []
    for m, s in page["items"]:
        if match is None or fnmatchcase(m, match):
            flat.append(m)
            flat.append(format_double(HZ.score_reply(s)))
    return [_encode_cursor(page["cursor"]), flat]

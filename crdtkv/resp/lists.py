"""List commands whose arguments choose the reply's shape, or that Redis checks in an
order one op cannot: LPOP and RPOP (with a count), LINDEX, LSET and LPOS.

LPUSH, RPUSH, LPUSHX, RPUSHX, LRANGE, LLEN, LINSERT, LREM, LTRIM, LMOVE and
RPOPLPUSH are plain ops: their RESP column is in ``crdtkv.ops.list_rows``.

Redis 7.0's order and texts:

- ``LPOP key [count]``: the count first (anything but a non-negative integer is
  ``ERR value is out of range, must be positive``), then the key.  Without a count
  the reply is a bulk string, nil for an absent key; with one an array (empty for a
  count of 0), a nil array for an absent key.  A count of more than
  ``limits.RANGE_MAX`` pops in several ops, in one event-loop turn.
- ``LINDEX key index`` and ``LSET key index element``: the key first (an absent one
  is nil, or ``ERR no such key`` for LSET; another type WRONGTYPE), then the index.
- ``LPOS key element [RANK r] [COUNT n] [MAXLEN m]``: the options in order (``RANK``
  0 and a negative ``COUNT`` or ``MAXLEN`` have their own texts), then the key.  The
  reply is an integer or nil without ``COUNT``, an array with it.  A ``RANK`` of
  -2^63 is ``ERR value is out of range`` (Redis 7.2's text; 7.0 negates it with an
  overflow).  ``COUNT`` 0 (all) and a ``COUNT`` over ``limits.RANGE_MAX`` answer at
  most ``limits.RANGE_MAX`` positions.

Blocking pops, at this replica: ``BLPOP``, ``BRPOP``, ``BLMOVE`` and ``BRPOPLPUSH``
answer at once when a list has an element (or a key of another type comes first:
WRONGTYPE); otherwise the connection waits (its later commands wait behind it) and
the pop is tried again after each batch this replica writes, a local push or a
replicated one, until it succeeds or the timeout passes (then a nil array).  A key that
turns into another type meanwhile is skipped, as Redis skips it.  Inside ``MULTI`` a
blocking pop answers at once.  The timeout is read as Redis 7.0 reads it (seconds, a
float; what overflows its milliseconds is "negative").  Clients blocked on one key are
served in the order they blocked, but only on this replica: a client blocked at another
replica may pop the same pushed element (at least once, as every pop).

Pops are at least once across replicas, as ``SPOP``: two replicas popping at once can
both return the same element (``crdtkv.ops.lists``).
"""

from __future__ import annotations

import math
from typing import Any

from crdtkv import limits
from crdtkv.errors import NotFound, WrongType
from crdtkv.ops.table import OPS
from crdtkv.resp import args as A
from crdtkv.resp.commands import WRONGTYPE, Blocked, Context, command
from crdtkv.resp.values import NULL_ARRAY, OK, RespError, syntax_error

__all__: list[str] = []

_GROUP = "list"
_LIST = "list"
_POSITIVE = "ERR value is out of range, must be positive"
_INDEX = OPS["lists.index"]
_SET = OPS["lists.set"]
_POS = OPS["lists.pos"]


def _exists(ctx: Context, key: str) -> bool:
    """Whether ``key`` holds a list; False when absent; WRONGTYPE for another type."""
    t = ctx.apply({"op": "keys.type", "key": key})["type"]
    if t == "none":
        return False
    if t != _LIST:
        raise RespError(WRONGTYPE)
    return True


# -- LPOP, RPOP -------------------------------------------------------------------------------
def _pop(ctx: Context, argv: list[bytes], op: str, name: str) -> Any:
    if len(argv) > 2:
        raise RespError(f"ERR wrong number of arguments for '{name}' command")
    key = A.text(argv[0])
    if len(argv) == 1:
        values = ctx.apply({"op": op, "key": key})["values"]
        return values[0] if values else None
    try:
        count = A.integer(argv[1], 0)
    except RespError:
        raise RespError(_POSITIVE) from None
    if count == 0:
        return [] if _exists(ctx, key) else NULL_ARRAY
    out: list[str] = []
    while count > 0:
        n = min(count, limits.RANGE_MAX)
        got = ctx.apply({"op": op, "key": key, "pop_count": n})["values"]
        out.extend(got)
        count -= n
        if len(got) < n:
            break
    return out if out else NULL_ARRAY  # nothing popped: the list was absent


@command(
    "LPOP",
    -2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns the first elements in a list after removing it. Deletes the list if "
    "the last element was popped.",
)
def lpop(ctx: Context, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, "lists.lpop", "lpop")


@command(
    "RPOP",
    -2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns and removes the last elements of a list. Deletes the list if the last "
    "element was popped.",
)
def rpop(ctx: Context, argv: list[bytes]) -> Any:
    return _pop(ctx, argv, "lists.rpop", "rpop")


# -- LINDEX, LSET -----------------------------------------------------------------------------
def _index(ctx: Context, key: str, b: bytes) -> int | None:
    """The index argument, read after the key as Redis reads it: None when the key is
    absent (and the index is not an integer); WRONGTYPE for another type."""
    try:
        return A.integer(b)
    except RespError:
        if not _exists(ctx, key):
            return None
        raise


@command(
    "LINDEX",
    3,
    group=_GROUP,
    summary="Returns an element from a list by its index.",
)
def lindex(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    index = _index(ctx, key, argv[1])
    if index is None:
        return None
    try:
        return ctx.run_op(_INDEX, {"key": key, "index": index})["value"]
    except NotFound:
        return None


@command(
    "LSET",
    4,
    writes=True,
    group=_GROUP,
    summary="Sets the value of an element in a list by its index.",
)
def lset(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    index = _index(ctx, key, argv[1])
    if index is None:
        raise RespError("ERR no such key")
    # lists.set answers NotFound "no such key" and BadRequest "index out of range":
    # Redis's texts once the server prefixes ERR.
    ctx.run_op(_SET, {"key": key, "index": index, "element": A.text(argv[2])})
    return OK


# -- LPOS -------------------------------------------------------------------------------------
def _non_negative(b: bytes, message: str) -> int:
    try:
        n = A.integer(b)
    except RespError:
        raise RespError(message) from None
    if n < 0:
        raise RespError(message)
    return n


@command(
    "LPOS",
    -3,
    group=_GROUP,
    summary="Returns the index of matching elements in a list.",
)
def lpos(ctx: Context, argv: list[bytes]) -> Any:
    key, element = A.text(argv[0]), A.text(argv[1])
    rank = 1
    count: int | None = None
    maxlen = 0
    i = 2
    while i < len(argv):
        opt = A.upper(argv[i])
        more = i + 1 < len(argv)
        if opt == "RANK" and more:
            rank = A.integer(argv[i + 1])
            if rank == 0:
                raise RespError(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the "
                    "second ... or use negative to start from the end of the list"
                )
            if rank == limits.INT64_MIN:
                raise RespError("ERR value is out of range")
        elif opt == "COUNT" and more:
            count = _non_negative(argv[i + 1], "ERR COUNT can't be negative")
        elif opt == "MAXLEN" and more:
            maxlen = _non_negative(argv[i + 1], "ERR MAXLEN can't be negative")
        else:
            raise syntax_error()
        i += 2
    op: dict[str, Any] = {"key": key, "element": element, "rank": rank, "maxlen": maxlen}
    if count is not None:
        op["matches"] = min(count, limits.RANGE_MAX)
    try:
        positions: list[int] = ctx.run_op(_POS, op)["positions"]
    except NotFound:
        return [] if count is not None else None
    if count is not None:
        return positions
    return positions[0] if positions else None


# -- BLPOP, BRPOP, BLMOVE, BRPOPLPUSH ---------------------------------------------------------
def _timeout_ms(b: bytes) -> int:
    """A blocking command's timeout in milliseconds (0: none), as Redis 7.0 reads it."""
    x = A.floating(b, finite=False, message="ERR timeout is not a float or out of range")
    ms = x * 1000
    if ms < 0 or ms > limits.INT64_MAX:  # Redis's overflow makes these negative too
        raise RespError("ERR timeout is negative")
    return math.ceil(ms)


def _bpop(ctx: Context, argv: list[bytes], op: str) -> Any:
    timeout = _timeout_ms(argv[-1])
    keys = A.texts(argv[:-1])

    def attempt(first: bool) -> Any:
        for key in keys:
            try:
                values = ctx.apply({"op": op, "key": key})["values"]
            except WrongType:
                if first:  # later, a key that changed type is skipped, as Redis does
                    raise
                continue
            if values:
                return [key, values[0]]
        return None

    got = attempt(True)
    if got is not None:
        return got
    if not ctx.blocking:
        return NULL_ARRAY
    return Blocked(lambda: attempt(False), timeout, NULL_ARRAY)


@command(
    "BLPOP",
    -3,
    writes=True,
    group=_GROUP,
    flags=("blocking",),
    keys=(1, -2, 1),
    summary="Removes and returns the first element in a list. Blocks until an element is "
    "available otherwise. Deletes the list if the last element was popped.",
)
def blpop(ctx: Context, argv: list[bytes]) -> Any:
    return _bpop(ctx, argv, "lists.lpop")


@command(
    "BRPOP",
    -3,
    writes=True,
    group=_GROUP,
    flags=("blocking",),
    keys=(1, -2, 1),
    summary="Removes and returns the last element in a list. Blocks until an element is "
    "available otherwise. Deletes the list if the last element was popped.",
)
def brpop(ctx: Context, argv: list[bytes]) -> Any:
    return _bpop(ctx, argv, "lists.rpop")


def _end(b: bytes) -> str:
    end = A.upper(b)
    if end not in ("LEFT", "RIGHT"):
        raise syntax_error()
    return end.lower()


def _bmove(ctx: Context, src: bytes, dst: bytes, ends: tuple[str, str], t: bytes) -> Any:
    timeout = _timeout_ms(t)
    op = {
        "op": "lists.move",
        "key": A.text(src),
        "destination": A.text(dst),
        "from_end": ends[0],
        "to_end": ends[1],
    }

    def attempt() -> Any:
        try:
            return ctx.apply(op)["value"]
        except WrongType:
            return None  # a key that changed type meanwhile: wait on

    value = ctx.apply(op)["value"]
    if value is not None:
        return value
    if not ctx.blocking:
        return None
    return Blocked(attempt, timeout, NULL_ARRAY)


@command(
    "BLMOVE",
    6,
    writes=True,
    group=_GROUP,
    flags=("blocking",),
    keys=(1, 2, 1),
    summary="Pops an element from a list, pushes it to another list and returns it. Blocks "
    "until an element is available otherwise. Deletes the list if the last element was moved.",
)
def blmove(ctx: Context, argv: list[bytes]) -> Any:
    ends = (_end(argv[2]), _end(argv[3]))
    return _bmove(ctx, argv[0], argv[1], ends, argv[4])


@command(
    "BRPOPLPUSH",
    4,
    writes=True,
    group=_GROUP,
    flags=("blocking",),
    keys=(1, 2, 1),
    summary="Pops an element from a list, pushes it to another list and returns it. Block "
    "until an element is available otherwise. Deletes the list if the last element was popped.",
)
def brpoplpush(ctx: Context, argv: list[bytes]) -> Any:
    return _bmove(ctx, argv[0], argv[1], ("right", "left"), argv[2])

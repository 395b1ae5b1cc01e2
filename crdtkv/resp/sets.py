"""Set commands that are more than one op: SMISMEMBER, SSCAN, SPOP, SRANDMEMBER,
SINTER, SUNION, SDIFF and their STORE forms.

SADD, SREM, SMEMBERS, SCARD and SISMEMBER are plain ops: their RESP column is
in ``crdtkv.ops.table``.

Each command here runs a few ops in a row at one replica: atomic there, not
across replicas.

- **SPOP is at-least-once across replicas**: a pop reads the set and removes
  what it picked (``sets.remove``).  Two replicas popping at once can pick
  the same member and both return it; a member added concurrently at another
  replica (add wins) survives the remove, so it can be popped again later.
- SPOP and SRANDMEMBER pick with this module's own ``random.Random`` (the
  RESP layer's, never the pure core's); a negative SRANDMEMBER count may
  repeat members, as Redis's, and is bounded by ``limits.RANGE_MAX``.
- SSCAN pages with ``sets.scan`` (members in code-point order after the
  cursor; the cursor travels as ``crdtkv.resp.args.encode_cursor`` makes it);
  MATCH is Redis's glob, applied here.
- SINTER, SUNION and SDIFF read every key named (an absent key is an empty
  set; a key of another type is WRONGTYPE, whatever came before it), and
  answer a set (RESP3 ``~``).  The STORE forms replace the destination,
  whatever it held, with a delete and ``sets.add`` ops (none: the
  destination is deleted), and answer the result's size.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from crdtkv import limits
from crdtkv.errors import NotFound
from crdtkv.ops import keys as key_ops
from crdtkv.ops import sets as set_ops
from crdtkv.resp import args as A
from crdtkv.resp.commands import WRONGTYPE, Context, command
from crdtkv.resp.values import RespError, RSet, syntax_error

__all__: list[str] = []

_GROUP = "set"
_MANY = (1, -1, 1)
_rng = random.Random()  # SPOP's and SRANDMEMBER's picks: this module's own generator


def _members(ctx: Context, key: str) -> list[str] | None:
    """The set's members (sorted), or None when it is absent; WRONGTYPE for another type."""
    try:
        members: list[str] = ctx.apply({"op": "sets.get", "key": key})["members"]
    except NotFound:
        return None
    return members


def _remove(ctx: Context, key: str, members: list[str]) -> None:
    step = limits.MEMBERS_PER_OP_MAX
    for i in range(0, len(members), step):
        ctx.apply({"op": "sets.remove", "key": key, "members": members[i : i + step]})


def _add(ctx: Context, key: str, members: list[str]) -> None:
    step = limits.MEMBERS_PER_OP_MAX
    for i in range(0, len(members), step):
        ctx.apply({"op": "sets.add", "key": key, "members": members[i : i + step]})


@command(
    "SMISMEMBER",
    -3,
    group=_GROUP,
    flags=("fast",),
    summary="Determines whether multiple members belong to a set.",
)
def smismember(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    members = A.texts(argv[1:])
    out: list[int] = []
    for m in members:
        try:
            out.append(int(ctx.apply({"op": "sets.contains", "key": key, "member": m})["present"]))
        except NotFound:
            return [0] * len(members)
    return out


# -- SSCAN ------------------------------------------------------------------------------------
def _scan_options(argv: list[bytes]) -> tuple[int, Callable[[str], bool] | None]:
    count, pattern, _ = A.scan_options(argv, set_ops.SCAN_COUNT_DEFAULT)
    match = A.glob_matcher(pattern) if pattern is not None else None
    return min(count, key_ops.SCAN_COUNT_MAX), match


@command(
    "SSCAN",
    -3,
    group=_GROUP,
    summary="Iterates over members of a set.",
)
def sscan(ctx: Context, argv: list[bytes]) -> Any:
    cursor = A.decode_cursor(argv[1])
    key = A.text(argv[0])
    try:
        count, match = _scan_options(argv[2:])
    except RespError:
        # Redis looks the key up before it reads the options: an absent key is an
        # empty scan and another type WRONGTYPE, whatever the options say.
        t = ctx.apply({"op": "keys.type", "key": key})["type"]
        if t == key_ops.NONE:
            return ["0", []]
        if t != set_ops.SET:
            raise RespError(WRONGTYPE) from None
        raise
    try:
        page = ctx.apply({"op": "sets.scan", "key": key, "cursor": cursor or None, "count": count})
    except NotFound:
        return ["0", []]
    members: list[str] = page["members"]
    if match is not None:
        members = [m for m in members if match(m)]
    return [A.encode_cursor(str(page["cursor"])), members]


# -- SPOP, SRANDMEMBER --------------------------------------------------------------------------
_MUST_BE_POSITIVE = "ERR value is out of range, must be positive"


@command(
    "SPOP",
    -2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns one or more random members from a set after removing them. Deletes the "
    "set if the last member was popped.",
)
def spop(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    if len(argv) > 2:
        raise syntax_error()
    count: int | None = None
    if len(argv) == 2:
        try:
            count = A.integer(argv[1], 0)
        except RespError:
            raise RespError(_MUST_BE_POSITIVE) from None
    members = _members(ctx, key)
    if count is None:
        if not members:
            return None
        one = _rng.choice(members)
        _remove(ctx, key, [one])
        return one
    if not members or count == 0:
        return RSet()
    picked = members if count >= len(members) else _rng.sample(members, count)
    _remove(ctx, key, picked)
    return RSet(picked)


_SRANDMEMBER_RANGE = (
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
)


@command(
    "SRANDMEMBER",
    -2,
    group=_GROUP,
    summary="Get one or multiple random members from a set",
)
def srandmember(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    if len(argv) > 2:
        raise syntax_error()
    count: int | None = None
    if len(argv) == 2:
        count = A.integer(argv[1])
        if count == limits.INT64_MIN:
            raise RespError(_SRANDMEMBER_RANGE)
        if -count > limits.RANGE_MAX:
            raise RespError(
                f"ERR SRANDMEMBER with a negative count answers at most {limits.RANGE_MAX} "
                "members in crdtkv"
            )
    members = _members(ctx, key)
    if count is None:
        return _rng.choice(members) if members else None
    if not members or count == 0:
        return []
    if count > 0:
        return members if count >= len(members) else _rng.sample(members, count)
    return _rng.choices(members, k=-count)  # may repeat, as Redis's


# -- SINTER, SUNION, SDIFF ----------------------------------------------------------------------
def _combine(ctx: Context, argv: list[bytes], how: str) -> list[str]:
    sets = [set(_members(ctx, A.text(b)) or ()) for b in argv]  # every key is type-checked
    out = sets[0]
    for s in sets[1:]:
        if how == "inter":
            out &= s
        elif how == "union":
            out |= s
        else:
            out -= s
    return sorted(out)


def _store(ctx: Context, argv: list[bytes], how: str) -> int:
    dest = A.text(argv[0])
    result = _combine(ctx, argv[1:], how)
    ctx.apply({"op": "keys.delete", "key": dest})  # the destination is replaced, whatever it was
    _add(ctx, dest, result)
    return len(result)


@command("SINTER", -2, group=_GROUP, keys=_MANY, summary="Returns the intersect of multiple sets.")
def sinter(ctx: Context, argv: list[bytes]) -> Any:
    return RSet(_combine(ctx, argv, "inter"))


@command("SUNION", -2, group=_GROUP, keys=_MANY, summary="Returns the union of multiple sets.")
def sunion(ctx: Context, argv: list[bytes]) -> Any:
    return RSet(_combine(ctx, argv, "union"))


@command("SDIFF", -2, group=_GROUP, keys=_MANY, summary="Returns the difference of multiple sets.")
def sdiff(ctx: Context, argv: list[bytes]) -> Any:
    return RSet(_combine(ctx, argv, "diff"))


@command(
    "SINTERSTORE",
    -3,
    writes=True,
    group=_GROUP,
    keys=_MANY,
    summary="Stores the intersect of multiple sets in a key.",
)
def sinterstore(ctx: Context, argv: list[bytes]) -> Any:
    return _store(ctx, argv, "inter")


@command(
    "SUNIONSTORE",
    -3,
    writes=True,
    group=_GROUP,
    keys=_MANY,
    summary="Stores the union of multiple sets in a key.",
)
def sunionstore(ctx: Context, argv: list[bytes]) -> Any:
    return _store(ctx, argv, "union")


@command(
    "SDIFFSTORE",
    -3,
    writes=True,
    group=_GROUP,
    keys=_MANY,
    summary="Stores the difference of multiple sets in a key.",
)
def sdiffstore(ctx: Context, argv: list[bytes]) -> Any:
    return _store(ctx, argv, "diff")

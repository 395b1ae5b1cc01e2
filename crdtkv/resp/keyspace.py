"""Keyspace commands that are more than one op: DEL, EXISTS, EXPIRE, SCAN, RENAME, ...

TYPE, TTL, PTTL and PERSIST are plain ops: their RESP column is in
``crdtkv.ops.table`` (``keys.type``, ``keys.ttl``, ``keys.persist``).

Types.  ``TYPE`` answers crdtkv's type names (``crdtkv.replica.keyspace.TYPES``),
which are Redis's for what Redis also has:

==============  =====================================================
crdtkv type     TYPE answers
==============  =====================================================
``string``      ``string`` (registers and counters: a string key)
``hash``        ``hash``
``zset``        ``zset``
``set``         ``set``
``list``        ``list``
``hll``         ``hll``: a HyperLogLog is its own type in crdtkv
                (in Redis it is a string, and TYPE says ``string``)
``vectorset``   ``vectorset`` (Redis 8's vector sets)
==============  =====================================================

``SCAN ... TYPE t`` takes the same names (so ``TYPE string`` does not list
HyperLogLogs, ``TYPE hll`` does); a type crdtkv does not have (``stream``,
anything else) matches no key, as in Redis.

Cursors.  crdtkv's ``keys.scan`` continues from a key name; SCAN sends it as
a decimal integer (``crdtkv.resp.args.encode_cursor``), "0" at the start and
at the end, so redis-py's ``int(cursor)`` and ``scan_iter`` work.  A key
present for the whole scan is returned exactly once (keys come in name
order); ``COUNT`` is how many names one call examines (default 10, as
Redis; at most ``keys.SCAN_COUNT_MAX``).  ``MATCH`` is Redis's glob
(``crdtkv.resp.args.glob_matcher``).

Expiry.  EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT take NX, XX, GT and LT as
Redis does (a key without a TTL counts as an infinite one); a time at or
before now deletes the key and answers 1.  A TTL over ten years is refused
(crdtkv's bound, ``limits.TTL_MS_MAX``), where Redis would take it.

RENAME and RENAMENX read the whole value of the key (a string's value, a
hash's fields, a sorted set's members and scores, a set's members, a list's
elements in order; a HyperLogLog is merged into the new name; a vector set's
elements with their vectors and attributes), delete the new name, write the
value there (with the old key's TTL) and delete the old key: a few ops in
a row, atomic at this replica, **not across replicas**: a write to the old
key made concurrently at another replica survives there (the delete removes
only what this replica had seen), and the key then exists under both names.

FLUSHALL and FLUSHDB (ASYNC and SYNC alike) are refused unless the replica
was started with ``--enable-flushall``; then they delete every key with
``keys.delete`` ops, which replicate: every replica loses every key (a
concurrent write elsewhere survives, as for any DEL).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from crdtkv import limits
from crdtkv.errors import NotFound
from crdtkv.ops import keys as key_ops
from crdtkv.replica.keyspace import TYPES
from crdtkv.resp import args as A
from crdtkv.resp.commands import Context, command
from crdtkv.resp.values import OK, RespError, syntax_error
from crdtkv.resp.vsets import copy_vset

if TYPE_CHECKING:
    from crdtkv.resp.server import Connection

__all__ = ["copy_value", "scan_keys"]

_GROUP = "generic"
_MANY = (1, -1, 1)
_SCAN_COUNT_DEFAULT = 10  # Redis's SCAN COUNT default
_CHUNK_BYTES = 512 * 1024  # a copied value is written in ops of at most about this much


# -- DEL, UNLINK, EXISTS ------------------------------------------------------------------------
def _delete(ctx: Context, argv: list[bytes]) -> int:
    return sum(bool(ctx.apply({"op": "keys.delete", "key": A.text(b)})["deleted"]) for b in argv)


@command(
    "DEL",
    -2,
    writes=True,
    group=_GROUP,
    keys=_MANY,
    summary="Deletes one or more keys.",
)
def del_(ctx: Context, argv: list[bytes]) -> Any:
    return _delete(ctx, argv)


@command(
    "UNLINK",
    -2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    keys=_MANY,
    summary="Asynchronously deletes one or more keys.",
)
def unlink(ctx: Context, argv: list[bytes]) -> Any:
    return _delete(ctx, argv)


@command(
    "EXISTS",
    -2,
    group=_GROUP,
    flags=("fast",),
    keys=_MANY,
    summary="Determines whether one or more keys exist.",
)
def exists(ctx: Context, argv: list[bytes]) -> Any:
    # A key named twice counts twice, as in Redis.
    return sum(bool(ctx.apply({"op": "keys.exists", "key": A.text(b)})["exists"]) for b in argv)


# -- EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT ---------------------------------------------------------
_LLONG_MAX_S = limits.INT64_MAX // 1000
_LLONG_MIN_S = -((-limits.INT64_MIN) // 1000)  # C's division truncates toward zero


def _expire(ctx: Context, argv: list[bytes], cmd: str, seconds: bool, absolute: bool) -> int:
    """Redis's ``expireGenericCommand``: options, then the time, then the key."""
    nx = xx = gt = lt = False
    for b in argv[2:]:
        opt = A.upper(b)
        if opt == "NX":
            nx = True
        elif opt == "XX":
            xx = True
        elif opt == "GT":
            gt = True
        elif opt == "LT":
            lt = True
        else:
            raise RespError(f"ERR Unsupported option {b.decode('utf-8', 'replace')}")
    if nx and (xx or gt or lt):
        raise RespError("ERR NX and XX, GT or LT options at the same time are not compatible")
    if gt and lt:
        raise RespError("ERR GT and LT options at the same time are not compatible")
    when = A.integer(argv[1])
    invalid = f"ERR invalid expire time in '{cmd}' command"
    if seconds:
        if not _LLONG_MIN_S <= when <= _LLONG_MAX_S:
            raise RespError(invalid)
        when *= 1000
    now = ctx.now_ms()
    base = 0 if absolute else now
    if when > limits.INT64_MAX - base:
        raise RespError(invalid)
    when += base
    key = A.text(argv[0])
    left = int(ctx.apply({"op": "keys.ttl", "key": key})["ttl_ms"])
    if left == -2:
        return 0
    current = None if left == -1 else now + left  # None: no TTL (an infinite one)
    if nx and current is not None:
        return 0
    if xx and current is None:
        return 0
    if gt and (current is None or when <= current):
        return 0
    if lt and current is not None and when >= current:
        return 0
    if when <= now:  # already past: the key goes, as Redis deletes it
        ctx.apply({"op": "keys.delete", "key": key})
        return 1
    if when - now > limits.TTL_MS_MAX:
        raise RespError(f"{invalid} (over ten years)")
    ctx.apply({"op": "keys.expire", "key": key, "ttl_ms": when - now})
    return 1


@command(
    "EXPIRE",
    -3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Sets the expiration time of a key in seconds.",
)
def expire(ctx: Context, argv: list[bytes]) -> Any:
    return _expire(ctx, argv, "expire", seconds=True, absolute=False)


@command(
    "PEXPIRE",
    -3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Sets the expiration time of a key in milliseconds.",
)
def pexpire(ctx: Context, argv: list[bytes]) -> Any:
    return _expire(ctx, argv, "pexpire", seconds=False, absolute=False)


@command(
    "EXPIREAT",
    -3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Sets the expiration time of a key to a Unix timestamp.",
)
def expireat(ctx: Context, argv: list[bytes]) -> Any:
    return _expire(ctx, argv, "expireat", seconds=True, absolute=True)


@command(
    "PEXPIREAT",
    -3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Sets the expiration time of a key to a Unix milliseconds timestamp.",
)
def pexpireat(ctx: Context, argv: list[bytes]) -> Any:
    return _expire(ctx, argv, "pexpireat", seconds=False, absolute=True)


# -- SCAN, KEYS -------------------------------------------------------------------------------
def scan_keys(
    ctx: Context,
    cursor: str,
    count: int,
    match: Callable[[str], bool] | None = None,
    type_: str | None = None,
) -> tuple[list[str], str]:
    """One ``keys.scan`` page, filtered by a Redis glob: (keys, next cursor or "")."""
    page = ctx.apply(
        {
            "op": "keys.scan",
            "cursor": cursor or None,
            "count": min(count, key_ops.SCAN_COUNT_MAX),
            "type": type_,
        }
    )
    found: list[str] = page["keys"]
    if match is not None:
        found = [k for k in found if match(k)]
    return found, str(page["cursor"])


def _every_key(ctx: Context, match: Callable[[str], bool] | None = None) -> Iterator[str]:
    cursor = ""
    while True:
        found, cursor = scan_keys(ctx, cursor, key_ops.SCAN_COUNT_MAX, match)
        yield from found
        if not cursor:
            return


@command(
    "SCAN",
    -2,
    group=_GROUP,
    keys=(0, 0, 0),
    summary="Iterates over the key names in the database.",
)
def scan(ctx: Context, argv: list[bytes]) -> Any:
    cursor = A.decode_cursor(argv[0])
    count, pattern, kind = A.scan_options(argv[1:], _SCAN_COUNT_DEFAULT, with_type=True)
    match = A.glob_matcher(pattern) if pattern is not None else None
    type_ = kind.decode("latin-1").lower() if kind is not None else None
    known = type_ is None or type_ in TYPES
    if not known:  # a type crdtkv does not have: no key has it
        return ["0", []]
    found, nxt = scan_keys(ctx, cursor, count, match, type_)
    return [A.encode_cursor(nxt), found]


@command(
    "KEYS",
    2,
    group=_GROUP,
    keys=(0, 0, 0),
    summary="Returns all key names that match a pattern.",
)
def keys(ctx: Context, argv: list[bytes]) -> Any:
    return list(_every_key(ctx, A.glob_matcher(argv[0])))


# -- RENAME, RENAMENX ---------------------------------------------------------------------------
def _chunks(items: list[Any], size: Callable[[Any], int]) -> Iterator[list[Any]]:
    """``items`` in runs of at most ``MEMBERS_PER_OP_MAX`` and about ``_CHUNK_BYTES``."""
    run: list[Any] = []
    nbytes = 0
    for item in items:
        run.append(item)
        nbytes += size(item)
        if len(run) >= limits.MEMBERS_PER_OP_MAX or nbytes >= _CHUNK_BYTES:
            yield run
            run, nbytes = [], 0
    if run:
        yield run


def _text_size(s: object) -> int:
    return len(str(s).encode("utf-8")) + 16


def copy_value(ctx: Context, src: str, dst: str, type_: str) -> None:
    """Write the whole value of ``src`` (of type ``type_``) at ``dst`` (absent)."""
    if type_ == "string":
        value = ctx.apply({"op": "registers.get", "key": src})["value"]
        ctx.apply({"op": "registers.set", "key": dst, "value": value})
    elif type_ == "hash":
        fields = list(ctx.apply({"op": "hashes.getall", "key": src})["fields"].items())
        for run in _chunks(fields, lambda fv: _text_size(fv[0]) + _text_size(fv[1])):
            ctx.apply({"op": "hashes.set", "key": dst, "fields": dict(run)})
    elif type_ == "zset":
        items = ctx.apply({"op": "zsets.get", "key": src})["items"]
        for run in _chunks(items, lambda ms: _text_size(ms[0])):
            ctx.apply({"op": "zsets.add", "key": dst, "scores": {m: s for m, s in run}})
    elif type_ == "set":
        members = ctx.apply({"op": "sets.get", "key": src})["members"]
        for run in _chunks(members, _text_size):
            ctx.apply({"op": "sets.add", "key": dst, "members": run})
    elif type_ == "hll":
        ctx.apply({"op": "hlls.merge", "key": dst, "sources": [src]})
    elif type_ == "list":
        n = int(ctx.apply({"op": "lists.length", "key": src})["length"])
        step = limits.RANGE_MAX
        for start in range(0, n, step):
            op = {"op": "lists.range", "key": src, "start": start, "stop": start + step - 1}
            for run in _chunks(ctx.apply(op)["values"], _text_size):
                ctx.apply({"op": "lists.rpush", "key": dst, "values": run})
    elif type_ == "vectorset":
        copy_vset(ctx, src, dst)
    else:  # pragma: no cover - every type of TYPES is above
        raise RespError(f"ERR a key of type {type_} cannot be renamed")


def _rename(ctx: Context, argv: list[bytes], nx: bool) -> Any:
    src, dst = A.text(argv[0]), A.text(argv[1])
    type_ = str(ctx.apply({"op": "keys.type", "key": src})["type"])
    if type_ == key_ops.NONE:
        raise RespError("ERR no such key")
    if src == dst:
        return 0 if nx else OK
    if ctx.apply({"op": "keys.exists", "key": dst})["exists"]:
        if nx:
            return 0
        ctx.apply({"op": "keys.delete", "key": dst})
    left = int(ctx.apply({"op": "keys.ttl", "key": src})["ttl_ms"])
    try:
        copy_value(ctx, src, dst, type_)
    except NotFound:  # pragma: no cover - it was there a moment ago, in this same turn
        raise RespError("ERR no such key") from None
    ctx.apply({"op": "keys.delete", "key": src})
    if left >= 0:  # the old key's TTL goes with it
        ctx.apply({"op": "keys.expire", "key": dst, "ttl_ms": max(left, 1)})
    return 1 if nx else OK


@command(
    "RENAME",
    3,
    writes=True,
    group=_GROUP,
    keys=(1, 2, 1),
    summary="Renames a key and overwrites the destination.",
)
def rename(ctx: Context, argv: list[bytes]) -> Any:
    return _rename(ctx, argv, nx=False)


@command(
    "RENAMENX",
    3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    keys=(1, 2, 1),
    summary="Renames a key only when the target key name doesn't exist.",
)
def renamenx(ctx: Context, argv: list[bytes]) -> Any:
    return _rename(ctx, argv, nx=True)


# -- FLUSHALL, FLUSHDB --------------------------------------------------------------------------
def _flush(ctx: Context, argv: list[bytes], cmd: str) -> Any:
    if len(argv) > 1 or (argv and A.upper(argv[0]) not in ("ASYNC", "SYNC")):
        raise syntax_error()
    if not cast("Connection", ctx).server.flushall:
        raise RespError(
            f"ERR {cmd} is disabled: it deletes every key at every replica; start the "
            "replica with --enable-flushall to allow it"
        )
    for key in list(_every_key(ctx)):
        ctx.apply({"op": "keys.delete", "key": key})
    return OK


@command(
    "FLUSHALL",
    -1,
    writes=True,
    group="server",
    keys=(0, 0, 0),
    summary="Removes all keys from all databases.",
)
def flushall(ctx: Context, argv: list[bytes]) -> Any:
    return _flush(ctx, argv, "FLUSHALL")


@command(
    "FLUSHDB",
    -1,
    writes=True,
    group="server",
    keys=(0, 0, 0),
    summary="Remove all keys from the current database.",
)
def flushdb(ctx: Context, argv: list[bytes]) -> Any:
    return _flush(ctx, argv, "FLUSHDB")

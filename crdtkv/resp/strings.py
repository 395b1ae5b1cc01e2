"""String commands that are more than one op: SET with its options, MGET, MSET, ...

Each runs a few ops of the op table in a row at one replica: atomic there
(nothing else runs in between), not across replicas.  ``SET k v NX`` at two
replicas at once can succeed at both; the later write (by HLC) wins
everywhere, as any SET.  ``APPEND`` reads the value and writes the whole new
one (a last-writer-wins write): two concurrent APPENDs keep one of them.

GET, INCR, INCRBY, DECR, DECRBY and INCRBYFLOAT are plain ops: their RESP
column is in ``crdtkv.ops.table``.
"""

from __future__ import annotations

from typing import Any

from crdtkv import limits
from crdtkv.errors import NotFound, WrongType
from crdtkv.ops.table import OPS
from crdtkv.resp import args as A
from crdtkv.resp.commands import Context, command
from crdtkv.resp.values import OK, RespError, json_bulk, syntax_error

__all__: list[str] = []

_SET = OPS["registers.set"]

_GROUP = "string"


def _get(ctx: Context, key: str) -> str | None:
    """GET's answer (None: absent); ``WrongType`` for another type."""
    try:
        return json_bulk(ctx.apply({"op": "registers.get", "key": key})["value"])
    except NotFound:
        return None


def _ttl_ms(ctx: Context, key: str) -> int:
    """PTTL: -2 absent, -1 no TTL."""
    return int(ctx.apply({"op": "keys.ttl", "key": key})["ttl_ms"])


def _set(ctx: Context, key: str, value: str, ttl_ms: int | None) -> None:
    """Redis's SET: it replaces a key of any type (a delete, then the write)."""
    if ttl_ms is not None and ttl_ms <= 0:  # an expiry time already past: the key goes
        ctx.apply({"op": "keys.delete", "key": key})
        return
    op = {"key": key, "value": value, "ttl_ms": ttl_ms}
    try:
        ctx.run_op(_SET, op)
    except WrongType:  # refused before anything changed
        ctx.apply({"op": "keys.delete", "key": key})
        ctx.run_op(_SET, op)


def _expire_ms(ctx: Context, unit: str, b: bytes, cmd: str) -> int:
    """EX / PX / EXAT / PXAT's argument as milliseconds from now."""
    n = A.integer(b)
    if n <= 0:
        raise RespError(f"ERR invalid expire time in '{cmd}' command")
    if unit == "EX":
        ms = n * 1000
    elif unit == "PX":
        ms = n
    elif unit == "EXAT":
        ms = n * 1000 - ctx.now_ms()
    else:  # PXAT
        ms = n - ctx.now_ms()
    if ms > limits.TTL_MS_MAX:
        raise RespError(f"ERR invalid expire time in '{cmd}' command (over ten years)")
    return ms


@command(
    "SET",
    -3,
    writes=True,
    group=_GROUP,
    summary="Sets the string value of a key, "
    "ignoring its type. The key is created if it doesn't exist.",
)
def set_(ctx: Context, argv: list[bytes]) -> Any:
    key, value = A.text(argv[0]), A.text(argv[1])
    nx = xx = get = keepttl = False
    ttl_ms: int | None = None
    expiry = None
    i = 2
    while i < len(argv):
        opt = A.upper(argv[i])
        if opt == "NX" and not xx:
            nx = True
        elif opt == "XX" and not nx:
            xx = True
        elif opt == "GET":
            get = True
        elif opt == "KEEPTTL" and expiry is None:
            keepttl = True
        elif opt in ("EX", "PX", "EXAT", "PXAT") and expiry is None and not keepttl:
            if i + 1 >= len(argv):
                raise syntax_error()
            expiry = opt
            ttl_ms = _expire_ms(ctx, opt, argv[i + 1], "set")
            i += 1
        else:
            raise syntax_error()
        i += 1
    old = _get(ctx, key) if get else None  # WRONGTYPE before anything changes
    if nx or xx:
        exists = bool(ctx.apply({"op": "keys.exists", "key": key})["exists"])
        if (nx and exists) or (xx and not exists):
            return old if get else None
    if keepttl:
        left = _ttl_ms(ctx, key)
        ttl_ms = left if left > 0 else None
    _set(ctx, key, value, ttl_ms)
    return old if get else OK


@command(
    "SETNX",
    3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Set the string value of a key only when the key doesn't exist.",
)
def setnx(ctx: Context, argv: list[bytes]) -> Any:
    key, value = A.text(argv[0]), A.text(argv[1])
    if ctx.apply({"op": "keys.exists", "key": key})["exists"]:
        return 0
    _set(ctx, key, value, None)
    return 1


@command(
    "SETEX",
    4,
    writes=True,
    group=_GROUP,
    summary="Sets the string value and expiration time of a key.",
)
def setex(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    ttl_ms = _expire_ms(ctx, "EX", argv[1], "setex")
    _set(ctx, key, A.text(argv[2]), ttl_ms)
    return OK


@command(
    "PSETEX",
    4,
    writes=True,
    group=_GROUP,
    summary="Sets both string value and expiration time in milliseconds of a key.",
)
def psetex(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    ttl_ms = _expire_ms(ctx, "PX", argv[1], "psetex")
    _set(ctx, key, A.text(argv[2]), ttl_ms)
    return OK


@command(
    "GETSET",
    3,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns the previous string value of a key after setting it to a new value.",
)
def getset(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    old = _get(ctx, key)
    _set(ctx, key, A.text(argv[1]), None)
    return old


@command(
    "GETDEL",
    2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns the string value of a key after deleting the key.",
)
def getdel(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    old = _get(ctx, key)
    if old is not None:
        ctx.apply({"op": "keys.delete", "key": key})
    return old


@command(
    "GETEX",
    -2,
    writes=True,
    group=_GROUP,
    flags=("fast",),
    summary="Returns the string value of a key after setting its expiration time.",
)
def getex(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    ttl_ms: int | None = None
    persist = False
    if len(argv) == 2 and A.upper(argv[1]) == "PERSIST":
        persist = True
    elif len(argv) == 3 and A.upper(argv[1]) in ("EX", "PX", "EXAT", "PXAT"):
        ttl_ms = _expire_ms(ctx, A.upper(argv[1]), argv[2], "getex")
    elif len(argv) != 1:
        raise syntax_error()
    value = _get(ctx, key)
    if value is None:
        return None
    if persist:
        ctx.apply({"op": "keys.persist", "key": key})
    elif ttl_ms is not None:
        if ttl_ms <= 0:
            ctx.apply({"op": "keys.delete", "key": key})
        else:
            ctx.apply({"op": "keys.expire", "key": key, "ttl_ms": ttl_ms})
    return value


@command(
    "MGET",
    -2,
    group=_GROUP,
    flags=("fast",),
    keys=(1, -1, 1),
    summary="Atomically returns the string values of one or more keys.",
)
def mget(ctx: Context, argv: list[bytes]) -> Any:
    out: list[str | None] = []
    for b in argv:
        try:
            out.append(_get(ctx, A.text(b)))
        except WrongType:
            out.append(None)  # as Redis: a key of another type reads as nil
    return out


def _pairs(argv: list[bytes], cmd: str) -> list[tuple[str, str]]:
    if len(argv) % 2:
        raise RespError(f"ERR wrong number of arguments for '{cmd}' command")
    return [(A.text(argv[i]), A.text(argv[i + 1])) for i in range(0, len(argv), 2)]


@command(
    "MSET",
    -3,
    writes=True,
    group=_GROUP,
    keys=(1, -1, 2),
    summary="Atomically creates or modifies the string values of one or more keys.",
)
def mset(ctx: Context, argv: list[bytes]) -> Any:
    for key, value in _pairs(argv, "mset"):
        _set(ctx, key, value, None)
    return OK


@command(
    "MSETNX",
    -3,
    writes=True,
    group=_GROUP,
    keys=(1, -1, 2),
    summary="Atomically modifies the string values of one or more keys only when all "
    "keys don't exist.",
)
def msetnx(ctx: Context, argv: list[bytes]) -> Any:
    pairs = _pairs(argv, "msetnx")
    if any(ctx.apply({"op": "keys.exists", "key": k})["exists"] for k, _ in pairs):
        return 0
    for key, value in pairs:
        _set(ctx, key, value, None)
    return 1


@command(
    "APPEND",
    3,
    writes=True,
    group=_GROUP,
    summary="Appends a string to the value of a key. Creates the key if it doesn't exist.",
)
def append(ctx: Context, argv: list[bytes]) -> Any:
    key, tail = A.text(argv[0]), A.text(argv[1])
    old = _get(ctx, key)
    value = (old or "") + tail
    left = _ttl_ms(ctx, key) if old is not None else -1
    ctx.apply(
        {"op": "registers.set", "key": key, "value": value, "ttl_ms": left if left > 0 else None}
    )
    return len(value.encode("utf-8"))


@command(
    "STRLEN", 2, group=_GROUP, flags=("fast",), summary="Returns the length of a string value."
)
def strlen(ctx: Context, argv: list[bytes]) -> Any:
    value = _get(ctx, A.text(argv[0]))
    return 0 if value is None else len(value.encode("utf-8"))

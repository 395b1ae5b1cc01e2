"""Reading a RESP command's arguments (bytes) with Redis's error texts.  Pure.

Keys, members, field names and string values are text in crdtkv (the HTTP
API is JSON), so a RESP argument must be UTF-8; anything else is refused
with an error that says so, and nothing changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from crdtkv import limits
from crdtkv.resp.values import RespError, syntax_error

__all__ = [
    "NOT_FLOAT",
    "NOT_INTEGER",
    "floating",
    "integer",
    "key",
    "key_int",
    "key_member",
    "key_members",
    "key_only",
    "no_more",
    "text",
    "texts",
    "upper",
]

NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
_INT = re.compile(rb"-?(0|[1-9][0-9]{0,18})")
_FLOAT = re.compile(rb"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf(inity)?", re.IGNORECASE)


def text(b: bytes) -> str:
    """An argument as text; not UTF-8 is refused."""
    if b.isascii():
        return b.decode("ascii")
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise RespError(
            "ERR crdtkv keys, members and values are UTF-8 text; an argument is not valid UTF-8"
        ) from None


def key(b: bytes) -> str:
    """A key: 1 to ``KEY_BYTES_MAX`` bytes of UTF-8 (``spec.validate_key``'s rule)."""
    n = len(b)
    if n == 0:
        raise RespError("ERR key must not be empty")
    if n > limits.KEY_BYTES_MAX:
        raise RespError(f"ERR key is {n} bytes; the limit is {limits.KEY_BYTES_MAX}")
    return text(b)


def texts(bs: list[bytes]) -> list[str]:
    return [text(b) for b in bs]


def upper(b: bytes) -> str:
    """An option or subcommand name, upper-cased (ASCII only)."""
    return b.decode("latin-1").upper()


def integer(b: bytes, lo: int = limits.INT64_MIN, hi: int = limits.INT64_MAX) -> int:
    """A 64-bit integer as Redis reads one (no spaces, no ``+``, no leading zeros)."""
    if not _INT.fullmatch(b):
        raise RespError(NOT_INTEGER)
    n = int(b)
    if not lo <= n <= hi:
        raise RespError(NOT_INTEGER)
    return n


def floating(b: bytes, *, finite: bool = True, message: str = NOT_FLOAT) -> float:
    """A double as Redis reads one; ``inf`` only when not ``finite``."""
    if not _FLOAT.fullmatch(b):
        raise RespError(message)
    x = float(b)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise RespError(message)
    return x


def no_more(argv: list[bytes], i: int) -> None:
    if i < len(argv):
        raise syntax_error()


def key_only(argv: list[bytes]) -> dict[str, object]:
    """The arguments of a command that takes one key and nothing else."""
    return {"key": text(argv[0])}


def key_members(field: str) -> Callable[[list[bytes]], dict[str, object]]:
    """A key, then one or more strings: the op's list field ``field``."""

    def parse(argv: list[bytes]) -> dict[str, object]:
        return {"key": text(argv[0]), field: texts(argv[1:])}

    return parse


def key_member(field: str) -> Callable[[list[bytes]], dict[str, object]]:
    """A key, then one string: the op's field ``field``."""

    def parse(argv: list[bytes]) -> dict[str, object]:
        return {"key": text(argv[0]), field: text(argv[1])}

    return parse


def key_int(field: str, default: int | None = None) -> Callable[[list[bytes]], dict[str, object]]:
    """A key, then an integer (``default`` when the command has none: INCR)."""

    def parse(argv: list[bytes]) -> dict[str, object]:
        if len(argv) > 1:
            return {"key": text(argv[0]), field: integer(argv[1])}
        return {"key": text(argv[0]), field: default}

    return parse

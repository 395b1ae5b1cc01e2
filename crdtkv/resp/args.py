"""Reading a RESP command's arguments (bytes) with Redis's error texts.  Pure.

Keys, members, field names and string values are text in crdtkv (the HTTP
API is JSON), so a RESP argument must be UTF-8; anything else is refused
with an error that says so, and nothing changes.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import OrderedDict
from collections.abc import Callable

from crdtkv import limits
from crdtkv.resp.values import RespError, syntax_error

__all__ = [
    "INVALID_CURSOR",
    "NOT_FLOAT",
    "NOT_INTEGER",
    "decode_cursor",
    "encode_cursor",
    "floating",
    "glob_matcher",
    "integer",
    "key",
    "key_int",
    "key_member",
    "key_members",
    "key_only",
    "no_more",
    "scan_options",
    "text",
    "texts",
    "upper",
]

NOT_INTEGER = "ERR value is not an integer or out of range"
NOT_FLOAT = "ERR value is not a valid float"
INVALID_CURSOR = "ERR invalid cursor"
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


def scan_options(
    argv: list[bytes], count: int, *, with_type: bool = False
) -> tuple[int, bytes | None, bytes | None]:
    """[MATCH pattern] [COUNT count] (and [TYPE type] when ``with_type``: SCAN), as
    Redis's scanGenericCommand reads them: the count (``count`` when absent), and the
    pattern and the type as given (None when absent)."""
    match: bytes | None = None
    type_: bytes | None = None
    i = 0
    while i < len(argv):
        opt = upper(argv[i])
        if len(argv) - i < 2:
            raise syntax_error()
        value = argv[i + 1]
        if opt == "COUNT":
            count = integer(value)
            if count < 1:
                raise syntax_error()
        elif opt == "MATCH":
            match = value
        elif opt == "TYPE" and with_type:
            type_ = value
        else:
            raise syntax_error()
        i += 2
    return count, match, type_


# -- scan cursors --------------------------------------------------------------------------------
# crdtkv's scans continue from a string (a key, or ">" and a member); Redis's cursors are
# unsigned 64-bit numbers, and clients parse them so (redis-cli with strtoull, redis-py
# with int()).  A string of at most 7 UTF-8 bytes travels in the number itself: a 0x01
# byte, then the bytes, read big-endian.  A longer one is kept in a table at this
# replica and travels as its number there, after a 0x02 byte: such a cursor resumes at
# this replica only, while it is among the last ``_CURSOR_TABLE_MAX`` handed out.  "0"
# is the start and the end of a scan, as in Redis.
_INLINE_CURSOR_BYTES = 7
_CURSOR_TABLE_MAX = 262_144
_long_cursors: OrderedDict[int, str] = OrderedDict()
_next_long = itertools.count(1)


def encode_cursor(cursor: str) -> bytes | str:
    """A scan's string cursor ("" at the start and end) as a Redis cursor (64 bits)."""
    if not cursor:
        return "0"
    raw = cursor.encode("utf-8")
    if len(raw) > _INLINE_CURSOR_BYTES:
        n = next(_next_long)
        _long_cursors[n] = cursor
        while len(_long_cursors) > _CURSOR_TABLE_MAX:
            _long_cursors.popitem(last=False)
        raw = n.to_bytes(7, "big")
        return str(int.from_bytes(b"\x02" + raw, "big"))
    return str(int.from_bytes(b"\x01" + raw, "big"))


def decode_cursor(b: bytes) -> str:
    """A cursor back to the scan's string; ``ERR invalid cursor`` when it is not one
    ``encode_cursor`` made (or a long one this replica no longer holds)."""
    if b == b"0":
        return ""
    if not (0 < len(b) <= 20 and b.isdigit() and b[:1] != b"0"):
        raise RespError(INVALID_CURSOR)
    n = int(b)
    if n >= 2**64:
        raise RespError(INVALID_CURSOR)
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if raw[:1] == b"\x02" and len(raw) == 8:
        cursor = _long_cursors.get(int.from_bytes(raw[1:], "big"))
        if cursor is None:
            raise RespError(
                INVALID_CURSOR + " (it was given by another replica, or is too old: "
                "a scan resumes at the replica that gave its cursor)"
            )
        return cursor
    if raw[:1] != b"\x01" or len(raw) < 2:
        raise RespError(INVALID_CURSOR)
    try:
        return raw[1:].decode("utf-8")
    except UnicodeDecodeError:
        raise RespError(INVALID_CURSOR) from None


# -- glob patterns (KEYS, SCAN MATCH) ----------------------------------------------------------
_STAR = -1
_ANY = -2
# A byte, _STAR, _ANY or a class: (negated, its bytes, its (signed) ranges).
_Token = int | tuple[bool, frozenset[int], tuple[tuple[int, int], ...]]


def _signed(c: int) -> int:
    return c - 256 if c > 127 else c  # Redis compares range ends as (signed) chars


def _tokens(p: bytes) -> list[_Token]:
    """Redis's glob (``stringmatchlen``), parsed as it parses it: ``*``, ``?``,
    ``[...]`` (``^`` negates, ``a-z`` ranges, ``\\`` escapes, an unclosed class
    ends with the pattern), ``\\x`` a literal x."""
    out: list[_Token] = []
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == 0x2A:  # *
            if not out or out[-1] != _STAR:
                out.append(_STAR)
        elif c == 0x3F:  # ?
            out.append(_ANY)
        elif c == 0x5B:  # [
            i += 1
            neg = i < n and p[i] == 0x5E
            if neg:
                i += 1
            chars: set[int] = set()
            ranges: list[tuple[int, int]] = []
            while True:
                if i < n and p[i] == 0x5C and n - i >= 2:
                    i += 1
                    chars.add(p[i])
                elif i < n and p[i] == 0x5D:
                    break
                elif i >= n:
                    i -= 1
                    break
                elif n - i >= 3 and p[i + 1] == 0x2D:
                    lo, hi = _signed(p[i]), _signed(p[i + 2])
                    ranges.append((min(lo, hi), max(lo, hi)))
                    i += 2
                else:
                    chars.add(p[i])
                i += 1
            out.append((neg, frozenset(chars), tuple(ranges)))
        else:
            if c == 0x5C and n - i >= 2:  # backslash
                i += 1
            out.append(p[i])
        i += 1
    return out


def _one(tok: _Token, c: int) -> bool:
    if tok == _ANY:
        return True
    if isinstance(tok, int):
        return tok == c
    neg, chars, ranges = tok
    sc = _signed(c)
    hit = c in chars or any(lo <= sc <= hi for lo, hi in ranges)
    return hit != neg


def glob_matcher(pattern: bytes) -> Callable[[str], bool] | None:
    """Redis's glob match of a name (its UTF-8 bytes, as Redis matches bytes); None
    for ``*``, which matches everything (the empty name too, as SCAN's MATCH *)."""
    if pattern == b"*":
        return None
    if not any(ch in pattern for ch in b"*?[\\"):
        return lambda name: name.encode("utf-8") == pattern
    toks = _tokens(pattern)

    def match(name: str) -> bool:
        s = name.encode("utf-8")
        n = len(s)
        if n == 0:  # Redis's loop never runs: only the empty pattern matches
            return not pattern
        t, si = 0, 0
        star_t, star_s = -1, 0
        nt = len(toks)
        while si < n:
            if t < nt and toks[t] == _STAR:
                star_t, star_s = t, si
                t += 1
            elif t < nt and _one(toks[t], s[si]):
                t += 1
                si += 1
            elif star_t >= 0:
                star_s += 1
                si = star_s
                t = star_t + 1
            else:
                return False
        while t < nt and toks[t] == _STAR:
            t += 1
        return t == nt

    return match

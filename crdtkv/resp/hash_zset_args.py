"""Arguments and replies of the hash and sorted-set commands, as Redis 7.0 reads and
writes them.  Pure.

Used by the RESP column of the hash and sorted-set rows (``crdtkv.ops.hash_rows``,
``crdtkv.ops.zset_rows``) and by the composite commands of ``crdtkv.resp.hashes_zsets``.

- Hash values: a RESP ``HSET`` stores its value as the string it got; ``HINCRBY`` and
  ``HINCRBYFLOAT`` leave numbers.  ``hash_text`` writes any stored value as Redis would
  hold it: a string as itself, an integer in decimal, a double as ``HINCRBYFLOAT`` writes
  its result (plain decimal notation, no exponent, no trailing zeros: ``1.5``, ``3``,
  ``100000000000000000000``).  Redis computes ``HINCRBYFLOAT`` in long double, crdtkv in
  double: a sum that is not exact in binary can print differently (0.1 + 0.2 is
  ``0.3`` in Redis, ``0.30000000000000004`` here).
- Scores: ``ZADD`` and ``ZINCRBY`` read a score as Redis's ``string2d`` does (no leading
  space, no NaN, no overflow to infinity, ``inf`` spelled out is fine, hexadecimal too);
  range ends as ``zslParseRange`` does (``strtod``: leading spaces are fine, an
  overflowing number is an infinity, ``(`` excludes the end).
"""

from __future__ import annotations

import math
import re
from typing import Any

from crdtkv.resp import args as A
from crdtkv.resp.values import RespError, format_double, human_double

__all__ = [
    "LEX_ERROR",
    "RANGE_ERROR",
    "hash_increment",
    "hash_pairs",
    "hash_text",
    "human_double",
    "lex_bound",
    "score",
    "score_bound",
    "score_reply",
    "wrong_arity",
]

RANGE_ERROR = "ERR min or max is not a float"
LEX_ERROR = "ERR min or max not valid string range item"

_DEC = r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_HEX = r"0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?\d+)?"
_STRTOD = re.compile(rf"([+-]?)(?:({_DEC})|({_HEX})|(inf(?:inity)?)|(nan))", re.IGNORECASE)
_C_SPACE = " \t\n\v\f\r"
_TEXT_MAX = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS: a longer number is refused


def wrong_arity(cmd: str) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{cmd}' command")


def _strtod(s: str) -> tuple[float, bool] | None:
    """``s`` read whole by C's ``strtod``: (value, whether it overflowed or underflowed to
    an infinity or zero); None when ``strtod`` would stop before the end."""
    m = _STRTOD.fullmatch(s)
    if m is None:
        return None
    sign, dec, hexa, inf, nan = m.groups()
    neg = sign == "-"
    if nan is not None:
        return (math.nan, False)
    if inf is not None:
        return (-math.inf if neg else math.inf, False)
    if hexa is not None:
        text = hexa if "p" in hexa.lower() else hexa + "p0"
        try:
            x = float.fromhex(text)
        except OverflowError:
            return (-math.inf if neg else math.inf, True)
        return (-x if neg else x, False)
    x = float(dec)
    mantissa = dec.lower().split("e")[0]
    ranged = math.isinf(x) or (x == 0.0 and any(c in "123456789" for c in mantissa))
    return (-x if neg else x, ranged)


def score(b: bytes) -> float:
    """A score (ZADD, ZINCRBY) as Redis's ``string2d`` reads it; infinities allowed."""
    s = b.decode("latin-1")
    if not s or len(s) >= _TEXT_MAX or s[0] in _C_SPACE:
        raise RespError(A.NOT_FLOAT)
    got = _strtod(s)
    if got is None or got[1] or math.isnan(got[0]):
        raise RespError(A.NOT_FLOAT)
    return got[0]


def hash_increment(b: bytes) -> float:
    """HINCRBYFLOAT's increment: a finite double (Redis reads a long double, so an
    increment past a double's range, 1e400, is refused here)."""
    x = score(b)
    if math.isinf(x):
        raise RespError("ERR value is NaN or Infinity")
    return x


def _range_end(s: str) -> float | None:
    """One end of a score range as ``strtod`` reads it (None: not a float)."""
    if s == "":
        return 0.0  # strtod reads nothing and stops at the end: 0
    got = _strtod(s.lstrip(_C_SPACE))
    if got is None or math.isnan(got[0]) or s.lstrip(_C_SPACE) == "":
        return None
    return got[0]


def score_bound(b: bytes) -> float | str:
    """A score range end (ZCOUNT, ZRANGEBYSCORE) as the op takes it: a number for an
    included end, ``"(<number>"`` for an excluded one."""
    s = b.decode("latin-1")
    exclusive = s.startswith("(")
    x = _range_end(s[1:] if exclusive else s)
    if x is None:
        raise RespError(RANGE_ERROR)
    if not exclusive:
        return x
    return "(" + ("inf" if x == math.inf else "-inf" if x == -math.inf else repr(x))


def lex_bound(b: bytes) -> str:
    """A member range end (ZLEXCOUNT, ZRANGEBYLEX): ``-``, ``+``, ``[member``, ``(member``."""
    if b in (b"-", b"+") or b[:1] in (b"[", b"("):
        return A.text(b)
    raise RespError(LEX_ERROR)


def score_reply(s: Any) -> float:
    """A score of an op's result (a number, or "inf" / "-inf") as the reply's double."""
    return float(s)


def hash_text(v: Any) -> str:
    """A hash field's value as its bulk string: a string as itself, a number as Redis
    would hold it (see the module docstring)."""
    t = type(v)
    if t is str:
        return v  # type: ignore[no-any-return]
    if t is int:
        return str(v)
    if t is float:
        return human_double(v)
    if t is bytes:
        return v.decode("utf-8", "replace")  # type: ignore[no-any-return]
    return format_double(float(v))


def hash_pairs(cmd: str, argv: list[bytes]) -> dict[str, Any]:
    """HSET / HMSET key field value [field value ...] -> the op's fields (later wins)."""
    if len(argv) % 2 == 0:
        raise wrong_arity(cmd)
    fields = {A.text(argv[i]): A.text(argv[i + 1]) for i in range(1, len(argv), 2)}
    return {"key": A.text(argv[0]), "fields": fields}

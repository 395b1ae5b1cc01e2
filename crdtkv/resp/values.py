"""RESP reply values and their encoding, RESP2 and RESP3.  Pure.

A command returns a plain Python value and ``encode`` writes it in the
connection's protocol version:

=====================  ===========================  ===========================
value                  RESP2                        RESP3
=====================  ===========================  ===========================
``None``               null bulk ``$-1``            null ``_``
``NULL_ARRAY``         null array ``*-1``           null ``_``
``bytes`` / ``str``    bulk string                  bulk string
``int``                integer                      integer
``bool``               integer 1 / 0                boolean ``#t`` / ``#f``
``float``              bulk string (Redis's text)   double ``,``
``list`` / ``tuple``   array                        array
``RMap``               flat array k1 v1 k2 v2 ...   map ``%``
``RSet``               array                        set ``~``
``Status``             simple string ``+``          simple string ``+``
``RespError``          error ``-``                  error ``-``
=====================  ===========================  ===========================
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

__all__ = [
    "NULL_ARRAY",
    "OK",
    "QUEUED",
    "RMap",
    "RSet",
    "RespError",
    "Status",
    "encode",
    "format_double",
    "human_double",
    "json_bulk",
    "syntax_error",
]


class Status(str):
    """A simple string reply (``+OK``)."""

    __slots__ = ()


class RespError(Exception):
    """An error reply.  ``text`` starts with its code: ``ERR ...``, ``WRONGTYPE ...``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        # An error line must stay one line.
        self.text = text.replace("\r", " ").replace("\n", " ")


class RMap(list[tuple[Any, Any]]):
    """A map reply: a list of (key, value) pairs, kept in order."""

    __slots__ = ()


class RSet(list[Any]):
    """A set reply (``SMEMBERS``)."""

    __slots__ = ()


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Any = _NullArray()
OK = Status("OK")
QUEUED = Status("QUEUED")


def syntax_error() -> RespError:
    return RespError("ERR syntax error")


_DECIMALS = Decimal("1e-17")
_CONTEXT = Context(prec=400, rounding=ROUND_HALF_EVEN)


def human_double(x: float) -> str:
    """A double as Redis's ``INCRBYFLOAT`` and ``HINCRBYFLOAT`` write it (``ld2string``
    in human mode): plain decimal notation, no exponent, no trailing zeros.  (Redis adds
    in long double, crdtkv in double: an inexact sum can differ in its last digits.)"""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer():
        return str(int(x))
    # "%.17Lf": at most 17 decimals (of the shortest text that reads back as x).
    d = Decimal(repr(x)).quantize(_DECIMALS, context=_CONTEXT)
    text = format(d, "f").rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def json_bulk(value: Any) -> str | None:
    """A string key's value (any JSON) as the bulk string GET answers: a string as
    itself, a number as its decimal text, anything else (an object, a list, a
    bool, null) as its JSON text."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is int:
        return str(value)
    if t is float:
        return human_double(value)
    import orjson

    return orjson.dumps(value).decode()


_LLONG_HALF = float(2**62)  # (double)(LLONG_MAX/2): the integers Redis writes as such


def format_double(x: float) -> str:
    """A double as Redis 7.2 writes it (``d2string``): ``3``, ``-0``, ``1.5``,
    ``0.00001``, ``1.5e-7``, ``1e+20``, ``inf``, ``-inf``, ``nan``.

    An integer within +-2^62 is written as one; anything else as ``fpconv_dtoa``
    does: the shortest digits that read back as ``x`` (``repr``'s), plain when
    the exponent is small, else scientific with an unpadded exponent."""
    if -_LLONG_HALF <= x <= _LLONG_HALF and x == int(x):
        if x == 0 and math.copysign(1.0, x) < 0:
            return "-0"
        return str(int(x))
    if x != x:
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = repr(x)
    if "e" not in text and len(text) - text.index(".") <= 7:
        return text  # six decimals or fewer: plain, as fpconv writes them too
    mantissa, _, e = text.partition("e")
    return _fpconv(mantissa, int(e or 0))


def _fpconv(mantissa: str, e: int) -> str:
    """fpconv's ``emit_digits`` for the digits of ``mantissa`` times 10**e."""
    sign = "-" if mantissa[0] == "-" else ""
    whole, _, frac = mantissa.lstrip("-").partition(".")
    digits = (whole + frac).lstrip("0")
    k = e - len(frac)  # the value is digits * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    nd = len(digits)
    exp = abs(k + nd - 1)
    if k >= 0 and exp < nd + 7:
        return sign + digits + "0" * k
    if k < 0 and (k > -7 or exp < 4):
        offset = nd + k
        if offset <= 0:
            return f"{sign}0.{'0' * -offset}{digits}"
        return f"{sign}{digits[:offset]}.{digits[offset:]}"
    nd = min(nd, 18 - len(sign))
    rest = "." + digits[1:nd] if nd > 1 else ""
    esign = "-" if k + nd - 1 < 0 else "+"
    return f"{sign}{digits[0]}{rest}e{esign}{exp}"


_CRLF = b"\r\n"


def encode(value: Any, proto: int, out: list[bytes]) -> None:
    """Append ``value``'s encoding in protocol ``proto`` (2 or 3) to ``out``."""
    t = type(value)
    if t is bytes:
        out.append(b"$%d\r\n%s\r\n" % (len(value), value))
    elif t is str:
        b = value.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    elif t is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if proto == 3 else b"$-1\r\n")
    elif t is Status:
        out.append(b"+%s\r\n" % value.encode())
    elif t is list or t is tuple:
        out.append(b"*%d\r\n" % len(value))
        for v in value:
            encode(v, proto, out)
    elif t is bool:
        if proto == 3:
            out.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            out.append(b":1\r\n" if value else b":0\r\n")
    elif t is float:
        text = format_double(value).encode()
        if proto == 3:
            out.append(b",%s\r\n" % text)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(text), text))
    elif t is RMap:
        if proto == 3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))
        for k, v in value:
            encode(k, proto, out)
            encode(v, proto, out)
    elif t is RSet:
        out.append((b"~%d\r\n" if proto == 3 else b"*%d\r\n") % len(value))
        for v in value:
            encode(v, proto, out)
    elif isinstance(value, RespError):
        out.append(b"-%s\r\n" % value.text.encode("utf-8", "replace"))
    elif value is NULL_ARRAY:
        out.append(b"_\r\n" if proto == 3 else b"*-1\r\n")
    else:
        raise TypeError(f"no RESP encoding for {type(value).__name__}")

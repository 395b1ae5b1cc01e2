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
        return format_double(value)
    import orjson

    return orjson.dumps(value).decode()


def format_double(x: float) -> str:
    """A double as Redis writes it: ``3``, ``1.5``, ``inf``, ``-inf``, ``1e+20``."""
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e17:
        return str(int(x))
    return repr(x)


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

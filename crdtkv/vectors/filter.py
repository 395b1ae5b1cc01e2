"""Redis's FILTER expressions for vector sets (``VSIM ... FILTER expr``).

The language of redis/redis ``modules/vector-sets/expr.c``, evaluated against an
element's attributes (a JSON object; only its top-level fields are reachable):

- values: numbers (``3``, ``-2.5``, ``1e3``), strings in single or double quotes
  (escapes ``\\" \\' \\\\ \\n \\r \\t``), ``null``, tuples of numbers and strings
  (``[1, "a"]``), and selectors ``.field`` (letters, digits, ``_`` and ``-``);
- operators, tightest first: ``!``/``not``; ``**`` (right associative);
  ``* / %``; ``+ -``; ``> >= < <= == != in``; ``and``/``&&``; ``or``/``||``;
  parentheses.
- ``in`` tests membership in a tuple, or, between two strings, substring.
- JSON ``true``/``false`` are the numbers 1 and 0; arrays are tuples; a nested
  object is not a value.  There are no ``true``/``false`` literals in expressions.
- Conversions as Redis: arithmetic and ordering read a string as a number when
  the whole string is one (else 0); ``==`` compares strings as strings, numbers
  as numbers, ``null`` equals only ``null``, anything else as numbers.  Truth:
  0, ``""`` and ``null`` are false, every other value true.
- A selector whose field is missing (or whose attributes are absent, not a JSON
  object, or malformed, or whose value is a nested object) makes the whole
  expression false, wherever it appears, as in Redis (no short circuit).

Two points follow Redis's later fixes rather than the letter of the first
``expr.c``: consecutive unary operators (``!!x``, ``not not x``) compile, and
escapes in string literals are decoded (tests ``filter_double_not.py`` and
``filter_string_escape.py``).  A syntax error raises
:class:`crdtkv.errors.BadRequest` with Redis's text (without its ``ERR ``
prefix): ``syntax error in FILTER expression near: <rest>``.

Pure: no I/O, no clock.  Parsed attributes are cached (a bounded LRU keyed by the
JSON text), since one query evaluates many elements and elements keep their
attributes between queries.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeAlias, cast

import orjson

from crdtkv.errors import BadRequest

__all__ = ["Filter", "compile_filter", "parse_attrs"]


class _Null:
    """The ``null`` value (JSON null, or the literal)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "null"


NULL = _Null()

Value: TypeAlias = float | str | _Null | tuple["Value", ...]

# Opcodes: (name, precedence, arity)
_OPS: dict[str, tuple[str, int, int]] = {
    "(": ("(", 7, 0),
    ")": (")", 7, 0),
    "!": ("not", 6, 1),
    "not": ("not", 6, 1),
    "**": ("pow", 5, 2),
    "*": ("mul", 4, 2),
    "/": ("div", 4, 2),
    "%": ("mod", 4, 2),
    "+": ("add", 3, 2),
    "-": ("sub", 3, 2),
    ">": ("gt", 2, 2),
    ">=": ("ge", 2, 2),
    "<": ("lt", 2, 2),
    "<=": ("le", 2, 2),
    "==": ("eq", 2, 2),
    "!=": ("ne", 2, 2),
    "in": ("in", 2, 2),
    "and": ("and", 1, 2),
    "&&": ("and", 1, 2),
    "or": ("or", 0, 2),
    "||": ("or", 0, 2),
}
_OP_CHARS = frozenset("+-*%/!()<>=|&")
_SELECTOR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_DIGITS = frozenset("0123456789")
_NUMBER_CHARS = frozenset("0123456789.eE")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}
# What C's strtod() accepts as a whole string (decimal and the special words).
_STRTOD = re.compile(
    r"[ \t\n\v\f\r]*[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)\Z",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "num" "str" "null" "tuple" "sel" "op" "eof"
    value: object = None


class _Syntax(Exception):
    def __init__(self, pos: int) -> None:
        self.pos = pos


def _is_space(c: str) -> bool:
    return c in " \t\n\v\f\r"


def _parse_number(text: str, p: int) -> tuple[float, int]:
    start = p
    while p < len(text) and (text[p] in _NUMBER_CHARS or (p == start and text[p] == "-")):
        p += 1
    raw = text[start:p]
    if len(raw) > 255 or not _STRTOD.match(raw):
        raise _Syntax(p)
    return float(raw), p


def _parse_string(text: str, p: int) -> tuple[str, int]:
    quote = text[p]
    p += 1
    out: list[str] = []
    while p < len(text):
        c = text[p]
        if c == "\\" and p + 1 < len(text):
            nxt = text[p + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            p += 2
            continue
        if c == quote:
            return "".join(out), p + 1
        out.append(c)
        p += 1
    raise _Syntax(p)


def _parse_tuple(text: str, p: int) -> tuple[tuple[Value, ...], int]:
    p += 1  # "["
    items: list[Value] = []
    while True:
        while p < len(text) and _is_space(text[p]):
            p += 1
        if p < len(text) and text[p] == "]":
            return tuple(items), p + 1
        if p < len(text) and (text[p] in _DIGITS or text[p] == "-"):
            num, p = _parse_number(text, p)
            items.append(num)
        elif p < len(text) and text[p] in "\"'":
            s, p = _parse_string(text, p)
            items.append(s)
        else:
            raise _Syntax(p)
        while p < len(text) and _is_space(text[p]):
            p += 1
        if p < len(text) and text[p] == "]":
            return tuple(items), p + 1
        if p >= len(text) or text[p] != ",":
            raise _Syntax(p)
        p += 1


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    p = 0
    n = len(text)
    while True:
        while p < n and _is_space(text[p]):
            p += 1
        last = toks[-1] if toks else None
        # Redis: a minus starts a number at the start and after any operator but ")".
        minus_is_number = last is None or (last.kind == "op" and last.value != ")")
        if p >= n:
            toks.append(_Tok("eof"))
            return toks
        c = text[p]
        if c in _DIGITS or (minus_is_number and c == "-" and p + 1 < n and text[p + 1] in _DIGITS):
            num, p = _parse_number(text, p)
            toks.append(_Tok("num", num))
        elif c in "\"'":
            s, p = _parse_string(text, p)
            toks.append(_Tok("str", s))
        elif c == "." and p + 1 < n and text[p + 1] in _SELECTOR_CHARS:
            start = p = p + 1
            while p < n and text[p] in _SELECTOR_CHARS:
                p += 1
            toks.append(_Tok("sel", text[start:p]))
        elif c == "[":
            tup, p = _parse_tuple(text, p)
            toks.append(_Tok("tuple", tup))
        elif (c.isascii() and c.isalpha()) or c in _OP_CHARS:
            start = p
            while p < n and ((text[p].isascii() and text[p].isalpha()) or text[p] in _OP_CHARS):
                p += 1
            run = text[start:p]
            if run == "null":
                toks.append(_Tok("null", NULL))
                continue
            best = ""
            for name in _OPS:
                if len(name) > len(best) and run.startswith(name):
                    best = name
            if not best:
                raise _Syntax(p)
            p = start + len(best)
            toks.append(_Tok("op", _OPS[best][0]))
        else:
            raise _Syntax(p)


_PREC = {"(": 7, ")": 7}
_ARITY = {"(": 0, ")": 0}
for _name, _prec, _arity in _OPS.values():
    _PREC[_name] = _prec
    _ARITY[_name] = _arity


def _compile(toks: list[_Tok]) -> list[_Tok]:
    """Shunting-yard into a postfix program, checking arity as Redis does."""
    program: list[_Tok] = []
    ops: list[str] = []
    depth = 0  # values the program would leave on the stack

    def emit(op: str) -> None:
        nonlocal depth
        arity = _ARITY[op]
        if depth < arity:
            raise _Syntax(0)
        program.append(_Tok("op", op))
        depth = depth - arity + 1

    for tok in toks:
        if tok.kind == "eof":
            break
        if tok.kind != "op":
            program.append(tok)
            depth += 1
            continue
        op = str(tok.value)
        if op == "(":
            ops.append(op)
            continue
        if op == ")":
            while True:
                if not ops:
                    raise _Syntax(0)
                top = ops.pop()
                if top == "(":
                    break
                emit(top)
            continue
        prec = _PREC[op]
        # A prefix (unary) operator has no left operand: it pops nothing.
        if _ARITY[op] != 1:
            while ops and ops[-1] != "(":
                top_prec = _PREC[ops[-1]]
                if top_prec < prec or (op == "pow" and top_prec <= prec):
                    break
                emit(ops.pop())
        ops.append(op)
    while ops:
        top = ops.pop()
        if top == "(":
            raise _Syntax(0)
        emit(top)
    if depth != 1:
        raise _Syntax(0)
    return program


# -- evaluation -------------------------------------------------------------------------------


def _to_num(v: Value) -> float:
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        if len(v.encode()) < 256 and _STRTOD.match(v):
            return float(v)
        return 0.0
    return 0.0


def _to_bool(v: Value) -> bool:
    if isinstance(v, float):
        return v != 0
    if isinstance(v, str):
        return v != ""
    return not isinstance(v, _Null)


def _equal(a: Value, b: Value) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, float) and isinstance(b, float):
        return a == b
    if isinstance(a, _Null) or isinstance(b, _Null):
        return isinstance(a, _Null) and isinstance(b, _Null)
    return _to_num(a) == _to_num(b)


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _pow(a: float, b: float) -> float:
    try:
        r = a**b
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        return math.inf
    if isinstance(r, complex):
        return math.nan
    return float(r)


def _mod(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:
        return math.nan


def _apply(op: str, a: Value, b: Value) -> Value:
    if op == "and":
        return 1.0 if _to_bool(a) and _to_bool(b) else 0.0
    if op == "or":
        return 1.0 if _to_bool(a) or _to_bool(b) else 0.0
    if op == "eq":
        return 1.0 if _equal(a, b) else 0.0
    if op == "ne":
        return 0.0 if _equal(a, b) else 1.0
    if op == "in":
        if isinstance(b, tuple):
            return 1.0 if any(_equal(a, e) for e in b) else 0.0
        if isinstance(a, str) and isinstance(b, str):
            return 1.0 if a in b else 0.0
        return 0.0
    x, y = _to_num(a), _to_num(b)
    if op == "gt":
        return 1.0 if x > y else 0.0
    if op == "ge":
        return 1.0 if x >= y else 0.0
    if op == "lt":
        return 1.0 if x < y else 0.0
    if op == "le":
        return 1.0 if x <= y else 0.0
    if op == "add":
        return x + y
    if op == "sub":
        return x - y
    if op == "mul":
        return x * y
    if op == "div":
        return _div(x, y)
    if op == "mod":
        return _mod(x, y)
    if op == "pow":
        return _pow(x, y)
    raise AssertionError(op)  # pragma: no cover


def _from_json(v: object) -> Value | None:
    """A JSON value as an expression value; None for what Redis cannot use."""
    if v is True:
        return 1.0
    if v is False:
        return 0.0
    if v is None:
        return NULL
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        out: list[Value] = []
        for e in v:
            ev = _from_json(e)
            if ev is None:
                return None
            out.append(ev)
        return tuple(out)
    return None  # a nested object


@lru_cache(maxsize=65536)
def parse_attrs(attrs: str) -> dict[str, Value] | None:
    """The top-level fields of an attributes JSON text that expressions can use;
    None if the text is not a JSON object."""
    try:
        obj = orjson.loads(attrs)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    out: dict[str, Value] = {}
    for k, v in obj.items():
        ev = _from_json(v)
        if ev is not None:
            out[k] = ev
    return out


class Filter:
    """A compiled FILTER expression; call it with an element's attributes (JSON
    text or None) to know whether the element passes."""

    __slots__ = ("_program", "_selectors", "text")

    def __init__(self, text: str, program: list[_Tok]) -> None:
        self.text = text
        self._program = program
        self._selectors = frozenset(str(t.value) for t in program if t.kind == "sel")

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    def __call__(self, attrs: str | None) -> bool:
        fields: dict[str, Value] = {}
        if self._selectors:
            parsed = parse_attrs(attrs) if attrs is not None else None
            if parsed is None or not self._selectors <= parsed.keys():
                return False
            fields = parsed
        stack: list[Value] = []
        for tok in self._program:
            kind = tok.kind
            if kind == "sel":
                stack.append(fields[str(tok.value)])
            elif kind == "op":
                op = str(tok.value)
                b = stack.pop()
                if op == "not":
                    stack.append(0.0 if _to_bool(b) else 1.0)
                else:
                    a = stack.pop()
                    stack.append(_apply(op, a, b))
            else:
                stack.append(cast(Value, tok.value))
        return _to_bool(stack[-1])


def compile_filter(text: str) -> Filter:
    """Compile a FILTER expression once; raises BadRequest with Redis's text."""
    try:
        return Filter(text, _compile(_tokenize(text)))
    except _Syntax as e:
        pos = e.pos if e.pos < len(text) else 0
        raise BadRequest(f"syntax error in FILTER expression near: {text[pos:]}") from None

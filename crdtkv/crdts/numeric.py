"""Numeric register: a last-writer-wins base plus the increments it has not observed.

One construct serves Redis strings (SET/INCR), hash fields (HSET/HINCRBY)
and sorted-set scores (ZADD/ZINCRBY).

Conflict rule: the value is the base written last (largest HLC timestamp,
ties by actor, as ``LWWRegister``) plus every increment that base has not
observed.  An increment is a per-replica contribution under the writer's
dot, so concurrent increments all count (Redis Active-Active: 7 at A and +3
at B give 10).  A base write is an observed reset of the increments it saw
(as ``PNCounter.reset``, with the one difference described below): a
concurrent increment survives on top of the new base.  A base that is not
a number hides every increment (SET "abc" beats a concurrent INCR), and a
local increment of it is refused (``NotNumeric``).
Plain Redis holds: ``SET k 5; INCR k`` gives 6 (Redis Active-Active refuses
this one).  A removal (DEL, HDEL, ZREM) drops the dots it observed and keeps
the rest, so "ZREM racing ZINCRBY keeps only the unobserved increment":
4.1, then ZREM at A and +2.0 at B, gives 2.0 (Redis Active-Active's example).

References: Redis Software Active-Active, "Strings and bitfields", "Hashes"
and "Sorted sets" in Active-Active databases; Almeida, Shoker, Baquero,
"Delta State Replicated Data Types" (arXiv 1603.01529), the causal counter
and dot stores with causal contexts (section 7), which this construct
composes: a base write is a dotted LWW value, an increment a dotted
per-replica sum; Baquero et al., "Composition in State-based Replicated Data
Types" (Bulletin of the EATCS 123, 2017) for the observed reset.

State: a *cell*, the sorted tuple of live dotted entries (``Write``: a base
with its timestamp; ``Incr``: one writer's increments since the bases it
observed), and a causal context of every dot seen.  Each increment replaces
the writer's previous ``Incr`` with one under a new dot, so a cell holds at
most one entry per concurrent writer.  Integer increments are summed
exactly, each writer's sum kept within 64 bits (``CounterOverflow``); float
increments keep a per-writer float sum, and the sums are added in dot order
(actor id, then sequence), so every replica computes the same double.  The
cell functions are shared with the hash and the sorted set, whose maps keep
one cell per field under one context.

"Observed", precisely: a base write or removal drops the entries it holds.
An entry dropped by anyone stays dropped everywhere, even where that base
write loses to a concurrent one (an increment made before a base that lost
does not come back on top of the winner).  A writer's ``Incr`` is its
running total since the last base write or removal *that writer* saw, so an
increment made concurrently with a reset carries the writer's earlier,
observed increments along with the new one: B adds 4, A sees it and writes
a base, B concurrently adds 6: the value is A's base + 10, not + 6 (Redis
Active-Active, keeping reset tombstones, gives + 6; so does ``PNCounter``,
which keeps its floors forever).  Knowing which part of a running total a
remover saw would need that memory: a per-field tombstone, or a history of
every increment.  Keeping one entry per writer bounds a cell by the number
of concurrent writers, and a removed field leaves nothing behind; the
difference shows only when a writer increments the same value on both
sides of a reset it has not yet seen.

Which values are numbers: ints, floats, and strings or bytes that spell one
(``parse_number``: ``0|-?[1-9][0-9]*`` within 64 bits is an integer; a plain
decimal with optional exponent is a float; no spaces, no ``inf``/``nan``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_dot
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.pn_counter import INT64_MAX, INT64_MIN
from crdtkv.errors import CodecError, CounterOverflow, NotNumeric

__all__ = [
    "NUMBER_TEXT_MAX",
    "Base",
    "Cell",
    "Entry",
    "Incr",
    "Number",
    "NumericRegister",
    "Scalar",
    "Write",
    "cell_scalar",
    "cell_value",
    "check_scalar",
    "check_value",
    "decode_cell",
    "encode_cell",
    "float_step",
    "increment",
    "join_cells",
    "parse_number",
    "write",
]

Scalar = int | float | str | bytes
Base = Scalar | bool | list[Any] | dict[str, Any] | None
"""What a base may hold: a scalar, or (a string key written as JSON) any JSON value."""
"""A base value: an int within 64 bits, a float (not NaN), a str or bytes."""
Number = int | float

# Longest text parsed as a number; Redis's bound for a long double (MAX_LONG_DOUBLE_CHARS).
NUMBER_TEXT_MAX = 5 * 1024
_INT_TEXT_MAX = 20  # "-9223372036854775808"
_INT_RE = re.compile(rb"0|-?[1-9][0-9]*")
_FLOAT_RE = re.compile(rb"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")

UINT64_MAX = 2**64 - 1
_WRITE = 0  # entry kinds on the wire
_INCR = 1


@dataclass(frozen=True, slots=True)
class Write:
    """A base write (SET, HSET, ZADD): its dot, HLC timestamp and value."""

    dot: Dot
    ts: Timestamp
    value: Base


@dataclass(frozen=True, slots=True)
class Incr:
    """One writer's increments since the bases it had observed, under its latest dot."""

    dot: Dot
    i: int  # sum of its integer increments, within 64 bits
    f: float | None  # sum of its float increments (finite); None if it made none


Entry = Write | Incr
Cell = tuple[Entry, ...]
"""Live entries sorted by dot; empty when nothing is present."""


def _by_dot(e: Entry) -> Dot:
    return e.dot


def _dot_of(e: _Dotted) -> Dot:
    return e.dot


# -- values ---------------------------------------------------------------------------------
def parse_number(v: Base) -> Number | None:
    """``v`` as a number, or None if it is not one (see the module docstring)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if INT64_MIN <= v <= INT64_MAX else None  # a JSON register's big int
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        if not v.isascii():
            return None
        raw = v.encode("ascii")
    elif isinstance(v, bytes):
        raw = v
    else:
        return None  # a JSON object, list or null held by a string key
    if len(raw) <= _INT_TEXT_MAX and _INT_RE.fullmatch(raw):
        n = int(raw)
        if INT64_MIN <= n <= INT64_MAX:
            return n
    if len(raw) <= NUMBER_TEXT_MAX and _FLOAT_RE.fullmatch(raw):
        x = float(raw)
        return x if math.isfinite(x) else None
    return None


def float_step(by: object) -> float:
    """``by`` as a float increment; ``TypeError`` if it is not a number,
    ``CounterOverflow`` if it is past the range of a double."""
    if isinstance(by, bool) or not isinstance(by, int | float):
        raise TypeError(f"a float increment is a number, not {by!r}")
    try:
        return float(by)
    except OverflowError as e:
        raise CounterOverflow("increment would produce NaN or Infinity") from e


def check_scalar(value: object) -> Scalar:
    """``value`` if it can be a base; ``CounterOverflow``/``NotNumeric``/``TypeError`` if not."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        raise TypeError(f"a register value is an int, float, str or bytes, not {value!r}")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise CounterOverflow(f"integer {value} is outside the 64-bit signed range")
    if isinstance(value, float) and math.isnan(value):
        raise NotNumeric("value is not a valid float (NaN)")
    return value


def check_value(value: object) -> Base:
    """``value`` if it can be a string key's base: a scalar (``check_scalar``) or any
    other JSON value (null, a bool, a list, an object), which is never a number."""
    if value is None or isinstance(value, bool | list | dict):
        return value
    if isinstance(value, int) and INT64_MAX < value <= UINT64_MAX:
        return value  # a JSON number MessagePack still holds; never a number to INCR
    return check_scalar(value)


def _split(cell: Cell) -> tuple[Write | None, list[Incr]]:
    """The winning base write (largest timestamp, then dot) and the increments."""
    base: Write | None = None
    incs: list[Incr] = []
    for e in cell:
        if isinstance(e, Incr):
            incs.append(e)
        elif base is None or (e.ts, e.dot) > (base.ts, base.dot):
            base = e
    return base, incs


def _add(n: Number, incs: Sequence[Incr]) -> Number:
    """``n`` plus the increments: exact in integers; a float sum in dot order."""
    total = n if isinstance(n, int) else 0
    for e in incs:
        total += e.i
    if isinstance(n, int) and all(e.f is None for e in incs):
        return total
    acc = float(total) if isinstance(n, int) else n + float(total)
    for e in incs:  # a cell is sorted by dot: actor id, then sequence
        if e.f is not None:
            acc += e.f
    return acc


def cell_value(cell: Cell) -> Base:
    """What a read returns: None for an empty cell; the base as written when no
    increment counts (none present, or a base that is not a number); else the sum."""
    base, incs = _split(cell)
    if base is None:
        return _add(0, incs) if incs else None
    if not incs:
        return base.value
    n = parse_number(base.value)
    return base.value if n is None else _add(n, incs)


def cell_scalar(cell: Cell) -> Scalar | None:
    """``cell_value`` of a cell whose bases are scalars (a hash field, a score): their
    writes and their decoding check it, so anything else is a bug."""
    v = cell_value(cell)
    if isinstance(v, bool | list | dict):
        raise TypeError(f"a scalar cell holds {v!r}")
    return v


def cell_number(cell: Cell) -> Number | None:
    """The cell's number (0 when empty), or None when its value is not a number
    (a base of JSON null included)."""
    base, incs = _split(cell)
    if base is None:
        return _add(0, incs) if incs else 0
    n = parse_number(base.value)
    return None if n is None else _add(n, incs)


# -- mutations of one cell (pure: they return the new cell, the caller commits it) -----------
def write(cell: Cell, dot: Dot, ts: Timestamp, value: Base) -> tuple[Cell, list[Dot]]:
    """A base write under ``dot``: the new cell (also the delta's) and the delta's dots,
    which are every dot it observed (the observed reset) and its own."""
    w = Write(dot, ts, value)
    return (w,), [*(e.dot for e in cell), dot]


def increment(
    cell: Cell, dot: Dot, by: int | float, allow_infinite: bool = False
) -> tuple[Cell, Incr, list[Dot], Number]:
    """Add ``by`` (an int: integer increment; a float: float increment) as ``dot``'s actor.

    Returns the new cell, the new entry (the delta's cell), the delta's dots
    (the writer's previous increment dots and the new one) and the new value.
    Raises, before anything changes: ``NotNumeric`` if the value is not a
    number (for an int ``by``: not an integer); ``CounterOverflow`` if the
    writer's integer sum or the integer result leaves 64 bits, or a float
    increment, the writer's float sum or (unless ``allow_infinite``, as for
    scores) the float result is not finite.
    """
    current = cell_number(cell)
    is_int = isinstance(by, int)
    if current is None:
        raise NotNumeric("value is not an integer" if is_int else "value is not a valid float")
    if is_int and isinstance(current, float) and not current.is_integer():
        raise NotNumeric("value is not an integer")
    actor = dot[0]
    mine = [e for e in cell if isinstance(e, Incr) and e.dot[0] == actor]
    i = sum(e.i for e in mine)
    f: float | None = None
    for e in mine:
        if e.f is not None:
            f = e.f if f is None else f + e.f
    if is_int:
        i += int(by)
        if not INT64_MIN <= i <= INT64_MAX:
            raise CounterOverflow("increment or decrement would overflow")
    else:
        f = float(by) if f is None else f + by
        if not math.isfinite(f):
            raise CounterOverflow("increment would produce NaN or Infinity")
    new = Incr(dot, i, f)
    out = tuple(sorted([*(e for e in cell if e not in mine), new], key=_by_dot))
    result = cell_value(out)
    assert isinstance(result, int | float)  # a numeric cell stays numeric
    if isinstance(result, int):
        if not INT64_MIN <= result <= INT64_MAX:
            raise CounterOverflow("increment or decrement would overflow")
    elif not allow_infinite and not math.isfinite(result):
        raise CounterOverflow("increment would produce NaN or Infinity")
    return out, new, [*(e.dot for e in mine), dot], result


class _Dotted(Protocol):
    @property
    def dot(self) -> Dot: ...


_E = TypeVar("_E", bound=_Dotted)


def join_cells(
    mine: tuple[_E, ...], theirs: tuple[_E, ...], my_ctx: CausalContext, their_ctx: CausalContext
) -> tuple[_E, ...]:
    """Join of two cells under their contexts: keep the entries both hold and those
    the other side has not seen (an entry seen and dropped there was removed).  Any
    entries with a ``dot`` (the vector set's too), in dot order."""
    if mine == theirs:
        return mine
    if not mine:
        return tuple(e for e in theirs if e.dot not in my_ctx)
    if not theirs:
        return tuple(e for e in mine if e.dot not in their_ctx)
    their_dots = {e.dot for e in theirs}
    my_dots = {e.dot for e in mine}
    keep = [e for e in mine if e.dot in their_dots or e.dot not in their_ctx]
    keep.extend(e for e in theirs if e.dot not in my_dots and e.dot not in my_ctx)
    keep.sort(key=_dot_of)
    return tuple(keep)


# -- encoding ---------------------------------------------------------------------------------
def encode_cell(cell: Cell) -> list[list[object]]:
    """``[[0, actor, seq, ts, value] | [1, actor, seq, i, f], ...]`` in dot order."""
    out: list[list[object]] = []
    for e in cell:
        if isinstance(e, Write):
            out.append([_WRITE, e.dot[0], e.dot[1], e.ts.encode(), e.value])
        else:
            out.append([_INCR, e.dot[0], e.dot[1], e.i, e.f])
    return out


def _decode_entry(raw: object, scores_only: bool, any_value: bool = False) -> Entry:
    if not isinstance(raw, list | tuple) or len(raw) != 5:
        raise CodecError("numeric entry: expected [kind, actor, seq, a, b]")
    kind, actor, seq, a, b = raw
    dot = decode_dot([actor, seq])
    if type(kind) is int and kind == _WRITE:
        try:
            value = check_value(b) if any_value else check_scalar(b)
        except (TypeError, CounterOverflow, NotNumeric) as e:
            raise CodecError(f"numeric entry: bad base value ({e})") from e
        if scores_only and not isinstance(value, float):
            raise CodecError("numeric entry: a score is a float")
        return Write(dot, Timestamp.decode(a), value)
    if type(kind) is int and kind == _INCR:
        if not isinstance(a, int) or isinstance(a, bool) or not INT64_MIN <= a <= INT64_MAX:
            raise CodecError("numeric entry: an integer sum is a 64-bit int")
        if b is not None and (not isinstance(b, float) or not math.isfinite(b)):
            raise CodecError("numeric entry: a float sum is a finite float or null")
        if scores_only and (a != 0 or b is None):
            raise CodecError("numeric entry: a score increment is a float")
        return Incr(dot, a, b)
    raise CodecError("numeric entry: unknown kind")


def decode_cell(
    raw: object, ctx: CausalContext, scores_only: bool = False, any_value: bool = False
) -> Cell:
    """Inverse of ``encode_cell``; every dot must be unique and within ``ctx``."""
    if not isinstance(raw, list | tuple):
        raise CodecError("numeric cell: expected a list of entries")
    entries = sorted((_decode_entry(e, scores_only, any_value) for e in raw), key=_by_dot)
    for k, e in enumerate(entries):
        if k and entries[k - 1].dot == e.dot:
            raise CodecError("numeric cell: duplicate dot")
        if e.dot not in ctx:
            raise CodecError("numeric cell: an entry's dot is outside the context")
    return tuple(entries)


# -- the register as a key's value (Redis strings) ---------------------------------------------
@register_type
class NumericRegister(CRDT):
    """A string key: one cell and its causal context (see the module docstring)."""

    TYPE_TAG = "num"
    FORMAT_VERSION = 1

    __slots__ = ("cell", "ctx")

    def __init__(self, cell: Cell = (), ctx: CausalContext | None = None) -> None:
        self.cell: Cell = cell
        self.ctx = ctx if ctx is not None else CausalContext()

    # -- reads ------------------------------------------------------------------
    def value(self) -> Base:
        """None when absent (never written, or deleted); see ``cell_value``."""
        return cell_value(self.cell)

    def is_bottom(self) -> bool:
        return not self.cell and self.ctx.is_empty()

    def size(self) -> int:
        return len(self.cell) + self.ctx.size()

    # -- delta-mutators -----------------------------------------------------------
    def assign(self, actor: str, ts: Timestamp, value: object) -> NumericRegister:
        """Write a new base at ``ts`` (SET), resetting what this replica has seen.

        A string key's base is any JSON value (the HTTP register view writes
        objects and lists); only ints, floats and numeric text count as numbers."""
        base = check_value(value)
        dot = self.ctx.next_dot(actor)
        self.cell, dots = write(self.cell, dot, ts, base)
        self.ctx.add(dot)
        return NumericRegister(self.cell, CausalContext(cloud=dots))

    def incr(self, actor: str, by: int) -> NumericRegister:
        """INCRBY: refused (nothing changes) on a value that is not an integer or on overflow."""
        if isinstance(by, bool) or not isinstance(by, int):
            raise TypeError("an integer increment is an int")
        return self._increment(actor, by)

    def incr_float(self, actor: str, by: float) -> NumericRegister:
        """INCRBYFLOAT: refused (nothing changes) on a value that is not a number, or
        if the increment or the result is not finite."""
        return self._increment(actor, float_step(by))

    def _increment(self, actor: str, by: int | float) -> NumericRegister:
        dot = self.ctx.next_dot(actor)
        cell, new, dots, _ = increment(self.cell, dot, by)
        if by == 0 and self.cell:
            return NumericRegister()  # changes nothing: the bottom delta
        self.cell = cell
        self.ctx.add(dot)
        return NumericRegister((new,), CausalContext(cloud=dots))

    def clear(self) -> NumericRegister:
        """DEL: drop every entry this replica has seen; a concurrent write survives."""
        dots = [e.dot for e in self.cell]
        self.cell = ()
        return NumericRegister((), CausalContext(cloud=dots))

    # -- join ---------------------------------------------------------------------
    def merge(self, other: NumericRegister) -> None:
        self.cell = join_cells(self.cell, other.cell, self.ctx, other.ctx)
        self.ctx.merge(other.ctx)

    def copy(self) -> Self:
        return type(self)(self.cell, self.ctx.copy())  # a cell is immutable

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumericRegister):
            return NotImplemented
        return self.cell == other.cell and self.ctx == other.ctx

    def __repr__(self) -> str:
        return f"NumericRegister({self.cell!r}, {self.ctx!r})"

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        return [self.ctx.encode(), encode_cell(self.cell)]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 2:
            raise CodecError("numeric register: expected [context, entries]")
        ctx = CausalContext.decode(payload[0])
        return cls(decode_cell(payload[1], ctx, any_value=True), ctx)

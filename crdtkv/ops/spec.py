"""The record types of the op table, and the validation of an op's arguments.

One ``OpSpec`` per operation says everything the rest of the code needs to
know about it: its arguments (``Arg``: kind, bounds, where each travels over
HTTP), whether it writes, its single-key HTTP route, the shape of its result,
the client methods and CLI verbs built on it, and the texts the OpenAPI
document shows.  The apply function (in the type's module) receives the
arguments already validated by ``OpSpec.parse``.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from crdtkv import limits
from crdtkv.crdts.vset import check_vector, pack_vector
from crdtkv.errors import BadRequest
from crdtkv.ops import zset_args

if TYPE_CHECKING:
    from crdtkv.replica.keyspace import Replica

__all__ = [
    "CALLER",
    "NO_DEFAULT",
    "RAISES",
    "WHOLE",
    "Apply",
    "Arg",
    "Args",
    "Body",
    "Doc",
    "Field",
    "In",
    "Kind",
    "Method",
    "OpSpec",
    "Out",
    "Resp",
    "Result",
    "Route",
    "Shape",
    "Verb",
    "check_field",
    "check_field_value",
    "check_json_value",
    "validate_key",
]

Op = Mapping[str, Any]
Args = dict[str, Any]
"""An op's arguments after ``OpSpec.parse``: name -> validated value (None: an absent optional)."""
Result = dict[str, Any]
Apply = Callable[["Replica", Args, int], Result]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NO_DEFAULT: Any = _Sentinel("NO_DEFAULT")
"""``Arg.default``: the client and the CLI have no default for the argument."""
WHOLE = "*"
"""``Method.returns``: the whole result body (VINFO's fields), as a dict."""
RAISES: Any = _Sentinel("RAISES")
"""``Method.absent``: an absent key raises ``KeyNotFound``."""
CALLER: Any = _Sentinel("CALLER")
"""``Method.absent``: the method takes ``default=``; an absent key returns it, or raises
``KeyNotFound`` when the caller gave none."""


class Kind(Enum):
    """What an argument's value is, and so how it is validated."""

    KEY = "key"  # a key: 1 to KEY_BYTES_MAX bytes of UTF-8
    INT = "int"  # an integer within [lo, hi] (never a bool)
    JSON = "json"  # any JSON value (null included), at most JSON_DEPTH_MAX deep
    STRINGS = "strings"  # a list of at most hi strings, each at most MEMBER_BYTES_MAX bytes
    KEYS = "keys"  # a non-empty list of at most hi keys
    STRING = "string"  # a string: at most hi characters when hi > 0, one of choices if any
    BOOL = "bool"  # true or false
    FLOAT = "float"  # a finite number
    SCORES = "scores"  # an object member -> score, at most hi entries (zset_args)
    SCORE_BOUND = "score_bound"  # a score range end: 1.5, "(1.5", "-inf", "+inf"
    LEX_BOUND = "lex_bound"  # a member range end: "[a", "(a", "-", "+"
    # -- hashes --
    FIELD = "field"  # a hash field name: 1 to MEMBER_BYTES_MAX bytes of UTF-8
    FIELDS = "fields"  # an object of 1 to hi fields (FIELD) -> scalar (a string, int64 or float)
    # -- vector sets --
    VECTOR = "vector"  # numbers (a JSON array), or float32 little-endian bytes (base64 in JSON)


class In(Enum):
    """Where an argument travels in the op's single-key HTTP request."""

    PATH = "path"  # a path segment, ``{name}`` in the route
    BODY = "body"  # a field of the JSON body
    QUERY = "query"  # a query parameter (``Arg.query``): repeated for list kinds, else once


class Out(Enum):
    """The kind of a result field: its JSON schema, and how the CLI prints it."""

    OK = "ok"  # always true
    JSON = "json"  # any JSON value
    INT64 = "int64"  # a 64-bit signed integer
    COUNT = "count"  # a non-negative integer
    BOOL = "bool"
    SORTED_STRINGS = "sorted_strings"  # distinct strings, sorted by code point
    STRING = "string"
    SCORE = "score"  # a sorted set score (a number, "inf" or "-inf") or null
    SCORES = "scores"  # a list of SCOREs
    RANK = "rank"  # a non-negative integer or null
    ZITEMS = "zitems"  # sorted set members, or [member, score] pairs
    # -- hashes --
    HASH = "hash"  # an object: field -> scalar, in field order
    VALUES = "values"  # a list of scalars (null: absent)
    NUMBER = "number"  # an int64 or a double
    # -- lists --
    STRINGS = "strings"  # strings in order (duplicates allowed)
    OPT_STRING = "opt_string"  # a string or null
    INDEXES = "indexes"  # non-negative integers (list indexes)
    # -- vector sets --
    VECTOR = "vector"  # a list of numbers (float32 values)
    MATCHES = "matches"  # [{"element", "score", "attributes"?}], best first


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of an op: a field of the op dict (and of the batch op)."""

    name: str  # the field name in the op dict
    kind: Kind
    required: bool = True  # False: absent or null means "not given" (None)
    lo: int = 0  # INT: smallest value
    hi: int = 0  # INT: largest value; STRINGS and KEYS: most entries; STRING: most characters
    choices: tuple[str, ...] = ()  # STRING: the values it may take (empty: any)
    http: In = In.BODY  # where it travels in the single-key request
    query: str | None = None  # In.QUERY: the query parameter's name
    param: str | None = None  # the client's and the CLI's name for it, when not ``name``
    default: Any = NO_DEFAULT  # the client's and the CLI's default (the op itself has none)
    doc: str = ""  # what it is (the OpenAPI schema's description)
    http_doc: str = ""  # the OpenAPI parameter's description (path and query arguments)
    help: str | None = None  # the CLI's help for it

    @property
    def client_name(self) -> str:
        return self.param or self.name

    def parser(self) -> Callable[[Op], Any]:
        """Its validation: ``op`` -> the argument's value (None: an absent optional one);
        raises ``BadRequest``.  One closure, the kind's check looked up once."""
        check = _PARSERS[self.kind]
        if self.required:
            return lambda op: check(self, op)
        name = self.name
        return lambda op: None if op.get(name) is None else check(self, op)


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a result body."""

    name: str
    kind: Out
    doc: str = ""


@dataclass(frozen=True, slots=True)
class Shape:
    """A result body: the OpenAPI component ``name`` and its fields."""

    name: str
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


@dataclass(frozen=True, slots=True)
class Route:
    """The op's single-key HTTP endpoint; ``{name}`` marks a path argument."""

    method: str
    path: str


@dataclass(frozen=True, slots=True)
class Body:
    """The request body of a route with body arguments, as the OpenAPI document names it."""

    name: str  # the component name; ops taking the same fields share one
    example: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Doc:
    """The OpenAPI document's texts for an op."""

    summary: str
    result: str = ""  # the 200 response's description
    example: Mapping[str, Any] | None = None  # a 200 body
    description: str = ""


@dataclass(frozen=True, slots=True)
class Verb:
    """A command of the command-line client (``crdtkv <name>``)."""

    name: str
    help: str


@dataclass(frozen=True, slots=True)
class Method:
    """A client method ``db.<type>.<name>(key, ...)`` built on an op.

    Its parameters are the op's arguments (minus ``omit``) in order, under
    their ``Arg.client_name``: list kinds as ``*args``, optional ones and ones
    with an ``Arg.default`` as keywords with that default.  ``CALLER`` adds a
    trailing ``default=MISSING``.
    """

    name: str
    doc: str  # the generated method's docstring
    # The result field it returns; a tuple: those fields as a tuple; None: it returns None;
    # WHOLE ("*"): the whole result body, a dict.
    returns: str | tuple[str, ...] | None = None
    absent: Any = RAISES  # what it returns for an absent key (404): a value, RAISES or CALLER
    omit: tuple[str, ...] = ()  # the op's arguments it does not take
    negate: str | None = None  # an INT argument it sends negated (decr sent as an incr)
    cli: Verb | None = None  # the CLI verb that calls it


@dataclass(frozen=True, slots=True)
class Resp:
    """A Redis command built on the op: one more column of its row.

    ``args`` turns the command's arguments (after its name) into the op's
    fields, raising ``crdtkv.resp.values.RespError`` with Redis's text for
    bad ones; the op then validates them as it does for HTTP.  ``reply``
    turns the op's result into the reply value (``crdtkv.resp.values``).
    """

    command: str  # its name, upper case
    arity: int  # Redis's arity: the argument count with the name; negative: at least -arity
    args: Callable[[list[bytes]], dict[str, Any]]  # the arguments -> the op's fields
    reply: Callable[[Result], Any]  # the op's result -> the reply
    absent: Any = None  # the reply of a read whose key is absent (404); RAISES: an error
    flags: tuple[str, ...] = ()  # COMMAND's flags besides write / readonly (fast, ...)
    keys: tuple[int, int, int] = (1, 1, 1)  # first key, last key (-1: the last), step
    summary: str = ""  # COMMAND DOCS' summary (default: the op's)
    # A hot read's direct form, (connection, arguments) -> reply: the same read the
    # op's function makes, without building and validating the op's dict.
    run: Callable[[Any, list[bytes]], Any] | None = None
    # The error when the op refuses a key of another type and the first such key (the
    # key, then the op's ``sources``) is a string: Redis's HyperLogLogs are strings, so
    # PFADD on another string answers its own WRONGTYPE text.  None: Redis's usual one.
    string_wrongtype: str | None = None


@dataclass(frozen=True, slots=True)
class OpSpec:
    """One operation.  ``name`` is ``<type>.<verb>``; the type is the key's namespace."""

    name: str
    args: tuple[Arg, ...]  # validation order; the first is the key, unless the op is keyless
    apply: Apply  # the type module's function; gets ``parse``'s result
    writes: bool  # False: a read, which changes nothing and answers 404 for an absent key
    result: Shape  # the 200 body
    doc: Doc
    route: Route | None  # the single-key endpoint; None: only in /v1/batch
    client: tuple[Method, ...] | None  # None: no client method calls this op directly
    retry_safe: bool = True  # sending it twice (a retry after a lost reply) is harmless
    body: Body | None = None  # routes with body arguments: the request body's name and example
    snapshot: bool = False  # the read that returns a key's whole value (final reads compare it)
    resp: tuple[Resp, ...] = ()  # the Redis commands built on it (crdtkv.resp)
    # A read that answers for an absent key (EXISTS, TYPE, TTL, SCAN) instead of 404.
    answers_absent: bool = False
    # A write that refuses an absent key with 404 (LSET: Redis's "no such key").
    needs_key: bool = False
    _parsers: tuple[tuple[str, Callable[[Op], Any]], ...] = field(
        init=False, repr=False, compare=False
    )
    _key_args: tuple[Arg, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsers", tuple((a.name, a.parser()) for a in self.args))
        keys = tuple(a for a in self.args if a.kind in (Kind.KEY, Kind.KEYS))
        object.__setattr__(self, "_key_args", keys)

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def reads(self) -> bool:
        return not self.writes

    @property
    def keyed(self) -> bool:
        """Whether the op is on one key (its first argument); False for SCAN."""
        return bool(self.args) and self.args[0].name == "key" and self.args[0].kind is Kind.KEY

    def key_names(self, parsed: Op) -> list[str]:
        """Every key a parsed op names (its KEY and KEYS arguments): what a sharded
        replica checks against its slots."""
        out: list[str] = []
        for a in self._key_args:
            v = parsed.get(a.name)
            if v is None:
                continue
            if a.kind is Kind.KEY:
                out.append(v)
            else:
                out.extend(v)
        return out

    @property
    def not_found(self) -> bool:
        """Whether the op answers 404 for an absent key."""
        return self.reads and self.keyed and not self.answers_absent

    @property
    def fields(self) -> frozenset[str]:
        """The fields a batch op may carry."""
        return frozenset({"op", *(a.name for a in self.args)})

    def args_in(self, where: In) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.http is where)

    def parse(self, op: Op) -> Args:
        """Every argument validated, in order; the first bad one raises ``BadRequest``."""
        return {name: parse(op) for name, parse in self._parsers}


# -- validation -------------------------------------------------------------------------------
def validate_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str):
        raise BadRequest(f"{what} must be a string")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise BadRequest(f"{what} is not valid UTF-8") from e
    if n == 0:
        raise BadRequest(f"{what} must not be empty")
    if n > limits.KEY_BYTES_MAX:
        raise BadRequest(f"{what} is {n} bytes; the limit is {limits.KEY_BYTES_MAX}")
    return key


def _check_utf8(s: str, what: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:
            raise BadRequest(f"{what} is not valid UTF-8") from e


def check_json_value(v: object, depth: int = 1) -> None:
    """A register value must be plain JSON, at most ``JSON_DEPTH_MAX`` deep.

    (Bodies arriving as MessagePack can carry bytes, huge ints or NaN; JSON
    bodies are already depth-checked by the parser, this is the same rule.)
    """
    if depth > limits.JSON_DEPTH_MAX:
        raise BadRequest(f"JSON nested deeper than {limits.JSON_DEPTH_MAX} levels")
    if v is None or isinstance(v, bool):
        return
    if isinstance(v, str):
        _check_utf8(v, "a string")
    elif isinstance(v, int):
        if not limits.INT64_MIN <= v < 2**64:
            raise BadRequest("integers in values must fit in 64 bits")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise BadRequest("NaN and infinities are not JSON")
    elif isinstance(v, list):
        for x in v:
            check_json_value(x, depth + 1)
    elif isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise BadRequest("object keys must be strings")
            _check_utf8(k, "an object key")
            check_json_value(x, depth + 1)
    else:
        raise BadRequest(f"a {type(v).__name__} is not a JSON value")


def _key(arg: Arg, op: Op) -> str:
    return validate_key(op.get(arg.name), arg.name)


def _int(arg: Arg, op: Op) -> int:
    v = op.get(arg.name)
    if v is None:
        raise BadRequest(f"missing field {arg.name!r}")
    if not isinstance(v, int) or isinstance(v, bool):
        raise BadRequest(f"field {arg.name!r} must be an integer")
    if not arg.lo <= v <= arg.hi:
        raise BadRequest(f"field {arg.name!r} must be between {arg.lo} and {arg.hi}")
    return v


def _json(arg: Arg, op: Op) -> Any:
    if arg.name not in op:  # null is a value
        raise BadRequest(f"missing field {arg.name!r}")
    v = op[arg.name]
    check_json_value(v)
    return v


def _strings(arg: Arg, op: Op) -> list[str]:
    name = arg.name
    v = op.get(name)
    if not isinstance(v, list):
        raise BadRequest(f"field {name!r} must be a list of strings")
    if len(v) > arg.hi:
        raise BadRequest(f"field {name!r} has {len(v)} entries; the limit is {arg.hi}")
    for s in v:
        if not isinstance(s, str):
            raise BadRequest(f"field {name!r} must be a list of strings")
        if s.isascii():
            n = len(s)
        else:
            try:
                n = len(s.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise BadRequest(f"an entry of {name!r} is not valid UTF-8") from e
        if n > limits.MEMBER_BYTES_MAX:
            raise BadRequest(f"an entry of {name!r} is over {limits.MEMBER_BYTES_MAX} bytes")
    return v


def _keys(arg: Arg, op: Op) -> list[str]:
    v = op.get(arg.name)
    if not isinstance(v, list) or not v:
        raise BadRequest(f"field {arg.name!r} must be a non-empty list of keys")
    if len(v) > arg.hi:
        raise BadRequest(f"at most {arg.hi} {arg.name}")
    what = f"a {arg.name.removesuffix('s')} key"  # "a source key"
    return [validate_key(k, what) for k in v]


def _string(arg: Arg, op: Op) -> str:
    v = op.get(arg.name)
    if not isinstance(v, str):
        raise BadRequest(f"field {arg.name!r} must be a string")
    if arg.hi and len(v) > arg.hi:
        raise BadRequest(f"field {arg.name!r} is over {arg.hi} characters")
    if arg.choices and v not in arg.choices:
        raise BadRequest(f"field {arg.name!r} must be one of {', '.join(arg.choices)}")
    return v


def _bool(arg: Arg, op: Op) -> bool:
    v = op.get(arg.name)
    if not isinstance(v, bool):
        raise BadRequest(f"field {arg.name!r} must be true or false")
    return v


# -- hashes ------------------------------------------------------------------------------------
def _utf8_bytes(s: str, what: str) -> int:
    if s.isascii():
        return len(s)
    try:
        return len(s.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise BadRequest(f"{what} is not valid UTF-8") from e


def check_field(v: object, what: str) -> str:
    """A hash field name: a non-empty string of at most ``MEMBER_BYTES_MAX`` bytes."""
    if not isinstance(v, str):
        raise BadRequest(f"{what} must be a string")
    n = _utf8_bytes(v, what)
    if n == 0:
        raise BadRequest(f"{what} must not be empty")
    if n > limits.MEMBER_BYTES_MAX:
        raise BadRequest(f"{what} is over {limits.MEMBER_BYTES_MAX} bytes")
    return v


def check_field_value(v: object, what: str) -> str | int | float:
    """A hash field's value: a string (at most ``HASH_VALUE_BYTES_MAX`` bytes), an
    integer within 64 bits or a finite float; never null, a bool, a list or an object."""
    if isinstance(v, str):
        if _utf8_bytes(v, what) > limits.HASH_VALUE_BYTES_MAX:
            raise BadRequest(f"{what} is over {limits.HASH_VALUE_BYTES_MAX} bytes")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadRequest(f"{what} must be a string or a number")
    if isinstance(v, int) and not limits.INT64_MIN <= v <= limits.INT64_MAX:
        raise BadRequest(f"{what} must fit in 64 bits")
    if isinstance(v, float) and not math.isfinite(v):
        raise BadRequest(f"{what} must be finite")
    return v


def _field(arg: Arg, op: Op) -> str:
    return check_field(op.get(arg.name), f"field {arg.name!r}")


def _fields(arg: Arg, op: Op) -> dict[str, str | int | float]:
    name = arg.name
    v = op.get(name)
    if not isinstance(v, dict) or not v:
        raise BadRequest(f"field {name!r} must be a non-empty object of field -> value")
    if len(v) > arg.hi:
        raise BadRequest(f"field {name!r} has {len(v)} entries; the limit is {arg.hi}")
    for k, x in v.items():
        check_field(k, f"a field name in {name!r}")
        check_field_value(x, f"a value in {name!r}")
    return v


def _vector(arg: Arg, op: Op) -> bytes:
    """A vector: a JSON array of numbers, base64 of float32 little-endian values (the
    binary form), or those bytes themselves (a MessagePack batch); always bytes out."""
    v = op.get(arg.name)
    if isinstance(v, list | tuple):
        if not v or len(v) > arg.hi:
            raise BadRequest(f"field {arg.name!r} holds 1 to {arg.hi} numbers")
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
            raise BadRequest(f"field {arg.name!r} must hold numbers only")
        try:
            return pack_vector(v)
        except BadRequest as e:
            raise BadRequest(f"field {arg.name!r}: {e.message}") from None
    if isinstance(v, str):
        try:
            v = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(
                f"field {arg.name!r}: a string is base64 of float32 values (little-endian)"
            ) from None
    if isinstance(v, bytes):
        try:
            return check_vector(v)
        except BadRequest as e:
            raise BadRequest(f"field {arg.name!r}: {e.message}") from None
    raise BadRequest(f"field {arg.name!r} must be an array of numbers or base64 of float32 values")


def _float(arg: Arg, op: Op) -> float:
    v = op.get(arg.name)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadRequest(f"field {arg.name!r} must be a number")
    try:
        out = float(v)
    except OverflowError as e:
        raise BadRequest(f"field {arg.name!r} is outside the range of a double") from e
    if not math.isfinite(out):
        raise BadRequest(f"field {arg.name!r} must be a finite number")
    return out


def _zset_kind(kind: Kind) -> Callable[[Arg, Op], Any]:
    """The sorted set's argument kinds, checked in ``crdtkv.ops.zset_args``."""
    parse = zset_args.PARSERS[kind.value]
    return lambda arg, op: parse(arg.name, arg.hi, op.get(arg.name))


_PARSERS: dict[Kind, Callable[[Arg, Op], Any]] = {
    Kind.KEY: _key,
    Kind.INT: _int,
    Kind.JSON: _json,
    Kind.STRINGS: _strings,
    Kind.KEYS: _keys,
    Kind.STRING: _string,
    Kind.BOOL: _bool,
    Kind.FLOAT: _float,
    Kind.SCORES: _zset_kind(Kind.SCORES),
    Kind.SCORE_BOUND: _zset_kind(Kind.SCORE_BOUND),
    Kind.LEX_BOUND: _zset_kind(Kind.LEX_BOUND),
    Kind.FIELD: _field,
    Kind.FIELDS: _fields,
    Kind.VECTOR: _vector,
}

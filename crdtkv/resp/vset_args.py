"""Arguments and replies of the vector-set commands, as Redis 8 reads and writes them
(``modules/vector-sets/vset.c`` in redis/redis).  Pure.

Used by the composite commands of ``crdtkv.resp.vsets``.  What Redis checks, in its
order, with its texts:

- ``VADD key [REDUCE dim] (FP32 blob | VALUES n v1 .. vn) element [CAS] [NOQUANT | Q8 |
  BIN] [EF n] [SETATTR json] [M n]``: the vector first (anything wrong in it, REDUCE
  included, is ``ERR invalid vector specification``), then the element (missing: wrong
  number of arguments), then the options in any order (``ERR invalid EF``, ``ERR invalid
  M``, anything else ``ERR invalid option after element``; a last ``EF``, ``M`` or
  ``SETATTR`` without its value is an invalid option too), then the key (WRONGTYPE),
  then the set's quantization, M and dimension.  ``CAS`` is accepted and ignored (it
  only makes Redis look for neighbours in a thread).  ``REDUCE`` (a random projection
  the set would have to keep and apply to every later vector and query) is refused
  once the arguments are read.
- ``VSIM key (ELE element | FP32 blob | VALUES n v1 .. vn) [WITHSCORES] [WITHATTRIBS]
  [COUNT n] [EPSILON d] [EF n] [FILTER expr] [FILTER-EF n] [TRUTH] [NOTHREAD]``: the
  key first (absent: an empty array; another type: WRONGTYPE), then the query (an
  absent ELE element is ``ERR element not found in set``; a vector as VADD's), then the
  dimension, then the options (``ERR invalid COUNT`` / ``EPSILON`` / ``EF`` /
  ``FILTER-EF``, ``ERR syntax error in FILTER expression near: ...``, anything else
  ``ERR syntax error in VSIM command``).  ``NOTHREAD`` is accepted and ignored.
- ``VEMB key element [RAW]``: the options first (``ERR invalid option``).
- ``VRANDMEMBER key [count]``: the count first (``ERR COUNT value is not an integer``;
  0 answers an empty array whatever the key holds).

Vectors are float32, little-endian, as Redis's FP32 blobs.  A component that is not a
finite float32 (NaN or an infinity in a blob, ``inf`` or a number past float32's range
in VALUES), and a vector of zeros, are refused with ``ERR invalid vector
specification: ...`` where Redis would store them (their cosine is undefined); a vector
has 1 to 65536 components, as in Redis (the set takes at most
``crdtkv.crdts.vset.DIM_MAX``).  Elements and attributes are UTF-8 text, as every crdtkv member.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from crdtkv import limits
from crdtkv.resp import args as A
from crdtkv.resp.hash_zset_args import score as c_double
from crdtkv.resp.hash_zset_args import wrong_arity
from crdtkv.resp.values import RespError, RMap, Status

__all__ = [
    "ALL_ZERO",
    "BUILD_EF_DEFAULT",
    "COUNT_DEFAULT",
    "DIM_MAX",
    "EF_MAX",
    "INVALID_VECTOR",
    "M_DEFAULT",
    "M_MAX",
    "M_MIN",
    "NOT_FINITE",
    "QUANT_NAMES",
    "REDUCE_REFUSED",
    "SEARCH_EF_DEFAULT",
    "VAdd",
    "VSimOptions",
    "VSimQuery",
    "Vector",
    "dimension_mismatch",
    "floats_blob",
    "parse_vadd",
    "parse_vector",
    "parse_vemb",
    "parse_vrandmember",
    "parse_vsim_options",
    "parse_vsim_query",
    "vemb_raw_reply",
    "vemb_reply",
    "vsim_reply",
]

DIM_MAX = 1 << 16  # VSET_MAX_VECTOR_DIM
M_DEFAULT, M_MIN, M_MAX = 16, 4, 4096  # HNSW_DEFAULT_M, HNSW_MIN_M, HNSW_MAX_M
BUILD_EF_DEFAULT = 200  # VSET_DEFAULT_C_EF
SEARCH_EF_DEFAULT = 100  # VSET_DEFAULT_SEARCH_EF
COUNT_DEFAULT = 10  # VSET_DEFAULT_COUNT
EF_MAX = 1_000_000
FILTER_EF_PER_RESULT = 100  # FILTER-EF's default: COUNT * 100
# VADD's quantization option -> the name VINFO and VEMB RAW give it.
QUANT_NAMES = {"noquant": "f32", "q8": "int8", "bin": "bin"}

INVALID_VECTOR = "ERR invalid vector specification"
NOT_FINITE = INVALID_VECTOR + ": a component is NaN, infinite or out of float32's range"
ALL_ZERO = INVALID_VECTOR + ": every component is zero (a vector with no direction)"
REDUCE_REFUSED = (
    "ERR REDUCE is not supported by crdtkv: a random projection would have to be kept by "
    "the set and applied to every later vector and query; add the vectors at their full "
    "dimension"
)


def dimension_mismatch(got: int, has: int) -> RespError:
    return RespError(f"ERR Vector dimension mismatch - got {got} but set has {has}")


def _ll(b: bytes) -> int | None:
    """``RedisModule_StringToLongLong``: a 64-bit integer, strictly written; None if not."""
    try:
        return A.integer(b)
    except RespError:
        return None


def _double(b: bytes) -> float | None:
    """``RedisModule_StringToDouble``: a double (infinities spelled out too); None if not."""
    try:
        return c_double(b)
    except RespError:
        return None


# -- vectors ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Vector:
    """A vector read from the arguments: float32 little-endian ``blob`` of ``dim``
    components; ``reduce`` the REDUCE dimension (0: none); ``consumed`` the arguments it
    took (REDUCE's included)."""

    blob: bytes
    dim: int
    reduce: int
    consumed: int


def _check(arr: np.ndarray[Any, Any]) -> None:
    """crdtkv's refusals: a component that is not a finite float32, or all zeros."""
    if not np.isfinite(arr).all():
        raise RespError(NOT_FINITE)
    if not arr.any():
        raise RespError(ALL_ZERO)


def parse_vector(argv: list[bytes], start: int, *, reduce: bool) -> Vector:
    """``parseVector``: ``[REDUCE dim] FP32 blob | VALUES n v1 .. vn`` at ``argv[start]``
    (``argv`` after the command's name).  Anything wrong: ``ERR invalid vector
    specification``."""
    argc = len(argv)
    consumed = 0
    rdim = 0
    if reduce and argc > start + 2 and A.upper(argv[start]) == "REDUCE":
        r = _ll(argv[start + 1])
        if r is None or r <= 0:
            raise RespError(INVALID_VECTOR)
        rdim = r
        start += 2
        consumed += 2
    if start >= argc:
        raise RespError(INVALID_VECTOR)
    form = A.upper(argv[start])
    if form == "FP32":
        if argc < start + 2:
            raise RespError(INVALID_VECTOR)
        blob = argv[start + 1]
        if len(blob) % 4 or len(blob) < 4 or len(blob) // 4 > DIM_MAX:
            raise RespError(INVALID_VECTOR)
        dim = len(blob) // 4
        _check(np.frombuffer(blob, dtype="<f4"))
        consumed += 2
    elif form == "VALUES":
        if argc < start + 2:
            raise RespError(INVALID_VECTOR)
        n = _ll(argv[start + 1])
        if n is None or n < 1 or n > DIM_MAX or argc < start + 2 + n:
            raise RespError(INVALID_VECTOR)
        values: list[float] = []
        for b in argv[start + 2 : start + 2 + n]:
            x = _double(b)
            if x is None:
                raise RespError(INVALID_VECTOR)
            values.append(x)
        with np.errstate(over="ignore"):
            arr = np.asarray(values, dtype=np.float64).astype("<f4")
        _check(arr)
        blob = arr.tobytes()
        dim = n
        consumed += n + 2
    else:
        raise RespError(INVALID_VECTOR)
    if rdim > dim:
        raise RespError(INVALID_VECTOR)
    return Vector(blob, dim, rdim, consumed)


# -- VADD ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VAdd:
    """VADD's arguments.  ``attrs``: the SETATTR text, None for "remove them" (an empty
    SETATTR); ``set_attrs``: whether SETATTR was given (without it an update keeps the
    element's attributes).  ``quant`` is ``q8`` (the default), ``noquant`` or ``bin``."""

    key: str
    vector: bytes
    dim: int
    element: str
    cas: bool
    quant: str
    ef: int
    m: int
    set_attrs: bool
    attrs: str | None


def parse_vadd(argv: list[bytes]) -> VAdd:
    """VADD's arguments (after the name, the key first), in ``VADD_RedisCommand``'s
    order; the key's type and the set's settings are checked by the caller."""
    if len(argv) < 4:
        raise wrong_arity("vadd")
    vec = parse_vector(argv, 1, reduce=True)
    at = 1 + vec.consumed
    if at >= len(argv):
        raise wrong_arity("vadd")
    element = argv[at]
    cas = False
    quant = "q8"
    ef = BUILD_EF_DEFAULT
    m = M_DEFAULT
    attrs: bytes | None = None
    j = at + 1
    n = len(argv)
    while j < n:
        opt = A.upper(argv[j])
        has_value = j + 1 < n
        if opt == "CAS":
            cas = True
        elif opt == "EF" and has_value:
            v = _ll(argv[j + 1])
            if v is None or v <= 0 or v > EF_MAX:
                raise RespError("ERR invalid EF")
            ef = v
            j += 1
        elif opt == "M" and has_value:
            v = _ll(argv[j + 1])
            if v is None or v < M_MIN or v > M_MAX:
                raise RespError("ERR invalid M")
            m = v
            j += 1
        elif opt == "SETATTR" and has_value:
            attrs = argv[j + 1]
            j += 1
        elif opt == "NOQUANT":
            quant = "noquant"
        elif opt == "BIN":
            quant = "bin"
        elif opt == "Q8":
            quant = "q8"
        else:
            raise RespError("ERR invalid option after element")
        j += 1
    if vec.reduce:
        raise RespError(REDUCE_REFUSED)
    attr_text = A.text(attrs) if attrs else None
    return VAdd(
        key=A.text(argv[0]),
        vector=vec.blob,
        dim=vec.dim,
        element=A.text(element),
        cas=cas,
        quant=quant,
        ef=ef,
        m=m,
        set_attrs=attrs is not None,
        attrs=attr_text,
    )


# -- VSIM ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VSimQuery:
    """VSIM's query: an element of the set (``element``) or a vector (``vector``, of
    ``dim`` components); the options start at ``argv[end]``."""

    element: str | None
    vector: bytes | None
    dim: int
    end: int


def parse_vsim_query(argv: list[bytes]) -> VSimQuery:
    """VSIM's query (after the key: ``argv[1]`` on); the caller has checked the key (an
    absent one answers an empty array before any of this) and looks the element up."""
    if len(argv) < 3:
        raise wrong_arity("vsim")
    if A.upper(argv[1]) == "ELE":
        return VSimQuery(A.text(argv[2]), None, 0, 3)
    vec = parse_vector(argv, 1, reduce=False)
    return VSimQuery(None, vec.blob, vec.dim, 1 + vec.consumed)


@dataclass(frozen=True, slots=True)
class VSimOptions:
    withscores: bool = False
    withattribs: bool = False
    count: int = COUNT_DEFAULT
    epsilon: float = 2.0  # the largest cosine distance (half of it, as Redis compares)
    ef: int = 0  # 0: max(SEARCH_EF_DEFAULT, count)
    filter: str | None = None
    filter_ef: int = 0  # 0: count * 100
    truth: bool = False
    nothread: bool = False

    @property
    def search_ef(self) -> int:
        """The exploration factor the search uses (``VSIM_execute``)."""
        return max(self.ef or SEARCH_EF_DEFAULT, self.count)

    @property
    def filter_effort(self) -> int:
        return self.filter_ef or min(self.count * FILTER_EF_PER_RESULT, limits.INT64_MAX)


FilterCheck = Callable[[str], None]
"""A FILTER expression's compiler: raises ``RespError`` (Redis's ``ERR syntax error in
FILTER expression near: ...``) when the expression does not compile."""


def parse_vsim_options(
    argv: list[bytes], start: int, check_filter: FilterCheck | None = None
) -> VSimOptions:
    """VSIM's options from ``argv[start]`` on, in ``VSIM_RedisCommand``'s order: each
    error is the first bad option's.  ``check_filter`` compiles a FILTER expression
    (None: any expression is taken)."""
    withscores = withattribs = truth = nothread = False
    count = COUNT_DEFAULT
    epsilon = 2.0
    ef = 0
    filter_ef = 0
    expr: str | None = None
    n = len(argv)
    j = start
    while j < n:
        opt = A.upper(argv[j])
        has_value = j + 1 < n
        if opt == "WITHSCORES":
            withscores = True
        elif opt == "WITHATTRIBS":
            withattribs = True
        elif opt == "TRUTH":
            truth = True
        elif opt == "NOTHREAD":
            nothread = True
        elif opt == "COUNT" and has_value:
            v = _ll(argv[j + 1])
            if v is None or v <= 0:
                raise RespError("ERR invalid COUNT")
            count = v
            j += 1
        elif opt == "EPSILON" and has_value:
            d = _double(argv[j + 1])
            if d is None or d <= 0:
                raise RespError("ERR invalid EPSILON")
            epsilon = d
            j += 1
        elif opt == "EF" and has_value:
            v = _ll(argv[j + 1])
            if v is None or v <= 0 or v > EF_MAX:
                raise RespError("ERR invalid EF")
            ef = v
            j += 1
        elif opt == "FILTER-EF" and has_value:
            v = _ll(argv[j + 1])
            if v is None or v <= 0:
                raise RespError("ERR invalid FILTER-EF")
            filter_ef = v
            j += 1
        elif opt == "FILTER" and has_value:
            text = A.text(argv[j + 1])
            if check_filter is not None:
                check_filter(text)
            expr = text
            j += 1
        else:
            raise RespError("ERR syntax error in VSIM command")
        j += 1
    return VSimOptions(
        withscores=withscores,
        withattribs=withattribs,
        count=count,
        epsilon=epsilon,
        ef=ef,
        filter=expr,
        filter_ef=filter_ef,
        truth=truth,
        nothread=nothread,
    )


def vsim_reply(results: list[tuple[str, float, str | None]], opts: VSimOptions, proto: int) -> Any:
    """VSIM's reply for ``results`` (element, score, attributes; best first), cut at
    ``opts.count`` and at the first whose distance (``1 - score``) exceeds EPSILON.

    RESP2: a flat array (element [score] [attributes] ...).  RESP3 with WITHSCORES or
    WITHATTRIBS: a map element -> score, or -> attributes, or -> [score, attributes]."""
    kept: list[tuple[str, float, str | None]] = []
    for item in results:
        if len(kept) >= opts.count or 1.0 - item[1] > opts.epsilon:
            break
        kept.append(item)
    ws, wa = opts.withscores, opts.withattribs
    if not ws and not wa:
        return [e for e, _, _ in kept]
    if proto == 3:
        if ws and wa:
            return RMap((e, [s, a]) for e, s, a in kept)
        return RMap((e, s if ws else a) for e, s, a in kept)
    out: list[Any] = []
    for e, s, a in kept:
        out.append(e)
        if ws:
            out.append(s)
        if wa:
            out.append(a)
    return out


# -- VEMB, VRANDMEMBER --------------------------------------------------------------------------
def parse_vemb(argv: list[bytes]) -> tuple[str, str, bool]:
    """VEMB key element [RAW]: (key, element, raw); an option other than RAW (checked
    before the key, as Redis) is ``ERR invalid option``."""
    if len(argv) < 2:
        raise wrong_arity("vemb")
    raw = False
    for b in argv[2:]:
        if A.upper(b) != "RAW":
            raise RespError("ERR invalid option")
        raw = True
    return A.text(argv[0]), A.text(argv[1]), raw


def vemb_reply(blob: bytes) -> list[float]:
    """The vector as VEMB answers it: one double per component (the float32's value)."""
    return [float(x) for x in np.frombuffer(blob, dtype="<f4")]


def vemb_raw_reply(blob: bytes) -> list[Any]:
    """VEMB RAW as Redis answers it for an unquantized set: ``f32``, the normalized
    vector's float32 bytes, and its L2 norm before normalization.  crdtkv keeps every
    vector as float32 whatever the index quantizes, so RAW is always this form."""
    v = np.frombuffer(blob, dtype="<f4").astype(np.float64)
    l2 = float(math.sqrt(float(np.dot(v, v))))
    normed = (v / l2 if l2 > 0 else v).astype("<f4").tobytes()
    return [Status("f32"), normed, float(np.float32(l2))]


def parse_vrandmember(argv: list[bytes]) -> tuple[str, int | None]:
    """VRANDMEMBER key [count]: (key, count or None).  The count is read first:
    ``ERR COUNT value is not an integer``; -2^63 (whose opposite does not exist) is
    ``ERR value is out of range``."""
    if len(argv) > 2:
        raise wrong_arity("vrandmember")
    key = A.text(argv[0])
    if len(argv) == 1:
        return key, None
    count = _ll(argv[1])
    if count is None:
        raise RespError("ERR COUNT value is not an integer")
    if count == limits.INT64_MIN:
        raise RespError("ERR value is out of range")
    return key, count


def floats_blob(values: list[float]) -> bytes:
    """``values`` as a float32 little-endian blob (tests and the client's FP32 form)."""
    return struct.pack(f"<{len(values)}f", *values)

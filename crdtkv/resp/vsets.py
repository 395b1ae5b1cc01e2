"""The vector-set commands, as Redis 8 answers them (``modules/vector-sets/vset.c``):
VADD, VREM, VSIM, VCARD, VDIM, VEMB, VGETATTR, VSETATTR, VISMEMBER, VRANDMEMBER, VINFO.

Each runs the ``vsets.*`` ops of the op table (``crdtkv.ops.vset_rows``), after
checking its arguments, the key and the set in Redis's order with Redis's texts
(``crdtkv.resp.vset_args``).  Replies as Redis's: VADD, VREM, VSETATTR and VISMEMBER
answer booleans (``:1``/``:0`` in RESP2, ``#t``/``#f`` in RESP3); VSIM with WITHSCORES
or WITHATTRIBS a map in RESP3 and a flat array in RESP2; VINFO a map.

What differs (docs/resp.md, "Vector sets"):

- Attributes are JSON objects: ``SETATTR`` / ``VSETATTR`` with text that is not one
  is refused (Redis stores any text); VGETATTR answers the object's compact JSON text
  (``{"a":1}`` for ``{"a": 1}``).  An empty text removes them, as in Redis.
- ``Q8`` / ``NOQUANT`` / ``BIN``, ``M`` and ``EF`` choose this replica's index, a local
  choice: a VADD whose choice differs from the one this replica's index was built with
  gets Redis's mismatch error; a replica that learnt the set by replication takes the
  next VADD's.  ``M`` is at most 128 and ``EF`` at most 100,000 here.
- ``REDUCE`` is refused; ``CAS`` and ``NOTHREAD`` are accepted and change nothing.
- ``VEMB`` answers the float32 vector exactly as written (Redis answers it after
  quantization and normalization); ``VEMB ... RAW`` answers the ``f32`` form.
- VSIM answers at most 100,000 matches and VRANDMEMBER at most 100,000 elements.
- ``VINFO``'s ``max-level``, ``vset-uid`` and ``hnsw-max-node-uid`` are 0 (the HNSW
  graph is usearch's); it adds ``index`` (``ready``, ``building`` or ``none``: searches scan until
  the index is built) and ``indexed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import orjson

from crdtkv import limits
from crdtkv.errors import BadRequest, NotFound
from crdtkv.resp import args as A
from crdtkv.resp import vset_args as V
from crdtkv.resp.commands import Context, command
from crdtkv.resp.values import NULL_ARRAY, RespError, RMap, Status
from crdtkv.vectors.filter import compile_filter

if TYPE_CHECKING:
    from crdtkv.crdts.vset import VSet

__all__ = ["copy_vset"]

_GROUP = "vector_set"
_TYPE = "vectorset"
# The ops' bounds (crdtkv.ops.vset_rows) where Redis has none or larger ones.
_M_MAX = 128
_EF_MAX = 100_000
_FILTER_EF_MAX = 10_000_000
_NOT_AN_OBJECT = "ERR attributes are a JSON object in crdtkv (or an empty string to remove them)"


def _state(ctx: Context, key: str) -> VSet | None:
    """The key's vector set now; None when absent; WRONGTYPE for another type."""
    vs = ctx.read(key, _TYPE)
    if vs is None or len(vs) == 0:
        return None
    return cast("VSet", vs)


def _attributes(text: str | None) -> Any:
    """SETATTR's text as the op's attributes: an object, or None (removed)."""
    if text is None:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RespError(_NOT_AN_OBJECT + ": not valid JSON") from None
    if not isinstance(value, dict):
        raise RespError(_NOT_AN_OBJECT)
    return value


def _attrs_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


# -- writes -------------------------------------------------------------------------------------
@command(
    "VADD",
    -5,
    writes=True,
    flags=("denyoom",),
    group=_GROUP,
    summary="Add an element to a vector set, or update its vector if it already exists.",
)
def vadd(ctx: Context, argv: list[bytes]) -> Any:
    a = V.parse_vadd(argv)
    vs = _state(ctx, a.key)
    if vs is not None:
        options = vs.index_options
        if options is not None and options.quant != a.quant:
            raise RespError("ERR asked quantization mismatch with existing vector set")
        if options is not None and options.m != a.m:
            raise RespError("ERR asked M value mismatch with existing vector set")
        dim = vs.dim
        if dim is not None and dim != a.dim:
            raise V.dimension_mismatch(a.dim, dim)
    if a.m > _M_MAX:
        raise RespError(f"ERR invalid M: crdtkv's index takes {V.M_MIN} to {_M_MAX}")
    attrs = _attributes(a.attrs) if a.set_attrs else None
    op: dict[str, Any] = {
        "op": "vsets.add",
        "key": a.key,
        "element": a.element,
        "vector": a.vector,
        "attributes": attrs,
        "quant": a.quant,
        "m": a.m,
        "ef": min(a.ef, _EF_MAX),
    }
    added = bool(ctx.apply(op)["added"])
    if a.set_attrs and attrs is None and not added:
        # SETATTR "": remove the element's attributes (the add kept them)
        ctx.apply(
            {"op": "vsets.setattr", "key": a.key, "element": a.element, "new_attributes": None}
        )
    return added


@command("VREM", 3, writes=True, group=_GROUP, summary="Remove an element from a vector set.")
def vrem(ctx: Context, argv: list[bytes]) -> Any:
    key, element = A.text(argv[0]), A.text(argv[1])
    if _state(ctx, key) is None:
        return False
    return bool(ctx.apply({"op": "vsets.remove", "key": key, "element": element})["removed"])


@command(
    "VSETATTR",
    4,
    writes=True,
    flags=("fast",),
    group=_GROUP,
    summary="Associate or remove the JSON attributes of elements.",
)
def vsetattr(ctx: Context, argv: list[bytes]) -> Any:
    key, element = A.text(argv[0]), A.text(argv[1])
    vs = _state(ctx, key)
    if vs is None or element not in vs:
        return False
    attrs = _attributes(A.text(argv[2]) or None)
    op = {"op": "vsets.setattr", "key": key, "element": element, "new_attributes": attrs}
    return bool(ctx.apply(op)["updated"])


# -- VSIM ---------------------------------------------------------------------------------------
@command("VSIM", -4, group=_GROUP, summary="Return elements by vector similarity.")
def vsim(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    vs = _state(ctx, key)
    if vs is None:
        return []
    q = V.parse_vsim_query(argv)
    dim = vs.dim
    query = q.vector
    if q.element is not None:
        query = vs.vector(q.element)
        if query is None:
            raise RespError("ERR element not found in set")
    elif q.dim != dim:
        raise V.dimension_mismatch(q.dim, dim or 0)
    opts = V.parse_vsim_options(argv, q.end, _check_filter)
    count = min(opts.count, limits.RANGE_MAX)
    op = {
        "op": "vsets.search",
        "key": key,
        "query": query,
        "search_count": count,
        "ef": min(max(opts.ef or V.SEARCH_EF_DEFAULT, count), _EF_MAX),
        "filter": opts.filter,
        "filter_ef": min(opts.filter_effort, _FILTER_EF_MAX) if opts.filter else None,
        "truth": opts.truth,
        "with_attributes": False,
    }
    matches = ctx.apply(op)["matches"]
    wa = opts.withattribs
    results = [
        (m["element"], float(m["score"]), vs.attrs(m["element"]) if wa else None) for m in matches
    ]
    return V.vsim_reply(results, opts, ctx.proto)


def _check_filter(expr: str) -> None:
    """A FILTER expression compiled where it stands among the options, as Redis does:
    ``ERR syntax error in FILTER expression near: ...``."""
    try:
        compile_filter(expr)
    except BadRequest as e:
        raise RespError(f"ERR {e.message}") from None


# -- reads --------------------------------------------------------------------------------------
def _read(ctx: Context, op: dict[str, Any]) -> dict[str, Any] | None:
    """A read op's result; None when the key is absent (404)."""
    try:
        return ctx.apply(op)
    except NotFound:
        return None


@command(
    "VCARD",
    2,
    flags=("fast",),
    group=_GROUP,
    summary="Return the number of elements in a vector set.",
)
def vcard(ctx: Context, argv: list[bytes]) -> Any:
    r = _read(ctx, {"op": "vsets.card", "key": A.text(argv[0])})
    return 0 if r is None else int(r["card"])


@command(
    "VDIM",
    2,
    flags=("fast",),
    group=_GROUP,
    summary="Return the dimension of vectors in the vector set.",
)
def vdim(ctx: Context, argv: list[bytes]) -> Any:
    r = _read(ctx, {"op": "vsets.dim", "key": A.text(argv[0])})
    if r is None:
        raise RespError("ERR key does not exist")
    return int(r["dim"])


@command(
    "VEMB",
    -3,
    flags=("fast",),
    group=_GROUP,
    summary="Return the vector associated with an element.",
)
def vemb(ctx: Context, argv: list[bytes]) -> Any:
    key, element, raw = V.parse_vemb(argv)
    r = _read(ctx, {"op": "vsets.emb", "key": key, "element": element})
    if r is None or r["vector"] is None:
        return None
    values = [float(x) for x in r["vector"]]
    if raw:
        return V.vemb_raw_reply(V.floats_blob(values))
    return values


@command(
    "VGETATTR",
    3,
    flags=("fast",),
    group=_GROUP,
    summary="Retrieve the JSON attributes of elements.",
)
def vgetattr(ctx: Context, argv: list[bytes]) -> Any:
    key, element = A.text(argv[0]), A.text(argv[1])
    r = _read(ctx, {"op": "vsets.getattr", "key": key, "element": element})
    return None if r is None else _attrs_text(r["attributes"])


@command(
    "VISMEMBER",
    3,
    group=_GROUP,
    summary="Check if an element exists in a vector set.",
)
def vismember(ctx: Context, argv: list[bytes]) -> Any:
    key, element = A.text(argv[0]), A.text(argv[1])
    r = _read(ctx, {"op": "vsets.ismember", "key": key, "element": element})
    return False if r is None else bool(r["member"])


@command(
    "VRANDMEMBER",
    -2,
    group=_GROUP,
    summary="Return one or multiple random members from a vector set.",
)
def vrandmember(ctx: Context, argv: list[bytes]) -> Any:
    key, count = V.parse_vrandmember(argv)
    if count == 0:
        return []
    if count is not None and count < -limits.RANGE_MAX:
        raise RespError(
            f"ERR VRANDMEMBER answers at most {limits.RANGE_MAX} elements in crdtkv; "
            f"a count of {count} asks for more"
        )
    op: dict[str, Any] = {"op": "vsets.randmember", "key": key}
    if count is not None:
        op["rand_count"] = min(count, limits.RANGE_MAX)
    r = _read(ctx, op)
    if count is None:
        return r["elements"][0] if r is not None and r["elements"] else None
    return [] if r is None else list(r["elements"])


@command(
    "VINFO",
    2,
    flags=("fast",),
    group=_GROUP,
    summary="Return information about a vector set.",
)
def vinfo(ctx: Context, argv: list[bytes]) -> Any:
    key = A.text(argv[0])
    r = _read(ctx, {"op": "vsets.info", "key": key})
    if r is None:
        return NULL_ARRAY
    vs = _state(ctx, key)
    with_attrs = 0 if vs is None else sum(1 for _, _, t in vs.items() if t is not None)
    return RMap(
        [
            (Status("quant-type"), Status(V.QUANT_NAMES.get(r["quant"], r["quant"]))),
            (Status("hnsw-m"), int(r["m"])),
            (Status("vector-dim"), int(r["dim"])),
            (Status("projection-input-dim"), 0),
            (Status("size"), int(r["card"])),
            (Status("max-level"), 0),
            (Status("attributes-count"), with_attrs),
            (Status("vset-uid"), 0),
            (Status("hnsw-max-node-uid"), 0),
            (Status("index"), Status(str(r["index"]))),
            (Status("indexed"), int(r["indexed"])),
        ]
    )


# -- RENAME -------------------------------------------------------------------------------------
def copy_vset(ctx: Context, src: str, dst: str) -> None:
    """Write every element of the vector set ``src`` at ``dst`` (absent): RENAME's copy."""
    vs = _state(ctx, src)
    if vs is None:
        raise NotFound(f"vector set {src!r} not found")
    options = vs.index_options
    for element, vec, attrs in list(vs.items()):
        op: dict[str, Any] = {
            "op": "vsets.add",
            "key": dst,
            "element": element,
            "vector": vec,
            "attributes": None if attrs is None else orjson.loads(attrs),
        }
        if options is not None:
            op.update(quant=options.quant, m=options.m, ef=options.ef_construction)
        ctx.apply(op)

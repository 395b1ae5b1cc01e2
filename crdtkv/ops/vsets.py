"""Vector set operations (Redis 8's VADD, VREM, VSIM, VCARD, ...) over a ``Replica``.

The state is a ``VSet`` (``crdtkv.crdts.vset``): an observed-remove map from
element to an LWW vector and LWW JSON attributes, whose dimension is fixed by
its first write.  An empty vector set does not exist: its reads answer 404
like an absent key's, and a write that empties it leaves the key absent.

Under concurrency: VADD at two replicas both hold (one vector wins per
element, by HLC); VREM racing VADD or VSETATTR of the same element keeps the
element (add-wins); two replicas that create the set concurrently with
different dimensions converge on the dimension of the earlier creation, and
the other's elements are hidden from every read and search.

Similarity search (``search``) goes through ``crdtkv.vectors.search.vsim``: the
replica's local ANN index when one is ready, an exact scan otherwise or when
``truth`` is asked.  Each function gets its op's arguments already validated
(``OpSpec.parse``), records the delta group of a change, and returns the
op's result body.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Any, cast

import orjson

from crdtkv import limits
from crdtkv.crdts.vset import ATTRS_BYTES_MAX, KEEP, IndexOptions, VSet, unpack_vector
from crdtkv.errors import BadRequest, NotFound
from crdtkv.ops.registers import delete_typed
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica
from crdtkv.vectors.search import PendingBuild, needs_background_build, vsim

__all__ = [
    "VECTORSET",
    "add",
    "card",
    "delete",
    "dim",
    "emb",
    "get",
    "get_attributes",
    "info",
    "ismember",
    "randmember",
    "remove",
    "search",
    "set_attributes",
    "similar",
]

VECTORSET = "vectorset"
_draws = itertools.count()  # VRANDMEMBER's seeds: deterministic, no global random source


def _live(r: Replica, name: str, now_ms: int) -> VSet:
    vs = r.read(name, VECTORSET, now_ms)
    if vs is None:
        raise NotFound(f"vector set {name!r} not found")
    return cast(VSet, vs)


def _attrs_text(value: Any) -> str | None:
    """Attributes as stored: JSON text of an object, or None (null: no attributes)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("attributes are a JSON object (or null to remove them)")
    text = orjson.dumps(value).decode()
    if len(text) > ATTRS_BYTES_MAX:
        raise BadRequest(f"attributes are at most {ATTRS_BYTES_MAX} bytes of JSON")
    return text


def _attrs_value(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


# -- writes -------------------------------------------------------------------------------------
def add(r: Replica, a: Args, now_ms: int) -> Result:
    """VADD: write ``element``'s vector (and attributes, when given); whether it is new."""
    name: str = a["key"]
    vec: bytes = a["vector"]
    attrs = KEEP if a["attributes"] is None else _attrs_text(a["attributes"])
    existing = r.prepare_write(name, VECTORSET, now_ms)
    vs = cast(VSet, existing) if existing is not None else VSet()
    if a["element"] not in vs and len(vs) >= limits.VSET_ELEMENTS_MAX:
        raise BadRequest(f"a vector set holds at most {limits.VSET_ELEMENTS_MAX} elements")
    options = IndexOptions.of(a["quant"], a["m"], a["ef"])
    ts = r.hlc.now(now_ms)
    delta, added = vs.add(r.actor, ts, a["element"], vec, attrs)
    if options is not None and vs.index_options is None:
        vs.index_options = options  # this replica's index: a local choice, never replicated
    r.commit_write(name, VECTORSET, vs, delta, now_ms, ts=ts)
    return {"added": added}


def remove(r: Replica, a: Args, now_ms: int) -> Result:
    """VREM: remove ``element``; whether it was there."""
    name: str = a["key"]
    if r.read(name, VECTORSET, now_ms) is None:
        return {"removed": False}
    vs = cast(VSet, r.for_update((VECTORSET, name)))
    delta, n = vs.remove([a["element"]])
    if n:
        r.commit_write(name, VECTORSET, vs, delta, now_ms)
    return {"removed": bool(n)}


def set_attributes(r: Replica, a: Args, now_ms: int) -> Result:
    """VSETATTR: replace ``element``'s attributes (null removes them); whether it exists."""
    name: str = a["key"]
    text = _attrs_text(a["new_attributes"])
    if r.read(name, VECTORSET, now_ms) is None:
        return {"updated": False}
    vs = cast(VSet, r.for_update((VECTORSET, name)))
    if a["element"] not in vs:
        return {"updated": False}
    ts = r.hlc.now(now_ms)
    delta, ok = vs.set_attrs(r.actor, ts, a["element"], text)
    r.commit_write(name, VECTORSET, vs, delta, now_ms, ts=ts)
    return {"updated": ok}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    delete_typed(r, a["key"], VECTORSET, now_ms)
    return {"ok": True}


# -- reads --------------------------------------------------------------------------------------
def _search(r: Replica, a: Args, now_ms: int, vs: VSet, query: bytes) -> Result:
    dim = vs.dim
    if len(query) // 4 != dim:
        raise BadRequest(f"Vector dimension mismatch - got {len(query) // 4} but set has {dim}")
    count = 10 if a["search_count"] is None else a["search_count"]
    pending = vs.pending if isinstance(vs.pending, PendingBuild) else None
    if pending is None and needs_background_build(vs):
        r.vset_builds.add(a["key"])  # the shell builds its index; an exact scan meanwhile
    matches = vsim(
        vs,
        query,
        count=count,
        ef=a["ef"],
        filter=a["filter"],
        filter_ef=a["filter_ef"],
        truth=bool(a["truth"]),
        pending=pending,
        options=vs.index_options or IndexOptions(),
    )
    with_attrs = bool(a["with_attributes"])
    out: list[dict[str, Any]] = []
    for e, score in matches:
        m: dict[str, Any] = {"element": e, "score": score}
        if with_attrs:
            m["attributes"] = _attrs_value(vs.attrs(e))
        out.append(m)
    return {"matches": out}


def search(r: Replica, a: Args, now_ms: int) -> Result:
    """VSIM with VALUES or FP32: the ``count`` elements most similar to ``query``, best
    first, with their scores (1: the same direction) and, when asked, attributes."""
    vs = _live(r, a["key"], now_ms)
    return _search(r, a, now_ms, vs, a["query"])


def similar(r: Replica, a: Args, now_ms: int) -> Result:
    """VSIM with ELE: as ``search``, by ``element``'s vector (400 when it is absent)."""
    vs = _live(r, a["key"], now_ms)
    query = vs.vector(a["element"])
    if query is None:
        raise BadRequest(f"element {a['element']!r} is not in the vector set")
    return _search(r, a, now_ms, vs, query)


def get(r: Replica, a: Args, now_ms: int) -> Result:
    """The whole set: dimension, size, and each element's vector and attributes."""
    vs = _live(r, a["key"], now_ms)
    if len(vs) > limits.RANGE_MAX:
        raise BadRequest(f"the set holds {len(vs)} elements; a read holds {limits.RANGE_MAX}")
    elements = {
        e: {"vector": unpack_vector(v), "attributes": _attrs_value(t)}
        for e, v, t in sorted(vs.items())
    }
    return {"dim": vs.dim, "card": len(vs), "elements": elements}


def card(r: Replica, a: Args, now_ms: int) -> Result:
    return {"card": len(_live(r, a["key"], now_ms))}


def dim(r: Replica, a: Args, now_ms: int) -> Result:
    return {"dim": _live(r, a["key"], now_ms).dim}


def emb(r: Replica, a: Args, now_ms: int) -> Result:
    """VEMB: ``element``'s vector as written (float32 values); null when absent."""
    vec = _live(r, a["key"], now_ms).vector(a["element"])
    return {"vector": None if vec is None else unpack_vector(vec)}


def get_attributes(r: Replica, a: Args, now_ms: int) -> Result:
    """VGETATTR: ``element``'s attributes (null: none, or no such element)."""
    vs = _live(r, a["key"], now_ms)
    return {"attributes": _attrs_value(vs.attrs(a["element"]))}


def ismember(r: Replica, a: Args, now_ms: int) -> Result:
    vs = _live(r, a["key"], now_ms)
    return {"member": a["element"] in vs}


class _Draws:
    """VRANDMEMBER's generator: splitmix64 seeded by a hash of the key, the time and
    a call counter (the core takes no global random source)."""

    _calls = itertools.count()

    def __init__(self, key: str, now_ms: int) -> None:
        seed = f"{key}:{now_ms}:{next(self._calls)}".encode()
        self._x = int.from_bytes(hashlib.blake2b(seed, digest_size=8).digest(), "little")

    def below(self, n: int) -> int:
        self._x = (self._x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self._x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return (z ^ (z >> 31)) % n


def randmember(r: Replica, a: Args, now_ms: int) -> Result:
    """VRANDMEMBER: with no count one element; count > 0 up to count distinct ones;
    count < 0 exactly -count, possibly repeated (Redis's rules)."""
    vs = _live(r, a["key"], now_ms)
    count: int | None = a["rand_count"]
    if count is not None and abs(count) > limits.RANGE_MAX:
        raise BadRequest(f"an answer holds at most {limits.RANGE_MAX} elements")
    draws = _Draws(a["key"], now_ms)
    elements = vs.elements()
    n = len(elements)
    if count is None:
        return {"elements": [elements[draws.below(n)]]}
    if count < 0:
        return {"elements": [elements[draws.below(n)] for _ in range(-count)]}
    k = min(count, n)
    for i in range(k):  # a partial Fisher-Yates shuffle: k distinct elements
        j = i + draws.below(n - i)
        elements[i], elements[j] = elements[j], elements[i]
    return {"elements": elements[:k]}


def info(r: Replica, a: Args, now_ms: int) -> Result:
    """VINFO: the set's dimension and size, and this replica's index."""
    vs = _live(r, a["key"], now_ms)
    options = vs.index_options or IndexOptions()
    ann = vs.ann
    return {
        "dim": vs.dim,
        "card": len(vs),
        "quant": options.quant,
        "m": options.m,
        "ef_construction": options.ef_construction,
        "index": "ready"
        if ann is not None
        else "building"
        if isinstance(vs.pending, PendingBuild)
        else "none",
        "indexed": len(ann) if ann is not None else 0,  # type: ignore[arg-type]
    }

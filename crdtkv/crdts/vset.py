"""The vector set (Redis 8's VADD/VSIM): an observed-remove map from element to
(LWW vector, LWW JSON attributes), under one causal context.

Conflict rule:
- **Presence** is observed-remove (add-wins): VREM and DEL drop the entries
  they observed, so a concurrent VADD or VSETATTR of the element survives.
- **Vector and attributes** are two last-writer-wins registers per element
  (HLC timestamps, ties by actor): each write makes one entry that replaces
  the element's observed entries; concurrent writes leave one entry each, and
  a read takes the vector of the entry with the highest ``vts`` and the
  attributes of the entry with the highest ``ats``.  VADD without SETATTR
  carries the attributes it saw, VSETATTR the vector it saw, so a VADD and a
  concurrent VSETATTR both hold.
- **The dimension** is fixed by the set's first write.  Every entry carries
  ``born``, the timestamp of the write that created the set as its writer
  saw it (its own, when the set was empty), and its vector's dimension.  The
  set's dimension is that of the live entries with the lowest ``born``: when
  two replicas create the set concurrently with different dimensions, the
  lower HLC wins, and the loser's elements are *hidden*: kept in the state
  (so every replica holds the same state), invisible to every read, count and
  search.  A set emptied by DEL and created again starts a new ``born``.

References: Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), the observed-remove map with one causal context;
Redis's vector sets (redis/redis modules/vector-sets) for the commands.

Vectors are stored as given (float32, little-endian bytes, not normalized:
VEMB returns them); the similarity index normalizes.  Deltas are narrow, as
the hash's: a write lists one element and the dots it replaced, so its size
does not depend on the set's.

The ANN index is derived, never encoded or replicated (``crdtkv.vectors``).
A state keeps an attached index (``ann``) in step with every change of a
visible element, local or merged: ``ann.upsert(element, vec)`` and
``ann.remove(element)``.  When the set's dimension changes the index is
detached (``ann = None``) and built again on demand.  A background build
takes ``snapshot_for_index()`` and ends with ``attach_index(ann)``, which
replays the elements that changed in between.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_dot
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.crdts.numeric import join_cells
from crdtkv.errors import BadRequest, CodecError

__all__ = [
    "ATTRS_BYTES_MAX",
    "DIM_MAX",
    "KEEP",
    "AnnLike",
    "DimensionMismatch",
    "IndexOptions",
    "VEntry",
    "VSet",
    "check_vector",
    "check_vectors",
    "decode_vcell",
    "encode_vcell",
    "pack_vector",
    "unpack_vector",
]

DIM_MAX = 32_768  # dimensions of one vector
_F32 = np.dtype("<f4")  # a stored vector's values: float32, little-endian
ATTRS_BYTES_MAX = 65_536  # bytes of one element's JSON attributes


class DimensionMismatch(BadRequest):
    """A vector whose dimension is not the set's."""


@dataclass(frozen=True, slots=True)
class IndexOptions:
    """This replica's choices for a set's ANN index (VADD's Q8/NOQUANT/BIN, M, EF):
    local, never replicated or stored; the first VADD that gives any sets them."""

    quant: str = "q8"  # "noquant" (float32), "q8" (int8) or "bin" (one bit)
    m: int = 16  # HNSW links per node
    ef_construction: int = 200  # HNSW candidate list while inserting

    @classmethod
    def of(cls, quant: str | None, m: int | None, ef: int | None) -> IndexOptions | None:
        if quant is None and m is None and ef is None:
            return None
        d = cls()
        return cls(quant or d.quant, m or d.m, ef or d.ef_construction)


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()
"""``VSet.add``'s ``attrs`` default: keep the element's attributes as they are."""


class AnnLike(Protocol):
    """What a state needs of an attached index (``crdtkv.vectors.ann.AnnIndex``)."""

    def upsert(self, element: str, vec: bytes) -> None: ...

    def remove(self, element: str) -> None: ...


class VEntry(NamedTuple):
    dot: Dot
    born: Timestamp  # the creation of the set this entry belongs to
    vts: Timestamp  # when its vector was written
    vec: bytes  # float32 little-endian
    ats: Timestamp  # when its attributes were written (ZERO: never)
    attrs: str | None  # JSON text, or None for no attributes

    @property
    def dim(self) -> int:
        return len(self.vec) // 4


Cell = tuple[VEntry, ...]


def pack_vector(values: Iterable[float]) -> bytes:
    """float32 little-endian bytes of ``values`` (checked: finite, 1..DIM_MAX of them)."""
    vals = list(values)
    try:
        blob = struct.pack(f"<{len(vals)}f", *vals)
    except (struct.error, OverflowError, TypeError) as e:
        raise BadRequest(f"a vector is a list of numbers that fit a float32 ({e})") from None
    return check_vector(blob)


def unpack_vector(blob: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(blob) // 4}f", blob))


def check_vector(blob: bytes) -> bytes:
    """``blob`` if it is a valid vector (1..DIM_MAX finite float32s), else BadRequest."""
    if not isinstance(blob, bytes) or not blob or len(blob) % 4:
        raise BadRequest("a vector is 1 or more float32 values (4 bytes each)")
    if len(blob) // 4 > DIM_MAX:
        raise BadRequest(f"a vector has at most {DIM_MAX} dimensions, not {len(blob) // 4}")
    values = struct.unpack(f"<{len(blob) // 4}f", blob)
    # A sum of at most DIM_MAX float32 values cannot overflow a double, so it is finite
    # exactly when every value is (NaN and infinities propagate): one C-level pass,
    # where a start-up decodes a million vectors.
    if not math.isfinite(sum(values)):
        raise BadRequest("a vector's values must be finite (no NaN or infinity)")
    if not any(values):
        raise BadRequest("a vector must not be all zeros (it has no direction)")
    return blob


def _by_dot(e: VEntry) -> Dot:
    return e.dot


def _live_vector(cell: Cell, dim: int | None) -> VEntry | None:
    """The entry whose vector the element shows: the latest of the set's dimension."""
    best: VEntry | None = None
    for e in cell:
        if e.dim == dim and (best is None or e.vts > best.vts):
            best = e
    return best


def _live_attrs(cell: Cell) -> VEntry | None:
    best: VEntry | None = None
    for e in cell:
        if best is None or e.ats > best.ats:
            best = e
    return best


@register_type
class VSet(CRDT):
    TYPE_TAG = "vset"
    FORMAT_VERSION = 1

    __slots__ = (
        "_births",
        "_by_dim",
        "ann",
        "changed_since_snapshot",
        "ctx",
        "entries",
        "index_options",
        "narrow",
        "pending",
        "touched",
    )

    def __init__(
        self,
        entries: dict[str, Cell] | None = None,
        ctx: CausalContext | None = None,
        narrow: bool = False,
    ) -> None:
        self.entries: dict[str, Cell] = entries if entries is not None else {}
        self.ctx = ctx if ctx is not None else CausalContext()
        self.narrow = narrow
        # Storage bookkeeping, as CausalMap.touched (see crdtkv.replica.records).
        self.touched: set[str] | None = None
        self.ann: AnnLike | None = None
        self.changed_since_snapshot: set[str] | None = None
        self.index_options: IndexOptions | None = None
        self.pending: object = None  # a background build in progress (crdtkv.vectors.search)
        # Derived counts: entries per (born, dim) (the set's dimension is that of
        # the lowest born), and elements holding an entry of each dimension.
        self._births: dict[tuple[Timestamp, int], int] = {}
        self._by_dim: dict[int, int] = {}
        self._rebuilt()

    # -- derived counts ---------------------------------------------------------------
    def _rebuilt(self) -> None:
        self._births = {}
        self._by_dim = {}
        for cell in self.entries.values():
            self._count(cell, 1)
        self.ann = None

    def _count(self, cell: Cell, sign: int) -> None:
        births, by_dim = self._births, self._by_dim
        dims = set()
        for e in cell:
            k = (e.born, e.dim)
            n = births.get(k, 0) + sign
            if n:
                births[k] = n
            else:
                del births[k]
            dims.add(e.dim)
        for d in dims:
            n = by_dim.get(d, 0) + sign
            if n:
                by_dim[d] = n
            else:
                del by_dim[d]

    @property
    def dim(self) -> int | None:
        """The set's dimension (None: no live element)."""
        if not self._births:
            return None
        return min(self._births)[1]

    # -- reads ----------------------------------------------------------------------------
    def __len__(self) -> int:
        dim = self.dim
        return 0 if dim is None else self._by_dim.get(dim, 0)

    def __contains__(self, element: object) -> bool:
        if not isinstance(element, str):
            return False
        cell = self.entries.get(element)
        return bool(cell) and _live_vector(cell, self.dim) is not None  # type: ignore[arg-type]

    def vector(self, element: str) -> bytes | None:
        cell = self.entries.get(element)
        if not cell:
            return None
        e = _live_vector(cell, self.dim)
        return None if e is None else e.vec

    def attrs(self, element: str) -> str | None:
        cell = self.entries.get(element)
        if not cell or _live_vector(cell, self.dim) is None:
            return None
        a = _live_attrs(cell)
        return None if a is None else a.attrs

    def items(self) -> Iterator[tuple[str, bytes, str | None]]:
        """Every visible element with its vector and attributes."""
        dim = self.dim
        for element, cell in self.entries.items():
            v = _live_vector(cell, dim) if cell else None
            if v is not None:
                a = _live_attrs(cell)
                yield element, v.vec, None if a is None else a.attrs

    def elements(self) -> list[str]:
        return [e for e, _, _ in self.items()]

    def is_bottom(self) -> bool:
        return self.ctx.is_empty() and not any(self.entries.values())

    def size(self) -> int:
        return len(self.entries) + self.ctx.size()

    # -- the index's hooks ----------------------------------------------------------------
    def snapshot_for_index(self) -> list[tuple[str, bytes]]:
        """The visible (element, vector) pairs now; from now on the elements that
        change are recorded for ``attach_index``."""
        self.changed_since_snapshot = set()
        return [(e, v) for e, v, _ in self.items()]

    def attach_index(self, ann: AnnLike) -> None:
        """Attach ``ann``, built from ``snapshot_for_index()``, after replaying into
        it the elements that changed since."""
        changed = self.changed_since_snapshot or set()
        self.changed_since_snapshot = None
        for element in changed:
            vec = self.vector(element)
            if vec is None:
                ann.remove(element)
            else:
                ann.upsert(element, vec)
        self.ann = ann

    # -- mutation ----------------------------------------------------------------------
    def _put(self, element: str, old: Cell | None, new: Cell, keep_empty: bool) -> None:
        if self.touched is not None:
            self.touched.add(element)
        dim_before = self.dim
        before = _live_vector(old, dim_before) if old else None
        if old:
            self._count(old, -1)
        if new:
            self._count(new, 1)
        if new or keep_empty:
            self.entries[element] = new
        elif old is not None:
            del self.entries[element]
        dim_after = self.dim
        if dim_after != dim_before:
            # Elements appear or hide all over the set: the index starts again.
            self.ann = None
            if self.changed_since_snapshot is not None:
                self.changed_since_snapshot = None  # the build in progress is void
                self.pending = None
            return
        after = _live_vector(new, dim_after) if new else None
        if (before.vec if before else None) == (after.vec if after else None):
            return
        if self.changed_since_snapshot is not None:
            self.changed_since_snapshot.add(element)
        if self.ann is not None:
            if after is None:
                self.ann.remove(element)
            else:
                self.ann.upsert(element, after.vec)

    def add(
        self,
        actor: str,
        ts: Timestamp,
        element: str,
        vec: bytes,
        attrs: str | _Keep | None = KEEP,
    ) -> tuple[VSet, bool]:
        """VADD: write ``element``'s vector (and attributes, unless ``KEEP``);
        returns (delta, whether the element is new).  A vector of another
        dimension than the set's is refused (``DimensionMismatch``) unchanged."""
        dim = self.dim
        if dim is not None and len(vec) // 4 != dim:
            raise DimensionMismatch(
                f"Vector dimension mismatch - got {len(vec) // 4} but set has {dim}"
            )
        old = self.entries.get(element)
        born = ts if dim is None else min(self._births)[0]
        prev = _live_vector(old, dim) if old else None
        if isinstance(attrs, _Keep):
            a = _live_attrs(old) if old and prev is not None else None
            ats, text = (a.ats, a.attrs) if a is not None else (ZERO, None)
        else:
            ats, text = ts, attrs
        return self._write(actor, element, old, born, ts, vec, ats, text), prev is None

    def set_attrs(
        self, actor: str, ts: Timestamp, element: str, attrs: str | None
    ) -> tuple[VSet, bool]:
        """VSETATTR: replace ``element``'s attributes (None removes them); returns
        (delta, False and the bottom delta when the element is absent)."""
        old = self.entries.get(element)
        v = _live_vector(old, self.dim) if old else None
        if v is None:
            return VSet(narrow=True), False
        return self._write(actor, element, old, v.born, v.vts, v.vec, ts, attrs), True

    def _write(
        self,
        actor: str,
        element: str,
        old: Cell | None,
        born: Timestamp,
        vts: Timestamp,
        vec: bytes,
        ats: Timestamp,
        attrs: str | None,
    ) -> VSet:
        dot = self.ctx.next_dot(actor)
        self.ctx.add(dot)
        # The new entry replaces what this replica observed, hidden entries included.
        new: Cell = (VEntry(dot, born, vts, vec, ats, attrs),)
        self._put(element, old, new, False)
        dots = [dot, *(e.dot for e in old or ())]
        return VSet({element: new}, CausalContext(cloud=dots), narrow=True)

    def remove(self, elements: Iterable[str]) -> tuple[VSet, int]:
        """VREM: drop the observed entries of visible ``elements``; (delta, removed)."""
        d_entries: dict[str, Cell] = {}
        dots: list[Dot] = []
        for element in elements:
            if element in d_entries or element not in self:
                continue
            old = self.entries[element]
            d_entries[element] = ()
            dots.extend(e.dot for e in old)
            self._put(element, old, (), False)
        return VSet(d_entries, CausalContext(cloud=dots), narrow=True), len(d_entries)

    def clear(self) -> VSet:
        """DEL: drop every observed entry; a concurrent write survives."""
        self.entries = {}
        self.touched = None
        self._rebuilt()
        self.changed_since_snapshot = None
        self.pending = None
        return VSet({}, self.ctx.copy(), narrow=False)

    # -- join ------------------------------------------------------------------------------
    def merge(self, other: VSet) -> None:
        mine, sctx, octx = self.entries, self.ctx, other.ctx
        was_narrow = self.narrow
        keep_empty = was_narrow and other.narrow
        for element, ocell in other.entries.items():
            scell = mine.get(element)
            keep = join_cells(scell or (), ocell, sctx, octx)
            if keep != scell or (keep_empty and scell is None):
                self._put(element, scell, keep, keep_empty)
        if not other.narrow and not octx.is_empty():
            for element in [k for k in mine if k not in other.entries]:
                scell = mine[element]
                keep = tuple(e for e in scell if e.dot not in octx)
                if len(keep) != len(scell):
                    self._put(element, scell, keep, False)
        if was_narrow and not keep_empty:
            for element in [k for k, cell in mine.items() if not cell]:
                del mine[element]
        sctx.merge(octx)
        self.narrow = keep_empty

    def copy(self) -> VSet:
        out = VSet(dict(self.entries), self.ctx.copy(), self.narrow)
        return out  # without the index: a copy is a value, not a served state

    def _live(self) -> dict[str, Cell]:
        return {k: c for k, c in self.entries.items() if c}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VSet):
            return NotImplemented
        return self.ctx == other.ctx and self._live() == other._live()

    def __repr__(self) -> str:
        return f"VSet({len(self.entries)} elements, {self.ctx!r}, narrow={self.narrow})"

    # -- encoding -----------------------------------------------------------------------------
    def encode(self) -> object:
        items = self.entries.items() if self.narrow else self._live().items()
        return [self.ctx.encode(), [[k, encode_vcell(c)] for k, c in sorted(items)], self.narrow]

    @classmethod
    def decode(cls, payload: object) -> VSet:
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            raise CodecError("vset: expected [context, entries, narrow]")
        ctx_raw, entries_raw, narrow = payload
        if not isinstance(narrow, bool):
            raise CodecError("vset: narrow must be a bool")
        ctx = CausalContext.decode(ctx_raw)
        if not isinstance(entries_raw, list | tuple):
            raise CodecError("vset: entries must be a list")
        entries: dict[str, Cell] = {}
        seen: set[Dot] = set()
        for item in entries_raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise CodecError("vset: entry must be [element, cell]")
            element, cell_raw = item
            if not isinstance(element, str):
                raise CodecError("vset: elements must be strings")
            if element in entries:
                raise CodecError("vset: duplicate element")
            cell = decode_vcell(cell_raw, ctx)
            if not cell and not narrow:
                raise CodecError("vset: a full state lists only live elements")
            for e in cell:
                if e.dot in seen:
                    raise CodecError("vset: a dot held by two elements")
                seen.add(e.dot)
            entries[element] = cell
        return cls(entries, ctx, narrow)


def encode_vcell(cell: Cell) -> list[list[object]]:
    """``[[actor, seq, born, vts, vec, ats, attrs], ...]`` in dot order."""
    return [
        [e.dot[0], e.dot[1], e.born.encode(), e.vts.encode(), e.vec, e.ats.encode(), e.attrs]
        for e in cell
    ]


@functools.lru_cache(maxsize=4096)
def _shared_stamp(wall: object, logical: object, actor: object) -> Timestamp:
    """A ``born`` or ``ats`` stamp: the same few recur across a set's elements."""
    return Timestamp.decode([wall, logical, actor])


def _stamp(raw: object) -> Timestamp:
    if isinstance(raw, list | tuple) and len(raw) == 3:
        try:
            return _shared_stamp(*raw)
        except TypeError:  # an unhashable part: not a stamp
            pass
    return Timestamp.decode(raw)


def decode_vcell(raw: object, ctx: CausalContext, *, check: bool = True) -> Cell:
    """A cell of entries whose dots lie within ``ctx``; raises ``CodecError``.  With
    ``check`` False the vectors are only checked to be bytes: the caller checks
    many at once (``check_vectors``), as a start-up loading a million does."""
    if not isinstance(raw, list | tuple):
        raise CodecError("vset cell: expected a list of entries")
    out: list[VEntry] = []
    for item in raw:
        if not isinstance(item, list | tuple) or len(item) != 7:
            raise CodecError("vset entry: expected [actor, seq, born, vts, vec, ats, attrs]")
        actor, seq, born, vts, vec, ats, attrs = item
        dot = decode_dot([actor, seq])
        if dot not in ctx:
            raise CodecError("vset entry: a dot outside the context")
        if not isinstance(vec, bytes):
            raise CodecError("vset entry: the vector must be bytes")
        if check:
            try:
                check_vector(vec)
            except BadRequest as e:
                raise CodecError(f"vset entry: {e.message}") from None
        if attrs is not None and (
            not isinstance(attrs, str)
            or len(attrs) > ATTRS_BYTES_MAX
            or len(attrs.encode("utf-8", "surrogatepass")) > ATTRS_BYTES_MAX
        ):
            raise CodecError("vset entry: attributes must be a string of at most 64 KiB, or nil")
        out.append(VEntry(dot, _stamp(born), Timestamp.decode(vts), vec, _stamp(ats), attrs))
    if len(out) > 1:
        if len({e.dot for e in out}) != len(out):
            raise CodecError("vset cell: a dot twice")
        out.sort(key=_by_dot)
    return tuple(out)


def check_vectors(vectors: Iterable[bytes]) -> None:
    """``check_vector`` of many at once, one numpy pass per length; ``CodecError``."""
    by_len: dict[int, list[bytes]] = {}
    for v in vectors:
        by_len.setdefault(len(v), []).append(v)
    for n, group in by_len.items():
        if not n or n % 4 or n // 4 > DIM_MAX:
            raise CodecError(f"vset entry: a vector of {n} bytes is not 1 to {DIM_MAX} float32s")
        # NaN or infinite: the 8 exponent bits all ones; zero: every bit but the sign 0.
        mag = np.frombuffer(b"".join(group), dtype="<u4").reshape(len(group), n // 4)
        mag = mag & np.uint32(0x7FFFFFFF)
        if (mag >= 0x7F800000).any():
            raise CodecError("vset entry: a vector's values must be finite (no NaN or infinity)")
        if not mag.any(axis=1).all():
            raise CodecError("vset entry: a vector must not be all zeros (it has no direction)")

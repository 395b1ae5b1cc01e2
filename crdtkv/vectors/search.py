"""VSIM over a vector set: the ANN index when it is ready, an exact scan otherwise.

The set (``crdtkv.crdts.vset.VSet``, docs: /work/shared VSET contract) is seen only
through a small interface, :class:`VectorSetLike`: its dimension, its visible
items, one element's vector and attributes, and the index hooks
``snapshot_for_index()`` / ``attach_index(index)`` / ``ann``.  What this module
attaches is a :class:`SetIndex`: the HNSW graph (:class:`~crdtkv.vectors.ann.AnnIndex`)
and the exact rows (:class:`~crdtkv.vectors.exact.ExactIndex`), both kept in step
by the set's ``upsert``/``remove`` calls.

- A set of at most :data:`SYNC_BUILD_MAX` elements gets its index on its first
  search, built synchronously (well under a second at that size).
- A larger one is built in the background by the shell
  (:class:`crdtkv.vectors.builder.IndexBuilder`, from a :class:`PendingBuild`
  made here); until it is attached, searches scan exactly: the rows of the
  build's snapshot minus the elements changed since, plus those elements'
  current vectors.  Without a pending build (the simulator, or before the shell
  started one) the scan reads the set's items.
- With an index: ``truth`` scans exactly; otherwise the graph answers, FILTER
  applied while gathering candidates (FILTER-EF, Redis's ``COUNT * 100`` by
  default); when the graph cannot supply COUNT matching elements, an exact scan
  over the filter's matches finishes the answer, so a selective filter still
  returns COUNT results when they exist.

Scores are Redis's (1 = identical direction) and recomputed exactly from the
stored vectors for every reported element, so an element has the same score in
ANN and TRUTH answers, and TRUTH answers are the same at every replica holding
the same elements.  Pure (layer 1): no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, cast

import numpy as np

from crdtkv.crdts.vset import IndexOptions
from crdtkv.errors import BadRequest
from crdtkv.vectors.ann import (
    DEFAULT_EF,
    AnnIndex,
    Quant,
)
from crdtkv.vectors.exact import ExactIndex
from crdtkv.vectors.filter import Filter, compile_filter

__all__ = [
    "DEFAULT_OPTIONS",
    "SYNC_BUILD_MAX",
    "IndexOptions",
    "PendingBuild",
    "SetIndex",
    "VectorSetLike",
    "build_index",
    "needs_background_build",
    "vsim",
]

SYNC_BUILD_MAX = 2_000
"""Largest set whose index is built synchronously on first search.  Measured
(benchmarks/vset_index_bench.py, 128 dims, q8, M 16, EF construction 200, one
core): about 0.3 s for 2,000 elements; 20,000 take seconds, too long for a
request.  An exact scan of 2,000 x 128 takes well under a millisecond."""

BUILD_BATCH = 2_000
"""Elements per usearch batch in a build: the unit of progress reports, and how
long a stopping replica waits for a build (one batch: about a second on one core
at 128 dimensions)."""


class VectorSetLike(Protocol):
    """What search needs of a vector set (the lead's VSet has all of it)."""

    ann: Any

    @property
    def dim(self) -> int | None: ...

    def __len__(self) -> int: ...

    def items(self) -> Iterator[tuple[str, bytes, str | None]]: ...

    def vector(self, element: str) -> bytes | None: ...

    def attrs(self, element: str) -> str | None: ...

    def snapshot_for_index(self) -> list[tuple[str, bytes]]: ...

    @property
    def changed_since_snapshot(self) -> set[str] | None: ...

    def attach_index(self, ann: Any) -> None: ...


DEFAULT_OPTIONS = IndexOptions()


class SetIndex:
    """What a set's ``ann`` holds: the graph and the exact rows, in step."""

    __slots__ = ("ann", "exact")

    def __init__(self, ann: AnnIndex, exact: ExactIndex) -> None:
        self.ann = ann
        self.exact = exact

    @property
    def dim(self) -> int:
        return self.exact.dim

    def __len__(self) -> int:
        return len(self.exact)

    def upsert(self, element: str, vec: bytes) -> None:
        self.exact.upsert(element, vec)
        self.ann.upsert(element, vec)

    def remove(self, element: str) -> None:
        self.exact.remove(element)
        self.ann.remove(element)


def build_index(
    dim: int,
    pairs: list[tuple[str, bytes]],
    options: IndexOptions = DEFAULT_OPTIONS,
    *,
    threads: int = 1,
    exact: ExactIndex | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SetIndex:
    """Build a set's index from (element, float32 bytes) pairs, in batches of
    :data:`BUILD_BATCH`, calling ``progress(done, total)`` after each."""
    if exact is None:
        exact = ExactIndex.from_pairs(dim, pairs)
    quant = cast(Quant, options.quant)
    ann = AnnIndex(dim, m=options.m, ef_construction=options.ef_construction, quant=quant)
    total = len(pairs)
    for start in range(0, total, BUILD_BATCH):
        chunk = pairs[start : start + BUILD_BATCH]
        mat = np.frombuffer(b"".join(v for _, v in chunk), dtype="<f4").reshape(len(chunk), dim)
        ann.add_batch([e for e, _ in chunk], mat, threads=threads)
        if progress is not None:
            progress(min(start + BUILD_BATCH, total), total)
    return SetIndex(ann, exact)


class PendingBuild:
    """A background build's pure part: the snapshot (taken when made, which starts
    the set's record of changes), the exact rows of that snapshot (what searches
    scan meanwhile), and the index once :meth:`run` is done.

    Make it on the thread that writes the set, :meth:`run` it anywhere (it only
    reads the snapshot), :meth:`attach` it on the writing thread again."""

    def __init__(self, vset: VectorSetLike, options: IndexOptions = DEFAULT_OPTIONS) -> None:
        dim = vset.dim
        if dim is None:
            raise ValueError("an empty set has no dimension to index")
        self.dim: int = dim
        self.options = options
        self.pairs: list[tuple[str, bytes]] | None = vset.snapshot_for_index()
        self.total = len(self.pairs)
        self.exact = ExactIndex.from_pairs(dim, self.pairs)
        self.index: SetIndex | None = None

    def run(self, *, threads: int = 1, progress: Callable[[int, int], None] | None = None) -> None:
        pairs = self.pairs
        assert pairs is not None, "run() once"
        self.index = build_index(
            self.dim, pairs, self.options, threads=threads, exact=self.exact, progress=progress
        )
        self.pairs = None  # the snapshot's memory goes

    @property
    def done(self) -> bool:
        return self.index is not None

    def attach(self, vset: VectorSetLike) -> bool:
        """Attach the built index to the set's current version, which replays the
        changes made during the build.  False (nothing attached) if the set's
        dimension changed meanwhile: its next search starts over."""
        if self.index is None:
            raise RuntimeError("the build has not finished")
        if vset.dim != self.dim:
            return False
        vset.attach_index(self.index)
        return True

    def search(
        self,
        vset: VectorSetLike,
        query: bytes,
        count: int,
        accept: Callable[[str], bool] | None,
    ) -> list[tuple[str, float]]:
        """Exact answer during the build: snapshot rows but changed elements, plus
        the changed elements' current vectors."""
        changed = set(vset.changed_since_snapshot or ())

        def old_ok(e: str) -> bool:
            return e not in changed and (accept is None or accept(e))

        hits = self.exact.search(query, count, old_ok)
        fresh = []
        for e in changed:
            vec = vset.vector(e)
            if vec is not None and (accept is None or accept(e)):
                fresh.append((e, vec))
        if fresh:
            hits += ExactIndex.from_pairs(self.dim, fresh).search(query, count)
            hits.sort(key=lambda t: (-t[1], t[0]))
        return hits[:count]


def needs_background_build(vset: VectorSetLike) -> bool:
    """True when the set has no index and is too large to build one inline: the
    shell should start an :class:`~crdtkv.vectors.builder.IndexBuilder`."""
    return vset.dim is not None and vset.ann is None and len(vset) > SYNC_BUILD_MAX


def _exact_from_items(dim: int, items: Iterable[tuple[str, bytes, str | None]]) -> ExactIndex:
    return ExactIndex.from_pairs(dim, ((e, v) for e, v, _ in items))


def vsim(
    vset: VectorSetLike,
    query: bytes,
    *,
    count: int,
    ef: int | None = None,
    filter: str | Filter | None = None,
    filter_ef: int | None = None,
    truth: bool = False,
    pending: PendingBuild | None = None,
    options: IndexOptions = DEFAULT_OPTIONS,
) -> list[tuple[str, float]]:
    """The ``count`` elements most similar to ``query`` (float32 bytes), best
    first, with Redis scores.  ``filter`` is a FILTER expression (text or
    compiled); ``pending`` the set's background build, if one is running."""
    dim = vset.dim
    if dim is None or len(vset) == 0 or count <= 0:
        return []
    if len(query) != dim * 4:
        raise BadRequest(f"Vector dimension mismatch - got {len(query) // 4} but set has {dim}")
    flt = compile_filter(filter) if isinstance(filter, str) else filter
    accept: Callable[[str], bool] | None = None
    if flt is not None:
        f = flt

        def accept(e: str) -> bool:
            return f(vset.attrs(e))

    index = vset.ann
    if index is None and pending is None and len(vset) <= SYNC_BUILD_MAX:
        index = build_index(dim, vset.snapshot_for_index(), options)
        vset.attach_index(index)
    if isinstance(index, SetIndex) and index.dim == dim:
        if truth:
            return index.exact.search(query, count, accept)
        # Ask the graph for EF candidates (it explores that many anyway), then rank
        # them by the stored vectors: quantization (q8/bin) only orders roughly.
        want = max(count, ef or DEFAULT_EF)
        hits, complete = index.ann.filtered_search(query, want, ef, accept, filter_ef)
        if accept is not None and len(hits) < count and not complete:
            return index.exact.search(query, count, accept)
        return index.exact.rerank([e for e, _ in hits], query, count)
    if pending is not None and pending.dim == dim:
        return pending.search(vset, query, count, accept)
    return _exact_from_items(dim, vset.items()).search(query, count, accept)

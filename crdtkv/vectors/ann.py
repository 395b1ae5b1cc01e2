"""The approximate (HNSW) index of one vector set, over usearch.

Cosine metric; the dimension is fixed at creation; ``m`` is HNSW's M (usearch's
connectivity), ``ef_construction`` its build-time exploration (``expansion_add``).
Quantization as Redis's VADD options:

- ``"noquant"``: float32 (Redis NOQUANT);
- ``"q8"``: int8 (Redis Q8, Redis's default; usearch ``i8`` with the cosine metric);
- ``"bin"``: one bit per dimension, the sign (Redis BIN), searched by Hamming
  distance (usearch ``b1``); Redis's distance is then ``2 * hamming / dim``.

Defaults are Redis's: M 16, EF construction 200, search EF 100 (raised to COUNT
when COUNT is larger), FILTER-EF ``COUNT * 100``.  Scores are Redis's:
``1 - distance / 2`` with the cosine distance ``1 - cos`` (1 = identical).

Elements are strings mapped to uint64 labels from a counter (a label is never
reused, so a removed element's label cannot come back under another name); a
result whose label is no longer mapped is dropped, which keeps removed elements
out of answers even if the library returned one.

usearch's Python API takes no predicate during a search, so a filtered search
asks for more candidates, growing ``count``-fold steps up to FILTER-EF, and
filters them in order; :meth:`AnnIndex.filtered_search` says whether the
candidates covered the whole index, so that the caller
(:func:`crdtkv.vectors.search.vsim`) can finish with an exact scan over the
filter's matches when the graph could not supply COUNT of them.

Pure apart from usearch itself: no I/O but the explicit :meth:`save`/:meth:`load`,
no clock, no randomness (usearch's level draws are its own, seeded per index).
Not thread-safe: one thread at a time (the builder fills an index no one else
sees yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
from usearch.index import Index

__all__ = [
    "DEFAULT_EF",
    "DEFAULT_EF_CONSTRUCTION",
    "DEFAULT_M",
    "DEFAULT_QUANT",
    "QUANTS",
    "AnnIndex",
    "Quant",
]

Quant = Literal["noquant", "q8", "bin"]
QUANTS: tuple[Quant, ...] = ("noquant", "q8", "bin")
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_EF = 100
DEFAULT_QUANT: Quant = "q8"
FILTER_EF_PER_COUNT = 100
Accept = Callable[[str], bool]


def _normalize(mat: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(mat, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.asarray(mat / norms, dtype=np.float32)


class AnnIndex:
    """An HNSW index of (element, float32 vector) for cosine top-k search."""

    def __init__(
        self,
        dim: int,
        *,
        m: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        quant: Quant = DEFAULT_QUANT,
        _index: Index | None = None,
    ) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        if quant not in QUANTS:
            raise ValueError(f"quant must be one of {', '.join(QUANTS)}")
        if m < 2:
            raise ValueError("m must be at least 2")
        if ef_construction < 1:
            raise ValueError("ef_construction must be positive")
        self.dim = dim
        self.m = m
        self.ef_construction = ef_construction
        self.quant: Quant = quant
        if _index is not None:
            self._index = _index
        elif quant == "bin":
            self._index = Index(
                ndim=dim,
                metric="hamming",
                dtype="b1",
                connectivity=m,
                expansion_add=ef_construction,
                expansion_search=DEFAULT_EF,
            )
        else:
            self._index = Index(
                ndim=dim,
                metric="cos",
                dtype="f32" if quant == "noquant" else "i8",
                connectivity=m,
                expansion_add=ef_construction,
                expansion_search=DEFAULT_EF,
            )
        self._labels: dict[str, int] = {}
        self._elements: dict[int, str] = {}
        self._next = 0

    # -- vectors ------------------------------------------------------------------------------

    def _prepare(
        self, mat: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32] | npt.NDArray[np.uint8]:
        if self.quant == "bin":
            return np.packbits(mat > 0, axis=-1)
        return _normalize(mat)

    def _vec(self, vec: bytes) -> npt.NDArray[np.float32]:
        v = np.frombuffer(vec, dtype="<f4")
        if v.shape[0] != self.dim:
            raise ValueError(f"vector of dimension {v.shape[0]}, index has {self.dim}")
        return v

    def _score(self, distance: float) -> float:
        d = 2.0 * distance / self.dim if self.quant == "bin" else distance
        return min(1.0, max(0.0, 1.0 - d / 2.0))

    # -- writes -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, element: object) -> bool:
        return element in self._labels

    def upsert(self, element: str, vec: bytes) -> None:
        """Add ``element``, or replace its vector."""
        v = self._vec(vec)
        self.remove(element)
        label = self._next
        self._next += 1
        self._index.add(label, self._prepare(v[None, :])[0], threads=1)
        self._labels[element] = label
        self._elements[label] = element

    def remove(self, element: str) -> None:
        """Drop ``element`` (nothing if absent)."""
        label = self._labels.pop(element, None)
        if label is None:
            return
        del self._elements[label]
        self._index.remove(label)

    def add_batch(
        self, elements: Sequence[str], matrix: npt.NDArray[np.float32], *, threads: int = 1
    ) -> None:
        """Add many new elements at once (rows of a float32 matrix); an element
        already present is replaced.  ``threads`` 0 uses every core."""
        if len(elements) != matrix.shape[0] or matrix.shape[1] != self.dim:
            raise ValueError("elements and matrix rows disagree, or wrong dimension")
        for e in elements:
            self.remove(e)
        labels = np.arange(self._next, self._next + len(elements), dtype=np.uint64)
        self._next += len(elements)
        self._index.add(
            labels, self._prepare(np.asarray(matrix, dtype=np.float32)), threads=threads
        )
        for e, label in zip(elements, labels.tolist(), strict=True):
            self._labels[e] = label
            self._elements[label] = e

    # -- reads --------------------------------------------------------------------------------

    def _raw_search(self, q: npt.NDArray[np.float32], k: int, ef: int) -> list[tuple[str, float]]:
        # usearch has the setter; its stub declares the property before it.
        self._index.expansion_search = max(ef, k)  # type: ignore[misc]
        m = self._index.search(self._prepare(q[None, :])[0], k, threads=1)
        out: list[tuple[str, float]] = []
        for label, dist in zip(m.keys.tolist(), m.distances.tolist(), strict=True):
            element = self._elements.get(label)
            if element is not None:  # a label no longer mapped is a removed element
                out.append((element, self._score(dist)))
        return out

    def search(
        self,
        query: bytes,
        count: int,
        ef: int | None = None,
        accept: Accept | None = None,
        filter_ef: int | None = None,
    ) -> list[tuple[str, float]]:
        """The ``count`` nearest elements (that ``accept`` takes), best first, with
        Redis scores.  ``ef`` defaults to 100 and is at least ``count``."""
        return self.filtered_search(query, count, ef, accept, filter_ef)[0]

    def filtered_search(
        self,
        query: bytes,
        count: int,
        ef: int | None = None,
        accept: Accept | None = None,
        filter_ef: int | None = None,
    ) -> tuple[list[tuple[str, float]], bool]:
        """As :meth:`search`, and whether the candidates examined were the whole
        index (then fewer than ``count`` results means there are no more)."""
        q = self._vec(query)
        n = len(self._labels)
        if count <= 0 or n == 0:
            return [], True
        ef = max(ef or DEFAULT_EF, count)
        if accept is None:
            k = min(count, n)
            return self._raw_search(q, k, ef)[:count], k >= n
        limit = max(filter_ef or count * FILTER_EF_PER_COUNT, count)
        k = min(n, max(ef, count * 4))
        seen = 0
        out: list[tuple[str, float]] = []
        while True:
            cands = self._raw_search(q, k, ef)
            for element, score in cands[seen:]:
                if accept(element):
                    out.append((element, score))
            seen = len(cands)
            if len(out) >= count or k >= n or k >= limit:
                return out[:count], k >= n
            k = min(n, limit, k * 4)

    # -- snapshots ----------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the graph to ``path`` and the element map to ``path + '.labels'``
        (UTF-8 lines ``label\\telement`` would break on tabs: msgpack instead)."""
        import msgpack

        self._index.save(path)
        meta = {
            "dim": self.dim,
            "m": self.m,
            "ef_construction": self.ef_construction,
            "quant": self.quant,
            "next": self._next,
            "labels": list(self._labels.items()),
        }
        with open(path + ".labels", "wb") as f:
            f.write(msgpack.packb(meta))

    @classmethod
    def load(cls, path: str, *, view: bool = False) -> AnnIndex:
        """Read a snapshot written by :meth:`save`; ``view`` memory-maps the graph
        (read-only: no writes until reloaded)."""
        import msgpack

        with open(path + ".labels", "rb") as f:
            meta = msgpack.unpackb(f.read())
        index = Index.restore(path, view=view)
        if index is None:
            raise ValueError(f"{path}: not a usearch index")
        out = cls(
            meta["dim"],
            m=meta["m"],
            ef_construction=meta["ef_construction"],
            quant=meta["quant"],
            _index=index,
        )
        out._next = meta["next"]
        for element, label in meta["labels"]:
            out._labels[element] = label
            out._elements[label] = element
        return out

    def memory_usage(self) -> int:
        """Bytes usearch holds for the graph and vectors."""
        return int(self._index.memory_usage)

    def elements(self) -> Iterable[str]:
        return self._labels.keys()

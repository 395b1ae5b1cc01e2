"""Exact cosine search over a set's visible vectors (VSIM TRUTH, and every query
while the ANN index is not ready).

One float32 matrix of the raw vectors with their norms; a query is one
matrix-vector product, then ``argpartition`` for the top candidates.  Scores are
Redis's: ``1 - cosine_distance / 2`` (1 for identical directions, 0.5 for
orthogonal, 0 for opposite).

The answer is the same at every replica holding the same elements, whatever the
order they arrived in: the candidates are chosen with the fast float32 scores,
then the reported scores are recomputed exactly (``math.fsum`` over the float32
products, each exact in a double) and ties broken by element, with a margin
around the last place so that rounding in the fast pass cannot change which
elements make the cut.

Rows are kept incrementally (``upsert``/``remove``; a removed row is masked and its
slot reused), so the index can follow writes like the ANN index does.  Pure: no
I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import numpy.typing as npt

__all__ = ["ExactIndex", "exact_score", "redis_score"]

Accept = Callable[[str], bool]
_MARGIN = 1e-5  # float32 dot products of unit vectors of dim <= 32k are well within this


def redis_score(cosine_similarity: float) -> float:
    """Redis's VSIM score for a cosine similarity: 1 - (1 - cos) / 2, clamped to [0, 1]."""
    return min(1.0, max(0.0, 1.0 - (1.0 - cosine_similarity) / 2.0))


def _exact_cos(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    # A product of two float32s is exact in float64 (24 + 24 significant bits, and
    # no overflow or underflow), so numpy's elementwise products are the exact
    # products and fsum rounds their exact sum once: the same float at every
    # replica whatever the machine (a BLAS dot's order of additions is not).
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    dot = math.fsum((a64 * b64).tolist())
    na = math.fsum((a64 * a64).tolist())
    nb = math.fsum((b64 * b64).tolist())
    if na == 0.0 or nb == 0.0:
        return 0.0
    return dot / math.sqrt(na * nb)


def exact_score(a: bytes, b: bytes) -> float:
    """The deterministic Redis score of two float32 vectors given as bytes."""
    return redis_score(_exact_cos(np.frombuffer(a, "<f4"), np.frombuffer(b, "<f4")))


class ExactIndex:
    """The visible vectors of one set, for exact top-k cosine search."""

    def __init__(self, dim: int, capacity: int = 64) -> None:
        if dim <= 0:
            raise ValueError("dim must be positive")
        self.dim = dim
        cap = max(1, capacity)
        self._mat = np.zeros((cap, dim), dtype=np.float32)
        self._norm = np.zeros(cap, dtype=np.float32)
        self._valid = np.zeros(cap, dtype=bool)
        self._names: list[str | None] = [None] * cap
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self._top = 0  # rows ever used

    @classmethod
    def from_pairs(cls, dim: int, pairs: Iterable[tuple[str, bytes]]) -> ExactIndex:
        """Bulk load (element, float32 bytes) pairs; a later pair for an element wins."""
        pairs = list(pairs)
        out = cls(dim, capacity=len(pairs) + 64)
        if not pairs:
            return out
        names = [e for e, _ in pairs]
        blob = b"".join(v for _, v in pairs)
        if len(blob) != len(pairs) * dim * 4:
            raise ValueError("a vector has the wrong dimension")
        mat = np.frombuffer(blob, dtype="<f4").reshape(len(pairs), dim)
        n = len(pairs)
        out._mat[:n] = mat
        out._norm[:n] = np.linalg.norm(mat, axis=1)
        out._valid[:n] = True
        out._names[:n] = names
        out._top = n
        for i, e in enumerate(names):
            old = out._rows.get(e)
            if old is not None:  # duplicate: keep the later row
                out._valid[old] = False
                out._names[old] = None
                out._free.append(old)
            out._rows[e] = i
        return out

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, element: object) -> bool:
        return element in self._rows

    def _grow(self) -> None:
        cap = len(self._valid) * 2
        mat = np.zeros((cap, self.dim), dtype=np.float32)
        mat[: len(self._valid)] = self._mat
        norm = np.zeros(cap, dtype=np.float32)
        norm[: len(self._valid)] = self._norm
        valid = np.zeros(cap, dtype=bool)
        valid[: len(self._valid)] = self._valid
        self._names.extend([None] * (cap - len(self._names)))
        self._mat, self._norm, self._valid = mat, norm, valid

    def upsert(self, element: str, vec: bytes) -> None:
        v = np.frombuffer(vec, dtype="<f4")
        if v.shape[0] != self.dim:
            raise ValueError(f"vector of dimension {v.shape[0]}, index has {self.dim}")
        row = self._rows.get(element)
        if row is None:
            if self._free:
                row = self._free.pop()
            else:
                if self._top == len(self._valid):
                    self._grow()
                row = self._top
                self._top += 1
            self._rows[element] = row
            self._names[row] = element
            self._valid[row] = True
        self._mat[row] = v
        self._norm[row] = np.linalg.norm(v)

    def remove(self, element: str) -> None:
        row = self._rows.pop(element, None)
        if row is None:
            return
        self._valid[row] = False
        self._names[row] = None
        self._mat[row] = 0
        self._norm[row] = 0
        self._free.append(row)

    def vector(self, element: str) -> npt.NDArray[np.float32] | None:
        row = self._rows.get(element)
        return None if row is None else self._mat[row].copy()

    def score(self, element: str, query: bytes) -> float | None:
        """The exact Redis score of one element against a query, None if absent."""
        row = self._rows.get(element)
        if row is None:
            return None
        return redis_score(_exact_cos(self._mat[row], np.frombuffer(query, "<f4")))

    def rerank(self, elements: list[str], query: bytes, count: int) -> list[tuple[str, float]]:
        """The best ``count`` of ``elements`` (ANN candidates) by their exact
        scores, best first; absent elements are skipped.  A quantized graph ranks
        near neighbours roughly; ranking its candidates again by the stored
        vectors recovers most of that recall."""
        rows = [r for r in (self._rows.get(e) for e in elements) if r is not None]
        if not rows or count <= 0:
            return []
        q = np.frombuffer(query, dtype="<f4")
        qn = float(np.linalg.norm(q))
        sub = np.asarray(rows)
        norms = self._norm[sub]
        with np.errstate(divide="ignore", invalid="ignore"):
            sims = (self._mat[sub] @ q) / (norms * (qn or 1.0))
        sims = np.where(norms > 0, sims, 0.0) if qn else np.zeros(len(rows))
        order = np.argsort(-sims, kind="stable")
        cut = float(sims[order[min(count, len(rows)) - 1]]) - _MARGIN
        pool = [rows[i] for i in order.tolist() if sims[i] >= cut]
        scored = []
        for r in pool:
            name = self._names[r]
            assert name is not None
            scored.append((name, redis_score(0.0 if qn == 0 else _exact_cos(self._mat[r], q))))
        scored.sort(key=lambda t: (-t[1], t[0]))
        return scored[:count]

    def search(
        self, query: bytes, count: int, accept: Accept | None = None
    ) -> list[tuple[str, float]]:
        """The ``count`` most similar elements (that ``accept`` takes), best first,
        with their Redis scores; ties broken by element."""
        q = np.frombuffer(query, dtype="<f4")
        if q.shape[0] != self.dim:
            raise ValueError(f"query of dimension {q.shape[0]}, index has {self.dim}")
        n = self._top
        if count <= 0 or not self._rows:
            return []
        qn = float(np.linalg.norm(q))
        valid = self._valid[:n]
        norms = self._norm[:n]
        sims: npt.NDArray[np.float64]
        if qn == 0:
            sims = np.where(valid, 0.0, -np.inf)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                raw = (self._mat[:n] @ q) / (norms * qn)
            # Zero vectors have similarity 0 with everything (score 0.5).
            sims = np.where(valid, np.where(norms > 0, raw, 0.0), -np.inf)
        valid_total = len(self._rows)
        chosen: list[int] = []
        checked = 0  # candidates examined so far, in descending fast-score order
        k = min(valid_total, max(count * 4, 32) if accept else count)
        while True:
            k = min(k, n)
            idx = np.argpartition(-sims, k - 1)[:k] if k < n else np.arange(n)
            idx = idx[np.argsort(-sims[idx], kind="stable")]
            for i in idx[checked:].tolist():
                if sims[i] == -np.inf:
                    break
                name = self._names[i]
                assert name is not None
                if accept is None or accept(name):
                    chosen.append(i)
            checked = len(idx)
            if len(chosen) >= count or k >= n or checked >= valid_total:
                break
            k *= 4
        if not chosen:
            return []
        # The cut: everything within the margin of the count-th fast score competes.
        chosen.sort(key=lambda i: -sims[i])
        cut = float(sims[chosen[min(count, len(chosen)) - 1]]) - _MARGIN
        pool = [i for i in chosen if sims[i] >= cut]
        if len(chosen) >= count and k < n:
            # Rows outside the examined prefix may tie with the cut: include them.
            extra = np.nonzero(sims >= cut)[0].tolist()
            seen = set(pool)
            for i in extra:
                if i not in seen:
                    name = self._names[i]
                    if name is not None and (accept is None or accept(name)):
                        pool.append(i)
        scored = []
        for i in pool:
            name = self._names[i]
            assert name is not None
            s = redis_score(0.0 if qn == 0 else _exact_cos(self._mat[i], q))
            scored.append((name, s))
        scored.sort(key=lambda t: (-t[1], t[0]))
        return scored[:count]

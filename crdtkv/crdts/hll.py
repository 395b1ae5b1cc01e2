"""HyperLogLog: the state with the larger epoch wins whole, and equal epochs
join register-wise by maximum.

References: Flajolet, Fusy, Gandouet, Meunier, "HyperLogLog: the analysis of a
near-optimal cardinality estimation algorithm" (AofA 2007) for the sketch;
Ertl, "New cardinality estimation algorithms for HyperLogLog sketches"
(arXiv 1702.01284, 2017) for the estimator ``count`` uses -- the improved
estimator Redis has used since 4.0 (``hllCount``, ``hllSigma``, ``hllTau`` in
Redis's ``hyperloglog.c``).  The delete rule is that of Redis Active-Active:
a delete wins over concurrent adds.

State: ``(epoch, registers)``.  ``epoch`` is an HLC timestamp (bottom:
``hlc.ZERO``); ``registers`` holds ``M = 2**14 = 16384`` registers, each in
``0..Q+1 = 0..51``.  Join: the larger epoch wins whole, the other side's
registers are dropped; on equal epochs, register-wise max.  A delete is
``clear(ts)``: a new epoch ``ts`` with all registers zero, so every add made
concurrently in the old epoch loses, and every add made after observing the
delete lives in the new epoch and survives.

Two operations combine registers, and they are deliberately distinct:

- ``merge(other)`` is the CRDT join (the epoch rule above).  Replication uses
  it to apply a delta or a full state of the *same key*.
- ``merge_from(other)`` is the user-level union, the API's
  ``merge(dest, sources)`` (Redis ``PFMERGE``): the register-wise max of
  another key's registers is folded into this key at *this* key's epoch,
  whatever the other's epoch.  It is a mutator and returns a delta.

FIXED FOREVER -- changing any of these breaks merging with every register
already stored or in flight, so they are pinned by tests:

- hash: ``xxhash.xxh3_64_intdigest(item.encode("utf-8"), seed=0)``;
- bit split (Redis's scheme): register index ``hash & (M - 1)`` (the low
  ``P = 14`` bits); the remaining ``Q = 50`` bits ``w = (hash >> P) | (1 << Q)``;
- register rule: value = number of trailing zeros of ``w``, plus 1
  (so ``1..51``; ``0`` means "never set").

Representation: a register array is either dense (a ``bytearray`` of M bytes)
or sparse (a ``dict`` index -> value holding only non-zero registers).  Deltas
are sparse, so applying one to a dense state costs O(delta size); a sparse
state becomes dense once it holds more than ``SPARSE_MAX`` registers.
Equality and encoding depend only on the register values, never on the
representation.

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Self

import xxhash

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import ZERO, Timestamp
from crdtkv.errors import CodecError

__all__ = ["HLL", "REGISTER_MAX", "M", "P", "Q", "hash_item", "register_of"]

P = 14
"""Index bits: ``M = 2**P`` registers, standard error ``1.04 / sqrt(M)`` = 0.81%."""
M = 1 << P
Q = 64 - P
"""Bits left for the pattern after the index."""
REGISTER_MAX = Q + 1
"""Largest register value (51)."""
HASH_SEED = 0

SPARSE_MAX = 1024
"""A sparse register map with more entries than this is converted to dense."""

ALPHA_INF = 1.0 / (2.0 * math.log(2.0))  # 0.7213475204444817, Ertl's alpha_infinity

_INDEX_MASK = M - 1
_Q_BIT = 1 << Q
_xxh3 = xxhash.xxh3_64_intdigest

# Constants for the SWAR register-wise max of two dense arrays (see _dense_max).
_LANE_HIGH = int.from_bytes(b"\x80" * M, "big")
_LANE_ALL = int.from_bytes(b"\xff" * M, "big")

Registers = bytearray | dict[int, int]


def hash_item(item: str) -> int:
    """The 64-bit hash of an item (fixed forever: see module docstring)."""
    return _xxh3(item.encode("utf-8"), seed=HASH_SEED)


def register_of(item: str) -> tuple[int, int]:
    """``(index, value)``: the register ``item`` sets and the value it offers."""
    if not isinstance(item, str):
        raise TypeError(f"HLL items must be strings, not {type(item).__name__}")
    h = _xxh3(item.encode("utf-8"), seed=HASH_SEED)
    w = (h >> P) | _Q_BIT
    return h & _INDEX_MASK, (w & -w).bit_length()  # trailing zeros of w, plus 1


def _dense_max(a: bytes | bytearray, b: bytes | bytearray) -> bytearray:
    """Register-wise max of two dense arrays, in a few big-int operations.

    Each byte is a lane holding 0..51 (< 0x80).  ``(A | 0x80..) - B`` leaves
    ``0x80 + a - b`` in each lane, never borrowing from the next, so the lane's
    high bit is set exactly when ``a >= b``; that bit, spread to 0xFF, selects
    ``a`` or ``b``.  About 40 times faster than a Python loop over M bytes.
    """
    ai = int.from_bytes(a, "big")
    bi = int.from_bytes(b, "big")
    select_a = ((((ai | _LANE_HIGH) - bi) & _LANE_HIGH) >> 7) * 0xFF
    return bytearray(((ai & select_a) | (bi & (select_a ^ _LANE_ALL))).to_bytes(M, "big"))


def _sigma(x: float) -> float:
    """Ertl's sigma (Redis ``hllSigma``), for the share of zero registers."""
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_prev = z
        z += x * y
        y += y
        if z_prev == z:
            return z


def _tau(x: float) -> float:
    """Ertl's tau (Redis ``hllTau``), for the share of non-saturated registers."""
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1.0 - x
    while True:
        x = math.sqrt(x)
        z_prev = z
        y *= 0.5
        z -= (1.0 - x) ** 2 * y
        if z_prev == z:
            return z / 3.0


def _estimate(histogram: Sequence[int]) -> int:
    """Ertl's improved raw estimator from a histogram of register values."""
    m = float(M)
    z = m * _tau((m - histogram[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histogram[j]
        z *= 0.5
    z += m * _sigma(histogram[0] / m)
    if z == 0.0:  # every register saturated: beyond what 64-bit hashes can tell apart
        return 2**64
    return int(ALPHA_INF * m * m / z + 0.5)  # Redis: llroundl


def _histogram(regs: Registers) -> list[int]:
    if isinstance(regs, bytearray):
        return [regs.count(v) for v in range(REGISTER_MAX + 1)]
    hist = [0] * (REGISTER_MAX + 1)
    for v in regs.values():
        hist[v] += 1
    hist[0] = M - len(regs)
    return hist


def _to_dense(regs: Registers) -> bytearray:
    if isinstance(regs, bytearray):
        return regs
    out = bytearray(M)
    for i, v in regs.items():
        out[i] = v
    return out


@register_type
class HLL(CRDT):
    """HyperLogLog with an epoch: the larger epoch wins whole, else register max."""

    TYPE_TAG = "hll"
    FORMAT_VERSION = 1

    __slots__ = ("_regs", "epoch")

    epoch: Timestamp
    _regs: Registers  # dense bytearray(M), or sparse {index: value} without zeros

    def __init__(
        self,
        epoch: Timestamp = ZERO,
        registers: bytes | bytearray | Mapping[int, int] | None = None,
    ) -> None:
        """A state at ``epoch``.  ``registers``: M bytes, or ``{index: value}``."""
        if not isinstance(epoch, Timestamp):
            raise TypeError("epoch must be an hlc.Timestamp")
        self.epoch = epoch
        if registers is None:
            self._regs = {}
        elif isinstance(registers, bytes | bytearray):
            if len(registers) != M or (registers and max(registers) > REGISTER_MAX):
                raise ValueError(f"dense registers must be {M} bytes of 0..{REGISTER_MAX}")
            self._regs = bytearray(registers)
        else:
            sparse: dict[int, int] = {}
            for i, v in registers.items():
                if not (0 <= i < M and 0 <= v <= REGISTER_MAX):
                    raise ValueError(f"register {i}={v} out of range")
                if v:
                    sparse[i] = v
            self._regs = sparse
            self._normalize()

    # -- representation ----------------------------------------------------

    @classmethod
    def _make(cls, epoch: Timestamp, regs: Registers) -> Self:
        out = cls.__new__(cls)
        out.epoch = epoch
        out._regs = regs
        return out

    def _normalize(self) -> None:
        regs = self._regs
        if isinstance(regs, dict) and len(regs) > SPARSE_MAX:
            self._regs = _to_dense(regs)

    def _dense(self) -> bytearray:
        """The registers as a dense array, converting ``self`` if needed."""
        regs = self._regs
        if isinstance(regs, dict):
            regs = self._regs = _to_dense(regs)
        return regs

    def _raise_all(self, pairs: Iterable[tuple[int, int]]) -> dict[int, int]:
        """Raise registers to the given values; return ``{index: new value}`` of raised ones."""
        raised: dict[int, int] = {}
        regs = self._regs
        if isinstance(regs, bytearray):
            for i, v in pairs:
                if v > regs[i]:
                    regs[i] = v
                    raised[i] = v
        else:
            for i, v in pairs:
                if v > regs.get(i, 0):
                    regs[i] = v
                    raised[i] = v
            self._normalize()
        return raised

    def _delta(self, raised: dict[int, int]) -> HLL:
        if not raised:
            return HLL()
        out = HLL._make(self.epoch, raised)
        out._normalize()
        return out

    @property
    def registers(self) -> bytes:
        """All M register values (a dense copy, whatever the representation)."""
        return bytes(_to_dense(self._regs))

    def is_sparse(self) -> bool:
        return isinstance(self._regs, dict)

    def has_registers(self) -> bool:
        """True if any register is non-zero (for a delta: the add changed something)."""
        regs = self._regs
        if isinstance(regs, dict):
            return bool(regs)
        return regs.count(0) != M

    # -- the CRDT contract -------------------------------------------------

    def merge(self, other: HLL) -> None:
        """CRDT join: the larger epoch wins whole; equal epochs: register-wise max."""
        if other.epoch > self.epoch:
            self.epoch = other.epoch
            o = other._regs
            self._regs = bytearray(o) if isinstance(o, bytearray) else dict(o)
            return
        if other.epoch < self.epoch or other is self:
            return
        o = other._regs
        if isinstance(o, dict):
            self._raise_all(o.items())  # O(delta size)
        else:
            regs = self._regs
            self._regs = (
                _dense_max(regs, o)
                if isinstance(regs, bytearray)
                else _dense_max(o, _to_dense(regs))
            )

    def copy(self) -> Self:
        regs = self._regs
        return self._make(
            self.epoch, bytearray(regs) if isinstance(regs, bytearray) else dict(regs)
        )

    def is_bottom(self) -> bool:
        return self.epoch == ZERO and not self.has_registers()

    def size(self) -> int:
        """Number of non-zero registers."""
        regs = self._regs
        if isinstance(regs, dict):
            return len(regs)
        return M - regs.count(0)

    def value(self) -> int:
        return self.count()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HLL):
            return NotImplemented
        if self.epoch != other.epoch:
            return False
        a, b = self._regs, other._regs
        if isinstance(a, bytearray) and isinstance(b, bytearray):
            return a == b
        if isinstance(a, dict) and isinstance(b, dict):
            return a == b
        dense, sparse = (a, b) if isinstance(a, bytearray) else (b, a)
        assert isinstance(dense, bytearray) and isinstance(sparse, dict)
        return M - dense.count(0) == len(sparse) and all(dense[i] == v for i, v in sparse.items())

    def __repr__(self) -> str:
        kind = "sparse" if self.is_sparse() else "dense"
        return f"HLL(epoch={self.epoch!r}, {kind}, {self.size()} registers set)"

    # -- mutators (each returns its delta) ---------------------------------

    def add(self, items: Iterable[str]) -> HLL:
        """Add items; the delta holds only the registers raised, at the current epoch.

        If nothing was raised the delta is bottom (``not delta.has_registers()``).
        All-or-nothing: a non-string item raises ``TypeError`` before any change.
        """
        if isinstance(items, str | bytes):
            raise TypeError("add() takes an iterable of strings, not a single string")
        pairs = [register_of(item) for item in items]  # validate everything first
        return self._delta(self._raise_all(pairs))

    def clear(self, ts: Timestamp) -> HLL:
        """Delete: start epoch ``ts`` (must be newer) with all registers zero.

        The delta is ``HLL(epoch=ts)`` with no registers; merged anywhere, it
        drops every register of an older epoch.
        """
        if not isinstance(ts, Timestamp):
            raise TypeError("clear() needs an hlc.Timestamp")
        if not ts > self.epoch:
            raise ValueError(f"clear({ts}) must be newer than the current epoch {self.epoch}")
        self.epoch = ts
        self._regs = {}
        return HLL(ts)

    def merge_from(self, other: HLL) -> HLL:
        """User-level union (the API's ``merge(dest, sources)``, Redis ``PFMERGE``).

        Folds the register-wise max of ``other``'s registers into ``self`` at
        ``self``'s epoch, ignoring ``other``'s epoch; returns the delta of the
        raised registers.  Contrast ``merge``, the CRDT join.
        """
        o = other._regs
        if isinstance(o, dict):
            return self._delta(self._raise_all(list(o.items())))
        old = self._dense()
        new = _dense_max(old, o)
        if new == old:
            return HLL()
        diff = int.from_bytes(old, "big") ^ int.from_bytes(new, "big")
        changed = diff.to_bytes(M, "big")
        raised = {i: new[i] for i, d in enumerate(changed) if d}
        self._regs = new
        return self._delta(raised)

    # -- reads ---------------------------------------------------------------

    def count(self) -> int:
        """Estimated number of distinct items added (Ertl's improved estimator)."""
        return _estimate(_histogram(self._regs))

    @staticmethod
    def union_count(hlls: Iterable[HLL]) -> int:
        """Count of the register-wise max of several HLLs; none is changed."""
        acc: bytearray | None = None
        for h in hlls:
            regs = h._regs
            if isinstance(regs, bytearray):
                acc = bytearray(regs) if acc is None else _dense_max(acc, regs)
            else:
                if acc is None:
                    acc = bytearray(M)
                for i, v in regs.items():
                    if v > acc[i]:
                        acc[i] = v
        return 0 if acc is None else _estimate(_histogram(acc))

    # -- encoding --------------------------------------------------------------

    def encode(self) -> list[object]:
        """``[epoch, registers]``: registers as M bytes (dense) or a sorted
        ``[[index, value], ...]`` list of the non-zero ones (sparse), whichever
        MessagePack encodes smaller.  Depends only on the values, so equal
        states encode identically."""
        regs = self._regs
        if isinstance(regs, bytearray):
            nonzero = M - regs.count(0)
            if 3 * nonzero < M:  # each pair costs at least 3 bytes: sparse may be smaller
                sparse = {i: v for i, v in enumerate(regs) if v}
            else:
                return [self.epoch.encode(), bytes(regs)]
        else:
            sparse = regs
        # A pair is a fixarray (1 byte), the index (1 byte below 128, 2 below 256,
        # else 3) and the value (1 byte, positive fixint).
        cost = sum(3 if i < 128 else 4 if i < 256 else 5 for i in sparse)
        if cost < M:
            return [self.epoch.encode(), [[i, sparse[i]] for i in sorted(sparse)]]
        return [self.epoch.encode(), bytes(_to_dense(regs))]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 2:
            raise CodecError("hll: expected [epoch, registers]")
        epoch = Timestamp.decode(payload[0])
        data = payload[1]
        if isinstance(data, bytes | bytearray):
            if len(data) != M:
                raise CodecError(f"hll: dense registers must be {M} bytes, got {len(data)}")
            if max(data) > REGISTER_MAX:
                raise CodecError(f"hll: register value above {REGISTER_MAX}")
            out = cls._make(epoch, bytearray(data))
            return out
        if not isinstance(data, list | tuple):
            raise CodecError("hll: registers must be bytes or a list of [index, value]")
        if len(data) > M:
            raise CodecError("hll: too many sparse registers")
        sparse: dict[int, int] = {}
        last = -1
        for pair in data:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise CodecError("hll: sparse register must be [index, value]")
            i, v = pair
            if type(i) is not int or type(v) is not int:
                raise CodecError("hll: sparse index and value must be ints")
            if not last < i < M:
                raise CodecError("hll: sparse indices must be increasing, in 0..16383")
            if not 0 <= v <= REGISTER_MAX:
                raise CodecError(f"hll: register value {v} outside 0..{REGISTER_MAX}")
            last = i
            if v:
                sparse[i] = v
        out = cls._make(epoch, sparse)
        out._normalize()
        return out

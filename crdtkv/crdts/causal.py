"""Dots, version vectors and causal contexts.

A *dot* ``(actor, seq)`` names one event: the ``seq``-th event minted by
``actor`` (``seq`` starts at 1).  A *version vector* maps an actor to the
highest ``seq`` such that every event ``1..seq`` of that actor is covered.
A *causal context* is a version vector plus a *dot cloud*: dots seen out of
order, above a gap.  ``compact()`` folds cloud dots that have become
contiguous into the vector, so in steady state the cloud is empty.

Reference: Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), section 5 (causal contexts with dot clouds).

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping

from crdtkv.errors import CodecError

__all__ = [
    "CausalContext",
    "Dot",
    "Order",
    "VersionVector",
    "context_bound",
    "vv_compare",
    "vv_dominates",
    "vv_join",
    "vv_meet",
]

Dot = tuple[str, int]
"""``(actor, seq)``: the ``seq``-th event minted by ``actor``; ``seq >= 1``."""

VersionVector = dict[str, int]
"""actor -> highest gap-free sequence number seen; absent means 0."""


class Order(enum.Enum):
    """How two version vectors compare."""

    EQUAL = "equal"
    BEFORE = "before"  # a < b
    AFTER = "after"  # a > b
    CONCURRENT = "concurrent"


def vv_join(a: Mapping[str, int], b: Mapping[str, int]) -> VersionVector:
    """Pointwise maximum."""
    out = dict(a)
    for actor, seq in b.items():
        if seq > out.get(actor, 0):
            out[actor] = seq
    return out


def vv_meet(vectors: Iterable[Mapping[str, int]]) -> VersionVector:
    """Pointwise minimum over several vectors (absent counts as 0).

    This is causal stability: an event covered by the meet of every replica's
    applied vector has been applied everywhere.
    """
    it = iter(vectors)
    try:
        out = dict(next(it))
    except StopIteration:
        return {}
    for v in it:
        out = {a: min(s, v.get(a, 0)) for a, s in out.items()}
    return {a: s for a, s in out.items() if s > 0}


def vv_dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """True when ``a`` covers everything ``b`` covers (a >= b pointwise)."""
    for actor, seq in b.items():
        if seq > 0 and a.get(actor, 0) < seq:
            return False
    return True


def vv_compare(a: Mapping[str, int], b: Mapping[str, int]) -> Order:
    ge = vv_dominates(a, b)
    le = vv_dominates(b, a)
    if ge and le:
        return Order.EQUAL
    if ge:
        return Order.AFTER
    if le:
        return Order.BEFORE
    return Order.CONCURRENT


class CausalContext:
    """A version vector plus a cloud of out-of-order dots.

    Mutating methods (``add``, ``merge``, ``compact``) change ``self`` in
    place; ``join`` returns a new context.  The representation is kept
    canonical (compacted) by every mutating method, so two contexts that
    cover the same dots compare equal and encode identically.
    """

    __slots__ = ("cloud", "vv")

    def __init__(
        self, vv: Mapping[str, int] | None = None, cloud: Iterable[Dot] | None = None
    ) -> None:
        self.vv: VersionVector = {a: s for a, s in (vv or {}).items() if s > 0}
        self.cloud: set[Dot] = set(cloud or ())
        if self.cloud:
            self.compact()

    # -- queries -------------------------------------------------------------
    def contains(self, dot: Dot) -> bool:
        actor, seq = dot
        return seq <= self.vv.get(actor, 0) or dot in self.cloud

    __contains__ = contains

    def max_seq(self, actor: str) -> int:
        """The highest sequence number of ``actor`` covered, gaps or not."""
        top = self.vv.get(actor, 0)
        for a, s in self.cloud:
            if a == actor and s > top:
                top = s
        return top

    def next_dot(self, actor: str) -> Dot:
        """The dot ``actor`` mints next, given that it has seen this context."""
        return (actor, self.max_seq(actor) + 1)

    def dots(self) -> Iterator[Dot]:
        """Every dot covered (expands the vector: use only on small contexts)."""
        for actor, top in self.vv.items():
            for seq in range(1, top + 1):
                yield (actor, seq)
        yield from self.cloud

    def is_empty(self) -> bool:
        return not self.vv and not self.cloud

    def size(self) -> int:
        """Entries held: vector entries plus cloud dots."""
        return len(self.vv) + len(self.cloud)

    # -- mutation -------------------------------------------------------------
    def add(self, dot: Dot) -> None:
        actor, seq = dot
        top = self.vv.get(actor, 0)
        if seq <= top:
            return
        if seq == top + 1:
            self.vv[actor] = seq
            if self.cloud:
                self._fold(actor)
        else:
            self.cloud.add(dot)

    def merge(self, other: CausalContext) -> None:
        """In-place join."""
        vv = self.vv
        for actor, seq in other.vv.items():
            if seq > vv.get(actor, 0):
                vv[actor] = seq
        if other.cloud:
            self.cloud |= other.cloud
        if self.cloud:
            self.compact()

    def join(self, other: CausalContext) -> CausalContext:
        out = self.copy()
        out.merge(other)
        return out

    def compact(self) -> None:
        """Fold cloud dots that extend the vector; drop those it covers."""
        if not self.cloud:
            return
        actors = {a for a, _ in self.cloud}
        for actor in actors:
            self._fold(actor)
        vv = self.vv
        self.cloud = {(a, s) for a, s in self.cloud if s > vv.get(a, 0)}

    def _fold(self, actor: str) -> None:
        vv, cloud = self.vv, self.cloud
        top = vv.get(actor, 0)
        while (actor, top + 1) in cloud:
            top += 1
            cloud.discard((actor, top))
        if top:
            vv[actor] = top
        for s in [s for a, s in cloud if a == actor and s <= top]:
            cloud.discard((actor, s))

    def copy(self) -> CausalContext:
        out = CausalContext.__new__(CausalContext)
        out.vv = dict(self.vv)
        out.cloud = set(self.cloud)
        return out

    # -- comparison and encoding ---------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self.vv == other.vv and self.cloud == other.cloud

    def __hash__(self) -> int:  # pragma: no cover - contexts are mutable
        raise TypeError("CausalContext is mutable and unhashable")

    def __repr__(self) -> str:
        return f"CausalContext(vv={self.vv!r}, cloud={sorted(self.cloud)!r})"

    def encode(self) -> list[object]:
        """MessagePack-ready: ``[{actor: seq}, [[actor, seq], ...]]``, canonical."""
        return [dict(sorted(self.vv.items())), [list(d) for d in sorted(self.cloud)]]

    @classmethod
    def decode(cls, data: object) -> CausalContext:
        if not isinstance(data, list | tuple) or len(data) != 2:
            raise CodecError("causal context: expected [vv, cloud]")
        vv = decode_vv(data[0])
        cloud_raw = data[1]
        if not isinstance(cloud_raw, list | tuple):
            raise CodecError("causal context: cloud must be a list")
        return cls(vv, (decode_dot(d) for d in cloud_raw))


def context_bound(ctx: CausalContext) -> VersionVector:
    """Per actor, the highest seq ``ctx`` covers (gaps or not): an upper bound."""
    out = dict(ctx.vv)
    for actor, seq in ctx.cloud:
        if seq > out.get(actor, 0):
            out[actor] = seq
    return out


def decode_actor(data: object) -> str:
    if not isinstance(data, str) or not data or len(data) > 128:
        raise CodecError("actor id must be a non-empty string of at most 128 chars")
    return data


def decode_seq(data: object) -> int:
    if not isinstance(data, int) or isinstance(data, bool) or data < 0 or data >= 2**63:
        raise CodecError("sequence number must be an integer in [0, 2**63)")
    return data


def decode_dot(data: object) -> Dot:
    if not isinstance(data, list | tuple) or len(data) != 2:
        raise CodecError("dot: expected [actor, seq]")
    seq = decode_seq(data[1])
    if seq < 1:
        raise CodecError("dot: seq must be >= 1")
    return (decode_actor(data[0]), seq)


def decode_vv(data: object) -> VersionVector:
    if not isinstance(data, dict):
        raise CodecError("version vector: expected a map")
    return {decode_actor(a): decode_seq(s) for a, s in data.items()}

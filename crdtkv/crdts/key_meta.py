"""Key metadata: which type wrote a key last, and the key's time to live.

One ``KeyMeta`` sits beside the type states of each key name (the keyspace
stores it under the pseudo-type ``meta``).  It holds:

- ``stamps``: per type, the HLC timestamp of the latest write of that type
  (a max register each).  When replicas create one key with different
  types concurrently, every type's state is kept and the *visible* type is
  the live one with the highest stamp (timestamps are unique: ties break
  by actor id).  Redis Active-Active documents no rule for this case; ours
  is deterministic.
- ``ttl``: the key's expiry, a multi-value register of dotted entries
  (``expires_ms``, or ``None`` for PERSIST) under a causal context.  An
  EXPIRE or PERSIST replaces every entry it observed with its own; entries
  written concurrently coexist and resolve so that PERSIST beats any
  EXPIRE and otherwise the longest TTL wins (Redis Active-Active's rule).
  A DEL, a SET without KEEPTTL, and a write to a key that had died remove
  the entries they observed and add none.

References: Redis Software Active-Active, "Key expiration" in Active-Active
databases; Almeida, Shoker, Baquero, "Delta State Replicated Data Types"
(arXiv 1603.01529), the dot store under a causal context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, decode_dot
from crdtkv.crdts.codec import register_type
from crdtkv.crdts.hlc import Timestamp
from crdtkv.errors import CodecError

__all__ = ["KeyMeta", "TtlEntry"]

EXPIRES_MAX_MS = 1 << 53  # far beyond any clock; keeps expiry times exact in JSON


@dataclass(frozen=True, slots=True)
class TtlEntry:
    dot: Dot
    expires_ms: int | None  # None: PERSIST


def _join(
    mine: tuple[TtlEntry, ...],
    theirs: tuple[TtlEntry, ...],
    my_ctx: CausalContext,
    their_ctx: CausalContext,
) -> tuple[TtlEntry, ...]:
    if mine == theirs:
        return mine
    their_dots = {e.dot for e in theirs}
    my_dots = {e.dot for e in mine}
    keep = [e for e in mine if e.dot in their_dots or e.dot not in their_ctx]
    keep.extend(e for e in theirs if e.dot not in my_dots and e.dot not in my_ctx)
    keep.sort(key=lambda e: e.dot)
    return tuple(keep)


@register_type
class KeyMeta(CRDT):
    TYPE_TAG = "meta"
    FORMAT_VERSION = 1

    __slots__ = ("ctx", "stamps", "ttl")

    def __init__(
        self,
        stamps: dict[str, Timestamp] | None = None,
        ttl: tuple[TtlEntry, ...] = (),
        ctx: CausalContext | None = None,
    ) -> None:
        self.stamps: dict[str, Timestamp] = stamps if stamps is not None else {}
        self.ttl = ttl
        self.ctx = ctx if ctx is not None else CausalContext()

    # -- reads ------------------------------------------------------------------
    def expires_ms(self) -> int | None:
        """The key's expiry time (None: it does not expire)."""
        if not self.ttl:
            return None
        latest = 0
        for e in self.ttl:
            if e.expires_ms is None:
                return None  # PERSIST beats any concurrent EXPIRE
            latest = max(latest, e.expires_ms)
        return latest

    def expired(self, now_ms: int) -> bool:
        exp = self.expires_ms()
        return exp is not None and exp <= now_ms

    def is_bottom(self) -> bool:
        return not self.stamps and not self.ttl and self.ctx.is_empty()

    def size(self) -> int:
        return len(self.stamps) + len(self.ttl) + self.ctx.size()

    # -- delta-mutators -----------------------------------------------------------
    def stamp(self, type_: str, ts: Timestamp) -> KeyMeta:
        """Record a write of ``type_`` at ``ts``; returns the delta."""
        old = self.stamps.get(type_)
        if old is None or ts > old:
            self.stamps[type_] = ts
        return KeyMeta({type_: ts})

    def set_ttl(self, actor: str, expires_ms: int | None) -> KeyMeta:
        """EXPIRE (``expires_ms``) or PERSIST (None): replace every observed entry."""
        if expires_ms is not None and not 0 <= expires_ms <= EXPIRES_MAX_MS:
            raise ValueError("expiry time out of range")
        dot = self.ctx.next_dot(actor)
        dots = [e.dot for e in self.ttl]
        entry = TtlEntry(dot, expires_ms)
        self.ttl = (entry,)
        self.ctx.add(dot)
        return KeyMeta(None, (entry,), CausalContext(cloud=[*dots, dot]))

    def clear_ttl(self) -> KeyMeta:
        """Drop every observed TTL entry (DEL, SET): a concurrent EXPIRE survives."""
        if not self.ttl:
            return KeyMeta()
        dots = [e.dot for e in self.ttl]
        self.ttl = ()
        return KeyMeta(None, (), CausalContext(cloud=dots))

    # -- join ---------------------------------------------------------------------
    def merge(self, other: KeyMeta) -> None:
        for t, ts in other.stamps.items():
            old = self.stamps.get(t)
            if old is None or ts > old:
                self.stamps[t] = ts
        if other.ttl or self.ttl:
            self.ttl = _join(self.ttl, other.ttl, self.ctx, other.ctx)
        self.ctx.merge(other.ctx)

    def copy(self) -> Self:
        return type(self)(dict(self.stamps), self.ttl, self.ctx.copy())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyMeta):
            return NotImplemented
        return self.stamps == other.stamps and self.ttl == other.ttl and self.ctx == other.ctx

    def __repr__(self) -> str:
        return f"KeyMeta({self.stamps!r}, {self.ttl!r}, {self.ctx!r})"

    # -- encoding -------------------------------------------------------------------
    def encode(self) -> object:
        return [
            {t: ts.encode() for t, ts in sorted(self.stamps.items())},
            self.ctx.encode(),
            [[e.dot[0], e.dot[1], e.expires_ms] for e in self.ttl],
        ]

    @classmethod
    def decode(cls, payload: object) -> Self:
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            raise CodecError("key meta: expected [stamps, context, ttl]")
        stamps_raw, ctx_raw, ttl_raw = payload
        if not isinstance(stamps_raw, dict) or len(stamps_raw) > 16:
            raise CodecError("key meta: stamps must be a small map")
        stamps: dict[str, Timestamp] = {}
        for t, ts in stamps_raw.items():
            if not isinstance(t, str) or not t or len(t) > 16:
                raise CodecError("key meta: a stamp's type is a short string")
            stamps[t] = Timestamp.decode(ts)
        ctx = CausalContext.decode(ctx_raw)
        if not isinstance(ttl_raw, list | tuple) or len(ttl_raw) > 64:
            raise CodecError("key meta: ttl must be a short list")
        entries: list[TtlEntry] = []
        for item in ttl_raw:
            if not isinstance(item, list | tuple) or len(item) != 3:
                raise CodecError("key meta: a ttl entry is [actor, seq, expires_ms]")
            dot = decode_dot([item[0], item[1]])
            exp = item[2]
            if exp is not None and (type(exp) is not int or not 0 <= exp <= EXPIRES_MAX_MS):
                raise CodecError("key meta: expires_ms must be null or a non-negative int")
            if dot not in ctx:
                raise CodecError("key meta: a ttl entry's dot is outside the context")
            entries.append(TtlEntry(dot, exp))
        entries.sort(key=lambda e: e.dot)
        if len({e.dot for e in entries}) != len(entries):
            raise CodecError("key meta: duplicate ttl dot")
        return cls(stamps, tuple(entries), ctx)

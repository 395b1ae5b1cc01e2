"""Writes a storage-format-1 data directory record by record, with format 1's
encodings hard-coded here (from git history: the parent of commit 3c92b97,
``crdtkv/crdts/lww_register.py``, ``pn_counter.py``, ``or_set.py``, ``hll.py``,
``causal.py``, ``hlc.py`` and ``crdtkv/replica/records.py``), so the migration
is tested against the bytes an old build wrote, never against classes this
build may no longer have.

Format 1 records (MessagePack, ``use_bin_type``):

- ``states``: ``b"<ns>/<key>"`` -> ``[tag, 1, payload]`` with ``ns`` one of
  ``registers`` (tag ``lww``: ``[ts, value, expires_ms, tombstone]``),
  ``counters`` (``ctr``: ``{actor: [P, N, FP, FN]}``), ``sets`` (``orset``:
  ``[ctx, [[member, [[actor, seq], ...]], ...], narrow]``) and ``hlls``
  (``hll``: ``[epoch, [[index, value], ...] or 16384 bytes]``); a timestamp
  is ``[wall_ms, logical, actor]``, a causal context ``[{actor: seq},
  [[actor, seq], ...]]``;
- ``log``: 8-byte big-endian position -> ``[origin, [actor, seq], [[ns, key,
  [tag, 1, payload]], ...]]``;
- ``meta``: ``format`` 1, ``replica_id``, ``incarnation``, ``wal``, ``clean``
  (present after a clean close), ``hlc`` (ms), ``applied`` (a causal
  context), ``checkpoint_pos``, ``peers`` (``{peer: [acked, incarnation]}``),
  ``synced_vv``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack
import xxhash

from crdtkv.storage import Storage, WriteBatch

Ts = list[Any]  # [wall_ms, logical, actor]
Enc = list[Any]  # [tag, 1, payload]

HLL_P = 14  # hll.py: index bits; the hash and bit split are fixed forever
HLL_M = 1 << HLL_P
HLL_Q = 64 - HLL_P
ZERO_TS: Ts = [0, 0, ""]


def pack(data: object) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def ts(wall_ms: int, logical: int, actor: str) -> Ts:
    return [wall_ms, logical, actor]


def ctx(vv: dict[str, int], cloud: list[tuple[str, int]] | None = None) -> list[Any]:
    return [dict(sorted(vv.items())), [list(d) for d in sorted(cloud or [])]]


def register(t: Ts, value: Any, expires_ms: int | None = None) -> Enc:
    return ["lww", 1, [t, value, expires_ms, False]]


def tombstone(t: Ts) -> Enc:
    return ["lww", 1, [t, None, None, True]]


def counter(entries: dict[str, tuple[int, int, int, int]]) -> Enc:
    """``{actor: (P, N, FP, FN)}``: value ``sum((P - FP) - (N - FN))``."""
    return ["ctr", 1, {a: list(e) for a, e in sorted(entries.items())}]


def orset(
    members: dict[str, list[tuple[str, int]]],
    vv: dict[str, int],
    cloud: list[tuple[str, int]] | None = None,
    narrow: bool = False,
) -> Enc:
    """Members -> their dots, under the context ``vv`` + ``cloud``."""
    entries = [[m, [list(d) for d in sorted(dots)]] for m, dots in sorted(members.items())]
    return ["orset", 1, [ctx(vv, cloud), entries, narrow]]


def hll_registers(items: list[str]) -> dict[int, int]:
    """Redis's bit split over xxh3-64 (seed 0): index = low 14 bits, value = trailing
    zeros of the remaining 50 bits (with bit 50 set) plus 1."""
    regs: dict[int, int] = {}
    for item in items:
        h = xxhash.xxh3_64_intdigest(item.encode("utf-8"), seed=0)
        w = (h >> HLL_P) | (1 << HLL_Q)
        value = (w & -w).bit_length()  # trailing zeros + 1
        i = h & (HLL_M - 1)
        regs[i] = max(regs.get(i, 0), value)
    return regs


def hll(items: list[str], epoch: Ts = ZERO_TS) -> Enc:
    regs = hll_registers(items)
    return ["hll", 1, [epoch, [[i, regs[i]] for i in sorted(regs)]]]


def state_key(ns: str, name: str) -> bytes:
    return f"{ns}/{name}".encode()


def log_key(pos: int) -> bytes:
    return struct.pack(">Q", pos)


@dataclass
class Format1Dir:
    """The records of a format-1 directory; ``write`` puts them one by one."""

    replica_id: str = "r1"
    incarnation: str = "inc1"
    states: dict[tuple[str, str], Enc] = field(default_factory=dict)
    log: dict[int, list[Any]] = field(default_factory=dict)
    meta: dict[bytes, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return f"{self.replica_id}~{self.incarnation}"

    def state(self, ns: str, name: str, enc: Enc) -> None:
        self.states[(ns, name)] = enc

    def entry(self, pos: int, origin: str, dot: tuple[str, int], deltas: list[Any]) -> None:
        """``deltas``: ``[(ns, key, enc), ...]``."""
        self.log[pos] = [origin, list(dot), [list(d) for d in deltas]]

    def records(self) -> list[tuple[str, bytes, bytes]]:
        meta: dict[bytes, Any] = {
            b"format": 1,
            b"replica_id": self.replica_id,
            b"incarnation": self.incarnation,
            b"wal": False,
            b"clean": True,
            **self.meta,
        }
        out = [("meta", k, pack(v)) for k, v in meta.items() if v is not None]
        out += [("states", state_key(*k), pack(v)) for k, v in self.states.items()]
        out += [("log", log_key(p), pack(v)) for p, v in self.log.items()]
        return out

    def write(self, storage: Storage) -> None:
        for cf, key, value in self.records():
            batch = WriteBatch()
            batch.put(cf, key, value)
            storage.write(batch, sync=False)
        storage.write(WriteBatch(), sync=True)


# -- the sample directory the tests migrate --------------------------------------------------------
NOW_MS = 1_800_000_000_000  # the migration's physical time
A = "r1~inc1"  # this replica's actor
B = "r2~inc2"  # its peer's
HLL_ITEMS = ["ada", "grace", "edsger", "barbara", "donald"]


def sample() -> Format1Dir:
    """A replica ``r1`` with one peer ``r2``: every format-1 type, deleted and expired
    registers, counter resets, names in several namespaces, and log entries after
    the checkpoint (position 3) that are not yet in the checkpointed states."""
    d = Format1Dir()
    t = NOW_MS - 60_000
    d.state("registers", "greeting", register(ts(t, 0, A), "hello"))
    d.state("registers", "doc", register(ts(t, 1, B), {"a": [1, 2], "b": None}))
    d.state("registers", "gone", tombstone(ts(t, 2, A)))
    d.state("registers", "session", register(ts(t, 3, A), "tok", NOW_MS + 3_600_000))
    d.state("registers", "stale", register(ts(t, 4, A), "old", NOW_MS - 1))
    d.state("counters", "hits", counter({A: (3, 0, 0, 0), B: (2, 0, 0, 0)}))
    d.state("counters", "neg", counter({A: (2, 7, 0, 0)}))
    # A's increments were reset (10 of them), B's 4 were not; then A added 2, took 1.
    d.state("counters", "reset", counter({A: (12, 1, 10, 0), B: (4, 0, 0, 0)}))
    d.state("counters", "zeroed", counter({A: (5, 0, 5, 0), B: (1, 1, 1, 1)}))
    # banana, added by A's dot 2, was removed: the context still covers it.
    d.state("sets", "fruits", orset({"apple": [(A, 1)], "pear": [(B, 1)]}, {A: 2, B: 1}))
    d.state("hlls", "visitors", hll(HLL_ITEMS))
    # One name in three namespaces; one in two without a register.
    d.state("registers", "both", register(ts(t, 5, A), 10))
    d.state("counters", "both", counter({B: (5, 0, 0, 0)}))
    d.state("sets", "both", orset({"x": [(A, 1)]}, {A: 1}))
    d.state("sets", "dup", orset({"y": [(B, 1)]}, {B: 1}))
    d.state("hlls", "dup", hll(["z"]))
    # Entries 1..3 are in the checkpoint already (replaying them is harmless);
    # 4..6 are not: a new register, a set add (a narrow delta), a new counter.
    d.entry(1, "", (A, 9), [("counters", "hits", counter({A: (3, 0, 0, 0)}))])
    d.entry(2, "r2~inc2", (B, 5), [("counters", "hits", counter({B: (2, 0, 0, 0)}))])
    d.entry(3, "", (A, 10), [("registers", "greeting", register(ts(t, 0, A), "hello"))])
    d.entry(4, "", (A, 11), [("registers", "fromlog", register(ts(t + 1, 0, A), "logged"))])
    kiwi = orset({"kiwi": [(A, 3)]}, {}, cloud=[(A, 3)], narrow=True)
    d.entry(5, "", (A, 12), [("sets", "fruits", kiwi)])
    d.entry(6, "r2~inc2", (B, 6), [("counters", "logctr", counter({B: (7, 0, 0, 0)}))])
    d.meta.update(
        {
            b"hlc": t + 10,
            b"applied": ctx({A: 10, B: 5}),
            b"checkpoint_pos": 3,
            b"peers": {"r2": [6, "inc2"]},
            b"synced_vv": {B: 5},
        }
    )
    return d


def big(n: int) -> Format1Dir:
    """``sample()`` plus ``n`` registers, ``n`` counters and ``n // 10`` sets: enough for
    a migration that takes a while (the crash test kills it part-way)."""
    d = sample()
    t = NOW_MS - 30_000
    for i in range(n):
        d.state("registers", f"reg-{i:06}", register(ts(t, i, A), f"value-{i}"))
        d.state("counters", f"ctr-{i:06}", counter({A: (i + 1, 0, 0, 0), B: (0, 1, 0, 0)}))
    for i in range(n // 10):
        d.state("sets", f"set-{i:06}", orset({f"m{j}": [(A, j + 1)] for j in range(5)}, {A: 5}))
    return d

"""The bytes of a delta group, built once and shared (pure).

A delta group is encoded as ``[dot, [[namespace, key, delta], ...]]`` in
MessagePack: the same bytes are the body of its log record (the WAL:
``[origin, dot, [...]]``, ``crdtkv.replica.records``) and the entry a push
ships (``replication.log.ShippedEntry.blob``).  This module builds them from
parts, so that each delta is encoded once, when it is committed or at the
latest when its group is written, and never again for the replication log.

The bytes are exactly what ``msgpack.packb(..., use_bin_type=True)`` gives for
the same lists (``tests/replica/test_wire.py``): the storage format and the
replication wire format are unchanged, and a release-0.1.0 peer reads them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import msgpack

from crdtkv.crdts import codec
from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import Dot

__all__ = ["delta_part", "delta_parts", "group_blob", "group_blob_of", "log_record"]

Key = tuple[str, str]

# One packer for every call: ``msgpack.packb`` builds a new one each time, which is most
# of the cost of packing a small delta.  ``pack`` runs in C holding the GIL and resets
# the packer when it returns, so sharing it between threads is safe.
_PACKER = msgpack.Packer(use_bin_type=True)
_pack = _PACKER.pack


def _array_header(n: int) -> bytes:
    if n <= 15:
        return bytes((0x90 | n,))
    if n <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", n)
    return b"\xdd" + struct.pack(">I", n)


def delta_part(key: Key, delta: CRDT) -> bytes:
    """``[namespace, key, delta]``: one delta of a group, encoded."""
    return _pack([key[0], key[1], codec.encode(delta)])


def delta_parts(deltas: dict[Key, CRDT]) -> bytes:
    """``delta_part`` of each of ``deltas``, in order, concatenated (one packing call)."""
    n = len(deltas)
    packed = _pack([[k[0], k[1], codec.encode(d)] for k, d in deltas.items()])
    return packed[len(_array_header(n)) :]


def group_blob(dot: Dot, parts: Iterable[bytes], count: int) -> bytes:
    """``[dot, [part, ...]]`` from encoded parts (``delta_part``, ``delta_parts``) that
    hold ``count`` deltas in all."""
    return b"\x92" + _pack([dot[0], dot[1]]) + _array_header(count) + b"".join(parts)


def group_blob_of(dot: Dot, deltas: dict[Key, CRDT]) -> bytes:
    """The encoded group of ``dot`` and ``deltas``, every delta encoded now."""
    return _pack([[dot[0], dot[1]], [[k[0], k[1], codec.encode(d)] for k, d in deltas.items()]])


_LOCAL_HEAD = b"\x93" + msgpack.packb("", use_bin_type=True)


def log_record(origin: str, blob: bytes) -> bytes:
    """The log record ``[origin, dot, [...]]`` of an encoded group ``[dot, [...]]``."""
    # The group is a two-element array (one header byte, 0x92); the record is the
    # same elements after the origin, under a three-element header (0x93).
    if not origin:
        return _LOCAL_HEAD + blob[1:]
    return b"\x93" + _pack(origin) + blob[1:]

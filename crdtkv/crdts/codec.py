"""Encoding of CRDT states and deltas: ``[type_tag, format_version, payload]``.

``encode``/``decode`` work on MessagePack-ready data; ``pack``/``unpack`` on
bytes.  Every failure to decode is a ``CodecError`` with a message naming
what was wrong; no other exception escapes ``decode`` or ``unpack``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from crdtkv.crdts.base import CRDT
from crdtkv.errors import CodecError

__all__ = ["TYPES", "decode", "encode", "pack", "register_type", "unpack"]

TYPES: dict[str, type[CRDT]] = {}


def register_type(cls: type[CRDT]) -> type[CRDT]:
    if cls.TYPE_TAG in TYPES and TYPES[cls.TYPE_TAG] is not cls:
        raise AssertionError(f"duplicate type tag {cls.TYPE_TAG!r}")
    TYPES[cls.TYPE_TAG] = cls
    return cls


def encode(state: CRDT) -> list[Any]:
    return [state.TYPE_TAG, state.FORMAT_VERSION, state.encode()]


def decode(data: object, expect: type[CRDT] | None = None) -> CRDT:
    if not isinstance(data, list | tuple) or len(data) != 3:
        raise CodecError("encoded value: expected [type_tag, version, payload]")
    tag, version, payload = data
    cls = TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise CodecError(f"encoded value: unknown type tag {tag!r}")
    if expect is not None and cls is not expect:
        raise CodecError(f"encoded value: expected type {expect.TYPE_TAG}, got {tag}")
    if version != cls.FORMAT_VERSION:
        raise CodecError(f"encoded {tag}: unsupported format version {version!r}")
    try:
        return cls.decode(payload)
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise CodecError(f"encoded {tag}: malformed payload ({e.__class__.__name__})") from e


def pack(state: CRDT) -> bytes:
    return msgpack.packb(encode(state), use_bin_type=True)


def unpack(blob: bytes, expect: type[CRDT] | None = None) -> CRDT:
    try:
        data = msgpack.unpackb(blob, raw=False, strict_map_key=False, use_list=True)
    except Exception as e:  # msgpack raises several unrelated types on garbage
        raise CodecError(f"not valid MessagePack ({e.__class__.__name__})") from e
    return decode(data, expect)

"""The hash slot of a key, as Redis Cluster computes it.

``slot = CRC16-XMODEM(k) mod 16384``, where ``k`` is the key, or, when the key
holds a ``{...}`` with at least one byte between the first ``{`` and the
first ``}`` after it, only those bytes (the hash tag: ``{user1}.a`` and
``{user1}.b`` share a slot).  CRC16-XMODEM is ``binascii.crc_hqx(k, 0)``.
"""

from __future__ import annotations

from binascii import crc_hqx

__all__ = ["SLOTS", "format_ranges", "key_slot", "parse_ranges", "slots_of_ranges"]

SLOTS = 16384


def key_slot(key: str | bytes) -> int:
    """The slot of ``key`` (a str is taken as its UTF-8 bytes, as clients send it)."""
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1 : end]
    return crc_hqx(k, 0) & (SLOTS - 1)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``"0-5460,5461,6000-6001"`` -> [(0, 5460), (5461, 5461), (6000, 6001)] (inclusive).

    Raises ValueError naming the bad part."""
    out: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty slot range in {text!r}")
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"bad slot range {part!r}: expected N or N-M") from None
        if not (0 <= lo <= hi < SLOTS):
            raise ValueError(f"bad slot range {part!r}: slots are 0 to {SLOTS - 1}, low to high")
        out.append((lo, hi))
    return out


def slots_of_ranges(ranges: list[tuple[int, int]]) -> list[int]:
    return [s for lo, hi in ranges for s in range(lo, hi + 1)]


def format_ranges(slots: list[int] | set[int] | range) -> str:
    """The inverse of ``parse_ranges`` for a set of slots: sorted, runs joined."""
    return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in runs(sorted(set(slots))))


def runs(sorted_slots: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive slots, as inclusive (low, high) pairs."""
    out: list[tuple[int, int]] = []
    for s in sorted_slots:
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out

"""Key-range digests for catch-up (TicTac-style: XOR of per-key hashes).

The keyspace is split into ``BUCKETS`` buckets by a hash of the key; a
bucket's digest is the XOR of the 64-bit hashes of ``key + encoded state`` of
its keys.  Two replicas compare the bucket digests, then the per-key hashes of
differing buckets only, then ship only the keys whose states differ: bytes
on the wire grow with what differs, not with the keyspace.

Per-key hashes are cached and recomputed only for keys changed since
(``Replica.take_digest_dirty``), so a second sync costs little CPU; the first one
encodes every state once.  Encodings are canonical (the law suite checks
``pack(decode(pack(x))) == pack(x)``), so equal states hash equally.
"""

from __future__ import annotations

import xxhash

from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import Key, Replica

__all__ = ["BUCKETS", "KeyspaceDigest", "bucket_of"]

BUCKETS = 4096  # 32 KiB of digests per sync start; ~250 keys per bucket at 1M keys


def bucket_of(key: Key) -> int:
    return xxhash.xxh3_64_intdigest(rec.encode_state_key(key)) % BUCKETS


class KeyspaceDigest:
    def __init__(self) -> None:
        self.hashes: dict[Key, int] = {}  # key -> hash of key + encoded state
        self.buckets: list[dict[Key, int]] = [{} for _ in range(BUCKETS)]
        self.primed = False

    def refresh(self, replica: Replica) -> None:
        """Bring cached hashes up to date with the replica's states."""
        dirty = replica.take_digest_dirty()
        keys = dirty if self.primed else replica.states.keys()
        self.primed = True
        for key in keys:
            state = replica.states.peek(key)  # read only: a cold key stays cold
            bucket = self.buckets[bucket_of(key)]
            if state is None:
                self.hashes.pop(key, None)
                bucket.pop(key, None)
                continue
            h = xxhash.xxh3_64_intdigest(rec.encode_state_key(key) + rec.encode_state(state))
            self.hashes[key] = h
            bucket[key] = h

    def digests(self) -> list[int]:
        out = []
        for bucket in self.buckets:
            d = 0
            for h in bucket.values():
                d ^= h
            out.append(d)
        return out

    def keys_in(self, buckets: list[int]) -> list[tuple[Key, int]]:
        return [(k, h) for b in buckets for k, h in self.buckets[b].items()]

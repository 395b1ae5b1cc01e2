"""Key-level operations: they apply to a key of any type (Redis's keyspace commands).

DEL, EXISTS, TYPE, EXPIRE, PERSIST, PTTL and SCAN over the one keyspace of
typed keys (``crdtkv.replica.keyspace``).  A key is absent when it was never
written, was deleted or emptied, or its TTL has passed; an absent key has no
type and no TTL, and EXPIRE and PERSIST of it change nothing (as in Redis).

DEL is observed-remove (a concurrent write survives; an HLL is cleared by
epoch); TTLs resolve as the key's metadata says: concurrent EXPIREs keep the
longer TTL, and PERSIST beats a concurrent EXPIRE.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase

from crdtkv import limits
from crdtkv.errors import NotFound
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = [
    "COUNT_DOC",
    "CURSOR_BYTES_MAX",
    "CURSOR_DOC",
    "MATCH_BYTES_MAX",
    "MATCH_DOC",
    "NONE",
    "SCAN_COUNT_DEFAULT",
    "SCAN_COUNT_MAX",
    "delete",
    "exists",
    "expire",
    "get",
    "persist",
    "scan",
    "ttl",
    "type_",
]

NONE = "none"
"""What TYPE answers for an absent key."""
SCAN_COUNT_DEFAULT = 100  # names one SCAN call examines when the caller gives no count
SCAN_COUNT_MAX = 10_000  # and at most: bounds the work of one request
CURSOR_BYTES_MAX = limits.MEMBER_BYTES_MAX + 1  # a scan's cursor: ">" and a member, or a key
CURSOR_DOC = (
    "Where to continue: the `cursor` of the previous page; absent or empty: from the start."
)
MATCH_BYTES_MAX = limits.MEMBER_BYTES_MAX  # a glob never needs to be longer than a name
MATCH_DOC = (
    "Only names (keys, a hash's fields or a set's members) matching this glob (`*`, `?`, "
    "`[abc]`; case-sensitive)."
)
COUNT_DOC = (
    "How many: members to pop (default 1); or names (members) a scan examines (default "
    "100 for keys, 10 for a set, a sorted set or a hash), so a page may hold fewer, even none, "
    "before the scan is done."
)


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    """DEL of whatever type the key holds; whether it existed."""
    return {"deleted": r.delete(a["key"], now_ms)}


def exists(r: Replica, a: Args, now_ms: int) -> Result:
    return {"exists": r.visible_type(a["key"], now_ms) is not None}


def type_(r: Replica, a: Args, now_ms: int) -> Result:
    return {"type": r.visible_type(a["key"], now_ms) or NONE}


def get(r: Replica, a: Args, now_ms: int) -> Result:
    """The key's type and remaining TTL (-1: none); 404 for an absent key."""
    name: str = a["key"]
    visible = r.visible_type(name, now_ms)
    if visible is None:
        raise NotFound(f"key {name!r} not found")
    return {"type": visible, "ttl_ms": r.ttl_ms(name, now_ms)}


def ttl(r: Replica, a: Args, now_ms: int) -> Result:
    """Redis's PTTL: the remaining milliseconds, -1 with no TTL, -2 when absent."""
    return {"ttl_ms": r.ttl_ms(a["key"], now_ms)}


def expire(r: Replica, a: Args, now_ms: int) -> Result:
    """EXPIRE: the key expires ``ttl_ms`` from now; False (nothing changed) when absent."""
    ttl_ms: int = a["ttl_ms"]
    return {"changed": r.set_ttl(a["key"], now_ms + ttl_ms, now_ms)}


def persist(r: Replica, a: Args, now_ms: int) -> Result:
    """PERSIST: drop the key's TTL; False when the key is absent or has none."""
    return {"changed": r.set_ttl(a["key"], None, now_ms)}


def scan(r: Replica, a: Args, now_ms: int) -> Result:
    """One page of SCAN: the visible keys among the next ``count`` names after
    ``cursor`` (in name order) that match the glob ``match`` and have type
    ``type``; and the cursor to continue from ("" when the scan is done).  A key
    present for the whole scan is returned exactly once; a key created or
    deleted during it may or may not be."""
    cursor: str = a["cursor"] or ""
    count: int = a["count"] or SCAN_COUNT_DEFAULT
    pattern: str | None = a["match"]
    matcher: Callable[[str], bool] | None = None
    if pattern is not None and pattern != "*":
        matcher = lambda name: fnmatchcase(name, pattern)  # noqa: E731 - a closure over it
    keys, next_cursor = r.scan(cursor, count, now_ms, matcher, a["type"])
    return {"keys": keys, "cursor": next_cursor}

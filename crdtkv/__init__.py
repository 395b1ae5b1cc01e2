"""crdtkv: a geo-replicated key-value store in which every value is a CRDT.

from crdtkv import Client
with Client(["http://127.0.0.1:7001", "http://127.0.0.1:7002"]) as db:
    db.counters.incr("visits", 3)
"""

from typing import Any

from crdtkv.errors import (
    BadRequest,
    ClusterUnavailable,
    CrdtkvError,
    KeyNotFound,
    NotFound,
    SessionUnavailable,
    Unauthorized,
    WrongType,
)
from crdtkv.versions import RELEASE

__version__ = RELEASE

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClusterUnavailable",
    "CrdtkvError",
    "KeyNotFound",
    "NotFound",
    "SessionUnavailable",
    "Unauthorized",
    "WrongType",
]


def __getattr__(name: str) -> Any:
    # The clients import aiohttp; the server and the pure core need not pay for it.
    if name in ("Client", "AsyncClient"):
        from crdtkv import client

        return getattr(client, name)
    raise AttributeError(name)

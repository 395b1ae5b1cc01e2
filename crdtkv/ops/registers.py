"""Register operations (last writer wins, optional TTL) over a ``Replica``.

Each function gets its op's arguments already validated (``OpSpec.parse``),
records the delta group of a change, and returns the op's result body.
"""

from __future__ import annotations

from typing import cast

from crdtkv.crdts import LWWRegister
from crdtkv.errors import NotFound
from crdtkv.ops.spec import Args, Result
from crdtkv.replica.keyspace import Replica

__all__ = ["delete", "get", "set_"]


def set_(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("registers", a["key"])
    ttl_ms: int | None = a["ttl_ms"]
    expires = None if ttl_ms is None else now_ms + ttl_ms
    reg = cast(LWWRegister, r.state_for_write(key))
    r.commit_local({key: reg.assign(r.hlc.now(now_ms), a["value"], expires)})
    return {"ok": True}


def get(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("registers", a["key"])
    reg = r.get(key)
    if reg is None or not cast(LWWRegister, reg).present(now_ms):
        raise NotFound(f"register {key[1]!r} not found")
    return {"value": cast(LWWRegister, reg).val}


def delete(r: Replica, a: Args, now_ms: int) -> Result:
    key = ("registers", a["key"])
    reg = cast(LWWRegister, r.state_for_write(key))
    r.commit_local({key: reg.delete(r.hlc.now(now_ms))})
    return {"ok": True}

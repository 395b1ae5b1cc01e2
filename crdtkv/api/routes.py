"""The contract's endpoints: path and body -> op dict -> ``node.apply``.

Each single-key endpoint is one row of ``ROUTES``: the op it maps to and the
body fields it takes.  The handler builds the same op dict a ``/v1/batch``
op is, so validation and semantics live in one place (``crdtkv.replica.ops``).

``{key}`` is one path segment: clients percent-encode ``/`` as ``%2F`` and
aiohttp decodes it in ``match_info``.  The pattern also matches the empty
segment, so ``PUT /v1/registers/`` is 400 (empty key), not 404.

Extras beyond the contract:

- ``GET /v1/hlls/{key}?union=k2&union=k3`` counts the union of ``key`` and
  the named HLLs (op ``hlls.count`` with ``sources``);
- the batch endpoint also takes ``counters.decr``;
- unknown body fields (and unknown fields of a batch op) are refused with
  400, so a typo such as ``"ttl"`` for ``"ttl_ms"`` is not silently ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from crdtkv import limits
from crdtkv.api.codec import (
    Format,
    decode_body,
    encode_response,
    json_response,
    request_format,
    response_format,
)
from crdtkv.api.errors import error_body
from crdtkv.api.limits import read_body
from crdtkv.api.state import CONFIG, METRICS, NODE, PEERS_STATUS
from crdtkv.errors import BadRequest, CrdtkvError, StorageError
from crdtkv.node import Node

__all__ = ["OP_FIELDS", "ROUTES", "Route", "add_routes"]

log = logging.getLogger("crdtkv.api")

_KEY = "{key:[^/]*}"
_MEMBER = "{member:[^/]*}"


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # HTTP method
    path: str  # aiohttp path pattern
    op: str  # the op (crdtkv.replica.ops) it maps to
    body: tuple[str, ...] | None = None  # the body fields it takes; None: it takes no body


ROUTES: tuple[Route, ...] = (
    Route("PUT", f"/v1/registers/{_KEY}", "registers.set", ("value", "ttl_ms")),
    Route("GET", f"/v1/registers/{_KEY}", "registers.get"),
    Route("DELETE", f"/v1/registers/{_KEY}", "registers.delete"),
    Route("POST", f"/v1/counters/{_KEY}", "counters.incr", ("delta",)),
    Route("GET", f"/v1/counters/{_KEY}", "counters.get"),
    Route("DELETE", f"/v1/counters/{_KEY}", "counters.delete"),
    Route("POST", f"/v1/sets/{_KEY}/add", "sets.add", ("members",)),
    Route("POST", f"/v1/sets/{_KEY}/remove", "sets.remove", ("members",)),
    Route("GET", f"/v1/sets/{_KEY}", "sets.get"),
    Route("GET", f"/v1/sets/{_KEY}/members/{_MEMBER}", "sets.contains"),
    Route("DELETE", f"/v1/sets/{_KEY}", "sets.delete"),
    Route("POST", f"/v1/hlls/{_KEY}/add", "hlls.add", ("items",)),
    Route("GET", f"/v1/hlls/{_KEY}", "hlls.count"),
    Route("POST", f"/v1/hlls/{_KEY}/merge", "hlls.merge", ("sources",)),
    Route("DELETE", f"/v1/hlls/{_KEY}", "hlls.delete"),
)


def _op_fields() -> dict[str, frozenset[str]]:
    fields = {r.op: {"op", "key", *(r.body or ())} for r in ROUTES}
    fields["sets.contains"].add("member")
    fields["hlls.count"].add("sources")
    fields["counters.decr"] = {"op", "key", "delta"}
    return {op: frozenset(f) for op, f in fields.items()}


OP_FIELDS: dict[str, frozenset[str]] = _op_fields()
"""The fields each op takes (a batch op with any other field is refused)."""
_BATCH_FIELDS = frozenset({"ops"})


def _reject_unknown(body: dict[Any, Any], known: frozenset[str], what: str) -> None:
    if body.keys() <= known:  # the usual case, in C
        return
    unknown = set(body).difference(known)
    if unknown:
        names = ", ".join(sorted(repr(u) for u in unknown))
        raise BadRequest(f"unknown field(s) {names} in {what}")


async def _read_object(
    request: web.Request, *, allow_msgpack: bool
) -> tuple[dict[str, Any], Format]:
    if not request.body_exists:
        # Before the format check: no body has no format (clients label empty bodies anyhow).
        raise BadRequest("a request body is required")
    fmt = request_format(request, allow_msgpack=allow_msgpack)  # 415 before reading a byte
    raw = await read_body(request, request.app[CONFIG].body_bytes_max)
    return decode_body(raw, fmt), fmt


# -- single-key endpoints -------------------------------------------------------------------


def _handler(route: Route) -> Handler:
    """The endpoint of one route: the op dict from the path (and body), then ``node.apply``."""
    name, fields = route.op, frozenset(route.body or ())

    async def handle_with_body(request: web.Request) -> web.StreamResponse:
        op, _ = await _read_object(request, allow_msgpack=False)  # a new dict: ours to extend
        _reject_unknown(op, fields, "the request body")  # so "key" or "op" cannot be in it
        op.update(request.match_info)  # key
        op["op"] = name
        return json_response(request.app[NODE].apply(op))

    async def handle(request: web.Request) -> web.StreamResponse:
        op: dict[str, Any] = {"op": name}
        op.update(request.match_info)  # key, and member for sets.contains
        if name == "hlls.count":
            unions = request.query.getall("union", [])
            if unions:
                op["sources"] = unions
        return json_response(request.app[NODE].apply(op))

    chosen = handle if route.body is None else handle_with_body
    chosen.__name__ = name.replace(".", "_")
    return chosen


# -- batch ------------------------------------------------------------------------------------


def _apply_one(node: Node, op: object) -> dict[str, Any]:
    """One batch op's result or error; the other ops do not depend on it."""
    try:
        if isinstance(op, dict):
            name = op.get("op")
            fields = OP_FIELDS.get(name) if isinstance(name, str) else None
            if fields is not None and not op.keys() <= fields:
                _reject_unknown(op, fields, f"op {name!r}")
        return node.apply(op)
    except StorageError:
        raise  # the replica stopped: the whole batch fails, not one slot
    except CrdtkvError as e:
        return error_body(e)
    except Exception:
        log.exception("unexpected error applying a batch op")
        return error_body(CrdtkvError("internal error; see the replica's log"))


async def batch(request: web.Request) -> web.StreamResponse:
    body, fmt = await _read_object(request, allow_msgpack=True)
    _reject_unknown(body, _BATCH_FIELDS, "the batch")
    ops = body.get("ops")
    if not isinstance(ops, list):
        raise BadRequest("field 'ops' must be a list of ops")
    if len(ops) > limits.BATCH_OPS_MAX:
        raise BadRequest(f"a batch has at most {limits.BATCH_OPS_MAX} ops, not {len(ops)}")
    node = request.app[NODE]
    results = [_apply_one(node, op) for op in ops]
    return encode_response({"results": results}, response_format(request, fmt))


# -- operations endpoints ---------------------------------------------------------------------


async def status(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    replica = node.replica
    peers_status = request.app[PEERS_STATUS]
    peers = {p: dict(info) for p, info in peers_status().items()} if peers_status else {}
    return json_response(
        {
            "replica_id": replica.replica_id,
            "keys": replica.live_keys(node.now_ms()),
            "applied": dict(replica.applied.vv),
            "peers": peers,
        }
    )


async def healthz(request: web.Request) -> web.StreamResponse:
    if request.app[NODE].failed is not None:
        raise StorageError("replica stopped after a storage failure")
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _handler(route))
    app.router.add_post("/v1/batch", batch)
    app.router.add_get("/v1/status", status, allow_head=False)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics, allow_head=False)

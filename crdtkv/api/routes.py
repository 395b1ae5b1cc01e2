"""The contract's endpoints: path and body -> op dict -> ``node.apply``.

Every op of the table (``crdtkv.ops.table``) with a ``route`` gets its
single-key endpoint here: the handler builds the same op dict a
``/v1/batch`` op is, from the path arguments (``{key}``, ``{member}``), the
query arguments and the body arguments, so validation and semantics live in
one place (``crdtkv.ops``).

``{key}`` is one path segment: clients percent-encode ``/`` as ``%2F`` and
aiohttp decodes it in ``match_info``.  The pattern also matches the empty
segment, so ``PUT /v1/registers/`` is 400 (empty key), not 404.

Extras beyond the contract, all from the table:

- ``GET /v1/hlls/{key}?union=k2&union=k3`` counts the union of ``key`` and
  the named HLLs (op ``hlls.count`` with ``sources``, a query argument);
- ``GET /v1/keys?cursor=&match=&type=&count=`` (``keys.scan``) takes scalar
  query arguments, each given once (an integer one as digits);
- the batch endpoint also takes the ops without a route (``counters.decr``);
- unknown body fields (and unknown fields of a batch op) are refused with
  400, so a typo such as ``"ttl"`` for ``"ttl_ms"`` is not silently ignored.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from crdtkv import limits, versions
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
from crdtkv.api.state import CONFIG, METRICS, NODE, PEERS_STATUS, ROUTE_WRITES, USER
from crdtkv.cluster.slots import format_ranges
from crdtkv.errors import BadRequest, CrdtkvError, Forbidden, StorageError
from crdtkv.node import Node
from crdtkv.ops.spec import In, Kind, OpSpec
from crdtkv.ops.table import OPS, TABLE

__all__ = ["add_routes", "apply_batch", "cluster_view", "path_pattern"]

log = logging.getLogger("crdtkv.api")

_PATH_ARG = re.compile(r"\{(\w+)\}")
_INT = re.compile(r"-?[0-9]{1,19}")
_BATCH_FIELDS = frozenset({"ops"})
_OP_FIELDS: dict[str, frozenset[str]] = {spec.name: spec.fields for spec in TABLE}
"""The fields each op takes (a batch op with any other field is refused)."""


def path_pattern(path: str) -> str:
    """aiohttp's pattern of a table route: each ``{name}`` is one segment, possibly empty."""
    return _PATH_ARG.sub(r"{\1:[^/]*}", path)


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


def _handler(spec: OpSpec) -> Handler:
    """The endpoint of one op: the op dict from the path (query, body), then ``node.apply``."""
    name = spec.name
    fields = frozenset(a.name for a in spec.args_in(In.BODY))
    lists = (Kind.STRINGS, Kind.KEYS)
    queries = tuple((a.name, a.query or a.name) for a in spec.args_in(In.QUERY) if a.kind in lists)
    scalars = tuple(
        (a.name, a.query or a.name, a.kind is Kind.INT)
        for a in spec.args_in(In.QUERY)
        if a.kind not in lists
    )

    async def handle_with_body(request: web.Request) -> web.StreamResponse:
        op, _ = await _read_object(request, allow_msgpack=False)  # a new dict: ours to extend
        _reject_unknown(op, fields, "the request body")  # so "key" or "op" cannot be in it
        op.update(request.match_info)  # key
        op["op"] = name
        return json_response(request.app[NODE].apply(op, _asking(request)))

    async def handle(request: web.Request) -> web.StreamResponse:
        op: dict[str, Any] = {"op": name}
        op.update(request.match_info)  # key, and member for sets.contains
        for field, query in queries:  # list arguments: the parameter repeated
            values = request.query.getall(query, [])
            if values:
                op[field] = values
        for field, query, is_int in scalars:  # others: the parameter once
            value = request.query.get(query)
            if value is not None:
                op[field] = _query_int(value) if is_int else value
        return json_response(request.app[NODE].apply(op, _asking(request)))

    if fields and (queries or scalars):
        raise ValueError(f"{name}: a route takes body or query arguments, not both")
    chosen = handle_with_body if fields else handle
    chosen.__name__ = name.replace(".", "_")
    return chosen


def _query_int(value: str) -> int | str:
    """An integer query parameter as an int; anything else stays a string, which the
    op's validation refuses (400) by the parameter's name."""
    if _INT.fullmatch(value):
        return int(value)
    return value


# -- batch ------------------------------------------------------------------------------------


ASKING_HEADER = "X-Crdtkv-Asking"


def _asking(request: web.Request) -> bool:
    """The client follows an ``Ask`` redirect (sharding): ``X-Crdtkv-Asking: 1``."""
    return request.headers.get(ASKING_HEADER) == "1"


def _apply_one(node: Node, op: object, asking: bool = False) -> dict[str, Any]:
    """One batch op's result or error; the other ops do not depend on it."""
    try:
        if isinstance(op, dict):
            name = op.get("op")
            fields = _OP_FIELDS.get(name) if isinstance(name, str) else None
            if fields is not None and not op.keys() <= fields:
                _reject_unknown(op, fields, f"op {name!r}")
        return node.apply(op, asking)
    except StorageError:
        raise  # the replica stopped: the whole batch fails, not one slot
    except CrdtkvError as e:
        return error_body(e)
    except Exception:
        log.exception("unexpected error applying a batch op")
        return error_body(CrdtkvError("internal error; see the replica's log"))


def apply_batch(node: Node, ops: list[Any], asking: bool = False) -> list[dict[str, Any]]:
    """Every op's result or error, in order.  The ops share one log record (one
    replica-level dot): ``Node.group``.  ``asking``: sharded, the client follows an
    ``Ask`` redirect."""
    with node.group():
        return [_apply_one(node, op, asking) for op in ops]


async def batch(request: web.Request) -> web.StreamResponse:
    body, fmt = await _read_object(request, allow_msgpack=True)
    _reject_unknown(body, _BATCH_FIELDS, "the batch")
    ops = body.get("ops")
    if not isinstance(ops, list):
        raise BadRequest("field 'ops' must be a list of ops")
    if len(ops) > limits.BATCH_OPS_MAX:
        raise BadRequest(f"a batch has at most {limits.BATCH_OPS_MAX} ops, not {len(ops)}")
    user = request.get(USER)
    if user is not None and not user.can_write:
        _refuse_writes(user.name, ops)
    results = apply_batch(request.app[NODE], ops, _asking(request))
    return encode_response({"results": results}, response_format(request, fmt))


def _refuse_writes(user: str, ops: list[Any]) -> None:
    """403 for a read-only user's batch with a write in it; nothing is applied then.
    An op that is not a known op of the table cannot write: it keeps its slot's 400."""
    for i, op in enumerate(ops):
        name = op.get("op") if isinstance(op, dict) else None
        spec = OPS.get(name) if isinstance(name, str) else None
        if spec is not None and spec.writes:
            raise Forbidden(
                f"user {user!r} is read-only and op {i} ({name}) writes; nothing was applied"
            )


# -- operations endpoints ---------------------------------------------------------------------


async def status(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    replica = node.replica
    peers_status = request.app[PEERS_STATUS]
    peers = {p: dict(info) for p, info in peers_status().items()} if peers_status else {}
    return json_response(
        {
            "replica_id": replica.replica_id,
            "release": versions.RELEASE,
            "keys": node.live_keys(),
            "applied": dict(replica.applied.vv),
            "peers": peers,
            "cluster": cluster_view(node),
        }
    )


def cluster_view(node: Node) -> dict[str, Any]:
    """This process's cluster map and its place in it (``/v1/cluster/map``, status)."""
    c = node.cluster
    if c is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "me": c.me_id,
        "shard": c.shard.id,
        "region": c.region,
        "epoch": c.epoch,
        "slots": format_ranges(c.map.slots_of(c.shard.id)),
        "map": c.map.to_json(),
        # Slot moves this process takes part in: progress (keys, bytes) and forwarding.
        "moves": node.mover.status() if node.mover is not None else None,
    }


async def healthz(request: web.Request) -> web.StreamResponse:
    if request.app[NODE].failed is not None:
        raise StorageError("replica stopped after a storage failure")
    return json_response({"status": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def add_routes(app: web.Application) -> None:
    writes: dict[web.AbstractRoute, bool] = {}
    for spec in TABLE:
        if spec.route is not None:
            route = app.router.add_route(
                spec.route.method, path_pattern(spec.route.path), _handler(spec)
            )
            writes[route] = spec.writes
    writes[app.router.add_post("/v1/batch", batch)] = False  # checked op by op (batch)
    writes[app.router.add_get("/v1/status", status, allow_head=False)] = False
    app.router.add_get("/healthz", healthz)
    writes[app.router.add_get("/metrics", metrics, allow_head=False)] = False
    app[ROUTE_WRITES] = writes

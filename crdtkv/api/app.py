"""aiohttp wiring: ``make_app(node, config)``.

Every request passes one middleware (``_middleware``), which does, outermost
first:

1. metrics: counts and times every request by route, method and status;
2. session: stamps ``X-Crdtkv-Session`` on every response, errors included:
   the request's token merged with what this replica has applied (and its
   HLC) *after* the request;
3. errors (``crdtkv.api.errors``): every exception becomes the contract's
   error body, so nothing below can take the server down;
4. guard, for ``/v1/...`` and ``/metrics`` only: bearer-token auth (401; a
   read-only user's write is 403: the op table says which routes write, a
   ``/v1/batch`` is checked op by op in its handler, and a route it does not
   know writes unless its method is GET, HEAD or OPTIONS), then (``/v1``)
   the session token is verified, the request waits until this replica has
   applied what the token covers, a write absorbs the token's
   HLC, and after the handler the response waits for group commit
   (``node.durable()``, reads included: nobody may see a write that could
   still be lost).

These were four aiohttp middlewares; they are one coroutine because each
middleware costs a wrapper coroutine and a ``functools.partial`` per request
(about a tenth of a request's CPU; docs/performance.md).

The node's lifecycle (``start``/``close``) belongs to the caller, not to the
app: the CLI and the tests own it.  ``/healthz`` and ``/openapi.json`` (the
API's OpenAPI 3.1 document) are always open; ``/metrics`` needs a token
when users are configured (``--auth-token``, ``--auth-file``; ``crdtkv.auth``).
Routes others add to the app (replication) pass the guard untouched and carry
their own authentication; so do ``POST /v1/cluster/map`` and a ``GET`` of it
signed with the cluster secret (``crdtkv.api.cluster``): they need no token.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from importlib import resources

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from crdtkv import limits
from crdtkv.api.cluster import add_cluster_routes, is_internal
from crdtkv.api.errors import error_response, extra_headers, from_http_exception
from crdtkv.api.metrics import ApiMetrics, PeersStatus
from crdtkv.api.routes import add_routes
from crdtkv.api.state import (
    AUTH,
    CONFIG,
    METRICS,
    NODE,
    OUT_TOKEN,
    PEERS_STATUS,
    ROUTE_WRITES,
    SESSION,
    SIGNER,
    TOKEN_CACHE,
    USER,
)
from crdtkv.auth import Auth, Users
from crdtkv.config import ServeConfig
from crdtkv.errors import BadRequest, CrdtkvError, Forbidden, SessionUnavailable, Unauthorized
from crdtkv.node import Node
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, TokenSigner

__all__ = ["SESSION_HEADER", "WAIT_HEADER", "make_app"]

log = logging.getLogger("crdtkv.api")

_WAIT_MS = re.compile(r"[0-9]{1,9}")
# aiohttp refuses a longer request line (default 8190 bytes) before any middleware runs, with a
# text/plain 400 and no session header.  Valid requests are longer: a percent-encoded key takes
# up to 3 x 1024 bytes, a set member (GET .../members/{member}) up to 3 x 4096, and ?union=
# names up to 64 keys.
REQUEST_LINE_BYTES_MAX = (
    3 * (limits.KEY_BYTES_MAX * (1 + limits.HLL_SOURCES_MAX) + limits.MEMBER_BYTES_MAX)
    + limits.HLL_SOURCES_MAX * len("&union=")
    + 1024  # method, the rest of the path, HTTP version
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def make_app(
    node: Node,
    config: ServeConfig,
    *,
    peers_status: PeersStatus | None = None,
    auth: Auth | None = None,
) -> web.Application:
    """The HTTP app of one replica.  ``peers_status`` fills ``/v1/status``'s ``peers``;
    ``auth``: the users (shared with the RESP server, reloaded on SIGHUP), by default
    the config's."""
    app = web.Application(
        middlewares=[_middleware],
        # The same limit as our own reader, for anything that calls request.read().
        client_max_size=config.body_bytes_max,
        handler_args={"max_line_size": REQUEST_LINE_BYTES_MAX},
    )
    app[NODE] = node
    app[CONFIG] = config
    app[AUTH] = auth if auth is not None else config.make_auth()
    app[SIGNER] = TokenSigner(config.cluster_secret)
    app[TOKEN_CACHE] = [None, ""]
    app[METRICS] = ApiMetrics(node, peers_status)
    app[PEERS_STATUS] = peers_status
    add_routes(app)
    add_cluster_routes(app)  # GET and POST /v1/cluster/map (crdtkv.api.cluster)
    app.router.add_get("/openapi.json", _openapi, allow_head=False)
    return app


@functools.cache
def _openapi_document() -> bytes:
    """The API's OpenAPI document (package data, built by scripts/gen_openapi.py)."""
    return resources.files("crdtkv.api").joinpath("openapi.json").read_bytes()


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.Response(body=_openapi_document(), content_type="application/json")


# -- the middleware ----------------------------------------------------------------------------


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    app = request.app
    try:
        response = await _guarded(request, handler, app)
    except asyncio.CancelledError:
        raise  # the client went away or the server is stopping: not an error to answer
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error(app, from_http_exception(exc, request), extra_headers(exc))
    except CrdtkvError as exc:
        response = _error(app, exc, extra_headers(exc))
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        response = _error(app, CrdtkvError("internal error; see the replica's log"), None)
    _stamp_session(request, response, app)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    app[METRICS].observe(route, request.method, response.status, time.perf_counter() - started)
    return response


def _error(app: web.Application, err: CrdtkvError, headers: dict[str, str] | None) -> web.Response:
    app[METRICS].count_error(err.code)
    return error_response(err, headers)


def _stamp_session(
    request: web.Request, response: web.StreamResponse, app: web.Application
) -> None:
    given = request.headers.get(SESSION_HEADER, "").strip()
    if response.status == SessionUnavailable.status:
        # A refusal read and wrote nothing: it carries the request's token
        # unchanged.  Merging this replica's applied vector into it would put
        # dots into the session that only this (maybe cut-off) replica has, and
        # no other replica could serve the session until they arrive.
        if given:
            response.headers[SESSION_HEADER] = given
        return
    token = request.get(OUT_TOKEN)
    if token is None:  # refused before the node saw it (auth, a bad token, a bad path)
        token = app[NODE].token_now(request.get(SESSION))
    # Signing costs more than the rest of a read: reuse the last token while
    # neither the request's token nor the answer changed (answers only grow:
    # the sum of the vector changes whenever it does).
    key = (given, token.hlc, sum(token.vv.values()), len(token.vv))
    cached = app[TOKEN_CACHE]
    if cached[0] != key:
        cached[:] = [key, app[SIGNER].encode(token)]
    response.headers[SESSION_HEADER] = cached[1]


async def _guarded(
    request: web.Request, handler: Handler, app: web.Application
) -> web.StreamResponse:
    path = request.path
    is_api = path.startswith("/v1/") or path == "/v1"
    if not is_api and path != "/metrics":
        return await handler(request)
    if not is_internal(request):  # a cluster map push or signed read: its own auth
        _check_auth(request, app[AUTH].http)
    if not is_api:
        return await handler(request)
    node = app[NODE]
    if SESSION_HEADER in request.headers or WAIT_HEADER in request.headers:
        await _enter_session(request, node)
    token = request.get(SESSION)
    try:
        response = await handler(request)
    except CrdtkvError:
        # An error answer saw state too (a 404 read): it waits for durability.
        request[OUT_TOKEN] = await node.finish(token)
        raise
    request[OUT_TOKEN] = await node.finish(token)
    return response


# -- guard steps ----------------------------------------------------------------------------------


def _check_auth(request: web.Request, users: Users) -> None:
    """401 without a known bearer token, 403 for a read-only user's write."""
    if not users.enabled:
        return
    scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    # Users.lookup takes the same time whatever part of a guess is right (a keyed hash).
    user = None
    if scheme.lower() == "bearer":
        user = users.lookup(given.strip().encode("utf-8", "surrogateescape"))
    if user is None:
        raise Unauthorized("this replica needs 'Authorization: Bearer <auth token>'")
    request[USER] = user
    if not user.can_write and _writes(request):
        raise Forbidden(
            f"user {user.name!r} is read-only and {request.method} {request.path} writes"
        )


def _writes(request: web.Request) -> bool:
    """Whether the request's route may write: the op table says for its routes (a batch
    is checked op by op in its handler); any other route writes unless its method is
    safe (fail closed: an unknown route is not known to only read)."""
    writes = request.app[ROUTE_WRITES].get(request.match_info.route)
    if writes is None:
        return request.method not in _SAFE_METHODS
    return bool(writes)


async def _enter_session(request: web.Request, node: Node) -> None:
    """Verify the session token; the node core waits until it is covered."""
    text = request.headers.get(SESSION_HEADER, "").strip()
    wait_ms = _wait_ms(request.headers.get(WAIT_HEADER))
    if not text:
        return
    token = request.app[SIGNER].decode(text)  # BadRequest when it does not verify
    request[SESSION] = token
    cluster = node.cluster
    key = request.match_info.get("key")
    if cluster is not None and key is not None:
        # Sharded: a key of another shard is redirected at once, not held for a
        # session (another shard's token would never be covered here).
        cluster.check_key(key, asking=request.headers.get("X-Crdtkv-Asking") == "1")
    # /v1/status answers about a lagging replica too: that is what it is for.
    if request.path not in ("/v1/status", "/v1/cluster/map"):
        await node.enter(token, wait_ms, writes=request.method not in _SAFE_METHODS)


def _wait_ms(text: str | None) -> int:
    if text is None:
        return limits.WAIT_MS_DEFAULT
    text = text.strip()
    if not _WAIT_MS.fullmatch(text):
        raise BadRequest(f"{WAIT_HEADER} must be a whole number of milliseconds, not {text[:32]!r}")
    # Longer waits are capped rather than refused: the client asked to wait "long".
    return min(int(text), limits.WAIT_MS_MAX)

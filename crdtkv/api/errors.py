"""The one place where errors become HTTP responses.

Every error the API answers is ``{"error": {"code": ..., "message": ...}}``
with the status of its ``CrdtkvError`` class.  aiohttp's own exceptions (the
router's 404 and 405, a body over ``client_max_size``) are translated into
the same tree first, and anything unexpected is logged and answered as 500
``internal``: a request must never take the server down (the catching is
done by the app's middleware, ``crdtkv.api.app``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from crdtkv.errors import (
    CrdtkvError,
    MethodNotAllowed,
    Moved,
    NotFound,
    StaleMap,
    Unauthorized,
    error_for_status,
)

__all__ = ["error_body", "error_response", "extra_headers", "from_http_exception"]


def error_body(err: CrdtkvError) -> dict[str, Any]:
    """The API's error object (also what a failing batch op puts in its slot)."""
    if isinstance(err, Moved):  # where to ask instead (sharding)
        return {
            "error": {
                "code": err.code,
                "message": err.message,
                "slot": err.slot,
                "url": err.url,
                "resp": err.resp,
            }
        }
    if isinstance(err, StaleMap) and err.held is not None:  # the map held instead
        return {"error": {"code": err.code, "message": err.message, "map": err.held}}
    return {"error": {"code": err.code, "message": err.message}}


def error_response(err: CrdtkvError, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=err.status,
        body=orjson.dumps(error_body(err)),
        content_type="application/json",
        headers=headers,
    )


def from_http_exception(exc: web.HTTPException, request: web.Request) -> CrdtkvError:
    """aiohttp's exception as ours, with a message a user can act on."""
    if exc.status == NotFound.status:
        return NotFound(f"no such path: {request.method} {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use {allowed}")
    return error_for_status(exc.status)(exc.reason)


def extra_headers(exc: BaseException) -> dict[str, str] | None:
    # RFC 9110: a 405 says which methods the resource supports, a 401 how to authenticate.
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return {"Allow": ", ".join(sorted(exc.allowed_methods))}
    if isinstance(exc, Moved):
        return {"X-Crdtkv-Owner": exc.url, "X-Crdtkv-Slot": str(exc.slot)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="crdtkv"'}
    return None

"""The parameter and header components: the table's path and query
arguments, the session headers of a request and those of a response."""

from __future__ import annotations

from crdtkv import limits
from crdtkv.api.openapi.common import KEY_DESCRIPTION, Json, camel, schema
from crdtkv.api.openapi.schemas import arg_schema
from crdtkv.ops.spec import Arg, In, Kind
from crdtkv.ops.table import TABLE
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER

__all__ = ["headers", "param_name", "parameters"]


def param_name(arg: Arg) -> str:
    """The parameter component of a path or query argument."""
    return camel(arg.query if arg.http is In.QUERY and arg.query else arg.name)


def http_parameter(arg: Arg) -> Json:
    if arg.kind is Kind.KEY:
        return {
            "name": arg.name,
            "in": "path",
            "required": True,
            "description": f"{KEY_DESCRIPTION} Percent-encode it: `/` is `%2F`.",
            "schema": schema("Key"),
        }
    if arg.http is In.PATH:
        return {
            "name": arg.name,
            "in": "path",
            "required": True,
            "description": arg.http_doc,
            "schema": arg_schema(arg),
        }
    if arg.kind not in (Kind.STRINGS, Kind.KEYS):  # a scalar: the parameter once
        return {
            "name": arg.query,
            "in": "query",
            "required": False,
            "description": arg.http_doc,
            "schema": _scalar_schema(arg),
        }
    return {
        "name": arg.query,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": arg.http_doc,
        "schema": {"type": "array", "maxItems": arg.hi, "items": schema("Key")},
    }


def _scalar_schema(arg: Arg) -> Json:
    if arg.kind is Kind.INT:
        return {"type": "integer", "minimum": arg.lo, "maximum": arg.hi}
    out = dict(arg_schema(arg))
    out.pop("description", None)  # the parameter has its own
    return out


def parameters() -> Json:
    """The path and query arguments of the table, then the two session headers."""
    return {
        **{
            param_name(arg): http_parameter(arg)
            for spec in TABLE
            for arg in spec.args
            if arg.http is not In.BODY
        },
        "Session": {
            "name": SESSION_HEADER,
            "in": "header",
            "required": False,
            "description": "A session token returned earlier by any replica of the cluster. "
            "The replica serves the request only once it has applied everything the token "
            f"covers (waiting up to {WAIT_HEADER}), else 503 `session_unavailable`. A token "
            "that does not verify (tampered, another cluster) is 400. Empty means none.",
            "schema": {"type": "string"},
        },
        "WaitMs": {
            "name": WAIT_HEADER,
            "in": "header",
            "required": False,
            "description": "How long to wait for the session token to be covered, in "
            f"milliseconds (1 to 9 digits). Default {limits.WAIT_MS_DEFAULT}; longer waits are "
            f"capped at {limits.WAIT_MS_MAX}.",
            "schema": {
                "type": "string",
                "pattern": "^[0-9]{1,9}$",
                "default": str(limits.WAIT_MS_DEFAULT),
            },
        },
    }


def headers() -> Json:
    """The response headers: the session token, and those of 405 and 401."""
    return {
        "Session": {
            "description": "The request's session token merged with everything this replica has "
            "applied, including the request's own write. Present on every response, errors "
            "included. Send it with later requests, to any replica, for read-your-writes and "
            "monotonic reads.",
            "required": True,
            "schema": {"type": "string"},
        },
        "Allow": {"description": "The methods the path supports.", "schema": {"type": "string"}},
        "WWWAuthenticate": {
            "description": 'Always `Bearer realm="crdtkv"`.',
            "schema": {"type": "string"},
        },
    }

"""An op as its single-key HTTP request: what the clients and the simulator send.

``http_request(spec, fields)`` fills the route's path from the path
arguments (percent-encoded: a key is one path segment), appends the query
arguments (a list as the parameter repeated, a scalar once, an absent one
not), and puts the body arguments in a JSON body (optional ones only when
given).  The server side of the same mapping is ``crdtkv.api.routes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from crdtkv.ops.spec import In, Kind, OpSpec

__all__ = ["http_request"]


def http_request(spec: OpSpec, fields: Mapping[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    """(method, path with query, JSON body or None) of the op ``spec`` with ``fields``."""
    if spec.route is None:
        raise ValueError(f"{spec.name} has no single-key endpoint; send it in a batch")
    path = spec.route.path.format_map(
        {a.name: quote(str(fields[a.name]), safe="") for a in spec.args_in(In.PATH)}
    )
    query: list[str] = []
    for a in spec.args_in(In.QUERY):
        value = fields.get(a.name)
        if value is None:
            continue
        values = value if a.kind in (Kind.STRINGS, Kind.KEYS) else (value,)
        query += [f"{a.query}={quote(str(v), safe='')}" for v in values]
    if query:
        path += "?" + "&".join(query)
    body_args = spec.args_in(In.BODY)
    if not body_args:
        return spec.route.method, path, None
    body = {
        a.name: fields.get(a.name)
        for a in body_args
        if a.required or fields.get(a.name) is not None
    }
    return spec.route.method, path, body

"""The assembled document: info, tags, security, paths and components, and
its rendering as committed (two-space indent, UTF-8, a final newline)."""

from __future__ import annotations

import json

from crdtkv import limits
from crdtkv.api.openapi.common import Json
from crdtkv.api.openapi.parameters import headers, parameters
from crdtkv.api.openapi.paths import paths
from crdtkv.api.openapi.responses import responses
from crdtkv.api.openapi.schemas import schemas
from crdtkv.sessions import SESSION_HEADER

__all__ = ["DESCRIPTION", "build", "render"]

DESCRIPTION = f"""\
The public HTTP API of one crdtkv replica (contract v1). Every value is a CRDT:
registers (last writer wins, optional TTL), counters, sets (add wins),
HyperLogLogs and hashes. Every replica accepts every write; replicas exchange changes in
the background.

- JSON in and out (`Content-Type: application/json`; a body without a
  Content-Type is read as JSON). `/v1/batch` also takes and answers
  MessagePack.
- `{{key}}` is one URL-encoded path segment of 1 to {limits.KEY_BYTES_MAX} UTF-8 bytes.
- Request bodies are objects; unknown fields are refused (400), so a typo is
  not silently ignored. Bodies are at most {limits.BODY_BYTES_MAX} bytes by default (413)
  and nested at most {limits.JSON_DEPTH_MAX} levels.
- Every error is `{{"error": {{"code", "message"}}}}`. An unknown path is 404
  `not_found`, a known path with another method 405 `method_not_allowed`
  (with `Allow`). A bad request changes nothing.
- Every response carries `{SESSION_HEADER}`; see the `Session` header.
- When the replica runs with `--auth-token` or `--auth-file`, every `/v1`
  request and `/metrics` need `Authorization: Bearer <token>` (401 without a
  known one); a read-only user's write is 403 `forbidden`. `/healthz` and
  `/openapi.json` never need a token.
"""


def build() -> Json:
    """The whole OpenAPI 3.1 document, as a JSON-ready dict."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crdtkv",
            "version": "1",
            "summary": "A geo-replicated key-value store in which every value is a CRDT.",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "http://127.0.0.1:7001", "description": "crdtkv serve's default"}],
        "tags": [
            {"name": "registers", "description": "Last-writer-wins registers of any JSON value"},
            {"name": "counters", "description": "64-bit signed counters (PN-counters)"},
            {"name": "sets", "description": "Sets of strings (add-wins observed-remove sets)"},
            {"name": "hlls", "description": "HyperLogLog distinct counters"},
            {
                "name": "hashes",
                "description": "Hashes: field -> string or number (HSET, HGET, ...)",
            },
            {"name": "batch", "description": "Several ops in one request"},
            {"name": "operations", "description": "Health, status, metrics, this document"},
        ],
        # {}: the replica may run without an auth token; then no header is needed.
        "security": [{}, {"bearerAuth": []}],
        "paths": paths(),
        "components": {
            "schemas": schemas(),
            "parameters": parameters(),
            "headers": headers(),
            "responses": responses(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The replica's --auth-token, or a user's token from its "
                    "--auth-file, when it runs with either.",
                }
            },
        },
    }


def render(document: Json) -> str:
    """The document's text as committed: two-space indent, UTF-8, a final newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

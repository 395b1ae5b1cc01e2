"""The OpenAPI 3.1 document of crdtkv's public HTTP API (docs/api.md, "HTTP API").

``build()`` returns the document and ``render()`` its bytes as they are
committed; ``scripts/gen_openapi.py`` writes them to
``crdtkv/api/openapi.json`` (package data, served at ``GET /openapi.json``)
and ``docs/openapi.json`` (the same bytes, for readers of the repository).
tests/api/test_openapi.py fails when either file drifts from this package,
when the document is not valid OpenAPI 3.1, or when it and the app's routes
(or docs/api.md) disagree.

The operations come from the op table (``crdtkv.ops.table``: routes,
arguments, result shapes, texts), the error codes and statuses from
``crdtkv.errors`` and limits from ``crdtkv.limits``, so the document follows
the code.  Two of the limits are in UTF-8 bytes while JSON Schema's
``maxLength`` counts characters: the document states the character bound,
which is looser, and the description names the byte limit the server
enforces.

- ``common``: JSON helpers and the schema fragments every part shares;
- ``schemas``: the component schemas (arguments, bodies, batch, results);
- ``components``: parameters, headers and the error responses;
- ``paths``: the operations, one per routed row of the table plus the
  fixed endpoints;
- ``document``: the assembled document and its rendering.
"""

from crdtkv.api.openapi.document import build, render

__all__ = ["build", "render"]

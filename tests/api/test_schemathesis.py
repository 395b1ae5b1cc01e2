"""schemathesis against a real ``crdtkv serve``: the server keeps its OpenAPI document.

One pytest item per operation of ``crdtkv/api/openapi.json`` (schemathesis's
pytest integration).  Each runs the phases examples (the document's
examples), coverage (boundary and invalid values of every schema, derived
deterministically) and fuzzing (Hypothesis, at most ``MAX_EXAMPLES`` cases)
against one replica started as a process, and checks every response:

- ``not_a_server_error``: no 5xx;
- ``status_code_conformance``: the status is one the operation documents;
- ``response_schema_conformance``: the body matches that response's schema;
- ``negative_data_rejection``: a request that violates the document is
  refused with a 4xx (here also 413, a valid refusal schemathesis does not
  expect by default);
- ``content_type_conformance`` and ``response_headers_conformance``: every
  response is in a documented format and carries ``X-Crdtkv-Session``;
- ``unsupported_method``, ``allow_header_conformance``: another method on a
  documented path is 405 with a truthful ``Allow``.

Deterministic: Hypothesis derandomized, no example database (set
``CRDTKV_SCHEMATHESIS_SEED`` to explore other cases, and
``CRDTKV_SCHEMATHESIS_MAX_EXAMPLES`` for more of them).
At the end the replica must still be running and stop cleanly.
"""

from __future__ import annotations

import functools
import os
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import msgpack
import pytest
import requests
import schemathesis

from crdtkv import limits
from tests.procs import ROOT, Server, free_port, http

DOCUMENT = ROOT / "crdtkv" / "api" / "openapi.json"
# Fuzzing cases per operation (the coverage phase adds its own); raise it for a longer campaign.
MAX_EXAMPLES = int(os.environ.get("CRDTKV_SCHEMATHESIS_MAX_EXAMPLES", "25"))
# Derandomized by default (the same cases every run); a seed explores other cases, reproducibly.
SEED = os.environ.get("CRDTKV_SCHEMATHESIS_SEED")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    # docs/api.md's "every error is JSON" and "every response carries X-Crdtkv-Session":
    "content_type_conformance",
    "response_headers_conformance",
    # Another method on a documented path: 405 with an Allow header that tells the truth.
    "unsupported_method",
    "allow_header_conformance",
)

CONFIG = schemathesis.Config.from_dict(
    {
        **({"seed": int(SEED)} if SEED else {}),
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "generation": {
            "mode": "all",  # valid and invalid data
            "max-examples": MAX_EXAMPLES,
            "deterministic": SEED is None,
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "checks": {
            "enabled": False,
            **{name: {"enabled": True} for name in CHECKS},
            "negative_data_rejection": {
                "enabled": True,
                "expected-statuses": ["400", "401", "404", "405", "413", "415"],
            },
        },
    }
)

schema = schemathesis.openapi.from_path(DOCUMENT, config=CONFIG)


@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """/v1/batch also takes MessagePack, which schemathesis does not know."""
    try:
        packed: bytes = msgpack.packb(value, use_bin_type=True)
    except OverflowError:
        # MessagePack has no integers outside [-2**63, 2**64): this case cannot be sent.
        hypothesis.reject()
    return packed


@schemathesis.deserializer("application/msgpack")
def _from_msgpack(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    return msgpack.unpackb(response.content, raw=False)


@pytest.fixture(scope="module")
def replica(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    # wal: group commit without fsync, so thousands of requests stay fast; same code paths.
    # A peer nobody answers for, so /v1/status and /metrics have a peer to describe.
    peers = {"r2": f"http://127.0.0.1:{free_port()}"}
    server = Server("r1", root / "r1", peers=peers, secret="schemathesis-secret", durability="wal")
    server.start()
    try:
        yield server
        # A bad request never kills the server: it is still up and stops cleanly.
        assert server.running(), server.log_tail()
        assert server.stop() == 0, server.log_tail()
    finally:
        server.kill9()


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@schema.parametrize()
def test_operation_keeps_the_document(
    case: schemathesis.Case[Any], replica: Server, http_session: requests.Session
) -> None:
    case.call_and_validate(base_url=replica.url, session=http_session)


def test_the_longest_valid_request_lines_are_served(replica: Server) -> None:
    """Found by schemathesis: aiohttp refused request lines over 8190 bytes before any
    middleware, with a text/plain 400 and no session header, so a member that could be
    added (4096 bytes, percent-encoded three times longer) could not be looked up."""
    quote = functools.partial(urllib.parse.quote, safe="")
    key = "ü" * (limits.KEY_BYTES_MAX // 2)  # 1024 bytes
    member = "é" * (limits.MEMBER_BYTES_MAX // 2)  # 4096 bytes
    url = f"{replica.url}/v1/sets/{quote(key)}"
    assert http("POST", f"{url}/add", {"members": [member]}) == (200, {"added": 1})
    assert http("GET", f"{url}/members/{quote(member)}") == (200, {"present": True})
    other = "ö" * (limits.KEY_BYTES_MAX // 2)  # as long; not the set (one key, one type)
    unions = "&".join(f"union={quote(other)}" for _ in range(limits.HLL_SOURCES_MAX))
    assert http("GET", f"{replica.url}/v1/hlls/{quote(other)}?{unions}") == (200, {"count": 0})

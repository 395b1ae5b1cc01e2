"""The OpenAPI document: valid, current, served, and in step with the app and docs/api.md.

- ``crdtkv/api/openapi.json`` (package data, served at ``GET /openapi.json``)
  and ``docs/openapi.json`` are the same bytes, and exactly what
  ``scripts/gen_openapi.py`` writes;
- the document is valid OpenAPI 3.1 and its examples match their schemas;
- the routes of a replica's aiohttp app (replication's /internal/ routes
  aside) are the document's operations, no more and no fewer;
- the endpoints docs/api.md describes are the document's operations;
- the error codes are those of ``crdtkv.errors``.

tests/api/test_schemathesis.py checks a running replica against it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from yarl import URL

from crdtkv import errors
from crdtkv.api import make_app
from crdtkv.config import DEFAULT_HOST, DEFAULT_PORT
from crdtkv.sessions import SESSION_HEADER
from replication.http import REPLICATE_PATH, ReplicationService

from .conftest import ServedFactory

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "crdtkv" / "api" / "openapi.json"
DOCS_COPY = ROOT / "docs" / "openapi.json"
API_MD = ROOT / "docs" / "api.md"
GENERATOR = ROOT / "scripts" / "gen_openapi.py"

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# A heading of docs/api.md that documents an endpoint: ### `GET /v1/sets/{key}`
ENDPOINT_HEADING = re.compile(r"^#{2,4} `([A-Z]+) (/[^`\s]*)`\s*$", re.MULTILINE)

Operation = tuple[str, str]  # (METHOD, /path/{param})


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(PACKAGED.read_text(encoding="utf-8"))
    return loaded


def operations(document: dict[str, Any]) -> set[Operation]:
    return {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_openapi", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the files ----------------------------------------------------------------------------------


def test_docs_copy_is_the_packaged_document() -> None:
    assert DOCS_COPY.read_bytes() == PACKAGED.read_bytes(), (
        "docs/openapi.json differs from crdtkv/api/openapi.json: run python scripts/gen_openapi.py"
    )


def test_document_is_what_the_generator_writes() -> None:
    gen = load_generator()
    assert PACKAGED.read_text(encoding="utf-8") == gen.render(gen.build()), (
        "crdtkv/api/openapi.json is stale (edit scripts/gen_openapi.py, then run it)"
    )
    assert gen.main(["--check"]) == 0


def test_document_ships_as_package_data() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert '"api/openapi.json"' in section


# -- the document -------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def _examples(node: Any, where: str = "#") -> Iterator[tuple[str, Any, Any]]:
    """(location, schema, example) for every example next to a schema, anywhere."""
    if isinstance(node, dict):
        schema = node.get("schema") if isinstance(node.get("schema"), dict) else node
        if "example" in node:
            yield where, schema, node["example"]
        for example in node.get("examples", []) if isinstance(node.get("examples"), list) else []:
            yield where, schema, example
        for name, child in node.items():
            yield from _examples(child, f"{where}/{name}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _examples(child, f"{where}/{i}")


def test_every_example_matches_its_schema(document: dict[str, Any]) -> None:
    found = list(_examples(document))
    assert len(found) >= 20
    for where, schema, example in found:
        # The whole document as the root, so "#/components/..." references resolve.
        root = {**document, **{k: v for k, v in schema.items() if k != "examples"}}
        validator = OAS31Validator(root)  # JSON Schema 2020-12 with OpenAPI's vocabulary
        problems = [e.message for e in validator.iter_errors(example)]
        assert not problems, (where, example, problems)


def test_error_codes_are_the_servers(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    server_codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.CrdtkvError)
        and cls is not errors.ClusterUnavailable  # the client's own, never on the wire
        and cls is not errors.WireVersionMismatch  # only on /internal/v1/replicate
    }
    assert set(schemas["ErrorCode"]["enum"]) == server_codes
    responses = document["components"]["responses"]
    codes = {
        r["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"][
            "const"
        ]
        for r in responses.values()
    }
    assert codes == server_codes  # one error response per code, 405 included


def test_every_response_documents_the_session_header(document: dict[str, Any]) -> None:
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if "$ref" in response:
                    response = responses[response["$ref"].rsplit("/", 1)[1]]
                assert SESSION_HEADER in response.get("headers", {}), (method, path, status)


def test_v1_operations_take_the_session_headers(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            refs = {p["$ref"].rsplit("/", 1)[1] for p in op.get("parameters", [])}
            assert ({"Session", "WaitMs"} <= refs) == path.startswith("/v1/"), (method, path)


# -- the app ------------------------------------------------------------------------------------


async def test_app_routes_are_the_documented_operations(
    make_served: ServedFactory, document: dict[str, Any]
) -> None:
    served = await make_served()
    # Built as `crdtkv serve` builds it, with the replication routes, which are not public API.
    app = make_app(served.node, served.config)
    ReplicationService(served.node, {"r2": "http://127.0.0.1:1"}, secret="s").add_routes(app)
    routes: set[Operation] = set()
    internal = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        path = resource.canonical
        if path.startswith("/internal/"):
            internal.add(path)
        elif route.method != "HEAD":  # aiohttp's automatic HEAD for a GET
            routes.add((route.method, path))
    assert internal == {REPLICATE_PATH}
    documented = operations(document)
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented operations the app does not serve"


@pytest.mark.parametrize("auth_token", [None, "s3cret"])
async def test_openapi_json_is_served_without_auth(
    make_served: ServedFactory, auth_token: str | None
) -> None:
    served = await make_served(auth_token=auth_token)
    reply = await served.request("GET", "/openapi.json", auth=False)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert SESSION_HEADER in reply.headers
    assert reply.raw == PACKAGED.read_bytes()
    # For contrast: the API itself does need the token when one is configured.
    api = await served.request("GET", "/v1/status", auth=False)
    assert api.status == (401 if auth_token else 200)


async def test_openapi_json_only_answers_get(make_served: ServedFactory) -> None:
    served = await make_served()
    reply = await served.request("POST", "/openapi.json", body={})
    assert reply.status == 405 and reply.code == "method_not_allowed"
    assert reply.headers["Allow"] == "GET"


def test_document_servers_point_at_the_default_port(document: dict[str, Any]) -> None:
    assert URL(document["servers"][0]["url"]) == URL(f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")


# -- docs/api.md --------------------------------------------------------------------------------


def test_api_md_describes_exactly_the_documented_operations(document: dict[str, Any]) -> None:
    text = API_MD.read_text(encoding="utf-8")
    described = [(m, p) for m, p in ENDPOINT_HEADING.findall(text)]
    assert len(described) == len(set(described)), "an endpoint is described twice"
    documented = operations(document)
    assert set(described) - documented == set(), "docs/api.md names operations the document lacks"
    assert documented - set(described) == set(), "docs/api.md lacks documented operations"


def test_api_md_has_a_curl_example_per_endpoint() -> None:
    text = API_MD.read_text(encoding="utf-8")
    sections = ENDPOINT_HEADING.split(text)[1:]  # method, path, body, method, path, body, ...
    for method, path, body in zip(sections[::3], sections[1::3], sections[2::3], strict=True):
        body = body.split("\n## ", 1)[0]
        assert "```sh\ncurl " in body, f"no curl example for {method} {path}"

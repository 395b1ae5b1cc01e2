"""What is built from the op table follows it: routes, batch, OpenAPI, clients, CLI, simulator.

For every row: its single-key endpoint answers its result shape and refuses
an unknown body field; ``/v1/batch`` accepts it (and refuses an unknown
field in it); the OpenAPI document has its batch op schema and, with a
route, its path; each client method sends the request the row describes and
returns its field; each CLI verb exists; the simulator's reads and writes
are the table's and its HTTP requests are the clients'.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from crdtkv.api import make_app
from crdtkv.client.model import MISSING, Call
from crdtkv.client.namespaces import (
    Counters,
    Hashes,
    Hlls,
    Keys,
    Lists,
    Registers,
    Sets,
    Vsets,
    Zsets,
    signature,
)
from crdtkv.ops.routing import http_request
from crdtkv.ops.spec import CALLER, RAISES, WHOLE, In, Kind, Method, OpSpec
from crdtkv.ops.table import TABLE
from crdtkv.tools.client_cli import COMMANDS, VERBS
from simulations import history, workload
from simulations.nemesis import run as nemesis_run

from .samples import NEEDS_KEY, sample, sample_op

ROOT = Path(__file__).resolve().parents[2]
ROUTED = [s for s in TABLE if s.route is not None]
NAMESPACE_CLASSES = {
    "registers": Registers,
    "counters": Counters,
    "sets": Sets,
    "hlls": Hlls,
    "keys": Keys,
    "zsets": Zsets,
    "hashes": Hashes,
    "lists": Lists,
    "vsets": Vsets,
}


def creator(namespace: str) -> OpSpec:
    namespace = "registers" if namespace == "keys" else namespace  # any type makes a key
    return next(s for s in TABLE if s.namespace == namespace and s.writes)


def fields_of(spec: OpSpec, key: str = "k", *, optional: bool = False) -> dict[str, Any]:
    op = sample_op(spec, key, optional=optional)
    del op["op"]
    return op


# -- the HTTP API -----------------------------------------------------------------------------


async def test_the_app_serves_exactly_the_routed_rows(make_served: Any) -> None:
    served = await make_served()
    app = make_app(served.node, served.config)
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/v1/")
    }
    expected = {(s.route.method, s.route.path) for s in ROUTED if s.route is not None}
    operations = {("POST", "/v1/batch"), ("GET", "/v1/status")}
    cluster = {("GET", "/v1/cluster/map"), ("POST", "/v1/cluster/map")}  # sharding's own
    assert routes - operations - cluster == expected


async def test_every_routed_row_answers_its_shape_over_http(make_served: Any) -> None:
    served = await make_served()
    for spec in ROUTED:
        key = f"http-{spec.name}"
        if spec.reads or spec.name in NEEDS_KEY:
            make = creator(spec.namespace)
            await served.ok(*http_request(make, fields_of(make, key)))
        method, path, body = http_request(spec, fields_of(spec, key))
        reply = await served.ok(method, path, body)
        assert set(reply) == {f.name for f in spec.result.fields}, spec.name
        if body is not None:
            refused = await served.request(method, path, {**body, "bogus": 1})
            assert refused.status == 400 and "'bogus'" in refused.body["error"]["message"]


async def test_the_batch_takes_every_row_and_refuses_unknown_fields(make_served: Any) -> None:
    served = await make_served()
    ops = []
    for spec in TABLE:  # each on its own key, which its type's first write made exist
        make = creator(spec.namespace)
        ops += [sample_op(make, spec.name), sample_op(spec, spec.name, optional=True)]
    results = (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"]
    for spec, result in zip(TABLE, results[1::2], strict=True):
        assert set(result) == {f.name for f in spec.result.fields}, (spec.name, result)
    bogus = [{**sample_op(spec, "b"), "bogus": 1} for spec in TABLE]
    results = (await served.ok("POST", "/v1/batch", {"ops": bogus}))["results"]
    for spec, result in zip(TABLE, results, strict=True):
        assert result["error"]["code"] == "bad_request", spec.name
        assert "'bogus'" in result["error"]["message"], spec.name


def test_a_query_argument_travels_as_a_repeated_parameter() -> None:
    spec = next(s for s in TABLE if s.args_in(In.QUERY))
    arg = spec.args_in(In.QUERY)[0]
    method, path, body = http_request(spec, {"key": "a/b", arg.name: ["x y", "z"]})
    assert (method, body) == ("GET", None)
    assert path.endswith(f"/a%2Fb?{arg.query}=x%20y&{arg.query}=z")
    with pytest.raises(ValueError):
        http_request(next(s for s in TABLE if s.route is None), {"key": "k"})


# -- the OpenAPI document ---------------------------------------------------------------------


def _generator() -> Any:
    path = ROOT / "scripts" / "gen_openapi.py"
    spec = importlib.util.spec_from_file_location("gen_openapi", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_openapi_document_has_every_row() -> None:
    document = _generator().build()
    mapping = document["components"]["schemas"]["BatchOp"]["discriminator"]["mapping"]
    assert list(mapping) == [s.name for s in TABLE]
    for spec in TABLE:
        op_schema = document["components"]["schemas"][mapping[spec.name].rsplit("/", 1)[1]]
        assert set(op_schema["properties"]) == spec.fields
        assert set(op_schema["required"]) == {"op", *(a.name for a in spec.args if a.required)}
        if spec.route is None:
            continue
        operation = document["paths"][spec.route.path][spec.route.method.lower()]
        assert operation["tags"] == [spec.namespace]
        assert operation["summary"] == spec.doc.summary
        assert ("404" in operation["responses"]) == (spec.not_found or spec.needs_key)
        response = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert response == {"$ref": f"#/components/schemas/{spec.result.name}"}
        params = [p["$ref"].rsplit("/", 1)[1] for p in operation["parameters"]]
        assert len(params) == len([a for a in spec.args if a.http is not In.BODY]) + 2


# -- the clients ------------------------------------------------------------------------------


class Recorder:
    def call(self, call: Call) -> Call:
        return call


def _kinds_before(spec: OpSpec, arg: Any) -> list[Kind]:
    return [a.kind for a in spec.args[: spec.args.index(arg)]]


@pytest.mark.parametrize(
    ("spec", "method"),
    [(s, m) for s in TABLE for m in s.client or ()],
    ids=lambda x: x.name,
)
def test_each_client_method_sends_its_row(spec: OpSpec, method: Method) -> None:
    namespace = NAMESPACE_CLASSES[spec.namespace](Recorder())
    fn = getattr(namespace, method.name)
    assert fn.__doc__ == method.doc
    words: list[Any] = []
    keywords: dict[str, Any] = {}  # the arguments after ``*values`` are keyword-only
    fields = {}
    for arg in spec.args:
        if arg.name in method.omit:
            continue
        value = sample(arg)
        fields[arg.name] = -value if arg.name == method.negate else value
        if keywords or any(k in (Kind.STRINGS, Kind.KEYS) for k in _kinds_before(spec, arg)):
            keywords[arg.client_name] = value
        else:
            words.extend(value if arg.kind in (Kind.STRINGS, Kind.KEYS) else [value])
    call = fn(*words, **keywords)
    assert (call.method, call.path, call.body) == http_request(spec, fields)
    assert call.idempotent == spec.retry_safe
    if isinstance(method.returns, tuple):  # a tuple of the fields, in order
        body = {name: f"it{i}" for i, name in enumerate(method.returns)}
        assert call.decode(body) == tuple(body.values())
    elif method.returns == WHOLE:
        assert call.decode({"a": 1, "b": 2}) == {"a": 1, "b": 2}
    elif method.returns is not None:
        assert call.decode({method.returns: "it"}) == "it"
    if method.absent is RAISES:
        assert call.absent is MISSING
    elif method.absent is CALLER:
        assert call.absent is MISSING and fn(*words, **keywords, default=7).absent == 7
    else:
        assert call.absent == method.absent
    first = next(iter(signature(spec, method).parameters), None)
    assert (first == "key") == spec.keyed


def test_the_cli_has_every_verb_of_the_table() -> None:
    verbs = [m.cli.name for s in TABLE for m in s.client or () if m.cli is not None]
    assert set(COMMANDS) == set(verbs) == set(VERBS)
    for name, verb in VERBS.items():
        assert COMMANDS[name][0] == verb.verb.help
        params = {tuple(signature(s, m).parameters) for s, m in verb.uses}
        assert len(params) == 1, f"the types of {name} take different arguments"


# -- the simulator ----------------------------------------------------------------------------


def test_the_simulator_reads_and_writes_are_the_tables() -> None:
    assert {s.name for s in TABLE if s.reads} == history.READS
    assert {s.name for s in TABLE if s.writes} == history.WRITES
    assert not history.READS & history.WRITES
    drawn = {name for mix in workload.MIXES.values() for name, _, _ in mix}
    assert drawn <= {s.name for s in TABLE}


@pytest.mark.parametrize("spec", ROUTED, ids=lambda s: s.name)
def test_the_simulated_clients_send_what_the_clients_send(spec: OpSpec) -> None:
    fields = fields_of(spec, optional=True)
    key = fields.pop("key", "")  # a keyless op ignores it
    expected = http_request(spec, {"key": key, **fields})
    assert nemesis_run.http_request(spec.name, key, fields) == expected

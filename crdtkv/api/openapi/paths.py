"""The document's paths: one operation per routed row of the op table,
then /v1/batch and the operations endpoints."""

from __future__ import annotations

from typing import Any

from crdtkv.api.openapi.common import SESSION_OUT, Json, camel, ref, schema
from crdtkv.api.openapi.parameters import param_name
from crdtkv.api.openapi.responses import error_refs
from crdtkv.errors import (
    BadRequest,
    CrdtkvError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    SessionUnavailable,
    StaleMap,
    StorageError,
    Unauthorized,
    UnsupportedMediaType,
    WrongType,
)
from crdtkv.ops.spec import In, OpSpec
from crdtkv.ops.table import TABLE

__all__ = ["paths"]


def ok(body_schema: str, description: str, example: Any = None) -> Json:
    """A 200 response with a JSON body and the session header."""
    media: Json = {"schema": schema(body_schema)}
    if example is not None:
        media["example"] = example
    return {
        "description": description,
        "headers": dict(SESSION_OUT),
        "content": {"application/json": media},
    }


def operation(
    op_id: str,
    tag: str,
    summary: str,
    response: Json,
    *,
    body: str | None = None,
    reads_key: bool = False,
    params: tuple[str, ...] = ("Key",),
    description: str | None = None,
    writes: bool = False,
) -> Json:
    """A /v1 operation: auth, session headers and the errors every one of them can answer
    (``writes``: a read-only user's call is 403)."""
    out: Json = {"operationId": op_id, "tags": [tag], "summary": summary}
    if description:
        out["description"] = description
    out["parameters"] = [ref("parameters", p) for p in (*params, "Session", "WaitMs")]
    if body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema(body)}},
        }
    errors: list[type[CrdtkvError]] = [BadRequest, Unauthorized]
    if writes:
        errors.append(Forbidden)
    if reads_key:
        errors.append(NotFound)
    if "Key" in params:
        errors.append(WrongType)  # one keyspace: the key may hold another type
    if body is not None:
        errors += [PayloadTooLarge, UnsupportedMediaType]
    errors += [StorageError, SessionUnavailable]
    out["responses"] = {"200": response, **error_refs(*errors)}
    return out


def op_operation(spec: OpSpec) -> Json:
    """The single-key endpoint of an op of the table."""
    doc = spec.doc
    return operation(
        spec.name[0] + camel(spec.name)[1:],  # registersSet
        spec.namespace,
        doc.summary,
        ok(spec.result.name, doc.result, doc.example),
        body=None if spec.body is None else spec.body.name,
        reads_key=spec.not_found or spec.needs_key,
        params=tuple(param_name(a) for a in spec.args if a.http is not In.BODY),
        description=doc.description or None,
        writes=spec.writes,
    )


def op_paths() -> Json:
    """Each type's paths: its own resource first, then the deeper ones, in table order."""
    routed = [spec for spec in TABLE if spec.route is not None]
    types = list(dict.fromkeys(spec.namespace for spec in routed))
    order = list(dict.fromkeys(spec.route.path for spec in routed if spec.route))
    out: Json = {}
    for spec in sorted(
        routed,
        key=lambda s: (
            types.index(s.namespace),
            s.route.path.count("/") if s.route else 0,
            order.index(s.route.path) if s.route else 0,
        ),
    ):
        assert spec.route is not None
        out.setdefault(spec.route.path, {})[spec.route.method.lower()] = op_operation(spec)
    return out


def paths() -> Json:
    return {
        **op_paths(),
        "/v1/batch": {"post": batch_operation()},
        "/v1/status": {"get": status_operation()},
        "/v1/cluster/map": {"get": cluster_map_operation(), "post": cluster_map_set_operation()},
        "/healthz": {"get": healthz_operation()},
        "/metrics": {"get": metrics_operation()},
        "/openapi.json": {"get": openapi_operation()},
    }


def batch_operation() -> Json:
    out = operation(
        "batch",
        "batch",
        "Apply several ops in one request",
        ok("BatchResults", "One result or error per op, in order."),
        body="Batch",
        params=(),
        description="Each op is one row of the single-key endpoints, as an object with `op`, "
        '`key` and that endpoint\'s body fields (BatchOp). A failing op yields `{"error": '
        "{...}}` in its slot; the others still apply. The endpoint also takes and answers "
        "MessagePack (`application/msgpack`): the answer is in the request's format unless "
        "`Accept` names exactly one of the two. A read-only user's batch with any write op "
        "is refused whole (403).",
        writes=True,
    )
    msgpack = {"schema": schema("Batch")}
    out["requestBody"]["content"]["application/msgpack"] = msgpack
    out["responses"]["200"]["content"]["application/msgpack"] = {"schema": schema("BatchResults")}
    out["responses"]["200"]["content"]["application/json"]["example"] = {
        "results": [
            {"value": 1},
            {"ok": True},
            {"value": {"name": "ada"}},
            {"added": 1},
            {"changed": True},
        ]
    }
    return out


def status_operation() -> Json:
    out = operation(
        "status",
        "operations",
        "This replica's id, key count, applied updates and peers",
        ok(
            "Status",
            "The replica's status.",
            {
                "replica_id": "r1",
                "release": "0.2.0",
                "keys": 42,
                "applied": {"r1~5d81f11f": 120, "r2~0c4e1a27": 98},
                "peers": {
                    "r2": {
                        "url": "http://127.0.0.1:7002",
                        "acked": 120,
                        "lag_ops": 0,
                        "reachable": True,
                        "release": "0.2.0",
                        "wire_format": 1,
                    }
                },
                "cluster": {"enabled": False},
            },
        ),
        params=(),
        description="Answers without waiting for a session token (it is how one finds a "
        "lagging replica), so never 503.",
    )
    del out["responses"][str(SessionUnavailable.status)]
    return out


def cluster_map_operation() -> Json:
    out = operation(
        "clusterMap",
        "operations",
        "The cluster map this replica holds, and its shard, region and slots",
        ok("ClusterView", "This replica's view of the cluster.", {"enabled": False}),
        params=(),
        description="Clients of a sharded cluster learn the map here, then send each key "
        "to its slot's owner in their region. Never 503.",
    )
    del out["responses"][str(SessionUnavailable.status)]
    return out


def cluster_map_set_operation() -> Json:
    return {
        "operationId": "clusterMapSet",
        "tags": ["operations"],
        "summary": "Internal: give this process a new cluster map (signed)",
        "description": "Process to process, and `crdtkv cluster-map set`: not a client "
        "call. Signed with the cluster secret as replication requests are "
        "(`X-Crdtkv-Peer`, `X-Crdtkv-Timestamp`, `X-Crdtkv-Signature`), and needs no "
        "auth token. A newer map is persisted in the data directory and taken before the "
        "answer; the process then pushes it to every other process of the cluster. A "
        "replica without `--cluster-secret` takes no map over HTTP (403); a map that "
        "would drop this replica or move it to another shard, or a replica that is not "
        "sharded: 400. A `GET` of this path signed the same way passes without a token "
        "and gets a signed answer (how processes ask each other for their maps).",
        "security": [],
        "parameters": [ref("parameters", p) for p in ("Session", "WaitMs")],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema("ClusterMap")}},
        },
        "responses": {
            "200": ok("ClusterMapTaken", "Taken (or already held).", {"epoch": 2, "changed": True}),
            **error_refs(
                BadRequest, Unauthorized, Forbidden, StaleMap, PayloadTooLarge, StorageError
            ),
        },
    }


def healthz_operation() -> Json:
    return {
        "operationId": "healthz",
        "tags": ["operations"],
        "summary": "Liveness: 200 once the replica serves traffic",
        "description": "Never needs the auth token.",
        "security": [],
        "responses": {
            "200": ok("Health", "Serving.", {"status": "ok"}),
            **error_refs(StorageError),
        },
    }


def metrics_operation() -> Json:
    return {
        "operationId": "metrics",
        "tags": ["operations"],
        "summary": "Prometheus metrics",
        "description": "Requests, errors and latencies by route; keys; delta log size; "
        "replication lag and bytes per peer. Needs the auth token when one is configured.",
        "responses": {
            "200": {
                "description": "The Prometheus text exposition format "
                "(`text/plain; version=...; charset=utf-8`).",
                "headers": dict(SESSION_OUT),
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **error_refs(Unauthorized),
        },
    }


def openapi_operation() -> Json:
    return {
        "operationId": "openapi",
        "tags": ["operations"],
        "summary": "This document",
        "security": [],
        "responses": {
            "200": {
                "description": "The OpenAPI 3.1 document of the API.",
                "headers": dict(SESSION_OUT),
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }

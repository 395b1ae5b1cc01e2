"""Named users over HTTP (``--auth-file``): 401 without a known token, 403 for a
read-only user's write (the op table decides; a batch with any write; an
unknown route that is not GET), reads by everyone, the open endpoints, the
single ``--auth-token`` alongside, a reload, and the client's ``Forbidden``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from crdtkv.api.state import AUTH
from crdtkv.auth import UserEntry
from crdtkv.client import AsyncClient
from crdtkv.errors import Forbidden, Unauthorized
from crdtkv.ops.table import TABLE

from .conftest import Served, ServedFactory
from .test_errors import check_error

RW = "rw-token-0123456789abcdef"
RO = "ro-token-0123456789abcdef"
LEGACY = "legacy-token-0123456789"
USERS = (UserEntry("writer", "read-write", RW), UserEntry("reader", "read-only", RO))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest_asyncio.fixture
async def served(make_served: ServedFactory, tmp_path: Path) -> Served:
    return await make_served(
        auth_file=str(tmp_path / "users.toml"), auth_users=USERS, auth_token=LEGACY
    )


async def test_no_or_a_wrong_token_is_401_everywhere_but_the_open_endpoints(
    served: Served,
) -> None:
    for headers in ({}, bearer("nope-0123456789abcdef"), bearer(RO + "x"), {"Authorization": RO}):
        for method, path, body in [
            ("GET", "/v1/registers/k", None),
            ("PUT", "/v1/registers/k", {"value": 1}),
            ("POST", "/v1/batch", {"ops": []}),
            ("GET", "/v1/status", None),
            ("DELETE", "/v1/nowhere", None),
            ("GET", "/metrics", None),
        ]:
            reply = await served.request(method, path, body, headers=headers, auth=False)
            check_error(reply, 401, "unauthorized")
            assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    for path in ("/healthz", "/openapi.json"):
        assert (await served.request("GET", path, auth=False)).status == 200


async def test_read_only_reads_and_is_403_on_every_write(served: Served) -> None:
    ok = await served.request("PUT", "/v1/registers/k", {"value": 1}, headers=bearer(RW))
    assert ok.status == 200, ok.body
    ro = bearer(RO)
    reply = await served.request("GET", "/v1/registers/k", headers=ro)
    assert (reply.status, reply.body) == (200, {"value": 1})
    for path in ("/v1/status", "/metrics", "/v1/keys"):
        assert (await served.request("GET", path, headers=ro)).status == 200, path
    # Every routed write of the op table, with a body it would take: 403 before anything.
    writes = [s for s in TABLE if s.route is not None and s.writes]
    assert len(writes) > 10
    for spec in writes:
        assert spec.route is not None
        path = spec.route.path.replace("{key}", "k").replace("{member}", "m")
        body = {} if spec.route.method in ("PUT", "POST", "PATCH") else None
        reply = await served.request(spec.route.method, path, body, headers=ro)
        check_error(reply, 403, "forbidden")
        assert "'reader'" in reply.body["error"]["message"], spec.name
    # Every routed read answers the reader (200 or the op's own 404/400, never 401/403).
    for spec in TABLE:
        if spec.route is not None and not spec.writes:
            path = spec.route.path.replace("{key}", "k").replace("{member}", "m")
            reply = await served.request(spec.route.method, path, headers=ro)
            assert reply.status not in (401, 403), (spec.name, reply.body)
    # Routes the table does not know: a write unless GET (fail closed), so no 404/405 leak.
    check_error(await served.request("POST", "/v1/nowhere", {}, headers=ro), 403, "forbidden")
    check_error(await served.request("GET", "/v1/nowhere", headers=ro), 404, "not_found")
    assert (await served.request("DELETE", "/v1/nowhere", headers=bearer(RW))).status == 404
    assert await served.ok("GET", "/v1/registers/k") == {"value": 1}  # nothing changed


async def test_a_batch_with_any_write_is_403_whole(served: Served) -> None:
    await served.request("POST", "/v1/counters/c", {"delta": 5}, headers=bearer(RW))
    reads = [{"op": "counters.get", "key": "c"}, {"op": "registers.get", "key": "none"}]
    reply = await served.request("POST", "/v1/batch", {"ops": reads}, headers=bearer(RO))
    assert reply.status == 200
    assert reply.body["results"][0] == {"value": 5}
    assert reply.body["results"][1]["error"]["code"] == "not_found"
    # An op that is not in the table cannot write: it keeps its slot's error.
    odd = [{"op": "counters.get", "key": "c"}, {"op": "no.such"}, "not an op"]
    reply = await served.request("POST", "/v1/batch", {"ops": odd}, headers=bearer(RO))
    assert reply.status == 200
    assert [r.get("error", {}).get("code") for r in reply.body["results"]] == [
        None,
        "bad_request",
        "bad_request",
    ]
    mixed = [*reads, {"op": "counters.incr", "key": "c", "delta": 1}]
    reply = await served.request("POST", "/v1/batch", {"ops": mixed}, headers=bearer(RO))
    check_error(reply, 403, "forbidden")
    assert "op 2 (counters.incr)" in reply.body["error"]["message"]
    reply = await served.request("POST", "/v1/batch", {"ops": mixed}, headers=bearer(RW))
    assert reply.status == 200 and reply.body["results"][2] == {"value": 6}


async def test_the_single_auth_token_is_a_read_write_user(served: Served) -> None:
    reply = await served.request("PUT", "/v1/registers/l", {"value": "x"}, headers=bearer(LEGACY))
    assert reply.status == 200
    assert (await served.request("GET", "/metrics", headers=bearer(LEGACY))).status == 200


async def test_a_reload_takes_effect_on_the_next_request(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    new_ro = "ro-rotated-0123456789abcdef"
    path.write_text(
        f'[users.reader]\ntoken = "{new_ro}"\nrole = "read-only"\n'
        f'[users.writer]\ntoken = "{RW}"\nrole = "read-only"\n'
    )
    assert served.client.app[AUTH].reload() == 2
    check_error(await served.request("GET", "/v1/status", headers=bearer(RO)), 401, "unauthorized")
    assert (await served.request("GET", "/v1/status", headers=bearer(new_ro))).status == 200
    # The writer became read-only.
    reply = await served.request("PUT", "/v1/registers/k", {"value": 2}, headers=bearer(RW))
    check_error(reply, 403, "forbidden")


async def test_the_client_raises_forbidden_and_unauthorized(served: Served) -> None:
    url = f"http://{served.client.host}:{served.client.port}"
    async with AsyncClient([url], auth_token=RO) as db:
        with pytest.raises(Forbidden) as info:
            await db.registers.set("k", 1)
        assert info.value.status == 403 and "read-only" in info.value.message
        assert await db.registers.get("k", default=None) is None
    async with AsyncClient([url], auth_token="wrong-0123456789abcdef") as db:
        with pytest.raises(Unauthorized):
            await asyncio.wait_for(db.registers.get("k", default=None), 10)

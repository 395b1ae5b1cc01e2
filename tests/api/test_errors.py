"""Every row of the error table in docs/api.md; a bad request changes nothing and the
server keeps serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
import pytest
import pytest_asyncio

from crdtkv import limits
from crdtkv.config import ServeConfig
from crdtkv.crdts.causal import VersionVector
from crdtkv.errors import SessionUnavailable
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, SessionToken, TokenSigner

from .conftest import SECRET, FakeClock, Reply, Served, ServedFactory


def nested(depth: int) -> Any:
    """A value of ``depth`` nested lists."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


LONG = "x" * (limits.KEY_BYTES_MAX + 1)
LONG_UTF8 = "é" * (limits.KEY_BYTES_MAX // 2 + 1)  # 1026 bytes in 513 characters


@dataclass(frozen=True)
class Bad:
    id: str
    method: str
    path: str
    body: Any = None  # JSON-encoded when not None
    raw: bytes | None = None  # sent as is (Content-Type application/json unless headers say)
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 400
    code: str = "bad_request"


def too_far_ahead_token() -> str:
    return TokenSigner(SECRET).encode(SessionToken({}, (10**13, 0)))


BAD_REQUESTS = [
    # 400: malformed JSON, not an object, empty body
    Bad("malformed-json", "PUT", "/v1/registers/r", raw=b'{"value": '),
    Bad("invalid-utf8", "PUT", "/v1/registers/r", raw=b'{"value": "\xff"}'),
    Bad("nan", "PUT", "/v1/registers/r", raw=b'{"value": NaN}'),
    Bad("body-not-object", "PUT", "/v1/registers/r", body=[1, 2]),
    Bad("no-body", "PUT", "/v1/registers/r"),
    Bad("no-body-counter", "POST", "/v1/counters/c"),
    # 400: missing and wrongly typed fields
    Bad("missing-value", "PUT", "/v1/registers/r", body={}),
    Bad("ttl-string", "PUT", "/v1/registers/r", body={"value": 1, "ttl_ms": "10"}),
    Bad("ttl-zero", "PUT", "/v1/registers/r", body={"value": 1, "ttl_ms": 0}),
    Bad("unknown-field", "PUT", "/v1/registers/r", body={"value": 1, "ttl": 5}),
    Bad("missing-delta", "POST", "/v1/counters/c", body={}),
    Bad("delta-string", "POST", "/v1/counters/c", body={"delta": "1"}),
    Bad("delta-bool", "POST", "/v1/counters/c", body={"delta": True}),
    Bad("delta-float", "POST", "/v1/counters/c", body={"delta": 1.5}),
    Bad("members-string", "POST", "/v1/sets/s/add", body={"members": "a"}),
    Bad("members-int", "POST", "/v1/sets/s/add", body={"members": ["b", 1]}),
    Bad("members-null", "POST", "/v1/sets/s/remove", body={"members": None}),
    Bad("items-string", "POST", "/v1/hlls/h/add", body={"items": "x"}),
    Bad("sources-empty", "POST", "/v1/hlls/h/merge", body={"sources": []}),
    Bad("sources-empty-key", "POST", "/v1/hlls/h/merge", body={"sources": [""]}),
    Bad("union-empty-key", "GET", "/v1/hlls/h?union="),
    # 400: integers outside 64 bits, counter overflow
    Bad("delta-over-int64", "POST", "/v1/counters/c", body={"delta": 2**63}),
    Bad("delta-over-uint64", "POST", "/v1/counters/c", raw=b'{"delta": 18446744073709551616}'),
    Bad("value-over-uint64", "PUT", "/v1/registers/r", raw=b'{"value": 18446744073709551616}'),
    Bad("value-under-int64", "PUT", "/v1/registers/r", raw=b'{"value": [-9223372036854775809]}'),
    Bad("value-huge-int", "PUT", "/v1/registers/r", raw=b'{"value": ' + b"9" * 5000 + b"}"),
    Bad("counter-overflow", "POST", "/v1/counters/c", body={"delta": limits.INT64_MAX}),
    # 400: key empty or too long (in the path, for every type)
    Bad("empty-key", "PUT", "/v1/registers/", body={"value": 1}),
    Bad("long-key-register", "PUT", f"/v1/registers/{LONG}", body={"value": 1}),
    Bad("long-key-register-get", "GET", f"/v1/registers/{LONG}"),
    Bad("long-key-counter", "POST", f"/v1/counters/{LONG}", body={"delta": 1}),
    Bad("long-key-set", "POST", f"/v1/sets/{LONG}/add", body={"members": ["a"]}),
    Bad("long-key-hll", "POST", f"/v1/hlls/{LONG}/add", body={"items": ["a"]}),
    Bad("long-utf8-key", "PUT", "/v1/registers/" + "%C3%A9" * 513, body={"value": 1}),
    # 400: JSON nested deeper than 64 levels (the body is level 1)
    Bad("too-deep", "PUT", "/v1/registers/r", body={"value": nested(64)}),
    Bad("too-deep-batch", "POST", "/v1/batch", body={"ops": [{"value": nested(63)}]}),
    Bad(
        "far-too-deep",
        "PUT",
        "/v1/registers/r",
        raw=b'{"value": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    ),
    # 400: batch shape
    Bad("batch-no-ops", "POST", "/v1/batch", body={}),
    Bad("batch-ops-not-list", "POST", "/v1/batch", body={"ops": {"op": "counters.get"}}),
    Bad("batch-extra-field", "POST", "/v1/batch", body={"ops": [], "atomic": True}),
    Bad(
        "batch-too-many",
        "POST",
        "/v1/batch",
        body={"ops": [{"op": "counters.incr", "key": "c", "delta": 1}] * 1001},
    ),
    Bad(
        "batch-bad-msgpack",
        "POST",
        "/v1/batch",
        raw=b"\xc1\x00",
        headers={"Content-Type": "application/msgpack"},
    ),
    Bad(
        "batch-msgpack-trailing",
        "POST",
        "/v1/batch",
        raw=msgpack.packb({"ops": []}) + b"\x01",
        headers={"Content-Type": "application/msgpack"},
    ),
    # 400: session tokens and waits
    Bad("token-garbage", "GET", "/v1/counters/c", headers={SESSION_HEADER: "garbage"}),
    Bad(
        "token-other-cluster",
        "POST",
        "/v1/counters/c",
        body={"delta": 1},
        headers={SESSION_HEADER: TokenSigner("other").encode(SessionToken({"r1~inc1": 1}))},
    ),
    Bad(
        "token-tampered",
        "POST",
        "/v1/counters/c",
        body={"delta": 1},
        headers={SESSION_HEADER: "A" + TokenSigner(SECRET).encode(SessionToken())[1:]},
    ),
    Bad(
        "token-clock-far-ahead",
        "POST",
        "/v1/counters/c",
        body={"delta": 1},
        headers={SESSION_HEADER: too_far_ahead_token()},
    ),
    Bad("wait-not-a-number", "GET", "/v1/counters/c", headers={WAIT_HEADER: "soon"}),
    Bad("wait-negative", "GET", "/v1/counters/c", headers={WAIT_HEADER: "-1"}),
    Bad("wait-fraction", "GET", "/v1/counters/c", headers={WAIT_HEADER: "1.5"}),
    # 404: unknown paths
    Bad("root", "GET", "/", status=404, code="not_found"),
    Bad("v1", "GET", "/v1", status=404, code="not_found"),
    Bad("v2", "GET", "/v2/registers/r", status=404, code="not_found"),
    Bad("slash-in-key", "GET", "/v1/registers/a/b", status=404, code="not_found"),
    Bad("unknown-type", "GET", "/v1/maps/m", status=404, code="not_found"),
    Bad("set-members", "GET", "/v1/sets/s/members", status=404, code="not_found"),
    Bad("unknown-post", "POST", "/v1/nope", body={}, status=404, code="not_found"),
    # 404: absent keys of each type
    Bad("absent-register", "GET", "/v1/registers/none", status=404, code="not_found"),
    Bad("absent-counter", "GET", "/v1/counters/none", status=404, code="not_found"),
    Bad("absent-set", "GET", "/v1/sets/none", status=404, code="not_found"),
    Bad("absent-set-member", "GET", "/v1/sets/none/members/a", status=404, code="not_found"),
    Bad("absent-hll", "GET", "/v1/hlls/none", status=404, code="not_found"),
    Bad("absent-type-mix", "GET", "/v1/sets/r", status=409, code="wrong_type"),
    # 405: wrong method on a known path
    Bad("post-register", "POST", "/v1/registers/r", body={}, status=405, code="method_not_allowed"),
    Bad("put-counter", "PUT", "/v1/counters/c", body={}, status=405, code="method_not_allowed"),
    Bad("get-set-add", "GET", "/v1/sets/s/add", status=405, code="method_not_allowed"),
    Bad("get-hll-merge", "GET", "/v1/hlls/h/merge", status=405, code="method_not_allowed"),
    Bad("get-batch", "GET", "/v1/batch", status=405, code="method_not_allowed"),
    Bad("post-status", "POST", "/v1/status", body={}, status=405, code="method_not_allowed"),
    Bad("delete-healthz", "DELETE", "/healthz", status=405, code="method_not_allowed"),
    Bad("patch-register", "PATCH", "/v1/registers/r", status=405, code="method_not_allowed"),
    # 415: a body in another format
    Bad(
        "text-plain",
        "PUT",
        "/v1/registers/r",
        raw=b'{"value": 1}',
        headers={"Content-Type": "text/plain"},
        status=415,
        code="unsupported_media_type",
    ),
    Bad(
        "form",
        "POST",
        "/v1/counters/c",
        raw=b"delta=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        status=415,
        code="unsupported_media_type",
    ),
    Bad(
        "msgpack-off-batch",
        "POST",
        "/v1/counters/c",
        raw=msgpack.packb({"delta": 1}),
        headers={"Content-Type": "application/msgpack"},
        status=415,
        code="unsupported_media_type",
    ),
    Bad(
        "batch-xml",
        "POST",
        "/v1/batch",
        raw=b"<ops/>",
        headers={"Content-Type": "application/xml"},
        status=415,
        code="unsupported_media_type",
    ),
]


async def seed(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/r", {"value": {"v": 1}})
    await served.ok("POST", "/v1/counters/c", {"delta": 5})
    await served.ok("POST", "/v1/sets/s/add", {"members": ["a"]})
    await served.ok("POST", "/v1/hlls/h/add", {"items": ["x"]})


READ_BACK = ("/v1/registers/r", "/v1/counters/c", "/v1/sets/s", "/v1/hlls/h")


async def state_of(served: Served) -> tuple[Any, ...]:
    status = await served.ok("GET", "/v1/status")
    reads = [await served.ok("GET", path) for path in READ_BACK]
    return status["applied"], status["keys"], reads, served.node.replica.log_pos


def check_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.body
    assert reply.headers["Content-Type"].startswith("application/json")
    assert set(reply.body) == {"error"} and set(reply.body["error"]) == {"code", "message"}
    assert reply.code == code and reply.body["error"]["message"]
    assert reply.token() is not None  # errors carry a verified session token too


async def send(served: Served, bad: Bad) -> Reply:
    headers = dict(bad.headers)
    if bad.raw is not None:
        headers.setdefault("Content-Type", "application/json")
    return await served.request(bad.method, bad.path, bad.body, data=bad.raw, headers=headers)


@pytest.fixture
async def seeded(served: Served) -> AsyncIterator[Served]:
    await seed(served)
    yield served


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    """One replica for the whole table: a bad request changes nothing, so cases
    cannot disturb each other (and a RocksDB per case would cost seconds)."""
    served = Served(
        tmp_path_factory.mktemp("errors"), ServeConfig("r1", cluster_secret=SECRET), FakeClock()
    )
    await served.start()
    await seed(served)
    yield served
    await served.stop()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[b.id for b in BAD_REQUESTS])
async def test_bad_request_is_refused_and_changes_nothing(shared: Served, bad: Bad) -> None:
    before = await state_of(shared)
    check_error(await send(shared, bad), bad.status, bad.code)
    assert await state_of(shared) == before
    # and the server still serves
    counter = before[2][1]["value"]
    assert await shared.ok("POST", "/v1/counters/c", {"delta": 1}) == {"value": counter + 1}


async def test_405_says_which_methods_are_allowed(served: Served) -> None:
    reply = await served.request("POST", "/v1/registers/r", {})
    assert reply.headers["Allow"] == "DELETE, GET, PUT"


async def test_limits_at_the_edge_are_accepted(served: Served) -> None:
    edge = "x" * limits.KEY_BYTES_MAX
    await served.ok("PUT", f"/v1/registers/{edge}", {"value": nested(63)})
    assert await served.ok("GET", f"/v1/registers/{edge}") == {"value": nested(63)}
    await served.ok("PUT", "/v1/registers/big", {"value": [2**64 - 1, -(2**63)]})
    assert await served.ok("GET", "/v1/registers/big") == {"value": [2**64 - 1, -(2**63)]}


async def test_a_body_without_content_type_is_read_as_json(served: Served) -> None:
    # Raw HTTP: aiohttp's client would label the bytes application/octet-stream.
    reader, writer = await asyncio.open_connection(served.client.host, served.client.port)
    body = b'{"value": 1}'
    writer.write(
        b"PUT /v1/registers/plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b'{"ok":true}')
    assert await served.ok("GET", "/v1/registers/plain") == {"value": 1}


async def test_batch_op_errors_stay_in_their_slot(served: Served) -> None:
    ops = [
        {"op": "counters.incr", "key": "a", "delta": 1},
        {"op": "counters.incr", "key": LONG, "delta": 1},
        {"op": "counters.incr", "key": "", "delta": 1},
        {"op": "counters.incr", "key": "a", "delta": 1, "by": 2},
        {"op": "counters.incr", "key": "a", "delta": limits.INT64_MAX},
        {"op": "registers.set", "key": "r"},
        {"op": "counters.incr", "key": "a", "delta": 1},
    ]
    results = (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"]
    assert results[0] == {"value": 1} and results[-1] == {"value": 2}
    for slot in results[1:-1]:
        assert slot["error"]["code"] == "bad_request" and slot["error"]["message"]
    assert await served.ok("GET", "/v1/counters/a") == {"value": 2}
    assert (await served.request("GET", "/v1/registers/r")).status == 404


# -- 401 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong", "Basic s3cret", "Bearer s3cret-and-more", "s3cret"],
)
async def test_auth_token_required_on_v1_and_metrics(
    make_served: ServedFactory, authorization: str | None
) -> None:
    served = await make_served(auth_token="s3cret")
    await served.ok("POST", "/v1/counters/c", {"delta": 1})
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in [
        ("POST", "/v1/counters/c", {"delta": 1}),
        ("GET", "/v1/counters/c", None),
        ("GET", "/v1/status", None),
        ("POST", "/v1/batch", {"ops": []}),
        ("GET", "/v1/unknown", None),
        ("GET", "/metrics", None),
    ]:
        reply = await served.request(method, path, body, headers=headers, auth=False)
        check_error(reply, 401, "unauthorized")
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert await served.ok("GET", "/v1/counters/c") == {"value": 1}  # nothing changed
    assert (await served.request("GET", "/healthz", auth=False)).status == 200


async def test_right_auth_token_is_accepted(make_served: ServedFactory) -> None:
    served = await make_served(auth_token="s3cret")
    reply = await served.request(
        "POST", "/v1/counters/c", {"delta": 1}, headers={"Authorization": "bearer s3cret"}
    )
    assert reply.status == 200
    assert (await served.request("GET", "/metrics")).status == 200


# -- 413 -------------------------------------------------------------------------------------


async def test_413_on_declared_length_over_the_limit(seeded: Served) -> None:
    before = await state_of(seeded)
    body = {"value": "x" * limits.BODY_BYTES_MAX}
    check_error(await seeded.request("PUT", "/v1/registers/r", body), 413, "payload_too_large")
    assert await state_of(seeded) == before
    assert await seeded.ok("POST", "/v1/counters/c", {"delta": 1}) == {"value": 6}


async def test_413_on_chunked_body_over_the_limit(make_served: ServedFactory) -> None:
    served = await make_served(body_bytes_max=4096)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"value": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    url = served.client.make_url("/v1/registers/r")
    headers = {"Content-Type": "application/json"}
    async with served.client.session.put(url, data=chunks(), headers=headers) as resp:
        assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "payload_too_large"
    assert (await served.request("GET", "/v1/registers/r")).status == 404
    # exactly at the limit is fine
    value = "y" * (4096 - len(b'{"value": ""}'))
    assert await served.ok("PUT", "/v1/registers/r", {"value": value}) == {"ok": True}


# -- 503 -------------------------------------------------------------------------------------


def token_for(vv: VersionVector) -> str:
    return TokenSigner(SECRET).encode(SessionToken(vv, (0, 0)))


async def test_503_when_the_token_names_writes_not_applied_here(seeded: Served) -> None:
    before = await state_of(seeded)
    headers = {SESSION_HEADER: token_for({"r2~other": 3}), WAIT_HEADER: "50"}
    started = time.monotonic()
    reply = await seeded.request("POST", "/v1/counters/c", {"delta": 1}, headers=headers)
    elapsed = time.monotonic() - started
    check_error(reply, 503, "session_unavailable")
    assert 0.05 <= elapsed < 1.0
    assert reply.token().vv["r2~other"] == 3  # the client keeps its session
    assert await state_of(seeded) == before
    get = await seeded.request("GET", "/v1/counters/c", headers=headers)
    check_error(get, 503, "session_unavailable")


async def test_wait_header_is_capped_and_defaults(served: Served, monkeypatch: Any) -> None:
    seen: list[int] = []

    async def fake_enter(token: Any, wait_ms: int, *, writes: bool) -> None:
        seen.append(wait_ms)
        raise SessionUnavailable("not yet")

    monkeypatch.setattr(served.node, "enter", fake_enter)
    token = token_for({"r2~other": 1})
    await served.request("GET", "/v1/counters/c", headers={SESSION_HEADER: token})
    await served.request(
        "GET", "/v1/counters/c", headers={SESSION_HEADER: token, WAIT_HEADER: "99999"}
    )
    assert seen == [limits.WAIT_MS_DEFAULT, limits.WAIT_MS_MAX]


async def test_status_answers_a_lagging_session_without_waiting(served: Served) -> None:
    headers = {SESSION_HEADER: token_for({"r2~other": 3}), WAIT_HEADER: "5000"}
    reply = await asyncio.wait_for(served.request("GET", "/v1/status", headers=headers), 1)
    assert reply.status == 200


# -- 500 -------------------------------------------------------------------------------------


async def test_unexpected_exception_is_500_and_the_server_lives(
    served: Served, monkeypatch: Any, caplog: Any
) -> None:
    def boom(op: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(served.node, "apply", boom)
    reply = await served.request("GET", "/v1/counters/c")
    check_error(reply, 500, "internal")
    assert "bug" not in reply.body["error"]["message"]  # internals stay in the log
    assert "unexpected error" in caplog.text
    batch = await served.ok("POST", "/v1/batch", {"ops": [{"op": "counters.get", "key": "c"}]})
    assert batch["results"][0]["error"]["code"] == "internal"
    monkeypatch.undo()
    assert await served.ok("POST", "/v1/counters/c", {"delta": 1}) == {"value": 1}


async def test_garbage_on_the_wire_does_not_kill_the_server(served: Served) -> None:
    reader, writer = await asyncio.open_connection(served.client.host, served.client.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    await reader.read()
    writer.close()
    assert (await served.request("GET", "/healthz")).status == 200


async def test_error_bodies_are_json_even_for_msgpack_batches(served: Served) -> None:
    reply = await served.request(
        "POST",
        "/v1/batch",
        data=msgpack.packb({"ops": "nope"}),
        headers={"Content-Type": "application/msgpack"},
    )
    assert reply.status == 400 and orjson.loads(reply.raw)["error"]["code"] == "bad_request"

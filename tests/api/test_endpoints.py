"""Every endpoint of docs/api.md, its exact 200 body, and the session header."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import msgpack
import pytest

import crdtkv
from crdtkv.crdts.causal import vv_dominates
from crdtkv.replica.keyspace import DeltaGroup
from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, SessionToken, TokenSigner

from .conftest import SECRET, Served, ServedFactory


def k(key: str) -> str:
    """A key as a client puts it in a path: every reserved character percent-encoded,
    and dots too (a "." or ".." segment would be removed by URL normalisation)."""
    return quote(key, safe="").replace(".", "%2E")


# -- registers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "héllo ✓",
        [1, [2, [3]]],
        {"name": "ada", "tags": ["x"], "nested": {"a": None}},
    ],
)
async def test_register_put_get_roundtrips_any_json(served: Served, value: Any) -> None:
    assert await served.ok("PUT", "/v1/registers/user:1", {"value": value}) == {"ok": True}
    assert await served.ok("GET", "/v1/registers/user:1") == {"value": value}


async def test_register_overwrite_and_delete(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/r", {"value": 1})
    await served.ok("PUT", "/v1/registers/r", {"value": 2})
    assert await served.ok("GET", "/v1/registers/r") == {"value": 2}
    assert await served.ok("DELETE", "/v1/registers/r") == {"ok": True}
    reply = await served.request("GET", "/v1/registers/r")
    assert reply.status == 404 and reply.code == "not_found"
    # deleting an absent key is fine (idempotent)
    assert await served.ok("DELETE", "/v1/registers/never") == {"ok": True}


@pytest.mark.parametrize(
    "key", ["a/b", "a b+c", "%", "100%2F", "✓ünï", "..", ".", "x" * 1024, "?&#=", "a/../b"]
)
async def test_keys_with_any_characters_travel_percent_encoded(served: Served, key: str) -> None:
    await served.ok("PUT", f"/v1/registers/{k(key)}", {"value": key})
    assert await served.ok("GET", f"/v1/registers/{k(key)}") == {"value": key}
    other = await served.request("GET", "/v1/registers/a")
    assert other.status == 404  # "a/b" is not "a"


async def test_register_ttl_expires_on_the_node_clock(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/t", {"value": "soon gone", "ttl_ms": 1000})
    served.clock.advance(999)
    assert await served.ok("GET", "/v1/registers/t") == {"value": "soon gone"}
    served.clock.advance(1)
    reply = await served.request("GET", "/v1/registers/t")
    assert reply.status == 404 and reply.code == "not_found"
    # a later write without ttl makes it permanent again
    await served.ok("PUT", "/v1/registers/t", {"value": "back", "ttl_ms": None})
    served.clock.advance(10**9)
    assert await served.ok("GET", "/v1/registers/t") == {"value": "back"}


# -- counters ------------------------------------------------------------------------------


async def test_counter_incr_get_delete(served: Served) -> None:
    assert await served.ok("POST", "/v1/counters/visits", {"delta": 3}) == {"value": 3}
    assert await served.ok("POST", "/v1/counters/visits", {"delta": -5}) == {"value": -2}
    assert await served.ok("GET", "/v1/counters/visits") == {"value": -2}
    assert await served.ok("DELETE", "/v1/counters/visits") == {"ok": True}
    assert (await served.request("GET", "/v1/counters/visits")).status == 404
    assert await served.ok("POST", "/v1/counters/visits", {"delta": 7}) == {"value": 7}


async def test_counter_reaches_the_64_bit_edges(served: Served) -> None:
    top = 2**63 - 1
    assert await served.ok("POST", "/v1/counters/c", {"delta": top}) == {"value": top}
    reply = await served.request("POST", "/v1/counters/c", {"delta": 1})
    assert reply.status == 400 and reply.code == "bad_request"
    assert await served.ok("GET", "/v1/counters/c") == {"value": top}


async def test_registers_and_counters_are_two_views_of_one_string(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/n", {"value": 5})
    assert await served.ok("POST", "/v1/counters/n", {"delta": 1}) == {"value": 6}
    assert await served.ok("GET", "/v1/registers/n") == {"value": 6}
    assert await served.ok("GET", "/v1/counters/n") == {"value": 6}
    await served.ok("POST", "/v1/counters/c", {"delta": 2})
    assert await served.ok("GET", "/v1/registers/c") == {"value": 2}
    # A numeric string counts as a number (Redis: SET k "10"; INCR k gives 11).
    await served.ok("PUT", "/v1/registers/t", {"value": "10"})
    assert await served.ok("POST", "/v1/counters/t", {"delta": 1}) == {"value": 11}


async def test_a_counter_increment_of_a_non_integer_string_is_409_and_changes_nothing(
    served: Served,
) -> None:
    for value in ({"name": "ada"}, "abc", 2.5, [1], None, True):
        await served.ok("PUT", "/v1/registers/r", {"value": value})
        reply = await served.request("POST", "/v1/counters/r", {"delta": 1})
        assert (reply.status, reply.code) == (409, "wrong_type"), value
        assert (await served.request("GET", "/v1/counters/r")).code == "wrong_type"
        assert await served.ok("GET", "/v1/registers/r") == {"value": value}


async def test_one_keyspace_a_key_has_one_type(served: Served) -> None:
    await served.ok("POST", "/v1/counters/same", {"delta": 1})
    for method, path, body in (
        ("GET", "/v1/sets/same", None),
        ("POST", "/v1/sets/same/add", {"members": ["a"]}),
        ("POST", "/v1/sets/same/remove", {"members": ["a"]}),
        ("GET", "/v1/hlls/same", None),
        ("POST", "/v1/hlls/same/add", {"items": ["a"]}),
        ("DELETE", "/v1/sets/same", None),
    ):
        reply = await served.request(method, path, body)
        assert (reply.status, reply.code) == (409, "wrong_type"), (method, path)
    assert await served.ok("GET", "/v1/counters/same") == {"value": 1}
    await served.ok("DELETE", "/v1/registers/same")
    assert await served.ok("POST", "/v1/sets/same/add", {"members": ["a"]}) == {"added": 1}
    assert (await served.request("GET", "/v1/registers/same")).code == "wrong_type"


# -- sets ------------------------------------------------------------------------------------


async def test_set_add_remove_members_contains_delete(served: Served) -> None:
    add = await served.ok("POST", "/v1/sets/tags/add", {"members": ["b", "a", "b"]})
    assert add == {"added": 2}
    assert await served.ok("POST", "/v1/sets/tags/add", {"members": ["a", "c"]}) == {"added": 1}
    assert await served.ok("GET", "/v1/sets/tags") == {"members": ["a", "b", "c"], "size": 3}
    assert await served.ok("GET", "/v1/sets/tags/members/a") == {"present": True}
    assert await served.ok("GET", "/v1/sets/tags/members/zz") == {"present": False}
    removed = await served.ok("POST", "/v1/sets/tags/remove", {"members": ["a", "nope"]})
    assert removed == {"removed": 1}
    assert await served.ok("GET", "/v1/sets/tags") == {"members": ["b", "c"], "size": 2}
    assert await served.ok("DELETE", "/v1/sets/tags") == {"ok": True}
    assert (await served.request("GET", "/v1/sets/tags")).code == "not_found"
    assert (await served.request("GET", "/v1/sets/tags/members/b")).code == "not_found"


async def test_set_emptied_by_removes_reads_absent(served: Served) -> None:
    await served.ok("POST", "/v1/sets/s/add", {"members": ["x"]})
    await served.ok("POST", "/v1/sets/s/remove", {"members": ["x"]})
    assert (await served.request("GET", "/v1/sets/s")).status == 404
    assert await served.ok("POST", "/v1/sets/never/remove", {"members": ["x"]}) == {"removed": 0}


async def test_set_member_with_slash_in_path(served: Served) -> None:
    await served.ok("POST", f"/v1/sets/{k('a/b')}/add", {"members": ["x/y", ""]})
    assert await served.ok("GET", f"/v1/sets/{k('a/b')}/members/{k('x/y')}") == {"present": True}
    assert await served.ok("GET", f"/v1/sets/{k('a/b')}/members/") == {"present": True}


# -- hlls -----------------------------------------------------------------------------------


def hll_count(body: Any) -> int:
    """An HLL response's count; its exact shape checked on the way."""
    assert isinstance(body, dict) and set(body) == {"count"} and isinstance(body["count"], int)
    return body["count"]


def near(estimate: int, true: int) -> bool:
    """HLL p=14: 0.81% standard error; small counts are near exact (linear counting)."""
    return abs(estimate - true) <= max(1, 0.02 * true)


async def test_hll_add_count_merge_union_delete(served: Served) -> None:
    add = await served.ok("POST", "/v1/hlls/v1/add", {"items": [f"u{i}" for i in range(100)]})
    assert add == {"changed": True}
    assert await served.ok("POST", "/v1/hlls/v1/add", {"items": ["u1", "u2"]}) == {"changed": False}
    assert near(hll_count(await served.ok("GET", "/v1/hlls/v1")), 100)
    await served.ok("POST", "/v1/hlls/v2/add", {"items": [f"u{i}" for i in range(50, 150)]})
    assert near(hll_count(await served.ok("GET", "/v1/hlls/v1?union=v2")), 150)
    assert near(hll_count(await served.ok("GET", "/v1/hlls/v1")), 100)  # union count: a read
    merged = await served.ok("POST", "/v1/hlls/v1/merge", {"sources": ["v2", "nope"]})
    assert near(hll_count(merged), 150)
    assert await served.ok("GET", "/v1/hlls/v1") == merged
    assert await served.ok("DELETE", "/v1/hlls/v1") == {"ok": True}
    assert (await served.request("GET", "/v1/hlls/v1")).code == "not_found"
    assert near(hll_count(await served.ok("GET", "/v1/hlls/v2")), 100)


async def test_hll_merge_into_new_key(served: Served) -> None:
    await served.ok("POST", "/v1/hlls/src/add", {"items": ["a", "b", "c"]})
    assert await served.ok("POST", "/v1/hlls/dst/merge", {"sources": ["src"]}) == {"count": 3}
    assert await served.ok("GET", "/v1/hlls/dst") == {"count": 3}


# -- batch ------------------------------------------------------------------------------------

BATCH_OPS: list[Any] = [
    {"op": "counters.incr", "key": "c", "delta": 1},
    {"op": "registers.set", "key": "r", "value": {"v": 1}},
    {"op": "counters.incr", "key": "c", "delta": "one"},  # fails: bad argument
    {"op": "registers.get", "key": "missing"},  # fails: not found
    {"op": "sets.add", "key": "s", "members": ["a"]},
    {"op": "hlls.add", "key": "h", "items": ["x"]},
    {"op": "registers.get", "key": "r"},
    {"op": "counters.decr", "key": "c", "delta": 3},
    {"op": "sets.contains", "key": "s", "member": "a"},
    {"op": "hlls.count", "key": "h"},
    {"op": "nope", "key": "k"},  # fails: unknown op
    "not an object",  # fails
    {"op": "sets.add", "key": "r", "members": ["a"]},  # fails: r holds a string
]


def check_batch_results(results: list[Any]) -> None:
    assert results[0] == {"value": 1}
    assert results[1] == {"ok": True}
    assert (
        results[2]["error"]["code"] == "bad_request" and "delta" in results[2]["error"]["message"]
    )
    assert results[3]["error"]["code"] == "not_found"
    assert results[4:10] == [
        {"added": 1},
        {"changed": True},
        {"value": {"v": 1}},
        {"value": -2},
        {"present": True},
        {"count": 1},
    ]
    assert results[10]["error"]["code"] == "bad_request"
    assert results[11]["error"]["code"] == "bad_request"
    assert results[12]["error"]["code"] == "wrong_type"
    assert len(results) == len(BATCH_OPS)


async def test_batch_json_applies_the_good_ops_around_a_failing_one(served: Served) -> None:
    reply = await served.request("POST", "/v1/batch", {"ops": BATCH_OPS})
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    check_batch_results(reply.body["results"])
    assert await served.ok("GET", "/v1/counters/c") == {"value": -2}


async def test_batch_msgpack_in_and_out(served: Served) -> None:
    data = msgpack.packb({"ops": BATCH_OPS}, use_bin_type=True)
    headers = {"Content-Type": "application/msgpack"}
    reply = await served.request("POST", "/v1/batch", data=data, headers=headers)
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/msgpack"
    check_batch_results(msgpack.unpackb(reply.raw, raw=False)["results"])


async def test_batch_answers_per_accept_header(served: Served) -> None:
    ops = {"ops": [{"op": "counters.incr", "key": "a", "delta": 2}]}
    data = msgpack.packb(ops)
    reply = await served.request(
        "POST",
        "/v1/batch",
        data=data,
        headers={"Content-Type": "application/msgpack", "Accept": "application/json"},
    )
    assert reply.status == 200 and reply.body == {"results": [{"value": 2}]}
    reply = await served.request(
        "POST", "/v1/batch", ops, headers={"Accept": "application/msgpack"}
    )
    assert msgpack.unpackb(reply.raw) == {"results": [{"value": 4}]}


async def test_batch_group_commits_once(served: Served) -> None:
    before = served.node.batches_written
    ops = [{"op": "counters.incr", "key": f"c{i}", "delta": 1} for i in range(50)]
    await served.ok("POST", "/v1/batch", {"ops": ops})
    assert served.node.batches_written - before == 1
    assert served.node.durable_pos == served.node.replica.log_pos


async def test_empty_batch(served: Served) -> None:
    assert await served.ok("POST", "/v1/batch", {"ops": []}) == {"results": []}


# -- operations endpoints ------------------------------------------------------------------


async def test_healthz(served: Served) -> None:
    reply = await served.request("GET", "/healthz")
    assert reply.status == 200 and reply.body == {"status": "ok"}


async def test_status_reports_keys_and_applied_vector(served: Served) -> None:
    assert await served.ok("GET", "/v1/status") == {
        "replica_id": "r1",
        "release": crdtkv.__version__,
        "keys": 0,
        "applied": {},
        "peers": {},
        "cluster": {"enabled": False},
    }
    await served.ok("POST", "/v1/counters/a", {"delta": 1})
    await served.ok("PUT", "/v1/registers/b", {"value": 1, "ttl_ms": 10})
    await served.ok("POST", "/v1/sets/c/add", {"members": ["x"]})
    status = await served.ok("GET", "/v1/status")
    assert status["keys"] == 3 and status["applied"] == {served.node.replica.actor: 3}
    served.clock.advance(10)
    assert (await served.ok("GET", "/v1/status"))["keys"] == 2


async def test_status_peers_come_from_the_provider(make_served: ServedFactory) -> None:
    peers = {"r2": {"url": "http://r2:7001", "acked": 4, "lag_ops": 2, "reachable": True}}
    served = await make_served(peers_status=lambda: peers)
    assert (await served.ok("GET", "/v1/status"))["peers"] == peers
    text = (await served.request("GET", "/metrics")).raw.decode()
    assert 'crdtkv_replication_lag_ops{peer="r2"} 2.0' in text
    assert 'crdtkv_peer_reachable{peer="r2"} 1.0' in text


async def test_metrics_count_requests_errors_keys_and_commits(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/a", {"value": 1})
    await served.request("GET", "/v1/registers/zz")
    await served.request("GET", "/nowhere")
    reply = await served.request("GET", "/metrics")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("text/plain")
    text = reply.raw.decode()
    for line in (
        'crdtkv_http_requests_total{method="PUT",route="/v1/registers/{key}",status="200"} 1.0',
        'crdtkv_http_requests_total{method="GET",route="/v1/registers/{key}",status="404"} 1.0',
        'crdtkv_http_requests_total{method="GET",route="unmatched",status="404"} 1.0',
        'crdtkv_http_errors_total{code="not_found"} 2.0',
        "crdtkv_keys 1.0",
        "crdtkv_group_commit_entries_total 1.0",
    ):
        assert line in text, line
    assert 'crdtkv_http_request_duration_seconds_count{route="/v1/registers/{key}"} 2.0' in text
    assert "crdtkv_delta_log_entries" in text and "crdtkv_group_commit_batches_total" in text


async def test_two_apps_in_one_process_have_separate_metrics(make_served: ServedFactory) -> None:
    a = await make_served(name="a")
    b = await make_served(name="b", replica_id="r2")
    await a.ok("POST", "/v1/counters/x", {"delta": 1})
    text_b = (await b.request("GET", "/metrics")).raw.decode()
    assert "crdtkv_keys 0.0" in text_b and 'route="/v1/counters/{key}"' not in text_b


# -- sessions ----------------------------------------------------------------------------------


async def test_every_response_carries_a_token_covering_the_write(served: Served) -> None:
    reply = await served.request("POST", "/v1/counters/a", {"delta": 1})
    token = reply.token()
    assert token.vv == {served.node.replica.actor: 1}
    assert token.hlc == (served.node.replica.hlc.wall_ms, served.node.replica.hlc.logical)
    for path in ("/v1/counters/a", "/v1/registers/none", "/nowhere", "/healthz", "/metrics"):
        other = await served.request("GET", path)
        assert vv_dominates(other.token().vv, token.vv), path


async def test_request_token_is_merged_into_the_response(served: Served) -> None:
    # A token naming another replica's writes that this one has also applied.
    await apply_remote(served, "r9~x", 1)
    signer = TokenSigner(SECRET)
    sent = SessionToken({"r9~x": 1}, (served.clock.now_ms - 5, 3))
    reply = await served.request(
        "POST", "/v1/counters/a", {"delta": 1}, headers={SESSION_HEADER: signer.encode(sent)}
    )
    assert reply.status == 200
    assert reply.token().vv == {"r9~x": 1, served.node.replica.actor: 1}


async def apply_remote(served: Served, actor: str, seq: int) -> None:
    """What the replication layer does: apply a remote group, then notify waiters."""
    replica = served.node.replica
    for s in range(1, seq + 1):
        replica.apply_remote(DeltaGroup((actor, s), {}), "peer", served.clock())
    served.node.notify_applied()


async def test_session_wait_is_released_when_replication_catches_up(served: Served) -> None:
    token = TokenSigner(SECRET).encode(SessionToken({"r9~x": 2}))
    request = asyncio.ensure_future(
        served.request(
            "GET", "/v1/registers/a", headers={SESSION_HEADER: token, WAIT_HEADER: "5000"}
        )
    )
    await asyncio.sleep(0.05)
    assert not request.done()
    await apply_remote(served, "r9~x", 2)
    reply = await asyncio.wait_for(request, 2)
    assert reply.status == 404  # served (the key is absent), not 503
    assert reply.token().vv["r9~x"] == 2


async def test_session_token_already_covered_needs_no_wait(served: Served) -> None:
    first = await served.request("PUT", "/v1/registers/a", {"value": 1})
    token = first.headers[SESSION_HEADER]
    reply = await served.request(
        "GET", "/v1/registers/a", headers={SESSION_HEADER: token, WAIT_HEADER: "0"}
    )
    assert reply.status == 200 and reply.body == {"value": 1}


async def test_restart_keeps_the_data(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/a", {"value": [1, 2]})
    await served.ok("POST", "/v1/counters/c", {"delta": 5})
    await served.ok("POST", "/v1/sets/s/add", {"members": ["m"]})
    await served.ok("POST", "/v1/hlls/h/add", {"items": ["i", "j"]})
    applied = (await served.ok("GET", "/v1/status"))["applied"]
    await served.restart()
    assert await served.ok("GET", "/v1/registers/a") == {"value": [1, 2]}
    assert await served.ok("GET", "/v1/counters/c") == {"value": 5}
    assert await served.ok("GET", "/v1/sets/s") == {"members": ["m"], "size": 1}
    assert await served.ok("GET", "/v1/hlls/h") == {"count": 2}
    assert (await served.ok("GET", "/v1/status"))["applied"] == applied

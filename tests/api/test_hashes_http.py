"""Hashes over HTTP: the /v1/hashes routes and /v1/batch, against a real replica."""

from __future__ import annotations

from tests.api.conftest import Served


async def test_hash_routes_round_trip(served: Served) -> None:
    ok = served.ok
    assert await ok("PUT", "/v1/hashes/h", {"fields": {"name": "ada", "n": 1}}) == {"added": 2}
    assert await ok("POST", "/v1/hashes/h/setnx", {"fields": {"name": "x", "pi": 3.5}}) == {
        "added": 1
    }
    assert await ok("GET", "/v1/hashes/h") == {
        "fields": {"n": 1, "name": "ada", "pi": 3.5},
        "size": 3,
    }
    assert await ok("GET", "/v1/hashes/h/fields/name") == {"value": "ada"}
    assert await ok("GET", "/v1/hashes/h/fields/none") == {"value": None}
    assert await ok("POST", "/v1/hashes/h/mget", {"names": ["n", "zz"]}) == {"values": [1, None]}
    assert await ok("GET", "/v1/hashes/h/len") == {"size": 3}
    assert await ok("GET", "/v1/hashes/h/fields/n/exists") == {"present": True}
    assert await ok("GET", "/v1/hashes/h/keys") == {"fields": ["n", "name", "pi"]}
    assert await ok("GET", "/v1/hashes/h/vals") == {"values": [1, "ada", 3.5]}
    assert await ok("GET", "/v1/hashes/h/fields/name/strlen") == {"length": 3}
    assert await ok("POST", "/v1/hashes/h/incr", {"field": "n", "delta": 41}) == {"value": 42}
    assert await ok("POST", "/v1/hashes/h/incrfloat", {"field": "pi", "increment": 0.5}) == {
        "value": 4.0
    }
    assert await ok("POST", "/v1/hashes/h/scan", {"count": 2}) == {
        "fields": {"n": 42, "name": "ada"},
        "cursor": "name",
    }
    assert await ok("POST", "/v1/hashes/h/scan", {"cursor": "name"}) == {
        "fields": {"pi": 4.0},
        "cursor": "",
    }
    assert await ok("POST", "/v1/hashes/h/scan", {"match": "n*"}) == {
        "fields": {"n": 42, "name": "ada"},
        "cursor": "",
    }
    assert await ok("DELETE", "/v1/hashes/h/fields/pi") == {"removed": 1}
    assert await ok("POST", "/v1/hashes/h/remove", {"names": ["n", "gone"]}) == {"removed": 1}
    assert await ok("DELETE", "/v1/hashes/h") == {"ok": True}
    assert (await served.request("GET", "/v1/hashes/h")).status == 404


async def test_field_names_are_percent_decoded_path_segments(served: Served) -> None:
    await served.ok("PUT", "/v1/hashes/a%2Fb", {"fields": {"x/y z": "v"}})
    assert await served.ok("GET", "/v1/hashes/a%2Fb/fields/x%2Fy%20z") == {"value": "v"}
    reply = await served.request("GET", "/v1/hashes/a%2Fb/fields/")
    assert reply.status == 400 and reply.code == "bad_request"


async def test_errors_over_http(served: Served) -> None:
    await served.ok("PUT", "/v1/hashes/h", {"fields": {"t": "abc"}})
    reply = await served.request("POST", "/v1/hashes/h/incr", {"field": "t", "delta": 1})
    assert reply.status == 400 and reply.code == "bad_request"
    assert reply.body["error"]["message"] == "hash value is not an integer"
    for path in ("/v1/hashes/absent", "/v1/hashes/absent/len", "/v1/hashes/absent/fields/f"):
        reply = await served.request("GET", path)
        assert (reply.status, reply.code) == (404, "not_found"), path
    await served.ok("PUT", "/v1/registers/s", {"value": 1})
    for method, path, body in [
        ("PUT", "/v1/hashes/s", {"fields": {"a": 1}}),
        ("GET", "/v1/hashes/s", None),
        ("DELETE", "/v1/hashes/s", None),
    ]:
        reply = await served.request(method, path, body)
        assert (reply.status, reply.code) == (409, "wrong_type"), (method, path)
    for body in ({"fields": {}}, {"fields": {"a": None}}, {"fields": {"a": 1}, "ttl_ms": 5}):
        reply = await served.request("PUT", "/v1/hashes/h", body)
        assert (reply.status, reply.code) == (400, "bad_request"), body
    assert await served.ok("GET", "/v1/hashes/h") == {"fields": {"t": "abc"}, "size": 1}


async def test_every_hash_op_in_a_batch(served: Served) -> None:
    ops = [
        {"op": "hashes.set", "key": "b", "fields": {"a": 1, "b": "x"}},
        {"op": "hashes.setnx", "key": "b", "fields": {"a": 9, "c": 2.5}},
        {"op": "hashes.get", "key": "b", "field": "a"},
        {"op": "hashes.mget", "key": "b", "names": ["a", "q"]},
        {"op": "hashes.getall", "key": "b"},
        {"op": "hashes.len", "key": "b"},
        {"op": "hashes.exists", "key": "b", "field": "c"},
        {"op": "hashes.keys", "key": "b"},
        {"op": "hashes.vals", "key": "b"},
        {"op": "hashes.strlen", "key": "b", "field": "b"},
        {"op": "hashes.incr", "key": "b", "field": "a", "delta": 2},
        {"op": "hashes.incrfloat", "key": "b", "field": "c", "increment": 1.0},
        {"op": "hashes.scan", "key": "b", "count": 1},
        {"op": "hashes.incr", "key": "b", "field": "b", "delta": 1},
        {"op": "hashes.remove", "key": "b", "names": ["b"]},
        {"op": "hashes.removefield", "key": "b", "field": "c"},
        {"op": "hashes.delete", "key": "b"},
        {"op": "hashes.len", "key": "b"},
    ]
    results = (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"]
    assert results[:13] == [
        {"added": 2},
        {"added": 1},
        {"value": 1},
        {"values": [1, None]},
        {"fields": {"a": 1, "b": "x", "c": 2.5}, "size": 3},
        {"size": 3},
        {"present": True},
        {"fields": ["a", "b", "c"]},
        {"values": [1, "x", 2.5]},
        {"length": 1},
        {"value": 3},
        {"value": 3.5},
        {"fields": {"a": 3}, "cursor": "a"},
    ]
    assert results[13]["error"]["code"] == "bad_request"
    assert results[14:17] == [{"removed": 1}, {"removed": 1}, {"ok": True}]
    assert results[17]["error"]["code"] == "not_found"


async def test_a_hash_survives_a_restart(served: Served) -> None:
    await served.ok("PUT", "/v1/hashes/p", {"fields": {f"f{i}": i for i in range(50)}})
    await served.ok("POST", "/v1/hashes/p/incr", {"field": "f1", "delta": 10})
    await served.restart()
    assert await served.ok("GET", "/v1/hashes/p/fields/f1") == {"value": 11}
    assert await served.ok("POST", "/v1/hashes/p/scan", {"cursor": "f47"}) == {
        "fields": {"f48": 48, "f49": 49, "f5": 5, "f6": 6, "f7": 7, "f8": 8, "f9": 9},
        "cursor": "",
    }

"""The key-level endpoints over HTTP: /v1/keys/{key}, its /ttl, /type, /exists, and SCAN."""

from __future__ import annotations

from tests.api.conftest import Served


async def test_key_endpoints_work_on_any_type(served: Served) -> None:
    await served.ok("PUT", "/v1/registers/a%2Fb", {"value": 1})
    await served.ok("POST", "/v1/sets/s/add", {"members": ["m"]})
    await served.ok("POST", "/v1/hlls/h/add", {"items": ["i"]})
    for key, type_ in (("a%2Fb", "string"), ("s", "set"), ("h", "hll")):
        assert await served.ok("GET", f"/v1/keys/{key}") == {"type": type_, "ttl_ms": -1}
        assert await served.ok("GET", f"/v1/keys/{key}/type") == {"type": type_}
        assert await served.ok("GET", f"/v1/keys/{key}/exists") == {"exists": True}
        assert await served.ok("DELETE", f"/v1/keys/{key}") == {"deleted": True}
        assert await served.ok("DELETE", f"/v1/keys/{key}") == {"deleted": False}
        absent = await served.request("GET", f"/v1/keys/{key}")
        assert absent.status == 404 and absent.code == "not_found"
        assert await served.ok("GET", f"/v1/keys/{key}/type") == {"type": "none"}
        assert await served.ok("GET", f"/v1/keys/{key}/exists") == {"exists": False}
        assert await served.ok("GET", f"/v1/keys/{key}/ttl") == {"ttl_ms": -2}


async def test_ttl_endpoints(served: Served) -> None:
    assert await served.ok("PUT", "/v1/keys/k/ttl", {"ttl_ms": 1000}) == {"changed": False}
    assert await served.ok("DELETE", "/v1/keys/k/ttl") == {"changed": False}
    await served.ok("POST", "/v1/sets/k/add", {"members": ["m"]})
    assert await served.ok("PUT", "/v1/keys/k/ttl", {"ttl_ms": 1000}) == {"changed": True}
    served.clock.advance(400)
    assert await served.ok("GET", "/v1/keys/k/ttl") == {"ttl_ms": 600}
    assert await served.ok("GET", "/v1/keys/k") == {"type": "set", "ttl_ms": 600}
    assert await served.ok("DELETE", "/v1/keys/k/ttl") == {"changed": True}
    assert await served.ok("GET", "/v1/keys/k/ttl") == {"ttl_ms": -1}
    assert await served.ok("PUT", "/v1/keys/k/ttl", {"ttl_ms": 100}) == {"changed": True}
    served.clock.advance(100)
    assert await served.ok("GET", "/v1/keys/k/exists") == {"exists": False}
    assert (await served.request("GET", "/v1/sets/k")).status == 404
    for bad in ({"ttl_ms": 0}, {"ttl_ms": "5"}, {}, {"ttl_ms": 5, "ttl": 5}):
        refused = await served.request("PUT", "/v1/keys/k/ttl", bad)
        assert refused.status == 400 and refused.code == "bad_request", bad


async def test_scan_over_http(served: Served) -> None:
    names = [f"user:{i:02}" for i in range(25)]
    for n in names:
        await served.ok("PUT", f"/v1/registers/{n}", {"value": 1})
    await served.ok("POST", "/v1/sets/tags/add", {"members": ["a"]})
    seen: list[str] = []
    cursor = ""
    while True:
        page = await served.ok("GET", f"/v1/keys?cursor={cursor}&count=4&match=user%3A*")
        assert set(page) == {"keys", "cursor"}
        seen += page["keys"]
        cursor = page["cursor"]
        if not cursor:
            break
    assert seen == names
    assert await served.ok("GET", "/v1/keys?type=set") == {"keys": ["tags"], "cursor": ""}
    everything = await served.ok("GET", "/v1/keys")
    assert everything == {"keys": ["tags", *names], "cursor": ""}
    for query, field in (
        ("count=0", "count"),
        ("count=x", "count"),
        ("count=10001", "count"),
        ("type=stream", "type"),
        ("match=" + "x" * 4097, "match"),
    ):
        refused = await served.request("GET", f"/v1/keys?{query}")
        assert refused.status == 400 and f"'{field}'" in refused.body["error"]["message"], query


async def test_key_ops_in_a_batch(served: Served) -> None:
    ops = [
        {"op": "registers.set", "key": "k", "value": 1},
        {"op": "keys.expire", "key": "k", "ttl_ms": 5000},
        {"op": "keys.ttl", "key": "k"},
        {"op": "keys.type", "key": "k"},
        {"op": "keys.scan", "count": 10, "type": "string"},
        {"op": "keys.scan", "key": "k"},
        {"op": "keys.persist", "key": "k"},
        {"op": "keys.delete", "key": "k"},
        {"op": "keys.exists", "key": "k"},
    ]
    results = (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"]
    assert results[:5] == [
        {"ok": True},
        {"changed": True},
        {"ttl_ms": 5000},
        {"type": "string"},
        {"keys": ["k"], "cursor": ""},
    ]
    assert results[5]["error"]["code"] == "bad_request"  # scan takes no key
    assert results[6:] == [{"changed": True}, {"deleted": True}, {"exists": False}]

"""Sorted sets over HTTP: the routes, the batch, and the client's calls sent to a replica."""

from __future__ import annotations

import math
from typing import Any

from crdtkv.client.model import Call, result_of
from crdtkv.client.namespaces import Zsets
from tests.api.conftest import Served


class Recorder:
    def call(self, call: Call) -> Call:
        return call


async def send(served: Served, call: Call) -> Any:
    """What the client would return for ``call``, answered by the served replica."""
    reply = await served.request(call.method, call.path, call.body)
    return result_of(call, reply.status, reply.body)


async def test_routes_answer_redis_semantics(served: Served) -> None:
    add = await served.ok("POST", "/v1/zsets/lb/add", {"scores": {"a": 1, "b": 2.5, "c": "-inf"}})
    assert add == {"added": 3, "score": None}
    incr = await served.ok("POST", "/v1/zsets/lb/incr", {"member": "a", "increment": 2})
    assert incr == {"score": 3.0}
    assert await served.ok("GET", "/v1/zsets/lb") == {
        "items": [["c", "-inf"], ["b", 2.5], ["a", 3.0]],
        "size": 3,
    }
    member = await served.ok("GET", "/v1/zsets/lb/members/a")
    assert member == {"score": 3.0, "rank": 2, "rev_rank": 0}
    assert await served.ok("GET", "/v1/zsets/lb/card") == {"size": 3}
    by_rank = await served.ok("POST", "/v1/zsets/lb/range", {"start": 0, "stop": -1, "rev": True})
    assert by_rank == {"items": ["a", "b", "c"]}
    by_score = {"min": "(-inf", "max": "+inf", "withscores": True}
    assert await served.ok("POST", "/v1/zsets/lb/rangebyscore", by_score) == {
        "items": [["b", 2.5], ["a", 3.0]]
    }
    assert await served.ok("POST", "/v1/zsets/lb/count", {"min": 2.5, "max": 3}) == {"count": 2}
    popped = await served.ok("POST", "/v1/zsets/lb/popmax", {"count": 1})
    assert popped == {"items": [["a", 3.0]]}
    assert await served.ok("DELETE", "/v1/zsets/lb") == {"ok": True}
    assert (await served.request("GET", "/v1/zsets/lb/card")).status == 404


async def test_errors_over_http(served: Served) -> None:
    both = await served.request(
        "POST", "/v1/zsets/e/add", {"scores": {"a": 1}, "nx": True, "xx": True}
    )
    assert both.status == 400
    assert "XX and NX options at the same time are not compatible" in both.body["error"]["message"]
    await served.ok("PUT", "/v1/registers/str", {"value": "x"})
    wrong = await served.request("POST", "/v1/zsets/str/add", {"scores": {"a": 1}})
    assert (wrong.status, wrong.code) == (409, "wrong_type")
    bogus = await served.request("POST", "/v1/zsets/e/range", {"start": 0, "stop": 1, "by": 1})
    assert bogus.status == 400 and "'by'" in bogus.body["error"]["message"]


async def test_every_op_in_a_batch(served: Served) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "zsets.add", "key": "b", "scores": {"x": 1, "y": 1, "z": 1}},
        {"op": "zsets.rangebylex", "key": "b", "lex_min": "[y", "lex_max": "+"},
        {"op": "zsets.lexcount", "key": "b", "lex_min": "-", "lex_max": "(z"},
        {"op": "zsets.add", "key": "b", "scores": {"x": 5}, "incr": True},
        {"op": "zsets.scores", "key": "b", "members": ["x", "q"]},
        {"op": "zsets.scan", "key": "b", "count": 2},
        {"op": "zsets.remove", "key": "b", "members": ["y"]},
        {"op": "zsets.popmin", "key": "b"},
        {"op": "zsets.add", "key": "b", "scores": {"x": 1}, "nx": True, "xx": True},
    ]
    results = (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"]
    assert results[:8] == [
        {"added": 3, "score": None},
        {"items": ["y", "z"]},
        {"count": 2},
        {"added": 0, "score": 6.0},
        {"scores": [6.0, None]},
        {"cursor": ">y", "items": [["x", 6.0], ["y", 1.0]]},  # member order
        {"removed": 1},
        {"items": [["z", 1.0]]},
    ]
    assert results[8]["error"]["code"] == "bad_request"


async def test_the_client_methods_against_a_replica(served: Served) -> None:
    db = Zsets(Recorder())
    add = db.add("c", {"a": 1.5, "top": math.inf, "low": -math.inf}, nx=True)
    assert add.body == {"scores": {"a": 1.5, "top": "+inf", "low": "-inf"}, "nx": True}
    assert await send(served, add) == 3
    assert await send(served, db.incr("c", 2, "a")) == 3.5
    assert await send(served, db.score("c", "a")) == 3.5
    assert await send(served, db.score("c", "nope")) is None
    assert await send(served, db.score("absent", "a")) is None
    assert await send(served, db.rank("c", "a")) == 1
    assert await send(served, db.revrank("c", "a")) == 1
    assert await send(served, db.card("c")) == 3
    assert await send(served, db.card("absent")) == 0
    assert await send(served, db.range("c", 0, -1)) == ["low", "a", "top"]
    assert await send(served, db.range_by_score("c", "(-inf", 4, withscores=True)) == [["a", 3.5]]
    assert await send(served, db.count("c", -math.inf, math.inf)) == 3
    assert await send(served, db.mscore("c", "a", "x")) == [3.5, None]
    assert await send(served, db.popmin("c", 2)) == [["low", "-inf"], ["a", 3.5]]
    assert await send(served, db.remove("c", "top")) == 1
    assert await send(served, db.items("c")) == []

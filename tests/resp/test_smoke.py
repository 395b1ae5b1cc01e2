"""The RESP port of a real replica answers redis-py, and its answers match Redis's."""

from __future__ import annotations

import redis

from tests.procs import Server


def test_strings_round_trip(ours: redis.Redis) -> None:
    assert ours.ping() is True
    assert ours.set("smoke:k", "v") is True
    assert ours.get("smoke:k") == "v"
    assert ours.set("smoke:n", 5) is True
    assert ours.incr("smoke:n") == 6
    assert ours.get("smoke:n") == "6"
    assert ours.get("smoke:absent") is None


def test_resp3_hello(crdtkv_server: Server) -> None:
    client = redis.Redis(port=crdtkv_server.resp_port, protocol=3, decode_responses=True)
    try:
        assert client.ping() is True
        assert client.set("smoke:r3", "x") is True
        assert client.get("smoke:r3") == "x"
    finally:
        client.close()


def test_same_answers_as_redis(ours: redis.Redis, theirs: redis.Redis) -> None:
    for client in (ours, theirs):
        client.delete("p:a", "p:b")
    calls = [
        ("set", ("p:a", "1")),
        ("incrby", ("p:a", 41)),
        ("get", ("p:a",)),
        ("set", ("p:b", "x", None, None, True)),  # NX
        ("set", ("p:b", "y", None, None, True)),
        ("get", ("p:b",)),
        ("append", ("p:b", "zz")),
        ("strlen", ("p:b",)),
        ("mget", (["p:a", "p:b", "p:c"],)),
        ("getdel", ("p:b",)),
        ("exists", ("p:b",)),
    ]
    for name, args in calls:
        got = [_call(c, name, args) for c in (ours, theirs)]
        assert got[0] == got[1], (name, args, got)
    for client in (ours, theirs):
        try:
            client.incr("p:a", 2**63 - 1)
        except redis.ResponseError as e:
            assert "overflow" in str(e)
        else:
            raise AssertionError("no overflow error")


def _call(client: redis.Redis, name: str, args: tuple[object, ...]) -> object:
    try:
        return getattr(client, name)(*args)
    except redis.ResponseError as e:
        return ("error", str(e))

"""The RESP port of a real replica answers redis-py, and its answers match Redis's."""

from __future__ import annotations

import pytest
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


def test_transactions_like_redis(ours: redis.Redis, theirs: redis.Redis) -> None:
    """redis-py's default pipeline is MULTI/EXEC: it works, and its errors are Redis's."""
    for client in (ours, theirs):
        client.delete("t:a")
    got = []
    for client in (ours, theirs):
        with client.pipeline() as pipe:  # transaction=True
            pipe.set("t:a", "1").incr("t:a").get("t:a").incrbyfloat("t:a", 0.5)
            got.append(pipe.execute())
    assert got[0] == got[1] == [True, 2, "2", 2.5]
    for client in (ours, theirs):
        with pytest.raises(redis.ResponseError, match="EXEC without MULTI"):
            client.execute_command("EXEC")
        with pytest.raises(redis.ResponseError, match="DISCARD without MULTI"):
            client.execute_command("DISCARD")
    # A queued command with a wrong arity aborts the transaction; nothing runs.
    answers = []
    for client in (ours, theirs):
        conn = client.connection_pool.get_connection()
        try:
            conn.send_command("MULTI")
            assert conn.read_response() in (b"OK", "OK")
            conn.send_command("SET", "t:a", "changed")
            assert conn.read_response() in (b"QUEUED", "QUEUED")
            conn.send_command("GET")
            with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
                conn.read_response()
            conn.send_command("EXEC")
            with pytest.raises(redis.ResponseError) as e:
                conn.read_response()
            answers.append(str(e.value))
        finally:
            client.connection_pool.release(conn)
        assert client.get("t:a") == "2.5"
    assert answers[0] == answers[1], answers


def test_metrics_count_resp_connections_and_commands(
    crdtkv_server: Server, ours: redis.Redis
) -> None:
    import urllib.request

    def scrape() -> dict[str, float]:
        with urllib.request.urlopen(crdtkv_server.url + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("crdtkv_resp_")
        }

    before = scrape()
    for i in range(20):
        ours.set(f"m:{i}", i)
    with pytest.raises(redis.ResponseError):
        ours.execute_command("NOSUCHCOMMAND")
    after = scrape()
    assert after["crdtkv_resp_commands_total"] >= before["crdtkv_resp_commands_total"] + 21
    assert after["crdtkv_resp_error_replies_total"] > before["crdtkv_resp_error_replies_total"]
    assert after["crdtkv_resp_connections_open"] >= 1


def test_incrbyfloat_answers_a_bulk_string_in_both_protocols(
    crdtkv_server: Server, redis_port: int
) -> None:
    """Redis answers INCRBYFLOAT with a bulk string, never a RESP3 double."""
    for proto in (2, 3):
        replies = []
        for port in (crdtkv_server.resp_port, redis_port):
            client = redis.Redis(port=port, protocol=proto)
            try:
                client.set("f:x", "10.5")
                conn = client.connection_pool.get_connection()
                try:
                    conn.send_command("INCRBYFLOAT", "f:x", "0.25")
                    replies.append(conn.read_response(disable_decoding=True))
                finally:
                    client.connection_pool.release(conn)
            finally:
                client.close()
        assert replies[0] == replies[1] == b"10.75", (proto, replies)


def test_scans_resume_after_the_longest_members(ours: redis.Redis) -> None:
    """Cursors are 64-bit numbers, as clients expect (redis-cli reads them with strtoull):
    one after a long member is kept at the replica and travels as its number there."""
    long = ["é" * 2000 + str(i) for i in range(5)]  # 4,000+ UTF-8 bytes each
    ours.delete("long:s", "long:h", "long:z")
    ours.sadd("long:s", *long)
    ours.hset("long:h", mapping={m: "v" for m in long})
    ours.zadd("long:z", {m: i for i, m in enumerate(long)})
    assert sorted(ours.sscan_iter("long:s", count=1)) == sorted(long)
    assert sorted(f for f, _ in ours.hscan_iter("long:h", count=1)) == sorted(long)
    assert sorted(m for m, _ in ours.zscan_iter("long:z", count=1)) == sorted(long)
    cursor, _ = ours.sscan("long:s", 0, count=1)
    assert 0 < cursor < 2**64
    forged = int.from_bytes(b"\x02" + (2**55).to_bytes(7, "big"), "big")  # never handed out
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        ours.sscan("long:s", forged, count=1)


def test_scard_of_a_large_set_is_its_size(ours: redis.Redis, theirs: redis.Redis) -> None:
    """SCARD answers from the set's size (not a sorted member list), after removes too,
    and as Redis for an absent key and a key of another type."""
    for client in (ours, theirs):
        client.delete("card:s", "card:str")
        for start in range(0, 50_000, 10_000):
            client.sadd("card:s", *(f"m{i}" for i in range(start, start + 10_000)))
        client.srem("card:s", *(f"m{i}" for i in range(0, 50_000, 7)))
        client.set("card:str", "x")
    answers = []
    for client in (ours, theirs):
        got: list[object] = [client.scard("card:s"), client.scard("card:absent")]
        try:
            client.scard("card:str")
        except redis.ResponseError as e:
            got.append(str(e))
        answers.append(got)
    assert answers[0] == answers[1] == [50_000 - len(range(0, 50_000, 7)), 0, answers[1][2]]
    assert str(answers[0][2]).startswith("WRONGTYPE")

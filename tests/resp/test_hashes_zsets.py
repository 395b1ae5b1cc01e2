"""Hash and sorted-set commands over RESP: a real replica and a real redis-server get the
same calls, in RESP2 and in RESP3, and must send the same replies.

Replies are compared as redis-py parses them off the wire with no response callbacks
(so a RESP3 double stays a float, a RESP2 score a string, a map a dict, a flat array a
list): the reply's shape counts, not only its contents.  Where Redis's order is its
encoding's (a small hash lists fields in insertion order, crdtkv by field), the
comparison sorts.  Scores are quarters and infinities, whose text is the same in
Redis 7.0's ``%.17g`` and crdtkv's shortest form.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from crdtkv.resp.hash_zset_args import human_double, score_bound
from crdtkv.resp.hashes_zsets import _decode_cursor, _encode_cursor
from crdtkv.resp.values import RespError
from tests.procs import Server

_ids = itertools.count()


def _raw(port: int, proto: int) -> redis.Redis:
    client = redis.Redis(port=port, protocol=proto, decode_responses=True)
    client.response_callbacks.clear()  # the reply as parsed off the wire
    return client


class Both:
    """A replica's and a redis-server's clients in one protocol, with a key prefix of
    this test's own (the replica is shared by the module's tests)."""

    def __init__(self, ours: redis.Redis, theirs: redis.Redis, proto: int) -> None:
        self.ours, self.theirs, self.proto = ours, theirs, proto
        self.prefix = f"t{next(_ids)}:"

    def key(self, name: str) -> str:
        return self.prefix + name

    def call(self, client: redis.Redis, args: list[Any]) -> Any:
        try:
            return client.execute_command(*args)
        except redis.ResponseError as e:
            return ("error", str(e))

    def both(self, *args: Any, unordered: bool = False) -> Any:
        """Run ``args`` (a ``{k}`` in an argument names this test's key k) on both;
        assert the same reply; return it."""
        argv = [self._expand(a) for a in args]
        got = [self.call(c, argv) for c in (self.ours, self.theirs)]
        if unordered:
            got = [_unordered(g) for g in got]
        assert got[0] == got[1], (self.proto, argv, "ours", got[0], "theirs", got[1])
        return got[1]

    def _expand(self, a: Any) -> Any:
        if isinstance(a, str) and a.startswith("{") and "}" in a:
            name, rest = a[1:].split("}", 1)
            return self.key(name) + rest
        return a


def _unordered(reply: Any) -> Any:
    """A reply whose order is the encoding's: sorted (a flat field/value list as pairs)."""
    if isinstance(reply, dict):
        return sorted(reply.items())
    if isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list):
        return [reply[0], _unordered(reply[1])]  # a scan page
    if isinstance(reply, list):
        return sorted(map(repr, reply))
    return reply


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, crdtkv_server: Server, redis_port: int) -> Iterator[Both]:
    proto: int = request.param
    assert crdtkv_server.resp_port is not None
    ours, theirs = _raw(crdtkv_server.resp_port, proto), _raw(redis_port, proto)
    theirs.execute_command("FLUSHALL")
    yield Both(ours, theirs, proto)
    ours.close()
    theirs.close()


# -- pure parts ---------------------------------------------------------------------------------
def test_cursor_round_trip() -> None:
    assert _encode_cursor("") == "0" and _decode_cursor(b"0") == ""
    for c in ["a", ">a", "field:1", "é🙂", "x" * 4097]:
        enc = _encode_cursor(c)
        assert enc.isdigit() and enc != "0"
        assert _decode_cursor(enc.encode()) == c
    for bad in [b"-1", b"x", b" 1", b"1 ", b"5", b"1" * 50000, b""]:
        with pytest.raises(RespError, match="invalid cursor"):
            _decode_cursor(bad)


def test_human_double_prints_as_hincrbyfloat() -> None:
    cases = {1.5: "1.5", 3.0: "3", -2.25: "-2.25", 1e20: "100000000000000000000",
             1.5e-7: "0.00000015", 10.6: "10.6", 1e-20: "0"}  # fmt: skip
    for x, text in cases.items():
        assert human_double(x) == text, x


def test_score_bounds_read_as_strtod() -> None:
    assert score_bound(b"(1") == "(1.0"
    assert score_bound(b"-inf") == float("-inf")
    assert score_bound(b"(+inf") == "(inf"
    assert score_bound(b"") == 0.0  # strtod of nothing: 0, as Redis
    assert score_bound(b"(") == "(0.0"
    assert score_bound(b" 1") == 1.0  # strtod skips leading space
    for bad in [b"x", b"1x", b"nan", b"(nan", b"1 ", b"((1"]:
        with pytest.raises(RespError, match="min or max is not a float"):
            score_bound(bad)


# -- hashes -------------------------------------------------------------------------------------
def test_hash_commands(pair: Both) -> None:
    b = pair.both
    b("HSET", "{h}", "a", "1", "b", "x", "a", "2")  # a field twice: the later value
    b("HGET", "{h}", "a")
    b("HSETNX", "{h}", "a", "9")
    b("HSETNX", "{h}", "c", "")
    b("HMSET", "{h}", "d", "4", "e", "1e3")
    b("HMGET", "{h}", "a", "zz", "c", "d")
    b("HGETALL", "{h}", unordered=True)
    b("HKEYS", "{h}", unordered=True)
    b("HVALS", "{h}", unordered=True)
    b("HLEN", "{h}")
    b("HEXISTS", "{h}", "a")
    b("HEXISTS", "{h}", "zz")
    b("HSTRLEN", "{h}", "b")
    b("HSTRLEN", "{h}", "c")
    b("HSTRLEN", "{h}", "zz")
    b("HINCRBY", "{h}", "a", "40")
    b("HINCRBY", "{h}", "new", "-7")
    b("HINCRBY", "{h}", "e", "1")  # "1e3" is not an integer
    b("HINCRBY", "{h}", "b", "1")
    b("HINCRBY", "{h}", "a", "1.5")
    b("HINCRBY", "{h}", "a", "9223372036854775807")
    b("HINCRBYFLOAT", "{h}", "e", "0.5")  # "1e3" is a float
    b("HGET", "{h}", "e")
    b("HINCRBYFLOAT", "{h}", "a", "-42")
    b("HGET", "{h}", "a")
    b("HINCRBYFLOAT", "{h}", "f", "2.5")
    b("HINCRBYFLOAT", "{h}", "f", "0.5")
    b("HGET", "{h}", "f")
    b("HSTRLEN", "{h}", "f")
    b("HINCRBY", "{h}", "f", "1")  # 3, left by HINCRBYFLOAT, is an integer
    b("HINCRBYFLOAT", "{h}", "f", "x")
    b("HINCRBYFLOAT", "{h}", "f", "inf")
    b("HINCRBYFLOAT", "{h}", "f", "nan")
    b("HINCRBYFLOAT", "{h}", "b", "1")
    b("HINCRBYFLOAT", "{h}", "g", "1e20")
    b("HGET", "{h}", "g")
    b("HINCRBYFLOAT", "{h}", "g2", "1.5e-7")
    b("HGET", "{h}", "g2")
    b("HSCAN", "{h}", "0", unordered=True)
    b("HSCAN", "{h}", "0", "MATCH", "g*", unordered=True)
    b("HSCAN", "{h}", "0", "COUNT", "100", "MATCH", "*", unordered=True)
    b("HDEL", "{h}", "a", "zz", "a", "b")
    b("HDEL", "{h}", "zz")
    b("HGETALL", "{h}", unordered=True)


def test_hash_commands_on_absent_keys(pair: Both) -> None:
    b = pair.both
    for args in [
        ("HGET", "{no}", "f"),
        ("HMGET", "{no}", "f", "g"),
        ("HGETALL", "{no}"),
        ("HLEN", "{no}"),
        ("HEXISTS", "{no}", "f"),
        ("HKEYS", "{no}"),
        ("HVALS", "{no}"),
        ("HSTRLEN", "{no}", "f"),
        ("HDEL", "{no}", "f"),
        ("HSCAN", "{no}", "0"),
        ("HSCAN", "{no}", "0", "COUNT", "0"),  # an absent key's scan reads no option
        ("HRANDFIELD", "{no}"),
        ("HRANDFIELD", "{no}", "3"),
        ("HRANDFIELD", "{no}", "-3", "WITHVALUES"),
    ]:
        b(*args)


def test_hash_errors(pair: Both) -> None:
    b = pair.both
    b("SET", "{s}", "x")
    b("HSET", "{h}", "f", "v")
    for cmd in [
        ("HSET", "{s}", "f", "v"),
        ("HMSET", "{s}", "f", "v"),
        ("HSETNX", "{s}", "f", "v"),
        ("HGET", "{s}", "f"),
        ("HMGET", "{s}", "f"),
        ("HGETALL", "{s}"),
        ("HLEN", "{s}"),
        ("HEXISTS", "{s}", "f"),
        ("HKEYS", "{s}"),
        ("HVALS", "{s}"),
        ("HSTRLEN", "{s}", "f"),
        ("HDEL", "{s}", "f"),
        ("HINCRBY", "{s}", "f", "1"),
        ("HINCRBYFLOAT", "{s}", "f", "1"),
        ("HSCAN", "{s}", "0"),
        ("HSCAN", "{s}", "0", "COUNT", "0"),
        ("HRANDFIELD", "{s}"),
        ("HRANDFIELD", "{s}", "2"),
        ("ZADD", "{h}", "1", "a"),
        ("ZSCORE", "{h}", "a"),
        # wrong arity
        ("HSET", "{h}", "f"),
        ("HSET", "{h}", "f", "v", "g"),
        ("HMSET", "{h}", "f", "v", "g"),
        ("HSETNX", "{h}", "f"),
        ("HGET", "{h}"),
        ("HGET", "{h}", "f", "g"),
        ("HMGET", "{h}"),
        ("HGETALL",),
        ("HLEN", "{h}", "x"),
        ("HEXISTS", "{h}"),
        ("HKEYS",),
        ("HVALS", "{h}", "x"),
        ("HSTRLEN", "{h}"),
        ("HDEL", "{h}"),
        ("HINCRBY", "{h}", "f"),
        ("HINCRBYFLOAT", "{h}", "f", "1", "2"),
        ("HSCAN", "{h}"),
        ("HRANDFIELD",),
        # bad arguments
        ("HINCRBY", "{h}", "n", "x"),
        ("HINCRBY", "{h}", "n", "1.0"),
        ("HINCRBY", "{h}", "n", "99999999999999999999"),
        ("HINCRBYFLOAT", "{h}", "n", ""),
        ("HINCRBYFLOAT", "{h}", "n", " 1"),
        ("HSCAN", "{h}", "x"),
        ("HSCAN", "{h}", "0", "COUNT"),
        ("HSCAN", "{h}", "0", "COUNT", "0"),
        ("HSCAN", "{h}", "0", "COUNT", "x"),
        ("HSCAN", "{h}", "0", "MATCH"),
        ("HSCAN", "{h}", "0", "BOGUS", "1"),
        ("HRANDFIELD", "{h}", "x"),
        ("HRANDFIELD", "{h}", "1", "VALUES"),
        ("HRANDFIELD", "{h}", "1", "WITHVALUES", "x"),
        ("HRANDFIELD", "{h}", "-9223372036854775808"),
        ("HRANDFIELD", "{h}", "9223372036854775807", "WITHVALUES"),
    ]:
        b(*cmd)
    b("HGETALL", "{h}")  # nothing changed


def test_hrandfield(pair: Both) -> None:
    fields = {f"f{i}": str(i) for i in range(20)}
    for c in (pair.ours, pair.theirs):
        c.execute_command("HSET", pair.key("h"), *itertools.chain(*fields.items()))
    for c in (pair.ours, pair.theirs):
        one = c.execute_command("HRANDFIELD", pair.key("h"))
        assert one in fields
        some = c.execute_command("HRANDFIELD", pair.key("h"), "5")
        assert len(some) == len(set(some)) == 5 and set(some) <= set(fields)
        every = c.execute_command("HRANDFIELD", pair.key("h"), "50")
        assert sorted(every) == sorted(fields)
        many = c.execute_command("HRANDFIELD", pair.key("h"), "-50")
        assert len(many) == 50 and set(many) <= set(fields)
        assert c.execute_command("HRANDFIELD", pair.key("h"), "0") == []
        pairs = c.execute_command("HRANDFIELD", pair.key("h"), "3", "WITHVALUES")
        if pair.proto == 3:
            assert len(pairs) == 3 and all(fields[f] == v for f, v in pairs)
        else:
            assert len(pairs) == 6
            assert all(fields[pairs[i]] == pairs[i + 1] for i in range(0, 6, 2))


# -- sorted sets --------------------------------------------------------------------------------
def test_zset_commands(pair: Both) -> None:
    b = pair.both
    b("ZADD", "{z}", "1", "a", "2.5", "b", "-inf", "c", "+inf", "d", "0x10", "e")
    b("ZADD", "{z}", "1", "a")
    b("ZADD", "{z}", "CH", "2", "a", "3", "x")
    b("ZADD", "{z}", "NX", "5", "a", "4", "y")
    b("ZADD", "{z}", "XX", "5", "a", "4", "zz")
    b("ZADD", "{z}", "XX", "CH", "GT", "1", "a", "9", "b")
    b("ZADD", "{z}", "LT", "CH", "0", "a", "10", "b")
    b("ZADD", "{z}", "GT", "CH", "5", "q", "3", "q", "7", "q")  # one member, three times
    b("ZADD", "{z}", "CH", "1", "w", "2", "w")
    b("ZADD", "{z}", "INCR", "2", "a")
    b("ZADD", "{z}", "INCR", "NX", "2", "a")
    b("ZADD", "{z}", "INCR", "XX", "2", "nope")
    b("ZADD", "{z}", "INCR", "GT", "-1", "a")
    b("ZADD", "{z}", "INCR", "LT", "-1", "a")
    b("ZADD", "{z}", "INCR", "inf", "inc")
    b("ZADD", "{z}", "INCR", "-inf", "inc")  # inf + -inf
    b("ZADD", "{z}", "INCR", "NX", "-inf", "inc")  # NX stops it before the NaN
    b("ZINCRBY", "{z}", "2.25", "a")
    b("ZINCRBY", "{z}", "1", "new")
    b("ZINCRBY", "{z}", "-inf", "new")
    b("ZINCRBY", "{z}", "1", "new")
    b("ZINCRBY", "{z}", "inf", "new")
    b("ZINCRBY", "{z}", "x", "new")
    b("ZRANGE", "{z}", "0", "-1", "WITHSCORES")
    b("ZCARD", "{z}")
    for m in ["a", "c", "d", "missing"]:
        b("ZSCORE", "{z}", m)
        b("ZRANK", "{z}", m)
        b("ZREVRANK", "{z}", m)
    b("ZMSCORE", "{z}", "a", "missing", "d")
    ranges = [("-inf", "+inf"), ("(1", "3"), ("1", "(3"), ("(-inf", "(inf"), ("3", "1"),
              ("2.5", "2.5"), ("(2.5", "2.5"), ("", "5"), (" 1", "5"),
              ("1e400", "inf")]  # fmt: skip
    for lo, hi in ranges:
        b("ZCOUNT", "{z}", lo, hi)
        b("ZRANGEBYSCORE", "{z}", lo, hi)
        b("ZRANGEBYSCORE", "{z}", lo, hi, "WITHSCORES", "LIMIT", "1", "2")
        b("ZREVRANGEBYSCORE", "{z}", hi, lo, "WITHSCORES")
        b("ZRANGE", "{z}", lo, hi, "BYSCORE", "LIMIT", "0", "-5")
        b("ZRANGE", "{z}", hi, lo, "BYSCORE", "REV", "LIMIT", "1", "1", "WITHSCORES")
    for start, stop in [("0", "-1"), ("1", "2"), ("-2", "-1"), ("5", "1"), ("-100", "100")]:
        b("ZRANGE", "{z}", start, stop)
        b("ZRANGE", "{z}", start, stop, "REV", "WITHSCORES")
        b("ZREVRANGE", "{z}", start, stop, "WITHSCORES")
        b("ZRANGE", "{z}", start, stop, "LIMIT", "3", "-1")  # count -1: no LIMIT
    b("ZRANGEBYSCORE", "{z}", "-inf", "inf", "LIMIT", "-1", "2")
    b("ZRANGEBYSCORE", "{z}", "-inf", "inf", "LIMIT", "100", "2")
    b("ZSCAN", "{z}", "0", "COUNT", "100", unordered=True)  # Redis: all of a small one at once
    b("ZSCAN", "{z}", "0", "MATCH", "[ab]", "COUNT", "100", unordered=True)
    b("ZREM", "{z}", "a", "missing", "a", "b")
    b("ZPOPMIN", "{z}")
    b("ZPOPMAX", "{z}")
    b("ZPOPMIN", "{z}", "2")
    b("ZPOPMAX", "{z}", "1")
    b("ZPOPMIN", "{z}", "0")
    b("ZPOPMAX", "{z}", "100")
    b("ZCARD", "{z}")
    b("ZRANGE", "{z}", "0", "-1")


def test_zset_lex_commands(pair: Both) -> None:
    b = pair.both
    b("ZADD", "{l}", "0", "a", "0", "b", "0", "bb", "0", "c", "0", "é", "0", "")
    bounds = ["-", "+", "[a", "(a", "[b", "(bb", "[c", "(zz", "[", "("]
    for lo, hi in itertools.product(bounds, repeat=2):
        b("ZLEXCOUNT", "{l}", lo, hi)
        b("ZRANGEBYLEX", "{l}", lo, hi)
        b("ZREVRANGEBYLEX", "{l}", hi, lo, "LIMIT", "1", "2")
        b("ZRANGE", "{l}", lo, hi, "BYLEX", "LIMIT", "0", "1")
    for lo, hi in [("a", "+"), ("-", "b"), ("", "+"), ("{a", "[b")]:
        b("ZLEXCOUNT", "{l}", lo, hi)
        b("ZRANGEBYLEX", "{l}", lo, hi)
    b("ZRANGE", "{l}", "-", "+", "BYLEX", "WITHSCORES")
    b("ZRANGEBYLEX", "{l}", "-", "+", "WITHSCORES")
    b("ZRANGEBYLEX", "{no}", "-", "+")
    b("ZLEXCOUNT", "{no}", "-", "+")


def test_zset_commands_on_absent_keys(pair: Both) -> None:
    b = pair.both
    for args in [
        ("ZCARD", "{no}"),
        ("ZSCORE", "{no}", "a"),
        ("ZMSCORE", "{no}", "a", "b"),
        ("ZRANK", "{no}", "a"),
        ("ZREVRANK", "{no}", "a"),
        ("ZCOUNT", "{no}", "-inf", "inf"),
        ("ZRANGE", "{no}", "0", "-1", "WITHSCORES"),
        ("ZRANGE", "{no}", "-inf", "inf", "BYSCORE", "LIMIT", "-1", "1"),
        ("ZREVRANGE", "{no}", "0", "-1"),
        ("ZRANGEBYSCORE", "{no}", "-inf", "inf"),
        ("ZREVRANGEBYSCORE", "{no}", "inf", "-inf", "WITHSCORES"),
        ("ZREM", "{no}", "a"),
        ("ZPOPMIN", "{no}"),
        ("ZPOPMAX", "{no}", "3"),
        ("ZPOPMAX", "{no}", "0"),
        ("ZSCAN", "{no}", "0"),
        ("ZADD", "{no}", "XX", "1", "a"),
        ("ZADD", "{no}", "XX", "INCR", "1", "a"),
    ]:
        b(*args)


def test_zset_errors(pair: Both) -> None:
    b = pair.both
    b("SET", "{s}", "x")
    b("ZADD", "{z}", "1", "a", "2", "b")
    for cmd in [
        ("ZADD", "{s}", "1", "a"),
        ("ZADD", "{s}", "XX", "1", "a"),
        ("ZADD", "{s}", "INCR", "inf", "a"),
        ("ZINCRBY", "{s}", "1", "a"),
        ("ZINCRBY", "{s}", "inf", "a"),
        ("ZREM", "{s}", "a"),
        ("ZCARD", "{s}"),
        ("ZSCORE", "{s}", "a"),
        ("ZMSCORE", "{s}", "a"),
        ("ZRANK", "{s}", "a"),
        ("ZREVRANK", "{s}", "a"),
        ("ZCOUNT", "{s}", "0", "1"),
        ("ZLEXCOUNT", "{s}", "-", "+"),
        ("ZRANGE", "{s}", "0", "1"),
        ("ZRANGE", "{s}", "0", "1", "BYSCORE", "LIMIT", "-1", "1"),
        ("ZRANGEBYLEX", "{s}", "-", "+"),
        ("ZPOPMIN", "{s}"),
        ("ZPOPMAX", "{s}", "0"),
        ("ZSCAN", "{s}", "0"),
        ("ZSCAN", "{s}", "0", "COUNT", "0"),
        ("HGET", "{z}", "a"),
        ("HSET", "{z}", "a", "b"),
        # options
        ("ZADD", "{z}", "NX", "XX", "1", "a"),
        ("ZADD", "{z}", "NX", "GT", "1", "a"),
        ("ZADD", "{z}", "LT", "GT", "1", "a"),
        ("ZADD", "{z}", "NX", "LT", "1", "a"),
        ("ZADD", "{z}", "INCR", "1", "a", "2", "b"),
        ("ZADD", "{z}", "NX", "XX", "INCR", "1", "a", "2", "b"),
        ("ZADD", "{z}", "1", "a", "2"),
        ("ZADD", "{z}", "NX"),
        ("ZADD", "{z}", "BOGUS", "1", "a"),
        ("ZADD", "{z}", "x", "a"),
        ("ZADD", "{z}", "nan", "a"),
        ("ZADD", "{z}", "1e400", "a"),
        ("ZADD", "{z}", "1e-400", "a"),
        ("ZADD", "{z}", " 1", "a"),
        ("ZADD", "{z}", "", "a"),
        ("ZADD", "{z}", "(1", "a"),
        ("ZADD", "{z}", "1", "a", "x", "b"),  # nothing added: the scores are read first
        ("ZINCRBY", "{z}", "nan", "a"),
        ("ZINCRBY", "{z}", "", "a"),
        ("ZCOUNT", "{z}", "x", "1"),
        ("ZCOUNT", "{z}", "(", "1"),
        ("ZCOUNT", "{z}", "((1", "1"),
        ("ZCOUNT", "{z}", "1", "nan"),
        ("ZLEXCOUNT", "{z}", "a", "+"),
        ("ZLEXCOUNT", "{z}", "-", "b"),
        ("ZRANGE", "{z}", "x", "1"),
        ("ZRANGE", "{z}", "0", "1", "WITHSCORE"),
        ("ZRANGE", "{z}", "0", "1", "LIMIT", "0", "1"),
        ("ZRANGE", "{z}", "0", "1", "LIMIT", "0"),
        ("ZRANGE", "{z}", "0", "1", "BYSCORE", "LIMIT", "x", "1"),
        ("ZRANGE", "{z}", "0", "1", "BYSCORE", "BYLEX"),
        ("ZRANGE", "{z}", "0", "1", "REV", "REV"),
        ("ZRANGE", "{z}", "-", "+", "BYLEX", "WITHSCORES"),
        ("ZRANGE", "{z}", "a", "b", "BYSCORE"),
        ("ZRANGE", "{z}", "0", "1", "BYLEX"),
        ("ZREVRANGE", "{z}", "0", "1", "REV"),
        ("ZREVRANGE", "{z}", "0", "1", "BYSCORE"),
        ("ZREVRANGE", "{z}", "0", "1", "LIMIT", "0", "1"),
        ("ZRANGEBYSCORE", "{z}", "0", "1", "REV"),
        ("ZRANGEBYSCORE", "{z}", "0", "1", "BYLEX"),
        ("ZRANGEBYSCORE", "{z}", "0", "1", "LIMIT", "1"),
        ("ZRANGEBYLEX", "{z}", "-", "+", "WITHSCORES"),
        ("ZREVRANGEBYLEX", "{z}", "+", "-", "BYSCORE"),
        ("ZPOPMIN", "{z}", "-1"),
        ("ZPOPMIN", "{z}", "x"),
        ("ZPOPMIN", "{z}", "1", "2"),
        ("ZSCAN", "{z}", "x"),
        ("ZSCAN", "{z}", "0", "COUNT", "-1"),
        ("ZSCAN", "{z}", "0", "NOVALUES"),
        ("ZRANK", "{z}", "a", "WITHSCORE"),
        # wrong arity
        ("ZADD", "{z}", "1"),
        ("ZINCRBY", "{z}", "1"),
        ("ZREM", "{z}"),
        ("ZCARD",),
        ("ZSCORE", "{z}"),
        ("ZMSCORE", "{z}"),
        ("ZRANK", "{z}"),
        ("ZREVRANK", "{z}", "a", "b"),
        ("ZCOUNT", "{z}", "0"),
        ("ZLEXCOUNT", "{z}", "-"),
        ("ZRANGE", "{z}", "0"),
        ("ZREVRANGE", "{z}", "0"),
        ("ZRANGEBYSCORE", "{z}", "0"),
        ("ZREVRANGEBYSCORE", "{z}"),
        ("ZRANGEBYLEX", "{z}", "-"),
        ("ZREVRANGEBYLEX", "{z}"),
        ("ZPOPMIN",),
        ("ZPOPMAX",),
        ("ZSCAN", "{z}"),
    ]:
        b(*cmd)
    b("ZRANGE", "{z}", "0", "-1", "WITHSCORES")  # nothing changed


# -- a random walk ------------------------------------------------------------------------------
H_VALUES = ["1", "-2", "10", "x", "3.5", "0.25", "", "007", "1e3", "-0"]
FIELDS = ["a", "b", "c", "d", "e"]
SCORES = ["1", "-2", "0.5", "2.25", "inf", "-inf", "+inf", "0", "-0.75"]
BAD_SCORES = ["x", "(1", "nan", ""]
BOUNDS = ["-inf", "+inf", "(0", "0", "1", "(-1", "0.5", "(inf", "2.25", "x"]
LEX = ["-", "+", "[a", "(a", "[c", "(c", "[e", "x"]


def _hash_step(rng: random.Random, k: str) -> list[Any]:
    f = rng.choice(FIELDS)
    pick = rng.randrange(16)
    if pick < 4:
        n = rng.randint(1, 3)
        pairs = [x for _ in range(n) for x in (rng.choice(FIELDS), rng.choice(H_VALUES))]
        return [rng.choice(["HSET", "HSET", "HMSET"]), k, *pairs]
    if pick == 4:
        return ["HSETNX", k, f, rng.choice(H_VALUES)]
    if pick == 5:
        return ["HDEL", k, *rng.sample(FIELDS, rng.randint(1, 3))]
    if pick < 8:
        return ["HINCRBY", k, f, str(rng.choice([1, -3, 7, 2**40, -(2**40), 0]))]
    if pick < 10:
        return ["HINCRBYFLOAT", k, f, rng.choice(["0.5", "-1.25", "2", "x", "1e2", "-0.25"])]
    read: list[list[Any]] = [
        ["HGET", k, f], ["HMGET", k, f, rng.choice(FIELDS)], ["HLEN", k], ["HEXISTS", k, f],
        ["HSTRLEN", k, f], ["HGETALL", k], ["HKEYS", k], ["HVALS", k], ["HSCAN", k, "0"],
    ]  # fmt: skip
    return rng.choice(read)


def _zset_step(rng: random.Random, k: str) -> list[Any]:
    m = rng.choice(FIELDS)
    pick = rng.randrange(20)
    if pick < 5:
        flags = rng.choice([[], ["NX"], ["XX"], ["GT"], ["LT"], ["CH"], ["XX", "GT"],
                            ["GT", "CH"], ["LT", "XX", "CH"], ["NX", "CH"]])  # fmt: skip
        if rng.random() < 0.3:
            flags = [*flags, "INCR"]
        n = 1 if "INCR" in flags else rng.randint(1, 3)
        scores = SCORES + (BAD_SCORES if rng.random() < 0.1 else [])
        pairs = [x for _ in range(n) for x in (rng.choice(scores), rng.choice(FIELDS))]
        return ["ZADD", k, *flags, *pairs]
    if pick == 5:
        return ["ZINCRBY", k, rng.choice(["1", "-0.5", "inf", "-inf", "0.25"]), m]
    if pick == 6:
        return ["ZREM", k, *rng.sample(FIELDS, rng.randint(1, 2))]
    if pick == 7:
        return [rng.choice(["ZPOPMIN", "ZPOPMAX"]), k, *rng.choice([[], ["1"], ["2"], ["0"]])]
    lo, hi = rng.choice(BOUNDS), rng.choice(BOUNDS)
    limit = rng.choice([[], ["LIMIT", "0", "2"], ["LIMIT", "1", "-1"], ["LIMIT", "-1", "1"]])
    ws = rng.choice([[], ["WITHSCORES"]])
    start, stop = str(rng.randint(-6, 6)), str(rng.randint(-6, 6))
    read: list[list[Any]] = [
        ["ZCARD", k], ["ZSCORE", k, m], ["ZMSCORE", k, m, rng.choice(FIELDS)],
        ["ZRANK", k, m], ["ZREVRANK", k, m], ["ZCOUNT", k, lo, hi],
        ["ZRANGE", k, start, stop, *ws], ["ZRANGE", k, start, stop, "REV", *ws],
        ["ZREVRANGE", k, start, stop, *ws],
        ["ZRANGE", k, lo, hi, "BYSCORE", *rng.choice([[], ["REV"]]), *limit, *ws],
        ["ZRANGEBYSCORE", k, lo, hi, *ws, *limit], ["ZREVRANGEBYSCORE", k, hi, lo, *limit, *ws],
        ["ZSCAN", k, "0"],
    ]  # fmt: skip
    return rng.choice(read)


def _lex_step(rng: random.Random, k: str) -> list[Any]:
    pick = rng.randrange(6)
    if pick < 2:
        return ["ZADD", k, *[x for m in rng.sample(FIELDS, 2) for x in ("0", m)]]
    if pick == 2:
        return ["ZREM", k, rng.choice(FIELDS)]
    lo, hi = rng.choice(LEX), rng.choice(LEX)
    limit = rng.choice([[], ["LIMIT", "0", "2"], ["LIMIT", "1", "-1"], ["LIMIT", "-2", "1"]])
    read: list[list[Any]] = [
        ["ZLEXCOUNT", k, lo, hi], ["ZRANGEBYLEX", k, lo, hi, *limit],
        ["ZREVRANGEBYLEX", k, hi, lo, *limit], ["ZRANGE", k, lo, hi, "BYLEX", "REV", *limit],
    ]  # fmt: skip
    return rng.choice(read)


_UNORDERED = {"HGETALL", "HKEYS", "HVALS", "HSCAN", "ZSCAN"}


@pytest.mark.parametrize("seed", range(10))
def test_random_sequences_answer_as_redis(pair: Both, seed: int) -> None:
    rng = random.Random(seed)
    h, z, lx, s = pair.key("h"), pair.key("z"), pair.key("l"), pair.key("s")
    pair.both("SET", s, "x")
    for _ in range(300):
        r = rng.random()
        if r < 0.4:
            args = _hash_step(rng, h)
        elif r < 0.8:
            args = _zset_step(rng, z)
        else:
            args = _lex_step(rng, lx)
        if rng.random() < 0.05:  # the same command on a key of another type
            args[1] = s
        pair.both(*args, unordered=args[0] in _UNORDERED)
    pair.both("HGETALL", h, unordered=True)
    pair.both("ZRANGE", z, "0", "-1", "WITHSCORES")
    pair.both("ZRANGE", lx, "0", "-1", "WITHSCORES")


# -- scans over many fields ---------------------------------------------------------------------
@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def cooked(
    request: pytest.FixtureRequest, crdtkv_server: Server, redis_port: int
) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """redis-py clients with their usual reply parsing (hscan_iter, zscan_iter)."""
    assert crdtkv_server.resp_port is not None
    ours = redis.Redis(port=crdtkv_server.resp_port, protocol=request.param, decode_responses=True)
    theirs = redis.Redis(port=redis_port, protocol=request.param, decode_responses=True)
    theirs.flushall()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_scan_iter_returns_every_field_once(cooked: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = cooked
    n = 3000
    key = f"scan{next(_ids)}"
    fields = {f"field:{i}:{'é' * (i % 3)}": str(i) for i in range(n)}
    members = {f"m{i}": float(i % 97) / 4 for i in range(n)}
    for c in (ours, theirs):
        c.hset(key + "h", mapping=fields)
        c.zadd(key + "z", members)
    for c in (ours, theirs):
        seen = list(c.hscan_iter(key + "h", count=100))
        assert len(seen) == n and dict(seen) == fields
        matched = dict(c.hscan_iter(key + "h", match="field:1?:*", count=50))
        assert matched == {f: v for f, v in fields.items() if f.split(":")[1] in
                           {str(i) for i in range(10, 20)}}  # fmt: skip
        zseen = list(c.zscan_iter(key + "z", count=70))
        assert len(zseen) == n and dict(zseen) == members
        zmatched = dict(c.zscan_iter(key + "z", match="m1*"))
        assert zmatched == {m: s for m, s in members.items() if m.startswith("m1")}
    cursor, page = ours.hscan(key + "h", 0, count=10)
    assert cursor != 0 and len(page) == 10
    cursor2, page2 = ours.hscan(key + "h", cursor, count=10)
    assert cursor2 != 0 and len(page2) == 10 and not set(page) & set(page2)
    # Pop them all.
    for c in (ours, theirs):
        popped = c.zpopmin(key + "z", n + 5)
        assert len(popped) == n and c.zcard(key + "z") == 0


def test_a_command_split_between_arguments_after_1kib(crdtkv_server: Server) -> None:
    """A request that arrives in two reads, cut between two arguments after 1 KiB:
    hiredis has dropped the bytes it parsed, and the rest is still the same command
    (the server once took it for an inline command)."""
    assert crdtkv_server.resp_port is not None
    args = [b"HSET", f"split{next(_ids)}".encode()]
    args += [b"f%04d" % i if j == 0 else b"v" for i in range(200) for j in range(2)]
    msg = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    cut = msg.index(b"$5\r\nf0150")
    with socket.create_connection(("127.0.0.1", crdtkv_server.resp_port), timeout=10) as s:
        s.sendall(msg[:cut])
        time.sleep(0.2)  # its own read
        s.sendall(msg[cut:])
        assert s.recv(100) == b":200\r\n"

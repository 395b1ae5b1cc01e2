"""List commands over RESP: a real replica and a real redis-server (7.0) get the same
calls, in RESP2 and in RESP3, and must send the same replies, errors included (by their
text): normal use, absent keys, WRONGTYPE both ways, negative and out-of-range indexes,
bad arguments, wrong arities, a long list, a pipeline, a seeded random program, and
redis-py's list methods.  Nil replies are compared byte for byte where the bulk string /
array nil of RESP2 counts (LPOP with and without a count).  The places where crdtkv
answers otherwise on purpose are tested as such at the end."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from crdtkv import limits
from tests.procs import Server

from .test_hashes_zsets import Both, _raw
from .test_keys_sets_hll import Raw

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, crdtkv_server: Server, redis_port: int) -> Iterator[Both]:
    proto: int = request.param
    assert crdtkv_server.resp_port is not None
    ours, theirs = _raw(crdtkv_server.resp_port, proto), _raw(redis_port, proto)
    theirs.execute_command("FLUSHALL")
    yield Both(ours, theirs, proto)
    ours.close()
    theirs.close()


def _wrong(b: Both) -> None:
    """Keys of every other type: {s} a string, {h} a hash, {t} a set, {z} a sorted set."""
    b.both("SET", "{s}", "v")
    b.both("HSET", "{h}", "f", "v")
    b.both("SADD", "{t}", "m")
    b.both("ZADD", "{z}", "1", "m")


# -- pushes and pops ----------------------------------------------------------------------------
def test_push_and_pop(pair: Both) -> None:
    b = pair.both
    assert b("RPUSH", "{l}", "a", "b", "c") == 3
    assert b("LPUSH", "{l}", "x", "y", "z") == 6  # each at the head in turn: z y x a b c
    b("LRANGE", "{l}", "0", "-1")
    b("RPUSH", "{l}", "")  # an empty element
    b("LPUSHX", "{l}", "p")
    b("RPUSHX", "{l}", "q", "r")
    b("LPUSHX", "{none}", "p")
    b("RPUSHX", "{none}", "p", "q")
    b("EXISTS", "{none}")
    b("LRANGE", "{l}", "0", "-1")
    b("LPOP", "{l}")
    b("RPOP", "{l}")
    b("LPOP", "{l}", "2")
    b("RPOP", "{l}", "2")  # last first
    b("LPOP", "{l}", "1")  # an array of one
    b("LPOP", "{l}", "0")  # an empty array
    b("RPOP", "{l}", "0")
    b("LLEN", "{l}")
    b("RPOP", "{l}", "100")  # more than it holds: all of them
    b("EXISTS", "{l}")  # the last pop deleted it
    b("LPOP", "{l}")
    b("LPOP", "{l}", "3")
    b("RPOP", "{l}", "0")
    b("LLEN", "{l}")
    b("TYPE", "{l}")
    b("RPUSH", "{l}", "a")
    b("LPOP", "{l}", "9223372036854775807")
    b("RPUSH", "{l}", "héllo", "🙂")
    b("LRANGE", "{l}", "0", "-1")
    b("TYPE", "{l}")


def test_pop_counts(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", "a", "b")
    _wrong(pair)
    for key in ("{l}", "{none}", "{s}"):
        for cmd in ("LPOP", "RPOP"):
            for count in ("-1", "x", "1.5", "", " 1", "01", "-9223372036854775808",
                          "9223372036854775808", "0"):  # fmt: skip
                b(cmd, key, count)
            b(cmd, key, "1", "2")  # too many arguments
            b(cmd, key)
    b("LRANGE", "{l}", "0", "-1")


def test_nil_replies_byte_for_byte(crdtkv_server: Server, redis_port: int) -> None:
    assert crdtkv_server.resp_port is not None
    for proto in (2, 3):
        raws = [Raw(p, proto) for p in (crdtkv_server.resp_port, redis_port)]
        try:
            for r in raws:
                r.call("DEL", "nil:l", "nil:s")
                r.call("RPUSH", "nil:l", "a")
                r.call("SET", "nil:s", "v")
            for args in [
                ("LPOP", "nil:none"),  # $-1 in RESP2
                ("LPOP", "nil:none", "2"),  # *-1 in RESP2
                ("RPOP", "nil:none", "0"),
                ("LPOP", "nil:l", "0"),  # *0
                ("LINDEX", "nil:none", "0"),
                ("LINDEX", "nil:l", "5"),
                ("LPOS", "nil:none", "a"),
                ("LPOS", "nil:none", "a", "COUNT", "0"),  # *0
                ("LPOS", "nil:l", "zz"),
                ("LPOS", "nil:l", "zz", "COUNT", "1"),
                ("LMOVE", "nil:none", "nil:l", "LEFT", "LEFT"),
                ("RPOPLPUSH", "nil:none", "nil:s"),  # an absent source: nil, not WRONGTYPE
                ("LRANGE", "nil:none", "0", "-1"),
                ("LTRIM", "nil:none", "0", "1"),  # +OK
                ("LSET", "nil:l", "0", "b"),
                ("TYPE", "nil:l"),  # +list
                ("RPOP", "nil:l", "5"),
                ("LPOP", "nil:l"),  # the list is gone
            ]:
                got = [r.call(*args) for r in raws]
                assert got[0] == got[1], (proto, args, got)
        finally:
            for r in raws:
                r.close()


# -- reads --------------------------------------------------------------------------------------
def test_lrange_lindex_llen(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", *"abcdefghij")
    for start, stop in [(0, -1), (0, 0), (2, 5), (-3, -1), (-100, 2), (5, 100), (7, 3),
                        (-1, -5), (10, 20), (-11, -11), (-10, -10), (9, 9), (3, -3),
                        (-9223372036854775808, 9223372036854775807)]:  # fmt: skip
        b("LRANGE", "{l}", str(start), str(stop))
    for i in [0, 1, 9, 10, 11, -1, -10, -11, 100, -9223372036854775808, 9223372036854775807]:
        b("LINDEX", "{l}", str(i))
    b("LLEN", "{l}")
    for bad in ["x", "1.0", "", "9223372036854775808", "+1", "0x1"]:
        b("LRANGE", "{l}", bad, "1")
        b("LRANGE", "{l}", "0", bad)
        b("LRANGE", "{none}", bad, "1")  # the integers are read before the key
        b("LINDEX", "{l}", bad)
        b("LINDEX", "{none}", bad)  # the key is read first: nil
    b("LRANGE", "{none}", "0", "-1")
    b("LINDEX", "{none}", "0")
    b("LLEN", "{none}")


# -- LSET, LINSERT, LREM, LTRIM -----------------------------------------------------------------
def test_lset(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", "a", "b", "c")
    for i in ["0", "2", "-1", "-3", "3", "-4", "100", "x", "9223372036854775808"]:
        b("LSET", "{l}", i, "N" + i)
    b("LRANGE", "{l}", "0", "-1")
    b("LSET", "{none}", "0", "v")  # ERR no such key
    b("LSET", "{none}", "x", "v")  # the key first: still no such key
    b("EXISTS", "{none}")


def test_linsert(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", "a", "b", "a", "c")
    b("LINSERT", "{l}", "BEFORE", "a", "x")  # the first a from the head
    b("LINSERT", "{l}", "after", "a", "y")
    b("LINSERT", "{l}", "After", "c", "z")  # at the tail
    b("LINSERT", "{l}", "before", "nope", "w")  # -1
    b("LINSERT", "{l}", "middle", "a", "w")  # syntax error
    b("LINSERT", "{none}", "before", "a", "w")  # 0
    b("LINSERT", "{none}", "middle", "a", "w")  # the syntax error first
    b("LRANGE", "{l}", "0", "-1")
    b("EXISTS", "{none}")


def test_lrem(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", *"abacabada")
    b("LREM", "{l}", "2", "a")  # the first two from the head
    b("LRANGE", "{l}", "0", "-1")
    b("LREM", "{l}", "-1", "a")  # the last one
    b("LRANGE", "{l}", "0", "-1")
    b("LREM", "{l}", "0", "a")  # all
    b("LRANGE", "{l}", "0", "-1")
    b("LREM", "{l}", "5", "nope")
    b("LREM", "{l}", "x", "a")
    b("LREM", "{none}", "x", "a")  # the count is read first
    b("LREM", "{none}", "1", "a")
    b("LREM", "{l}", "-9223372036854775808", "b")
    b("LREM", "{l}", "0", "c")
    b("LREM", "{l}", "0", "d")  # the last elements: the list goes
    b("EXISTS", "{l}")


def test_ltrim(pair: Both) -> None:
    b = pair.both
    for start, stop in [(1, -2), (0, -1), (-3, -1), (0, 0), (5, 100), (3, 1), (-100, 100),
                        (-1, -1), (0, 9223372036854775807)]:  # fmt: skip
        b("DEL", "{l}")
        b("RPUSH", "{l}", *"abcdefg")
        b("LTRIM", "{l}", str(start), str(stop))
        b("LRANGE", "{l}", "0", "-1")
        b("EXISTS", "{l}")
    b("LTRIM", "{l}", "x", "1")
    b("LTRIM", "{none}", "x", "1")
    b("LTRIM", "{none}", "0", "1")
    b("EXISTS", "{none}")


# -- LPOS ---------------------------------------------------------------------------------------
def test_lpos(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{l}", *"abcabcabc")
    for opts in [
        (),
        ("RANK", "1"),
        ("RANK", "2"),
        ("RANK", "-1"),
        ("RANK", "-3"),
        ("RANK", "4"),
        ("RANK", "-4"),
        ("COUNT", "0"),
        ("COUNT", "2"),
        ("COUNT", "10"),
        ("RANK", "2", "COUNT", "0"),
        ("RANK", "-1", "COUNT", "2"),
        ("RANK", "-2", "COUNT", "0"),
        ("MAXLEN", "1"),
        ("MAXLEN", "3"),
        ("MAXLEN", "4", "COUNT", "0"),
        ("RANK", "-1", "MAXLEN", "2"),
        ("RANK", "-1", "MAXLEN", "3", "COUNT", "0"),
        ("RANK", "2", "MAXLEN", "4"),
        ("MAXLEN", "0", "COUNT", "0"),
        ("count", "1", "rank", "1", "maxlen", "0"),  # any case, any order
        ("COUNT", "1", "COUNT", "0"),  # the last one counts
        ("RANK", "9223372036854775807"),
        ("COUNT", "9223372036854775807"),
        ("MAXLEN", "9223372036854775807"),
        # errors, in the order of the options
        ("RANK", "0"),
        ("RANK", "x"),
        ("COUNT", "-1"),
        ("COUNT", "x"),
        ("MAXLEN", "-1"),
        ("MAXLEN", "x"),
        ("RANK",),
        ("COUNT",),
        ("FOO", "1"),
        ("RANK", "1", "BAR"),
        ("COUNT", "-1", "RANK", "0"),
        ("RANK", "0", "COUNT", "-1"),
    ]:
        b("LPOS", "{l}", "a", *opts)
        b("LPOS", "{l}", "c", *opts)
        b("LPOS", "{l}", "zz", *opts)
        b("LPOS", "{none}", "a", *opts)


# -- LMOVE, RPOPLPUSH ---------------------------------------------------------------------------
def test_lmove_and_rpoplpush(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{a}", "1", "2", "3", "4")
    for ends in [("LEFT", "LEFT"), ("LEFT", "RIGHT"), ("RIGHT", "LEFT"), ("right", "right")]:
        b("LMOVE", "{a}", "{b}", *ends)
        b("LRANGE", "{a}", "0", "-1")
        b("LRANGE", "{b}", "0", "-1")
    b("RPUSH", "{a}", "5", "6")
    b("LMOVE", "{a}", "{a}", "LEFT", "RIGHT")  # a rotation
    b("LMOVE", "{a}", "{a}", "RIGHT", "RIGHT")  # no change
    b("LRANGE", "{a}", "0", "-1")
    b("RPOPLPUSH", "{a}", "{b}")
    b("RPOPLPUSH", "{a}", "{a}")
    b("LRANGE", "{a}", "0", "-1")
    b("LRANGE", "{b}", "0", "-1")
    b("LMOVE", "{a}", "{b}", "UP", "LEFT")
    b("LMOVE", "{a}", "{b}", "LEFT", "DOWN")
    b("LMOVE", "{none}", "{b}", "UP", "LEFT")  # the ends are read first
    b("LMOVE", "{none}", "{b}", "LEFT", "LEFT")
    b("RPOPLPUSH", "{none}", "{b}")
    b("EXISTS", "{none}")
    b("RPOPLPUSH", "{b}", "{c}")  # a new destination
    b("RPOPLPUSH", "{b}", "{c}")
    b("RPOPLPUSH", "{b}", "{c}")
    b("EXISTS", "{b}")  # the last move deleted the source
    b("LRANGE", "{c}", "0", "-1")
    b("TYPE", "{c}")


# -- wrong types, both ways ---------------------------------------------------------------------
def test_wrongtype(pair: Both) -> None:
    b = pair.both
    _wrong(pair)
    b("RPUSH", "{l}", "a", "b")
    for key in ("{s}", "{h}", "{t}", "{z}"):
        for cmd in [
            ("LPUSH", key, "x"),
            ("RPUSH", key, "x"),
            ("LPUSHX", key, "x"),
            ("RPUSHX", key, "x"),
            ("LPOP", key),
            ("RPOP", key, "2"),
            ("LRANGE", key, "0", "-1"),
            ("LRANGE", key, "x", "-1"),  # the integers first
            ("LINDEX", key, "0"),
            ("LINDEX", key, "x"),  # the type first
            ("LLEN", key),
            ("LSET", key, "0", "v"),
            ("LSET", key, "x", "v"),
            ("LINSERT", key, "BEFORE", "a", "b"),
            ("LINSERT", key, "NOWHERE", "a", "b"),
            ("LREM", key, "0", "a"),
            ("LTRIM", key, "0", "1"),
            ("LPOS", key, "a"),
            ("LPOS", key, "a", "RANK", "0"),
            ("LMOVE", key, "{l}", "LEFT", "LEFT"),
            ("LMOVE", "{l}", key, "LEFT", "LEFT"),  # the destination: nothing moves
            ("RPOPLPUSH", key, "{l}"),
            ("RPOPLPUSH", "{l}", key),
        ]:
            b(*cmd)
    b("LRANGE", "{l}", "0", "-1")
    # other types' commands on a list
    for cmd in [
        ("GET", "{l}"),
        ("INCR", "{l}"),
        ("APPEND", "{l}", "x"),
        ("STRLEN", "{l}"),
        ("HSET", "{l}", "f", "v"),
        ("HGET", "{l}", "f"),
        ("SADD", "{l}", "m"),
        ("SMEMBERS", "{l}"),
        ("ZADD", "{l}", "1", "m"),
        ("ZRANGE", "{l}", "0", "-1"),
        ("MGET", "{l}", "{s}"),
        ("TYPE", "{l}"),
        ("EXISTS", "{l}"),
        ("SET", "{l}", "now a string"),  # SET replaces a key of any type
        ("TYPE", "{l}"),
        ("GET", "{l}"),
    ]:
        b(*cmd)


def test_arity(pair: Both) -> None:
    b = pair.both
    for cmd in [
        ("LPUSH", "{l}"),
        ("RPUSH",),
        ("LPUSHX", "{l}"),
        ("RPUSHX", "{l}"),
        ("LPOP",),
        ("RPOP",),
        ("LRANGE", "{l}", "0"),
        ("LRANGE", "{l}", "0", "1", "2"),
        ("LINDEX", "{l}"),
        ("LINDEX", "{l}", "0", "1"),
        ("LLEN",),
        ("LLEN", "{l}", "x"),
        ("LSET", "{l}", "0"),
        ("LINSERT", "{l}", "BEFORE", "a"),
        ("LREM", "{l}", "0"),
        ("LTRIM", "{l}", "0"),
        ("LPOS", "{l}"),
        ("LMOVE", "{l}", "{m}", "LEFT"),
        ("LMOVE", "{l}", "{m}", "LEFT", "LEFT", "LEFT"),
        ("RPOPLPUSH", "{l}"),
    ]:
        b(*cmd)
    b("EXISTS", "{l}")


# -- a long list --------------------------------------------------------------------------------
def test_a_long_list(pair: Both) -> None:
    b = pair.both
    n = 5_000
    for i in range(0, n, 1_000):
        b("RPUSH", "{l}", *[f"e{j}" for j in range(i, i + 1_000)])
    b("LLEN", "{l}")
    rnd = random.Random(5)
    points = [0, 1, 999, 1000, 2500, n - 2, n - 1, n, n + 1, -1, -2, -n, -n - 1]
    points += [rnd.randrange(-n - 10, n + 10) for _ in range(20)]
    for i in points:
        b("LINDEX", "{l}", str(i))
        b("LSET", "{l}", str(i), f"set{i}")
    for start, stop in [(0, -1), (0, 99), (4_000, 4_099), (-300, -1), (2_499, 2_501),
                        (-n, -n), (n - 1, n + 100), (-n - 5, 10)]:  # fmt: skip
        b("LRANGE", "{l}", str(start), str(stop))
    b("LPUSH", "{l}", "head")
    b("LINSERT", "{l}", "AFTER", "e2500", "mid")
    b("LPOS", "{l}", "mid")
    b("LPOS", "{l}", "e4000", "RANK", "-1")
    b("LREM", "{l}", "0", "e3000")
    b("LINDEX", "{l}", "3000")
    b("LPOP", "{l}", "1500")
    b("RPOP", "{l}", "1500")
    b("LTRIM", "{l}", "100", "-100")
    b("LLEN", "{l}")
    b("LRANGE", "{l}", "0", "-1")


# -- a seeded program ---------------------------------------------------------------------------
def _program(seed: int, n: int) -> list[tuple[str, ...]]:
    rnd = random.Random(seed)

    def k() -> str:
        return rnd.choice(["{a}", "{b}", "{c}", "{s}"])  # {s} a string

    def e() -> str:
        return rnd.choice("xyzw")

    def i() -> str:
        return str(rnd.randrange(-8, 8))

    def end() -> str:
        return rnd.choice(["LEFT", "RIGHT"])

    makers = [
        lambda: ("LPUSH", k(), *[e() for _ in range(rnd.randrange(1, 4))]),
        lambda: ("RPUSH", k(), *[e() for _ in range(rnd.randrange(1, 4))]),
        lambda: ("LPUSHX", k(), e()),
        lambda: ("RPUSHX", k(), e()),
        lambda: ("LPOP", k()),
        lambda: ("RPOP", k(), str(rnd.randrange(0, 4))),
        lambda: ("LRANGE", k(), i(), i()),
        lambda: ("LINDEX", k(), i()),
        lambda: ("LLEN", k()),
        lambda: ("LSET", k(), i(), e()),
        lambda: ("LINSERT", k(), rnd.choice(["BEFORE", "AFTER"]), e(), e()),
        lambda: ("LREM", k(), i(), e()),
        lambda: ("LTRIM", k(), i(), i()),
        lambda: ("LPOS", k(), e(), "RANK", rnd.choice(["1", "2", "-1", "-2"]), "COUNT", "0"),
        lambda: ("LPOS", k(), e(), "MAXLEN", str(rnd.randrange(0, 5))),
        lambda: ("LMOVE", k(), k(), end(), end()),
        lambda: ("RPOPLPUSH", k(), k()),
        lambda: ("DEL", k()),
        lambda: ("TYPE", k()),
    ]
    return [rnd.choice(makers)() for _ in range(n)]


def test_a_seeded_program(pair: Both) -> None:
    pair.both("SET", "{s}", "v")
    errors = 0
    for call in _program(pair.proto, 1_500):
        got = pair.both(*call)
        errors += isinstance(got, tuple)
    assert errors > 0  # WRONGTYPE and index errors ran
    for key in ("{a}", "{b}", "{c}"):
        pair.both("LRANGE", key, "0", "-1")


# -- redis-py -----------------------------------------------------------------------------------
def test_a_pipeline_of_list_commands(ours: redis.Redis, theirs: redis.Redis) -> None:
    ours.delete("pl:a", "pl:b", "pl:s")
    answers = []
    for c in (ours, theirs):
        with c.pipeline(transaction=False) as p:
            p.set("pl:s", "v")
            for j in range(600):
                p.rpush("pl:a", f"v{j % 7}")
                p.lpush("pl:a", f"h{j}")
                if j % 3 == 0:
                    p.lpop("pl:a")
                if j % 5 == 0:
                    p.rpoplpush("pl:a", "pl:b")
                if j % 7 == 0:
                    p.lrem("pl:a", 1, f"v{j % 7}")
                if j % 11 == 0:
                    p.lset("pl:a", -2, f"s{j}")
                if j % 13 == 0:
                    p.lpush("pl:s", "x")  # WRONGTYPE, and the pipeline goes on
            p.lrange("pl:a", 0, -1)
            p.lrange("pl:b", 0, -1)
            p.llen("pl:a")
            p.lindex("pl:a", 17)
            p.rpop("pl:a", 5)
            p.lpos("pl:a", "v3", count=0)
            answers.append(
                [
                    ("error", str(a)) if isinstance(a, Exception) else a
                    for a in p.execute(raise_on_error=False)
                ]
            )
    assert len(answers[0]) == len(answers[1]) > 1_500
    assert answers[0] == answers[1]
    assert any(isinstance(a, tuple) for a in answers[0])


def test_redis_py_list_methods(ours: redis.Redis, theirs: redis.Redis) -> None:
    ours.delete("py:l", "py:m", "py:n")
    got: list[list[Any]] = []
    for c in (ours, theirs):
        out: list[Any] = [
            c.lpush("py:l", "a", "b"),
            c.rpush("py:l", "c", "d", "a"),
            c.lpushx("py:l", "z"),
            c.rpushx("py:l", "y"),
            c.lpushx("py:none", "z"),
            c.rpushx("py:none", "z"),
            c.lrange("py:l", 0, -1),
            c.lpop("py:l"),
            c.rpop("py:l"),
            c.lpop("py:l", 2),
            c.rpop("py:l", 1),
            c.lpop("py:none", 2),
            c.lpop("py:none"),
            c.lindex("py:l", 0),
            c.lindex("py:l", -1),
            c.lindex("py:l", 50),
            c.llen("py:l"),
            c.llen("py:none"),
            c.lset("py:l", 0, "S"),
            c.linsert("py:l", "BEFORE", "S", "B"),
            c.linsert("py:l", "AFTER", "nope", "B"),
            c.lrange("py:l", 0, -1),
            c.rpush("py:l", "a", "b", "a"),
            c.lrem("py:l", -1, "a"),
            c.lrem("py:l", 0, "b"),
            c.lpos("py:l", "a"),
            c.lpos("py:l", "a", rank=-1),
            c.lpos("py:l", "a", count=0),
            c.lpos("py:l", "a", maxlen=1),
            c.lpos("py:l", "zz"),
            c.lmove("py:l", "py:m", "LEFT", "RIGHT"),
            c.lmove("py:l", "py:m"),  # RIGHT LEFT
            c.rpoplpush("py:l", "py:m"),
            c.rpoplpush("py:none", "py:m"),
            c.lrange("py:m", 0, -1),
            c.ltrim("py:m", 1, -1),
            c.lrange("py:m", 0, -1),
            c.lrange("py:l", 0, -1),
            c.type("py:m"),
        ]
        with pytest.raises(redis.ResponseError, match="no such key"):
            c.lset("py:none", 0, "x")
        with pytest.raises(redis.ResponseError, match="index out of range"):
            c.lset("py:m", 99, "x")
        got.append(out)
    assert got[0] == got[1]
    assert got[0][6] == ["z", "b", "a", "c", "d", "a", "y"]


# -- keyspace commands on lists -----------------------------------------------------------------
def test_keyspace_commands_on_lists(ours: redis.Redis, theirs: redis.Redis) -> None:
    for c in (ours, theirs):
        c.delete("ks:l", "ks:l2", "ks:big", "ks:big2", "ks:x")
        c.rpush("ks:l", "a", "b", "c")
        c.expire("ks:l", 100)
        c.set("ks:x", "v")
        c.rpush("ks:big", *[str(i) for i in range(3_000)])
    for call in [
        ("TYPE", "ks:l"),
        ("RENAME", "ks:l", "ks:l2"),
        ("LRANGE", "ks:l2", "0", "-1"),
        ("EXISTS", "ks:l"),
        ("TTL", "ks:l2"),  # the TTL went with it
        ("RENAME", "ks:l2", "ks:x"),  # over a string
        ("TYPE", "ks:x"),
        ("LRANGE", "ks:x", "0", "-1"),
        ("RENAMENX", "ks:big", "ks:x"),
        ("RENAMENX", "ks:big", "ks:big2"),
        ("LLEN", "ks:big2"),
        ("LINDEX", "ks:big2", "2999"),
        ("DEL", "ks:big2"),
        ("LLEN", "ks:big2"),
        ("PERSIST", "ks:x"),
        ("TTL", "ks:x"),
    ]:
        got = []
        for c in (ours, theirs):
            try:
                got.append(c.execute_command(*call))
            except redis.ResponseError as e:
                got.append(("error", str(e)))
        assert got[0] == got[1], (call, got)
    assert sorted(ours.scan_iter("ks:*", _type="list")) == ["ks:x"]
    assert sorted(theirs.scan_iter("ks:*", _type="list")) == ["ks:x"]


def test_command_info_and_docs(ours: redis.Redis, theirs: redis.Redis) -> None:
    names = ["lpush", "rpush", "lpushx", "rpushx", "lpop", "rpop", "lrange", "lindex",
             "llen", "lset", "linsert", "lrem", "ltrim", "lpos", "lmove", "rpoplpush"]  # fmt: skip
    for name in names:
        mine = ours.execute_command("COMMAND", "INFO", name)[name]  # redis-py's dict
        real = theirs.execute_command("COMMAND", "INFO", name)[name]
        for field in ("arity", "first_key_pos", "last_key_pos", "step_count"):
            assert mine[field] == real[field], (name, field)
        assert set(mine["flags"]) <= set(real["flags"]), name  # all but denyoom
        assert "write" in mine["flags"] or "readonly" in mine["flags"], name
        # @write or @read, @list, @fast or @slow
        assert mine["acl_categories"] == real["acl_categories"], name
    docs = ours.execute_command("COMMAND DOCS", "lpos", "lmove")  # redis-py makes dicts
    assert list(docs) == ["lpos", "lmove"], docs
    assert docs["lpos"]["group"] == docs["lmove"]["group"] == "list"


# -- blocking pops ------------------------------------------------------------------------------
def test_blocking_pops_that_answer_at_once(pair: Both) -> None:
    b = pair.both
    b("RPUSH", "{a}", "1", "2", "3")
    b("RPUSH", "{b}", "x")
    _wrong(pair)
    for cmd in [
        ("BLPOP", "{none}", "{a}", "0"),  # the first key with an element
        ("BRPOP", "{a}", "{b}", "1.5"),
        ("BLPOP", "{b}", "{a}", "0"),  # {b} is empty now: gone
        ("EXISTS", "{b}"),
        ("BLPOP", "{none}", "{s}", "{a}", "1"),  # a key of another type first: WRONGTYPE
        ("BLPOP", "{a}", "{s}", "1"),  # after one with an element: not looked at
        ("RPUSH", "{a}", "4", "5", "6"),
        ("BLMOVE", "{a}", "{c}", "LEFT", "RIGHT", "0"),
        ("BLMOVE", "{a}", "{c}", "right", "left", "0.01"),
        ("BRPOPLPUSH", "{a}", "{c}", "0"),
        ("LRANGE", "{c}", "0", "-1"),
        ("RPUSH", "{a}", "7", "8"),
        ("BLMOVE", "{a}", "{s}", "LEFT", "LEFT", "0"),  # the destination's type
        ("BLMOVE", "{s}", "{a}", "LEFT", "LEFT", "0"),
        ("BRPOPLPUSH", "{h}", "{a}", "0"),
        # arguments: the timeout (and BLMOVE's ends) before any key is looked at
        *[("BLPOP", "{a}", t) for t in ["x", "-1", "-0.5", "nan", "inf", "1e400", " 1", ""]],
        ("BRPOP", "{s}", "x"),
        ("BLMOVE", "{a}", "{c}", "UP", "LEFT", "0"),
        ("BLMOVE", "{a}", "{c}", "LEFT", "LEFT", "x"),
        ("BLMOVE", "{a}", "{c}", "LEFT", "LEFT", "-1"),
        ("BRPOPLPUSH", "{a}", "{c}", "-1"),
        ("BLPOP", "{a}"),
        ("BRPOP",),
        ("BLMOVE", "{a}", "{c}", "LEFT", "LEFT"),
        ("BRPOPLPUSH", "{a}", "{c}"),
        ("LRANGE", "{a}", "0", "-1"),
    ]:
        b(*cmd)


def test_blocking_pops_time_out_and_answer_at_once_in_multi(
    crdtkv_server: Server, redis_port: int
) -> None:
    assert crdtkv_server.resp_port is not None
    for proto in (2, 3):
        raws = [Raw(p, proto) for p in (crdtkv_server.resp_port, redis_port)]
        try:
            for args in [
                ("DEL", "bt:none"),
                ("BLPOP", "bt:none", "0.05"),  # a nil array
                ("BRPOP", "bt:none", "bt:none2", "0.05"),
                ("BLMOVE", "bt:none", "bt:x", "LEFT", "LEFT", "0.05"),
                ("BRPOPLPUSH", "bt:none", "bt:x", "0.05"),
                ("MULTI",),
                ("BLPOP", "bt:none", "0"),  # inside EXEC: at once, never forever
                ("BLMOVE", "bt:none", "bt:x", "LEFT", "LEFT", "0"),
                ("BRPOPLPUSH", "bt:none", "bt:x", "0"),
                ("RPUSH", "bt:none", "v"),
                ("BRPOP", "bt:none", "0"),
                ("EXEC",),
                ("EXISTS", "bt:none", "bt:x"),
            ]:
                got = [r.call(*args) for r in raws]
                assert got[0] == got[1], (proto, args, got)
        finally:
            for r in raws:
                r.close()


def test_a_blocked_pop_takes_a_later_push(ours: redis.Redis, crdtkv_server: Server) -> None:
    assert crdtkv_server.resp_port is not None
    ours.delete("bw:l", "bw:m", "bw:d")
    waiter = redis.Redis(port=crdtkv_server.resp_port, decode_responses=True)
    results: list[Any] = []

    def wait_pops() -> None:
        with waiter.pipeline(transaction=False) as p:
            p.blpop(["bw:m", "bw:l"], timeout=20)
            p.echo("after")  # waits behind the blocked pop, and comes after it
            p.blmove("bw:l", "bw:d", 20, "RIGHT", "LEFT")
            p.brpoplpush("bw:l", "bw:d", 20)
            results.extend(p.execute())

    t = threading.Thread(target=wait_pops)
    started = time.monotonic()
    t.start()
    time.sleep(0.3)
    assert not results
    assert ours.rpush("bw:l", "first") == 1  # another connection's push wakes it
    time.sleep(0.3)
    assert ours.rpush("bw:l", "second") == 1
    time.sleep(0.3)
    assert ours.lpush("bw:l", "third") == 1
    t.join(30)
    assert not t.is_alive()
    assert results == [("bw:l", "first"), "after", "second", "third"]
    assert time.monotonic() - started < 10  # woken, not timed out
    assert ours.lrange("bw:d", 0, -1) == ["third", "second"]
    assert ours.exists("bw:l") == 0
    # a blocked client that goes away pops nothing, and the replica goes on serving
    gone = Raw(crdtkv_server.resp_port, 2)
    gone.sock.sendall(b"*3\r\n$5\r\nBLPOP\r\n$7\r\nbw:gone\r\n$1\r\n0\r\n")
    time.sleep(0.2)
    gone.close()
    time.sleep(0.2)
    assert ours.rpush("bw:gone", "kept") == 1
    time.sleep(0.2)
    assert ours.lrange("bw:gone", 0, -1) == ["kept"]
    waiter.close()


# -- where crdtkv answers otherwise on purpose --------------------------------------------------
def test_known_differences(ours: redis.Redis) -> None:
    ours.delete("kd:l")

    def err(*args: Any) -> str:
        with pytest.raises(redis.ResponseError) as e:
            ours.execute_command(*args)
        return str(e.value)

    # An element is at most MEMBER_BYTES_MAX bytes (a set member's bound), a push at most
    # MEMBERS_PER_OP_MAX elements (SADD's); Redis takes up to 512 MB and any number.
    big = "x" * (limits.MEMBER_BYTES_MAX + 1)
    assert "4096" in err("RPUSH", "kd:l", big)
    assert "10000" in err("RPUSH", "kd:l", *["e"] * (limits.MEMBERS_PER_OP_MAX + 1))
    assert ours.exists("kd:l") == 0  # refused whole
    ours.rpush("kd:l", "a")
    assert "4096" in err("LSET", "kd:l", "0", big)
    assert "4096" in err("LINSERT", "kd:l", "BEFORE", "a", big)
    # Text only, as every crdtkv value.
    assert "UTF-8" in err("RPUSH", "kd:l", b"\xff")
    assert ours.lrange("kd:l", 0, -1) == ["a"]
    # LPOS RANK -2^63 (Redis 7.0 takes it as -1, through an overflow; 7.2 refuses it)
    assert err("LPOS", "kd:l", "a", "RANK", "-9223372036854775808") == "value is out of range"

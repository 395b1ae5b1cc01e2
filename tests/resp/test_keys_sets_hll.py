"""Keys, sets and HyperLogLogs over RESP, side by side with a real redis-server.

Each test runs the same calls on crdtkv's RESP port (``ours``) and on Redis
(``theirs``) and compares the answers: normal use, absent keys, WRONGTYPE,
wrong arity, bad options; RESP3 reply types byte for byte (``Raw``).  Random
commands (SPOP, SRANDMEMBER) are compared by their properties.  The few
places where crdtkv answers otherwise on purpose are tested as such at the
end (``test_known_differences``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis

from crdtkv.client import Client
from crdtkv.resp.args import decode_cursor, encode_cursor, glob_matcher
from crdtkv.resp.values import RespError
from tests.procs import Server, free_port

from .conftest import wait_ping

Call = tuple[Any, ...]


# -- helpers ------------------------------------------------------------------------------------
def run(client: redis.Redis, *args: Any) -> Any:
    """One command; an error reply as ("error", text)."""
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


def norm(reply: Any) -> Any:
    """Order does not count in a set's answer (nor in KEYS')."""
    if isinstance(reply, set | frozenset):
        return ("set", sorted(reply))
    return reply


def same(
    ours: redis.Redis, theirs: redis.Redis, calls: list[Call], *, unordered: bool = False
) -> list[Any]:
    """Each call answers the same on both; returns the answers."""
    out = []
    for call in calls:
        got = [norm(run(c, *call)) for c in (ours, theirs)]
        if unordered:
            got = [sorted(g) if isinstance(g, list) else g for g in got]
        assert got[0] == got[1], (call, got)
        out.append(got[0])
    return out


def both(ours: redis.Redis, theirs: redis.Redis, *calls: Call) -> None:
    """Set-up calls, run on both (their answers are not compared)."""
    for call in calls:
        for c in (ours, theirs):
            c.execute_command(*call)


class Raw:
    """A bare RESP connection: replies as bytes, to compare reply types exactly."""

    def __init__(self, port: int, proto: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if proto == 3:
            self.call("HELLO", "3")

    def call(self, *args: str) -> bytes:
        parts = [a.encode() for a in args]
        self.sock.sendall(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
        reader = hiredis.Reader()
        data = b""
        while True:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            data += chunk
            reader.feed(chunk)
            if reader.gets() is not False:
                return data

    def close(self) -> None:
        self.sock.close()


def wipe(ours: redis.Redis) -> None:
    found = ours.keys("*")
    for i in range(0, len(found), 500):
        ours.delete(*found[i : i + 500])


@pytest.fixture
def pair(ours: redis.Redis, theirs: redis.Redis) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    wipe(ours)
    yield ours, theirs


@pytest.fixture
def http(crdtkv_server: Server) -> Iterator[Client]:
    """The replica's HTTP client: makes hashes and sorted sets (their commands are elsewhere)."""
    with Client([crdtkv_server.url]) as db:
        yield db


def make_hash(ours_http: Client, theirs: redis.Redis, key: str, fields: dict[str, Any]) -> None:
    ours_http.hashes.set(key, fields)
    theirs.hset(key, mapping=fields)


def make_zset(ours_http: Client, theirs: redis.Redis, key: str, scores: dict[str, float]) -> None:
    ours_http.zsets.add(key, scores)
    theirs.zadd(key, scores)


ARITY = "wrong number of arguments for '{}' command"


# -- args: cursors and globs (pure) -------------------------------------------------------------
def test_cursor_round_trip_and_refusals() -> None:
    for s in ["a", "user:1", ">", ">x", "\x00", "é€😀", "k" * 1024]:
        enc = encode_cursor(s)
        assert int(enc) > 0 and decode_cursor(str(enc).encode()) == s
    assert encode_cursor("") == "0" and decode_cursor(b"0") == ""
    for bad in [b"abc", b"-1", b"01", b"", b" 1", b"1.5", b"5", b"9" * 20_000, b"+3"]:
        with pytest.raises(RespError, match="invalid cursor"):
            decode_cursor(bad)
    not_utf8 = str(int.from_bytes(b"\x01\xff\xfe", "big")).encode()
    with pytest.raises(RespError, match="invalid cursor"):
        decode_cursor(not_utf8)


def test_glob_is_redis_glob() -> None:
    cases = {
        ("*", ""): True,
        ("a*", "abc"): True,
        ("a?c", "abc"): True,
        ("a?c", "ac"): False,
        ("[^a]x", "bx"): True,
        ("[^a]x", "ax"): False,
        ("[!a]x", "!x"): True,  # Redis negates with ^ only
        ("[a-c]", "b"): True,
        ("[c-a]", "b"): True,
        ("\\*", "*"): True,
        ("\\*", "a"): False,
        ("[\\]]", "]"): True,
        ("[abc", "b"): True,  # an unclosed class ends with the pattern
        ("**", ""): False,
        ("?", "é"): False,  # one byte, as Redis matches bytes
        ("??", "é"): True,
        ("", ""): True,
    }
    for (p, name), want in cases.items():
        m = glob_matcher(p.encode())
        assert (m is None or m(name)) is want, (p, name)


# -- keys -----------------------------------------------------------------------------------------
def test_del_unlink_exists(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "a", "1"), ("SADD", "s", "x"), ("PFADD", "h", "x"))
    same(
        ours,
        theirs,
        [
            ("EXISTS", "a"),
            ("EXISTS", "a", "a", "nope", "s", "h", "a"),
            ("EXISTS", "nope"),
            ("DEL", "a", "a", "nope"),
            ("EXISTS", "a"),
            ("UNLINK", "s", "h", "nope"),
            ("EXISTS", "s", "h"),
            ("DEL", "nope"),
            ("DEL",),
            ("UNLINK",),
            ("EXISTS",),
        ],
    )
    assert run(ours, "DEL") == ("error", ARITY.format("del"))


def test_type(pair: tuple[redis.Redis, redis.Redis], http: Client) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "str", "v"), ("SADD", "set", "m"), ("INCR", "n"))
    make_hash(http, theirs, "hash", {"f": "v"})
    make_zset(http, theirs, "zset", {"a": 1.0})
    answers = same(
        ours,
        theirs,
        [
            ("TYPE", "str"),
            ("TYPE", "n"),
            ("TYPE", "set"),
            ("TYPE", "hash"),
            ("TYPE", "zset"),
            ("TYPE", "nope"),
            ("TYPE",),
            ("TYPE", "a", "b"),
        ],
    )
    assert answers[:6] == ["string", "string", "set", "hash", "zset", "none"]
    # TYPE is a status reply (+set), in both protocols.
    for proto in (2, 3):
        raws = [Raw(c.connection_pool.connection_kwargs["port"], proto) for c in (ours, theirs)]
        try:
            for key in ("set", "nope"):
                got = [r.call("TYPE", key) for r in raws]
                assert got[0] == got[1] and got[0].startswith(b"+"), got
        finally:
            for r in raws:
                r.close()


def test_expire_options_and_errors(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "s", "x"), ("SADD", "st", "a"))
    same(
        ours,
        theirs,
        [
            ("EXPIRE", "s", "100", "NX", "XX"),
            ("EXPIRE", "s", "100", "GT", "LT"),
            ("EXPIRE", "s", "100", "NX", "GT"),
            ("EXPIRE", "s", "100", "FOO"),
            ("EXPIRE", "s", "abc", "FOO"),  # options first
            ("EXPIRE", "s", "abc"),
            ("EXPIRE", "s", "1.5"),
            ("EXPIRE", "s", "9223372036854775807"),
            ("PEXPIRE", "s", "9223372036854775807"),
            ("EXPIREAT", "s", "9223372036854775807"),
            ("EXPIRE", "s", "-9223372036854775807"),
            ("EXPIRE", "nope", "100"),
            ("EXPIRE", "s"),
            ("PEXPIRE",),
            ("TTL", "s"),
            ("EXPIRE", "s", "100", "XX"),  # no TTL: XX fails
            ("EXPIRE", "s", "100", "GT"),  # no TTL is infinite: GT fails
            ("EXPIRE", "s", "100", "nx"),
            ("TTL", "s"),
            ("EXPIRE", "s", "50", "NX"),
            ("EXPIRE", "s", "200", "LT"),
            ("TTL", "s"),
            ("EXPIRE", "s", "50", "LT"),
            ("TTL", "s"),
            ("EXPIRE", "s", "40", "GT"),
            ("EXPIRE", "s", "300", "GT"),
            ("TTL", "s"),
            ("EXPIRE", "s", "200", "XX"),
            ("TTL", "s"),
            ("EXPIRE", "st", "100", "LT"),  # no TTL is infinite: LT succeeds
            ("TTL", "st"),
            ("PERSIST", "st"),
            ("PERSIST", "st"),
            ("TTL", "st"),
            ("PTTL", "st"),
            ("PERSIST", "nope"),
            ("TTL", "nope"),
            ("PTTL", "nope"),
            ("TTL",),
            ("PTTL", "a", "b"),
            ("PERSIST",),
        ],
    )


def test_expire_in_the_past_deletes(pair: tuple[redis.Redis, redis.Redis], http: Client) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "a", "1"), ("SADD", "b", "x"), ("PFADD", "c", "x"))
    both(ours, theirs, ("SET", "d", "1"), ("SET", "e", "1"), ("SET", "f", "1"))
    make_hash(http, theirs, "g", {"f": 1})
    make_zset(http, theirs, "z", {"m": 2.0})
    same(
        ours,
        theirs,
        [
            ("EXPIRE", "a", "-1"),
            ("PEXPIRE", "b", "0"),
            ("EXPIREAT", "c", "1"),
            ("PEXPIREAT", "d", "1000"),
            ("EXPIREAT", "g", "0"),
            ("PEXPIRE", "z", "-5"),
            ("EXPIRE", "e", "-1", "GT"),  # no TTL: GT refuses, the key stays
            ("EXPIRE", "f", "-1", "LT"),  # LT takes it: the key goes
            ("EXISTS", "a", "b", "c", "d", "e", "f", "g", "z"),
            ("EXPIRE", "a", "-1"),  # gone: 0
        ],
    )


def test_expire_units_and_rounding(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "a", "1"), ("SET", "b", "1"), ("SET", "c", "1"))
    now = int(time.time())
    same(
        ours,
        theirs,
        [
            ("PEXPIRE", "a", "2600"),
            ("TTL", "a"),  # 2.6 s rounds to 3, as Redis rounds
            ("PEXPIRE", "a", "2300"),
            ("TTL", "a"),  # 2.3 s rounds to 2
            ("EXPIREAT", "b", str(now + 100)),
            ("PEXPIREAT", "c", str((now + 50) * 1000)),
        ],
    )
    for c in (ours, theirs):
        assert 2000 < c.pttl("a") <= 2300
        assert 98 <= c.ttl("b") <= 101
        assert 48 <= c.ttl("c") <= 51
    # A TTL survives a read and goes with PERSIST.
    same(ours, theirs, [("GET", "b"), ("PERSIST", "b"), ("TTL", "b"), ("GET", "b")])


def test_an_expired_key_is_gone(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SADD", "s", "a"), ("PEXPIRE", "s", "50"))
    time.sleep(0.2)
    same(ours, theirs, [("EXISTS", "s"), ("TTL", "s"), ("SMEMBERS", "s"), ("TYPE", "s")])


def test_scan_errors_and_options(pair: tuple[redis.Redis, redis.Redis], http: Client) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "k:a", "1"), ("SET", "k:b", "1"), ("SADD", "s:1", "m"))
    make_hash(http, theirs, "h:1", {"f": 1})
    same(
        ours,
        theirs,
        [
            ("SCAN", "abc"),
            ("SCAN", "1.5"),
            ("SCAN", "0", "COUNT", "0"),
            ("SCAN", "0", "COUNT", "-1"),
            ("SCAN", "0", "COUNT", "abc"),
            ("SCAN", "0", "COUNT"),
            ("SCAN", "0", "MATCH"),
            ("SCAN", "0", "TYPE"),
            ("SCAN", "0", "foo", "bar"),
            ("SCAN", "abc", "foo"),  # the cursor first
            ("SCAN", "0", "TYPE", "stream"),  # a type nobody has: nothing
            ("SCAN", "0", "TYPE", "foo"),
            ("SCAN",),
            ("KEYS",),
            ("KEYS", "a", "b"),
        ],
    )
    # Whole answers (one page each: COUNT covers every key), keys in any order.
    for args in [
        (),
        ("MATCH", "k:*"),
        ("MATCH", "*:1"),
        ("MATCH", "[ks]:?"),
        ("TYPE", "string"),
        ("TYPE", "SET"),
        ("TYPE", "hash", "MATCH", "h*"),
        ("MATCH", "nothing*"),
    ]:
        got = []
        for c in (ours, theirs):
            cursor, found = c.execute_command("SCAN", "0", "COUNT", "1000", *args)
            got.append((int(cursor), sorted(found)))
        assert got[0] == got[1], (args, got)
    for pattern in ["*", "k:*", "?:1", "[^k]*", "k\\:a", "nothing"]:
        assert sorted(ours.keys(pattern)) == sorted(theirs.keys(pattern)), pattern


def test_scan_iter_walks_every_key_exactly_once(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, _ = pair
    n = 3000
    names = [f"walk:{i:05d}" for i in range(n)]
    for i in range(0, n, 1000):
        ours.mset({k: "v" for k in names[i : i + 1000]})
    ours.sadd("walk:set", "m")
    for count in (1, 97, 1000):
        seen = list(ours.scan_iter(match="walk:0*", count=count))
        assert len(seen) == n and set(seen) == set(names), count
    seen = list(ours.scan_iter(count=250, _type="set"))
    assert seen == ["walk:set"]
    # A cursor is an integer that redis-py parses, 0 only at the end; pages do not overlap.
    cursor, pages = 0, []
    while True:
        cursor, page = ours.scan(cursor, match="walk:*", count=500)
        assert isinstance(cursor, int) and len(page) <= 500
        pages.append(page)
        if cursor == 0:
            break
    assert sum(map(len, pages)) == n + 1 and len(pages) > 2


def test_rename(pair: tuple[redis.Redis, redis.Redis], http: Client) -> None:
    ours, theirs = pair
    both(
        ours,
        theirs,
        ("SET", "str", "hello"),
        ("SADD", "set", "a", "b", "c"),
        ("PFADD", "hll", "x", "y", "z"),
        ("INCRBY", "num", "41"),
        ("SET", "other", "o"),
    )
    make_hash(http, theirs, "hash", {"f": "v", "n": 3})
    make_zset(http, theirs, "zset", {"a": 1.5, "b": float("-inf")})
    both(ours, theirs, ("EXPIRE", "set", "100"))
    same(
        ours,
        theirs,
        [
            ("RENAME", "nope", "x"),
            ("RENAMENX", "nope", "x"),
            ("RENAME", "str", "str"),
            ("RENAMENX", "str", "str"),
            ("RENAME", "str"),
            ("RENAMENX", "a", "b", "c"),
            ("RENAME", "str", "str2"),
            ("EXISTS", "str"),
            ("GET", "str2"),
            ("RENAME", "set", "other"),  # over a key of another type
            ("TYPE", "other"),
            ("SMEMBERS", "other"),
            ("TTL", "other"),  # the TTL went with it
            ("RENAMENX", "num", "str2"),
            ("RENAMENX", "num", "num2"),
            ("INCR", "num2"),
            ("RENAME", "hash", "hash2"),
            ("EXISTS", "hash2"),
            ("RENAME", "zset", "zset2"),
            ("EXISTS", "zset", "zset2"),
            ("RENAME", "hll", "hll2"),
            ("PFCOUNT", "hll2"),
            ("EXISTS", "hll", "str", "set", "num", "hash"),
        ],
    )
    assert http.hashes.getall("hash2") == {"f": "v", "n": 3}
    assert http.zsets.items("zset2") == [["b", "-inf"], ["a", 1.5]]


def test_flushall_is_refused_unless_enabled(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, _ = pair
    ours.set("keep", "1")
    for cmd in ("FLUSHALL", "FLUSHDB"):
        for args in ((), ("ASYNC",), ("SYNC",)):
            with pytest.raises(redis.ResponseError, match="--enable-flushall"):
                ours.execute_command(cmd, *args)
        with pytest.raises(redis.ResponseError, match="syntax error"):
            ours.execute_command(cmd, "NOW")
    assert ours.get("keep") == "1"


def test_flushall_when_enabled(tmp_path: Path, theirs: redis.Redis) -> None:
    server = Server(
        "f1", tmp_path / "f1", durability="wal", resp_port=free_port(), extra=["--enable-flushall"]
    )
    server.start()
    try:
        ours = redis.Redis(port=server.resp_port, decode_responses=True)
        wait_ping(ours)
        for c in (ours, theirs):
            c.mset({f"k{i}": "v" for i in range(300)})
            c.sadd("s", "a")
            c.pfadd("h", "a")
        same(
            ours,
            theirs,
            [
                ("FLUSHALL", "bogus"),
                ("FLUSHALL", "SYNC", "ASYNC"),
                ("DBSIZE",),
                ("FLUSHALL",),
                ("DBSIZE",),
                ("KEYS", "*"),
                ("SET", "after", "1"),
                ("FLUSHDB", "ASYNC"),
                ("EXISTS", "after"),
            ],
        )
        ours.close()
    finally:
        server.kill9()


# -- sets -----------------------------------------------------------------------------------------
def test_set_commands(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "str", "x"))
    same(
        ours,
        theirs,
        [
            ("SADD", "s", "a", "b", "c", "a"),
            ("SADD", "s", "c", "d"),
            ("SADD", "s", ""),
            ("SADD", "s"),
            ("SADD", "str", "a"),
            ("SREM", "s", "a", "z", "a"),
            ("SREM", "nope", "a"),
            ("SREM", "str", "a"),
            ("SREM", "s"),
            ("SMEMBERS", "s"),
            ("SMEMBERS", "nope"),
            ("SMEMBERS", "str"),
            ("SMEMBERS",),
            ("SCARD", "s"),
            ("SCARD", "nope"),
            ("SCARD", "str"),
            ("SCARD", "s", "t"),
            ("SISMEMBER", "s", "b"),
            ("SISMEMBER", "s", "a"),
            ("SISMEMBER", "s", ""),
            ("SISMEMBER", "nope", "a"),
            ("SISMEMBER", "str", "a"),
            ("SISMEMBER", "s"),
            ("SMISMEMBER", "s", "a", "b", "", "b"),
            ("SMISMEMBER", "nope", "a", "b"),
            ("SMISMEMBER", "str", "a"),
            ("SMISMEMBER", "s"),
            ("SREM", "s", "b", "c", "d", ""),
            ("EXISTS", "s"),  # the last member removed: the set is gone
            ("TYPE", "s"),
            ("SADD", "s", "again"),
            ("SMEMBERS", "s"),
        ],
    )


def test_set_algebra(pair: tuple[redis.Redis, redis.Redis], http: Client) -> None:
    ours, theirs = pair
    both(
        ours,
        theirs,
        ("SADD", "a", "1", "2", "3", "4"),
        ("SADD", "b", "3", "4", "5"),
        ("SADD", "c", "4", "6"),
        ("SET", "str", "x"),
        ("SET", "dst2", "was a string"),
    )
    make_hash(http, theirs, "hash", {"f": 1})
    same(
        ours,
        theirs,
        [
            ("SINTER", "a", "b"),
            ("SINTER", "a", "b", "c"),
            ("SINTER", "a", "nope"),
            ("SINTER", "nope", "str"),  # every key is checked
            ("SINTER", "a", "hash"),
            ("SINTER", "a"),
            ("SINTER",),
            ("SUNION", "a", "b", "c"),
            ("SUNION", "a", "nope"),
            ("SUNION", "nope"),
            ("SUNION", "a", "str"),
            ("SDIFF", "a", "b"),
            ("SDIFF", "a", "b", "c"),
            ("SDIFF", "nope", "a"),
            ("SDIFF", "a", "nope"),
            ("SDIFF", "str", "nope"),
            ("SDIFF", "nope", "str"),
            ("SDIFF",),
            ("SINTERSTORE", "dst", "a", "b"),
            ("SMEMBERS", "dst"),
            ("SUNIONSTORE", "dst2", "a", "c"),  # over a string
            ("TYPE", "dst2"),
            ("SMEMBERS", "dst2"),
            ("SDIFFSTORE", "dst", "a", "b", "c"),
            ("SMEMBERS", "dst"),
            ("SINTERSTORE", "dst", "a", "nope"),  # empty: the destination goes
            ("EXISTS", "dst"),
            ("SUNIONSTORE", "dst", "a", "str"),
            ("SDIFFSTORE", "a", "a", "b"),  # the destination is a source
            ("SMEMBERS", "a"),
            ("SINTERSTORE", "dst"),
            ("SUNIONSTORE",),
        ],
    )


def test_sscan(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    members = [f"m{i}" for i in range(300)] + ["", "x*", "é"]
    both(ours, theirs, ("SADD", "s", *members), ("SET", "str", "x"), ("SADD", "small", "a", "b"))
    same(
        ours,
        theirs,
        [
            ("SSCAN", "s", "abc"),
            ("SSCAN", "nope", "abc"),  # the cursor first
            ("SSCAN", "str", "abc"),
            ("SSCAN", "str", "0"),
            ("SSCAN", "nope", "0"),
            ("SSCAN", "nope", "0", "COUNT", "0"),  # absent: empty, the options unread
            ("SSCAN", "str", "0", "bogus"),
            ("SSCAN", "s", "0", "COUNT", "0"),
            ("SSCAN", "s", "0", "COUNT", "x"),
            ("SSCAN", "s", "0", "MATCH"),
            ("SSCAN", "s", "0", "TYPE", "set"),
            ("SSCAN", "s"),
            ("SSCAN", "small", "0", "MATCH", "a"),
        ],
    )
    for client in (ours, theirs):
        for count in (1, 7, 1000):
            seen = list(client.sscan_iter("s", count=count))
            assert sorted(seen) == sorted(members), count
        assert sorted(client.sscan_iter("s", match="m1?")) == [f"m{i}" for i in range(10, 20)]
        assert list(client.sscan_iter("s", match="x\\*")) == ["x*"]
    # ours pages: each member exactly once, a cursor only between pages
    cursor, page = ours.sscan("s", 0, count=10)
    assert cursor > 0 and len(page) == 10


def test_spop_and_srandmember(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    members = {f"m{i}" for i in range(20)}
    both(ours, theirs, ("SADD", "s", *members), ("SET", "str", "x"), ("SADD", "r", *members))
    same(
        ours,
        theirs,
        [
            ("SPOP", "s", "-1"),
            ("SPOP", "s", "abc"),
            ("SPOP", "s", "1", "2"),
            ("SPOP", "str"),
            ("SPOP", "str", "2"),
            ("SPOP", "nope"),
            ("SPOP", "nope", "3"),
            ("SPOP", "s", "0"),
            ("SPOP",),
            ("SRANDMEMBER", "s", "abc"),
            ("SRANDMEMBER", "s", "-9223372036854775808"),
            ("SRANDMEMBER", "s", "1", "2"),
            ("SRANDMEMBER", "str"),
            ("SRANDMEMBER", "str", "2"),
            ("SRANDMEMBER", "nope"),
            ("SRANDMEMBER", "nope", "5"),
            ("SRANDMEMBER", "nope", "-5"),
            ("SRANDMEMBER", "s", "0"),
            ("SRANDMEMBER",),
        ],
    )
    for c in (ours, theirs):
        one = c.spop("s")
        assert one in members and not c.sismember("s", one)
        some = c.spop("s", 5)
        assert len(some) == 5 and set(some) <= members - {one}
        assert not set(some) & set(c.smembers("s"))
        assert c.scard("s") == 14
        rest = c.spop("s", 100)
        assert sorted(rest + some + [one]) == sorted(members) and not c.exists("s")
        assert c.srandmember("r") in members
        picked = c.srandmember("r", 5)
        assert len(picked) == len(set(picked)) == 5 and set(picked) <= members
        assert sorted(c.srandmember("r", 100)) == sorted(members)
        repeated = c.srandmember("r", -50)
        assert len(repeated) == 50 and set(repeated) <= members
        assert len(set(repeated)) < 50  # 50 picks of 20 members repeat
        assert c.scard("r") == 20  # SRANDMEMBER removes nothing
    # Picks are random: many draws cover the set.
    drawn = {ours.srandmember("r") for _ in range(300)}
    assert len(drawn) >= 15


def test_resp3_reply_types(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    calls: list[tuple[str, ...]] = [
        ("SMEMBERS", "s"),
        ("SMEMBERS", "nope"),
        ("SINTER", "s", "t"),
        ("SUNION", "nope"),
        ("SDIFF", "t", "t"),
        ("SISMEMBER", "s", "a"),
        ("SMISMEMBER", "s", "a", "z"),
        ("SCARD", "s"),
        ("SPOP", "nope"),
        ("SPOP", "nope", "2"),
        ("SPOP", "s", "0"),
        ("SRANDMEMBER", "nope"),
        ("SRANDMEMBER", "nope", "2"),
        ("SRANDMEMBER", "s", "1"),
        ("SRANDMEMBER", "s", "-1"),
        ("SPOP", "s", "1"),
        ("SSCAN", "nope", "0"),
        ("SSCAN", "t", "0", "MATCH", "b"),
        ("TYPE", "t"),
        ("TTL", "t"),
        ("EXISTS", "t"),
        ("PFCOUNT", "h"),
        ("PFADD", "h", "x"),
        ("PFMERGE", "h"),
        ("SCAN", "0", "TYPE", "stream"),
    ]
    for proto in (2, 3):
        both(ours, theirs, ("DEL", "s", "t", "h"))
        both(ours, theirs, ("SADD", "s", "a"), ("SADD", "t", "a", "b"), ("PFADD", "h", "x"))
        raws = [Raw(c.connection_pool.connection_kwargs["port"], proto) for c in (ours, theirs)]
        try:
            for call in calls:
                got = [r.call(*call) for r in raws]
                assert got[0] == got[1], (proto, call, got)
        finally:
            for r in raws:
                r.close()
    # redis-py with protocol=3 sees a set for SMEMBERS
    r3 = redis.Redis(port=ours.connection_pool.connection_kwargs["port"], protocol=3)
    try:
        r3.sadd("s3", "a", "b")
        assert r3.smembers("s3") == {b"a", b"b"}
        assert isinstance(r3.execute_command("SINTER", "s3", "s3"), set)
    finally:
        r3.close()


# -- HyperLogLogs ---------------------------------------------------------------------------------
def test_hll_commands(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("SET", "str", "x"), ("SADD", "set", "a"))
    same(
        ours,
        theirs,
        [
            ("PFADD", "h", "a", "b", "c"),
            ("PFADD", "h", "a", "b"),  # nothing new: 0
            ("PFADD", "h"),  # an existing HLL, no items: 0
            ("PFCOUNT", "h"),
            ("PFCOUNT", "nope"),
            ("PFCOUNT", "h", "nope"),
            ("PFCOUNT", "h", "h", "h"),
            ("PFADD", "g", "c", "d"),
            ("PFCOUNT", "h", "g"),
            ("PFMERGE", "m", "h", "g"),
            ("PFCOUNT", "m"),
            ("PFMERGE", "m", "nope"),
            ("PFCOUNT", "m"),
            ("PFMERGE", "h"),
            ("PFCOUNT", "h"),
            ("PFADD",),
            ("PFCOUNT",),
            ("PFMERGE",),
            # WRONGTYPE: Redis's HLLs are strings, so a string gets its own text
            ("PFADD", "str", "a"),
            ("PFCOUNT", "str"),
            ("PFCOUNT", "h", "str"),
            ("PFMERGE", "h", "str"),
            ("PFMERGE", "str", "h"),
            ("PFADD", "set", "a"),
            ("PFCOUNT", "set"),
            ("PFCOUNT", "set", "str"),
            ("PFCOUNT", "str", "set"),
            ("PFMERGE", "h", "set"),
            ("PFCOUNT", "m"),  # nothing changed
        ],
    )
    # Estimates: close to the truth (the sketches differ, so do their estimates).
    for n in (60, 5000):
        items = [f"i{i}" for i in range(n)]
        counts = []
        for c in (ours, theirs):
            for i in range(0, n, 1000):
                c.pfadd(f"big{n}", *items[i : i + 1000])
            counts.append(c.pfcount(f"big{n}"))
        for got in counts:
            assert abs(got - n) <= max(2, 0.02 * n), (n, counts)


# -- where crdtkv answers otherwise on purpose ----------------------------------------------
def test_known_differences(pair: tuple[redis.Redis, redis.Redis]) -> None:
    ours, theirs = pair
    both(ours, theirs, ("PFADD", "h", "a"))
    # A HyperLogLog is its own type in crdtkv; in Redis it is a string.
    assert (ours.type("h"), theirs.type("h")) == ("hll", "string")
    assert list(ours.scan_iter(_type="hll")) == ["h"]
    assert list(ours.scan_iter(_type="string")) == []
    # An empty HyperLogLog is no key in crdtkv: PFADD with no item, or PFMERGE of
    # absent sources, creates nothing (Redis creates an empty HLL and PFADD says 1).
    assert (run(ours, "PFADD", "e"), run(theirs, "PFADD", "e")) == (0, 1)
    assert (ours.pfmerge("e2", "nope"), theirs.pfmerge("e2", "nope")) == (True, True)
    assert (ours.exists("e", "e2"), theirs.exists("e", "e2")) == (0, 2)
    # Cursors are crdtkv's: a number Redis would take may be refused.
    assert run(ours, "SCAN", "5") == ("error", "invalid cursor")
    # A TTL over ten years is refused (Redis takes it).
    ours.set("k", "v")
    assert run(ours, "EXPIRE", "k", str(11 * 365 * 24 * 3600))[0] == "error"
    assert run(ours, "PEXPIREAT", "k", "9223372036854775807")[0] == "error"
    assert ours.ttl("k") == -1
    # A negative SRANDMEMBER count is bounded.
    ours.sadd("s", "a")
    assert run(ours, "SRANDMEMBER", "s", "-100001")[0] == "error"

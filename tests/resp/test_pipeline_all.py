"""One seeded program over every type's commands, run through redis-py against a real
replica and a real redis-server: command by command, and as one pipeline of 10,000
commands.  Every answer must be the same (errors included, by their text)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import redis

Call = tuple[str, tuple[Any, ...]]

KEYS = 6  # keys per type: small, so commands meet each other's data
MEMBERS = ["a", "b", "c", "d", "e", "f"]


def _program(seed: int, n: int) -> list[Call]:
    rnd = random.Random(seed)

    def k(t: str) -> str:
        return f"pa:{t}:{rnd.randrange(KEYS)}"

    def m() -> str:
        return rnd.choice(MEMBERS)

    def num() -> int:
        return rnd.randrange(-50, 50)

    makers: list[Callable[[], Call]] = [
        # strings
        lambda: ("set", (k("s"), str(num()))),
        lambda: ("get", (k("s"),)),
        lambda: ("incr", (k("s"),)),
        lambda: ("incrby", (k("s"), num())),
        lambda: ("decrby", (k("s"), num())),
        lambda: ("append", (k("s"), m())),
        lambda: ("strlen", (k("s"),)),
        lambda: ("getset", (k("s"), str(num()))),
        lambda: ("getdel", (k("s"),)),
        lambda: ("setnx", (k("s"), m())),
        lambda: ("mget", ([k("s"), k("s"), k("h")],)),
        lambda: ("mset", ({k("s"): m(), k("s"): str(num())},)),
        # hashes
        lambda: ("hset", (k("h"),), {"mapping": {m(): str(num()), m(): m()}}),
        lambda: ("hget", (k("h"), m())),
        lambda: ("hmget", (k("h"), [m(), m()])),
        lambda: ("hgetall", (k("h"),)),
        lambda: ("hlen", (k("h"),)),
        lambda: ("hexists", (k("h"), m())),
        lambda: ("hdel", (k("h"), m(), m())),
        lambda: ("hincrby", (k("h"), m(), num())),
        lambda: ("hstrlen", (k("h"), m())),
        lambda: ("hsetnx", (k("h"), m(), m())),
        lambda: ("hkeys", (k("h"),)),
        # sorted sets
        lambda: ("zadd", (k("z"), {m(): num(), m(): num()})),
        lambda: ("zincrby", (k("z"), num(), m())),
        lambda: ("zscore", (k("z"), m())),
        lambda: ("zrank", (k("z"), m())),
        lambda: ("zrevrank", (k("z"), m())),
        lambda: ("zrange", (k("z"), 0, -1), {"withscores": True}),
        lambda: ("zrangebyscore", (k("z"), -20, 20)),
        lambda: ("zcount", (k("z"), "-inf", "+inf")),
        lambda: ("zcard", (k("z"),)),
        lambda: ("zrem", (k("z"), m())),
        lambda: ("zpopmin", (k("z"),)),
        # sets
        lambda: ("sadd", (k("t"), m(), m())),
        lambda: ("srem", (k("t"), m())),
        lambda: ("smembers", (k("t"),)),
        lambda: ("sismember", (k("t"), m())),
        lambda: ("smismember", (k("t"), [m(), m()])),
        lambda: ("scard", (k("t"),)),
        lambda: ("sinter", ([k("t"), k("t")],)),
        lambda: ("sunion", ([k("t"), k("t")],)),
        lambda: ("sdiff", ([k("t"), k("t")],)),
        # keys, across types (WRONGTYPE included)
        lambda: ("delete", (k(rnd.choice("shzt")),)),
        lambda: ("exists", (k("s"), k("h"), k("z"))),
        lambda: ("type", (k(rnd.choice("shzt")),)),
        lambda: ("get", (k(rnd.choice("hzt")),)),
        lambda: ("hget", (k(rnd.choice("szt")), m())),
        lambda: ("sadd", (k(rnd.choice("shz")), m())),
        lambda: ("persist", (k("s"),)),
    ]
    out = []
    for _ in range(n):
        call = rnd.choice(makers)()
        out.append(call)
    return out


def _normal(name: str, value: Any) -> Any:
    """Answers as comparable values: hash fields and set members are unordered (Redis
    keeps a small hash in insertion order, crdtkv in field order)."""
    if isinstance(value, set) or (
        name in ("hkeys", "sinter", "sunion", "sdiff") and isinstance(value, list)
    ):
        return sorted(value)
    if isinstance(value, redis.ResponseError):
        return ("error", str(value))
    return value


def _plain(client: redis.Redis, program: list[Call]) -> list[Any]:
    out = []
    for name, args, *kw in program:
        try:
            out.append(_normal(name, getattr(client, name)(*args, **(kw[0] if kw else {}))))
        except redis.ResponseError as e:
            out.append(("error", str(e)))
    return out


def _pipelined(client: redis.Redis, program: list[Call]) -> list[Any]:
    with client.pipeline(transaction=False) as pipe:
        for name, args, *kw in program:
            getattr(pipe, name)(*args, **(kw[0] if kw else {}))
        answers = pipe.execute(raise_on_error=False)
    return [_normal(name, a) for (name, *_), a in zip(program, answers, strict=True)]


def _clean(client: redis.Redis) -> None:
    keys = list(client.scan_iter("pa:*", count=1000))
    if keys:
        client.delete(*keys)


def _first_difference(ours: list[Any], theirs: list[Any], program: list[Call]) -> str:
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        if a != b:
            return f"command {i} {program[i]}: crdtkv {a!r}, redis {b!r}"
    return ""


def test_every_type_command_by_command(ours: redis.Redis, theirs: redis.Redis) -> None:
    program = _program(1, 1_500)
    for client in (ours, theirs):
        _clean(client)
    got = [_plain(c, program) for c in (ours, theirs)]
    assert got[0] == got[1], _first_difference(got[0], got[1], program)
    assert any(isinstance(a, tuple) and a[0] == "error" for a in got[0])  # WRONGTYPE ran


def test_every_type_in_one_pipeline_of_10000(ours: redis.Redis, theirs: redis.Redis) -> None:
    program = _program(2, 10_000)
    for client in (ours, theirs):
        _clean(client)
    got = [_pipelined(c, program) for c in (ours, theirs)]
    assert len(got[0]) == 10_000
    assert got[0] == got[1], _first_difference(got[0], got[1], program)
    # The same state afterwards, read back key by key.
    for t, read in (("s", "get"), ("h", "hgetall"), ("z", "zrange"), ("t", "smembers")):
        for i in range(KEYS):
            key = f"pa:{t}:{i}"
            args: tuple[Any, ...] = (key, 0, -1) if read == "zrange" else (key,)
            answers = []
            for client in (ours, theirs):
                try:
                    answers.append(_normal(read, getattr(client, read)(*args)))
                except redis.ResponseError as e:
                    answers.append(("error", str(e)))
            assert answers[0] == answers[1], (key, answers)

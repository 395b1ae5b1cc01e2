"""Hash and sorted-set commands against a real redis-server, side by side.

The same random sequences of calls go to a redis-server (through redis-py)
and to a replica through the op table (what HTTP, the batch and the client
run): every answer, refusal included, and the value after every call must
agree.  Where crdtkv answers in JSON and Redis in strings (hash values,
scores), the comparison goes through the number.  Needs ``redis-server``
(Debian package ``redis-server``); without it the module is skipped with
that message.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from crdtkv.errors import CrdtkvError, NotFound
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from tests.procs import free_port

NOW = 1_700_000_000_000
MEMBERS = ["a", "b", "c", "d", "e"]
SEEDS = range(12)
STEPS = 60

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server is not installed (apt-get install redis-server)",
)


@pytest.fixture(scope="module")
def rds() -> Iterator[redis.Redis]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


class Pair:
    """One key at Redis and at a crdtkv replica."""

    def __init__(self, rds: redis.Redis) -> None:
        self.rds = rds
        self.replica = Replica("r1", "inc1")
        rds.flushall()

    def ours(self, op: dict[str, Any]) -> Any:
        try:
            return apply_op(self.replica, op, NOW)
        except CrdtkvError as e:
            return ("error", e.message)

    def read(self, op: dict[str, Any], absent: Any) -> Any:
        """A read; ``absent`` for an absent key (crdtkv's HTTP answers those 404, where
        Redis answers an empty value: the only difference of shape, and a documented one)."""
        try:
            return apply_op(self.replica, op, NOW)
        except NotFound:
            return absent
        except CrdtkvError as e:
            return ("error", e.message)

    def theirs(self, *args: Any) -> Any:
        try:
            return self.rds.execute_command(*args)
        except redis.ResponseError as e:
            return ("error", str(e).removeprefix("ERR "))


def _num(x: Any) -> float | None:
    return None if x is None else float(x)


# -- sorted sets --------------------------------------------------------------------------------

FLAG_SETS = [(), ("NX",), ("XX",), ("GT",), ("LT",), ("CH",), ("XX", "GT"), ("XX", "LT"),
             ("GT", "CH"), ("NX", "CH"), ("XX", "CH"), ("NX", "GT"), ("NX", "XX")]  # fmt: skip


def _zadd(p: Pair, rng: random.Random) -> None:
    flags = list(rng.choice(FLAG_SETS))
    incr = rng.random() < 0.3
    n = 1 if incr else rng.randint(1, 3)
    pairs = {m: float(rng.randint(-3, 3)) / 2 for m in rng.sample(MEMBERS, n)}
    args: list[Any] = ["ZADD", "z", *flags, *(["INCR"] if incr else [])]
    for m, s in pairs.items():
        args += [s, m]
    theirs = p.theirs(*args)
    op: dict[str, Any] = {"op": "zsets.add", "key": "z", "scores": pairs}
    op |= {f.lower(): True for f in flags} | ({"incr": True} if incr else {})
    ours = p.ours(op)
    where = (args, ours, theirs)
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and ours[1] == theirs[1], where
    elif incr:
        assert _num(ours["score"]) == _num(theirs), where
    else:
        assert ours["added"] == theirs, where


def _zincrby(p: Pair, rng: random.Random) -> None:
    m, by = rng.choice(MEMBERS), float(rng.randint(-4, 4)) / 4
    theirs = p.theirs("ZINCRBY", "z", by, m)
    ours = p.ours({"op": "zsets.incr", "key": "z", "member": m, "increment": by})
    assert ours["score"] == float(theirs), (m, by, ours, theirs)


def _zrem(p: Pair, rng: random.Random) -> None:
    ms = rng.sample(MEMBERS, rng.randint(1, 2))
    theirs = p.theirs("ZREM", "z", *ms)
    ours = p.ours({"op": "zsets.remove", "key": "z", "members": ms})
    assert ours["removed"] == theirs, (ms, ours, theirs)


def _zpopmin(p: Pair, rng: random.Random) -> None:
    count = rng.randint(1, 2)
    theirs = p.theirs("ZPOPMIN", "z", count)
    ours = p.read({"op": "zsets.popmin", "key": "z", "count": count}, {"items": []})
    got = [[m, s] for m, s in ours["items"]]
    assert got == [[m, float(s)] for m, s in theirs], (ours, theirs)


def _check_zset(p: Pair, rng: random.Random) -> None:
    theirs = p.theirs("ZRANGE", "z", 0, -1, "WITHSCORES")
    op = {"op": "zsets.range", "key": "z", "start": 0, "stop": -1, "withscores": True}
    items = p.read(op, {"items": []})["items"]
    assert [(m, float(s)) for m, s in items] == [(m, float(s)) for m, s in theirs]
    lo, hi = sorted(rng.choice(["-inf", "+inf", "(0", "0", "1", "(-1", "0.5"]) for _ in "xy")
    off, lim = rng.randint(0, 2), rng.choice([1, 2, -1])
    theirs = p.theirs("ZRANGEBYSCORE", "z", lo, hi, "WITHSCORES", "LIMIT", off, lim)
    ours = p.read({"op": "zsets.rangebyscore", "key": "z", "min": lo, "max": hi,
                   "offset": off, "limit": lim, "withscores": True}, {"items": []})  # fmt: skip
    got = ours if isinstance(ours, tuple) else [(m, float(s)) for m, s in ours["items"]]
    want = theirs if isinstance(theirs, tuple) else [(m, float(s)) for m, s in theirs]
    assert got == want, (lo, hi, off, lim, ours, theirs)
    theirs = p.theirs("ZCOUNT", "z", lo, hi)
    ours = p.read({"op": "zsets.count", "key": "z", "min": lo, "max": hi}, {"count": 0})
    assert (ours if isinstance(ours, tuple) else ours["count"]) == theirs, (lo, hi)
    m = rng.choice(MEMBERS)
    score, rank = p.theirs("ZSCORE", "z", m), p.theirs("ZRANK", "z", m)
    ours = p.read({"op": "zsets.member", "key": "z", "member": m}, {"score": None})
    if score is None:
        assert ours.get("score") is None, (m, ours)
    else:
        assert (ours["score"], ours["rank"]) == (float(score), rank), (m, ours, score, rank)
    card = p.theirs("ZCARD", "z")
    ours = p.read({"op": "zsets.card", "key": "z"}, {"size": 0})
    assert next(iter(ours.values())) == card, ours


@pytest.mark.parametrize("seed", SEEDS)
def test_sorted_set_commands_answer_as_redis(rds: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    p = Pair(rds)
    steps = [_zadd] * 5 + [_zincrby, _zrem, _zpopmin]
    for _ in range(STEPS):
        rng.choice(steps)(p, rng)
        _check_zset(p, rng)


# -- hashes ---------------------------------------------------------------------------------------

VALUES = ["1", "-2", "10", "x", "3.5", "7"]


def _hash_value(v: Any) -> float | str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else str(v)


def _hset(p: Pair, rng: random.Random) -> None:
    fields = {f: rng.choice(VALUES) for f in rng.sample(MEMBERS, rng.randint(1, 3))}
    nx = rng.random() < 0.2 and len(fields) == 1
    if nx:
        ((f, v),) = fields.items()
        theirs = p.theirs("HSETNX", "h", f, v)
        ours = p.ours({"op": "hashes.setnx", "key": "h", "fields": fields})
    else:
        theirs = p.theirs("HSET", "h", *[x for kv in fields.items() for x in kv])
        ours = p.ours({"op": "hashes.set", "key": "h", "fields": fields})
    assert ours["added"] == theirs, (fields, nx, ours, theirs)


def _hincr(p: Pair, rng: random.Random) -> None:
    f = rng.choice(MEMBERS)
    if rng.random() < 0.5:
        by: Any = rng.randint(-5, 5)
        theirs = p.theirs("HINCRBY", "h", f, by)
        ours = p.ours({"op": "hashes.incr", "key": "h", "field": f, "delta": by})
    else:
        by = rng.choice([0.5, -1.25, 2.0])
        theirs = p.theirs("HINCRBYFLOAT", "h", f, by)
        ours = p.ours({"op": "hashes.incrfloat", "key": "h", "field": f, "increment": by})
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple), (f, by, ours, theirs)
    else:
        assert not isinstance(ours, tuple), (f, by, ours, theirs)
        assert _hash_value(ours["value"]) == _hash_value(theirs), (f, by, ours, theirs)


def _hdel(p: Pair, rng: random.Random) -> None:
    fs = rng.sample(MEMBERS, rng.randint(1, 2))
    theirs = p.theirs("HDEL", "h", *fs)
    ours = p.ours({"op": "hashes.remove", "key": "h", "names": fs})
    assert ours["removed"] == theirs, (fs, ours, theirs)


def _check_hash(p: Pair, rng: random.Random) -> None:
    theirs = p.theirs("HGETALL", "h")
    fields = p.read({"op": "hashes.getall", "key": "h"}, {"fields": {}})["fields"]
    assert {f: _hash_value(v) for f, v in fields.items()} == {
        f: _hash_value(v) for f, v in theirs.items()
    }
    size = p.read({"op": "hashes.len", "key": "h"}, {"size": 0})
    assert next(iter(size.values())) == p.theirs("HLEN", "h"), size
    f = rng.choice(MEMBERS)
    exists = p.read({"op": "hashes.exists", "key": "h", "field": f}, {"exists": False})
    assert bool(next(iter(exists.values()))) == bool(p.theirs("HEXISTS", "h", f))


@pytest.mark.parametrize("seed", SEEDS)
def test_hash_commands_answer_as_redis(rds: redis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    p = Pair(rds)
    steps = [_hset] * 3 + [_hincr] * 2 + [_hdel]
    for _ in range(STEPS):
        rng.choice(steps)(p, rng)
        _check_hash(p, rng)

"""Vector sets over RESP against a real ``crdtkv serve`` (redis-py, RESP2 and RESP3):
VADD, VREM, VSIM, VCARD, VDIM, VEMB, VGETATTR, VSETATTR, VISMEMBER, VRANDMEMBER, VINFO,
and TYPE / DEL / EXISTS / RENAME / SCAN TYPE of a vector set.

The replies and error texts are Redis 8's (modules/vector-sets/vset.c; this machine's
redis-server has no vector sets, so they are written down here).  Several cases are
ports of that module's tests (tests/basic_commands.py, vemb.py, vismember.py,
vrandmember.py, epsilon.py, with.py, node_update.py).  Searches are on small sets, or
with TRUTH, where the answer is exact."""

from __future__ import annotations

import json
import math
import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from redis.commands.vectorset.commands import QuantizationOptions

from tests.procs import Server
from tests.resp.conftest import wait_ping

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
INVALID = "ERR invalid vector specification"
MISMATCH_3 = "ERR Vector dimension mismatch - got 3 but set has 2"


def f32(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


class Wire:
    """A bare RESP connection: commands out, replies parsed without redis-py's reply
    callbacks (which turn some integers into bools, and strip ``ERR`` off errors)."""

    def __init__(self, port: int, proto: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""
        self.decode = True  # bulk strings as str (False: bytes)
        if proto == 3:
            assert isinstance(self("HELLO", 3), dict)

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: Any) -> None:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def __call__(self, *args: Any) -> Any:
        self.send(*args)
        return self.reply()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> Any:
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return Status(rest.decode())
        if t == b"-":
            return Err(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            if rest == b"-1":
                return None
            data = self._exact(int(rest))
            return data.decode() if self.decode else data
        if t in (b"*", b"~"):
            return None if rest == b"-1" else [self.reply() for _ in range(int(rest))]
        if t == b"%":
            return {self.reply(): self.reply() for _ in range(int(rest))}
        if t == b"_":
            return None
        if t == b",":
            return Double(rest.decode())
        if t == b"#":
            return rest == b"t"
        raise AssertionError(f"unexpected reply {line!r}")


class Status(str):
    """A simple string reply."""


class Err(str):
    """An error reply."""


class Double(float):
    """A RESP3 double (``,``)."""

    def __new__(cls, text: str) -> Double:
        return super().__new__(cls, float(text))


@pytest.fixture
def w2(crdtkv_server: Server) -> Iterator[Wire]:
    assert crdtkv_server.resp_port is not None
    w = Wire(crdtkv_server.resp_port)
    yield w
    w.close()


@pytest.fixture
def w3(crdtkv_server: Server) -> Iterator[Wire]:
    assert crdtkv_server.resp_port is not None
    w = Wire(crdtkv_server.resp_port, proto=3)
    yield w
    w.close()


def as_f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


@pytest.fixture
def r3(crdtkv_server: Server) -> Iterator[redis.Redis]:
    """A RESP3 client (HELLO 3), strings decoded."""
    assert crdtkv_server.resp_port is not None
    client = redis.Redis(port=crdtkv_server.resp_port, protocol=3, decode_responses=True)
    wait_ping(client)
    yield client
    client.close()


@pytest.fixture
def raw(crdtkv_server: Server) -> Iterator[redis.Redis]:
    """A RESP2 client answering bytes, and without redis-py's reply callbacks."""
    assert crdtkv_server.resp_port is not None
    client = redis.Redis(port=crdtkv_server.resp_port)
    wait_ping(client)
    yield client
    client.close()


# -- the basics (basic_commands.py, vemb.py, vismember.py) -------------------------------------
def test_add_dim_card_emb_rem(w2: Wire) -> None:
    k = "vs:basic"
    assert w2("VADD", k, "FP32", f32(1, 0.1, 0, 0), "a") == 1
    assert w2("VADD", k, "VALUES", 4, 0, 1, 0, "0.5", "b") == 1
    assert w2("VDIM", k) == 4
    assert w2("VCARD", k) == 2
    assert w2("TYPE", k) == "vectorset"
    # the vector as written, as float32 values
    assert [float(x) for x in w2("VEMB", k, "a")] == [1.0, as_f32(0.1), 0, 0]
    assert [float(x) for x in w2("VEMB", k, "b")] == [0, 1, 0, 0.5]
    # an update answers 0 and replaces the vector (node_update.py)
    assert w2("VADD", k, "VALUES", 4, 0, 0, 2, 0, "a") == 0
    assert [float(x) for x in w2("VEMB", k, "a")] == [0, 0, 2, 0]
    assert w2("VCARD", k) == 2
    assert w2("VISMEMBER", k, "a") == 1
    assert w2("VISMEMBER", k, "zz") == 0
    assert w2("VEMB", k, "zz") is None
    assert w2("VREM", k, "a") == 1
    assert w2("VREM", k, "a") == 0
    assert w2("VISMEMBER", k, "a") == 0
    assert w2("VCARD", k) == 1
    # removing the last element deletes the key, as Redis
    assert w2("VREM", k, "b") == 1
    assert w2("EXISTS", k) == 0
    assert w2("TYPE", k) == "none"


def test_resp3_booleans_and_doubles(w3: Wire, w2: Wire) -> None:
    k = "vs:resp3"
    added = w3("VADD", k, "VALUES", 2, 1, 0, "a")
    assert added is True  # RedisModule_ReplyWithBool: #t in RESP3
    assert w3("VADD", k, "VALUES", 2, 3, 4, "a") is False
    assert w3("VISMEMBER", k, "a") is True
    assert w3("VISMEMBER", k, "b") is False
    assert w3("VSETATTR", k, "b", "{}") is False
    assert w3("VEMB", k, "a") == [3.0, 4.0]  # doubles
    assert w3("VREM", k, "a") is True
    # RESP2: integers 1 / 0
    assert w2("VADD", k, "VALUES", 1, 1, "b") == 1
    assert w2("VISMEMBER", k, "b") == 1
    assert w2("VREM", k, "b") == 1
    assert w2("VREM", k, "b") == 0


# -- missing keys and wrong types ---------------------------------------------------------------
MISSING: list[tuple[tuple[Any, ...], Any]] = [
    (("VCARD", "vs:none"), 0),
    (("VSIM", "vs:none", "VALUES", 2, 1, 0), []),
    (("VSIM", "vs:none", "ELE", "a", "BOGUS", "COUNT", 0), []),  # the key comes first
    (("VEMB", "vs:none", "a"), None),
    (("VGETATTR", "vs:none", "a"), None),
    (("VISMEMBER", "vs:none", "a"), 0),
    (("VREM", "vs:none", "a"), 0),
    (("VSETATTR", "vs:none", "a", "{}"), 0),
    (("VRANDMEMBER", "vs:none"), None),
    (("VRANDMEMBER", "vs:none", 3), []),
    (("VINFO", "vs:none"), None),
]


@pytest.mark.parametrize(("args", "want"), MISSING, ids=lambda x: str(x)[:40])
def test_missing_key(w2: Wire, args: tuple[Any, ...], want: Any) -> None:
    assert w2(*args) == want


def test_missing_key_resp3(w3: Wire) -> None:
    assert w3("VINFO", "vs:none") is None
    assert w3("VISMEMBER", "vs:none", "a") is False
    assert w3("VSIM", "vs:none", "ELE", "a", "WITHSCORES") == []
    assert w3("VDIM", "vs:none") == "ERR key does not exist"


WRONG_TYPE_COMMANDS: list[tuple[Any, ...]] = [
    ("VADD", "{k}", "VALUES", 2, 1, 0, "a"),
    ("VREM", "{k}", "a"),
    ("VSIM", "{k}", "VALUES", 2, 1, 0),
    ("VCARD", "{k}"),
    ("VDIM", "{k}"),
    ("VEMB", "{k}", "a"),
    ("VGETATTR", "{k}", "a"),
    ("VSETATTR", "{k}", "a", "{}"),
    ("VISMEMBER", "{k}", "a"),
    ("VRANDMEMBER", "{k}"),
    ("VRANDMEMBER", "{k}", 2),
    ("VINFO", "{k}"),
]


@pytest.mark.parametrize("args", WRONG_TYPE_COMMANDS, ids=lambda a: " ".join(map(str, a[:3])))
def test_wrongtype(w2: Wire, args: tuple[Any, ...]) -> None:
    w2("SET", "vs:string", "x")
    w2("RPUSH", "vs:list", "x")
    for k in ("vs:string", "vs:list"):
        argv = [k if a == "{k}" else a for a in args]
        assert w2(*argv) == WRONGTYPE
    # and the other way: a vector set is the wrong kind for the other types
    w2("VADD", "vs:typed", "VALUES", 2, 1, 0, "a")
    assert w2("GET", "vs:typed") == WRONGTYPE
    assert w2("SADD", "vs:typed", "m") == WRONGTYPE
    assert w2("LPUSH", "vs:typed", "m") == WRONGTYPE


# -- errors: Redis's texts ----------------------------------------------------------------------
ERRORS: list[tuple[tuple[Any, ...], str]] = [
    # arity
    (("VADD", "{k}", "VALUES", 2), "ERR wrong number of arguments for 'vadd' command"),
    (("VADD", "{k}", "VALUES", 2, 1, 0), "ERR wrong number of arguments for 'vadd' command"),
    (("VSIM", "{k}", "ELE"), "ERR wrong number of arguments for 'vsim' command"),
    (("VREM", "{k}"), "ERR wrong number of arguments for 'vrem' command"),
    (("VREM", "{k}", "a", "b"), "ERR wrong number of arguments for 'vrem' command"),
    (("VCARD", "{k}", "x"), "ERR wrong number of arguments for 'vcard' command"),
    (("VRANDMEMBER", "{k}", 1, 2), "ERR wrong number of arguments for 'vrandmember' command"),
    (("VSETATTR", "{k}", "a"), "ERR wrong number of arguments for 'vsetattr' command"),
    # vectors
    (("VADD", "{k}", "VALUES", 3, 1, 0, "a"), INVALID),  # "a" is not a number
    (("VADD", "{k}", "VALUES", "x", 1, 0, "a"), INVALID),
    (("VADD", "{k}", "FP32", b"\x00\x00\x80", "a"), INVALID),
    (("VADD", "{k}", "FLOATS", f32(1, 0), "a"), INVALID),
    (("VADD", "{k}", "VALUES", 2, 1, "nan", "a"), INVALID),
    (("VSIM", "{k}", "VALUES", 3, 1, 0), INVALID),
    (("VSIM", "{k}", "VECTOR", 1), INVALID),
    # dimensions: the set's are 2
    (
        ("VADD", "{k}", "VALUES", 3, 1, 0, 0, "c"),
        "ERR Vector dimension mismatch - got 3 but set has 2",
    ),
    (("VADD", "{k}", "FP32", f32(1), "c"), "ERR Vector dimension mismatch - got 1 but set has 2"),
    (("VSIM", "{k}", "VALUES", 1, 1), "ERR Vector dimension mismatch - got 1 but set has 2"),
    (("VSIM", "{k}", "FP32", f32(1, 2, 3)), "ERR Vector dimension mismatch - got 3 but set has 2"),
    # options
    (("VADD", "{k}", "VALUES", 2, 1, 0, "a", "EF", 0), "ERR invalid EF"),
    (("VADD", "{k}", "VALUES", 2, 1, 0, "a", "M", 2), "ERR invalid M"),
    (("VADD", "{k}", "VALUES", 2, 1, 0, "a", "SETATTR"), "ERR invalid option after element"),
    (("VADD", "{k}", "VALUES", 2, 1, 0, "a", "b"), "ERR invalid option after element"),
    (("VSIM", "{k}", "ELE", "zz"), "ERR element not found in set"),
    (("VSIM", "{k}", "ELE", "a", "COUNT", 0), "ERR invalid COUNT"),
    (("VSIM", "{k}", "ELE", "a", "EPSILON", 0), "ERR invalid EPSILON"),
    (("VSIM", "{k}", "ELE", "a", "EF", 0), "ERR invalid EF"),
    (("VSIM", "{k}", "ELE", "a", "FILTER-EF", -1), "ERR invalid FILTER-EF"),
    (("VSIM", "{k}", "ELE", "a", "COUNT"), "ERR syntax error in VSIM command"),
    (("VSIM", "{k}", "ELE", "a", "LIMIT", 1), "ERR syntax error in VSIM command"),
    (("VEMB", "{k}", "a", "RAWW"), "ERR invalid option"),
    (("VRANDMEMBER", "{k}", "x"), "ERR COUNT value is not an integer"),
    (("VRANDMEMBER", "{k}", -(2**63)), "ERR value is out of range"),
    # the set's index settings (created with the defaults: Q8, M 16)
    (
        ("VADD", "{k}", "VALUES", 2, 1, 0, "c", "NOQUANT"),
        "ERR asked quantization mismatch with existing vector set",
    ),
    (
        ("VADD", "{k}", "VALUES", 2, 1, 0, "c", "M", 32),
        "ERR asked M value mismatch with existing vector set",
    ),
]


@pytest.fixture
def two_d(w2: Wire) -> str:
    k = "vs:errors"
    w2("DEL", k)
    w2("VADD", k, "VALUES", 2, 1, 0, "a")
    w2("VADD", k, "VALUES", 2, 0, 1, "b")
    return k


@pytest.mark.parametrize(("args", "text"), ERRORS, ids=lambda x: str(x)[:50])
def test_errors(w2: Wire, two_d: str, args: tuple[Any, ...], text: str) -> None:
    argv = [two_d if a == "{k}" else a for a in args]
    got = w2(*argv)
    assert isinstance(got, Err) and got == text
    # nothing changed
    assert w2("VCARD", two_d) == 2
    assert w2("VISMEMBER", two_d, "c") == 0


@pytest.mark.parametrize(
    ("args", "starts"),
    [
        (("VADD", "{k}", "REDUCE", 1, "VALUES", 2, 1, 0, "c"), "ERR REDUCE is not supported"),
        (("VADD", "{k}", "VALUES", 2, 1, 0, "c", "SETATTR", "not json"), "ERR attributes are"),
        (("VADD", "{k}", "VALUES", 2, 1, 0, "c", "SETATTR", "[1]"), "ERR attributes are"),
        (("VSETATTR", "{k}", "a", "{bad"), "ERR attributes are"),
        (("VADD", "{k}", "VALUES", 2, 1, "inf", "c"), INVALID + ": "),
        (("VADD", "{new}", "VALUES", 2, 1, 0, "c", "M", 200), "ERR invalid M: crdtkv"),
        (("VADD", "{new}", "VALUES", 2, 0, 0, "c"), INVALID + ": every component is zero"),
        (("VADD", "{k}", "VALUES", 2, 1, 0, b"\xff\xfe"), "ERR crdtkv keys, members"),
        (("VRANDMEMBER", "{k}", -200_000), "ERR VRANDMEMBER answers at most 100000"),
    ],
    ids=lambda x: str(x)[:50],
)
def test_crdtkv_refusals(w2: Wire, two_d: str, args: tuple[Any, ...], starts: str) -> None:
    """Where crdtkv refuses what Redis takes: a clear error, and nothing changes."""
    w2("DEL", "vs:new")
    argv = [two_d if a == "{k}" else "vs:new" if a == "{new}" else a for a in args]
    got = w2(*argv)
    assert isinstance(got, Err) and got.startswith(starts)
    assert w2("VCARD", two_d) == 2
    assert w2("VGETATTR", two_d, "a") is None
    assert w2("EXISTS", "vs:new") == 0


def test_cas_nothread_accepted(w2: Wire, two_d: str) -> None:
    assert w2("VADD", two_d, "VALUES", 2, 1, 1, "c", "CAS", "Q8", "M", 16) == 1
    got = w2("VSIM", two_d, "ELE", "c", "NOTHREAD", "TRUTH", "COUNT", 1)
    assert got == ["c"]


# -- VSIM (epsilon.py, with.py) -----------------------------------------------------------------
@pytest.fixture
def plane(w2: Wire) -> str:
    """epsilon.py's set, without its zero vector (crdtkv refuses one: it has no direction)."""
    k = "vs:plane"
    w2("DEL", k)
    for name, x, y in [("a", 1, 1), ("b", 0, 1), ("d", 0, -1), ("e", -1, -1)]:
        w2("VADD", k, "VALUES", 2, x, y, name)
    w2("VSETATTR", k, "a", '{"n": 1, "tag": "x"}')
    w2("VSETATTR", k, "d", '{"n": 4}')
    return k


def test_vsim_scores_and_epsilon(w2: Wire, plane: str) -> None:
    got = w2("VSIM", plane, "VALUES", 2, 1, 1, "WITHSCORES")
    names, scores = got[0::2], [float(s) for s in got[1::2]]
    assert names == ["a", "b", "d", "e"]
    cos45 = math.sqrt(0.5)
    assert scores == pytest.approx([1.0, (1 + cos45) / 2, (1 - cos45) / 2, 0.0], abs=1e-6)
    assert scores[0] == 1.0  # identical: exactly 1
    # EPSILON: a maximum distance (1 - score)
    got = w2("VSIM", plane, "VALUES", 2, 1, 1, "EPSILON", "0.5")
    assert got == ["a", "b"]
    assert w2("VSIM", plane, "VALUES", 2, 1, 1, "EPSILON", "0.001") == ["a"]
    assert len(w2("VSIM", plane, "VALUES", 2, 1, 1, "EPSILON", 1)) == 4
    # COUNT, ELE, FP32, TRUTH: the same order
    assert w2("VSIM", plane, "ELE", "a", "COUNT", 2) == ["a", "b"]
    assert w2("VSIM", plane, "FP32", f32(0, -3), "COUNT", 1, "TRUTH") == ["d"]
    assert w2("VSIM", plane, "ele", "e", "count", 10) == ["e", "d", "b", "a"]


def test_vsim_shapes_resp2(w2: Wire, plane: str) -> None:
    q = ("VSIM", plane, "ELE", "a", "COUNT", 2)
    assert w2(*q, "WITHATTRIBS") == ["a", '{"n":1,"tag":"x"}', "b", None]
    got = w2(*q, "WITHSCORES", "WITHATTRIBS")
    assert got[0::3] == ["a", "b"] and got[2::3] == ['{"n":1,"tag":"x"}', None]
    assert float(got[1]) == 1.0
    # the options in another order: the same reply
    assert w2(*q, "WITHATTRIBS", "WITHSCORES") == got


def test_vsim_shapes_resp3(w3: Wire, plane: str) -> None:
    q = ("VSIM", plane, "ELE", "a", "COUNT", 2)
    assert w3(*q) == ["a", "b"]
    scores = w3(*q, "WITHSCORES")
    assert isinstance(scores, dict) and list(scores) == ["a", "b"]
    assert scores["a"] == 1.0 and isinstance(scores["b"], float)
    attrs = w3(*q, "WITHATTRIBS")
    assert attrs == {"a": '{"n":1,"tag":"x"}', "b": None}
    both = w3(*q, "WITHSCORES", "WITHATTRIBS")
    assert both == {"a": [1.0, '{"n":1,"tag":"x"}'], "b": [scores["b"], None]}


def test_vsim_filter(w2: Wire, plane: str) -> None:
    """FILTER over the attributes' top-level fields, applied in the search."""
    got = w2("VSIM", plane, "VALUES", 2, 1, 1, "FILTER", ".n > 2")
    if isinstance(got, Err) and "not supported yet" in got:
        pytest.skip("FILTER waits for crdtkv.vectors (the search helper's part)")
    assert got == ["d"]
    got = w2("VSIM", plane, "ELE", "e", "FILTER", '.tag == "x"', "TRUTH")
    assert got == ["a"]
    got = w2("VSIM", plane, "ELE", "e", "FILTER", ".missing == 1")
    assert got == []
    text = w2("VSIM", plane, "ELE", "a", "FILTER", ".n >")
    assert text.startswith("ERR syntax error in FILTER expression near: ")


# -- attributes ---------------------------------------------------------------------------------
def test_attributes(w2: Wire) -> None:
    k = "vs:attrs"
    w2("DEL", k)
    assert w2("VADD", k, "VALUES", 2, 1, 0, "a", "SETATTR", '{"x": 1}') == 1
    assert json.loads(w2("VGETATTR", k, "a")) == {"x": 1}
    # an update without SETATTR keeps them; with SETATTR replaces them
    w2("VADD", k, "VALUES", 2, 0, 1, "a")
    assert json.loads(w2("VGETATTR", k, "a")) == {"x": 1}
    w2("VADD", k, "VALUES", 2, 0, 1, "a", "SETATTR", '{"y": [1, 2]}')
    assert json.loads(w2("VGETATTR", k, "a")) == {"y": [1, 2]}
    # SETATTR "" removes them
    assert w2("VADD", k, "VALUES", 2, 1, 1, "a", "SETATTR", "") == 0
    assert w2("VGETATTR", k, "a") is None
    assert [float(x) for x in w2("VEMB", k, "a")] == [1, 1]
    # VSETATTR: 1 when the element exists, 0 otherwise; "" removes
    assert w2("VSETATTR", k, "a", '{"z": "w"}') == 1
    assert w2("VGETATTR", k, "a") == '{"z":"w"}'
    assert w2("VSETATTR", k, "nope", '{"z": 1}') == 0
    assert w2("VSETATTR", k, "a", "") == 1
    assert w2("VGETATTR", k, "a") is None
    assert w2("VGETATTR", k, "nope") is None
    info = w2("VINFO", k)
    assert dict(zip(info[0::2], info[1::2], strict=True))["attributes-count"] == 0


# -- VRANDMEMBER (vrandmember.py) ---------------------------------------------------------------
def test_vrandmember(w2: Wire, ours: redis.Redis) -> None:
    k = "vs:rand"
    w2("DEL", k)
    names = {f"e{i}" for i in range(100)}
    with ours.pipeline(transaction=False) as p:
        for i, n in enumerate(sorted(names)):
            p.execute_command("VADD", k, "VALUES", 4, i + 1, 1, 0, 0, n)
        p.execute()
    assert w2("VRANDMEMBER", k) in names
    got = w2("VRANDMEMBER", k, 10)
    assert len(got) == 10 and len(set(got)) == 10 and set(got) <= names
    got = w2("VRANDMEMBER", k, 110)
    assert sorted(got) == sorted(names)  # more than there are: each once
    got = w2("VRANDMEMBER", k, -20)
    assert len(got) == 20 and set(got) <= names
    assert w2("VRANDMEMBER", k, 0) == []
    # count 0 answers before the key is looked at, as Redis
    w2("SET", "vs:rand:str", "x")
    assert w2("VRANDMEMBER", "vs:rand:str", 0) == []


# -- VINFO --------------------------------------------------------------------------------------
def test_vinfo(w2: Wire, w3: Wire) -> None:
    k = "vs:info"
    w2("DEL", k)
    w2("VADD", k, "VALUES", 3, 1, 0, 0, "a", "NOQUANT", "M", 8)
    w2("VADD", k, "VALUES", 3, 0, 1, 0, "b", "NOQUANT", "M", 8, "SETATTR", "{}")
    info = w2("VINFO", k)
    fields = dict(zip(info[0::2], info[1::2], strict=True))
    assert info[0::2][:9] == [
        "quant-type",
        "hnsw-m",
        "vector-dim",
        "projection-input-dim",
        "size",
        "max-level",
        "attributes-count",
        "vset-uid",
        "hnsw-max-node-uid",
    ]
    assert fields["quant-type"] == "f32"
    assert fields["hnsw-m"] == 8
    assert fields["vector-dim"] == 3
    assert fields["projection-input-dim"] == 0
    assert fields["size"] == 2
    assert fields["attributes-count"] == 1
    assert fields["index"] in ("ready", "none")
    m = w3("VINFO", k)
    assert isinstance(m, dict) and m["size"] == 2 and m["quant-type"] == "f32"
    # the index's settings were NOQUANT and M 8: another VADD must say so
    assert w2("VADD", k, "VALUES", 3, 1, 1, 0, "c", "NOQUANT", "M", 8) == 1
    assert w2("VADD", k, "VALUES", 3, 1, 1, 1, "d") == (
        "ERR asked quantization mismatch with existing vector set"
    )


def test_vemb_raw(w2: Wire) -> None:
    w2("DEL", "vs:raw")
    w2("VADD", "vs:raw", "VALUES", 2, 3, 4, "a")
    w2.decode = False
    quant, blob, l2 = w2("VEMB", "vs:raw", "a", "RAW")
    assert quant == "f32" and isinstance(quant, Status)
    assert blob == f32(0.6, 0.8)
    assert float(l2) == 5.0


# -- the keyspace: TYPE, DEL, EXISTS, RENAME, SCAN TYPE, COMMAND INFO ---------------------------
def test_keyspace(w2: Wire, ours: redis.Redis) -> None:
    for k in ("vs:ks", "vs:ks2", "vs:ks3"):
        w2("DEL", k)
    w2("VADD", "vs:ks", "VALUES", 2, 1, 0, "a", "SETATTR", '{"k": 1}')
    w2("VADD", "vs:ks", "VALUES", 2, 0, 1, "b")
    assert w2("EXISTS", "vs:ks") == 1
    assert "vs:ks" in list(ours.scan_iter(match="vs:ks*", _type="vectorset"))
    assert "vs:ks" not in list(ours.scan_iter(match="vs:ks*", _type="set"))
    assert ours.rename("vs:ks", "vs:ks2")
    assert w2("EXISTS", "vs:ks") == 0
    assert w2("TYPE", "vs:ks2") == "vectorset"
    assert w2("VCARD", "vs:ks2") == 2
    assert w2("VGETATTR", "vs:ks2", "a") == '{"k":1}'
    assert [float(x) for x in w2("VEMB", "vs:ks2", "b")] == [0, 1]
    assert w2("DEL", "vs:ks2") == 1
    assert w2("EXISTS", "vs:ks2") == 0
    assert w2("VCARD", "vs:ks2") == 0
    # a new set after DEL may have another dimension
    assert w2("VADD", "vs:ks2", "VALUES", 3, 1, 0, 0, "a") == 1
    assert w2("VDIM", "vs:ks2") == 3


def test_command_info(w2: Wire) -> None:
    info = w2("COMMAND", "INFO", "VADD", "VSIM", "VCARD", "VSETATTR")
    by_name = {row[0]: row for row in info}
    assert by_name["vadd"][1] == -5
    assert by_name["vadd"][2] == ["write", "denyoom"]
    assert by_name["vadd"][6] == ["@write", "@vectorset", "@slow"]
    assert by_name["vsim"][1] == -4 and by_name["vsim"][2] == ["readonly"]
    assert by_name["vsim"][6] == ["@read", "@vectorset", "@slow"]
    assert by_name["vcard"][6] == ["@read", "@vectorset", "@fast"]
    assert by_name["vsetattr"][6] == ["@write", "@vectorset", "@fast"]
    docs = w2("COMMAND", "DOCS", "VSIM")
    assert docs[1][docs[1].index("group") + 1] == "vector_set"


# -- redis-py's vector-set API ------------------------------------------------------------------
def test_redis_py_vset_api(crdtkv_server: Server) -> None:
    assert crdtkv_server.resp_port is not None
    for proto in (2, 3):
        client = redis.Redis(port=crdtkv_server.resp_port, protocol=proto, decode_responses=True)
        v = client.vset()
        k = f"vs:py{proto}"
        client.delete(k)
        assert v.vadd(k, [1.0, 0.0, 0.0], "a", attributes={"color": "red"})
        assert v.vadd(k, f32(0, 1, 0), "b")
        assert v.vadd(k, [0.9, 0.1, 0.0], "c", quantization=QuantizationOptions.Q8, ef=100)
        assert v.vcard(k) == 3
        assert v.vdim(k) == 3
        assert v.vsim(k, "a", count=2) == ["a", "c"]
        scored = v.vsim(k, [1.0, 0.0, 0.0], with_scores=True, count=3)
        assert list(scored) == ["a", "c", "b"] and scored["a"] == pytest.approx(1.0)
        both = v.vsim(k, "a", with_scores=True, with_attribs=True, count=2, truth=True)
        assert both["a"]["attributes"] == {"color": "red"}
        assert both["c"]["attributes"] is None
        assert v.vgetattr(k, "a") == {"color": "red"}
        assert v.vsetattr(k, "b", {"n": 2})
        assert v.vgetattr(k, "b") == {"n": 2}
        assert v.vemb(k, "b") == [0, 1, 0]
        assert v.vinfo(k)["size"] == 3
        assert v.vrandmember(k) in ("a", "b", "c")
        assert sorted(v.vrandmember(k, 5)) == ["a", "b", "c"]
        assert v.vrem(k, "c")
        assert v.vcard(k) == 2
        client.close()


# -- pipelining ---------------------------------------------------------------------------------
def test_pipelined_vadds_and_exact_search(w2: Wire, ours: redis.Redis) -> None:
    """3,000 VADDs in one pipeline, each answered; then TRUTH answers what numpy does."""
    k = "vs:bulk"
    w2("DEL", k)
    rng = np.random.default_rng(7)
    n, dim = 3000, 16
    vecs = rng.normal(size=(n, dim)).astype("<f4")
    with ours.pipeline(transaction=False) as p:
        for i in range(n):
            p.execute_command("VADD", k, "FP32", vecs[i].tobytes(), f"e{i}")
        replies = p.execute()
    assert replies == [1] * n
    assert w2("VCARD", k) == n
    normed = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    for qi in (0, 17, 2999):
        query = rng.normal(size=dim).astype("<f4")
        sims = normed @ (query / np.linalg.norm(query))
        want = [f"e{i}" for i in np.argsort(-sims, kind="stable")[:10]]
        got = w2("VSIM", k, "FP32", query.tobytes(), "TRUTH", "WITHSCORES")
        assert got[0::2] == want, qi
        assert [float(s) for s in got[1::2]] == pytest.approx(
            [(1 + float(sims[int(e[1:])])) / 2 for e in want], abs=1e-5
        )
        # ELE of an element: itself first, with a score of 1
        got = w2("VSIM", k, "ELE", f"e{qi}", "TRUTH", "COUNT", 1, "WITHSCORES")
        assert got[0] == f"e{qi}" and float(got[1]) == pytest.approx(1.0, abs=1e-6)

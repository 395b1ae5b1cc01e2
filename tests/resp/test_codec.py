"""The RESP codec: reply encoding (RESP2 and RESP3) and request framing.

- ``encode`` round-trips through hiredis (the parser of real clients) and
  through a small typed parser here (hiredis folds ``+OK`` into bytes and a
  RESP3 set into a list; this one keeps every type apart);
- ``format_double`` writes Redis 7.2's text (``d2string``: an integer as an
  integer, ``fpconv_dtoa`` otherwise, ``-0``, ``inf``, ``nan``);
- requests: a multibulk encoding split anywhere, fed to a ``Connection``,
  gives back the same commands; inline lines give what a real redis-server
  makes of the same bytes (``split_inline`` is compared with it over a socket).
"""

from __future__ import annotations

import math
import socket
import struct
import time
from decimal import Decimal
from typing import Any

import hiredis
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crdtkv.metrics import MetricsRegistry
from crdtkv.resp.server import Connection, RespServer, split_inline
from crdtkv.resp.values import (
    NULL_ARRAY,
    OK,
    RespError,
    RMap,
    RSet,
    Status,
    encode,
    format_double,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- a typed RESP parser (the test's own) -----------------------------------------------------


class Err(str):
    """An error reply as parsed."""


class ParseError(Exception):
    pass


def parse(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """One reply from ``buf`` at ``pos``: (value, position after it)."""
    end = buf.index(b"\r\n", pos)
    kind, line = buf[pos : pos + 1], buf[pos + 1 : end]
    pos = end + 2
    if kind == b"$":
        n = int(line)
        if n == -1:
            return ("null-bulk", None), pos
        data = buf[pos : pos + n]
        if len(data) != n or buf[pos + n : pos + n + 2] != b"\r\n":
            raise ParseError("short bulk")
        return data, pos + n + 2
    if kind == b"+":
        return Status(line.decode()), pos
    if kind == b"-":
        return Err(line.decode()), pos
    if kind == b":":
        return int(line), pos
    if kind == b",":
        return ("double", line.decode()), pos
    if kind == b"_":
        assert line == b""
        return None, pos
    if kind == b"#":
        assert line in (b"t", b"f")
        return line == b"t", pos
    if kind in (b"*", b"~", b"%"):
        n = int(line)
        if n == -1 and kind == b"*":
            return NULL_ARRAY, pos
        items = []
        for _ in range(2 * n if kind == b"%" else n):
            item, pos = parse(buf, pos)
            items.append(item)
        if kind == b"%":
            return RMap(zip(items[::2], items[1::2], strict=True)), pos
        return (RSet(items) if kind == b"~" else items), pos
    raise ParseError(f"unknown type byte {kind!r}")


def parse_all(data: bytes) -> Any:
    value, pos = parse(data)
    assert pos == len(data), "bytes left after the reply"
    return value


# -- what a value must parse back as ------------------------------------------------------------


def expected(value: Any, proto: int) -> Any:
    """``value`` as ``parse`` gives it back after ``encode(value, proto)``."""
    t = type(value)
    if t is bytes:
        return value
    if t is str:
        return value.encode()
    if t is Status:
        return Status(value)
    if t is bool:
        return value if proto == 3 else int(value)
    if t is int:
        return value
    if value is None:
        return None if proto == 3 else ("null-bulk", None)
    if value is NULL_ARRAY:
        return None if proto == 3 else NULL_ARRAY
    if t is float:
        text = format_double(value)
        return ("double", text) if proto == 3 else text.encode()
    if t is RMap:
        pairs = [(expected(k, proto), expected(v, proto)) for k, v in value]
        if proto == 3:
            return RMap(pairs)
        return [x for kv in pairs for x in kv]
    if t is RSet:
        items = [expected(v, proto) for v in value]
        return RSet(items) if proto == 3 else items
    if t is list or t is tuple:
        return [expected(v, proto) for v in value]
    if isinstance(value, RespError):
        return Err(value.text)
    raise TypeError(t)


def hiredis_shape(value: Any, proto: int) -> Any:
    """``value`` as hiredis gives it back (maps become dicts, statuses bytes, ...)."""
    t = type(value)
    if t in (bytes, Status) or t is str:
        return value.encode() if isinstance(value, str) else value
    if t is bool:
        return value if proto == 3 else int(value)
    if t is int or value is None or value is NULL_ARRAY:
        return None if value is NULL_ARRAY else value
    if t is float:
        return value if proto == 3 else format_double(value).encode()
    if t is RMap:
        pairs = [(hiredis_shape(k, proto), hiredis_shape(v, proto)) for k, v in value]
        return dict(pairs) if proto == 3 else [x for kv in pairs for x in kv]
    if t in (list, tuple, RSet):
        return [hiredis_shape(v, proto) for v in value]
    if isinstance(value, RespError):
        return ("error", value.text)
    raise TypeError(t)


def from_hiredis(value: Any) -> Any:
    if isinstance(value, hiredis.ReplyError):
        return ("error", str(value))
    if isinstance(value, list):
        return [from_hiredis(v) for v in value]
    if isinstance(value, dict):
        return {k: from_hiredis(v) for k, v in value.items()}
    return value


# -- strategies ---------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False) | st.sampled_from([math.inf, -math.inf, -0.0, 0.0, 1e17])
TEXT = st.text(max_size=20)
LINE_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n") | st.sampled_from("\r\n"),
    max_size=30,
)
SCALARS = st.one_of(
    st.binary(max_size=30),
    TEXT,
    INT64,
    st.none(),
    st.booleans(),
    FLOATS,
    st.builds(Status, st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n"))),
    st.builds(RespError, LINE_TEXT),
    st.just(NULL_ARRAY),
)
HASHABLE_KEYS = st.one_of(st.binary(max_size=10), st.text(max_size=10), INT64)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=5),
        st.builds(RSet, st.lists(children, max_size=5)),
        st.builds(RMap, st.lists(st.tuples(HASHABLE_KEYS, children), max_size=4)),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=25)


def _unique_keys(value: Any) -> bool:
    """hiredis folds a RESP3 map into a dict: keys equal as hiredis sees them must differ."""
    if type(value) is RMap:
        keys = [hiredis_shape(k, 3) for k, _ in value]
        if len(set(keys)) != len(keys):
            return False
        return all(_unique_keys(v) for _, v in value)
    if type(value) in (list, tuple, RSet):
        return all(_unique_keys(v) for v in value)
    return True


# -- encoding ---------------------------------------------------------------------------------


@FAST
@given(value=VALUES, proto=st.sampled_from([2, 3]))
def test_encode_round_trips(value: Any, proto: int) -> None:
    out: list[bytes] = []
    encode(value, proto, out)
    data = b"".join(out)
    assert parse_all(data) == expected(value, proto)
    # hiredis, as a client reads it.
    reader = hiredis.Reader()
    reader.feed(data)
    got = reader.gets()
    assert reader.gets() is False
    assume(proto == 2 or _unique_keys(value))
    assert from_hiredis(got) == hiredis_shape(value, proto)


@FAST
@given(text=LINE_TEXT)
def test_error_reply_is_one_line(text: str) -> None:
    out: list[bytes] = []
    encode(RespError("ERR " + text), 2, out)
    data = b"".join(out)
    assert data.startswith(b"-ERR ")
    assert data.endswith(b"\r\n")
    assert data.count(b"\r") == 1
    assert data.count(b"\n") == 1


def test_encode_known_bytes() -> None:
    def enc(v: Any, proto: int) -> bytes:
        out: list[bytes] = []
        encode(v, proto, out)
        return b"".join(out)

    assert enc(None, 2) == b"$-1\r\n"
    assert enc(None, 3) == b"_\r\n"
    assert enc(NULL_ARRAY, 2) == b"*-1\r\n"
    assert enc(NULL_ARRAY, 3) == b"_\r\n"
    assert enc(2**63 - 1, 2) == b":9223372036854775807\r\n"
    assert enc(-(2**63), 3) == b":-9223372036854775808\r\n"
    assert enc(True, 2) == b":1\r\n"
    assert enc(False, 3) == b"#f\r\n"
    assert enc(math.inf, 2) == b"$3\r\ninf\r\n"
    assert enc(-math.inf, 3) == b",-inf\r\n"
    assert enc(1.5, 2) == b"$3\r\n1.5\r\n"
    assert enc(3.0, 3) == b",3\r\n"
    assert enc("é", 2) == b"$2\r\n\xc3\xa9\r\n"
    assert enc(RMap([("a", 1)]), 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert enc(RMap([("a", 1)]), 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert enc(RSet(["x"]), 3) == b"~1\r\n$1\r\nx\r\n"
    assert enc(RespError("ERR a\r\nb"), 3) == b"-ERR a  b\r\n"
    with pytest.raises(TypeError):
        enc(object(), 2)


# -- Redis's double text ------------------------------------------------------------------------

LLONG_HALF = float(2**63 // 2)  # (double)(LLONG_MAX/2): double2ll's range


def redis_d2string(x: float) -> str:
    """Redis 7.2's ``d2string`` (src/util.c) and ``fpconv_dtoa`` (deps/fpconv), in Python.

    ``fpconv_dtoa`` (grisu2) writes the shortest digits that read back as
    ``x``; Python's ``repr`` finds the same digits.  ``emit_digits`` then picks
    plain integer, plain decimal or scientific notation (exponent without
    padding)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if -LLONG_HALF <= x <= LLONG_HALF and x == int(x):
        return str(int(x))
    neg = x < 0
    _, digits_t, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    k = int(exponent) + (len(digits_t) - len(digits))
    nd = len(digits)
    exp = abs(k + nd - 1)
    prefix = "-" if neg else ""
    if k >= 0 and exp < nd + 7:
        return prefix + digits + "0" * k
    if k < 0 and (k > -7 or exp < 4):
        offset = nd - abs(k)
        if offset <= 0:
            return prefix + "0." + "0" * (-offset) + digits
        return prefix + digits[:offset] + "." + digits[offset:]
    nd = min(nd, 18 - neg)
    mant = digits[0] + ("." + digits[1:nd] if nd > 1 else "")
    esign = "-" if k + nd - 1 < 0 else "+"
    return f"{prefix}{mant}e{esign}{exp}"


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.0, "0"),
        (-0.0, "-0"),
        (1.5, "1.5"),
        (-2.0, "-2"),
        (0.1, "0.1"),
        (1e-5, "0.00001"),
        (1.5e-7, "1.5e-7"),
        (0.0001234567, "1.234567e-4"),
        (0.000123, "0.000123"),
        (123.4567891, "123.4567891"),
        (1e17, "100000000000000000"),
        (1e20, "1e+20"),
        (1.2345678901234567e20, "123456789012345670000"),
        (2.5e-300, "2.5e-300"),
        (math.inf, "inf"),
        (-math.inf, "-inf"),
        (math.nan, "nan"),
    ],
)
def test_format_double_known(x: float, text: str) -> None:
    assert redis_d2string(x) == text
    assert format_double(x) == text


@FAST
@given(
    x=st.floats(allow_nan=False)
    | st.integers(-(2**70), 2**70).map(float)
    | st.builds(lambda m, e: m * 10.0**e, st.integers(-(10**9), 10**9), st.integers(-14, 24))
)
def test_format_double_is_redis_text(x: float) -> None:
    text = format_double(x)
    assert text == redis_d2string(x)
    if not math.isinf(x):
        assert float(text) == x


@FAST
@given(bits=st.integers(0, 2**64 - 1))
def test_format_double_reads_back(bits: int) -> None:
    (x,) = struct.unpack("<d", bits.to_bytes(8, "little"))
    text = format_double(x)
    if math.isnan(x):
        assert text == "nan"
    else:
        assert float(text) == x


# -- request framing ---------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _NoNode:
    """What a Connection reads of its node before it runs a command."""

    def __init__(self) -> None:
        self.metrics = MetricsRegistry()
        self.cluster = None  # not sharded

    @staticmethod
    def clock() -> int:
        return 0


_SERVER = RespServer(_NoNode(), replica_id="t")  # type: ignore[arg-type]


def connection() -> tuple[Connection, FakeTransport, list[list[bytes]]]:
    """A Connection whose commands only say +OK and are listed in order."""
    conn = Connection(_SERVER)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    ran: list[list[bytes]] = []

    def execute(cmd: Any, argv: list[bytes]) -> Any:
        ran.append(argv)
        return OK

    conn._execute = execute  # type: ignore[method-assign]
    conn._inline_run = False  # every command through the stub
    return conn, transport, ran


def multibulk(argv: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(argv) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)


ARGV = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


def feed(chunks: list[bytes]) -> tuple[list[list[bytes]], bytes, bool]:
    """The commands run, the bytes written, and whether the connection was closed."""
    conn, transport, ran = connection()
    for c in chunks:
        if c:
            conn.data_received(c)
    return ran, bytes(transport.written), transport.closed


def oks(n: int) -> bytes:
    return b"+OK\r\n" * n


@settings(max_examples=60, deadline=None)
@given(argvs=st.lists(ARGV, min_size=1, max_size=3))
def test_multibulk_split_at_every_byte(argvs: list[list[bytes]]) -> None:
    data = b"".join(multibulk(a) for a in argvs)
    for i in range(len(data) + 1):
        got, written, closed = feed([data[:i], data[i:]])
        assert got == argvs, i
        assert (written, closed) == (oks(len(argvs)), False)
    got, written, _ = feed([data[i : i + 1] for i in range(len(data))])
    assert got == argvs
    assert written == oks(len(argvs))


@FAST
@given(argvs=st.lists(ARGV, min_size=1, max_size=8), data=st.data())
def test_multibulk_random_chunks(argvs: list[list[bytes]], data: st.DataObject) -> None:
    raw = b"".join(multibulk(a) for a in argvs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=10)))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    got, written, _ = feed(chunks)
    assert got == argvs
    assert written == oks(len(argvs))


def test_inline_after_multibulk_and_back() -> None:
    """Redis reads each request as multibulk or inline by its first byte, so a client
    may mix them on one connection."""
    requests = [multibulk([b"PING"]), b"PING\r\n", multibulk([b"ECHO", b"x"]), b"ECHO y\r\n"]
    want = [[b"PING"], [b"PING"], [b"ECHO", b"x"], [b"ECHO", b"y"]]
    assert feed(requests) == (want, oks(4), False)


def test_inline_after_multibulk_in_one_read() -> None:
    requests = [multibulk([b"PING"]), b"PING\r\n"]
    assert feed([b"".join(requests)]) == ([[b"PING"], [b"PING"]], oks(2), False)
    # redis-cli --pipe's ending: the last command, an empty line, then ECHO.
    tail = [multibulk([b"SET", b"k", b"v" * 3000]), b"\r\n", multibulk([b"ECHO", b"x" * 20])]
    assert feed([b"".join(tail)]) == (
        [[b"SET", b"k", b"v" * 3000], [b"ECHO", b"x" * 20]],
        oks(2),
        False,
    )
    # Mixed both ways, twice, in one read.
    mixed = [b"PING\r\n", multibulk([b"ECHO", b"a"]), b"ECHO b\r\n", multibulk([b"PING"])]
    assert feed([b"".join(mixed)]) == (
        [[b"PING"], [b"ECHO", b"a"], [b"ECHO", b"b"], [b"PING"]],
        oks(4),
        False,
    )


def test_empty_multibulk_and_empty_lines_are_skipped() -> None:
    got = feed([b"*0\r\n", b"\r\n\n   \r\n", b"*0\r\n" + multibulk([b"PING"])])
    assert got == ([[b"PING"]], oks(1), False)


@pytest.mark.parametrize(
    "bad",
    [
        b"*1\r\n:1\r\n",  # an integer element
        b"*1\r\n*1\r\n$1\r\na\r\n",  # a nested array
        b"*1\r\n$-1\r\n",  # a null element
        b"*-5\r\n",
        b"*1\r\n$-7\r\n",
        b"*abc\r\n",
        b"*1\r\n$x\r\n",
        # Not here: a simple string element (*1 +OK), which Redis refuses; hiredis
        # gives it as bytes, the same as a bulk string, so it is read as one.
        b'ECHO "abc\r\n',  # unbalanced quotes
    ],
)
def test_bad_frames_answer_an_error_and_close(bad: bytes) -> None:
    for chunks in (
        [multibulk([b"PING"]) + bad + multibulk([b"ECHO", b"after"])],
        [multibulk([b"PING"]), bad, multibulk([b"ECHO", b"after"])],
    ):
        got, written, closed = feed(chunks)
        assert got == [[b"PING"]]  # the command before the bad one runs, not the one after
        assert written.startswith(oks(1) + b"-ERR Protocol error")
        assert written.endswith(b"\r\n")
        assert written.count(b"\r\n") == 2
        assert closed


# -- inline commands against a real redis-server -------------------------------------------------

# NUL is left out: Redis looks for the line's end with strchr, so it never sees one.
INLINE_CHARS = st.sampled_from(
    [*"ab \t\"'\\xn0fF7 \x0b\x0c\x01", "\\x4", "\\x41", "\\x", "é", "\r"]
)
INLINE_LINES = st.lists(INLINE_CHARS, max_size=14).map(lambda cs: "".join(cs).encode())


def _read_reply(sock: socket.socket, buf: bytearray) -> tuple[Any, bool]:
    """One reply (parsed) from ``sock``; True when the server closed the connection."""
    while True:
        try:
            value, pos = parse(bytes(buf))
        except (ValueError, IndexError, ParseError):
            chunk = sock.recv(65536)
            if not chunk:
                return None, True
            buf += chunk
            continue
        del buf[:pos]
        return value, False


class RedisInline:
    """A raw socket to redis-server: each inline line's argv, as Redis split it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            self.buf = bytearray()
        return self.sock

    def argv(self, line: bytes) -> list[bytes] | Err:
        """RPUSH the line's arguments to a list, read the list back."""
        sock = self._connect()
        sock.sendall(b"DEL inline:l\r\nRPUSH inline:l " + line + b"\r\n")
        _read_reply(sock, self.buf)
        reply, closed = _read_reply(sock, self.buf)
        if isinstance(reply, Err):
            if closed or reply.startswith("ERR Protocol error"):
                self.close()
            return reply
        sock.sendall(multibulk([b"LRANGE", b"inline:l", b"0", b"-1"]))
        items, _ = _read_reply(sock, self.buf)
        return list(items)

    def echo(self, line: bytes) -> Any:
        sock = self._connect()
        sock.sendall(b"ECHO " + line + b"\r\n")
        reply, closed = _read_reply(sock, self.buf)
        if closed or (isinstance(reply, Err) and reply.startswith("ERR Protocol error")):
            self.close()
        return reply

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


@pytest.fixture(scope="module")
def redis_inline(redis_port: int) -> Any:
    r = RedisInline(redis_port)
    yield r
    r.close()


def ours_argv(line: bytes) -> list[bytes] | Err:
    try:
        return split_inline(line)
    except RespError as e:
        return Err(e.text)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=INLINE_LINES)
def test_split_inline_as_redis(redis_inline: RedisInline, line: bytes) -> None:
    theirs = redis_inline.argv(line)
    ours = ours_argv(line)
    if isinstance(ours, list) and not ours:
        # RPUSH with no element: Redis's arity error; split gave nothing either.
        assert isinstance(theirs, Err) and "wrong number of arguments" in theirs
        return
    assert ours == theirs, line
    # A Connection reading the same line (split anywhere) queues the same command.
    data = b"RPUSH inline:l " + line + b"\r\n"
    for i in (1, len(data) // 2, len(data) - 1):
        got, written, closed = feed([data[:i], data[i:]])
        if isinstance(ours, Err):
            assert (got, written, closed) == ([], b"-" + ours.encode() + b"\r\n", True)
        else:
            assert (got, written, closed) == ([[b"RPUSH", b"inline:l", *ours]], oks(1), False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=INLINE_LINES)
def test_inline_echo_as_redis(redis_inline: RedisInline, line: bytes) -> None:
    theirs = redis_inline.echo(line)
    ours = ours_argv(line)
    if isinstance(ours, Err):
        assert theirs == ours
    elif len(ours) == 1:
        assert theirs == ours[0]
    else:
        assert theirs == Err("ERR wrong number of arguments for 'echo' command")


@pytest.mark.parametrize(
    "line",
    [
        b'"a b"',
        b"'a b'",
        b'"\\x41\\x4"',
        b'"a\\n\\r\\t\\b\\a\\z\\\\"',
        b"'it\\'s'",
        b"'a\\nb'",
        b'"a"b',
        b"'a'b",
        b'a"b c"d',
        b'"unterminated',
        b"'unterminated",
        b'""',
        b"''",
        b"   a   b   ",
        b"\ta\x0bb\x0cc",
    ],
)
def test_inline_examples_as_redis(redis_inline: RedisInline, line: bytes) -> None:
    assert ours_argv(line) == redis_inline.argv(line)


# -- sizes: refused before hiredis allocates or waits ----------------------------------------------


@pytest.mark.parametrize(
    ("before", "bad", "error"),
    [
        (b"", b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (
            b"",
            b"*99999999999999999999999\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            multibulk([b"PING"]),
            b"*2147483647\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (b"PING\r\n", b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (
            b"",
            b"*2\r\n$3\r\nGET\r\n$999999999\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"",
            b"*1\r\n*2147483647\r\n",
            b"-ERR Protocol error: expected '$', arguments are bulk strings\r\n",
        ),
    ],
)
def test_huge_headers_refused_at_once(before: bytes, bad: bytes, error: bytes) -> None:
    ran_before = 1 if before else 0
    for chunks in ([before + bad], [before, bad]):
        t0 = time.monotonic()
        got, written, closed = feed(chunks)
        assert time.monotonic() - t0 < 1.0  # no 16 GiB list made (and freed) by hiredis
        assert (len(got), written, closed) == (ran_before, oks(ran_before) + error, True)


def test_header_lookalikes_in_values_pass() -> None:
    value = b"\r\n*2147483647\r\n$999999999\r\n*1\r\n:1\r\n"
    argvs = [[b"SET", b"k", value], [b"GET", b"*2147483647"], [b"$999999999"]]
    data = b"".join(multibulk(a) for a in argvs)
    assert feed([data]) == (argvs, oks(3), False)
    assert feed([data[:7], data[7:]]) == (argvs, oks(3), False)


def test_request_bytes_bounded_with_small_arguments() -> None:
    """Not only one bulk string: a request of many small arguments is bounded too
    (hiredis keeps only unparsed bytes, so its own count would not see them)."""
    limit = _SERVER.limits.value_bytes_max
    count = limit // 6  # within the count limit; over the byte limit
    conn, transport, ran = connection()
    conn.data_received(b"*%d\r\n" % count)
    element = b"$1\r\na\r\n"
    chunk = element * 4096
    sent = 0
    while not transport.closed and sent < 2 * limit:
        conn.data_received(chunk)
        sent += len(chunk)
    assert transport.closed
    assert limit < sent <= limit + 4096 + len(chunk)
    assert bytes(transport.written) == b"-ERR Protocol error: a request over %d bytes\r\n" % limit
    assert ran == []

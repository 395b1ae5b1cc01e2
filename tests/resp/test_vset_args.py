"""The vector-set commands' argument parsers (``crdtkv.resp.vset_args``): good and bad
argument lists, with Redis 8's error texts (modules/vector-sets/vset.c).  Pure, no server."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from crdtkv.resp import vset_args as V
from crdtkv.resp.values import RespError, RMap, Status


def argv(*parts: Any) -> list[bytes]:
    return [p if isinstance(p, bytes) else str(p).encode() for p in parts]


def f32(*xs: float) -> bytes:
    return struct.pack(f"<{len(xs)}f", *xs)


INVALID = "ERR invalid vector specification"
ARITY_VADD = "ERR wrong number of arguments for 'vadd' command"


# -- vectors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "blob", "dim", "consumed"),
    [
        (argv("VALUES", 2, 1, 0.5), f32(1, 0.5), 2, 4),
        (argv("values", 3, "1e2", "-0.25", "3"), f32(100, -0.25, 3), 3, 5),
        (argv("VALUES", 1, 7, "elem", "extra"), f32(7), 1, 3),  # the rest is not read
        (argv("FP32", f32(1, 2, 3)), f32(1, 2, 3), 3, 2),
        (argv("fp32", f32(0.1)), f32(0.1), 1, 2),
        # float64 text rounded to float32, as C's (float) cast
        (argv("VALUES", 1, "0.1"), f32(0.1), 1, 3),
        (argv("VALUES", 1, "3.4028235e38"), f32(3.4028235e38), 1, 3),
        (argv("VALUES", 2, "1e-50", 1), f32(0.0, 1), 2, 4),  # underflows to 0 in float32
    ],
)
def test_vector_good(args: list[bytes], blob: bytes, dim: int, consumed: int) -> None:
    v = V.parse_vector(args, 0, reduce=False)
    assert (v.blob, v.dim, v.consumed, v.reduce) == (blob, dim, consumed, 0)


@pytest.mark.parametrize(
    "args",
    [
        argv("VALUES"),  # no count
        argv("VALUES", 0),
        argv("VALUES", -1, 1),
        argv("VALUES", "x", 1),
        argv("VALUES", "2", 1),  # fewer values than the count
        argv("VALUES", 2, 1, "one"),
        argv("VALUES", 1, " 1"),  # no leading space (string2d)
        argv("VALUES", 1, "nan"),
        argv("VALUES", 1, "1e400"),  # overflows a double: string2d refuses
        argv("VALUES", V.DIM_MAX + 1, *([1] * 3)),
        argv("FP32"),
        argv("FP32", b""),
        argv("FP32", b"\x00\x00\x80"),  # not a multiple of 4
        argv("FP32", b"\x00" * (4 * V.DIM_MAX + 4)),
        argv("FLOAT", f32(1)),
        argv("ELE", "a"),  # VSIM's ELE is read by VSIM itself
        argv("REDUCE", 2, "VALUES", 2, 1, 1),  # no REDUCE where it is not allowed
    ],
)
def test_vector_bad(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vector(args, 0, reduce=False)
    assert e.value.text == INVALID


@pytest.mark.parametrize(
    "args",
    [
        argv("VALUES", 1, "inf"),
        argv("VALUES", 2, 1, "-infinity"),
        argv("VALUES", 1, "3.5e38"),  # a double, but past float32's range
        argv("FP32", f32(1, math.nan)),
        argv("FP32", f32(math.inf)),
    ],
)
def test_vector_not_finite(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vector(args, 0, reduce=False)
    assert e.value.text.startswith(INVALID + ": ")
    assert "NaN, infinite" in e.value.text


@pytest.mark.parametrize(
    "args",
    [argv("VALUES", 2, 0, "-0"), argv("FP32", f32(0, 0, 0)), argv("VALUES", 1, "1e-50")],
)
def test_vector_all_zeros(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vector(args, 0, reduce=False)
    assert e.value.text == V.ALL_ZERO


def test_max_dimension_is_taken() -> None:
    v = V.parse_vector(argv("FP32", b"\x00" * (4 * V.DIM_MAX - 4) + f32(1)), 0, reduce=False)
    assert v.dim == V.DIM_MAX


@pytest.mark.parametrize(
    ("args", "reduce", "consumed"),
    [
        (argv("REDUCE", 2, "VALUES", 3, 1, 2, 3), 2, 7),
        (argv("reduce", 3, "FP32", f32(1, 2, 3)), 3, 4),
    ],
)
def test_vector_reduce(args: list[bytes], reduce: int, consumed: int) -> None:
    v = V.parse_vector(args, 0, reduce=True)
    assert (v.reduce, v.consumed) == (reduce, consumed)


@pytest.mark.parametrize(
    "args",
    [
        argv("REDUCE", 0, "VALUES", 1, 1),
        argv("REDUCE", -2, "VALUES", 1, 1),
        argv("REDUCE", "x", "VALUES", 1, 1),
        argv("REDUCE", 4, "VALUES", 3, 1, 2, 3),  # more than the dimension
        argv("REDUCE", 2, "FP32"),
    ],
)
def test_vector_reduce_bad(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vector(args, 0, reduce=True)
    assert e.value.text == INVALID


# -- VADD ---------------------------------------------------------------------------------------
def test_vadd_defaults() -> None:
    a = V.parse_vadd(argv("k", "VALUES", 2, 1, 0, "e"))
    assert a == V.VAdd(
        key="k",
        vector=f32(1, 0),
        dim=2,
        element="e",
        cas=False,
        quant="q8",
        ef=V.BUILD_EF_DEFAULT,
        m=V.M_DEFAULT,
        set_attrs=False,
        attrs=None,
    )


@pytest.mark.parametrize(
    ("opts", "want"),
    [
        (["CAS"], {"cas": True}),
        (["noquant"], {"quant": "noquant"}),
        (["BIN"], {"quant": "bin"}),
        (["BIN", "Q8"], {"quant": "q8"}),  # the last one wins
        (["EF", 1], {"ef": 1}),
        (["ef", 1_000_000], {"ef": 1_000_000}),
        (["M", 4], {"m": 4}),
        (["M", 4096], {"m": 4096}),
        (["SETATTR", '{"a":1}'], {"set_attrs": True, "attrs": '{"a":1}'}),
        (["SETATTR", ""], {"set_attrs": True, "attrs": None}),  # empty: remove them
        (["SETATTR", "not json"], {"attrs": "not json"}),  # Redis stores any text
        (
            ["CAS", "NOQUANT", "EF", 50, "SETATTR", "{}", "M", 32],
            {"cas": True, "quant": "noquant", "ef": 50, "attrs": "{}", "m": 32},
        ),
        (["SETATTR", "CAS"], {"cas": False, "attrs": "CAS"}),  # SETATTR's value is a value
    ],
)
def test_vadd_options(opts: list[Any], want: dict[str, Any]) -> None:
    a = V.parse_vadd(argv("k", "FP32", f32(1, 2), "e", *opts))
    for name, value in want.items():
        assert getattr(a, name) == value, name


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (argv("k", "VALUES", 2, 1), INVALID),
        (argv("k", "VALUES", 2, 1, 2), ARITY_VADD),  # no element after the vector
        (argv("k", "FP32", f32(1)), ARITY_VADD),
        (argv("k", "e", "VALUES", 1, 1), INVALID),  # the element comes after
        (argv("k", "VALUES", 1, 1, "e", "EF", 0), "ERR invalid EF"),
        (argv("k", "VALUES", 1, 1, "e", "EF", 1_000_001), "ERR invalid EF"),
        (argv("k", "VALUES", 1, 1, "e", "EF", "x"), "ERR invalid EF"),
        (argv("k", "VALUES", 1, 1, "e", "M", 3), "ERR invalid M"),
        (argv("k", "VALUES", 1, 1, "e", "M", 4097), "ERR invalid M"),
        (argv("k", "VALUES", 1, 1, "e", "EF"), "ERR invalid option after element"),
        (argv("k", "VALUES", 1, 1, "e", "M"), "ERR invalid option after element"),
        (argv("k", "VALUES", 1, 1, "e", "SETATTR"), "ERR invalid option after element"),
        (argv("k", "VALUES", 1, 1, "e", "WITHSCORES"), "ERR invalid option after element"),
        (argv("k", "VALUES", 1, 1, "e", "e2"), "ERR invalid option after element"),
        # options in their order: the first bad one answers
        (argv("k", "VALUES", 1, 1, "e", "EF", 0, "M", 1), "ERR invalid EF"),
        (argv("k", "VALUES", 1, 1, "e", "M", 1, "EF", 0), "ERR invalid M"),
        # REDUCE is read (its errors are Redis's), then refused
        (argv("k", "REDUCE", 0, "VALUES", 1, 1, "e"), INVALID),
        (argv("k", "REDUCE", 1, "VALUES", 2, 1, 1, "e", "EF", 0), "ERR invalid EF"),
        (argv("k", "REDUCE", 1, "VALUES", 2, 1, 1, "e"), V.REDUCE_REFUSED),
    ],
)
def test_vadd_bad(args: list[bytes], error: str) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vadd(args)
    assert e.value.text == error


def test_vadd_text_only() -> None:
    with pytest.raises(RespError) as e:
        V.parse_vadd(argv("k", "VALUES", 1, 1, b"\xff\xfe"))
    assert "UTF-8" in e.value.text


def test_dimension_mismatch_text() -> None:
    assert V.dimension_mismatch(3, 4).text == "ERR Vector dimension mismatch - got 3 but set has 4"


# -- VSIM ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "element", "blob", "end"),
    [
        (argv("k", "ELE", "a"), "a", None, 3),
        (argv("k", "ele", "a", "COUNT", 3), "a", None, 3),
        (argv("k", "VALUES", 2, 1, 0, "WITHSCORES"), None, f32(1, 0), 5),
        (argv("k", "FP32", f32(1, 0)), None, f32(1, 0), 3),
    ],
)
def test_vsim_query(args: list[bytes], element: str | None, blob: bytes | None, end: int) -> None:
    q = V.parse_vsim_query(args)
    assert (q.element, q.vector, q.end) == (element, blob, end)


@pytest.mark.parametrize(
    "args",
    [argv("k", "VALUES", 3, 1, 2), argv("k", "FP32", b"abc"), argv("k", "VECTOR", "x")],
)
def test_vsim_query_bad(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vsim_query(args)
    assert e.value.text == INVALID


@pytest.mark.parametrize(
    ("opts", "want"),
    [
        ([], V.VSimOptions()),
        (["WITHSCORES", "withattribs"], V.VSimOptions(withscores=True, withattribs=True)),
        (["COUNT", 3], V.VSimOptions(count=3)),
        (["EPSILON", "0.5"], V.VSimOptions(epsilon=0.5)),
        (["EPSILON", "inf"], V.VSimOptions(epsilon=math.inf)),
        (["EF", 500], V.VSimOptions(ef=500)),
        (["FILTER", ".a > 1"], V.VSimOptions(filter=".a > 1")),
        (["FILTER", ".a", "FILTER", ".b"], V.VSimOptions(filter=".b")),  # the last one
        (["FILTER-EF", 7], V.VSimOptions(filter_ef=7)),
        (["TRUTH", "NOTHREAD"], V.VSimOptions(truth=True, nothread=True)),
        (["COUNT", 2, "COUNT", 5], V.VSimOptions(count=5)),
    ],
)
def test_vsim_options(opts: list[Any], want: V.VSimOptions) -> None:
    assert V.parse_vsim_options(argv("k", "ELE", "a", *opts), 3) == want


def test_vsim_option_defaults() -> None:
    o = V.VSimOptions()
    assert (o.count, o.search_ef, o.filter_effort) == (10, 100, 1000)
    o = V.VSimOptions(count=300)
    assert (o.search_ef, o.filter_effort) == (300, 30_000)
    o = V.VSimOptions(count=5, ef=20, filter_ef=9)
    assert (o.search_ef, o.filter_effort) == (20, 9)


@pytest.mark.parametrize(
    ("opts", "error"),
    [
        (["COUNT", 0], "ERR invalid COUNT"),
        (["COUNT", -1], "ERR invalid COUNT"),
        (["COUNT", "1.5"], "ERR invalid COUNT"),
        (["EPSILON", 0], "ERR invalid EPSILON"),
        (["EPSILON", "-0.1"], "ERR invalid EPSILON"),
        (["EPSILON", "nan"], "ERR invalid EPSILON"),
        (["EPSILON", "x"], "ERR invalid EPSILON"),
        (["EF", 0], "ERR invalid EF"),
        (["EF", 1_000_001], "ERR invalid EF"),
        (["FILTER-EF", 0], "ERR invalid FILTER-EF"),
        (["COUNT"], "ERR syntax error in VSIM command"),  # no value: not an option
        (["FILTER"], "ERR syntax error in VSIM command"),
        (["LIMIT", 3], "ERR syntax error in VSIM command"),
        (["WITHSCORES", "COUNT", 0, "BOGUS"], "ERR invalid COUNT"),  # the first bad one
        (["BOGUS", "COUNT", 0], "ERR syntax error in VSIM command"),
    ],
)
def test_vsim_options_bad(opts: list[Any], error: str) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vsim_options(argv("k", "ELE", "a", *opts), 3)
    assert e.value.text == error


def test_vsim_filter_syntax_error() -> None:
    seen: list[str] = []

    def check(expr: str) -> None:
        seen.append(expr)
        if "@" in expr:
            raise RespError("ERR syntax error in FILTER expression near: " + expr[expr.find("@") :])

    # the filter is compiled where it stands: its error before a later option's
    with pytest.raises(RespError) as e:
        V.parse_vsim_options(argv("k", "ELE", "a", "FILTER", ".a > @b", "COUNT", 0), 3, check)
    assert e.value.text == "ERR syntax error in FILTER expression near: @b"
    with pytest.raises(RespError) as e:
        V.parse_vsim_options(argv("COUNT", 0, "FILTER", ".a > @b"), 0, check)
    assert e.value.text == "ERR invalid COUNT"
    # a filter that compiles
    o = V.parse_vsim_options(argv("FILTER", ".a > 1"), 0, check)
    assert o.filter == ".a > 1"
    assert seen == [".a > @b", ".a > 1"]


RESULTS = [("a", 1.0, '{"x":1}'), ("b", 0.75, None), ("c", 0.5, "{}"), ("d", 0.1, None)]


@pytest.mark.parametrize(
    ("opts", "proto", "want"),
    [
        (V.VSimOptions(), 2, ["a", "b", "c", "d"]),
        (V.VSimOptions(), 3, ["a", "b", "c", "d"]),
        (V.VSimOptions(count=2), 2, ["a", "b"]),
        (V.VSimOptions(epsilon=0.5), 2, ["a", "b", "c"]),  # distance 0.5 is kept
        (V.VSimOptions(epsilon=0.2), 2, ["a"]),
        (V.VSimOptions(withscores=True, count=2), 2, ["a", 1.0, "b", 0.75]),
        (V.VSimOptions(withscores=True, count=2), 3, RMap([("a", 1.0), ("b", 0.75)])),
        (V.VSimOptions(withattribs=True, count=2), 2, ["a", '{"x":1}', "b", None]),
        (V.VSimOptions(withattribs=True, count=2), 3, RMap([("a", '{"x":1}'), ("b", None)])),
        (
            V.VSimOptions(withscores=True, withattribs=True, count=2),
            2,
            ["a", 1.0, '{"x":1}', "b", 0.75, None],
        ),
        (
            V.VSimOptions(withscores=True, withattribs=True, count=2),
            3,
            RMap([("a", [1.0, '{"x":1}']), ("b", [0.75, None])]),
        ),
    ],
)
def test_vsim_reply(opts: V.VSimOptions, proto: int, want: Any) -> None:
    got = V.vsim_reply(RESULTS, opts, proto)
    assert got == want
    assert type(got) is type(want)


def test_vsim_reply_empty() -> None:
    assert V.vsim_reply([], V.VSimOptions(withscores=True), 3) == RMap()
    assert V.vsim_reply([], V.VSimOptions(withscores=True), 2) == []


# -- VEMB, VRANDMEMBER --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "want"),
    [
        (argv("k", "e"), ("k", "e", False)),
        (argv("k", "e", "RAW"), ("k", "e", True)),
        (argv("k", "e", "raw", "RAW"), ("k", "e", True)),
    ],
)
def test_vemb(args: list[bytes], want: tuple[str, str, bool]) -> None:
    assert V.parse_vemb(args) == want


@pytest.mark.parametrize("args", [argv("k", "e", "RAWW"), argv("k", "e", "RAW", "x")])
def test_vemb_bad(args: list[bytes]) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vemb(args)
    assert e.value.text == "ERR invalid option"


def test_vemb_replies() -> None:
    blob = f32(3, 4, 0.1)
    assert V.vemb_reply(blob) == [3.0, 4.0, float(struct.unpack("<f", f32(0.1))[0])]
    quant, normed, l2 = V.vemb_raw_reply(f32(3, 4))
    assert quant == Status("f32") and type(quant) is Status
    assert normed == f32(0.6, 0.8)
    assert l2 == 5.0


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (argv("k"), ("k", None)),
        (argv("k", 0), ("k", 0)),
        (argv("k", -5), ("k", -5)),
        (argv("k", 2**63 - 1), ("k", 2**63 - 1)),
        (argv("k", -(2**63) + 1), ("k", -(2**63) + 1)),
    ],
)
def test_vrandmember(args: list[bytes], want: tuple[str, int | None]) -> None:
    assert V.parse_vrandmember(args) == want


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (argv("k", "x"), "ERR COUNT value is not an integer"),
        (argv("k", "1.0"), "ERR COUNT value is not an integer"),
        (argv("k", 2**63), "ERR COUNT value is not an integer"),
        (argv("k", -(2**63)), "ERR value is out of range"),
        (argv("k", 1, 2), "ERR wrong number of arguments for 'vrandmember' command"),
    ],
)
def test_vrandmember_bad(args: list[bytes], error: str) -> None:
    with pytest.raises(RespError) as e:
        V.parse_vrandmember(args)
    assert e.value.text == error

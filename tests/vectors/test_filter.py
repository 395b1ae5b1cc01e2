"""FILTER expressions against Redis's own examples (redis/redis
modules/vector-sets/tests/filter_expr.py, filter_double_not.py,
filter_string_escape.py, expr.c's test main) as a table."""

from __future__ import annotations

import json

import pytest

from crdtkv.errors import BadRequest
from crdtkv.vectors.filter import compile_filter

ALICE = json.dumps(
    {"age": 25, "name": "Alice", "active": True, "scores": [85, 90, 95], "city": "New York"}
)
BOB = json.dumps(
    {"age": 30, "name": "Bob", "active": False, "scores": [70, 75, 80], "city": "Boston"}
)
CHARLIE = json.dumps({"age": 35, "name": "Charlie", "scores": [60, 65, 70], "city": "Seattle"})
ITEMS = {"alice": ALICE, "bob": BOB, "charlie": CHARLIE, "none": None, "bad": "invalid json"}

# (expression, elements of ITEMS that pass), from filter_expr.py's assertions.
REDIS_TABLE = [
    (".age == 25", {"alice"}),
    (".age > 25", {"bob", "charlie"}),
    (".age <= 30", {"alice", "bob"}),
    ('.name == "Alice"', {"alice"}),
    ('.name != "Alice"', {"bob", "charlie"}),
    (".active", {"alice"}),
    (".age > 20 and .age < 30", {"alice"}),
    (".age < 30 or .age > 35", {"alice"}),
    ("!(.age == 25)", {"bob", "charlie"}),
    (".age in [25, 35]", {"alice", "charlie"}),
    ('.name in ["Alice", "David"]', {"alice"}),
    ('"lic" in .name', {"alice"}),
    ('"ork" in .city', {"alice"}),
    ('"xyz" in .name', set()),
    ('"Ali" in .name', {"alice"}),
    ('"ice" in .name', {"alice"}),
    ('"Alice" in .name', {"alice"}),
    ('"A" in .name', {"alice"}),
    ('"" in .name', {"alice", "bob", "charlie"}),
    ('.name in ""', set()),
    ('"" in .name && "" in ""', {"alice", "bob", "charlie"}),
    (".age + 10 > 40", {"charlie"}),
    (".age * 2 > 60", {"charlie"}),
    (".age / 5 == 5", {"alice"}),
    (".age % 2 == 0", {"bob"}),
    (".age ** 2 > 900", {"charlie"}),
    ('.missing_field == "value"', set()),
    (".any_field", set()),
    ('(.age > 20 and .age < 40) and (.city == "Boston" or .city == "New York")', {"alice", "bob"}),
    (".age > (20 + 10)", {"charlie"}),
    (".scores", {"alice", "bob", "charlie"}),
    # A missing field anywhere makes the whole expression false (no short circuit).
    (".age == 25 or .missing == 1", set()),
    # Our additions around Redis's rules.
    ("not .active", {"bob"}),  # charlie has no .active: false
    (".active == 1 && .age < 26", {"alice"}),
    ("2 ** 3 ** 2 == 512", {"alice", "bob", "charlie", "none", "bad"}),  # right associative
    ("(5+2)*3 and 'foo' == 'foo'", {"alice", "bob", "charlie", "none", "bad"}),
    ("1 - 1", set()),
    ("(1) -5 == -4", {"alice", "bob", "charlie", "none", "bad"}),
    ("-5 < .age - 100", set()),
    (".age - 100 < -70", {"alice"}),
    ("null == null", {"alice", "bob", "charlie", "none", "bad"}),
    (".age == null", set()),
    ('.age == "25"', {"alice"}),  # mixed types compare as numbers
    (".name > 0", set()),  # a non-numeric string is 0
    (".age / 0 > 1000", {"alice", "bob", "charlie"}),  # inf, not an error
    ("3 in [1, 2, ]", set()),  # a trailing comma is accepted
    ("2 in [1, 2, ]", {"alice", "bob", "charlie", "none", "bad"}),
]


@pytest.mark.parametrize(("expr", "expected"), REDIS_TABLE)
def test_redis_examples(expr: str, expected: set[str]) -> None:
    f = compile_filter(expr)
    assert {name for name, attrs in ITEMS.items() if f(attrs)} == expected


DOUBLE_NOT = {"one": '{"active": true, "n": 5}', "two": '{"active": false, "n": 0}'}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("!!.active", {"one"}),
        ("not not .active", {"one"}),
        ("!!!.active", {"two"}),
        ("!!.n == 1", {"one"}),
        ("!.active or !!.active", {"one", "two"}),
        (".n > 1 and not not .active", {"one"}),
    ],
)
def test_consecutive_unary_operators(expr: str, expected: set[str]) -> None:
    f = compile_filter(expr)
    assert {k for k, v in DOUBLE_NOT.items() if f(v)} == expected


ESCAPES = '{"dq": "a\\"b", "sq": "O\'Brien", "bs": "x\\\\y", "nl": "l1\\nl2"}'


@pytest.mark.parametrize(
    "expr",
    [
        '.dq == "a\\"b"',
        ".sq == 'O\\'Brien'",
        '.bs == "x\\\\y"',
        '.nl == "l1\\nl2"',
        '"\\"b" in .dq',
        '.dq in ["zzz", "a\\"b"]',
        "'a\"b' == .dq",
        '.sq == "O\'Brien"',
    ],
)
def test_string_escapes(expr: str) -> None:
    assert compile_filter(expr)(ESCAPES)
    assert not compile_filter(expr)('{"dq": "ab", "sq": "OBrien", "bs": "xy", "nl": "l1l2"}')


@pytest.mark.parametrize(
    "attrs",
    ['{"a": {"nested": 1}}', "[1, 2]", "5", '"str"', "{bad", None, '{"a": [1, {"x": 2}]}'],
)
def test_unusable_attributes_fail(attrs: str | None) -> None:
    assert not compile_filter(".a")(attrs)
    assert not compile_filter(".a == .a")(attrs)


def test_nested_arrays_are_tuples() -> None:
    assert compile_filter(".a")('{"a": [[1], 2]}')
    assert compile_filter("2 in .a")('{"a": [[1], 2]}')


# (expression, the rest of it Redis quotes after "near: ")
BAD = [
    (".age ==", ".age =="),  # arity: Redis reports compile errors at offset 0
    ("(1", "(1"),
    ("1)", "1)"),
    (".age = 1", " 1"),  # "=" is no operator; Redis points after the run
    ("true", "true"),  # no boolean literals; at the end: the whole expression
    ('"abc', '"abc'),  # unterminated string
    ("1e+5", "+5"),
    (".a # 1", "# 1"),
    ("", ""),
    ("[1, x]", "x]"),  # Redis points at the bad tuple element
    (".a and", ".a and"),
    ("!", "!"),
    ("andx", "andx"),
    ("1 2", "1 2"),
]


@pytest.mark.parametrize(("expr", "near"), BAD)
def test_syntax_errors_have_redis_text(expr: str, near: str) -> None:
    with pytest.raises(BadRequest) as e:
        compile_filter(expr)
    assert e.value.message == f"syntax error in FILTER expression near: {near}"


def test_good_expressions_compile_once_and_evaluate_many() -> None:
    f = compile_filter(".year > 1980 and .rating >= 4.5")
    rows = [json.dumps({"year": 1970 + i, "rating": (i % 10) / 2}) for i in range(40)]
    assert [f(r) for r in rows] == [1970 + i > 1980 and (i % 10) / 2 >= 4.5 for i in range(40)]

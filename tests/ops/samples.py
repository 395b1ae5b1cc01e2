"""Valid and invalid values of each argument kind, for the table tests."""

from __future__ import annotations

from typing import Any

from crdtkv import limits
from crdtkv.ops.spec import Arg, Kind, OpSpec


def sample(arg: Arg) -> Any:
    """A valid value of ``arg``."""
    if arg.name == "index":  # a list index that the creator's two elements make valid
        return 0
    return {
        Kind.KEY: "k",
        Kind.INT: max(arg.lo, min(arg.hi, 2)),
        Kind.JSON: {"a": [1, "x", None]},
        Kind.STRINGS: ["a", "b"],
        Kind.KEYS: ["other"],
        Kind.STRING: arg.choices[0] if arg.choices else "a",
        Kind.BOOL: False,  # True for every flag at once would combine exclusive options
        Kind.FLOAT: 1.5,
        Kind.SCORES: {"a": 1.5},
        Kind.SCORE_BOUND: "-inf",
        Kind.LEX_BOUND: "-",
        Kind.FIELD: "f",
        Kind.FIELDS: {"a": 1, "f": 2},
        Kind.VECTOR: [0.5, 1.0, 2.0],
    }[arg.kind]


NEEDS_KEY = frozenset({"lists.set"})
"""Writes that refuse an absent key (404, as Redis's LSET answers "no such key"); the
table says the same (``OpSpec.needs_key``, checked in test_table)."""


def sample_op(spec: OpSpec, key: str = "k", *, optional: bool = False) -> dict[str, Any]:
    """A valid op of ``spec`` on ``key``; ``optional``: with its optional arguments too."""
    op: dict[str, Any] = {"op": spec.name}
    op.update({a.name: sample(a) for a in spec.args if a.required or optional})
    if spec.keyed:  # a keyless op (scan) takes no key
        op["key"] = key
    return op


def bad_values(arg: Arg) -> list[Any]:
    """Values of ``arg`` the op must refuse with 400."""
    deep: Any = 1
    for _ in range(limits.JSON_DEPTH_MAX + 1):
        deep = [deep]
    if arg.kind is Kind.KEY:
        return [5, None, "", "k" * (limits.KEY_BYTES_MAX + 1), "\ud800", ["k"]]
    if arg.kind is Kind.INT:
        return ["1", True, 1.5, [], arg.lo - 1, arg.hi + 1]
    if arg.kind is Kind.JSON:
        return [float("nan"), b"x", deep, 2**64, {1: 2}, {"k": "\ud800"}]
    if arg.kind is Kind.STRINGS:
        too_long = ["x" * (limits.MEMBER_BYTES_MAX + 1)]
        return ["a", [1], too_long, ["\ud800"], ["a"] * (arg.hi + 1), {"a": 1}]
    if arg.kind is Kind.KEYS:
        return ["a", [], [5], [""], ["a"] * (arg.hi + 1)]
    if arg.kind is Kind.BOOL:
        return ["true", 1, 0, [], {}]
    if arg.kind is Kind.FLOAT:
        return ["1", True, [], float("nan"), float("inf"), 10**400]
    if arg.kind is Kind.SCORES:
        too_long = {"x" * (limits.MEMBER_BYTES_MAX + 1): 1}
        too_many = {str(i): 1 for i in range(arg.hi + 1)}
        return ["a", [1], {}, {"a": "x"}, {"a": True}, {"a": float("nan")}, too_long, too_many]
    if arg.kind is Kind.SCORE_BOUND:
        return ["x", "(", "[1", "nan", "(nan", True, [], {"a": 1}]
    if arg.kind is Kind.LEX_BOUND:
        return ["a", "", 5, [], "[" + "x" * (limits.MEMBER_BYTES_MAX + 1)]
    if arg.kind is Kind.FIELD:
        return [5, "", ["a"], "x" * (limits.MEMBER_BYTES_MAX + 1), "\ud800"]
    if arg.kind is Kind.FIELDS:
        big = "x" * (limits.HASH_VALUE_BYTES_MAX + 1)
        return [
            {},
            ["a"],
            {"": 1},
            {"a": None},
            {"a": True},
            {"a": [1]},
            {"a": 2**63},
            {"a": float("inf")},
            {"a": big},
            {"\ud800": 1},
            {str(i): 1 for i in range(arg.hi + 1)},
        ]
    if arg.kind is Kind.VECTOR:
        too_many = [1.0] * (arg.hi + 1)
        return [5, "not base64!", [], ["a"], [True], [0, 0, 0], [1e39, 1, 1], {"a": 1}, too_many]
    out: list[Any] = [5, ["a"], {"a": 1}]
    if arg.hi:
        out.append("x" * (arg.hi + 1))
    if arg.choices:
        out.append("no such choice")
    return out

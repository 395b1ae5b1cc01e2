"""The sorted set's argument kinds: scores, score bounds and member bounds.

Scores travel as JSON numbers, or as strings in Redis's spelling ("1.5",
"-inf", "+inf"), since JSON has no infinities; a score bound may start with
``(`` (exclusive, as in Redis), a member bound is ``[a``, ``(a``, ``-`` or
``+``.  Results show infinite scores as the strings "inf" and "-inf".

Pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from crdtkv import limits
from crdtkv.crdts.zset import LexBound, ScoreBound
from crdtkv.errors import BadRequest

__all__ = ["PARSERS", "lex_span", "member_bytes", "parse_score", "score_out"]

_FLOAT_TEXT = re.compile(
    r"[+-]?(?:inf|infinity|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)", re.IGNORECASE | re.ASCII
)
_TEXT_MAX = 64  # a score written as text is short; longer is a mistake


def parse_score(v: object) -> float | None:
    """A score from a JSON number or Redis's text; None when it is not one (NaN included)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        try:
            out = float(v)
        except OverflowError:
            return None
    elif isinstance(v, str) and len(v) <= _TEXT_MAX and _FLOAT_TEXT.fullmatch(v):
        out = float(v)
    else:
        return None
    return None if math.isnan(out) else out


def score_out(score: float) -> float | str:
    """A score as JSON: a number, or "inf"/"-inf"."""
    if math.isinf(score):
        return "inf" if score > 0 else "-inf"
    return score


def member_bytes(name: str, member: str) -> None:
    """Refuse a member of more than MEMBER_BYTES_MAX bytes of UTF-8."""
    if member.isascii():
        n = len(member)
    else:
        try:
            n = len(member.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise BadRequest(f"field {name!r}: a member is not valid UTF-8") from e
    if n > limits.MEMBER_BYTES_MAX:
        raise BadRequest(f"field {name!r}: a member is over {limits.MEMBER_BYTES_MAX} bytes")


def _scores(name: str, most: int, v: object) -> dict[str, float]:
    if not isinstance(v, dict):
        raise BadRequest(f"field {name!r} must be an object of member -> score")
    if not v:
        raise BadRequest(f"field {name!r} must name at least one member")
    if len(v) > most:
        raise BadRequest(f"field {name!r} has {len(v)} members; the limit is {most}")
    out: dict[str, float] = {}
    for member, raw in v.items():
        if not isinstance(member, str):
            raise BadRequest(f"field {name!r}: members are strings")
        member_bytes(name, member)
        score = parse_score(raw)
        if score is None:
            raise BadRequest(f"field {name!r}: value is not a valid float ({member!r})")
        out[member] = score
    return out


def _score_bound(name: str, most: int, v: object) -> ScoreBound:
    exclusive = isinstance(v, str) and v.startswith("(")
    score = parse_score(v[1:] if exclusive and isinstance(v, str) else v)
    if score is None:
        raise BadRequest(f"field {name!r}: min or max is not a float")
    return ScoreBound(score, exclusive)


def _lex_bound(name: str, most: int, v: object) -> LexBound | str:
    if v == "-" or v == "+":
        return v  # the lowest or the highest: what it means depends on the end (lex_span)
    if not isinstance(v, str) or not v or v[0] not in "[(":
        raise BadRequest(f"field {name!r}: min or max not valid string range item")
    member_bytes(name, v[1:])
    return LexBound(v[1:], v[0] == "(")


def lex_span(lo: LexBound | str, hi: LexBound | str) -> tuple[LexBound, LexBound] | None:
    """The member bounds for ``ZSet.range_by_lex``; None when the range is empty by its
    ends alone ("+" as min, "-" as max)."""
    if lo == "+" or hi == "-":
        return None
    return (
        lo if isinstance(lo, LexBound) else LexBound(None),
        hi if isinstance(hi, LexBound) else LexBound(None),
    )


PARSERS: dict[str, Callable[[str, int, object], Any]] = {
    "scores": _scores,
    "score_bound": _score_bound,
    "lex_bound": _lex_bound,
}
"""Kind value -> check(field name, most entries, raw value); raises ``BadRequest``."""

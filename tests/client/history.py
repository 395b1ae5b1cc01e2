"""A history checker for the four session guarantees over a key/value workload.

The workload the checker understands (tests/client/test_sessions_real.py):

- session ``s`` writes registers ``a:s`` then ``b:s`` with the same increasing
  integer ``i`` (1, 2, 3, ...), and ``seen:s`` with ``{"key": k, "value": v}``
  describing the last value of another session's ``a:`` key it read;
- every session reads any ``a:``/``b:``/``seen:`` key at any replica.

Since a session's writes to one key increase, "stale" is a number that went
down.  Violations reported:

- read-your-writes: ``s`` reads its own key below what it last wrote;
- monotonic reads: ``s`` reads a key below what it read of that key before;
- monotonic writes: ``s`` has read ``b:t = i``; a later read of ``a:t`` is
  below ``i`` (t wrote ``a:t = i`` before ``b:t = i``);
- writes-follow-reads: ``s`` has read ``seen:t = {key: k, value: v}``; a later
  read of ``k`` is below ``v`` (t read ``k = v`` before writing that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "check"]


@dataclass(frozen=True)
class Event:
    session: str
    kind: str  # "write" or "read"
    key: str
    value: Any  # an int for a:/b: keys, a dict for seen: keys, None when absent
    replica: str = ""  # where it was served, for the report


@dataclass
class _Session:
    wrote: dict[str, int] = field(default_factory=dict)
    floor: dict[str, int] = field(default_factory=dict)  # lowest value a read may return


def _number(key: str, value: Any) -> int:
    if value is None:
        return 0
    if key.startswith("seen:"):
        return 0  # seen: values are not ordered numbers; only their content matters
    return int(value)


def check(history: list[Event]) -> list[str]:
    sessions: dict[str, _Session] = {}
    out: list[str] = []
    for n, e in enumerate(history):
        s = sessions.setdefault(e.session, _Session())
        if e.kind == "write":
            if not e.key.startswith("seen:"):
                s.wrote[e.key] = int(e.value)
                s.floor[e.key] = max(s.floor.get(e.key, 0), int(e.value))
            continue
        got = _number(e.key, e.value)
        own = s.wrote.get(e.key)
        if own is not None and got < own:
            out.append(
                f"#{n} read-your-writes: {e.session} read {e.key}={got} at "
                f"{e.replica} after writing {own}"
            )
        elif got < s.floor.get(e.key, 0):
            out.append(
                f"#{n} session guarantee: {e.session} read {e.key}={got} at {e.replica}, "
                f"below {s.floor[e.key]} it must see (monotonic reads/writes, "
                f"writes-follow-reads)"
            )
        # What this read obliges later reads to see.
        s.floor[e.key] = max(s.floor.get(e.key, 0), got)
        if e.key.startswith("b:") and got:
            a_key = "a:" + e.key[2:]
            s.floor[a_key] = max(s.floor.get(a_key, 0), got)  # monotonic writes
        if e.key.startswith("seen:") and isinstance(e.value, dict):
            k, v = e.value.get("key"), e.value.get("value")
            if isinstance(k, str) and isinstance(v, int):
                s.floor[k] = max(s.floor.get(k, 0), v)  # writes-follow-reads
    return out

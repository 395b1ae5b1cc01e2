"""The operations simulated clients issue: every operation type of the public API.

Keys are few, so that clients collide on them.  Some keys are reserved for
one shape of use, because some checks only make sense there:

- ``mono*`` counters only ever get positive increments (a read in a session
  must never be below what the session saw: a sound "stale" test);
- ``ctr*`` counters get increments, decrements and resets (deletes);
- ``hll*`` HLLs only get adds (counts are checked against the items added);
- ``hllm`` is the destination of merges from ``hll0`` and ``hll1``;
- ``hlld`` gets adds and deletes.

Register values are unique per write (``"<client>:<n>"``), so a read names
the write it saw.  ``ttl_ms`` is set on one register write in five.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["MEMBERS", "Workload", "keyspace", "op_dict"]

MEMBERS = [f"m{i}" for i in range(8)]


def keyspace(keys: int) -> dict[str, list[str]]:
    return {
        "registers": [f"reg{i}" for i in range(keys)],
        "counters": [f"mono{i}" for i in range(max(1, keys // 2))]
        + [f"ctr{i}" for i in range(max(1, keys - keys // 2))],
        "sets": [f"set{i}" for i in range(keys)],
        "hlls": ["hll0", "hll1", "hllm", "hlld"],
    }


def op_dict(kind: str, key: str, args: dict[str, Any]) -> dict[str, Any]:
    """The op as ``crdtkv.replica.apply_op`` (and ``/v1/batch``) takes it."""
    return {"op": kind, "key": key, **args}


@dataclass
class Workload:
    client: int
    rng: random.Random
    keys: dict[str, list[str]]
    writes: int = 0

    def next_op(self) -> tuple[str, str, dict[str, Any]]:
        """(kind, key, args) of the next operation."""
        pick = self.rng.choices(
            [self._registers, self._counters, self._sets, self._hlls], [3, 3, 3, 2]
        )[0]
        return pick()

    def _value(self) -> object:
        self.writes += 1
        tag = f"{self.client}:{self.writes}"
        return tag if self.rng.random() < 0.7 else {"w": tag, "n": self.writes}

    def _registers(self) -> tuple[str, str, dict[str, Any]]:
        key = self.rng.choice(self.keys["registers"])
        r = self.rng.random()
        if r < 0.45:
            args: dict[str, Any] = {"value": self._value()}
            if self.rng.random() < 0.2:
                args["ttl_ms"] = self.rng.choice([50, 300, 2_000])
            return "registers.set", key, args
        if r < 0.55:
            return "registers.delete", key, {}
        return "registers.get", key, {}

    def _counters(self) -> tuple[str, str, dict[str, Any]]:
        key = self.rng.choice(self.keys["counters"])
        r = self.rng.random()
        if key.startswith("mono"):
            if r < 0.5:
                return "counters.incr", key, {"delta": self.rng.randint(1, 9)}
            return "counters.get", key, {}
        if r < 0.45:
            return "counters.incr", key, {"delta": self.rng.choice([-7, -3, -1, 1, 2, 5, 10])}
        if r < 0.55:
            return "counters.delete", key, {}
        return "counters.get", key, {}

    def _sets(self) -> tuple[str, str, dict[str, Any]]:
        key = self.rng.choice(self.keys["sets"])
        r = self.rng.random()
        k = self.rng.randint(1, 3)
        if r < 0.35:
            return "sets.add", key, {"members": self.rng.sample(MEMBERS, k)}
        if r < 0.55:
            return "sets.remove", key, {"members": self.rng.sample(MEMBERS, k)}
        if r < 0.6:
            return "sets.delete", key, {}
        if r < 0.8:
            return "sets.get", key, {}
        return "sets.contains", key, {"member": self.rng.choice(MEMBERS)}

    def _hlls(self) -> tuple[str, str, dict[str, Any]]:
        key = self.rng.choice(self.keys["hlls"])
        r = self.rng.random()
        items = [f"i{self.rng.randint(0, 3_000)}" for _ in range(self.rng.randint(1, 6))]
        if key == "hllm" and r < 0.2:
            return "hlls.merge", key, {"sources": ["hll0", "hll1"]}
        if key == "hlld" and r < 0.1:
            return "hlls.delete", key, {}
        if r < 0.6:
            return "hlls.add", key, {"items": items}
        if key == "hll0" and r < 0.7:
            return "hlls.count", key, {"sources": ["hll1"]}
        return "hlls.count", key, {}

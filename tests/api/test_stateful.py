"""Random programs of API calls against a plain Python model, with restarts.

The machine drives the real app (HTTP, group commit, RocksDB in a temporary
directory) and a dict-based model side by side; a restart closes the node and
reopens the same directory, so everything acknowledged must survive it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from crdtkv.config import ServeConfig

from .conftest import SECRET, FakeClock, Served

# Opening RocksDB costs ~0.1 s: a couple of restarts per program find what more would.
RESTARTS_MAX = 2
# RocksDB syncs on open and close; on tmpfs that costs nothing (same code path).
FAST_TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
KEYS = st.sampled_from(["a", "b/c", "é", "k k", "%2F"])
NAMES = st.sampled_from(["m1", "m2", "m3", "m4", "m5", "", "ü/ü"])
NAME_LISTS = st.lists(NAMES, max_size=5)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def path(kind: str, key: str, suffix: str = "") -> str:
    return f"/v1/{kind}/{quote(key, safe='')}{suffix}"


def near(estimate: int, true: int) -> bool:
    return abs(estimate - true) <= max(1, 0.02 * true)


class ApiMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="crdtkv-stateful-", dir=FAST_TMP))
        config = ServeConfig("r1", cluster_secret=SECRET)
        self.served = Served(self.dir / "db", config, FakeClock())
        self.run(self.served.start())
        # The model: only present keys are in these dicts.
        self.registers: dict[str, tuple[Any, int | None]] = {}  # key -> (value, expires_ms)
        self.counters: dict[str, int] = {}
        self.sets: dict[str, set[str]] = {}
        self.hlls: dict[str, set[str]] = {}
        self.restarts = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def call(self, method: str, target: str, body: object = None) -> tuple[int, Any]:
        reply = self.run(self.served.request(method, target, body))
        return reply.status, reply.body

    def now(self) -> int:
        return self.served.clock.now_ms

    def teardown(self) -> None:
        try:
            self.run(self.served.stop())
        finally:
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- registers -----------------------------------------------------------------------
    @rule(key=KEYS, value=JSON, ttl=st.none() | st.integers(1, 3000))
    def register_set(self, key: str, value: Any, ttl: int | None) -> None:
        body = {"value": value} if ttl is None else {"value": value, "ttl_ms": ttl}
        assert self.call("PUT", path("registers", key), body) == (200, {"ok": True})
        self.registers[key] = (value, None if ttl is None else self.now() + ttl)

    @rule(key=KEYS)
    def register_get(self, key: str) -> None:
        self.expire()
        status, body = self.call("GET", path("registers", key))
        if key in self.registers:
            assert (status, body) == (200, {"value": self.registers[key][0]})
        else:
            assert status == 404 and body["error"]["code"] == "not_found"

    @rule(key=KEYS)
    def register_delete(self, key: str) -> None:
        assert self.call("DELETE", path("registers", key)) == (200, {"ok": True})
        self.registers.pop(key, None)

    def expire(self) -> None:
        now = self.now()
        for key, (_, expires) in list(self.registers.items()):
            if expires is not None and now >= expires:
                del self.registers[key]

    # -- counters ------------------------------------------------------------------------
    @rule(key=KEYS, delta=st.integers(-1000, 1000))
    def counter_incr(self, key: str, delta: int) -> None:
        value = self.counters.get(key, 0) + delta
        assert self.call("POST", path("counters", key), {"delta": delta}) == (200, {"value": value})
        if delta != 0 or key in self.counters:
            self.counters[key] = value

    @rule(key=KEYS)
    def counter_get(self, key: str) -> None:
        status, body = self.call("GET", path("counters", key))
        if key in self.counters:
            assert (status, body) == (200, {"value": self.counters[key]})
        else:
            assert status == 404

    @rule(key=KEYS)
    def counter_delete(self, key: str) -> None:
        assert self.call("DELETE", path("counters", key)) == (200, {"ok": True})
        self.counters.pop(key, None)

    # -- sets ----------------------------------------------------------------------------
    @rule(key=KEYS, members=NAME_LISTS)
    def set_add(self, key: str, members: list[str]) -> None:
        before = self.sets.get(key, set())
        added = len(set(members) - before)
        status, body = self.call("POST", path("sets", key, "/add"), {"members": members})
        assert (status, body) == (200, {"added": added})
        if members:
            self.sets[key] = before | set(members)

    @rule(key=KEYS, members=NAME_LISTS)
    def set_remove(self, key: str, members: list[str]) -> None:
        before = self.sets.get(key, set())
        removed = len(set(members) & before)
        status, body = self.call("POST", path("sets", key, "/remove"), {"members": members})
        assert (status, body) == (200, {"removed": removed})
        if before - set(members):
            self.sets[key] = before - set(members)
        else:
            self.sets.pop(key, None)

    @rule(key=KEYS, member=NAMES)
    def set_read(self, key: str, member: str) -> None:
        status, body = self.call("GET", path("sets", key))
        status2, body2 = self.call("GET", path("sets", key, f"/members/{quote(member, safe='')}"))
        if key in self.sets:
            expected = sorted(self.sets[key])
            assert (status, body) == (200, {"members": expected, "size": len(expected)})
            assert (status2, body2) == (200, {"present": member in self.sets[key]})
        else:
            assert status == status2 == 404

    @rule(key=KEYS)
    def set_delete(self, key: str) -> None:
        assert self.call("DELETE", path("sets", key)) == (200, {"ok": True})
        self.sets.pop(key, None)

    # -- hlls ----------------------------------------------------------------------------
    @rule(key=KEYS, items=NAME_LISTS)
    def hll_add(self, key: str, items: list[str]) -> None:
        before = self.hlls.get(key, set())
        status, body = self.call("POST", path("hlls", key, "/add"), {"items": items})
        assert status == 200 and set(body) == {"changed"}
        if set(items) <= before:
            assert body == {"changed": False}  # nothing new cannot change a register
        elif not before:
            assert body == {"changed": True}  # the first item always sets a register
        if items:
            self.hlls[key] = before | set(items)

    @rule(key=KEYS, sources=st.lists(KEYS, min_size=1, max_size=3))
    def hll_merge(self, key: str, sources: list[str]) -> None:
        union = set(self.hlls.get(key, set()))
        for source in sources:
            union |= self.hlls.get(source, set())
        status, body = self.call("POST", path("hlls", key, "/merge"), {"sources": sources})
        assert status == 200 and near(body["count"], len(union))
        if union:
            self.hlls[key] = union

    @rule(key=KEYS)
    def hll_count(self, key: str) -> None:
        status, body = self.call("GET", path("hlls", key))
        if key in self.hlls:
            assert status == 200 and near(body["count"], len(self.hlls[key]))
        else:
            assert status == 404

    @rule(key=KEYS)
    def hll_delete(self, key: str) -> None:
        assert self.call("DELETE", path("hlls", key)) == (200, {"ok": True})
        self.hlls.pop(key, None)

    # -- batch, time, restarts -----------------------------------------------------------
    @rule(key=KEYS, deltas=st.lists(st.integers(-50, 50), min_size=1, max_size=4))
    def batch_with_a_bad_op(self, key: str, deltas: list[int]) -> None:
        ops: list[Any] = [{"op": "counters.incr", "key": key, "delta": d} for d in deltas]
        bad = len(deltas) // 2
        ops.insert(bad, {"op": "counters.incr", "key": key, "delta": "x"})
        status, body = self.call("POST", "/v1/batch", {"ops": ops})
        assert status == 200
        results = body["results"]
        assert results[bad]["error"]["code"] == "bad_request"
        del results[bad]
        for delta, result in zip(deltas, results, strict=True):
            value = self.counters.get(key, 0) + delta
            assert result == {"value": value}
            if delta != 0 or key in self.counters:
                self.counters[key] = value

    @rule(ms=st.integers(0, 2000))
    def advance_clock(self, ms: int) -> None:
        self.served.clock.advance(ms)

    @precondition(lambda self: self.restarts < RESTARTS_MAX)
    @rule()
    def restart(self) -> None:
        self.run(self.served.restart())
        self.restarts += 1

    @invariant()
    def live_key_count_matches(self) -> None:
        self.expire()
        status, body = self.call("GET", "/v1/status")
        expected = len(self.registers) + len(self.counters) + len(self.sets) + len(self.hlls)
        assert status == 200 and body["keys"] == expected


ApiMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestApiMachine = ApiMachine.TestCase

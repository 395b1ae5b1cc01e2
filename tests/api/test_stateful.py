"""Random programs of API calls against a plain Python model, with restarts.

The machine drives the real app (HTTP, group commit, RocksDB in a temporary
directory) and a dict-based model side by side; a restart closes the node and
reopens the same directory, so everything acknowledged must survive it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT_TEXT = re.compile(r"0|-?[1-9][0-9]*")


@dataclass
class Entry:
    type: str  # string | set | hll
    value: Any  # the JSON value of a string; the members or items of a set or an hll
    expires_ms: int | None


def as_int(value: Any) -> int | None:
    """The integer a string value counts as (ints within 64 bits and their decimal text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and _INT_TEXT.fullmatch(value):
        value = int(value)
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return value
    return None


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
        # The model: one keyspace; only present keys are in it.
        self.keys: dict[str, Entry] = {}
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

    # -- the keyspace ----------------------------------------------------------------------
    def expire(self) -> None:
        now = self.now()
        for key, entry in list(self.keys.items()):
            if entry.expires_ms is not None and now >= entry.expires_ms:
                del self.keys[key]

    def refused(self, key: str, type_: str, status: int, body: Any) -> bool:
        """Whether ``key`` holds another type; then the call must have been a 409."""
        self.expire()
        entry = self.keys.get(key)
        if entry is None or entry.type == type_:
            return False
        assert (status, body["error"]["code"]) == (409, "wrong_type")
        return True

    def typed_delete(self, view: str, type_: str, key: str) -> None:
        status, body = self.call("DELETE", path(view, key))
        if not self.refused(key, type_, status, body):
            assert (status, body) == (200, {"ok": True})
            self.keys.pop(key, None)

    # -- the string type: registers and counters -------------------------------------------
    @rule(key=KEYS, value=JSON, ttl=st.none() | st.integers(1, 3000))
    def register_set(self, key: str, value: Any, ttl: int | None) -> None:
        body = {"value": value} if ttl is None else {"value": value, "ttl_ms": ttl}
        status, reply = self.call("PUT", path("registers", key), body)
        if not self.refused(key, "string", status, reply):
            assert (status, reply) == (200, {"ok": True})
            expires = None if ttl is None else self.now() + ttl
            self.keys[key] = Entry("string", value, expires)

    @rule(key=KEYS)
    def register_get(self, key: str) -> None:
        status, body = self.call("GET", path("registers", key))
        if self.refused(key, "string", status, body):
            return
        if key in self.keys:
            assert (status, body) == (200, {"value": self.keys[key].value})
        else:
            assert status == 404 and body["error"]["code"] == "not_found"

    @rule(key=KEYS)
    def register_delete(self, key: str) -> None:
        self.typed_delete("registers", "string", key)

    def incr_expectation(self, key: str, delta: int) -> tuple[int, Any]:
        """What an increment must answer, and the model updated when it succeeds."""
        entry = self.keys.get(key)
        if entry is not None and entry.type != "string":
            return 409, "wrong_type"
        current = 0 if entry is None else as_int(entry.value)
        if current is None:
            return 409, "wrong_type"
        value = current + delta
        if not INT64_MIN <= value <= INT64_MAX:
            return 400, "bad_request"
        if delta != 0 or entry is None:  # INCRBY k 0 creates k holding 0, as in Redis
            expires = None if entry is None else entry.expires_ms
            self.keys[key] = Entry("string", value, expires)
        return 200, {"value": value}

    @rule(key=KEYS, delta=st.integers(-1000, 1000))
    def counter_incr(self, key: str, delta: int) -> None:
        self.expire()
        status, body = self.call("POST", path("counters", key), {"delta": delta})
        want_status, want = self.incr_expectation(key, delta)
        if want_status == 200:
            assert (status, body) == (200, want)
        else:
            assert (status, body["error"]["code"]) == (want_status, want)

    @rule(key=KEYS)
    def counter_get(self, key: str) -> None:
        status, body = self.call("GET", path("counters", key))
        if self.refused(key, "string", status, body):
            return
        if key not in self.keys:
            assert status == 404
        elif (n := as_int(self.keys[key].value)) is None:
            assert (status, body["error"]["code"]) == (409, "wrong_type")
        else:
            assert (status, body) == (200, {"value": n})

    @rule(key=KEYS)
    def counter_delete(self, key: str) -> None:
        self.typed_delete("counters", "string", key)

    # -- sets ----------------------------------------------------------------------------
    def members(self, key: str) -> set[str]:
        entry = self.keys.get(key)
        return set() if entry is None else set(entry.value)

    @rule(key=KEYS, members=NAME_LISTS)
    def set_add(self, key: str, members: list[str]) -> None:
        status, body = self.call("POST", path("sets", key, "/add"), {"members": members})
        if self.refused(key, "set", status, body):
            return
        before = self.members(key)
        assert (status, body) == (200, {"added": len(set(members) - before)})
        if members:
            self.keys[key] = Entry("set", before | set(members), None)

    @rule(key=KEYS, members=NAME_LISTS)
    def set_remove(self, key: str, members: list[str]) -> None:
        status, body = self.call("POST", path("sets", key, "/remove"), {"members": members})
        if self.refused(key, "set", status, body):
            return
        before = self.members(key)
        assert (status, body) == (200, {"removed": len(set(members) & before)})
        if before - set(members):
            self.keys[key] = Entry("set", before - set(members), None)
        else:
            self.keys.pop(key, None)

    @rule(key=KEYS, member=NAMES)
    def set_read(self, key: str, member: str) -> None:
        status, body = self.call("GET", path("sets", key))
        status2, body2 = self.call("GET", path("sets", key, f"/members/{quote(member, safe='')}"))
        if self.refused(key, "set", status, body):
            assert status2 == 409
            return
        if key in self.keys:
            expected = sorted(self.members(key))
            assert (status, body) == (200, {"members": expected, "size": len(expected)})
            assert (status2, body2) == (200, {"present": member in expected})
        else:
            assert status == status2 == 404

    @rule(key=KEYS)
    def set_delete(self, key: str) -> None:
        self.typed_delete("sets", "set", key)

    # -- hlls ----------------------------------------------------------------------------
    @rule(key=KEYS, items=NAME_LISTS)
    def hll_add(self, key: str, items: list[str]) -> None:
        status, body = self.call("POST", path("hlls", key, "/add"), {"items": items})
        if self.refused(key, "hll", status, body):
            return
        before = self.members(key)
        assert status == 200 and set(body) == {"changed"}
        if set(items) <= before:
            assert body == {"changed": False}  # nothing new cannot change a register
        elif not before:
            assert body == {"changed": True}  # the first item always sets a register
        if items:
            self.keys[key] = Entry("hll", before | set(items), None)

    @rule(key=KEYS, sources=st.lists(KEYS, min_size=1, max_size=3))
    def hll_merge(self, key: str, sources: list[str]) -> None:
        status, body = self.call("POST", path("hlls", key, "/merge"), {"sources": sources})
        if any(self.refused(k, "hll", status, body) for k in (key, *sources)):
            return
        union = self.members(key)
        for source in sources:
            union |= self.members(source)
        assert status == 200 and near(body["count"], len(union))
        if union:
            self.keys[key] = Entry("hll", union, None)

    @rule(key=KEYS)
    def hll_count(self, key: str) -> None:
        status, body = self.call("GET", path("hlls", key))
        if self.refused(key, "hll", status, body):
            return
        if key in self.keys:
            assert status == 200 and near(body["count"], len(self.members(key)))
        else:
            assert status == 404

    @rule(key=KEYS)
    def hll_delete(self, key: str) -> None:
        self.typed_delete("hlls", "hll", key)

    # -- batch, time, restarts -----------------------------------------------------------
    @rule(key=KEYS, deltas=st.lists(st.integers(-50, 50), min_size=1, max_size=4))
    def batch_with_a_bad_op(self, key: str, deltas: list[int]) -> None:
        ops: list[Any] = [{"op": "counters.incr", "key": key, "delta": d} for d in deltas]
        bad = len(deltas) // 2
        ops.insert(bad, {"op": "counters.incr", "key": key, "delta": "x"})
        self.expire()
        status, body = self.call("POST", "/v1/batch", {"ops": ops})
        assert status == 200
        results = body["results"]
        assert results[bad]["error"]["code"] == "bad_request"
        del results[bad]
        for delta, result in zip(deltas, results, strict=True):
            want_status, want = self.incr_expectation(key, delta)
            if want_status == 200:
                assert result == want
            else:
                assert result["error"]["code"] == want

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
        assert status == 200 and body["keys"] == len(self.keys)


ApiMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestApiMachine = ApiMachine.TestCase

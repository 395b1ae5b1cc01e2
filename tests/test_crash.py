"""Crash tests: ``kill -9`` a real replica mid-load and check every acknowledged write.

Three parts:

1. ``crdtkv serve --durability fsync``: writer threads hammer one replica
   (counter increments on a key per writer, set adds of unique members to one
   shared set, register writes of increasing values, RPUSHes of unique
   elements to a list per writer, whose order must survive too, and batches
   of all four); the replica is killed with SIGKILL at a random moment, restarted
   on the same data directory, and everything acknowledged (a 200 received)
   must be there, nothing more than what was sent, and the applied vector
   must agree with the data.  One process lifetime per cycle.
2. The same with ``--durability wal``: a process crash (not power loss) loses
   nothing acknowledged either, because RocksDB's WAL is written (to the
   kernel) before the ack.
3. Power loss, with ``MemoryStorage`` (no processes): in ``fsync`` mode
   nothing acknowledged is lost; in ``wal`` mode a crash keeps a prefix of the
   unsynced batches and the recovered replica equals a fresh replica that
   applied exactly the ops of the surviving batches, never a hole.

The seed of the process tests is printed on failure; CRDTKV_CRASH_SEED
replays one, CRDTKV_SLOW=1 runs more cycles.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import http.client
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtkv.crdts.hlc import ZERO
from crdtkv.errors import CrdtkvError, StorageError
from crdtkv.node import Node
from crdtkv.ops import apply_op
from crdtkv.replica import Replica
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import timestamps_of
from crdtkv.replica.persist import Checkpointer, build_batch, load_replica
from crdtkv.storage import MemoryStorage, Storage, WriteBatch
from tests.procs import STARTUP_S, Server, server_group, wait_until

SLOW = os.environ.get("CRDTKV_SLOW") == "1"
CYCLES = 100 if SLOW else 12  # CI's sample (CRDTKV_SLOW=1: the campaign)
WRITERS = 6
ACKED_PER_CYCLE_MIN = 5  # acknowledged writes (dots) before a cycle's kill may come
SET_KEY = "shared-set"


# == 1 and 2: real processes, kill -9 ==============================================================


@dataclass
class WriterModel:
    """What one writer sent and what was acknowledged, across process lifetimes.

    Per cycle, at most one request per writer is in flight when the process
    dies (a writer stops at its first error), so "maybe" holds at most that
    one request's effects.
    """

    idx: int
    # counter ctr-w<idx>: value read after the last restart, then this cycle's changes
    ctr_base: int = 0
    ctr_acked: int = 0
    ctr_maybe: int = 0
    # register reg-w<idx>: increasing values, one writer
    reg_next: int = 1
    reg_acked: int = 0  # 0: never acknowledged
    reg_sent_max: int = 0
    # set members w<idx>-<n> of SET_KEY
    member_next: int = 0
    members_acked: set[str] = field(default_factory=set)
    members_maybe: set[str] = field(default_factory=set)
    # list lst-w<idx>: RPUSHes of w<idx>-l<n>, in order, one writer
    list_next: int = 0
    list_done: list[str] = field(default_factory=list)  # durable (read after a restart)
    list_acked: list[str] = field(default_factory=list)  # acknowledged this cycle
    list_maybe: str | None = None  # in flight when the process died
    # dots: every acknowledged mutation minted exactly one
    dots_acked: int = 0
    dots_maybe: int = 0
    errors: list[str] = field(default_factory=list)  # unexpected HTTP statuses
    requests: int = 0

    @property
    def ctr_key(self) -> str:
        return f"ctr-w{self.idx}"

    @property
    def reg_key(self) -> str:
        return f"reg-w{self.idx}"

    @property
    def list_key(self) -> str:
        return f"lst-w{self.idx}"

    def new_element(self) -> str:
        self.list_next += 1
        return f"w{self.idx}-l{self.list_next}"

    def new_member(self) -> str:
        self.member_next += 1
        return f"w{self.idx}-{self.member_next}"

    def new_reg_value(self) -> int:
        v = self.reg_next
        self.reg_next += 1
        return v


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any
) -> tuple[int, Any]:
    conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


def run_writer(m: WriterModel, port: int, stop: threading.Event, rng: random.Random) -> None:
    """Write until the first connection error (the kill) or ``stop``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        while not stop.is_set():
            kind = rng.choice(("ctr", "set", "reg", "list", "batch"))
            delta = rng.randint(1, 5)
            member = m.new_member() if kind in ("set", "batch") else ""
            value = m.new_reg_value() if kind in ("reg", "batch") else 0
            element = m.new_element() if kind in ("list", "batch") else ""
            if kind == "ctr":
                method, path, body = "POST", f"/v1/counters/{m.ctr_key}", {"delta": delta}
            elif kind == "set":
                method, path, body = "POST", f"/v1/sets/{SET_KEY}/add", {"members": [member]}
            elif kind == "reg":
                method, path, body = "PUT", f"/v1/registers/{m.reg_key}", {"value": value}
            elif kind == "list":
                method, path = "POST", f"/v1/lists/{m.list_key}/rpush"
                body = {"values": [element]}
            else:
                method, path = "POST", "/v1/batch"
                body = {
                    "ops": [
                        {"op": "counters.incr", "key": m.ctr_key, "delta": delta},
                        {"op": "sets.add", "key": SET_KEY, "members": [member]},
                        {"op": "registers.set", "key": m.reg_key, "value": value},
                        {"op": "lists.rpush", "key": m.list_key, "values": [element]},
                    ]
                }
            has_ctr, has_set, has_reg = (
                kind in ("ctr", "batch"),
                kind in ("set", "batch"),
                kind in ("reg", "batch"),
            )
            has_list = kind in ("list", "batch")
            # One dot per request: the ops of a batch share one (one log record, issue 19).
            n_dots = 1
            if has_reg:
                m.reg_sent_max = max(m.reg_sent_max, value)
            m.requests += 1
            try:
                status, resp = _request(conn, method, path, body)
            except (OSError, http.client.HTTPException, ValueError):
                # Killed before, while or after it was applied: maybe.
                m.ctr_maybe += delta if has_ctr else 0
                if has_set:
                    m.members_maybe.add(member)
                if has_list:
                    m.list_maybe = element
                m.dots_maybe += n_dots
                return
            if status != 200 or (
                kind == "batch" and any("error" in r for r in resp.get("results", [{}]))
            ):
                m.errors.append(f"{method} {path} {body} -> {status} {resp}")
                return
            if kind == "set" and resp != {"added": 1}:
                m.errors.append(f"add of a new member answered {resp}")
            if has_ctr:
                m.ctr_acked += delta
            if has_set:
                m.members_acked.add(member)
            if has_reg:
                m.reg_acked = value
            if has_list:
                m.list_acked.append(element)
            m.dots_acked += n_dots
    finally:
        conn.close()


def _read_counter(server: Server, key: str) -> int:
    code, body = server.get(f"/v1/counters/{key}")
    if code == 404:
        return 0
    assert code == 200, (key, code, body)
    value: int = body["value"]
    return value


def verify_after_restart(
    server: Server, models: list[WriterModel], actors: set[str], seq_before: int, durability: str
) -> tuple[set[str], int]:
    """Check every acknowledged write survived; reset the models for the next cycle.

    Returns (the actors this replica has written under, the dots they minted).
    """
    status = server.status()
    applied: dict[str, int] = status["applied"]
    assert status["replica_id"] == "r1"
    assert actors <= set(applied), (actors, applied)
    # Every start runs under a new incarnation (load_replica): at most one new
    # actor per lifetime, the one that wrote in it; no old actor mints again.
    assert len(set(applied) - actors) <= 1, (actors, applied)
    actors = set(applied)
    seq = sum(applied.values())

    # Sets: every acknowledged member, nothing that was never sent.
    code, body = server.get(f"/v1/sets/{SET_KEY}")
    any_acked = any(m.members_acked for m in models)
    if code == 404:
        assert not any_acked, "the set vanished"
        members: set[str] = set()
    else:
        assert code == 200, (code, body)
        members = set(body["members"])
        assert body["size"] == len(members)
    sent: set[str] = set()
    for m in models:
        lost = m.members_acked - members
        assert not lost, f"acknowledged set members lost: {sorted(lost)[:10]}"
        sent |= m.members_acked | m.members_maybe
    assert members <= sent, f"members never sent: {sorted(members - sent)[:10]}"

    for m in models:
        # Counters: every acknowledged increment, at most the one in flight.
        value = _read_counter(server, m.ctr_key)
        lo, hi = m.ctr_base + m.ctr_acked, m.ctr_base + m.ctr_acked + m.ctr_maybe
        assert lo <= value <= hi, f"{m.ctr_key}={value}, expected in [{lo}, {hi}]"
        # Registers: the last acknowledged value or the one in flight after it.
        code, body = server.get(f"/v1/registers/{m.reg_key}")
        if code == 404:
            assert m.reg_acked == 0, f"{m.reg_key} lost (last acked {m.reg_acked})"
            reg = 0
        else:
            assert code == 200, (code, body)
            reg = body["value"]
            assert isinstance(reg, int)
            assert m.reg_acked <= reg <= m.reg_sent_max, (m.reg_key, reg, m.reg_acked)
        # Carry over: what is there now is durable.
        m.ctr_base, m.ctr_acked, m.ctr_maybe = value, 0, 0
        m.reg_acked = reg
        mine = {x for x in members if x.startswith(f"w{m.idx}-")}
        m.members_acked, m.members_maybe = mine, set()
        # Lists: every acknowledged push, in the order sent; the one in flight may follow.
        code, body = server.get(f"/v1/lists/{m.list_key}")
        assert code in (200, 404), (code, body)
        got = body["values"] if code == 200 else []
        want = m.list_done + m.list_acked
        maybe = [m.list_maybe] if m.list_maybe is not None else []
        assert got in (want, want + maybe), (m.list_key, got[-5:], want[-5:], maybe)
        m.list_done, m.list_acked, m.list_maybe = got, [], None

    # The applied vector agrees with the data: one dot per acknowledged
    # mutation, plus some of those in flight; never fewer, never more.
    acked = sum(m.dots_acked for m in models)
    maybe = sum(m.dots_maybe for m in models)
    assert seq_before + acked <= seq <= seq_before + acked + maybe, (seq_before, acked, maybe, seq)
    for m in models:
        m.dots_acked = m.dots_maybe = 0
    live = 1 if members else 0
    live += sum(1 for m in models if m.ctr_base != 0) + sum(1 for m in models if m.reg_acked)
    live += sum(1 for m in models if m.list_done)
    assert status["keys"] == live, (status["keys"], live)
    assert server.get("/healthz") == (200, {"status": "ok"})
    return actors, seq


def kill9_campaign(tmp_path: Path, durability: str, cycles: int) -> None:
    seed = int(os.environ.get("CRDTKV_CRASH_SEED", random.randrange(2**32)))
    print(f"kill -9 campaign: durability={durability} seed={seed} cycles={cycles}")
    rng = random.Random(seed)
    models = [WriterModel(i) for i in range(WRITERS)]
    actors: set[str] = set()
    seq = 0
    totals = {"requests": 0, "acked_dots": 0}
    with server_group() as group:
        server = group.add(Server("r1", tmp_path / "data", durability=durability))
        server.start()
        for cycle in range(cycles):
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=run_writer,
                    args=(m, server.port, stop, random.Random(rng.random())),
                    daemon=True,
                )
                for m in models
            ]
            for t in threads:
                t.start()
            # The load is running (a few writes acknowledged this cycle), then a
            # random moment: the kill lands mid-load, whatever the machine's speed.
            wait_until(
                lambda: (
                    sum(m.dots_acked for m in models) >= ACKED_PER_CYCLE_MIN
                    or any(m.errors for m in models)
                ),
                STARTUP_S,
                what=f"cycle {cycle} (seed {seed}): {ACKED_PER_CYCLE_MIN} acknowledged writes",
            )
            time.sleep(rng.uniform(0.05, 0.35))
            server.kill9()  # mid-load: every writer has a request in flight or about to be
            stop.set()
            for t in threads:
                t.join(timeout=15)
                assert not t.is_alive(), "a writer hung"
            errors = [e for m in models for e in m.errors]
            assert not errors, f"cycle {cycle} (seed {seed}): unexpected answers: {errors[:5]}"
            totals["acked_dots"] += sum(m.dots_acked for m in models)
            server.start()  # same data directory, same port
            try:
                actors, seq = verify_after_restart(server, models, actors, seq, durability)
            except AssertionError as e:
                raise AssertionError(f"cycle {cycle} (seed {seed}): {e}") from e
        totals["requests"] = sum(m.requests for m in models)
        assert server.stop() == 0, server.log_tail()
    if cycles > 1:
        assert len(actors) > 1, "every start must be a new incarnation"
    # The load really ran: hundreds of acknowledged writes over the campaign.
    assert totals["acked_dots"] >= cycles * ACKED_PER_CYCLE_MIN, totals


def test_kill9_fsync_loses_no_acknowledged_write(tmp_path: Path) -> None:
    kill9_campaign(tmp_path, "fsync", CYCLES)


def test_kill9_wal_loses_no_acknowledged_write(tmp_path: Path) -> None:
    # A process crash, not power loss: the WAL is in the kernel before the ack.
    kill9_campaign(tmp_path, "wal", CYCLES)


@pytest.mark.parametrize("durability", ["fsync", "wal"])
def test_every_start_is_a_new_incarnation(tmp_path: Path, durability: str) -> None:
    """A clean stop or a kill -9, in either durability: the next start writes under a
    new actor (a restored copy of the directory cannot be told from the newest one)."""

    def write_and_actors(server: Server) -> set[str]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            status, _ = _request(conn, "POST", "/v1/counters/c", {"delta": 1})
            assert status == 200
        finally:
            conn.close()
        return set(server.status()["applied"])

    with server_group() as group:
        server = group.add(Server("r1", tmp_path / "data", durability=durability))
        server.start()
        first = write_and_actors(server)
        assert server.stop() == 0, server.log_tail()  # SIGTERM: a clean close
        server.start()
        second = write_and_actors(server)
        assert len(second - first) == 1 and first < second  # a new actor, the old kept
        server.kill9()
        server.start()
        after_kill = write_and_actors(server)
        assert len(after_kill - second) == 1 and second <= after_kill
        assert server.stop() == 0, server.log_tail()


# == 3: power loss with the in-memory fake ========================================================

START_MS = 1_700_000_000_000
ACK_WAIT_S = 20.0  # bound on the first group commit of a node campaign (a thread does it)
KEYS = ["a", "b", "c"]
MAP_KEYS = ["h", "z", "l"]  # hashes, sorted sets, lists: a header and a record per field
MEMBERS = ["m0", "m1", "m2", "m3"]


def _op_strategy() -> st.SearchStrategy[dict[str, Any]]:
    key = st.sampled_from(KEYS)
    map_key = st.sampled_from(MAP_KEYS)
    members = st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=3)
    return st.one_of(
        st.builds(
            lambda k, v, ttl: (
                {"op": "registers.set", "key": k, "value": v} | ({"ttl_ms": ttl} if ttl else {})
            ),
            key,
            st.integers(-5, 100),
            st.sampled_from([None, None, 5, 50]),
        ),
        st.builds(lambda k: {"op": "registers.delete", "key": k}, key),
        st.builds(
            lambda k, d: {"op": "counters.incr", "key": k, "delta": d}, key, st.integers(-9, 9)
        ),
        st.builds(lambda k: {"op": "counters.delete", "key": k}, key),
        st.builds(lambda k, ms: {"op": "sets.add", "key": k, "members": ms}, key, members),
        st.builds(lambda k, ms: {"op": "sets.remove", "key": k, "members": ms}, key, members),
        st.builds(lambda k: {"op": "sets.delete", "key": k}, key),
        st.builds(
            lambda k, items: {"op": "hlls.add", "key": k, "items": items},
            key,
            st.lists(st.text("xyz", min_size=1, max_size=3), min_size=1, max_size=3),
        ),
        st.builds(
            lambda k, srcs: {"op": "hlls.merge", "key": k, "sources": srcs},
            key,
            st.lists(key, min_size=1, max_size=2),
        ),
        st.builds(lambda k: {"op": "hlls.delete", "key": k}, key),
        st.builds(
            lambda k, fs: {"op": "hashes.set", "key": k, "fields": fs},
            map_key,
            st.dictionaries(st.sampled_from(MEMBERS), st.integers(-5, 100), min_size=1),
        ),
        st.builds(
            lambda k, f, d: {"op": "hashes.incr", "key": k, "field": f, "delta": d},
            map_key,
            st.sampled_from(MEMBERS),
            st.integers(-9, 9),
        ),
        st.builds(lambda k, fs: {"op": "hashes.remove", "key": k, "names": fs}, map_key, members),
        st.builds(
            lambda k, ss: {"op": "zsets.add", "key": k, "scores": ss},
            map_key,
            st.dictionaries(st.sampled_from(MEMBERS), st.integers(-5, 5).map(float), min_size=1),
        ),
        st.builds(
            lambda k, m, by: {"op": "zsets.incr", "key": k, "member": m, "increment": by},
            map_key,
            st.sampled_from(MEMBERS),
            st.sampled_from([0.5, 1.0, -2.0]),
        ),
        st.builds(lambda k, ms: {"op": "zsets.remove", "key": k, "members": ms}, map_key, members),
        st.builds(
            lambda k, vs, left: (
                {"op": "lists.lpush" if left else "lists.rpush", "key": k} | {"values": vs}
            ),
            map_key,
            members,
            st.booleans(),
        ),
        st.builds(
            lambda k, n, left: (
                {"op": "lists.lpop" if left else "lists.rpop", "key": k} | {"pop_count": n}
            ),
            map_key,
            st.integers(0, 3),
            st.booleans(),
        ),
        st.builds(
            lambda k, i, v: {"op": "lists.set", "key": k, "index": i, "element": v},
            map_key,
            st.integers(-2, 2),
            st.sampled_from(MEMBERS),
        ),
        st.builds(
            lambda k, p, v: (
                {"op": "lists.insert", "key": k, "where": "after"} | {"pivot": p, "element": v}
            ),
            map_key,
            st.sampled_from(MEMBERS),
            st.sampled_from(MEMBERS),
        ),
        st.builds(
            lambda k, d: (
                {"op": "lists.move", "key": k, "destination": d}
                | {"from_end": "left", "to_end": "right"}
            ),
            map_key,
            map_key,
        ),
        st.builds(lambda k: {"op": "keys.delete", "key": k}, map_key),
        st.builds(
            lambda k, ttl: {"op": "keys.expire", "key": k, "ttl_ms": ttl},
            map_key,
            st.sampled_from([5, 50]),
        ),
    )


# One group commit: its ops, whether it writes a checkpoint, whether every
# peer has acknowledged everything (the log below the checkpoint is deleted).
Group = tuple[list[dict[str, Any]], bool, bool]
groups_strategy = st.lists(
    st.tuples(st.lists(_op_strategy(), min_size=1, max_size=4), st.booleans(), st.booleans()),
    min_size=1,
    max_size=25,
)


def _apply(replica: Replica, op: dict[str, Any], now_ms: int) -> None:
    # Refused ops (e.g. counter overflow) change nothing, here and in the replay.
    with contextlib.suppress(CrdtkvError):
        apply_op(replica, op, now_ms)


def _now(i: int) -> int:
    return START_MS + 3 * i  # TTLs of 5 and 50 ms expire within the run


def snapshot(replica: Replica, now_ms: int) -> dict[str, Any]:
    """Everything that must survive: states (canonical bytes), reads, causal context."""
    reads = {}
    for key in sorted(replica.states):
        ns, k = key
        op = {
            "string": "registers.get",
            "set": "sets.get",
            "hll": "hlls.count",
            "hash": "hashes.getall",
            "zset": "zsets.get",
            "list": "lists.get",
            "meta": "registers.get",  # the key's visible value, whatever its type; or 409
        }[ns]
        try:
            reads[key] = apply_op(replica, {"op": op, "key": k}, now_ms)
        except CrdtkvError as e:
            reads[key] = e.code
    return {
        "states": {k: rec.encode_state(s) for k, s in sorted(replica.states.items())},
        "reads": reads,
        "applied": replica.applied.encode(),  # every actor's dots, "r1~inc1"'s included
        "log_pos": replica.log_pos,
    }


def _max_timestamp(replica: Replica) -> Any:
    """The largest HLC timestamp any state holds (string bases, type stamps, epochs)."""
    return max((ts for s in replica.states.values() for ts in timestamps_of(s)), default=ZERO)


def run_groups(storage: MemoryStorage, groups: list[Group], *, sync: bool) -> Replica:
    replica = load_replica(storage, "r1", "inc1")
    for i, (ops, checkpoint, all_acked) in enumerate(groups):
        for op in ops:
            _apply(replica, op, _now(i))
        entries = replica.take_pending()
        floor = replica.log_pos if all_acked else None
        storage.write(
            build_batch(replica, entries, checkpoint=checkpoint, log_floor=floor), sync=sync
        )
    return replica


def replay(groups: list[Group]) -> Replica:
    """A fresh replica that applied exactly ``groups`` (no storage at all)."""
    replica = Replica("r1", "inc1")
    for i, (ops, _, _) in enumerate(groups):
        for op in ops:
            _apply(replica, op, _now(i))
    replica.take_pending()
    return replica


def check_recovered(storage: MemoryStorage, groups: list[Group], survivors: int) -> None:
    recovered = load_replica(storage, "r1", "after-crash")
    expected = replay(groups[:survivors])
    now = _now(len(groups))
    assert recovered.incarnation == "after-crash"  # every start: a new actor
    assert snapshot(recovered, now) == snapshot(expected, now), f"after {survivors} batches"
    # The HLC resumes past every timestamp it handed out: a new write wins.
    assert recovered.hlc.last > _max_timestamp(recovered)
    fresh = "after-recovery"  # not one of KEYS: no type of its own yet
    apply_op(recovered, {"op": "registers.set", "key": fresh, "value": "after"}, now)
    assert apply_op(recovered, {"op": "registers.get", "key": fresh}, now) == {"value": "after"}
    # The next dot is the new actor's first; the old actor mints no more.
    assert recovered.seq == 1 and recovered.actor == "r1~after-crash"
    assert recovered.applied.vv.get("r1~inc1", 0) == expected.seq


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=groups_strategy)
def test_power_loss_fsync_loses_nothing_written(groups: list[Group]) -> None:
    storage = MemoryStorage()
    run_groups(storage, groups, sync=True)
    assert storage.unsynced_batches == 0
    storage.crash()
    check_recovered(storage, groups, len(groups))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=groups_strategy)
def test_power_loss_wal_loses_a_suffix_of_batches_never_a_hole(groups: list[Group]) -> None:
    storage = MemoryStorage()
    run_groups(storage, groups, sync=False)
    unsynced = storage.unsynced_batches
    assert unsynced == len(groups)  # only load_replica's initialisation was synced
    for keep in range(unsynced + 1):
        crashed = copy.deepcopy(storage)
        crashed.crash(keep_unsynced=keep)
        check_recovered(crashed, groups, keep)


# -- the same through Node: group commit, the storage thread, acknowledgements -----------------


class ProcessView(Storage):
    """One process lifetime's handle on a ``MemoryStorage``: after ``power_cut`` the
    old process can write nothing more (it is dead), whatever its threads were doing."""

    def __init__(self, mem: MemoryStorage, lock: threading.Lock) -> None:
        self.mem, self.lock, self.dead = mem, lock, False

    def write(self, batch: WriteBatch, *, sync: bool) -> None:
        with self.lock:
            if self.dead:
                raise StorageError("the process is dead")
            self.mem.write(batch, sync=sync)

    def get(self, cf: str, key: bytes) -> bytes | None:
        return self.mem.get(cf, key)

    def items(self, cf: str, start: bytes = b"", end: bytes | None = None) -> Any:
        return self.mem.items(cf, start, end)

    def close(self) -> None:
        pass  # the old process never closes cleanly: it lost power

    def power_cut(self, keep_unsynced: int | None) -> None:
        with self.lock:  # between two batch writes, never inside one
            self.dead = True
            unsynced = self.mem.unsynced_batches
            keep = None if keep_unsynced is None else min(keep_unsynced, unsynced)
            self.mem.crash(keep_unsynced=keep)


class StepClock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


async def _node_campaign(durability: str, seed: int) -> None:
    rng = random.Random(seed)
    mem, lock = MemoryStorage(), threading.Lock()
    view = ProcessView(mem, lock)
    clock = StepClock()
    node = Node(
        load_replica(view, "r1", "inc1"),
        view,
        durability=durability,
        clock=clock,
        checkpointer=Checkpointer(dirty_keys_max=3, log_entries_max=10, interval_ms=10),
    )
    node.start()
    applied: list[tuple[dict[str, Any], int, int]] = []  # (op, now_ms, log_pos after it)
    acked: list[int] = []  # log positions of acknowledged ops

    async def client(i: int) -> None:
        for j in range(40):
            op = {"op": "counters.incr", "key": f"c{i % 3}", "delta": 1}
            if j % 3 == 1:
                op = {"op": "sets.add", "key": "s", "members": [f"m{i}-{j}"]}
            elif j % 3 == 2:
                op = {"op": "registers.set", "key": f"r{i % 2}", "value": j}
            clock.now += rng.randint(0, 4)
            try:
                node.apply(op)
            except StorageError:
                return
            pos = node.replica.log_pos
            applied.append((op, clock.now, pos))
            try:
                await node.durable(pos)
            except StorageError:
                return
            acked.append(pos)
            await asyncio.sleep(0)

    tasks = [asyncio.ensure_future(client(i)) for i in range(8)]
    deadline = time.monotonic() + ACK_WAIT_S  # at least one acknowledgement, then a random moment
    while not acked and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    for _ in range(rng.randint(0, 60)):
        await asyncio.sleep(0)
        await asyncio.sleep(rng.uniform(0, 0.0005))
    keep = None if durability == "fsync" else rng.randint(0, 5)
    view.power_cut(keep)
    await asyncio.gather(*tasks)
    await node.close()

    recovered = load_replica(mem, "r1", "after-crash")
    upto = recovered.log_pos
    if durability == "fsync":
        assert all(p <= upto for p in acked), "an acknowledged op was lost"
    expected = Replica("r1", "inc1")
    for op, now, pos in applied:
        if pos <= upto:
            apply_op(expected, op, now)
    expected.take_pending()
    now = clock.now + 1
    assert snapshot(recovered, now) == snapshot(expected, now)
    assert acked, "the campaign acknowledged something"


@pytest.mark.parametrize("durability", ["fsync", "wal"])
@pytest.mark.parametrize("seed", range(10))
async def test_power_loss_through_node(durability: str, seed: int) -> None:
    """Group commit over the fake: fsync keeps every acknowledged op; wal keeps a
    prefix of the log, and the state is exactly that prefix's ops."""
    await _node_campaign(durability, seed)

"""The nemesis against real processes (``simulations.nemesis``, docs/simulation.md).

- the fault proxy does what each fault says, against a small aiohttp target
  that records the requests it gets, in order;
- a short campaign of real ``crdtkv serve`` runs (the CLI, as CI runs it)
  passes every checker with every kind of fault actually injected
  (``CRDTKV_SLOW=1`` adds 30 runs);
- the canary (a replica cut off, then restarted on an empty data directory)
  is caught as lost acknowledged writes: the checkers can fail;
- ``--clock-offset-ms`` shifts a real replica's clock (its session tokens
  carry it), and a clock beyond ``--max-offset-ms`` delays its writes at
  its peers until real time catches up, without losing them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
from aiohttp import web

from crdtkv.sessions import SESSION_HEADER
from simulations.nemesis.proxy import Link, Proxy
from simulations.nemesis.run import NemesisOptions, run_one
from tests.procs import ROOT, clean_env, free_ports, mesh, server_group, start_all, wait_until

# -- the proxy ------------------------------------------------------------------------------------


class Target:
    """Records the body of every request it gets, in arrival order."""

    def __init__(self) -> None:
        self.got: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        self.got.append(body)
        return web.Response(text=f"re:{body}")


@asynccontextmanager
async def proxied(**faults: Any) -> AsyncIterator[tuple[Link, Target, aiohttp.ClientSession, str]]:
    target = Target()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", target.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    target_port, proxy_port = free_ports(2)
    await web.TCPSite(runner, "127.0.0.1", target_port).start()
    link = Link("a", "b", f"http://127.0.0.1:{target_port}", **faults)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        proxy = Proxy(link, proxy_port, random.Random(1), session)
        await proxy.start()
        try:
            yield link, target, session, f"http://127.0.0.1:{proxy_port}/replicate"
        finally:
            await proxy.stop()
            await runner.cleanup()


async def send(session: aiohttp.ClientSession, url: str, body: str) -> int | str:
    """The status the sender sees, or "disconnected"."""
    try:
        async with session.post(url, data=body) as resp:
            await resp.read()
            return resp.status
    except aiohttp.ClientError:
        return "disconnected"


def run(coro: Callable[[], Any]) -> Any:
    return asyncio.run(coro())


def test_a_calm_link_forwards_requests_and_replies() -> None:
    async def go() -> None:
        async with proxied() as (link, target, session, url):
            async with session.post(url, data="m1") as resp:
                assert (resp.status, await resp.text()) == (200, "re:m1")
            assert target.got == ["m1"] and link.forwarded == 1 and link.dropped == 0

    run(go)


def test_a_blocked_link_answers_503_and_forwards_nothing() -> None:
    async def go() -> None:
        async with proxied(blocked=True) as (link, target, session, url):
            assert [await send(session, url, f"m{i}") for i in range(3)] == [503] * 3
            assert target.got == [] and link.counts["blocked"] == 3

    run(go)


def test_delay_holds_each_request_and_reply_at_least_the_latency() -> None:
    async def go() -> None:
        async with proxied(latency_ms=100, jitter_ms=20) as (link, target, session, url):
            start = time.monotonic()
            assert await send(session, url, "m") == 200
            assert time.monotonic() - start >= 0.2  # a lower bound: there and back
            assert target.got == ["m"] and link.counts["delayed"] == 1

    run(go)


def test_loss_drops_requests_before_or_replies_after_the_target_applied_them() -> None:
    async def go() -> None:
        async with proxied(loss=1.0) as (link, target, session, url):
            seen = [await send(session, url, f"m{i}") for i in range(40)]
            c = link.counts
            assert c["dropped_request"] > 0 and c["dropped_reply"] > 0
            # loss/2 each: the request before forwarding, else the reply after.
            assert len(target.got) == 40 - c["dropped_request"] == link.forwarded
            assert seen.count(503) == c["dropped_request"] + c["dropped_reply"]
            assert seen.count(200) == 40 - seen.count(503) > 0

    run(go)


def test_reset_aborts_the_senders_connection_with_or_without_forwarding() -> None:
    async def go() -> None:
        async with proxied(reset=1.0) as (link, target, session, url):
            seen = [await send(session, url, f"m{i}") for i in range(20)]
            assert seen == ["disconnected"] * 20
            assert link.counts["reset"] == 20
            assert 0 < len(target.got) < 20  # half of them after forwarding

    run(go)


def test_dup_delivers_a_request_twice_at_once_or_replayed_later() -> None:
    async def go() -> None:
        async with proxied(dup=1.0) as (link, target, session, url):
            assert await send(session, url, "m1") == 200
            assert target.got == ["m1", "m1"]  # both before the reply
            link.dup_delay_ms = 200
            for i in range(2, 8):
                assert await send(session, url, f"m{i}") == 200
            wait_s = 0.0
            while len(target.got) < 14 and wait_s < 5:
                await asyncio.sleep(0.05)
                wait_s += 0.05
            assert sorted(target.got) == sorted([f"m{i}" for i in range(1, 8)] * 2)
            assert link.counts["duplicated"] == 7

    run(go)


def test_reorder_holds_a_request_back_so_later_ones_overtake_it() -> None:
    async def go() -> None:
        async with proxied(reorder=1.0, reorder_ms=300) as (link, target, session, url):
            assert await send(session, url, "first") == 503  # the sender gives up on it
            link.reorder = 0.0
            assert await send(session, url, "second") == 200
            assert target.got == ["second"]
            wait_s = 0.0
            while len(target.got) < 2 and wait_s < 5:
                await asyncio.sleep(0.05)
                wait_s += 0.05
            assert target.got == ["second", "first"]
            assert link.counts["reordered"] == 1

    run(go)


# -- real processes -------------------------------------------------------------------------------


def _nemesis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulations", "nemesis", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=clean_env(),
        timeout=1200,
    )


# What a short campaign must have injected (each > 0), as ``Link.counts`` and the
# schedule name them.
EVERY_FAULT = (
    "blocked",
    "partitions",
    "delayed",
    "dropped_request",
    "dropped_reply",
    "reset",
    "duplicated",
    "reordered",
    "kills",
    "restarts",
    "clock_offsets",
)


def test_a_short_campaign_of_real_processes_loses_nothing_and_converges(tmp_path: Path) -> None:
    out = tmp_path / "nemesis.json"
    done = _nemesis("--runs", "3", "--seed", "1", "--duration", "4", "--quiet", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    s = report["summary"]
    assert s["runs"] == 3 and s["failing_seeds"] == [], s
    assert s["lost"] == 0 and s["divergent_runs"] == 0, s
    assert s["acknowledged_writes"] > 300, s
    missing = [k for k in EVERY_FAULT if not s["faults"].get(k)]
    assert not missing, (missing, s["faults"])
    assert all(r["stats"]["converge_s"] is not None for r in report["runs"])
    assert "lost: 0, divergent runs: 0" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CRDTKV_SLOW") != "1", reason="set CRDTKV_SLOW=1")
def test_a_longer_campaign_of_real_processes(tmp_path: Path) -> None:
    """30 runs of 6 s (about six minutes); docs/simulation.md reports 200."""
    out = tmp_path / "nemesis.json"
    done = _nemesis(
        "--runs", "30", "--seed", "1000", "--duration", "6", "--quiet", "--out", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    s = json.loads(out.read_text())["summary"]
    assert (s["runs"], s["lost"], s["divergent_runs"], s["failing_seeds"]) == (30, 0, 0, []), s


def test_the_wipe_canary_is_caught_as_lost_acknowledged_writes(tmp_path: Path) -> None:
    opts = NemesisOptions(seed=1, duration_s=4, canary="wipe-isolated", data_dir=tmp_path)
    result = run_one(opts)
    assert (tmp_path / "history.json").exists()  # a failing run keeps its history
    assert result.faults.get("wipes") == 1, result.events
    assert result.lost() > 0, [v.line() for v in result.violations]
    lost = {v.kind for v in result.violations}
    assert lost & {"lost-add", "lost-push", "wrong-sum", "lost-hset", "lost-field"}, lost


# -- clock offsets --------------------------------------------------------------------------------


def _write(url: str, key: str, value: str) -> tuple[int, str | None]:
    req = urllib.request.Request(
        f"{url}/v1/registers/{key}",
        data=json.dumps({"value": value}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.headers.get(SESSION_HEADER)


def _read(url: str, key: str) -> Any:
    try:
        with urllib.request.urlopen(f"{url}/v1/registers/{key}", timeout=10) as resp:
            return json.loads(resp.read())["value"]
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code
        return None


def _token_wall_ms(token: str) -> int:
    """The HLC wall time a session token carries (its payload: [version, vv, hlc])."""
    payload = token.split(".")[0]
    data = msgpack.unpackb(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    wall: int = data[2][0]
    return wall


def test_clock_offsets_shift_a_real_replicas_clock_and_beyond_the_bound_delay_its_writes(
    tmp_path: Path,
) -> None:
    behind_ms, ahead_ms, bound_ms = 300, 3000, 500
    with server_group() as group:
        r1, r2 = mesh(["r1", "r2"], tmp_path, secret="s")
        r1.extra = ["--max-offset-ms", str(bound_ms), f"--clock-offset-ms=-{behind_ms}"]
        r2.extra = ["--max-offset-ms", str(bound_ms), f"--clock-offset-ms={ahead_ms}"]
        group.add(r1)
        group.add(r2)
        start_all([r1, r2])
        # r1's clock is 300 ms behind: so are the HLC times it hands out.
        before = time.time_ns() // 1_000_000
        status, token = _write(r1.url, "behind", "v")
        assert status == 200 and token is not None
        assert _token_wall_ms(token) <= before - behind_ms + 50
        # r2's clock is 3.3 s ahead of r1's, beyond r1's 500 ms bound: r1 refuses the
        # write's timestamp until its own clock is within the bound of it, then applies it.
        before = time.time_ns() // 1_000_000
        status, token = _write(r2.url, "ahead", "from-r2")
        assert status == 200 and token is not None
        assert _token_wall_ms(token) >= before + ahead_ms - 50
        wait_until(lambda: _read(r2.url, "behind") == "v", 30, what="r1's write at r2")
        assert _read(r1.url, "ahead") is None  # 2.8 s after the write at the earliest
        wait_until(lambda: _read(r1.url, "ahead") == "from-r2", 60, what="r2's write at r1")
        assert time.time_ns() // 1_000_000 >= before + ahead_ms + behind_ms - bound_ms - 50


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--clock-offset-ms", "soon"], {}, "--clock-offset-ms"),
        (["--clock-offset-ms=3600001"], {}, "--clock-offset-ms"),
        (["--clock-offset-ms=-3600001"], {}, "--clock-offset-ms"),
        ([], {"CRDTKV_CLOCK_OFFSET_MS": "1.5"}, "CRDTKV_CLOCK_OFFSET_MS"),
    ],
)
def test_a_bad_clock_offset_exits_2_naming_it(
    argv: list[str], env: dict[str, str], named: str
) -> None:
    from crdtkv.config import UsageError, parse_serve_args

    with pytest.raises(UsageError) as e:
        parse_serve_args(["--replica-id", "r1", *argv], env)
    assert named in str(e.value) and "3600000" in str(e.value)


def test_the_clock_offset_is_hidden_from_help_and_shown_by_check_config_when_set() -> None:
    from crdtkv.config import build_serve_parser, parse_serve_args

    assert "clock-offset" not in build_serve_parser().format_help()
    assert parse_serve_args(["--replica-id", "r1"], {}).clock_offset_ms == 0
    env = parse_serve_args(["--replica-id", "r1"], {"CRDTKV_CLOCK_OFFSET_MS": "-250"})
    assert env.clock_offset_ms == -250 and env.to_json()["clock_offset_ms"] == -250
    cli = parse_serve_args(["--replica-id", "r1", "--clock-offset-ms", "40"], {})
    assert cli.clock_offset_ms == 40
    assert "clock_offset_ms" not in parse_serve_args(["--replica-id", "r1"], {}).to_json()

"""Upgrades against the previous release, as real processes (issue 20, item 4).

The previous release is built from git: the commit of tag ``v0.1.0``
(``PREVIOUS_COMMIT``, so that a clone without tags finds it too) is exported
with ``git archive``, built into a wheel and installed into a directory of its
own.  Its replicas run from that directory (``Server.pythonpath``), with this
interpreter and the same dependencies; the others run this checkout.

What docs/operations.md ("Upgrades") promises, tested here:
- a mixed cluster of 0.1.0 and this release converges, for every type, and
  each side's status names the other's release;
- a rolling upgrade, one replica at a time on its own data directory, loses
  no acknowledged write;
- 0.1.0 starts on a data directory this release wrote (storage format 2 is
  unchanged), so a rollback needs no restore;
- a peer that speaks another wire format is refused with a message naming
  both releases and both formats, in either direction, and nothing is applied.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp import web

from crdtkv import versions
from crdtkv.client import Client
from replication.http import REPLICATE_PATH
from tests.procs import (
    ROOT,
    Server,
    ServerGroup,
    free_port,
    server_group,
    start_all,
    wait_until,
)
from tests.replication.real_cluster import (
    CONVERGE_S,
    SECRET,
    converge,
    http_raw,
    read,
    signed_headers,
)

PREVIOUS_TAG = "v0.1.0"
PREVIOUS_COMMIT = "9a26b3c34320f93e50e34fe401deb78c046b933a"
PREVIOUS_RELEASE = "0.1.0"
BUILD_TIMEOUT_S = 300
STOP_S = 60.0  # a clean stop on a loaded machine (CI) finishes in-flight requests first


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the previous release is installed in (a wheel built from git)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the previous release is built from git history")
    if _git("cat-file", "-e", f"{PREVIOUS_COMMIT}^{{commit}}").returncode != 0:
        pytest.fail(
            f"commit {PREVIOUS_COMMIT} ({PREVIOUS_TAG}) is not in this clone's history: "
            "the upgrade tests need a clone that is not shallow"
        )
    tagged = _git("rev-parse", f"{PREVIOUS_TAG}^{{commit}}")
    if tagged.returncode == 0:  # when the tag came with the clone, it must name that commit
        assert tagged.stdout.strip() == PREVIOUS_COMMIT, (PREVIOUS_TAG, tagged.stdout)
    work = tmp_path_factory.mktemp("previous-release")
    src, wheels, site = work / "src", work / "wheels", work / "site"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_COMMIT],
        capture_output=True,
        check=True,
        timeout=60,
    )
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=60)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: setuptools comes with the test extras, so this needs no network.
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)]
    subprocess.run(build, check=True, timeout=BUILD_TIMEOUT_S, capture_output=True)
    [wheel] = wheels.glob(f"crdtkv-{PREVIOUS_RELEASE}-*.whl")
    install = [*pip, "install", "--no-deps", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, timeout=BUILD_TIMEOUT_S, capture_output=True)
    assert (site / "crdtkv" / "__init__.py").exists() and (site / "replication").is_dir()
    return site


def three(root: Path, old: set[str], site: Path) -> list[Server]:
    """r1, r2, r3 fully meshed with the cluster secret; those in ``old`` run 0.1.0."""
    ids = ["r1", "r2", "r3"]
    ports = [free_port() for _ in ids]
    urls = {rid: f"http://127.0.0.1:{p}" for rid, p in zip(ids, ports, strict=True)}
    servers = []
    for rid, port in zip(ids, ports, strict=True):
        s = Server(
            rid,
            root / rid,
            port=port,
            peers={p: u for p, u in urls.items() if p != rid},
            secret=SECRET,
        )
        s.pythonpath = site if rid in old else None
        servers.append(s)
    return servers


def release_of(server: Server) -> str:
    """The release a replica reports; 0.1.0 did not report one."""
    return str(server.status().get("release", PREVIOUS_RELEASE))


# One key per type, written at every replica: (namespace, key) and a writer.
KEYS = [
    ("registers", "reg"),
    ("counters", "hits"),
    ("sets", "tags"),
    ("hlls", "visitors"),
    ("hashes", "profile"),
    ("zsets", "board"),
    ("lists", "queue"),
    # Written by one /v1/batch: at this release its ops share one dot and one log
    # record, whose deltas of one key are joined; 0.1.0 peers read it as any group.
    ("counters", "b-hits"),
    ("sets", "b-tags"),
    ("hashes", "b-profile"),
]


def write_everything(server: Server, n: int) -> None:
    rid = server.replica_id
    with Client([server.url], timeout_s=10) as db:
        db.registers.set("reg", f"{rid}-{n}")
        db.counters.incr("hits", 1)
        db.sets.add("tags", f"{rid}-{n}")
        db.hlls.add("visitors", f"{rid}-{n}", f"shared-{n}")
        db.hashes.set("profile", {f"{rid}-{n}": str(n)})
        db.zsets.add("board", {f"{rid}-{n}": float(n)})
        db.lists.rpush("queue", f"{rid}-{n}")
        results = db.batch(
            [
                {"op": "counters.incr", "key": "b-hits", "delta": 1},
                {"op": "sets.add", "key": "b-tags", "members": [f"{rid}-{n}"]},
                {"op": "hashes.set", "key": "b-profile", "fields": {f"{rid}-{n}": "x"}},
                {"op": "counters.incr", "key": "b-hits", "delta": 2},
                {"op": "sets.add", "key": "b-tags", "members": [f"{rid}-{n}-again"]},
                {"op": "hashes.set", "key": "b-profile", "fields": {f"{rid}-{n}": str(n)}},
            ]
        )
        assert all("error" not in r for r in results), results


def expect_all_writes(reads: dict[Any, Any], writes: list[tuple[str, int]]) -> None:
    """Every acknowledged write of ``writes`` (replica id, n) is in the converged reads."""
    names = sorted(f"{rid}-{n}" for rid, n in writes)
    assert reads[("counters", "hits")]["value"] == len(writes), reads[("counters", "hits")]
    assert sorted(reads[("sets", "tags")]["members"]) == names
    assert sorted(reads[("hashes", "profile")]["fields"]) == names
    assert sorted(m for m, _ in reads[("zsets", "board")]["items"]) == names
    assert sorted(reads[("lists", "queue")]["values"]) == names
    assert reads[("hlls", "visitors")]["count"] >= len(writes)
    assert reads[("registers", "reg")]["value"] in names
    assert reads[("counters", "b-hits")]["value"] == 3 * len(writes)
    again = sorted([*names, *(f"{x}-again" for x in names)])
    assert sorted(reads[("sets", "b-tags")]["members"]) == again
    assert reads[("hashes", "b-profile")]["fields"] == {f"{r}-{n}": str(n) for r, n in writes}


@pytest.fixture
def group() -> Iterator[ServerGroup]:
    with server_group() as g:
        yield g


def test_a_mixed_cluster_converges_for_every_type(
    previous: Path, group: ServerGroup, tmp_path: Path
) -> None:
    servers = three(tmp_path, {"r1"}, previous)
    for s in servers:
        group.add(s)
    start_all(servers)
    r1, r2, _r3 = servers
    assert "release" not in r1.status()  # it is 0.1.0 indeed, not this checkout
    assert r2.status()["release"] == versions.RELEASE
    for n in range(3):
        for s in servers:
            write_everything(s, n)
    reads, _ = converge(servers, KEYS)
    expect_all_writes(reads, [(s.replica_id, n) for s in servers for n in range(3)])
    # This release sees what its peers run: 0.1.0 sends no version, so it reads as older.
    peers = r2.status()["peers"]
    assert peers["r1"]["release"] == "before 0.2.0" and peers["r1"]["wire_format"] == 1
    assert peers["r3"]["release"] == versions.RELEASE
    assert peers["r3"]["wire_format"] == versions.WIRE_FORMAT


def test_a_rolling_upgrade_loses_no_acknowledged_write(
    previous: Path, group: ServerGroup, tmp_path: Path
) -> None:
    servers = three(tmp_path, {"r1", "r2", "r3"}, previous)
    for s in servers:
        group.add(s)
    start_all(servers)
    assert {release_of(s) for s in servers} == {PREVIOUS_RELEASE}
    writes: list[tuple[str, int]] = []

    def round_of_writes(n: int) -> None:
        for s in servers:
            if s.running():
                write_everything(s, n)
                writes.append((s.replica_id, n))

    round_of_writes(0)
    for i, s in enumerate(servers):
        # One at a time, as docs/operations.md says: a healthy cluster first (every
        # replica up, every peer reachable and caught up), then stop it cleanly, write
        # at the others meanwhile, start this release on the same data directory,
        # write everywhere again.
        converge(servers, KEYS)
        assert s.stop(timeout_s=STOP_S) == 0
        round_of_writes(10 * i + 1)
        s.pythonpath = None
        s.start()
        assert s.status()["release"] == versions.RELEASE
        round_of_writes(10 * i + 2)
    reads, _ = converge(servers, KEYS)
    expect_all_writes(reads, writes)
    for s in servers:
        st = s.status()
        assert st["release"] == versions.RELEASE
        assert {p["release"] for p in st["peers"].values()} == {versions.RELEASE}, st


def test_the_previous_release_starts_on_a_data_directory_this_one_wrote(
    previous: Path, group: ServerGroup, tmp_path: Path
) -> None:
    s = group.add(Server("r1", tmp_path / "r1"))
    s.start()
    write_everything(s, 1)
    before = {k: read(s, k) for k in KEYS}
    assert s.stop(timeout_s=STOP_S) == 0
    s.pythonpath = previous  # a rollback
    s.start()
    assert "release" not in s.status()
    assert {k: read(s, k) for k in KEYS} == before
    write_everything(s, 2)  # and it writes on it
    assert s.stop(timeout_s=STOP_S) == 0
    s.pythonpath = None  # forward again: this release reads what 0.1.0 wrote
    s.start()
    got = {k: read(s, k) for k in KEYS}
    assert got[("counters", "hits")]["value"] == 2
    assert sorted(got[("lists", "queue")]["values"]) == ["r1-1", "r1-2"]


# -- refusals of another wire format -------------------------------------------------------------


def test_a_request_in_another_wire_format_is_refused_naming_both_sides(
    group: ServerGroup, tmp_path: Path
) -> None:
    s = group.add(Server("r1", tmp_path / "r1", peers={"r2": "http://127.0.0.1:9"}, secret=SECRET))
    s.start()
    applied = s.status()["applied"]
    body = msgpack.packb(["push", "r2", "inc", {}, 0, 1, []])
    for wire, shown in (("7", "7"), ("0", "0"), ("seven", "'seven'")):
        headers = signed_headers(body, peer="r2")
        headers.update({versions.WIRE_HEADER: wire, versions.RELEASE_HEADER: "9.0.0"})
        code, reply_headers, raw = http_raw("POST", s.url + REPLICATE_PATH, body, headers)
        assert code == 400, (code, raw)
        error = json.loads(raw)["error"]
        assert error["code"] == "wire_version"
        msg = error["message"]
        assert f"crdtkv 9.0.0 and sent a replication request in wire format {shown}" in msg
        assert f"crdtkv {versions.RELEASE}) sends wire format {versions.WIRE_FORMAT}" in msg
        assert "reads format 1" in msg, msg
        assert reply_headers[versions.WIRE_HEADER] == str(versions.WIRE_FORMAT)
    st = s.status()
    assert st["applied"] == applied and st["peers"]["r2"]["release"] == "9.0.0"
    assert "refused replication request" in s.log_tail(50)
    # The same request in this release's format gets past the version check (to the
    # body decoder, which refuses this made-up body for its own reason).
    headers = signed_headers(body, peer="r2")
    headers[versions.WIRE_HEADER] = str(versions.WIRE_FORMAT)
    code, _, raw = http_raw("POST", s.url + REPLICATE_PATH, body, headers)
    assert code == 400 and b"wire_version" not in raw, raw


class _FuturePeer:
    """A stand-in for a replica of a later release: it answers every replication
    request with 200 and a reply in wire format 7."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(dict(request.headers))
        await request.read()
        return web.Response(
            body=b"\x90",
            headers={versions.WIRE_HEADER: "7", versions.RELEASE_HEADER: "7.0.0"},
        )


def test_a_reply_in_another_wire_format_is_refused_and_the_link_retries(
    group: ServerGroup, tmp_path: Path
) -> None:
    peer = _FuturePeer()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post(REPLICATE_PATH, peer.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", peer.port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        s = group.add(Server("r1", tmp_path / "r1", peers={"r2": f"http://127.0.0.1:{peer.port}"}))
        s.start()
        with Client([s.url], timeout_s=10) as db:
            db.counters.incr("c", 5)  # acknowledged locally; r2 never acks it
        # The replica sends its version with every request, reads the reply's, and
        # refuses it: the entry stays unacknowledged and the link keeps retrying.
        wait_until(lambda: len(peer.requests) >= 3, CONVERGE_S, what="retries to r2")
        sent = peer.requests[-1]
        assert sent[versions.WIRE_HEADER] == str(versions.WIRE_FORMAT)
        assert sent[versions.RELEASE_HEADER] == versions.RELEASE
        st = s.status()["peers"]["r2"]
        assert st["release"] == "7.0.0" and st["wire_format"] == 7
        assert st["lag_ops"] > 0 and st["acked"] == 0
        wait_until(
            lambda: "wire format 7" in s.log_tail(50),
            CONVERGE_S,
            what="the refusal in the log",
        )
        assert "crdtkv 7.0.0" in s.log_tail(50)
        assert s.running()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()

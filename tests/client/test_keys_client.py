"""``db.keys`` of both clients (scan_iter too) and the key-level CLI verbs, on a real replica."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, BadRequest, Client
from crdtkv.errors import WrongType
from tests.procs import Server, clean_env, server_group


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("keys")
    with server_group() as g:
        yield g.add(Server("k1", root / "k1")).start()


def test_sync_client_key_ops(server: Server) -> None:
    with Client(server.url) as db:
        db.registers.set("kc:r", 1)
        db.sets.add("kc:s", "a")
        assert db.keys.type("kc:r") == "string" and db.keys.type("kc:s") == "set"
        assert db.keys.type("kc:none") == "none"
        assert db.keys.exists("kc:r") is True and db.keys.exists("kc:none") is False
        assert db.keys.info("kc:s") == ("set", -1) and db.keys.info("kc:none") is None
        assert db.keys.ttl("kc:r") == -1 and db.keys.ttl("kc:none") == -2
        assert db.keys.expire("kc:r", 60_000) is True
        assert 0 < db.keys.ttl("kc:r") <= 60_000
        assert db.keys.persist("kc:r") is True and db.keys.persist("kc:r") is False
        assert db.keys.expire("kc:none", 1000) is False
        with pytest.raises(WrongType):
            db.sets.add("kc:r", "x")
        assert db.keys.delete("kc:r") is True and db.keys.delete("kc:r") is False
        with pytest.raises(BadRequest):
            db.keys.expire("kc:s", 0)
        with pytest.raises(BadRequest):
            db.keys.scan(type="stream")


def test_sync_scan_and_scan_iter(server: Server) -> None:
    with Client(server.url) as db:
        names = [f"scan:{i:03}" for i in range(57)]
        for n in names:
            db.registers.set(n, 1)
        db.sets.add("scan:set", "a")
        seen: list[str] = []
        cursor, keys = db.keys.scan(None, "scan:*", None, 10)
        while True:
            assert len(keys) <= 10
            seen += keys
            if not cursor:
                break
            cursor, keys = db.keys.scan(cursor, match="scan:*", count=10)
        assert seen == [*names, "scan:set"]
        assert list(db.keys.scan_iter(match="scan:*", type="string", count=7)) == names
        assert list(db.keys.scan_iter("scan:*", "set")) == ["scan:set"]
        assert list(db.keys.scan_iter(match="nothing:*")) == []


async def test_async_client_key_ops_and_scan_iter(server: Server) -> None:
    async with AsyncClient(server.url) as db:
        names = [f"ascan:{i:02}" for i in range(23)]
        for n in names:
            await db.hlls.add(n, "i")
        assert await db.keys.type(names[0]) == "hll"
        assert await db.keys.expire(names[0], 60_000) is True
        assert await db.keys.persist(names[0]) is True
        assert await db.keys.ttl(names[0]) == -1
        assert [k async for k in db.keys.scan_iter(match="ascan:*", count=5)] == names
        assert await db.keys.delete(names[0]) is True
        assert await db.keys.exists(names[0]) is False
        assert await db.keys.scan(names[-2], "ascan:*") == ("", [names[-1]])


def crdtkv(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crdtkv.cli", *args]
    return subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=30)


def test_command_line_key_verbs(server: Server) -> None:
    url = ["--url", server.url]
    assert crdtkv("sadd", "cli:s", "x", *url).returncode == 0
    assert crdtkv("set", "cli:r", "v", *url).returncode == 0
    assert crdtkv("type", "cli:s", *url).stdout.strip() == "set"
    assert crdtkv("type", "cli:none", *url).stdout.strip() == "none"
    assert crdtkv("exists", "cli:s", *url).stdout.strip() == "1"
    assert crdtkv("ttl", "cli:s", *url).stdout.strip() == "-1"
    assert crdtkv("ttl", "cli:none", *url).stdout.strip() == "-2"
    assert crdtkv("expire", "cli:s", "60000", *url).stdout.strip() == "1"
    assert 0 < int(crdtkv("ttl", "cli:s", *url).stdout) <= 60_000
    assert crdtkv("persist", "cli:s", *url).stdout.strip() == "1"
    assert crdtkv("persist", "cli:s", *url).stdout.strip() == "0"
    page = crdtkv("scan", "--match", "cli:*", "--count", "1000", *url)
    assert page.returncode == 0 and page.stdout.split("\n") == ["", "cli:r", "cli:s", ""]
    page = crdtkv("scan", "--match", "cli:*", "--type", "string", *url)
    assert page.stdout.split() == ["cli:r"]
    first = crdtkv("scan", "--match", "cli:*", "--count", "1", *url).stdout.splitlines()
    assert first[0] and first[1:] in ([], ["cli:r"])
    bad = crdtkv("scan", "--type", "stream", *url)
    assert bad.returncode == 2
    # del works on any type; --type keeps the typed delete (409 on another type)
    typed = crdtkv("del", "cli:s", "--type", "registers", *url)
    assert typed.returncode == 1 and "wrong_type" in typed.stderr
    assert crdtkv("del", "cli:s", *url).stdout.strip() == "1"
    assert crdtkv("del", "cli:s", *url).stdout.strip() == "0"
    assert crdtkv("del", "cli:r", "--type", "registers", *url).returncode == 0
    assert crdtkv("exists", "cli:r", *url).stdout.strip() == "0"

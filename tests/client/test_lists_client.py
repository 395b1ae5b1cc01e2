"""The list's client methods (blocking and asyncio) and CLI verbs against a real replica."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, Client
from crdtkv.errors import BadRequest, KeyNotFound, WrongType
from tests.procs import Server, clean_env, server_group

TOKEN = "lists-client-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("lists-client")
    with server_group() as g:
        yield g.add(Server("l1", root / "l1", extra=["--auth-token", TOKEN])).start()


def crdtkv(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crdtkv.cli", *args, "--url", server.url]
    env = clean_env(CRDTKV_AUTH_TOKEN=TOKEN)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


def test_the_blocking_client(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        assert db.lists.rpush("q", "a", "b", "c") == 3
        assert db.lists.lpush("q", "z") == 4
        assert db.lists.rpush("absent", "x", exists=True) == 0
        assert db.lists.values("absent") == [] and db.lists.length("absent") == 0
        assert db.lists.range("q", 0, -1) == ["z", "a", "b", "c"]
        assert db.lists.index("q", -1) == "c" and db.lists.index("q", 9) is None
        db.lists.set("q", 1, "A")
        assert db.lists.insert("q", "after", "A", "a2") == 5
        assert db.lists.insert("q", "before", "nope", "x") == -1
        assert db.lists.pos("q", "b") == [3]
        assert db.lists.remove("q", 0, "z") == 1
        assert db.lists.move("q", "other") == "c"  # RPOPLPUSH by default
        assert db.lists.move("q", "other", from_end="left", to_end="right") == "A"
        assert db.lists.values("other") == ["c", "A"]
        assert db.lists.lpop("q") == ["a2"] and db.lists.rpop("q", count=5) == ["b"]
        assert db.lists.values("q") == []
        db.lists.rpush("t", *map(str, range(10)))
        db.lists.trim("t", 2, -3)
        assert db.lists.values("t") == [str(i) for i in range(2, 8)]
        with pytest.raises(KeyNotFound):
            db.lists.set("absent", 0, "x")
        with pytest.raises(BadRequest, match="index out of range"):
            db.lists.set("t", 6, "x")
        with pytest.raises(BadRequest, match="separate arguments"):
            db.lists.rpush("t", ["x"])  # type: ignore[arg-type]
        db.sets.add("s", "m")
        with pytest.raises(WrongType):
            db.lists.rpush("s", "x")
        db.lists.delete("t")
        assert db.lists.length("t") == 0 and db.keys.type("other") == "list"


async def test_the_asyncio_client(server: Server) -> None:
    async with AsyncClient([server.url], auth_token=TOKEN) as db:
        assert await db.lists.rpush("aq", *[f"v{i}" for i in range(100)]) == 100
        assert await db.lists.range("aq", 40, 44) == [f"v{i}" for i in range(40, 45)]
        assert await db.lists.lpop("aq", count=3) == ["v0", "v1", "v2"]
        assert await db.lists.length("aq") == 97


def test_the_cli_verbs(server: Server) -> None:
    assert crdtkv(server, "rpush", "cli", "a", "b", "c").stdout.strip() == "3"
    assert crdtkv(server, "lpush", "cli", "z").stdout.strip() == "4"
    assert crdtkv(server, "lrange", "cli", "0", "-1").stdout.split() == ["z", "a", "b", "c"]
    assert crdtkv(server, "llen", "cli").stdout.strip() == "4"
    assert crdtkv(server, "lindex", "cli", "-1").stdout.strip() == "c"
    assert crdtkv(server, "lset", "cli", "0", "Z").returncode == 0
    out_of_range = crdtkv(server, "lset", "cli", "10", "x")
    assert out_of_range.returncode == 1 and "index out of range" in out_of_range.stderr
    assert crdtkv(server, "linsert", "cli", "after", "Z", "y").stdout.strip() == "5"
    bad_where = crdtkv(server, "linsert", "cli", "around", "Z", "y")
    assert bad_where.returncode != 0 and "before" in bad_where.stderr
    assert crdtkv(server, "lpos", "cli", "b").stdout.strip() == "3"
    assert crdtkv(server, "lrem", "cli", "0", "y").stdout.strip() == "1"
    assert crdtkv(server, "lmove", "cli", "dst").stdout.strip() == "c"
    assert crdtkv(server, "lpop", "cli", "--count", "2").stdout.split() == ["Z", "a"]
    assert crdtkv(server, "rpop", "cli").stdout.strip() == "b"
    assert crdtkv(server, "ltrim", "dst", "1", "0").returncode == 0
    absent = crdtkv(server, "lrange", "dst", "0", "-1")
    assert absent.returncode == 0 and absent.stdout.strip() == ""

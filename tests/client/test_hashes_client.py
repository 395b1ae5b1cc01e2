"""db.hashes on both clients, and the hash verbs of the command-line client, against a
real replica process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, BadRequest, Client, KeyNotFound
from crdtkv.errors import WrongType
from tests.client.test_client import TOKEN, crdtkv
from tests.procs import Server, server_group


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("hashes")
    with server_group() as g:
        yield g.add(Server("h1", root / "h1", extra=["--auth-token", TOKEN])).start()


def test_blocking_client_hash_methods(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        h = db.hashes
        assert h.set("user:1", {"name": "ada", "visits": 1}) == 2
        assert h.setnx("user:1", {"name": "bob", "lang": "py"}) == 1
        assert h.get("user:1", "name") == "ada"
        assert h.get("user:1", "missing") is None
        assert h.get("absent", "name") is None
        assert h.mget("user:1", "name", "nope") == ["ada", None]
        with pytest.raises(KeyNotFound):
            h.mget("absent", "name")
        assert h.getall("user:1") == {"lang": "py", "name": "ada", "visits": 1}
        assert h.getall("absent") == {}
        assert h.len("user:1") == 3 and h.len("absent") == 0
        assert h.exists("user:1", "lang") is True and h.exists("absent", "x") is False
        assert h.keys("user:1") == ["lang", "name", "visits"]
        assert h.vals("user:1") == ["py", "ada", 1]
        assert h.strlen("user:1", "name") == 3
        assert h.incr("user:1", "visits") == 2
        assert h.incr("user:1", "visits", 10) == 12
        assert h.incrfloat("user:1", "score", 1.5) == 1.5
        with pytest.raises(BadRequest, match="hash value is not an integer"):
            h.incr("user:1", "name")
        page, cursor = h.scan("user:1", count=2)
        assert (page, cursor) == ({"lang": "py", "name": "ada"}, "name")
        assert h.scan("user:1", cursor) == ({"score": 1.5, "visits": 12}, "")
        assert h.scan("user:1", match="s*") == ({"score": 1.5}, "")
        assert h.remove("user:1", "lang", "gone") == 1
        with pytest.raises(BadRequest):
            h.set("user:1", ["not", "a", "dict"])
        db.registers.set("plain", 1)
        with pytest.raises(WrongType):
            h.set("plain", {"a": 1})
        h.delete("user:1")
        assert h.getall("user:1") == {}


async def test_async_client_hash_methods(server: Server) -> None:
    async with AsyncClient([server.url], auth_token=TOKEN) as db:
        assert await db.hashes.set("async:h", {"a": 1}) == 1
        assert await db.hashes.incr("async:h", "a", 2) == 3
        assert await db.hashes.getall("async:h") == {"a": 3}
        assert await db.hashes.scan("async:h") == ({"a": 3}, "")
        assert await db.hashes.remove("async:h", "a") == 1
        assert await db.hashes.len("async:h") == 0


def test_command_line_hash_verbs(server: Server) -> None:
    url = ["--url", server.url]
    assert crdtkv("hset", "cli:h", "name", "ada", "n", "5", *url).stdout.strip() == "2"
    assert crdtkv("hset", "cli:h", "n", "7", "--json", *url).stdout.strip() == "0"
    assert crdtkv("hsetnx", "cli:h", "name", "bob", *url).stdout.strip() == "0"
    assert crdtkv("hget", "cli:h", "name", *url).stdout.strip() == '"ada"'
    assert crdtkv("hget", "cli:h", "n", *url).stdout.strip() == "7"
    assert crdtkv("hincrby", "cli:h", "n", "3", *url).stdout.strip() == "10"
    assert crdtkv("hincrby", "cli:h", "n", *url).stdout.strip() == "11"
    assert json.loads(crdtkv("hgetall", "cli:h", *url).stdout) == {"n": 11, "name": "ada"}
    assert json.loads(crdtkv("hmget", "cli:h", "n", "x", *url).stdout) == [11, None]
    assert json.loads(crdtkv("hvals", "cli:h", *url).stdout) == [11, "ada"]
    assert crdtkv("hkeys", "cli:h", *url).stdout.split() == ["n", "name"]
    assert crdtkv("hlen", "cli:h", *url).stdout.strip() == "2"
    assert crdtkv("hexists", "cli:h", "n", *url).stdout.strip() == "1"
    assert crdtkv("hstrlen", "cli:h", "name", *url).stdout.strip() == "3"
    bad = crdtkv("hincrby", "cli:h", "name", *url)
    assert bad.returncode == 1 and "hash value is not an integer" in bad.stderr
    odd = crdtkv("hset", "cli:h", "lonely", *url)
    assert odd.returncode == 2 and "pairs" in odd.stderr
    assert crdtkv("hdel", "cli:h", "n", "name", *url).stdout.strip() == "2"
    assert crdtkv("hlen", "cli:h", *url).stdout.strip() == "0"
    crdtkv("hset", "cli:h", "a", "1", *url)
    assert crdtkv("del", "cli:h", "--type", "hashes", *url).returncode == 0
    assert crdtkv("hgetall", "cli:h", *url).stdout.strip() == "{}"

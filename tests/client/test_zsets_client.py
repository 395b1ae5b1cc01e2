"""The sorted set's client methods and CLI verbs against a real replica process."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import Client
from tests.procs import Server, clean_env, server_group

TOKEN = "zsets-client-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("zsets-client")
    with server_group() as g:
        yield g.add(Server("z1", root / "z1", extra=["--auth-token", TOKEN])).start()


def crdtkv(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crdtkv.cli", *args, "--url", server.url]
    env = clean_env(CRDTKV_AUTH_TOKEN=TOKEN)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


def test_the_blocking_client(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        assert db.zsets.add("board", {"ada": 10, "bob": 7.5, "cy": math.inf}) == 3
        assert db.zsets.add("board", {"ada": 5}, gt=True, ch=True) == 0
        assert db.zsets.incr("board", 1.5, "bob") == 9.0
        assert db.zsets.range("board", 0, -1, rev=True) == ["cy", "ada", "bob"]
        assert db.zsets.range_by_score("board", 9, "(inf", withscores=True) == [
            ["bob", 9.0],
            ["ada", 10.0],
        ]
        assert db.zsets.score("board", "cy") == "inf"
        assert db.zsets.rank("board", "bob") == 0
        assert db.zsets.popmax("board") == [["cy", "inf"]]
        assert db.zsets.card("board") == 2


def test_the_cli_verbs(server: Server) -> None:
    assert crdtkv(server, "zadd", "cli", "1", "a", "2", "b", "3", "c").stdout.strip() == "3"
    assert crdtkv(server, "zadd", "cli", "9", "a", "--nx").stdout.strip() == "0"
    nx_xx = crdtkv(server, "zadd", "cli", "9", "a", "--nx", "--xx")
    assert nx_xx.returncode == 1 and "XX and NX options" in nx_xx.stderr
    assert crdtkv(server, "zincrby", "cli", "2.5", "a").stdout.strip() == "3.5"
    assert crdtkv(server, "zscore", "cli", "b").stdout.strip() == "2"
    assert crdtkv(server, "zrank", "cli", "a").stdout.strip() == "2"
    assert crdtkv(server, "zrange", "cli", "0", "-1").stdout.split() == ["b", "c", "a"]
    with_scores = crdtkv(server, "zrange", "cli", "0", "0", "--withscores").stdout
    assert with_scores.strip() == "b 2"
    assert crdtkv(server, "zcount", "cli", "(2", "+inf").stdout.strip() == "2"
    assert crdtkv(server, "zpopmin", "cli").stdout.strip() == "b 2"
    assert crdtkv(server, "zcard", "cli").stdout.strip() == "2"
    assert crdtkv(server, "del", "cli", "--type", "zsets").returncode == 0
    assert crdtkv(server, "zcard", "cli").stdout.strip() == "0"

"""The list verbs of the command-line client (``crdtkv lpush`` ...) against a real replica.

Run in-process through ``COMMANDS`` (the same ``main`` that ``crdtkv`` calls),
so the output and exit status are what a shell sees.  ``lpush``/``rpush`` take
a list of words and then ``--exists``: what follows a list of words must reach
the client method by keyword (it once went positionally into ``*values``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv.tools.client_cli import COMMANDS
from tests.procs import Server, server_group


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("list_cli")
    with server_group() as g:
        yield g.add(Server("l1", root / "l1")).start()


def cli(
    capsys: pytest.CaptureFixture[str], server: Server, verb: str, *args: str
) -> tuple[int, str, str]:
    _, main = COMMANDS[verb]
    status = main([*args, "--url", server.url], {})
    out, err = capsys.readouterr()
    return status, out, err


def test_list_verbs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    def ok(verb: str, *args: str) -> str:
        status, out, err = cli(capsys, server, verb, *args)
        assert status == 0, (verb, args, err)
        return out

    assert ok("rpush", "cli:l", "a", "b", "c") == "3\n"
    assert ok("lpush", "cli:l", "y", "z") == "5\n"  # z ends first
    assert ok("lrange", "cli:l", "0", "-1") == "z\ny\na\nb\nc\n"
    assert ok("rpush", "cli:l", "--exists", "d") == "6\n"
    assert ok("lpush", "cli:absent", "x", "--exists") == "0\n"  # LPUSHX: nothing pushed
    assert ok("llen", "cli:absent") == "0\n"
    assert ok("llen", "cli:l") == "6\n"
    assert ok("lindex", "cli:l", "-1") == "d\n"
    assert ok("lindex", "cli:l", "99") == ""  # out of range: nothing
    assert ok("lset", "cli:l", "0", "x") == ""
    assert ok("linsert", "cli:l", "after", "a", "a2") == "7\n"
    assert ok("linsert", "cli:l", "after", "nope", "a2") == "-1\n"
    assert ok("lpos", "cli:l", "a2") == "3\n"
    assert ok("lrem", "cli:l", "0", "a2") == "1\n"
    assert ok("lpop", "cli:l") == "x\n"
    assert ok("rpop", "cli:l", "--count", "2") == "d\nc\n"
    assert ok("lmove", "cli:l", "cli:done", "left", "right") == "y\n"
    assert ok("lrange", "cli:done", "0", "-1") == "y\n"
    assert ok("ltrim", "cli:l", "0", "0") == ""
    assert ok("lrange", "cli:l", "0", "-1") == "a\n"
    assert ok("type", "cli:l") == "list\n"
    assert ok("del", "cli:l") == "1\n"
    assert ok("lpop", "cli:l") == ""  # absent: nothing popped


def test_list_verbs_refuse_bad_usage(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = cli(capsys, server, "lset", "cli:none", "0", "x")
    assert status == 1 and "not_found" in err
    assert cli(capsys, server, "lrange", "cli:none", "0", "-1")[:2] == (0, "")  # as the client: []
    status, _, err = cli(capsys, server, "lmove", "cli:none", "cli:d", "up", "left")
    assert status == 2 and "invalid choice: 'up'" in err  # checked by the CLI itself
    status, _, err = cli(capsys, server, "rpush", "cli:none")  # no VALUE
    assert status == 2
    status, _, err = cli(capsys, server, "lindex", "cli:none", "one")
    assert status == 2 and "invalid int value" in err
    assert cli(capsys, server, "set", "cli:str", "v")[0] == 0
    status, _, err = cli(capsys, server, "rpush", "cli:str", "a", "--exists")
    assert status == 1 and "wrong_type" in err

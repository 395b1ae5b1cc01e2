"""The vector set's client methods (blocking and asyncio) and CLI verbs against a real replica."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import AsyncClient, Client
from crdtkv.errors import BadRequest, KeyNotFound, WrongType
from crdtkv.tools.client_cli import COMMANDS
from tests.procs import Server, server_group


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("vsets-client")
    with server_group() as g:
        yield g.add(Server("v1", root / "v1")).start()


def test_the_blocking_client(server: Server) -> None:
    with Client([server.url]) as db:
        assert db.vsets.add("v", "a", [1.0, 0.0, 0.0], attributes={"n": 1}) is True
        assert db.vsets.add("v", "b", [0.0, 1.0, 0.0], attributes={"n": 2}) is True
        # float32 bytes travel in the binary form
        assert db.vsets.add("v", "c", struct.pack("<3f", 1.0, 1.0, 0.0)) is True
        assert db.vsets.add("v", "a", [1.0, 0.1, 0.0]) is False  # an update
        assert db.vsets.card("v") == 3 and db.vsets.dim("v") == 3
        assert db.vsets.vector("v", "c") == [1.0, 1.0, 0.0]
        assert db.vsets.attributes("v", "a") == {"n": 1}  # kept by the update
        assert db.vsets.contains("v", "b") and not db.vsets.contains("v", "zz")
        matches = db.vsets.search("v", [1.0, 0.0, 0.0], count=2, with_attributes=True)
        assert [m["element"] for m in matches] == ["a", "c"]
        assert matches[0]["attributes"] == {"n": 1} and 0.99 < matches[0]["score"] <= 1.0
        truth = db.vsets.search("v", [0.0, 1.0, 0.0], truth=True)
        assert [m["element"] for m in truth] == ["b", "c", "a"]
        assert truth[0]["score"] == pytest.approx(1.0)
        assert [m["element"] for m in db.vsets.search("v", [1, 0, 0], filter=".n == 2")] == ["b"]
        assert db.vsets.similar("v", "b", count=1)[0]["element"] == "b"
        assert db.vsets.set_attributes("v", "b", None) is True
        assert db.vsets.attributes("v", "b") is None
        assert db.vsets.set_attributes("v", "nope", {"x": 1}) is False
        assert sorted(db.vsets.random("v", count=5)) == ["a", "b", "c"]
        assert len(db.vsets.random("v", count=-7)) == 7
        info = db.vsets.info("v")
        assert info["dim"] == 3 and info["card"] == 3 and info["quant"] == "q8"
        whole = db.vsets.get("v")
        assert set(whole) == {"a", "b", "c"} and whole["c"]["vector"] == [1.0, 1.0, 0.0]
        # refusals, each changing nothing
        with pytest.raises(BadRequest, match="dimension mismatch"):
            db.vsets.add("v", "d", [1.0, 2.0])
        with pytest.raises(BadRequest, match="syntax error in FILTER"):
            db.vsets.search("v", [1, 0, 0], filter="((")
        with pytest.raises(BadRequest, match="all zeros"):
            db.vsets.add("v", "z", [0.0, 0.0, 0.0])
        with pytest.raises(BadRequest, match="object"):
            db.vsets.add("v", "d", [1.0, 2.0, 3.0], attributes=[1, 2])
        assert db.vsets.card("v") == 3
        # absent keys
        assert db.vsets.search("absent", [1, 0, 0]) == [] and db.vsets.card("absent") == 0
        assert db.vsets.get("absent") == {} and db.vsets.random("absent") == []
        with pytest.raises(KeyNotFound):
            db.vsets.dim("absent")
        db.lists.rpush("a-list", "x")
        with pytest.raises(WrongType):
            db.vsets.add("a-list", "e", [1.0, 2.0, 3.0])
        assert db.vsets.remove("v", "a") is True and db.vsets.remove("v", "a") is False
        db.vsets.delete("v")
        assert db.vsets.card("v") == 0


async def test_the_asyncio_client(server: Server) -> None:
    async with AsyncClient([server.url]) as db:
        assert await db.vsets.add("av", "x", [0.5, 0.5]) is True
        assert await db.vsets.add("av", "y", [0.5, -0.5]) is True
        got = await db.vsets.search("av", [1.0, 0.9], count=1)
        assert got[0]["element"] == "x"
        assert await db.vsets.card("av") == 2


def test_the_cli_verbs(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    def run(verb: str, *args: str) -> tuple[int, str, str]:
        _, main = COMMANDS[verb]
        status = main([*args, "--url", server.url], {})
        out, err = capsys.readouterr()
        return status, out, err

    assert run("vadd", "cv", "a", "1", "0", "0", "--attributes", '{"k": "x"}')[:2] == (0, "1\n")
    assert run("vadd", "cv", "b", "0", "1", "0")[:2] == (0, "1\n")
    status, out, err = run("vsim", "cv", "1", "0.1", "0", "--count", "1", "--with-attributes")
    assert status == 0, err
    assert out.startswith("a 0.99") and out.rstrip().endswith('{"k":"x"}'), out
    assert run("vcard", "cv")[:2] == (0, "2\n")
    assert run("vdim", "cv")[:2] == (0, "3\n")
    assert run("vemb", "cv", "b")[:2] == (0, "0.0 1.0 0.0\n")
    assert run("vgetattr", "cv", "a")[:2] == (0, '{"k": "x"}\n')
    assert run("vsetattr", "cv", "a", '{"k": "y"}', "--json")[:2] == (0, "1\n")
    assert run("vismember", "cv", "zz")[:2] == (0, "0\n")
    status, out, err = run("vadd", "cv", "c", "1", "2")
    assert status == 1 and "dimension mismatch" in err and out == ""
    status, _, err = run("vadd", "cv", "c", "1", "x")
    assert status == 2 and "invalid float value" in err
    status, _, err = run("vadd", "cv", "c", "1", "2", "3", "--attributes", "{bad")
    assert status == 2 and "not JSON" in err
    assert run("vrem", "cv", "a")[:2] == (0, "1\n")
    assert run("vcard", "cv")[:2] == (0, "1\n")

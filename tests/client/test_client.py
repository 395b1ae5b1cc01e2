"""The blocking and asyncio clients, and the command-line client, against a real replica."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtkv import (
    AsyncClient,
    BadRequest,
    Client,
    ClusterUnavailable,
    CrdtkvError,
    KeyNotFound,
    SessionUnavailable,
    Unauthorized,
    WrongType,
)
from crdtkv.sessions import SESSION_HEADER
from tests.procs import Server, clean_env, free_port, server_group

TOKEN = "client-test-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root: Path = tmp_path_factory.mktemp("client")
    with server_group() as g:
        yield g.add(Server("c1", root / "c1", extra=["--auth-token", TOKEN])).start()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nobody listens there


def test_the_contract_example_runs_as_written(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        db.registers.set("user:1", {"name": "ada"}, ttl_ms=60_000)
        db.counters.incr("visits", 3)
        db.sets.add("tags", "a", "b")
        db.hlls.add("visitors", "u1", "u2")
        got = (
            db.registers.get("user:1"),
            db.counters.get("visits"),
            db.sets.members("tags"),
            db.hlls.count("visitors"),
        )
    assert got == ({"name": "ada"}, 3, ["a", "b"], 2)


def test_absent_keys_read_as_the_contract_says(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        with pytest.raises(KeyNotFound):
            db.registers.get("never")
        assert db.registers.get("never", default="d") == "d"
        assert db.counters.get("never") == 0
        assert db.sets.members("never") == [] and db.sets.size("never") == 0
        assert db.sets.contains("never", "x") is False
        assert db.hlls.count("never") == 0


def test_every_operation_and_batch(server: Server) -> None:
    # One keyspace of typed keys: each type under its own key.
    with Client([server.url], auth_token=TOKEN) as db:
        assert db.counters.incr("ops:c", 5) == 5 and db.counters.decr("ops:c", 2) == 3
        assert db.sets.add("ops:s", "a", "b", "c") == 3 and db.sets.remove("ops:s", "b") == 1
        assert db.sets.contains("ops:s", "a") and db.sets.size("ops:s") == 2
        assert db.hlls.add("ops:h", "x", "y") is True and db.hlls.add("ops:h", "x") is False
        db.hlls.add("ops:h2", "z")
        assert db.hlls.merge("ops:h", "ops:h2") == 3
        with pytest.raises(WrongType):
            db.sets.add("ops:c", "a")  # a string key refuses a set write
        db.registers.set("ops:r", [1, 2])
        with pytest.raises(WrongType):
            db.counters.incr("ops:r", 1)  # a non-numeric base refuses an increment
        db.registers.delete("ops:r")
        db.counters.delete("ops:c")
        db.sets.delete("ops:s")
        db.hlls.delete("ops:h")
        assert db.registers.get("ops:r", default=None) is None and db.counters.get("ops:c") == 0
        assert db.sets.size("ops:s") == 0 and db.hlls.count("ops:h") == 0
        results = db.batch(
            [
                {"op": "counters.incr", "key": "b", "delta": 2},
                {"op": "registers.get", "key": "nope"},
                {"op": "sets.add", "key": "b:set", "members": ["m"]},
            ]
        )
    assert results[0] == {"value": 2} and results[2] == {"added": 1}
    assert results[1]["error"]["code"] == "not_found"


def test_errors_carry_the_server_code_and_bad_input_changes_nothing(server: Server) -> None:
    with Client([server.url], auth_token=TOKEN) as db:
        with pytest.raises(BadRequest) as e:
            db.counters.incr("big", 2**63)
        assert e.value.code == "bad_request" and "delta" in e.value.message
        with pytest.raises(BadRequest):
            db.registers.set("k" * 1025, 1)
        assert db.counters.get("big") == 0
    with Client([server.url]) as anon, pytest.raises(Unauthorized):
        anon.counters.get("x")
    assert issubclass(KeyNotFound, CrdtkvError)


def test_failover_past_a_dead_replica_keeps_the_session(server: Server) -> None:
    with Client([dead_url(), server.url], auth_token=TOKEN) as db:
        db.counters.incr("fo", 1)
        assert db.url == server.url
        token = db.session_token
    assert token
    with Client([server.url], auth_token=TOKEN, session_token=token) as again:
        assert again.counters.get("fo") == 1
        assert again.session_token and again.session_token != ""


def test_no_replica_answering_is_cluster_unavailable() -> None:
    with Client([dead_url(), dead_url()], attempts=3) as db, pytest.raises(ClusterUnavailable):
        db.counters.get("x")


def test_bad_client_arguments() -> None:
    with pytest.raises(BadRequest):
        Client([])
    with pytest.raises(BadRequest):
        Client(["ftp://x"])
    with Client(["http://127.0.0.1:1"]) as db, pytest.raises(BadRequest):
        db.sets.add("k", ["a", "b"])  # type: ignore[arg-type] # members go as *args


async def test_async_client_has_the_same_methods(server: Server) -> None:
    async with AsyncClient([dead_url(), server.url], auth_token=TOKEN) as db:
        await db.registers.set("async:r", {"v": 1})
        assert await db.registers.get("async:r") == {"v": 1}
        assert await db.counters.incr("async", 4) == 4
        assert await db.sets.add("async:s", "a") == 1
        assert await db.sets.members("async:s") == ["a"]
        assert await db.hlls.add("async:h", "i") is True
        assert await db.hlls.count("async:h") == 1
        with pytest.raises(WrongType):
            await db.sets.add("async", "b")
        assert await db.counters.get("nothing") == 0
        with pytest.raises(KeyNotFound):
            await db.registers.get("nothing")
        assert (await db.batch([{"op": "counters.get", "key": "async"}]))[0] == {"value": 4}
        assert db.session_token
    sync_names = {n for n in dir(Client) if not n.startswith("_")}
    async_names = {n for n in dir(AsyncClient) if not n.startswith("_")}
    assert sync_names - {"__enter__", "__exit__"} <= async_names | {"close"}


def crdtkv(*args: str, session: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crdtkv.cli", *args]
    if session is not None:
        cmd += ["--session", str(session)]
    return subprocess.run(
        cmd, env=clean_env(CRDTKV_AUTH_TOKEN=TOKEN), capture_output=True, text=True, timeout=30
    )


def test_command_line_client(server: Server, tmp_path: Path) -> None:
    url = ["--url", dead_url(), "--url", server.url]
    session = tmp_path / "session"
    assert crdtkv("set", "cli", '{"a": 1}', "--json", *url, session=session).returncode == 0
    assert session.read_text().strip()
    done = crdtkv("get", "cli", *url, session=session)
    assert done.returncode == 0 and done.stdout.strip() == '{"a": 1}'
    wrong = crdtkv("incr", "cli", "5", *url)  # a JSON object is not an integer
    assert wrong.returncode == 1 and "wrong_type" in wrong.stderr
    assert crdtkv("incr", "cli:n", "5", *url).stdout.strip() == "5"
    assert crdtkv("incr", "cli:n", "-2", *url).stdout.strip() == "3"
    assert crdtkv("sadd", "cli:s", "x", "y", *url).stdout.strip() == "2"
    assert crdtkv("srem", "cli:s", "y", *url).stdout.strip() == "1"
    assert crdtkv("smembers", "cli:s", *url).stdout.split() == ["x"]
    assert crdtkv("pfadd", "cli:h", "i1", "i2", *url).stdout.strip() == "1"
    assert crdtkv("pfcount", "cli:h", *url).stdout.strip() == "2"
    assert crdtkv("type", "cli:s", *url).stdout.strip() == "set"
    typed = crdtkv("del", "cli:s", "--type", "hlls", *url)  # not an hll: refused
    assert typed.returncode == 1 and "wrong_type" in typed.stderr
    assert crdtkv("smembers", "cli:s", *url).stdout.split() == ["x"]
    assert crdtkv("del", "cli:s", "--type", "sets", *url).returncode == 0
    assert crdtkv("smembers", "cli:s", *url).stdout == ""
    missing = crdtkv("get", "absent", *url)
    assert missing.returncode == 1 and "not_found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bad = crdtkv("incr", "cli", "notanumber", *url)
    assert bad.returncode == 2 and "invalid int value" in bad.stderr
    down = crdtkv("get", "cli", "--url", dead_url())
    assert down.returncode == 1 and "unavailable" in down.stderr


# -- a client never adopts a token from a refusal ------------------------------------------------


class _Refuser(http.server.BaseHTTPRequestHandler):
    """Answers every request 503 session_unavailable with a token of its own."""

    def do_GET(self) -> None:
        body = b'{"error": {"code": "session_unavailable", "message": "not yet"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header(SESSION_HEADER, "token-from-a-refusal")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refuser() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuser)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_the_client_keeps_its_token_when_refused(refuser: str) -> None:
    with Client([refuser], session_token="mine", attempts=2) as db:
        with pytest.raises(SessionUnavailable):
            db.counters.get("k")
        assert db.session_token == "mine"


async def test_the_async_client_keeps_its_token_when_refused(refuser: str) -> None:
    async with AsyncClient([refuser], session_token="mine", attempts=2) as db:
        with pytest.raises(SessionUnavailable):
            await db.counters.get("k")
        assert db.session_token == "mine"

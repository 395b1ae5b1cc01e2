"""Named users on real replicas (``crdtkv serve --auth-file``): RESP's NOAUTH,
WRONGPASS and NOPERM (MULTI too), redis-py with a user name, the command-line
client's 403, and SIGHUP: a rotated token works and the old one is refused in
the same process, the connections of a changed user are closed, a role change
applies to open connections, and a broken file keeps the users in force."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.procs import Server, clean_env, crdtkv_cmd, free_port, http, run, wait_until

RW = "writer-token-0123456789"
RO = "reader-token-0123456789"
LEGACY = "legacy-pass-0123456789"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


def users_toml(*users: tuple[str, str, str]) -> str:
    return "".join(f'[users.{n}]\ntoken = "{t}"\nrole = "{r}"\n\n' for n, t, r in users)


def noperm(user: str, command: str) -> bytes:
    return f"-NOPERM User {user} has no permissions to run the '{command}' command\r\n".encode()


def start(root: Path, name: str, extra: list[str] = ()) -> Server:  # type: ignore[assignment]
    path = root / f"{name}.toml"
    path.write_text(users_toml(("writer", RW, "read-write"), ("reader", RO, "read-only")))
    server = Server(
        name,
        root / name,
        durability="wal",
        resp_port=free_port(),
        extra=["--auth-file", str(path), *extra],
    )
    return server.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start(tmp_path_factory.mktemp("auth"), "users", ["--requirepass", LEGACY])
    try:
        yield s
    finally:
        s.kill9()


def raw(server: Server) -> socket.socket:
    assert server.resp_port is not None
    return socket.create_connection(("127.0.0.1", server.resp_port), timeout=10)


def ask(s: socket.socket, line: str) -> bytes:
    s.sendall(line.encode() + b"\r\n")
    return s.recv(65536)


def closed(s: socket.socket) -> bool:
    try:
        s.sendall(b"PING\r\n")
        return s.recv(100) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- RESP -----------------------------------------------------------------------------------


def test_resp_noauth_wrongpass_and_read_only(server: Server) -> None:
    s = raw(server)
    try:
        for cmd in ("GET k", "SET k v", "ACL WHOAMI", "MULTI"):
            assert ask(s, cmd) == NOAUTH, cmd
        assert ask(s, "AUTH reader wrong-token-0123456789") == WRONGPASS
        assert ask(s, f"AUTH writer {RO}") == WRONGPASS  # the reader's token is not the writer's
        assert ask(s, f"AUTH nobody {RO}") == WRONGPASS
        assert ask(s, "GET k") == NOAUTH
        assert ask(s, f"AUTH reader {RO}") == b"+OK\r\n"
        assert ask(s, "ACL WHOAMI") == b"$6\r\nreader\r\n"
        assert ask(s, "GET ro:k") == b"$-1\r\n"
        assert ask(s, "SET ro:k v") == noperm("reader", "set")
        for cmd, name in [("INCR c", "incr"), ("DEL k", "del"), ("LPUSH l x", "lpush")]:
            assert ask(s, cmd) == noperm("reader", name)
        assert ask(s, "FLUSHALL") == noperm("reader", "flushall")
        assert ask(s, "BLPOP l 0") == noperm("reader", "blpop")  # refused, not blocking
        # MULTI: a write is refused when queued and the EXEC aborts, as Redis does.
        assert ask(s, "MULTI") == b"+OK\r\n"
        assert ask(s, "GET ro:k") == b"+QUEUED\r\n"
        assert ask(s, "SET ro:k v") == noperm("reader", "set")
        assert ask(s, "EXEC").startswith(b"-EXECABORT")
        assert ask(s, "MULTI") == b"+OK\r\n"
        assert ask(s, "GET ro:k") == b"+QUEUED\r\n"
        assert ask(s, "EXEC") == b"*1\r\n$-1\r\n"
        # A failed AUTH leaves the connection as it was.
        assert ask(s, "AUTH writer nope-nope-nope-nope") == WRONGPASS
        assert ask(s, "ACL WHOAMI") == b"$6\r\nreader\r\n"
        # AUTH <token> alone: the token names its user, as over HTTP.
        assert ask(s, f"AUTH {RW}") == b"+OK\r\n"
        assert ask(s, "ACL WHOAMI") == b"$6\r\nwriter\r\n"
        assert ask(s, "SET ro:k v") == b"+OK\r\n"
        assert b" user=writer " in ask(s, "CLIENT INFO")
        # --requirepass is the user "default".
        assert ask(s, f"AUTH {LEGACY}") == b"+OK\r\n"
        assert ask(s, "ACL WHOAMI") == b"$7\r\ndefault\r\n"
        assert ask(s, f"AUTH default {LEGACY}") == b"+OK\r\n"
        assert ask(s, "INCR c") == b":1\r\n"
        assert ask(s, "RESET") == b"+RESET\r\n"
        assert ask(s, "GET ro:k") == NOAUTH
        # HELLO 3 AUTH user token.
        assert ask(s, "HELLO 3 AUTH reader nope-nope-nope-nope") == WRONGPASS
        reply = ask(s, f"HELLO 3 AUTH reader {RO}")
        assert reply.startswith(b"%") and b"proto\r\n:3\r\n" in reply
        assert ask(s, "GET ro:k") == b"$1\r\nv\r\n"
        assert ask(s, "SET ro:k w") == noperm("reader", "set")
    finally:
        s.close()


def test_redis_py_with_user_names(server: Server) -> None:
    for protocol in (2, 3):
        writer = redis.Redis(
            port=server.resp_port, username="writer", password=RW, protocol=protocol
        )
        assert writer.set("py:k", protocol) is True
        writer.close()
        reader = redis.Redis(
            port=server.resp_port, username="reader", password=RO, protocol=protocol
        )
        assert reader.get("py:k") == str(protocol).encode()
        with pytest.raises(redis.exceptions.NoPermissionError, match="'set'"):
            reader.set("py:k", "x")
        whoami = reader.acl_whoami()  # redis-py decodes it under RESP2 only
        assert (whoami.decode() if isinstance(whoami, bytes) else whoami) == "reader"
        reader.close()
    bad = redis.Redis(
        port=server.resp_port, username="reader", password=RW, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.AuthenticationError):
        bad.ping()
    bad.close()


# -- HTTP and the command-line client --------------------------------------------------------


def test_http_roles_and_the_cli_on_a_real_replica(server: Server) -> None:
    status, _ = http("GET", server.url + "/v1/status")
    assert status == 401
    status, body = http("PUT", server.url + "/v1/registers/h", {"value": 1}, headers=bearer(RO))
    assert status == 403 and body["error"]["code"] == "forbidden"
    status, _ = http("PUT", server.url + "/v1/registers/h", {"value": 1}, headers=bearer(RW))
    assert status == 200
    status, body = http("GET", server.url + "/v1/registers/h", headers=bearer(RO))
    assert (status, body) == (200, {"value": 1})
    assert http("GET", server.url + "/healthz")[0] == 200
    # --requirepass is RESP's only: over HTTP it is not a token.
    assert http("GET", server.url + "/v1/status", headers=bearer(LEGACY))[0] == 401
    env = clean_env(CRDTKV_URL=server.url, CRDTKV_AUTH_TOKEN=RO)
    done = run(crdtkv_cmd("set", "cli:k", '"x"'), env=env)
    assert done.returncode == 1
    want = "crdtkv set: error: forbidden: user 'reader' is read-only"
    assert done.stderr.strip().startswith(want), done.stderr
    done = run(crdtkv_cmd("get", "h"), env=env)
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr


# -- SIGHUP ----------------------------------------------------------------------------------


def test_sighup_rotates_tokens_without_a_restart(tmp_path: Path) -> None:
    server = start(tmp_path, "hup")
    try:
        assert server.proc is not None
        pid = server.proc.pid
        path = tmp_path / "hup.toml"
        writer, reader = raw(server), raw(server)
        assert ask(writer, f"AUTH writer {RW}") == b"+OK\r\n"
        assert ask(reader, f"AUTH reader {RO}") == b"+OK\r\n"
        assert ask(reader, "SET k v") == noperm("reader", "set")
        # The writer's token rotates; the reader becomes read-write; carol is new.
        new_rw, carol = "writer-rotated-0123456789", "carol-token-0123456789"
        path.write_text(
            users_toml(
                ("writer", new_rw, "read-write"),
                ("reader", RO, "read-write"),
                ("carol", carol, "read-only"),
            )
        )
        os.kill(pid, signal.SIGHUP)
        wait_until(
            lambda: http("GET", server.url + "/v1/status", headers=bearer(new_rw))[0] == 200,
            10,
            what="the rotated token",
        )
        assert http("GET", server.url + "/v1/status", headers=bearer(RW))[0] == 401
        assert http("GET", server.url + "/v1/status", headers=bearer(carol))[0] == 200
        assert server.running() and server.proc.pid == pid  # the same process
        assert "auth file" in server.log_tail() and "reloaded: 3 users" in server.log_tail()
        # RESP: the writer's connection was closed (its token changed); the reader's
        # stays and is read-write from its next command.
        assert closed(writer)
        assert ask(reader, "SET k v") == b"+OK\r\n"
        again = raw(server)
        assert ask(again, f"AUTH writer {RW}") == WRONGPASS
        assert ask(again, f"AUTH writer {new_rw}") == b"+OK\r\n"
        # A broken file on reload: an error in the log, the users in force stay.
        path.write_text('[users.writer]\ntoken = "short"\nrole = "read-write"\n')
        os.kill(pid, signal.SIGHUP)
        wait_until(lambda: "not reloaded" in server.log_tail(), 10, what="the reload error")
        assert "'writer'" in server.log_tail() and "the 3 users before stay" in server.log_tail()
        assert http("GET", server.url + "/v1/status", headers=bearer(new_rw))[0] == 200
        assert http("GET", server.url + "/v1/status", headers=bearer(carol))[0] == 200
        assert ask(again, "GET k") == b"$1\r\nv\r\n"  # its connection is untouched
        assert ask(reader, "ACL WHOAMI") == b"$6\r\nreader\r\n"
        assert server.running() and server.proc.pid == pid
        for s in (writer, reader, again):
            s.close()
        assert server.stop() == 0  # SIGTERM still stops it cleanly
    finally:
        server.kill9()

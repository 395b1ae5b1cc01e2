"""RESP limits and passwords on real replicas: --resp-clients-max, a client that does
not read its replies, --requirepass, and --auth-token as the RESP password."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.procs import Server, free_port, http
from tests.resp.conftest import wait_ping


@contextlib.contextmanager
def replica(root: Path, name: str, extra: list[str]) -> Iterator[Server]:
    server = Server(name, root / name, durability="wal", resp_port=free_port(), extra=extra)
    server.start()
    try:
        yield server
    finally:
        server.kill9()


def refused(port: int | None, password: str | None = None) -> redis.Redis:
    """A client that does not retry (an authentication error is a ConnectionError)."""
    return redis.Redis(port=port, password=password, retry=Retry(NoBackoff(), 0))


def raw(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def ask(s: socket.socket, data: bytes) -> bytes:
    s.sendall(data)
    return s.recv(65536)


def closed(s: socket.socket) -> bool:
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


# -- clients ----------------------------------------------------------------------------------


def test_clients_max(tmp_path: Path) -> None:
    with replica(tmp_path, "cm", ["--resp-clients-max", "3"]) as server:
        assert server.resp_port is not None
        port = server.resp_port
        first = [raw(port) for _ in range(3)]
        try:
            for s in first:
                assert ask(s, b"PING\r\n") == b"+PONG\r\n"
            extra = raw(port)
            assert extra.recv(100) == b"-ERR max number of clients reached\r\n"
            assert closed(extra)
            extra.close()
            for s in first:  # the others keep working
                assert ask(s, b"ECHO still\r\n") == b"$5\r\nstill\r\n"
            assert b"connected_clients:3\r\n" in ask(first[0], b"INFO clients\r\n")
            # One leaves: a new one gets in.
            first.pop().close()
            time.sleep(0.2)
            again = raw(port)
            first.append(again)
            assert ask(again, b"PING\r\n") == b"+PONG\r\n"
            assert b"rejected_connections:1\r\n" in ask(again, b"INFO stats\r\n")
        finally:
            for s in first:
                s.close()


# -- a client that does not read ----------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_slow_reader_is_bounded_and_dropped(tmp_path: Path) -> None:
    with replica(tmp_path, "sr", ["--resp-stalled-s", "1.5"]) as server:
        assert server.resp_port is not None and server.proc is not None
        c = redis.Redis(port=server.resp_port, socket_timeout=10)
        wait_ping(c)
        big = "b" * (256 * 1024)
        c.set("big", big)
        before = peak_rss_kib(server.proc.pid)
        # 20,000 GETs of 256 KiB: 5 GiB of replies, never read.
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", server.resp_port))
        assert ask(s, b"CLIENT SETNAME slow\r\n") == b"+OK\r\n"
        pipeline = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 20_000
        sender = threading.Thread(target=_send_quietly, args=(s, pipeline), daemon=True)
        t0 = time.monotonic()
        sender.start()
        gone_after = None
        while time.monotonic() < t0 + 20:
            if not any(cl["name"] == "slow" for cl in c.client_list()):
                gone_after = time.monotonic() - t0
                break
            time.sleep(0.05)
        s.close()
        peak = peak_rss_kib(server.proc.pid)
        assert gone_after is not None, "the client that reads nothing is still connected"
        assert gone_after >= 1.0  # dropped for not reading (--resp-stalled-s 1.5)
        # Bounded: the replies waiting are a few MiB (RespLimits.output_high), not GiB.
        assert peak - before < 200 * 1024, (before, peak)
        assert c.get("big") == big.encode()
        # A client that reads gets every reply of a long pipeline (cut into batches).
        pipe = c.pipeline(transaction=False)
        for i in range(300):
            pipe.get("big")
            pipe.echo(str(i))
        replies = pipe.execute()
        assert replies == [x for i in range(300) for x in (big.encode(), str(i).encode())]
        c.close()


def _send_quietly(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        s.sendall(data)


# -- passwords ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("auth")
    with replica(root, "pw", ["--requirepass", "s3cret"]) as server:
        yield server


def test_requirepass_refuses_until_auth(locked: Server) -> None:
    assert locked.resp_port is not None
    s = raw(locked.resp_port)
    try:
        for cmd in (b"PING", b"GET k", b"SET k v", b"DBSIZE", b"CLIENT ID", b"INFO", b"ECHO x"):
            assert ask(s, cmd + b"\r\n") == b"-NOAUTH Authentication required.\r\n", cmd
        assert ask(s, b"NOSUCH cmd\r\n").startswith(b"-ERR unknown command 'NOSUCH'")
        assert ask(s, b"AUTH wrong\r\n") == (
            b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        )
        assert ask(s, b"AUTH nobody s3cret\r\n").startswith(b"-WRONGPASS")
        assert ask(s, b"PING\r\n") == b"-NOAUTH Authentication required.\r\n"
        assert ask(s, b"HELLO 3\r\n").startswith(b"-NOAUTH HELLO must be called")
        assert ask(s, b"AUTH s3cret\r\n") == b"+OK\r\n"
        assert ask(s, b"PING\r\n") == b"+PONG\r\n"
        assert ask(s, b"SET k v\r\n") == b"+OK\r\n"
        # RESET forgets the authentication.
        assert ask(s, b"RESET\r\n") == b"+RESET\r\n"
        assert ask(s, b"GET k\r\n") == b"-NOAUTH Authentication required.\r\n"
        assert ask(s, b"AUTH default s3cret\r\n") == b"+OK\r\n"
        assert ask(s, b"GET k\r\n") == b"$1\r\nv\r\n"
        assert ask(s, b"QUIT\r\n") == b"+OK\r\n"
        assert closed(s)
    finally:
        s.close()
    # QUIT before AUTH is allowed too.
    s = raw(locked.resp_port)
    try:
        assert ask(s, b"QUIT\r\n") == b"+OK\r\n"
        assert closed(s)
    finally:
        s.close()


def test_hello_auth(locked: Server) -> None:
    assert locked.resp_port is not None
    s = raw(locked.resp_port)
    try:
        assert ask(s, b"HELLO 3 AUTH default nope\r\n").startswith(b"-WRONGPASS")
        assert ask(s, b"GET k\r\n") == b"-NOAUTH Authentication required.\r\n"
        reply = ask(s, b"HELLO 3 AUTH default s3cret\r\n")
        assert reply.startswith(b"%")
        assert b"proto\r\n:3\r\n" in reply
        assert ask(s, b"PING\r\n") == b"+PONG\r\n"
    finally:
        s.close()


def test_redis_py_password(locked: Server) -> None:
    for protocol in (2, 3):
        good = redis.Redis(port=locked.resp_port, password="s3cret", protocol=protocol)
        assert good.ping() is True
        assert good.set("pw:k", protocol) is True
        assert good.get("pw:k") == str(protocol).encode()
        good.close()
    bad = refused(locked.resp_port, "nope")
    with pytest.raises(redis.AuthenticationError):
        bad.ping()
    bad.close()
    none = refused(locked.resp_port)
    with pytest.raises(redis.AuthenticationError):
        none.get("pw:k")
    none.close()


def test_auth_token_is_the_password(tmp_path: Path) -> None:
    with replica(tmp_path, "tok", ["--auth-token", "tok-123"]) as server:
        c = redis.Redis(port=server.resp_port, password="tok-123")
        assert c.set("t:k", "v") is True
        c.close()
        with pytest.raises(redis.AuthenticationError):
            refused(server.resp_port).get("t:k")
        with pytest.raises(redis.AuthenticationError):
            refused(server.resp_port, "tok-12").get("t:k")
        # The same token on HTTP.
        status, body = http(
            "GET", server.url + "/v1/registers/t:k", headers={"Authorization": "Bearer tok-123"}
        )
        assert status == 200, body
    # --requirepass wins over the token.
    with replica(tmp_path, "both", ["--auth-token", "tok-123", "--requirepass", "pw"]) as server:
        assert redis.Redis(port=server.resp_port, password="pw").ping() is True
        with pytest.raises(redis.AuthenticationError):
            refused(server.resp_port, "tok-123").ping()


def test_no_password_configured(tmp_path: Path) -> None:
    with replica(tmp_path, "open", []) as server:
        assert server.resp_port is not None
        s = raw(server.resp_port)
        try:
            assert ask(s, b"AUTH x\r\n").startswith(
                b"-ERR AUTH <password> called without any password configured"
            )
            assert ask(s, b"AUTH default x\r\n").startswith(b"-WRONGPASS")
            assert ask(s, b'AUTH default ""\r\n') == b"+OK\r\n"
            assert ask(s, b"PING\r\n") == b"+PONG\r\n"
        finally:
            s.close()

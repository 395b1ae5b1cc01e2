"""redis-cli, interactively (on a pseudo-terminal), against a real replica: the
"Done when" session of the RESP issue, typed as a user would."""

from __future__ import annotations

import os
import pty
import select
import shutil
import time

import pytest

from tests.procs import Server

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None,
    reason="redis-cli is not installed (apt-get install redis-tools)",
)

PROMPT_S = 10.0


class Tty:
    """redis-cli on a pty; answers its cursor-position queries like a terminal."""

    def __init__(self, port: int) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: nothing here may return
            os.environ["TERM"] = "dumb"
            os.execvp("redis-cli", ["redis-cli", "-p", str(port)])
        self.pid, self.fd = pid, fd
        self.prompt = f"127.0.0.1:{port}> ".encode()
        self.read_until_prompt()

    def read_until_prompt(self) -> str:
        out = b""
        deadline = time.monotonic() + PROMPT_S
        while not out.endswith(self.prompt):
            assert time.monotonic() < deadline, f"no prompt; got {out!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                chunk = os.read(self.fd, 65536)
                out += chunk
                if b"\x1b[6n" in chunk:
                    os.write(self.fd, b"\x1b[1;1R")
        return out[: -len(self.prompt)].decode().replace("\r", "")

    def type(self, line: str) -> str:
        """The output of one typed command (its echo removed)."""
        os.write(self.fd, line.encode() + b"\r")
        out = self.read_until_prompt()
        echo, _, rest = out.partition("\n")
        assert echo.strip() == line, (echo, line)
        return rest.strip()

    def close(self) -> None:
        os.write(self.fd, b"quit\r")
        deadline = time.monotonic() + PROMPT_S
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_an_interactive_redis_cli_session(crdtkv_server: Server) -> None:
    assert crdtkv_server.resp_port is not None
    cli = Tty(crdtkv_server.resp_port)
    try:
        assert cli.type("PING") == "PONG"
        assert cli.type("SET tty:k hello") == "OK"
        assert cli.type("GET tty:k") == '"hello"'
        assert cli.type("INCR tty:n") == "(integer) 1"
        assert cli.type("INCR tty:n") == "(integer) 2"
        assert cli.type("HSET tty:h name ada visits 1") == "(integer) 2"
        assert cli.type("ZADD tty:z 3.5 ada 9 grace") == "(integer) 2"
        assert cli.type("TYPE tty:z") == "zset"
        assert cli.type("TYPE tty:k") == "string"
        scanned = cli.type("SCAN 0 MATCH tty:* COUNT 1000")
        for key in ("tty:k", "tty:n", "tty:h", "tty:z"):
            assert key in scanned, scanned
        info = cli.type("INFO keyspace")
        assert info.startswith("# Keyspace") and "db0:keys=" in info, info
        assert cli.type("GET") == "(error) ERR wrong number of arguments for 'get' command"
        assert cli.type("HGET tty:k name").startswith("(error) WRONGTYPE")
        assert cli.type("NOSUCH a").startswith("(error) ERR unknown command 'NOSUCH'")
        assert cli.type("GET tty:k") == '"hello"'  # the errors changed nothing
    finally:
        cli.close()

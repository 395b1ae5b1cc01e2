"""An unfinished request cannot grow a replica's memory: a huge array of tiny parts
is refused once its bytes pass the request limit, and the replica lives on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis

from tests.procs import Server


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _recv_all(sock: socket.socket) -> bytes:
    out = b""
    sock.settimeout(20)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        return out


@pytest.mark.parametrize(
    ("header", "error"),
    [
        # A count the size limit allows, but whose parts add up past it.
        (b"*250000\r\n", b"-ERR Protocol error: a request over"),
        # A count no request within the limit can have: refused before it is parsed.
        (b"*2147483647\r\n", b"-ERR Protocol error: invalid multibulk length"),
    ],
)
def test_a_huge_array_of_tiny_parts_is_refused(
    crdtkv_server: Server, ours: redis.Redis, header: bytes, error: bytes
) -> None:
    assert crdtkv_server.proc is not None and crdtkv_server.resp_port is not None
    ours.set("bounds:kept", "yes")
    before = _rss_kib(crdtkv_server.proc.pid)
    sock = socket.create_connection(("127.0.0.1", crdtkv_server.resp_port))
    part = b"$1\r\na\r\n" * 10_000  # 70 KB of one-byte arguments
    try:
        sock.sendall(header)
        for _ in range(60):  # 4 MB in all: four times the request limit
            sock.sendall(part)
    except (ConnectionResetError, BrokenPipeError):
        pass  # closed by the server mid-send: what we want
    reply = _recv_all(sock)
    sock.close()
    assert reply.startswith(error), reply[:200]
    grown = _rss_kib(crdtkv_server.proc.pid) - before
    assert grown < 64 * 1024, f"RSS grew by {grown} KiB"
    assert ours.get("bounds:kept") == "yes"  # others unaffected, nothing changed

"""Local ``crdtkv serve`` children: free ports, the command line, the serving line, a clean stop.

``crdtkv cluster``, ``crdtkv bench --spawn`` and the scripts in ``benchmarks/``
all start replicas as child processes on 127.0.0.1 and must stop them
whatever happens; these are the pieces they share.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SERVING_MARKER",
    "NotServing",
    "await_serving",
    "child_env",
    "free_port",
    "free_ports",
    "serve_command",
    "stop_processes",
]

# ``crdtkv serve`` prints "crdtkv replica <id> serving on <url>" on stdout once it listens.
SERVING_MARKER = "serving on"
PORTS_MAX = 1_000  # free_ports holds this many sockets open at the most
READ_BYTES = 65_536
LINE_BYTES_MAX = 65_536  # of an unfinished line kept while looking for the serving line


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: every socket stays bound until all are picked."""
    if not 1 <= n <= PORTS_MAX:
        raise ValueError(f"free_ports: n must be between 1 and {PORTS_MAX}, not {n}")
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def child_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without ``CRDTKV_*`` variables: a child's settings come from its options."""
    return {k: v for k, v in environ.items() if not k.startswith("CRDTKV_")}


def serve_command(
    replica_id: str,
    port: int,
    data_dir: str,
    durability: str,
    *,
    peers: Mapping[str, str] | None = None,
    log_level: str | None = None,
    launcher: Sequence[str] = ("-m", "crdtkv.cli"),
    resp_port: int = 0,
    cluster_map: str | None = None,
) -> list[str]:
    """The argv of a ``crdtkv serve`` on 127.0.0.1 run by this interpreter
    (``cluster_map``: the path of a sharded cluster's map file).

    ``launcher`` is what follows the interpreter instead of ``-m crdtkv.cli``
    (a script taking crdtkv's arguments, to run another source tree).
    """
    cmd = [sys.executable, *launcher, "serve", "--replica-id", replica_id, "--port", str(port)]
    cmd += ["--data-dir", data_dir, "--durability", durability, "--resp-port", str(resp_port)]
    if log_level is not None:
        cmd += ["--log-level", log_level]
    for peer, url in (peers or {}).items():
        cmd += ["--peer", f"{peer}={url}"]
    if cluster_map is not None:  # a sharded replica: the map names its peers
        cmd += ["--cluster-map", cluster_map]
    return cmd


class NotServing(Exception):
    """A child printed no serving line: it exited (``status``) or the time ran out (None)."""

    def __init__(self, status: int | None, timeout_s: float) -> None:
        if status is None:
            super().__init__(f"did not start within {timeout_s:.0f} s")
        else:
            super().__init__(f"exited with status {status}")
        self.status = status


def await_serving(proc: subprocess.Popen[Any], timeout_s: float) -> None:
    """Read the child's stdout until its serving line; ``NotServing`` if it never comes.

    Reads the pipe's file descriptor directly: a buffered ``readline`` could
    take the serving line into its buffer along with an earlier line, and
    ``select`` would then wait for more output that never comes.
    """
    assert proc.stdout is not None, "start the child with stdout=subprocess.PIPE"
    fd = proc.stdout.fileno()
    marker = SERVING_MARKER.encode()
    deadline = time.monotonic() + timeout_s
    pending = b""  # the last, unfinished line
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise NotServing(None, timeout_s)
        chunk = os.read(fd, READ_BYTES)
        if not chunk:  # end of output: the child exited (or closed its stdout)
            try:
                status = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise NotServing(None, timeout_s) from None
            raise NotServing(status, timeout_s)
        pending += chunk
        if marker in pending:
            return
        pending = pending.rpartition(b"\n")[2][-LINE_BYTES_MAX:]


def stop_processes(procs: Sequence[subprocess.Popen[Any]], timeout_s: float) -> list[int]:
    """Stop children cleanly: SIGTERM to each, SIGKILL to those still running after ``timeout_s``.

    The deadline is shared (stopping N children takes ``timeout_s`` at most,
    not N times that); they stop in parallel.  Returns their exit statuses in
    order, ``-SIGKILL`` for one that had to be killed; closes their stdout pipes.
    """
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    statuses = []
    for p in procs:
        try:
            statuses.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.kill()
            statuses.append(p.wait())
        if p.stdout is not None:
            p.stdout.close()
    return statuses

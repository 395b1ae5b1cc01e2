"""Helpers for tests that run real ``crdtkv`` processes (real RocksDB, real HTTP).

Shared by tests/test_crash.py and tests/replication/test_real_cluster.py (and
usable by tests/test_cli.py, whose helpers these mirror).

- ``free_port``/``free_ports``: ports found by binding port 0;
- ``clean_env``: the environment without ``CRDTKV_*`` variables, with this
  checkout on ``PYTHONPATH``;
- ``Server``: one ``crdtkv serve`` process; ``start`` waits for its
  "serving on" line, ``kill9`` is a ``kill -9`` (by the Popen handle, never by
  name), ``stop`` a clean SIGTERM; stderr goes to a log file (a pipe nobody
  reads would fill up and stall the server);
- ``http``: one JSON request with urllib, returning (status, decoded body);
- ``ServerGroup``: whatever a test started, killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 20.0  # generous: a loaded CI machine imports aiohttp and opens RocksDB slowly
HTTP_TIMEOUT_S = 10.0


# -- ports and environment ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (all bound at once, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int) -> bool:
    """Nobody listens on ``port`` and a server could bind it (SO_REUSEADDR, as servers do)."""
    with socket.socket() as c:
        c.settimeout(2)
        if c.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def consecutive_free_ports(n: int, attempts: int = 50) -> int:
    """A base port P with P..P+n-1 all free (for ``crdtkv cluster --base-port``)."""
    for _ in range(attempts):
        base = free_port()
        if base + n - 1 > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRDTKV_")}
    # The package from this checkout, whatever the working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# -- HTTP ----------------------------------------------------------------------------------------


def http(
    method: str,
    url: str,
    body: object = None,
    *,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, Any]:
    """One request; (status, JSON body or raw bytes when the body is not JSON)."""
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def wait_until(
    check: Callable[[], Any], timeout_s: float, interval_s: float = 0.05, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError after ``timeout_s``.

    Exceptions from ``check`` count as "not yet" (the last one is reported).
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}: {last!r}")
        time.sleep(interval_s)


# -- one crdtkv serve process --------------------------------------------------------------------


class Server:
    """One ``crdtkv serve`` process; restartable on the same data directory and port."""

    def __init__(
        self,
        replica_id: str,
        data_dir: Path,
        *,
        port: int | None = None,
        peers: Mapping[str, str] | None = None,
        secret: str | None = None,
        durability: str = "fsync",
        extra: list[str] | None = None,
    ) -> None:
        self.replica_id = replica_id
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.peers = dict(peers or {})
        self.secret = secret
        self.durability = durability
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = self.data_dir.parent / f"{replica_id}.{self.port}.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        args = ["--replica-id", self.replica_id, "--port", str(self.port)]
        args += ["--data-dir", str(self.data_dir), "--durability", self.durability]
        for pid, url in self.peers.items():
            args += ["--peer", f"{pid}={url}"]
        if self.secret:
            args += ["--cluster-secret", self.secret]
        return args + self.extra

    def spawn(self) -> None:
        """Start the process without waiting for it (see ``wait_serving``)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 - the child owns it from here
        log.write(f"--- start {self.starts} ---\n")
        log.flush()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "crdtkv.cli", "serve", *self.args()],
                cwd=self.data_dir.parent,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        finally:
            log.close()
        self.starts += 1

    def wait_serving(self, timeout_s: float = STARTUP_S) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
            if not ready:
                self.kill9()
                raise AssertionError(f"{self.replica_id}: no serving line in {timeout_s} s")
            line = proc.stdout.readline()
            if not line:
                proc.wait()
                raise AssertionError(
                    f"{self.replica_id} exited with {proc.returncode} before serving: "
                    f"{self.log_tail()}"
                )
            if line.startswith(f"crdtkv replica {self.replica_id} serving on "):
                assert line.rstrip("\n").endswith(self.url), line
                return

    def start(self, timeout_s: float = STARTUP_S) -> Server:
        self.spawn()
        self.wait_serving(timeout_s)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """``kill -9``: no flush, no clean close; the process is reaped before returning."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STARTUP_S) -> int:
        """A clean stop; returns the exit status."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            status = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"{self.replica_id} did not stop within {timeout_s} s") from None
        if proc.stdout is not None:
            proc.stdout.close()
        return status

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return "<no log>"

    # -- requests --------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return http("GET", self.url + path, **kw)

    def status(self) -> dict[str, Any]:
        code, body = self.get("/v1/status")
        assert code == 200, (code, body)
        assert isinstance(body, dict)
        return body


class ServerGroup:
    """Servers a test started; at teardown every one still running is killed."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def add(self, server: Server) -> Server:
        self.servers.append(server)
        return server

    def close(self) -> None:
        for s in self.servers:
            with contextlib.suppress(Exception):
                s.kill9()


@contextlib.contextmanager
def server_group() -> Iterator[ServerGroup]:
    group = ServerGroup()
    try:
        yield group
    finally:
        group.close()


def start_all(servers: list[Server], timeout_s: float = STARTUP_S) -> None:
    """Spawn every server, then wait for each (they start in parallel)."""
    for s in servers:
        s.spawn()
    for s in servers:
        s.wait_serving(timeout_s)


def mesh(
    ids: list[str], root: Path, *, secret: str | None = None, durability: str = "fsync"
) -> list[Server]:
    """Servers for a fully meshed cluster (not started)."""
    ports = free_ports(len(ids))
    urls = {rid: f"http://127.0.0.1:{p}" for rid, p in zip(ids, ports, strict=True)}
    return [
        Server(
            rid,
            root / rid,
            port=port,
            peers={p: u for p, u in urls.items() if p != rid},
            secret=secret,
            durability=durability,
        )
        for rid, port in zip(ids, ports, strict=True)
    ]

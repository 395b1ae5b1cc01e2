"""The one place for tests' child processes: ports, environment, spawn, readiness, stop.

- ports: ``free_port``/``free_ports`` (bound to port 0, so distinct and free),
  ``consecutive_free_ports`` (for ``crdtkv cluster --base-port``),
  ``port_is_free``;
- ``clean_env``: the environment without ``CRDTKV_*`` variables, with this
  checkout on ``PYTHONPATH``;
- commands: ``crdtkv_cmd`` (``crdtkv ...`` as this interpreter runs it),
  ``python_cmd`` (``python -c``); ``run`` runs one to completion with its
  output captured, ``spawn`` starts one (stdout/stderr piped, to a log file,
  or dropped);
- readiness: ``first_line``, ``wait_line`` (a marker line on stdout or
  stderr), ``read_lines_until`` (every line up to the marker), and
  ``wait_healthy`` (``/healthz`` answers 200 while the process lives);
- stopping: ``stop`` (a signal, SIGTERM by default, then SIGKILL if the
  process outlives the timeout), ``finish``/``exited`` (the same, returning
  stderr), ``kill9`` (``kill -9`` by the Popen handle, never by name) and
  ``proc_group`` (whatever a test started, killed at the end);
- ``/proc``: ``pid_alive`` and ``children_of``;
- ``http``: one JSON request with urllib, returning (status, decoded body),
  and ``wait_until``, a bounded poll on a condition;
- ``Server``/``ServerGroup``/``mesh``/``start_all``: ``crdtkv serve``
  processes, restartable on their data directory and port.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 20.0  # generous: a loaded CI machine imports aiohttp and opens RocksDB slowly
HTTP_TIMEOUT_S = 10.0
RUN_TIMEOUT_S = 120.0  # one command run to completion
STOP_S = 30.0  # a clean stop (SIGTERM/SIGINT) before it counts as hung
POLL_S = 0.05  # interval of the bounded polls (healthz, wait_until)


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
    # A replica serves RESP on 6379 unless told otherwise: tests ask for it by option.
    env["CRDTKV_RESP_PORT"] = "0"
    env["CRDTKV_RESP_BASE_PORT"] = "0"  # and crdtkv cluster's replicas
    # The package from this checkout, whatever the working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


# -- commands and child processes ------------------------------------------------------------------

Proc = subprocess.Popen[str]
Output = Literal["pipe", "devnull", "stdout"] | Path  # "stdout": stderr joins stdout


def crdtkv_cmd(*args: str) -> list[str]:
    """``crdtkv args...`` run by this interpreter from this checkout."""
    return [sys.executable, "-m", "crdtkv.cli", *args]


def python_cmd(code: str, *args: str) -> list[str]:
    """``python -c code args...`` (``code`` dedented)."""
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion, stdout and stderr captured (``clean_env()`` by default)."""
    return subprocess.run(
        list(cmd),
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _target(output: Output, log: list[IO[str]]) -> Any:
    if output == "pipe":
        return subprocess.PIPE
    if output == "devnull":
        return subprocess.DEVNULL
    if output == "stdout":
        return subprocess.STDOUT
    f = open(output, "a")  # noqa: SIM115 - the child owns it once started
    log.append(f)
    return f


def spawn(
    cmd: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    stdout: Output = "pipe",
    stderr: Output = "pipe",
    stdin: bool = False,
    new_session: bool = False,
) -> Proc:
    """Start ``cmd`` without waiting (``clean_env()`` by default).

    Output goes to a pipe (read it with ``wait_line``/``exited``), to a log
    file (appended to; a pipe nobody reads would fill up and stall a
    long-running child), or nowhere.  ``new_session``: the child leads its own
    process group, so ``kill9(proc, group=True)`` reaches its children too.
    """
    files: list[IO[str]] = []
    try:
        return subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else clean_env(),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=_target(stdout, files),
            stderr=_target(stderr, files),
            text=True,
            start_new_session=new_session,
        )
    finally:
        for f in files:
            f.close()


def _readline(stream: IO[str], timeout_s: float) -> str | None:
    """One line (``""`` at end of file), or None after ``timeout_s``.

    A thread does the blocking read: ``select`` on the pipe would miss lines
    already pulled into the text wrapper's buffer.  After a timeout that
    thread is still reading, so the caller kills the process.
    """
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(max(0.0, timeout_s))
    return got[0] if got else None


def read_lines_until(
    proc: Proc,
    marker: str | Callable[[str], bool],
    timeout_s: float = STARTUP_S,
    *,
    stream: Literal["stdout", "stderr"] = "stdout",
    what: str = "",
    log: Path | None = None,
) -> list[str]:
    """Lines read from the child's ``stream`` (piped), up to and including the marker line.

    ``marker``: a prefix, or a predicate on the line (newline stripped).  The
    child exiting first, or no marker within ``timeout_s`` (the child is then
    killed), is an AssertionError naming ``what`` and the tail of ``log``.
    """
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None, f"{stream} is not a pipe"
    done = marker if callable(marker) else (lambda line: line.startswith(marker))
    who = what or " ".join(proc.args if isinstance(proc.args, list) else [str(proc.args)])
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while True:
        line = _readline(pipe, deadline - time.monotonic())
        if line is None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise AssertionError(
                f"{who}: no {marker!r} line within {timeout_s} s; got {lines}"
                f"{_stderr_tail(proc, stream)}{_tail(log)}"
            )
        if not line:
            status = proc.wait(timeout=STOP_S)
            raise AssertionError(
                f"{who} exited with {status} before a {marker!r} line; got {lines}"
                f"{_stderr_tail(proc, stream)}{_tail(log)}"
            )
        lines.append(line.rstrip("\n"))
        if done(lines[-1]):
            return lines


def wait_line(
    proc: Proc,
    marker: str | Callable[[str], bool],
    timeout_s: float = STARTUP_S,
    **kw: Any,
) -> str:
    """The first line of the child's output that ``marker`` accepts (see ``read_lines_until``)."""
    return read_lines_until(proc, marker, timeout_s, **kw)[-1]


def first_line(proc: Proc, timeout_s: float = STARTUP_S) -> str:
    """The child's first stdout line (e.g. a server's "serving on" line)."""
    return wait_line(proc, lambda _: True, timeout_s)


def wait_healthy(
    proc: Proc,
    urls: Sequence[str],
    timeout_s: float = STARTUP_S,
    *,
    what: str = "",
    log: Path | None = None,
) -> None:
    """Every ``url/healthz`` answers 200, while the child is still running."""
    who = what or " ".join(proc.args if isinstance(proc.args, list) else [str(proc.args)])
    deadline = time.monotonic() + timeout_s
    for url in urls:
        while True:
            status = proc.poll()
            assert status is None, f"`{who}` exited with {status}{_tail(log)}"
            with contextlib.suppress(OSError):
                if http("GET", url + "/healthz", timeout=2)[0] == 200:
                    break
            assert time.monotonic() < deadline, f"no {url}/healthz from `{who}`{_tail(log)}"
            time.sleep(POLL_S)


def _stderr_tail(proc: Proc, read: str, chars: int = 2000) -> str:
    """The end of an exited child's piped stderr, unless that is the stream being read."""
    if read == "stderr" or proc.stderr is None or proc.stderr.closed:
        return ""
    return "\n" + proc.stderr.read()[-chars:]


def _tail(log: Path | None, chars: int = 2000) -> str:
    if log is None:
        return ""
    try:
        return "\n" + log.read_text()[-chars:]
    except OSError:
        return "\n<no log>"


def kill9(proc: Proc, *, group: bool = False) -> None:
    """``kill -9`` (of its process group too with ``group``), reaped, pipes closed."""
    if proc.poll() is None:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def stop(
    proc: Proc, sig: int = signal.SIGTERM, timeout_s: float = STOP_S, *, group: bool = False
) -> int:
    """Send ``sig`` (if still running) and return the exit status; ``kill -9`` (of
    the process group with ``group``) and an AssertionError if the child outlives
    ``timeout_s``."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill9(proc, group=group)
        raise AssertionError(f"{proc.args!r} did not stop within {timeout_s} s") from None


def exited(proc: Proc, timeout_s: float = STARTUP_S) -> tuple[int, str]:
    """Wait for a child that stops on its own; (exit status, stderr)."""
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill9(proc)
        raise AssertionError(f"{proc.args!r} did not exit within {timeout_s} s") from None
    return proc.returncode, err or ""


def finish(proc: Proc, sig: int = signal.SIGTERM, timeout_s: float = STARTUP_S) -> tuple[int, str]:
    """Send ``sig`` (if still running); (exit status, stderr)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    return exited(proc, timeout_s)


@contextlib.contextmanager
def proc_group() -> Iterator[list[Proc]]:
    """A list to put started children in; whatever still runs at the end is killed."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for proc in started:
            with contextlib.suppress(Exception):
                kill9(proc)


def pid_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie or dead entry counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # pid (comm) state ppid ...; comm may hold spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


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
        resp_port: int | None = None,
    ) -> None:
        self.replica_id = replica_id
        self.resp_port = resp_port  # serve RESP on this port (None: off)
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.peers = dict(peers or {})
        self.secret = secret
        self.durability = durability
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = self.data_dir.parent / f"{replica_id}.{self.port}.log"
        self.starts = 0
        # Where to import crdtkv from instead of this checkout (another release's
        # installed packages: tests/replication/test_upgrade_real.py); set between starts.
        self.pythonpath: Path | None = None

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
        if self.resp_port:
            args += ["--resp-port", str(self.resp_port)]
        return args + self.extra

    def spawn(self) -> None:
        """Start the process without waiting for it (see ``wait_serving``)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            log.write(f"--- start {self.starts} ---\n")
        env = clean_env(PYTHONPATH=str(self.pythonpath)) if self.pythonpath else None
        self.proc = spawn(
            crdtkv_cmd("serve", *self.args()),
            cwd=self.data_dir.parent,
            env=env,
            stderr=self.log_path,
        )
        self.starts += 1

    def wait_serving(self, timeout_s: float = STARTUP_S) -> None:
        assert self.proc is not None
        line = wait_line(
            self.proc,
            f"crdtkv replica {self.replica_id} serving on ",
            timeout_s,
            what=self.replica_id,
            log=self.log_path,
        )
        end = self.url + (f" and redis://127.0.0.1:{self.resp_port}" if self.resp_port else "")
        assert line.endswith(end), line

    def start(self, timeout_s: float = STARTUP_S) -> Server:
        self.spawn()
        self.wait_serving(timeout_s)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """``kill -9``: no flush, no clean close; the process is reaped before returning."""
        if self.proc is not None:
            kill9(self.proc)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = STARTUP_S) -> int:
        """A clean stop; returns the exit status."""
        assert self.proc is not None
        status = stop(self.proc, sig, timeout_s)
        kill9(self.proc)  # already exited: only reaps and closes the pipe
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

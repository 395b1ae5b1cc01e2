"""What the machine and the server are doing, from ``/proc``; and the server ``--spawn`` starts.

The generator shares the machine with the server, so every figure comes with
how much CPU each side used: the server's pids are known (``--spawn``), found
from the listening socket (a loopback URL) or given (``--server-pid``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdtkv.tools.bench.options import BenchError
from crdtkv.tools.procs import (
    NotServing,
    await_serving,
    child_env,
    free_port,
    serve_command,
    stop_processes,
)

__all__ = [
    "CpuSample",
    "SpawnedServer",
    "cpu_shares",
    "listening_pids",
    "machine_cpu",
    "machine_info",
    "proc_cpu_s",
    "proc_rss_kb",
]

SPAWN_START_TIMEOUT_S = 120.0  # a big data directory takes a while to load
SPAWN_STOP_TIMEOUT_S = 30.0

# -- /proc accounting --------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads); None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size of a process in KiB (VmRSS), None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def machine_cpu() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine, all cores, since boot."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    ticks = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(ticks)
    idle = ticks[3] + ticks[4]
    return (total - idle) / _TICKS, total / _TICKS


def listening_pids(port: int) -> list[int]:
    """Processes listening on a local TCP port (root, or the same user, can see them)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if (
                        len(cols) > 9
                        and cols[3] == "0A"
                        and int(cols[1].rsplit(":", 1)[1], 16) == port
                    ):
                        inodes.add(cols[9])
        except OSError:
            continue
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in wanted:
                    pids.append(int(entry))
                    break
            except OSError:
                continue
    return pids


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_avg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


@dataclass
class CpuSample:
    at: float
    bench_s: float
    server_s: dict[int, float]
    machine: tuple[float, float] | None

    @classmethod
    def take(cls, pids: Sequence[int]) -> CpuSample:
        server = {}
        for pid in pids:
            v = proc_cpu_s(pid)
            if v is not None:
                server[pid] = v
        return cls(time.monotonic(), time.process_time(), server, machine_cpu())


def cpu_shares(a: CpuSample, b: CpuSample) -> dict[str, float | None]:
    """CPU used between two samples, in % of one core (200% = both cores of two)."""
    wall = max(b.at - a.at, 1e-9)
    server: float | None = None
    if a.server_s and b.server_s:
        server = sum(b.server_s[p] - a.server_s[p] for p in a.server_s if p in b.server_s)
    bench = b.bench_s - a.bench_s
    out: dict[str, float | None] = {
        "server_pct": None if server is None else round(100 * server / wall, 1),
        "bench_pct": round(100 * bench / wall, 1),
        "machine_busy_pct": None,
        "others_pct": None,
    }
    if a.machine is not None and b.machine is not None:
        busy = b.machine[0] - a.machine[0]
        ncpu = os.cpu_count() or 1
        # /proc/stat ticks and the monotonic clock can disagree slightly: scale by the total.
        total = (b.machine[1] - a.machine[1]) / ncpu or wall
        out["machine_busy_pct"] = round(100 * busy / total, 1)
        others = busy / total - (server or 0.0) / wall - bench / wall
        out["others_pct"] = round(max(0.0, 100 * others), 1)
    return out


# -- a spawned server ----------------------------------------------------------------------------


class SpawnedServer:
    """``crdtkv serve`` in a temporary directory; ``stop`` is safe to call whatever happened."""

    def __init__(self, durability: str, environ: Mapping[str, str], *, resp: bool = False) -> None:
        self.durability = durability
        self.environ = child_env(environ)
        self.tmp = Path(tempfile.mkdtemp(prefix="crdtkv-bench-"))
        self.port = 0
        self.resp = resp  # also serve RESP (on ``resp_port`` once started)
        self.resp_port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.port = free_port()
        self.resp_port = free_port() if self.resp else 0
        data_dir = str(self.tmp / "data")
        cmd = serve_command(
            "bench",
            self.port,
            data_dir,
            self.durability,
            log_level="WARNING",
            resp_port=self.resp_port,
        )
        log = open(self.tmp / "server.log", "w")  # noqa: SIM115 - the child owns it
        try:
            # A session of its own: a Ctrl-C at the terminal reaches us, and we stop it.
            self.proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, env=self.environ, text=True,
                start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        try:
            await_serving(self.proc, SPAWN_START_TIMEOUT_S)
        except NotServing as e:
            tail = f": {self.log_tail()}" if e.status is not None else ""
            raise BenchError(f"--spawn: the server {e}{tail}") from None

    def log_tail(self) -> str:
        try:
            lines = (self.tmp / "server.log").read_text().strip().splitlines()
        except OSError:
            return "<no log>"
        return lines[-1] if lines else "<empty log>"

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after a timeout; remove the directory."""
        try:
            if self.proc is None:
                return None
            return stop_processes([self.proc], SPAWN_STOP_TIMEOUT_S)[0]
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

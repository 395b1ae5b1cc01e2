"""``crdtkv cluster``: N replicas on 127.0.0.1 as one fully meshed cluster.

Each replica is a real ``crdtkv serve`` child process (ids ``r1..rN``, ports
P..P+N-1, data under DIR/<id>).  The cluster secret is generated once and kept
in DIR/cluster.secret (mode 0600), so restarting the cluster keeps session
tokens valid; it reaches the children through the environment, never the
command line.  Ctrl-C (or SIGTERM) stops every replica cleanly; if one dies,
the others are stopped and the command exits 1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

__all__ = ["main"]

PROG = "crdtkv cluster"
REPLICAS_MAX = 16  # one machine; more is a load test, not a cluster
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = _Parser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=3, help="number of replicas (default 3)")
    p.add_argument("--base-port", type=int, default=7001, help="first port (default 7001)")
    p.add_argument("--data-dir", default="./data", help="parent data directory (default ./data)")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    args = p.parse_args(argv)
    if not 1 <= args.replicas <= REPLICAS_MAX:
        p.error(f"--replicas: must be between 1 and {REPLICAS_MAX}")
    if not 1 <= args.base_port <= 65535 - args.replicas + 1:
        p.error("--base-port: the ports P..P+N-1 must lie between 1 and 65535")
    return args


def _secret(data_dir: Path) -> str:
    path = data_dir / "cluster.secret"
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    args = _parse(argv)
    data_dir = Path(args.data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        secret = _secret(data_dir)
    except OSError as e:
        print(f"{PROG}: error: --data-dir: {e}", file=sys.stderr)
        return 1
    ids = [f"r{i + 1}" for i in range(args.replicas)]
    urls = {rid: f"http://127.0.0.1:{args.base_port + i}" for i, rid in enumerate(ids)}
    env = {**environ, "CRDTKV_CLUSTER_SECRET": secret}
    procs: dict[str, subprocess.Popen[str]] = {}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for i, rid in enumerate(ids):
            cmd = [
                sys.executable,
                "-m",
                "crdtkv.cli",
                "serve",
                "--replica-id",
                rid,
                "--port",
                str(args.base_port + i),
                "--data-dir",
                str(data_dir / rid),
                "--durability",
                args.durability,
            ]
            for peer in ids:
                if peer != rid:
                    cmd += ["--peer", f"{peer}={urls[peer]}"]
            # A new session: Ctrl-C reaches only us, and we stop the children in order.
            procs[rid] = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
            )
        for rid, proc in procs.items():
            if not _await_serving(proc):
                print(f"{PROG}: error: replica {rid} did not start", file=sys.stderr)
                return 1
        for rid in ids:
            print(f"{rid} {urls[rid]}", flush=True)
        print(f"cluster of {len(ids)} replicas up; data in {data_dir}; Ctrl-C stops it", flush=True)
        while not stopping:
            dead = [rid for rid, p in procs.items() if p.poll() is not None]
            if dead:
                print(
                    f"{PROG}: error: replica {dead[0]} exited with status "
                    f"{procs[dead[0]].returncode}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
        return 0
    finally:
        _stop_all(procs)


def _await_serving(proc: subprocess.Popen[str]) -> bool:
    """Wait for the child's "serving on" line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            return False  # exited
        if "serving on" in line:
            return True
    return False


def _stop_all(procs: dict[str, subprocess.Popen[str]]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

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
import time
from collections.abc import Mapping
from pathlib import Path

from crdtkv.cliutil import ArgParser, UsageError, print_error
from crdtkv.tools.procs import NotServing, await_serving, serve_command, stop_processes

__all__ = ["main"]

PROG = "crdtkv cluster"
REPLICAS_MAX = 16  # one machine; more is a load test, not a cluster
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2  # how often the children are checked while the cluster runs


def _parse(argv: list[str], environ: Mapping[str, str]) -> argparse.Namespace:
    p = ArgParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=3, help="number of replicas (default 3)")
    p.add_argument("--base-port", type=int, default=7001, help="first port (default 7001)")
    p.add_argument(
        "--resp-base-port",
        type=int,
        default=None,
        help="first Redis protocol port (default 6379, or CRDTKV_RESP_BASE_PORT); 0 turns RESP off",
    )
    p.add_argument("--data-dir", default="./data", help="parent data directory (default ./data)")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    args = p.parse_args(argv)
    if args.resp_base_port is None:
        env = environ.get("CRDTKV_RESP_BASE_PORT", "").strip()
        try:
            args.resp_base_port = int(env) if env else 6379
        except ValueError:
            raise UsageError("CRDTKV_RESP_BASE_PORT", "must be an integer") from None
    if not 1 <= args.replicas <= REPLICAS_MAX:
        raise UsageError("--replicas", f"must be between 1 and {REPLICAS_MAX}")
    if not 1 <= args.base_port <= 65535 - args.replicas + 1:
        raise UsageError("--base-port", "the ports P..P+N-1 must lie between 1 and 65535")
    if args.resp_base_port and not 1 <= args.resp_base_port <= 65535 - args.replicas + 1:
        raise UsageError("--resp-base-port", "the ports R..R+N-1 must lie between 1 and 65535")
    http = set(range(args.base_port, args.base_port + args.replicas))
    if args.resp_base_port and http & set(
        range(args.resp_base_port, args.resp_base_port + args.replicas)
    ):
        raise UsageError("--resp-base-port", "the RESP ports overlap the HTTP ports")
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
    try:
        args = _parse(argv, environ)
    except UsageError as e:
        print_error(PROG, str(e))
        return 2
    data_dir = Path(args.data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        secret = _secret(data_dir)
    except OSError as e:
        print_error(PROG, f"--data-dir: {e}")
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
            peers = {peer: urls[peer] for peer in ids if peer != rid}
            cmd = serve_command(
                rid,
                args.base_port + i,
                str(data_dir / rid),
                args.durability,
                peers=peers,
                resp_port=args.resp_base_port + i if args.resp_base_port else 0,
            )
            # A new session: Ctrl-C reaches only us, and we stop the children in order.
            procs[rid] = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
            )
        for rid, proc in procs.items():
            try:
                await_serving(proc, START_TIMEOUT_S)
            except NotServing:
                print_error(PROG, f"replica {rid} did not start")
                return 1
        for i, rid in enumerate(ids):
            resp = f"  redis://127.0.0.1:{args.resp_base_port + i}" if args.resp_base_port else ""
            print(f"{rid} {urls[rid]}{resp}", flush=True)
        print(f"cluster of {len(ids)} replicas up; data in {data_dir}; Ctrl-C stops it", flush=True)
        while not stopping:
            dead = [rid for rid, p in procs.items() if p.poll() is not None]
            if dead:
                status = procs[dead[0]].returncode
                print_error(PROG, f"replica {dead[0]} exited with status {status}")
                return 1
            time.sleep(POLL_S)
        return 0
    finally:
        stop_processes(list(procs.values()), STOP_TIMEOUT_S)

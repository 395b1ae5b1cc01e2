"""``crdtkv cluster``: local replicas on 127.0.0.1, fully meshed or sharded.

``--replicas N`` (the default, 3): one unsharded cluster of N replicas (ids
``r1..rN``, ports P..P+N-1), every replica a peer of every other.

``--shards S --regions R``: a sharded cluster of S x R processes, S shards
each with one replica in every region (ids ``s1-a``, ``s1-b``, ..., regions
``a``, ``b``, ...), the slots split evenly over the shards.  The map is
written to DIR/cluster-map.json and every process starts with
``--cluster-map`` on it; ports are free ones the OS picks (HTTP and RESP),
unless ``--base-port`` / ``--resp-base-port`` give consecutive ones.  A
second start on the same DIR reuses that map file (its ports must be free
again); the processes then take the newer of it and the map their data
directory holds (a map changed by ``crdtkv cluster-map set``).

Each replica is a real ``crdtkv serve`` child process with data under
DIR/<id>.  The cluster secret is generated once and kept in
DIR/cluster.secret (mode 0600), so restarting the cluster keeps session
tokens valid; it reaches the children through the environment, never the
command line.  Ctrl-C (or SIGTERM) stops every replica cleanly; if one dies,
the others are stopped and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import string
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from crdtkv.cliutil import ArgParser, UsageError, print_error
from crdtkv.tools.procs import (
    NotServing,
    await_serving,
    free_ports,
    serve_command,
    stop_processes,
)

__all__ = ["main"]

PROG = "crdtkv cluster"
REPLICAS_MAX = 16  # one machine; more is a load test, not a cluster
SHARDED_MAX = 32  # processes of a sharded cluster on one machine
REGIONS_MAX = len(string.ascii_lowercase)
DEFAULT_BASE_PORT = 7001
MAP_FILE = "cluster-map.json"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
POLL_S = 0.2  # how often the children are checked while the cluster runs


@dataclass(frozen=True)
class _Proc:
    id: str
    port: int
    resp_port: int  # 0: RESP off
    shard: str | None = None
    region: str | None = None


def _parse(argv: list[str], environ: Mapping[str, str]) -> argparse.Namespace:
    p = ArgParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--replicas", type=int, default=None, help="number of replicas (default 3)")
    p.add_argument("--shards", type=int, default=None, help="sharded: number of shards")
    p.add_argument("--regions", type=int, default=None, help="sharded: number of regions")
    p.add_argument(
        "--base-port",
        type=int,
        default=None,
        help=f"first port (default {DEFAULT_BASE_PORT}; sharded: free ports)",
    )
    p.add_argument(
        "--resp-base-port",
        type=int,
        default=None,
        help="first Redis protocol port (default 6379, or CRDTKV_RESP_BASE_PORT; sharded:"
        " free ports); 0 turns RESP off",
    )
    p.add_argument("--data-dir", default="./data", help="parent data directory (default ./data)")
    p.add_argument("--durability", choices=["fsync", "wal"], default="fsync")
    args = p.parse_args(argv)
    args.sharded = args.shards is not None or args.regions is not None
    if args.resp_base_port is None:
        env = environ.get("CRDTKV_RESP_BASE_PORT", "").strip()
        try:
            args.resp_base_port = int(env) if env else (None if args.sharded else 6379)
        except ValueError:
            raise UsageError("CRDTKV_RESP_BASE_PORT", "must be an integer") from None
    if args.sharded:
        if args.replicas is not None:
            raise UsageError("--replicas", "give either --replicas or --shards/--regions")
        args.shards = 1 if args.shards is None else args.shards
        args.regions = 1 if args.regions is None else args.regions
        if args.shards < 1 or args.regions < 1:
            raise UsageError("--shards" if args.shards < 1 else "--regions", "must be at least 1")
        if args.regions > REGIONS_MAX:
            raise UsageError("--regions", f"must be at most {REGIONS_MAX}")
        if args.shards * args.regions > SHARDED_MAX:
            raise UsageError(
                "--shards",
                f"{args.shards} x {args.regions} = {args.shards * args.regions} processes;"
                f" at most {SHARDED_MAX} on one machine",
            )
        n = args.shards * args.regions
    else:
        args.replicas = 3 if args.replicas is None else args.replicas
        if not 1 <= args.replicas <= REPLICAS_MAX:
            raise UsageError("--replicas", f"must be between 1 and {REPLICAS_MAX}")
        if args.base_port is None:
            args.base_port = DEFAULT_BASE_PORT
        n = args.replicas
    if args.base_port is not None and not 1 <= args.base_port <= 65535 - n + 1:
        raise UsageError("--base-port", "the ports P..P+N-1 must lie between 1 and 65535")
    if args.resp_base_port and not 1 <= args.resp_base_port <= 65535 - n + 1:
        raise UsageError("--resp-base-port", "the ports R..R+N-1 must lie between 1 and 65535")
    if args.base_port is not None and args.resp_base_port:
        http = set(range(args.base_port, args.base_port + n))
        if http & set(range(args.resp_base_port, args.resp_base_port + n)):
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


def _ports(base: int | None, n: int, taken: list[int]) -> list[int]:
    if base is not None:
        return list(range(base, base + n))
    while True:  # free ports, none of them among ``taken``
        ports = free_ports(n + len(taken))
        picked = [p for p in ports if p not in taken][:n]
        if len(picked) == n:
            return picked


def _sharded_map(args: argparse.Namespace, data_dir: Path) -> tuple[Path, list[_Proc]]:
    """The map file (written, or the one a previous start left) and its processes."""
    from crdtkv.cluster.map import ClusterMap, MapError, NodeAddr, Shard

    regions = list(string.ascii_lowercase[: args.regions])
    ids = {f"s{i + 1}-{r}" for i in range(args.shards) for r in regions}
    path = data_dir / MAP_FILE
    if path.exists():
        try:
            m = ClusterMap.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, MapError) as e:
            raise UsageError("--data-dir", f"{path}: {e}") from None
        if {n.id for n in m.nodes()} != ids:
            raise UsageError(
                "--data-dir",
                f"{data_dir} holds a cluster of {len(m.shards)} shards x {len(m.regions)}"
                " regions: start that shape again, or use another --data-dir",
            )
    else:
        n = args.shards * args.regions
        http = _ports(args.base_port, n, [])
        resp = _ports(args.resp_base_port, n, http) if args.resp_base_port != 0 else [0] * n
        shards = []
        for i in range(args.shards):
            replicas = []
            for j, r in enumerate(regions):
                k = i * args.regions + j
                replicas.append(
                    NodeAddr(
                        f"s{i + 1}-{r}",
                        r,
                        f"http://127.0.0.1:{http[k]}",
                        f"127.0.0.1:{resp[k]}" if resp[k] else None,
                    )
                )
            shards.append(Shard(f"s{i + 1}", tuple(replicas)))
        m = ClusterMap.even(shards)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(m.to_json(), indent=2) + "\n")
        tmp.replace(path)
    procs = []
    for sh in m.shards:
        for node in sh.replicas:
            hp = node.resp_host_port
            port = int(node.http.rsplit(":", 1)[1])
            procs.append(_Proc(node.id, port, hp[1] if hp else 0, sh.id, node.region))
    return path, procs


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
    map_path: Path | None = None
    if args.sharded:
        try:
            map_path, plan = _sharded_map(args, data_dir)
        except UsageError as e:
            print_error(PROG, str(e))
            return 2
        except OSError as e:
            print_error(PROG, f"--data-dir: {e}")
            return 1
    else:
        plan = [
            _Proc(
                f"r{i + 1}",
                args.base_port + i,
                args.resp_base_port + i if args.resp_base_port else 0,
            )
            for i in range(args.replicas)
        ]
    urls = {p.id: f"http://127.0.0.1:{p.port}" for p in plan}
    env = {**environ, "CRDTKV_CLUSTER_SECRET": secret}
    procs: dict[str, subprocess.Popen[str]] = {}
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for p in plan:
            peers = None if map_path else {q: u for q, u in urls.items() if q != p.id}
            cmd = serve_command(
                p.id,
                p.port,
                str(data_dir / p.id),
                args.durability,
                peers=peers,
                resp_port=p.resp_port,
                cluster_map=str(map_path) if map_path else None,
            )
            # A new session: Ctrl-C reaches only us, and we stop the children in order.
            procs[p.id] = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
            )
        for rid, proc in procs.items():
            try:
                await_serving(proc, START_TIMEOUT_S)
            except NotServing:
                print_error(PROG, f"replica {rid} did not start")
                return 1
        width = max(len(p.id) for p in plan)
        for p in plan:
            resp = f"  redis://127.0.0.1:{p.resp_port}" if p.resp_port else ""
            if p.shard:  # "s1-a  shard s1  region a  http://...  redis://..."
                where = f"{p.id:<{width}}  shard {p.shard}  region {p.region}  "
            else:  # "r1 http://...  redis://..."
                where = f"{p.id} "
            print(f"{where}{urls[p.id]}{resp}", flush=True)
        if map_path is not None:
            print(
                f"cluster of {args.shards} shards x {args.regions} regions ({len(plan)} processes)"
                f" up; map in {map_path}; data in {data_dir}; Ctrl-C stops it",
                flush=True,
            )
        else:
            print(
                f"cluster of {len(plan)} replicas up; data in {data_dir}; Ctrl-C stops it",
                flush=True,
            )
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

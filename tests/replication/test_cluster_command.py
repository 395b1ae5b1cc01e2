"""``crdtkv cluster`` as a subprocess: it starts three replicas on consecutive
ports with a generated cluster secret, they replicate and refuse unsigned
replication requests, and Ctrl-C stops every one of them and frees the ports."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import redis

from crdtkv import Client
from replication.http import REPLICATE_PATH
from tests.procs import (
    STARTUP_S,
    Server,
    children_of,
    consecutive_free_ports,
    http,
    kill9,
    pid_alive,
    port_is_free,
    read_lines_until,
    spawn,
    stop,
    wait_until,
)
from tests.replication.real_cluster import CONVERGE_S, read


def test_crdtkv_cluster_command(tmp_path: Path) -> None:
    base = consecutive_free_ports(3)
    resp_base = consecutive_free_ports(3)
    data = tmp_path / "cluster"
    script = Path(sys.executable).parent / "crdtkv"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "crdtkv.cli"]
    log = tmp_path / "cluster.log"
    proc = spawn(
        [
            *cmd,
            *("cluster", "--replicas", "3", "--base-port", str(base), "--data-dir", str(data)),
            *("--resp-base-port", str(resp_base)),
        ],
        cwd=tmp_path,
        stderr=log,
    )
    children: list[int] = []
    try:
        up = "cluster of 3 replicas up"
        lines = read_lines_until(proc, up, 3 * STARTUP_S, what="crdtkv cluster", log=log)
        urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
        assert lines[:3] == [
            f"r{i + 1} {u}  redis://127.0.0.1:{resp_base + i}" for i, u in enumerate(urls)
        ], lines
        children = children_of(proc.pid)
        assert len(children) == 3, children
        assert (data / "cluster.secret").stat().st_mode & 0o777 == 0o600

        with Client([urls[0]]) as db:
            db.registers.set("greeting", {"hello": "world"})
        # A Redis client at r2: its counter write reaches r3 as the HTTP write does.
        rds = redis.Redis(port=resp_base + 1, decode_responses=True)
        try:
            assert rds.incrby("n", 3) == 3
        finally:
            rds.close()
        r3 = Server("r3", data / "r3", port=base + 2)  # only to read; not started by us
        wait_until(
            lambda: (
                read(r3, ("registers", "greeting")) == {"value": {"hello": "world"}}
                and read(r3, ("counters", "n")) == {"value": 3}
            ),
            CONVERGE_S,
            what="r1's write at r3",
        )
        # The cluster authenticates replication: an unsigned request is refused.
        status, _ = http(
            "POST",
            urls[0] + REPLICATE_PATH,
            data=b"\x90",
            headers={"Content-Type": "application/msgpack", "X-Crdtkv-Peer": "r2"},
        )
        assert status == 401

        assert stop(proc, signal.SIGINT, 3 * STARTUP_S) == 0, log.read_text()
        for port in range(base, base + 3):
            assert wait_until(lambda p=port: port_is_free(p), 10, what=f"port {port} free")
        for pid in children:
            wait_until(lambda p=pid: not pid_alive(p), 10, what=f"replica pid {pid} gone")
    finally:
        kill9(proc)
        # Should the command have left replicas behind, stop them (by pid, ours).
        for pid in children:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

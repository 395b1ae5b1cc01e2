"""``crdtkv serve`` as a real process, and the command line's options and errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crdtkv import cli
from crdtkv.config import ServeConfig, UsageError, parse_serve_args
from tests.procs import (
    STARTUP_S,
    clean_env,
    crdtkv_cmd,
    exited,
    finish,
    first_line,
    free_port,
    proc_group,
    spawn,
)


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return spawn(crdtkv_cmd("serve", *args), cwd=cwd, env=env)


def http(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started; whatever is still running at the end is killed."""
    with proc_group() as started:
        yield started


# -- a real process ----------------------------------------------------------------------------


def test_serve_answers_stops_cleanly_and_keeps_data(tmp_path: Path, procs: list[Any]) -> None:
    port = free_port()
    args = ["--replica-id", "r1", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    proc = start(args, tmp_path)
    procs.append(proc)
    assert first_line(proc) == f"crdtkv replica r1 serving on http://127.0.0.1:{port}"
    base = f"http://127.0.0.1:{port}"
    assert http("GET", f"{base}/healthz") == (200, {"status": "ok"})
    assert http("PUT", f"{base}/v1/registers/a%2Fb", {"value": [1, "x"]}) == (200, {"ok": True})
    assert http("POST", f"{base}/v1/counters/c", {"delta": 4}) == (200, {"value": 4})
    status, err = finish(proc, signal.SIGTERM)
    assert status == 0, err
    assert "Traceback" not in err

    proc = start(args, tmp_path)
    procs.append(proc)
    first_line(proc)
    assert http("GET", f"{base}/v1/registers/a%2Fb") == (200, {"value": [1, "x"]})
    assert http("GET", f"{base}/v1/counters/c") == (200, {"value": 4})
    status, err = finish(proc, signal.SIGINT)
    assert status == 0, err


def test_environment_configures_serve(tmp_path: Path, procs: list[Any]) -> None:
    port = free_port()
    env = clean_env(
        CRDTKV_REPLICA_ID="env-1",
        CRDTKV_HOST="127.0.0.1",
        CRDTKV_PORT=str(port),
        CRDTKV_AUTH_TOKEN="tok",
        CRDTKV_DURABILITY="wal",
        CRDTKV_PEERS="r2=http://127.0.0.1:1,r3=http://127.0.0.1:2",
        CRDTKV_CLUSTER_SECRET="s",
    )
    proc = start([], tmp_path, env)
    procs.append(proc)
    assert first_line(proc) == f"crdtkv replica env-1 serving on http://127.0.0.1:{port}"
    status, body = http("GET", f"http://127.0.0.1:{port}/v1/status")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = http("GET", f"http://127.0.0.1:{port}/v1/status", token="tok")
    assert status == 200 and body["replica_id"] == "env-1"
    assert (tmp_path / "data" / "env-1").is_dir()  # the default data directory
    assert finish(proc)[0] == 0


def test_locked_data_dir_refuses_a_second_replica(tmp_path: Path, procs: list[Any]) -> None:
    port = free_port()
    data = tmp_path / "d"
    first = start(["--replica-id", "r1", "--port", str(port), "--data-dir", str(data)], tmp_path)
    procs.append(first)
    first_line(first)
    listing = sorted(p.name for p in data.iterdir())

    second = start(
        ["--replica-id", "r1", "--port", str(free_port()), "--data-dir", str(data)], tmp_path
    )
    procs.append(second)
    status, err = exited(second)
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and "in use" in err, err
    assert sorted(p.name for p in data.iterdir()) == listing  # nothing written
    # the first one keeps working
    assert http("POST", f"http://127.0.0.1:{port}/v1/counters/c", {"delta": 1}) == (
        200,
        {"value": 1},
    )
    assert finish(first)[0] == 0

    # the directory belongs to r1: another id is refused
    other = start(["--replica-id", "r2", "--port", str(port), "--data-dir", str(data)], tmp_path)
    procs.append(other)
    status, err = exited(other)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "r1" in err, err


def test_unusable_data_dir_and_busy_port_exit_1(tmp_path: Path, procs: list[Any]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("keep me")
    proc = start(["--replica-id", "r1", "--data-dir", str(not_a_dir)], tmp_path)
    procs.append(proc)
    status, err = exited(proc)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "data directory" in err, err
    assert not_a_dir.read_text() == "keep me"

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = ["--replica-id", "r1", "--port", str(port), "--data-dir", str(tmp_path / "d")]
        proc = start(args, tmp_path)
        procs.append(proc)
        status, err = exited(proc)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "--port" in err, err


def test_bad_option_in_a_real_process_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = start(["--replica-id", "r1", "--port", "http"], tmp_path)
    status, err = exited(proc)
    assert status == 2
    assert err == "crdtkv serve: error: --port: must be an integer between 1 and 65535\n"
    assert not (tmp_path / "data").exists()


# -- options, in process ---------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[list[str], dict[str, str], str]] = [
    ([], {}, "--replica-id"),
    (["--replica-id", ""], {}, "--replica-id"),
    (["--replica-id", "has space"], {}, "--replica-id"),
    (["--replica-id", "x" * 65], {}, "--replica-id"),
    (["--replica-id", "a/b"], {}, "--replica-id"),
    ([], {"CRDTKV_REPLICA_ID": "bad!"}, "CRDTKV_REPLICA_ID"),
    (["--port", "0"], {}, "--port"),
    (["--port", "65536"], {}, "--port"),
    (["--port", "12x"], {}, "--port"),
    (["--port"], {}, "--port"),
    ([], {"CRDTKV_PORT": "-1"}, "CRDTKV_PORT"),
    (["--peer", "r2"], {}, "--peer"),
    (["--peer", "r2=ftp://x"], {}, "--peer"),
    (["--peer", "r2=http://"], {}, "--peer"),
    (["--peer", "r2=http://x:99999"], {}, "--peer"),
    (["--peer", "r1=http://x:1"], {}, "--peer"),
    (["--peer", "r2=http://x:1", "--peer", "r2=http://y:1"], {}, "--peer"),
    (["--peer", "bad id=http://x:1"], {}, "--peer"),
    ([], {"CRDTKV_PEERS": "r2=http://x:1,r2=http://y:2"}, "CRDTKV_PEERS"),
    ([], {"CRDTKV_PEERS": "r2"}, "CRDTKV_PEERS"),
    (["--durability", "sometimes"], {}, "--durability"),
    ([], {"CRDTKV_DURABILITY": "FSYNC"}, "CRDTKV_DURABILITY"),
    (["--auth-token", ""], {}, "--auth-token"),
    (["--cluster-secret", " padded "], {}, "--cluster-secret"),
    (["--host", ""], {}, "--host"),
    (["--data-dir", ""], {}, "--data-dir"),
    (["--max-offset-ms", "-5"], {}, "--max-offset-ms"),
    (["--body-bytes-max", "10"], {}, "--body-bytes-max"),
    (["--log-level", "LOUD"], {}, "--log-level"),
    (["--resp-port", "65536"], {}, "--resp-port"),
    (["--resp-port", "-1"], {}, "--resp-port"),
    (["--port", "7001", "--resp-port", "7001"], {}, "--resp-port"),
    ([], {"CRDTKV_RESP_PORT": "x"}, "CRDTKV_RESP_PORT"),
    (["--resp-clients-max", "0"], {}, "--resp-clients-max"),
    (["--requirepass", ""], {}, "--requirepass"),
    (["--bogus"], {}, "--bogus"),
    (["--rep", "r1"], {}, "--rep"),  # no abbreviations
    (["extra"], {}, "extra"),
]


@pytest.mark.parametrize(("argv", "env", "option"), BAD_OPTIONS)
def test_bad_options_exit_2_naming_the_option(
    argv: list[str],
    env: dict[str, str],
    option: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    if "--replica-id" not in argv and "CRDTKV_REPLICA_ID" not in env and option != "--replica-id":
        argv = ["--replica-id", "r1", *argv]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdtkv serve: error: "), err
    assert option in lines[0]
    assert not (tmp_path / "data").exists()


def test_check_config_prints_the_resolved_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRDTKV_REPLICA_ID", "from-env")
    monkeypatch.setenv("CRDTKV_PORT", "7100")
    monkeypatch.setenv("CRDTKV_PEERS", "p1=http://10.0.0.1:7001/")
    monkeypatch.setenv("CRDTKV_AUTH_TOKEN", "")  # empty means unset
    monkeypatch.setenv("CRDTKV_RESP_PORT", "6390")
    monkeypatch.setenv("CRDTKV_REQUIREPASS", "pw")
    argv = ["serve", "--check-config", "--port", "7200", "--cluster-secret", "shh"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {
        "replica_id": "from-env",
        "host": "127.0.0.1",
        "port": 7200,  # the command line wins over the environment
        "data_dir": str(tmp_path / "data" / "from-env"),
        "peers": {"p1": "http://10.0.0.1:7001"},
        "cluster_secret": "<redacted>",
        "cluster_secret_previous": None,
        "auth_token": None,
        "durability": "fsync",
        "max_offset_ms": 500,
        "body_bytes_max": 1048576,
        "resp_port": 6390,
        "requirepass": "<redacted>",
        "resp_clients_max": 10000,
        "enable_flushall": False,
    }
    assert not (tmp_path / "data").exists()  # validated, nothing started or created


def test_parse_serve_args_resolves_everything() -> None:
    environ = {"CRDTKV_PEERS": "ignored=http://x:1", "CRDTKV_HOST": "0.0.0.0"}
    config = parse_serve_args(
        [
            "--replica-id=eu-1",
            "--port=8000",
            "--data-dir=/srv/eu",
            "--peer",
            "us-1=https://us.example:7001",
            "--peer",
            "ap_1=http://[::1]:7002/",
            "--durability",
            "wal",
            "--auth-token",
            "t",
            "--enable-flushall",
        ],
        environ,
    )
    assert config == ServeConfig(
        replica_id="eu-1",
        host="0.0.0.0",
        port=8000,
        data_dir="/srv/eu",
        peers={"us-1": "https://us.example:7001", "ap_1": "http://[::1]:7002"},
        cluster_secret=None,
        auth_token="t",
        durability="wal",
        resp_port=6379,  # the command line's default (ServeConfig's own is 0: off)
        enable_flushall=True,
    )
    with pytest.raises(UsageError, match="--port"):
        parse_serve_args(["--replica-id", "a", "--port", "x"], {})


def test_help_and_unknown_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: crdtkv <command>" in out and "serve" in out and "cluster" in out
    assert cli.main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--replica-id", "--port", "--peer", "CRDTKV_PEERS", "--check-config"):
        assert option in out
    assert cli.main([]) == 2
    assert "usage" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("crdtkv: error: unknown command 'frobnicate'")
    assert cli.main(["cluster", "--replicas", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "--replicas" in err[0]


def test_console_script_help_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crdtkv.cli", "--help"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )
    assert done.returncode == 0 and "serve" in done.stdout


def test_sigterm_waits_for_in_flight_requests(tmp_path: Path, procs: list[Any]) -> None:
    """A request parked in a session wait is answered before the process exits."""
    from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, SessionToken, TokenSigner

    port = free_port()
    args = ["--replica-id", "r1", "--port", str(port), "--data-dir", str(tmp_path / "d")]
    proc = start([*args, "--cluster-secret", "s"], tmp_path)
    procs.append(proc)
    first_line(proc)
    token = TokenSigner("s").encode(SessionToken({"other~x": 1}))
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(
            b"GET /v1/counters/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"{WAIT_HEADER}: 700\r\n{SESSION_HEADER}: {token}\r\n\r\n".encode()
        )
        time.sleep(0.2)  # the request is now waiting inside the server
        proc.send_signal(signal.SIGTERM)
        conn.settimeout(STARTUP_S)
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 503")
    assert b"session_unavailable" in response
    assert finish(proc)[0] == 0


async def test_storage_failure_stops_serve_with_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import asyncio

    import aiohttp

    from crdtkv.errors import StorageError
    from crdtkv.node import Node
    from crdtkv.replica.persist import load_replica
    from crdtkv.storage import MemoryStorage, WriteBatch

    class FailingStorage(MemoryStorage):
        failing = False

        def write(self, batch: WriteBatch, *, sync: bool) -> None:
            if self.failing:
                raise StorageError("disk on fire")
            super().write(batch, sync=sync)

    storage = FailingStorage()
    node = Node(load_replica(storage, "r1", "i1"), storage, durability="wal")
    config = ServeConfig("r1", port=free_port())
    served = asyncio.ensure_future(cli.serve_node(config, node))
    base = f"http://127.0.0.1:{config.port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            if "serving on" in capsys.readouterr().out:
                break
            await asyncio.sleep(0.05)
        async with session.post(f"{base}/v1/counters/c", json={"delta": 1}) as resp:
            assert resp.status == 200
        storage.failing = True
        async with session.post(f"{base}/v1/counters/c", json={"delta": 1}) as resp:
            assert resp.status == 500 and (await resp.json())["error"]["code"] == "internal"
    assert await asyncio.wait_for(served, STARTUP_S) == 1
    assert node.stopped.is_set()

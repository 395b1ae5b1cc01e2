"""``crdtkv.tools.procs`` and ``crdtkv.cliutil``: the pieces the tools and benchmarks share.

The children here are tiny Python scripts standing in for ``crdtkv serve``
(it prints its serving line, exits early, never answers, or ignores SIGTERM),
so each helper's failure paths run in a fraction of a second.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from crdtkv.cliutil import ArgParser, UsageError
from crdtkv.tools.procs import (
    NotServing,
    await_serving,
    child_env,
    free_ports,
    serve_command,
    stop_processes,
)

WAIT_S = 30.0  # generous: a loaded machine starts Python slowly


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    with pytest.raises(ValueError, match="between 1 and"):
        free_ports(0)


@pytest.mark.parametrize(
    "code",
    [
        # Two lines in one write: a buffered readline would keep the second one from select.
        "import sys, time\n"
        "sys.stdout.write('starting\\ncrdtkv replica r1 serving on http://127.0.0.1:1\\n')\n"
        "sys.stdout.flush()\n"
        "time.sleep(60)\n",
        # The serving line in two writes, half a second apart.
        "import sys, time\n"
        "sys.stdout.write('crdtkv replica r1 serv'); sys.stdout.flush(); time.sleep(0.5)\n"
        "sys.stdout.write('ing on http://127.0.0.1:1\\n'); sys.stdout.flush(); time.sleep(60)\n",
    ],
    ids=["one-write", "split-line"],
)
def test_await_serving_returns_on_the_serving_line(code: str) -> None:
    proc = _child(code)
    try:
        await_serving(proc, WAIT_S)
        assert proc.poll() is None
    finally:
        assert stop_processes([proc], WAIT_S) == [-signal.SIGTERM]


def test_await_serving_reports_an_early_exit_and_a_timeout() -> None:
    proc = _child("import sys; print('no such thing', flush=True); sys.exit(3)")
    with pytest.raises(NotServing, match="exited with status 3") as exited:
        await_serving(proc, WAIT_S)
    assert exited.value.status == 3
    assert stop_processes([proc], WAIT_S) == [3]
    proc = _child("import time; time.sleep(60)")
    try:
        started = time.monotonic()
        with pytest.raises(NotServing, match="did not start within") as silent:
            await_serving(proc, 0.5)
        assert silent.value.status is None
        assert time.monotonic() - started < WAIT_S
    finally:
        stop_processes([proc], WAIT_S)


def test_stop_processes_terminates_then_kills() -> None:
    clean = _child(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    stubborn = _child(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    for proc in (clean, stubborn):  # their handlers are installed before they print
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    assert stop_processes([clean, stubborn], 1.0) == [0, -signal.SIGKILL]
    assert time.monotonic() - started < WAIT_S
    assert clean.stdout is not None and clean.stdout.closed


def test_serve_command_and_child_env() -> None:
    cmd = serve_command("r1", 7001, "/d", "wal", peers={"r2": "http://h:2"}, log_level="WARNING")
    assert cmd == [
        sys.executable, "-m", "crdtkv.cli", "serve", "--replica-id", "r1", "--port", "7001",
        "--data-dir", "/d", "--durability", "wal", "--resp-port", "0",
        "--log-level", "WARNING", "--peer", "r2=http://h:2",
    ]  # fmt: skip
    with_resp = serve_command("r1", 7001, "/d", "wal", resp_port=6390)
    assert with_resp[with_resp.index("--resp-port") + 1] == "6390"
    other = serve_command("r1", 1, "/d", "fsync", launcher=("launch.py",))
    assert other[:3] == [sys.executable, "launch.py", "serve"]
    env = child_env({"PATH": "/bin", "CRDTKV_PORT": "1", "CRDTKV_AUTH_TOKEN": "t"})
    assert env == {"PATH": "/bin"}


def test_arg_parser_raises_one_line_usage_errors() -> None:
    p = ArgParser(prog="x")
    p.add_argument("--n", type=int)
    with pytest.raises(UsageError) as bad:
        p.parse_args(["--n", "many"])
    assert str(bad.value) == "argument --n: invalid int value: 'many'"
    assert bad.value.option == ""
    named = UsageError("--n", "must be positive")
    assert str(named) == "--n: must be positive" and named.option == "--n"

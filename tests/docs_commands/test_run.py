"""Every console block whose commands the plan runs, run in its short form:
ports moved to free local ones, absolute paths under a temporary directory,
servers started, probed on ``/healthz`` and stopped, and each command's exit
status checked."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.docs_commands.commands import (
    COMMANDS,
    CRDTKVS,
    DOC_VARS,
    PLAN,
    PYTHONS,
    RUN_BLOCKS,
    RUN_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Command,
    Rule,
    block_id,
    make_dry_run,
    program,
)
from tests.procs import (
    ROOT,
    clean_env,
    consecutive_free_ports,
    free_ports,
    kill9,
    python_cmd,
    run,
    spawn,
    stop,
    wait_healthy,
    wait_line,
)


class Localizer:
    """Ports and absolute paths of one block, moved to free ports and a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports: dict[tuple[str, str], int] = {}

    def port(self, host: str, port: str) -> int:
        local = host in ("127.0.0.1", "localhost")
        key = ("127.0.0.1" if local else host, port)
        if key not in self.ports:
            self.ports[key] = free_ports(1)[0]
        return self.ports[key]

    def arg(self, prev: str, tok: str) -> str:
        if prev in ("--port", "--base-port") and tok.isdigit():
            return str(self.port("127.0.0.1", tok))
        tok = re.sub(
            r"http://([\w.-]+):(\d+)",
            lambda m: f"http://127.0.0.1:{self.port(m[1], m[2])}",
            tok,
        )
        if tok.startswith("/") and not tok.startswith(str(self.tmp)):
            moved = self.tmp / tok.lstrip("/")
            moved.parent.mkdir(parents=True, exist_ok=True)
            return str(moved)
        if re.fullmatch(r"benchmarks/\w+\.py", tok):
            return str(ROOT / tok)
        return tok

    def __call__(self, argv: Sequence[str]) -> list[str]:
        out: list[str] = []
        prev = ""
        for tok in argv:
            out.append(self.arg(prev, tok))
            prev = tok
        return out


def shorten(argv: Sequence[str], rule: Rule) -> list[str]:
    out = list(argv)
    for i, tok in enumerate(out):
        name, eq, _ = tok.partition("=")
        if name in rule.short:
            if eq:
                out[i] = f"{name}={rule.short[name]}"
            elif i + 1 < len(out):
                out[i + 1] = rule.short[name]
    tail: list[str] = []
    if "--" in out:  # options we add belong to the command itself, not to what follows "--"
        cut = out.index("--")
        out, tail = out[:cut], out[cut:]
    for name, value in rule.add.items():
        if not any(t == name or t.startswith(name + "=") for t in out):
            out += [name] if value is None else [name, value]
    return out + tail


def executable(argv: Sequence[str]) -> list[str]:
    """The command as this interpreter runs it."""
    if argv[0] in PYTHONS:
        return [sys.executable, *argv[1:]]
    if argv[0] in CRDTKVS:
        return [sys.executable, "-m", "crdtkv.cli", *argv[1:]]
    return list(argv)


def _capable(need: str) -> str:
    """Why this machine cannot run what needs ``need`` ("" when it can)."""
    if need == "wrk":
        found = shutil.which("wrk")
        return (
            "" if found else "wrk is not installed (Debian package wrk; not a project dependency)"
        )
    if need != "py-spy":
        return ""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        return "py-spy is not installed (the bench extra)"
    # Attach to a process that is not ours, as profile_server.py does with its server.
    target = spawn(python_cmd("import time; print('ready', flush=True); time.sleep(30)"))
    try:
        wait_line(target, "ready", what="the py-spy target")
        done = run([py_spy, "dump", "--pid", str(target.pid)], timeout_s=30)
    finally:
        kill9(target)
    if done.returncode != 0:
        return f"py-spy cannot attach to a process here: {(done.stderr or done.stdout)[-300:]}"
    return ""


class Started:
    """A server command of the docs (``crdtkv serve``, ``make run``), until stopped."""

    def __init__(self, argv: list[str], urls: list[str], stop_signal: int, tmp: Path) -> None:
        self.argv, self.urls, self.stop_signal = argv, urls, stop_signal
        self.log = tmp / f"server-{len(list(tmp.glob('server-*.log')))}.log"
        self.proc = spawn(
            argv, cwd=tmp, env=_env(), stdout=self.log, stderr="stdout", new_session=True
        )

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        wait_healthy(self.proc, self.urls, timeout_s, what=" ".join(self.argv), log=self.log)

    def stop(self) -> int:
        return stop(self.proc, self.stop_signal, STOP_TIMEOUT_S, group=True)

    def kill(self) -> None:
        kill9(self.proc, group=True)  # its own session: make, crdtkv cluster and the replicas


def _env() -> dict[str, str]:
    env = clean_env(**DOC_VARS)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _server(c: Command, argv: list[str], tmp: Path) -> Started:
    """Start what a ``serve`` command starts (``make run`` through its recipe)."""
    if c.program == "make run":
        recipe = make_dry_run(c.argv[1:])
        assert len(recipe) == 1 and program(recipe[0]) == "crdtkv cluster", recipe
        base = consecutive_free_ports(3)
        cmd = [*recipe[0], "--base-port", str(base), "--data-dir", str(tmp / "data")]
        n = int(cmd[cmd.index("--replicas") + 1]) if "--replicas" in cmd else 3
        assert n <= 3, cmd
        urls = [f"http://127.0.0.1:{base + i}" for i in range(n)]
        return Started(cmd, urls, signal.SIGINT, tmp)  # Ctrl-C, as the README says
    assert c.program == "crdtkv serve", c
    port = argv[argv.index("--port") + 1] if "--port" in argv else "7001"
    return Started(executable(argv), [f"http://127.0.0.1:{port}"], signal.SIGTERM, tmp)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block_id(b) for b in RUN_BLOCKS])
def test_console_block_runs(block: int, tmp_path: Path) -> None:
    local = Localizer(tmp_path)
    background: list[Started] = []
    try:
        for c in (c for c in COMMANDS if c.block == block):
            how = PLAN[c]
            if how == "parse":
                continue  # test_documented_options_parse
            need = c.rule.needs(c.argv) if callable(c.rule.needs) else c.rule.needs
            if need and (why := _capable(need)):
                pytest.skip(f"{c.id}: `{c.shown}` not run: {why} (its options are parsed)")
            argv = local(shorten(c.argv, c.rule))
            if how == "serve" or c.background:
                server = _server(c, argv, tmp_path)
                try:
                    server.wait_healthy()
                except BaseException:
                    server.kill()
                    raise
                if c.background:
                    background.append(server)
                    continue
                status = server.stop()
                assert status == 0, f"{c.id}: `{' '.join(server.argv)}` exited with {status}"
                continue
            started = time.monotonic()
            done = subprocess.run(
                executable(argv),
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
            want = c.rule.status(argv)
            assert done.returncode == want, (
                f"{c.id}: `{c.shown}`, run as `{shlex.join(argv)}`, exited with "
                f"{done.returncode} (want {want}) after {time.monotonic() - started:.1f} s\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        for server in background:
            status = server.stop()
            assert status == 0, f"`{' '.join(server.argv)}` exited with {status}"
    finally:
        for server in background:
            server.kill()

"""Every command in a ``console`` block of README.md and docs/*.md is exercised, in a short form.

The docs show the real command (``--seeds 2000``, ``-n 20000``, ``make run``);
this test runs each one with its long options cut down by a per-program rule
in ``RULES`` (``--seeds 2``, ``-n 20``, ``--duration 1``, ``--quick``...), so
a renamed option, a changed default that breaks a command or a deleted script
fails CI.  The convention, for doc authors (also in tests/test_docs.py and
docs/index.md):

- a ```` ```console ```` block holds commands that are too long, too slow or
  too remote to run verbatim.  Each line is one command (``\\`` continues a
  line, ``#`` starts a comment, a trailing ``&`` runs it in the background
  for the rest of the block); when some lines start with ``$ ``, only those
  are commands and the other lines are their output.  ``$SECRET`` is the
  only variable a command may use;
- every such command's program must have a rule in ``RULES`` (a new program
  fails ``test_every_console_command_has_a_rule``); the rule says how the
  short form is made and whether it is run to completion (``run``), started,
  probed on ``/healthz`` and stopped (``serve``: ``crdtkv serve``,
  ``make run``), or only parsed (``parse``, with the reason: it needs tools
  the project does not install, or is the whole test suite);
- every command, verbatim, is also parsed by the real argparse parser of its
  program (``test_documented_options_parse``: an unknown option, a bad choice
  or a deleted script fails), and so are the inline ``python -m simulations
  run|cluster ...`` commands of the prose (reproduce commands, campaigns);
- a command with the same program and the same option names as an earlier
  one is only parsed, not run again (the run would test nothing new);
- ports (``127.0.0.1:7301``, ``--port 7001``, peers at other hosts) become
  free local ports, absolute paths (``/tmp/x.json``, ``/var/lib/...``) move
  under a temporary directory, which is also the working directory, so
  relative outputs (``r1.json``, ``out/``) land there too;
- ``text`` blocks are output or listings, never run; ``sh`` and ``python``
  blocks run verbatim against a local cluster (tests/test_docs.py).  An
  untagged block fails ``test_every_fence_is_tagged``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
TAGS = ("console", "sh", "python", "text", "json", "yaml", "toml")
DOC_VARS = {"SECRET": "docs-test-secret-0123456789abcdef"}  # what $SECRET stands for
PYTHONS = ("python", "python3", ".venv/bin/python")
CRDTKVS = ("crdtkv", ".venv/bin/crdtkv")
RUN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# Inline commands of the prose that are parsed too (no placeholders such as [--seed S]).
INLINE = re.compile(r"`(python -m simulations (?:run|cluster) --[^`\[\]]*?)`")


# -- the rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How a documented command of one program is shortened and exercised."""

    how: str = "run"  # "run" to completion, "serve" (start, probe, stop) or "parse" only
    short: Mapping[str, str] = field(default_factory=dict)  # option -> value, where present
    add: Mapping[str, str | None] = field(default_factory=dict)  # appended when absent
    status: Callable[[Sequence[str]], int] = lambda argv: 0  # expected exit status
    passes_to: tuple[str, ...] = ()  # the arguments after "--" go to this crdtkv command
    # A capability the run needs (see _capable), or a function of the command's
    # argv naming it ("" for none); skipped without it.
    needs: str | Callable[[Sequence[str]], str] = ""
    each_shape: bool = True  # False: only the first command of the program runs (CI time)
    why: str = ""  # for "parse": why it is not run


RULES: dict[str, Rule] = {
    "make run": Rule(how="serve"),
    "make test": Rule(how="parse", why="it is the whole test suite; `make -n test` is checked"),
    "crdtkv serve": Rule(how="serve"),
    "crdtkv bench": Rule(short={"-n": "20"}, add={"--keyspace": "100"}),
    "python -m simulations": Rule(),
    "python -m simulations run": Rule(
        short={"--seeds": "2"},
        add={"--duration": "1"},
        status=lambda argv: 1 if "--canary" in argv else 0,  # a canary must be caught
    ),
    "python -m simulations cluster": Rule(short={"--duration": "1"}),
    "benchmarks/crdt_bench.py": Rule(add={"--quick": None}),
    "benchmarks/compare.py": Rule(
        how="parse",
        why="needs redis-server, redis-benchmark, webdis and wrk, which the project does not "
        "install, and a run takes minutes (wrk's shortest test is 1 s, for 5 systems x 5 tests)",
    ),
    "benchmarks/http_figures.py": Rule(
        how="parse",
        why="each of its runs prefills 100,000 keys (about 20 s even with --single-n 20); what it "
        "runs is `crdtkv bench --spawn`, whose documented commands are run",
    ),
    "benchmarks/aiohttp_floor.py": Rule(
        short={"-n": "20", "--duration": "1"},
        passes_to=("bench",),
        needs=lambda argv: "wrk" if "--wrk" in argv else "",  # its wrk mode drives wrk
    ),
    "benchmarks/ab_wrk.py": Rule(
        how="parse",
        why="needs wrk, which the project does not install, and a second source tree "
        "(`git archive` of another commit) that the docs name by a path of the reader's",
    ),
    "benchmarks/startup.py": Rule(short={"--keys": "1000", "--restarts": "1"}),
    "benchmarks/profile_server.py": Rule(short={"-n": "20"}, passes_to=("bench",), needs="py-spy"),
    "benchmarks/replication_lag.py": Rule(  # a run starts 3 servers and lets them settle: ~10 s
        short={"--duration": "1", "--rate": "500"}, add={"--warmup": "0"}, each_shape=False
    ),
}


# -- reading the docs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: str  # README.md, performance.md...
    line: int  # where the command starts in the doc (1-based)
    block: int  # which console block (global, in document order)
    shown: str  # as the doc shows it (continuations joined)
    argv: tuple[str, ...]  # shlex-split, $SECRET expanded, without a trailing "&"
    background: bool  # ended with "&"
    inline: bool = False  # from the prose, not a console block

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def program(self) -> str:
        return program(self.argv)

    @property
    def rule(self) -> Rule:
        return RULES[self.program]

    @property
    def shape(self) -> tuple[str, frozenset[str]]:
        """The program and its option names: two commands of one shape test the same thing."""
        return self.program, frozenset(a.split("=", 1)[0] for a in self.argv if a[:1] == "-")


def program(argv: Sequence[str]) -> str:
    a0 = argv[0]
    if a0 in PYTHONS and len(argv) > 2 and argv[1] == "-m":
        rest = argv[2:]
        sub = rest[1:2] if len(rest) > 1 and not rest[1].startswith("-") else []
        return " ".join(["python", "-m", rest[0], *sub])
    if a0 in PYTHONS and len(argv) > 1:
        return argv[1]
    if (a0 in CRDTKVS or a0.endswith("/bin/crdtkv")) and len(argv) > 1:
        return f"crdtkv {argv[1]}"
    if a0 == "make" and len(argv) > 1:
        return f"make {argv[1]}"
    return a0


def _expand(text: str) -> str:
    def var(m: re.Match[str]) -> str:
        name = m[1] or m[2]
        assert name in DOC_VARS, f"${name}: a console command may only use {sorted(DOC_VARS)}"
        return DOC_VARS[name]

    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", var, text)


def _commands_of(doc: str, start_line: int, block: int, body: str) -> list[Command]:
    lines = body.split("\n")
    prompts = any(ln.startswith("$ ") for ln in lines)
    out: list[Command] = []
    i = 0
    while i < len(lines):
        first = i
        text = lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        if prompts:
            if not text.startswith("$ "):
                continue
            text = text[2:]
        argv = shlex.split(_expand(text), comments=True)
        if not argv:
            continue
        background = argv[-1] == "&"
        argv = argv[:-1] if background else argv
        shown = " ".join(re.sub(r"\s#.*$", "", text).split())  # without its comment
        out.append(Command(doc, start_line + first, block, shown, tuple(argv), background))
    return out


def console_commands() -> list[Command]:
    out: list[Command] = []
    block = 0
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            if m[1].strip().split(" ")[0] != "console":
                continue
            line = text.count("\n", 0, m.start()) + 2  # the fence's first body line
            out.extend(_commands_of(path.name, line, block, m[2]))
            block += 1
    return out


def inline_commands() -> list[Command]:
    out: list[Command] = []
    for path in DOCS:
        text = path.read_text()
        for m in INLINE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            argv = tuple(shlex.split(m[1]))
            out.append(Command(path.name, line, -1, m[1], argv, False, inline=True))
    return out


COMMANDS = console_commands()
PARSED = [c for c in COMMANDS + inline_commands() if c.program in RULES]


def _plan() -> dict[Command, str]:
    """What happens to each console command: "run", "serve" or "parse"."""
    plan: dict[Command, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    for c in COMMANDS:
        if c.program not in RULES:
            continue
        how = c.rule.how
        shape = c.shape if c.rule.each_shape else (c.program, frozenset())
        if how != "parse" and shape in seen and not c.background:
            how = "parse"  # the same program with the same options already runs
        seen.add(shape)
        plan[c] = how
    return plan


PLAN = _plan()
RUN_BLOCKS = sorted({c.block for c, how in PLAN.items() if how != "parse"})


def _block_id(block: int) -> str:
    first = next(c for c in COMMANDS if c.block == block)
    return first.id


# -- static checks -------------------------------------------------------------------------------


def test_every_fence_is_tagged() -> None:
    bad = []
    for path in DOCS:
        text = path.read_text()
        for m in FENCE.finditer(text):
            tag = m[1].strip().split(" ")[0]
            if tag not in TAGS:
                bad.append(f"{path.name}:{text.count(chr(10), 0, m.start()) + 1} ```{tag}")
    assert not bad, (
        "fences must say what they hold: console (commands, run in a short form), sh or "
        f"python (run verbatim), text (output, listings): {bad}"
    )


def test_every_console_command_has_a_rule() -> None:
    assert len(COMMANDS) >= 20, "the docs' console blocks were not found"
    missing = [f"{c.id}: {c.shown}  (program {c.program!r})" for c in COMMANDS if c not in PLAN]
    assert not missing, "add a rule for these programs to RULES:\n" + "\n".join(missing)
    for program_, rule in RULES.items():
        assert any(c.program == program_ for c in COMMANDS), f"unused rule {program_!r}"
        assert rule.how in ("run", "serve", "parse"), program_
        assert rule.how != "parse" or rule.why, f"say why {program_!r} is only parsed"


def test_documented_scripts_exist() -> None:
    named = set()
    for path in DOCS:
        named |= set(re.findall(r"\bbenchmarks/\w+\.py\b", path.read_text()))
    missing = sorted(n for n in named if not (ROOT / n).is_file())
    assert not missing, f"the docs name scripts that do not exist: {missing}"


# -- parsing every command verbatim ----------------------------------------------------------

# Runs in a child process: argparse's parse_args raises Parsed once the options parsed, so
# nothing runs; each item is a script (run_path), a module (run_module) or a crdtkv command.
_SHIM = r"""
import argparse, contextlib, io, json, os, runpy, sys

class Parsed(BaseException):
    def __init__(self, ns):
        self.ns = ns

def no_exec(*args, **kwargs):
    raise RuntimeError("the command tried to exec another program")

os.execv = os.execve = os.execvp = os.execvpe = no_exec
_parse_args = argparse.ArgumentParser.parse_args

def parse_args(self, args=None, namespace=None):
    raise Parsed(_parse_args(self, args, namespace))

def fault_kinds(ns):
    # python -m simulations checks --faults and --exclude-faults after parsing them
    from simulations.config import FAULT_KINDS
    for text in (getattr(ns, "faults", None), getattr(ns, "exclude_faults", None)):
        if text not in (None, "", "all", "none", "swarm"):
            bad = [k for k in text.split(",") if k.strip() not in FAULT_KINDS]
            if bad:
                return f"unknown fault kinds {bad}"
    return "parsed"

argparse.ArgumentParser.parse_args = parse_args
items_path, results_path = sys.argv[1:3]
results = []
for kind, target, argv in json.load(open(items_path)):
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [target, *argv]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if kind == "script":
                # As `python benchmarks/x.py` does: the script's directory first on sys.path.
                sys.path.insert(0, os.path.dirname(target))
                try:
                    runpy.run_path(target, run_name="__main__")
                finally:
                    sys.path.remove(os.path.dirname(target))
            elif kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                import crdtkv.cli
                if argv[-1:] == ["--check-config"]:
                    argparse.ArgumentParser.parse_args = _parse_args
                try:
                    code = crdtkv.cli.main(argv)
                finally:
                    argparse.ArgumentParser.parse_args = parse_args
                raise SystemExit(code)
        outcome = "ran without parsing its options"
    except Parsed as p:
        outcome = fault_kinds(p.ns) if target == "simulations" else "parsed"
    except SystemExit as e:
        outcome = "parsed" if e.code == 0 and argv[-1:] == ["--check-config"] else f"exit {e.code}"
    except Exception as e:
        outcome = f"raised {e!r}"
    results.append({"outcome": outcome, "stderr": err.getvalue()[-2000:]})
json.dump(results, open(results_path, "w"))
"""


def _parse_items(c: Command) -> list[tuple[str, str, list[str]]]:
    """What the shim parses for one command: itself, and what it passes on after "--"."""
    argv = list(c.argv)
    tail: list[str] = []
    if c.rule.passes_to and "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    items: list[tuple[str, str, list[str]]] = []
    if argv[0] in CRDTKVS:
        extra = ["--check-config"] if argv[1] == "serve" else []
        items.append(("crdtkv", "crdtkv", [*argv[1:], *extra]))
    elif argv[1] == "-m":
        items.append(("module", argv[2], argv[3:]))
    elif c.rule.passes_to:  # a script that hands everything to crdtkv bench (aiohttp_floor.py)
        items.append(("exists", str(ROOT / argv[1]), []))
    else:
        items.append(("script", str(ROOT / argv[1]), argv[2:]))
    if c.rule.passes_to:
        items.append(("crdtkv", "crdtkv", [*c.rule.passes_to, *tail]))
    return items


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> dict[Command, list[dict[str, str]]]:
    """Every non-make command parsed verbatim, in one child process (imports are shared)."""
    tmp = tmp_path_factory.mktemp("parse")
    commands = [c for c in PARSED if not c.program.startswith("make ")]
    items: list[tuple[str, str, list[str]]] = []
    owner: list[Command] = []
    out: dict[Command, list[dict[str, str]]] = {c: [] for c in commands}
    for c in commands:
        for item in _parse_items(c):
            if item[0] == "exists":
                found = Path(item[1]).is_file()
                out[c].append({"outcome": "parsed" if found else "no such script", "stderr": ""})
                continue
            items.append(item)
            owner.append(c)
    (tmp / "items.json").write_text(json.dumps(items))
    done = subprocess.run(
        [sys.executable, "-c", _SHIM, str(tmp / "items.json"), str(tmp / "results.json")],
        cwd=tmp,
        env=clean_env(PYTHONHASHSEED="0", **DOC_VARS),  # python -m simulations re-execs without
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    for c, result in zip(owner, json.loads((tmp / "results.json").read_text()), strict=True):
        out[c].append(result)
    return out


@pytest.mark.parametrize("command", PARSED, ids=[c.id for c in PARSED])
def test_documented_options_parse(
    command: Command, parsed: dict[Command, list[dict[str, str]]]
) -> None:
    if command.program.startswith("make "):
        lines = _make_dry_run(command.argv[1:])
        assert lines, f"`{command.shown}`: make prints no commands"
        for argv in lines:
            tool = Path(argv[0])
            assert tool.is_file() and os.access(tool, os.X_OK), f"{command.id}: {argv[0]}"
        return
    for result in parsed[command]:
        assert result["outcome"] == "parsed", (
            f"{command.id}: `{command.shown}`: {result['outcome']}\n{result['stderr']}"
        )


def _make_dry_run(targets: Sequence[str]) -> list[list[str]]:
    """``make -n TARGET``'s commands, with BIN pointing at this interpreter's directory.

    ``-o .venv/.installed`` keeps make from (re)installing the virtualenv.
    """
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        ["make", "-s", "-n", "-o", ".venv/.installed", f"BIN={bin_dir}", *targets],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return [shlex.split(ln) for ln in done.stdout.splitlines() if ln.strip()]


# -- running the short forms -----------------------------------------------------------------


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
        recipe = _make_dry_run(c.argv[1:])
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


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[_block_id(b) for b in RUN_BLOCKS])
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


def test_short_forms_are_short() -> None:
    """Every shortened option is one a command uses (a rule naming a dropped option is stale)."""
    used: dict[str, set[str]] = {}
    for c in COMMANDS:
        if c.program in RULES:
            used.setdefault(c.program, set()).update(c.shape[1])
    for name, rule in RULES.items():
        stale = set(rule.short) - used.get(name, set())
        assert not stale, f"RULES[{name!r}] shortens {sorted(stale)}, which no command uses"

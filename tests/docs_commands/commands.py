"""The documented commands and what happens to each: the docs' ``console``
blocks (and the inline simulation commands of the prose) read into
``Command`` records, the per-program ``RULES`` that shorten them, and the
``PLAN`` (run, serve or only parse) the tests follow."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.procs import ROOT, clean_env

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.S | re.M)
TAGS = ("console", "sh", "python", "text", "json", "yaml", "toml")
DOC_VARS = {"SECRET": "docs-test-secret-0123456789abcdef"}  # what $SECRET stands for
PYTHONS = ("python", "python3", ".venv/bin/python")
CRDTKVS = ("crdtkv", ".venv/bin/crdtkv")
RUN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
# Inline commands of the prose that are parsed too (no placeholders such as [--seed S]).
INLINE = re.compile(r"`(python -m simulations (?:run|cluster|nemesis) --[^`\[\]]*?)`")


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
    "crdtkv cluster": Rule(
        how="parse",
        why="it runs until Ctrl-C with S x R processes; tests/cluster/test_map_ops.py runs "
        "`crdtkv cluster --shards 2 --regions 2` and checks what it prints",
    ),
    "crdtkv cluster-map": Rule(
        how="parse",
        why="it needs a running sharded cluster; tests/cluster/test_map_ops.py runs show and set",
    ),
    "python -m simulations": Rule(),
    "python -m simulations run": Rule(
        short={"--seeds": "2"},
        add={"--duration": "1"},
        status=lambda argv: 1 if "--canary" in argv else 0,  # a canary must be caught
    ),
    "python -m simulations cluster": Rule(short={"--duration": "1"}),
    "python -m simulations nemesis": Rule(
        short={"--runs": "1", "--duration": "1"},
        status=lambda argv: 1 if "--canary" in argv else 0,  # a canary must be caught
    ),
    "benchmarks/crdt_bench.py": Rule(add={"--quick": None}),
    # --quick: 1,000 and 20,000 entries, a few seconds; without redis-server it skips Redis.
    # The results go to the test's directory (an absolute path is moved there).
    "benchmarks/types_bench.py": Rule(add={"--quick": None, "--out-dir": "/types_bench"}),
    # --quick: 1,000 and 10,000 elements, a few seconds; without redis-server it skips Redis.
    "benchmarks/list_bench.py": Rule(add={"--quick": None, "--out-dir": "/list_bench"}),
    # --quick: 3,000 vectors, 100 queries, one crdtkv serve: ~20 s (--restart: ~15 s).
    "benchmarks/vset_bench.py": Rule(
        short={"--n": "3000"}, add={"--quick": None, "--out-dir": "/vset_bench"}
    ),
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
    "benchmarks/shard_bench.py": Rule(
        how="parse",
        why="needs redis-benchmark (not installed by the project) and starts up to 4 shards; "
        "tests/test_bench.py runs its --quick mode when redis-benchmark is there",
    ),
    "benchmarks/keyspace_bench.py": Rule(
        how="parse",
        why="its runs build data directories of 1M and 10M keys (minutes) and need "
        "redis-server for --memory; tests/storage/test_state_store.py and "
        "tests/node/test_keyspace_snapshot_real.py test what it measures",
    ),
    "benchmarks/profile_server.py": Rule(
        short={"-n": "20", "--duration": "1"},
        passes_to=("bench",),
        # --wrk drives wrk too: skipped without it, else it needs py-spy as ever
        needs=lambda argv: "wrk" if "--wrk" in argv and not shutil.which("wrk") else "py-spy",
    ),
    # 5 requests: a second; each shape (batch, incr, --no-peer, --calls) runs once.
    "benchmarks/write_path.py": Rule(short={"--requests": "5"}),
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


def block_id(block: int) -> str:
    """The test id of a console block: where its first command is."""
    first = next(c for c in COMMANDS if c.block == block)
    return first.id


def make_dry_run(targets: Sequence[str]) -> list[list[str]]:
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

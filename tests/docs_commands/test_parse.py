"""Every documented command, verbatim, parsed by the real argparse parser of its
program in one child process (nothing runs: parsing stops it), and every
``make`` command checked with ``make -n``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_commands.commands import (
    CRDTKVS,
    DOC_VARS,
    PARSED,
    RUN_TIMEOUT_S,
    Command,
    make_dry_run,
)
from tests.procs import ROOT, clean_env

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
        lines = make_dry_run(command.argv[1:])
        assert lines, f"`{command.shown}`: make prints no commands"
        for argv in lines:
            tool = Path(argv[0])
            assert tool.is_file() and os.access(tool, os.X_OK), f"{command.id}: {argv[0]}"
        return
    for result in parsed[command]:
        assert result["outcome"] == "parsed", (
            f"{command.id}: `{command.shown}`: {result['outcome']}\n{result['stderr']}"
        )

"""The core is pure: no I/O, clock, randomness or event loop in its imports.

The simulator runs exactly the production core, so anything in these modules
that read the clock or did I/O would make its runs unreproducible.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = [
    *sorted((ROOT / "crdtkv" / "crdts").glob("*.py")),
    *sorted((ROOT / "crdtkv" / "replica").glob("*.py")),
    *sorted((ROOT / "crdtkv" / "ops").glob("*.py")),
    *sorted((ROOT / "crdtkv" / "cluster").glob("*.py")),  # the map; spreading it is the shell's
    ROOT / "crdtkv" / "sessions.py",
    # RESP's pieces the op table uses (its RESP column).
    ROOT / "crdtkv" / "resp" / "values.py",
    ROOT / "crdtkv" / "resp" / "args.py",
    ROOT / "crdtkv" / "resp" / "fast.py",
    ROOT / "crdtkv" / "resp" / "hash_zset_args.py",
    ROOT / "crdtkv" / "resp" / "vset_args.py",
    ROOT / "crdtkv" / "errors.py",
    ROOT / "crdtkv" / "limits.py",
    # Vector sets' index, FILTER and search (the background builder is the shell's).
    *sorted(p for p in (ROOT / "crdtkv" / "vectors").glob("*.py") if p.name != "builder.py"),
    # Every replication module but the aiohttp shell.
    *sorted(p for p in (ROOT / "replication").glob("*.py") if p.name != "http.py"),
]
FORBIDDEN = {
    "asyncio",
    "aiohttp",
    "rocksdict",
    "time",
    "random",
    "socket",
    "threading",
    "subprocess",
    "os",
    "datetime",
    "uvloop",
    "crdtkv.storage.rocks",
    "crdtkv.node",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def forbidden_in(path: Path) -> set[str]:
    return {m for m in imported_modules(path) if m in FORBIDDEN or m.split(".")[0] in FORBIDDEN}


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_imports_nothing_impure(path: Path) -> None:
    assert forbidden_in(path) == set()


def test_the_scan_catches_an_impure_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nfrom crdtkv.crdts import causal\n")
    assert forbidden_in(bad) == {"time", "asyncio"}

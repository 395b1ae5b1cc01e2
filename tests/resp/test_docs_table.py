"""docs/resp.md's command table is the command table (scripts/gen_resp_docs.py)."""

from __future__ import annotations

import importlib.util

from crdtkv.resp.commands import COMMANDS, ensure_loaded
from tests.procs import ROOT


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "gen_resp_docs", ROOT / "scripts" / "gen_resp_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_is_current() -> None:
    gen = _generator()
    assert gen.main(["--check"]) == 0, "run: .venv/bin/python scripts/gen_resp_docs.py"


def test_every_command_is_in_the_table_with_its_arity() -> None:
    ensure_loaded()
    text = (ROOT / "docs" / "resp.md").read_text()
    for cmd in COMMANDS.values():
        arity = str(cmd.arity) if cmd.arity >= 0 else f">= {-cmd.arity}"
        assert f"| `{cmd.name}` | {arity} |" in text, cmd.name


def test_a_stale_table_is_caught(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gen = _generator()
    doc = tmp_path / "resp.md"
    doc.write_text(
        (ROOT / "docs" / "resp.md").read_text().replace("| `GET` | 2 |", "| `GET` | 9 |")
    )
    monkeypatch.setattr(gen, "DOC", doc)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0

"""Static checks of the docs' fences and commands: every fence says what it
holds, every console command's program has a rule and every rule is used,
the scripts the docs name exist, and every shortened option is one a command
uses."""

from __future__ import annotations

import re

from tests.docs_commands.commands import COMMANDS, DOCS, FENCE, PLAN, RULES, TAGS
from tests.procs import ROOT


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


def test_short_forms_are_short() -> None:
    """Every shortened option is one a command uses (a rule naming a dropped option is stale)."""
    used: dict[str, set[str]] = {}
    for c in COMMANDS:
        if c.program in RULES:
            used.setdefault(c.program, set()).update(c.shape[1])
    for name, rule in RULES.items():
        stale = set(rule.short) - used.get(name, set())
        assert not stale, f"RULES[{name!r}] shortens {sorted(stale)}, which no command uses"

"""Write the command table of docs/resp.md from the RESP command table.

    python scripts/gen_resp_docs.py           # rewrite the table in docs/resp.md
    python scripts/gen_resp_docs.py --check   # exit 1 when the table is not what it would write

The table sits between the markers ``<!-- commands:begin -->`` and
``<!-- commands:end -->``; everything else in docs/resp.md is prose.  Run it
with the project's environment (``.venv/bin/python``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crdtkv.resp.commands import COMMANDS, ensure_loaded

__all__ = ["DOC", "main", "table"]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "resp.md"
BEGIN, END = "<!-- commands:begin -->", "<!-- commands:end -->"
GROUPS = [
    ("string", "Strings"),
    ("generic", "Keys"),
    ("hash", "Hashes"),
    ("zset", "Sorted sets"),
    ("set", "Sets"),
    ("list", "Lists"),
    ("hyperloglog", "HyperLogLogs"),
    ("vector_set", "Vector sets"),
    ("transactions", "Transactions"),
    ("cluster", "Cluster"),
    ("connection", "Connection"),
    ("server", "Server"),
]


def _arity(a: int) -> str:
    return str(a) if a >= 0 else f">= {-a}"


def table() -> str:
    ensure_loaded()
    by_group: dict[str, list[str]] = {}
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.name):
        flags = ", ".join(cmd.command_flags())
        summary = (cmd.summary or "").replace("|", "\\|")
        by_group.setdefault(cmd.group, []).append(
            f"| `{cmd.name}` | {_arity(cmd.arity)} | {flags} | {summary} |"
        )
    known = [g for g, _ in GROUPS]
    lines = [f"{len(COMMANDS)} commands (`COMMAND COUNT`).", ""]
    titles = dict(GROUPS)
    for group in known + sorted(set(by_group) - set(known)):
        rows = by_group.get(group)
        if not rows:
            continue
        lines += [f"**{titles.get(group, group)}**", ""]
        lines += ["| command | arity | flags | what it does |", "|---|---|---|---|", *rows, ""]
    return "\n".join(lines)


def render(text: str) -> str:
    head, sep, rest = text.partition(BEGIN)
    if not sep or END not in rest:
        raise SystemExit(f"{DOC}: the markers {BEGIN} and {END} are missing")
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    old = DOC.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{DOC} is stale: run scripts/gen_resp_docs.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the OpenAPI 3.1 document of crdtkv's public HTTP API (docs/api.md, "HTTP API").

The document is built by the ``crdtkv.api.openapi`` package (from the op
table, the error tree and the limits); this command writes it::

    python scripts/gen_openapi.py           # write crdtkv/api/openapi.json and docs/openapi.json
    python scripts/gen_openapi.py --check   # exit 1 when either file is not what it would write

``crdtkv/api/openapi.json`` ships in the package and is served at
``GET /openapi.json``; ``docs/openapi.json`` is the same bytes, for readers
of the repository.  Run it with the project's environment (``.venv/bin/python``),
where crdtkv is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crdtkv.api.openapi import build, render

__all__ = ["OUTPUTS", "build", "main", "render"]

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = (ROOT / "crdtkv" / "api" / "openapi.json", ROOT / "docs" / "openapi.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the files are current")
    args = parser.parse_args(argv)
    text = render(build())
    stale = [p for p in OUTPUTS if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is stale: run python scripts/gen_openapi.py")
        return 1 if stale else 0
    for p in stale:
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

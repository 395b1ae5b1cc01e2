"""The repository is self-contained, and its pages link each other.

- no tracked file points at the design notes the project started from,
  outside this repository (a reader who clones it could not follow them):
  docs/api.md is the contract and docs/architecture.md the design;
- README.md links every page of docs/, and docs/index.md the contract and
  the design;
- every relative link of README.md, compose/README.md and docs/*.md leads
  to a file that exists, and a ``#fragment`` into a Markdown page to one of
  its headings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", ROOT / "compose" / "README.md", *sorted(DOCS.glob("*.md"))]
# Spelled in two parts, so that this file does not match itself.
OUTSIDE = (b"../" + b"shared", b"shared" + b"/design")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def tracked_files() -> list[Path]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        [git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def outside_references(data: bytes) -> list[str]:
    """The references to the outside design notes in ``data``."""
    return [pattern.decode() for pattern in OUTSIDE if pattern in data]


def links(text: str) -> list[str]:
    """The targets of the Markdown links of ``text``, code blocks left out."""
    return LINK.findall(FENCE.sub("", text))


def anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings of ``text``: lower case, punctuation
    dropped, spaces as hyphens, ``-1``, ``-2``... for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for title in HEADING.findall(FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file or heading does not exist."""
    broken = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        name, _, fragment = target.partition("#")
        dest = (page.parent / name).resolve() if name else page
        if not dest.exists():
            broken.append(target)
        elif fragment and dest.suffix == ".md":
            if fragment not in anchors(dest.read_text(encoding="utf-8")):
                broken.append(target)
    return broken


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = tracked_files()
    assert len(files) > 50
    found = {
        str(path.relative_to(ROOT)): refs
        for path in files
        if path.is_file() and (refs := outside_references(path.read_bytes()))
    }
    assert found == {}, "docs/api.md and docs/architecture.md replace these references"


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in links((ROOT / "README.md").read_text(encoding="utf-8"))
    }
    pages = sorted(DOCS.glob("*.md"))
    assert {"api.md", "architecture.md", "index.md"} <= {p.name for p in pages}
    assert [p.name for p in pages if p.resolve() not in linked] == []


def test_the_docs_index_links_the_contract_and_the_design() -> None:
    targets = {t.partition("#")[0] for t in links((DOCS / "index.md").read_text(encoding="utf-8"))}
    assert {"api.md", "architecture.md"} <= targets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page: Path) -> None:
    assert broken_links(page) == []


# -- the checks can fail ---------------------------------------------------------------------


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    near, far = OUTSIDE
    assert outside_references(b"see " + near + b"/design/api.md") == [
        near.decode(),
        far.decode(),
    ]
    assert outside_references(b"see " + far + b" or " + near) == [near.decode(), far.decode()]
    assert outside_references(b"see docs/api.md") == []
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n\n## `crdtkv serve`\n\n## Top\n\n"
        "[a](page.md#crdtkv-serve) [b](page.md#top-1) [c](#top) [d](https://example.com/x)\n"
        "[e](missing.md) [f](page.md#nowhere)\n\n```text\n[g](also-missing.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == ["missing.md", "page.md#nowhere"]


def test_one_release_number_everywhere() -> None:
    """pyproject.toml, crdtkv.__version__ and the deployment manifests name one release."""
    import tomllib

    import crdtkv

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert crdtkv.__version__ == version
    images = set()
    for path in (ROOT / "compose").rglob("*"):
        if path.is_file() and path.suffix in ("", ".yml", ".yaml", ".md"):
            images |= set(re.findall(r"crdtkv:(\d+\.\d+\.\d+)", path.read_text()))
    assert images == {version}, images

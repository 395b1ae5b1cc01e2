"""compose/Dockerfile and the build context .dockerignore leaves it: base
image, entrypoint, environment, volume, user, health check, what is installed
and what is copied."""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib

from tests.deploy.support import BASE_IMAGE, DATA_DIR, ENTRYPOINT, Image, check_healthcheck_command
from tests.procs import ROOT


def check_dockerfile(image: Image) -> None:
    for stage in image.stages:
        assert stage.base == BASE_IMAGE, f"FROM {stage.base}: expected {BASE_IMAGE}"
    final = image.final
    assert image.entrypoint() == ENTRYPOINT, image.entrypoint()
    assert final.last("CMD") is None, "a CMD would add arguments to crdtkv serve"
    env = final.env()
    assert env.get("CRDTKV_HOST") == "0.0.0.0", env
    assert env.get("CRDTKV_PORT") == "7001", env
    assert env.get("CRDTKV_DATA_DIR") == DATA_DIR, env
    assert DATA_DIR in image.volumes(), image.volumes()
    assert "7001" in " ".join(final.all("EXPOSE")).split()
    user = image.user()
    assert user.split(":")[0] not in ("root", "0"), f"USER {user} is root"
    check_healthcheck_command(image.healthcheck(), "Dockerfile HEALTHCHECK")
    # The package is installed with `pip install .`: no test or bench extras.
    installs = [r for s in image.stages for r in s.all("RUN") if "pip install" in r]
    assert installs, "no pip install"
    for run in installs:
        assert re.search(r"pip install [\"']?\.", run), f"not `pip install .`: {run}"
        assert "test" not in run and "bench" not in run, run
    for stage in image.stages:
        for arg in stage.all("ARG"):
            if arg.startswith("EXTRAS="):
                extras = arg.partition("=")[2].strip("\"'").split(",")
                assert set(extras) <= {"", "fast"}, f"ARG {arg}: only the fast extra"


def dockerfile_copy_sources(image: Image) -> list[str]:
    """The build-context paths the Dockerfile COPYs (not those from another stage)."""
    sources: list[str] = []
    for stage in image.stages:
        for args in stage.all("COPY") + stage.all("ADD"):
            words = args.split()
            if any(w.startswith("--from=") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            sources += words[:-1]
    return sources


# -- .dockerignore -------------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclusion?, regex) for each line of .dockerignore, in order."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        patterns.append((exclude, _ignore_regex(os.path.normpath(line))))
    return patterns


def in_build_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents wins."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for exclude, regex in patterns:
        if any(regex.match(c) for c in candidates):
            included = not exclude
    return included


# -- the Dockerfile and the build context --------------------------------------------------------


def test_dockerfile(image: Image) -> None:
    check_dockerfile(image)


def test_dockerfile_copies_what_pip_install_needs(image: Image) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    sources = {os.path.normpath(s) for s in dockerfile_copy_sources(image)}
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= sources, sources
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").is_file() and any(fnmatch.fnmatch(p.name, i) for i in includes)
    ]
    assert packages
    for package in packages:
        assert package in sources, f"the Dockerfile does not COPY {package}/"
    patterns = dockerignore_patterns()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert in_build_context(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_sources_and_nothing_else() -> None:
    patterns = dockerignore_patterns()
    for package in ("crdtkv", "replication"):  # sources and package data (py.typed, openapi.json)
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(ROOT).as_posix()
                assert in_build_context(rel, patterns), f"{rel} is excluded"
    for kept in ("pyproject.toml", "README.md", "crdtkv/py.typed"):
        assert in_build_context(kept, patterns), kept
    for left_out in (
        ".venv/bin/python",
        "data/eu/CURRENT",
        "tests/test_deploy.py",
        "compose/.env",
        ".env",
        ".git/config",
        ".hypothesis/examples/x",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/x",
        ".ruff_cache/x",
        "crdtkv/__pycache__/cli.cpython-311.pyc",
        "crdtkv/api/__pycache__/app.cpython-311.pyc",
        "crdtkv.egg-info/PKG-INFO",
        "benchmarks/results/x.json",
        "build/lib/crdtkv/cli.py",
    ):
        assert not in_build_context(left_out, patterns), f"{left_out} reaches the build context"


def test_dockerignore_matcher_can_fail() -> None:
    # The matcher the test above relies on: a later "!" pattern lets a path back in.
    patterns = [(True, _ignore_regex("*")), (False, _ignore_regex("crdtkv"))]
    assert in_build_context("crdtkv/cli.py", patterns)
    assert not in_build_context("tests/x.py", patterns)
    patterns.append((True, _ignore_regex("**/__pycache__")))
    assert not in_build_context("crdtkv/api/__pycache__/x.pyc", patterns)

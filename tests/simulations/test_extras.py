"""``python -m simulations`` without the optional "bench" extra's matplotlib.

``pip install crdtkv`` does not bring matplotlib: the command line must still
work, and a report is written without its figures, with one line saying which
extra brings them.  (tqdm, the extra's other package, comes with every install
now: usearch, the vector sets' index, requires it.)  The child processes
here cannot import matplotlib: a directory ahead of site-packages on
PYTHONPATH holds packages of those names whose import fails as a missing
module's would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from simulations.plots import NO_MATPLOTLIB
from tests.procs import clean_env, run

EXTRAS = ("matplotlib",)


@pytest.fixture
def env_without_extras(tmp_path: Path) -> dict[str, str]:
    stubs = tmp_path / "no-extras"
    for name in EXTRAS:
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    env = clean_env()
    env["PYTHONPATH"] = os.pathsep.join([str(stubs), env["PYTHONPATH"]])
    return env


def simulations(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    done = run([sys.executable, "-m", "simulations", *args], env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("name", EXTRAS)
def test_the_extras_cannot_be_imported(
    name: str, env_without_extras: dict[str, str], tmp_path: Path
) -> None:
    done = run([sys.executable, "-c", f"import {name}"], env=env_without_extras, cwd=tmp_path)
    assert done.returncode == 1
    assert f"ModuleNotFoundError: No module named '{name}'" in done.stderr
    # ... and can be with the environment the other tests use (the dev install has them).
    assert run([sys.executable, "-c", f"import {name}"], cwd=tmp_path).returncode == 0


def test_help_works_without_the_extras(env_without_extras: dict[str, str], tmp_path: Path) -> None:
    status, out, err = simulations("--help", env=env_without_extras, cwd=tmp_path)
    assert status == 0, err
    assert "usage: python -m simulations" in out and "run" in out and "cluster" in out
    status, out, err = simulations("run", "--help", env=env_without_extras, cwd=tmp_path)
    assert status == 0, err
    for option in ("--seed", "--seeds", "--faults", "--report", "--quiet"):
        assert option in out


def test_a_campaign_runs_without_the_extras(
    env_without_extras: dict[str, str], tmp_path: Path
) -> None:
    report = tmp_path / "report"
    status, out, err = simulations(
        "run", "--seed", "31", "--seeds", "2", "--duration", "1",
        "--faults", "geo,partition", "--report", str(report),
        env=env_without_extras, cwd=tmp_path,
    )  # fmt: skip
    assert status == 0, out + err
    assert "seeds: 2 (0 failing)" in out
    assert "Traceback" not in err and "Error" not in err, err
    assert err.count(NO_MATPLOTLIB) == 1, err  # one line says what brings the figures
    assert "pip install crdtkv[bench]" in NO_MATPLOTLIB
    assert (report / "report.json").stat().st_size > 0
    assert sorted(p.name for p in report.iterdir()) == ["report.json"]  # no figure

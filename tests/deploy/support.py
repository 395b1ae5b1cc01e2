"""What the deployment checks share: the files' paths, running the real
``crdtkv serve --check-config`` with a given environment, and the parser of
compose/Dockerfile (the image every deployment runs)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.procs import ROOT

COMPOSE_DIR = ROOT / "compose"
K8S_DIR = COMPOSE_DIR / "k8s"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
BASE_IMAGE = "python:3.11-slim"
ENTRYPOINT = ["crdtkv", "serve"]
DATA_DIR = "/data"
CHECK_TIMEOUT_S = 60.0

# -- running crdtkv serve --check-config ---------------------------------------------------------


def run_env(env: Mapping[str, str], path_prefix: str | None = None) -> dict[str, str]:
    """Exactly ``env``, plus what it takes to run this checkout's crdtkv here."""
    out = dict(env)
    path = os.environ.get("PATH", os.defpath)
    out["PATH"] = os.pathsep.join(filter(None, [path_prefix, path]))
    out["PYTHONPATH"] = str(ROOT)
    return out


def resolved_config(proc: subprocess.CompletedProcess[str], who: str) -> dict[str, Any]:
    if proc.returncode != 0:
        raise AssertionError(
            f"{who}: crdtkv serve --check-config exited {proc.returncode}: {proc.stderr.strip()}"
        )
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def check_config(env: Mapping[str, str], cwd: Path, who: str) -> dict[str, Any]:
    """``crdtkv serve --check-config`` (the image's ENTRYPOINT) with exactly ``env``."""
    proc = subprocess.run(
        [sys.executable, "-m", "crdtkv.cli", "serve", "--check-config"],
        env=run_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    return resolved_config(proc, who)


def in_parallel(jobs: Mapping[str, Callable[[], dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Run independent --check-config jobs concurrently; the first failure is raised."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


# -- the Dockerfile ------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def all(self, instruction: str) -> list[str]:
        return [args for ins, args in self.instructions if ins == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for word in shlex.split(args):
                key, eq, value = word.partition("=")
                assert eq, f"ENV {args!r}: use the KEY=value form"
                env[key] = value
        return env


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions by stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and pending):
            continue  # Docker drops comment lines, even inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        if pending or line:
            logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation"
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].instructions.append((instruction, args))
    return stages


@dataclass
class Image:
    """What the final stage of compose/Dockerfile gives a container."""

    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """The image's ENV a container starts with (PATH stays the host's, to run here)."""
        env = {}
        for key, value in self.final.env().items():
            if key != "PATH":
                assert "$" not in value, f"ENV {key}={value}: not expanded by this test"
                env[key] = value
        return env

    def entrypoint(self) -> list[str]:
        args = self.final.last("ENTRYPOINT")
        assert args is not None, "no ENTRYPOINT"
        value = json.loads(args)
        assert isinstance(value, list), "ENTRYPOINT must be in exec (JSON) form"
        return value

    def user(self) -> str:
        user = self.final.last("USER")
        assert user is not None, "the image runs as root: no USER"
        return user

    def volumes(self) -> list[str]:
        out: list[str] = []
        for args in self.final.all("VOLUME"):
            out += json.loads(args) if args.startswith("[") else args.split()
        return out

    def healthcheck(self) -> list[str]:
        args = self.final.last("HEALTHCHECK")
        assert args is not None, "no HEALTHCHECK"
        _options, cmd, command = args.partition("CMD ")
        assert cmd, f"HEALTHCHECK {args!r} has no CMD"
        value = json.loads(command)
        assert isinstance(value, list) and value, "HEALTHCHECK CMD must be in exec (JSON) form"
        return value


def load_image() -> Image:
    return Image(parse_dockerfile(DOCKERFILE.read_text()))


def check_healthcheck_command(test: list[str], who: str) -> None:
    """An exec-form health check that GETs /healthz with Python (slim has no curl)."""
    assert test, f"{who}: empty health check"
    text = " ".join(test)
    assert "/healthz" in text, f"{who}: the health check does not ask /healthz: {text}"
    assert not re.search(r"\b(curl|wget)\b", text), f"{who}: curl and wget are not in the image"
    assert test[0] == "python", f"{who}: the health check should run python: {test}"


def load_compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data

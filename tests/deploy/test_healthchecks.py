"""The health checks of compose/Dockerfile and of every compose service, run
against a real ``crdtkv serve`` process: they pass while it serves and fail
once it is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.deploy.support import CHECK_TIMEOUT_S, Image, load_compose, run_env
from tests.procs import Server, server_group


def run_healthcheck(test: list[str], port: int) -> int:
    assert test[0] == "python"
    return subprocess.run(
        [sys.executable, *test[1:]],
        env=run_env({"CRDTKV_PORT": str(port)}),
        capture_output=True,
        timeout=CHECK_TIMEOUT_S,
    ).returncode


def test_healthchecks_pass_on_a_serving_replica_and_fail_without_one(
    image: Image, tmp_path: Path
) -> None:
    commands = {"Dockerfile": image.healthcheck()}
    for name, service in load_compose()["services"].items():
        commands[f"compose {name}"] = service["healthcheck"]["test"][1:]
    with server_group() as group:
        server = group.add(Server("eu", tmp_path / "eu")).start()
        for who, test in commands.items():
            assert run_healthcheck(test, server.port) == 0, who
        assert server.stop() == 0
    for who, test in commands.items():
        assert run_healthcheck(test, server.port) != 0, f"{who} passes with no replica"

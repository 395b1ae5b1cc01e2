"""Limits checked together at configuration load: ``crdtkv serve`` refuses a
replication setting out of the receivers' bounds, or a body limit no push
could carry, with exit status 2 and one line naming the option and setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crdtkv import cli, limits
from crdtkv.config import UsageError, parse_serve_args
from crdtkv.limits import ReplicationSettings
from tests.procs import STARTUP_S, clean_env

PEER = ["--peer", "r2=http://127.0.0.1:1"]
BIG_BODY = str(limits.MESSAGE_BYTES_MAX)

REFUSED: list[tuple[list[str], dict[str, str], list[str]]] = [
    # (argv, environment, what the one line must name)
    (
        ["--replication-setting", "push_entries_max=20000"],
        {},
        ["--replication-setting", "push_entries_max", "10000"],
    ),
    (
        ["--replication-setting", "sync_bytes_max=16777216"],
        {},
        ["--replication-setting", "sync_bytes_max"],
    ),
    (
        ["--replication-setting", "sync_keys_max=50000"],
        {},
        ["--replication-setting", "sync_keys_max"],
    ),
    (
        ["--replication-setting", "sync_buffer_bytes_max=1024"],
        {},
        ["--replication-setting", "sync_buffer_bytes_max"],
    ),
    (
        ["--replication-setting", "heartbeat_ms=9000"],
        {},
        ["--replication-setting", "reachable_ms", "heartbeat_ms"],
    ),
    (
        ["--replication-setting", "push_bytes_max=0"],
        {},
        ["--replication-setting", "push_bytes_max"],
    ),
    (["--replication-setting", "pushes=3"], {}, ["--replication-setting", "unknown setting"]),
    (
        ["--replication-setting", "heartbeat_ms=fast"],
        {},
        ["--replication-setting", "heartbeat_ms"],
    ),
    (["--replication-setting", "heartbeat_ms"], {}, ["--replication-setting", "NAME=VALUE"]),
    (
        ["--replication-setting", "heartbeat_ms=5", "--replication-setting", "heartbeat_ms=6"],
        {},
        ["--replication-setting", "twice"],
    ),
    (
        [],
        {"CRDTKV_REPLICATION_SETTINGS": "sync_keys_max=10,push_entries_max=99999"},
        ["CRDTKV_REPLICATION_SETTINGS", "push_entries_max"],
    ),
    # With peers, an operation no push could carry would never replicate.
    ([*PEER, "--body-bytes-max", BIG_BODY], {}, ["--body-bytes-max", "replication message"]),
    (PEER, {"CRDTKV_BODY_BYTES_MAX": BIG_BODY}, ["CRDTKV_BODY_BYTES_MAX"]),
]


@pytest.mark.parametrize(("argv", "env", "named"), REFUSED)
def test_limits_that_do_not_fit_together_exit_2_naming_the_setting(
    argv: list[str],
    env: dict[str, str],
    named: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", "--replica-id", "r1", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdtkv serve: error: "), err
    for word in named:
        assert word in lines[0], (word, lines[0])
    assert not (tmp_path / "data").exists()


def test_settings_that_fit_reach_the_config_and_check_config_shows_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["--replica-id", "r1", "--replication-setting", "push_entries_max=500"]
    argv += ["--replication-setting", " heartbeat_ms = 200 "]
    config = parse_serve_args(argv, {"CRDTKV_REPLICATION_SETTINGS": "sync_keys_max=1"})
    assert config.replication == ReplicationSettings(push_entries_max=500, heartbeat_ms=200)
    env = parse_serve_args(
        ["--replica-id", "r1"], {"CRDTKV_REPLICATION_SETTINGS": "sync_keys_max=7"}
    )
    assert env.replication.sync_keys_max == 7
    # Without peers a replica ships nothing: the body limit is the only bound.
    alone = parse_serve_args(["--replica-id", "r1", "--body-bytes-max", BIG_BODY], {})
    assert alone.body_bytes_max == limits.MESSAGE_BYTES_MAX
    with pytest.raises(UsageError, match="--body-bytes-max"):
        parse_serve_args(["--replica-id", "r1", *PEER, "--body-bytes-max", BIG_BODY], {})
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    assert cli.main(["serve", "--check-config", *argv]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["replication"] == {"push_entries_max": 500, "heartbeat_ms": 200}
    assert cli.main(["serve", "--check-config", "--replica-id", "r1"]) == 0
    assert "replication" not in json.loads(capsys.readouterr().out)  # all defaults


def test_a_real_process_refuses_a_setting_receivers_would_refuse(tmp_path: Path) -> None:
    argv = ["serve", "--replica-id", "r1", "--replication-setting", "push_entries_max=20000"]
    done = subprocess.run(
        [sys.executable, "-m", "crdtkv.cli", *argv],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=STARTUP_S,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "crdtkv serve: error: --replication-setting: push_entries_max: must be at most "
        "10000: a receiver refuses a push with more entries\n"
    )
    assert not (tmp_path / "data").exists()

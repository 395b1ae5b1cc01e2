"""Every command and code sample in README.md and docs/ is executed, so the docs cannot rot.

Convention for doc authors (docs/index.md says the same, in short):

- a fenced block tagged ``sh`` or ``python`` is executed verbatim, in
  document order, against one local three-replica cluster started by
  ``crdtkv cluster`` (the samples' ports 7001-7003 are rewritten to the
  cluster's, and its Redis protocol ports 6379-6381, in ``-p 6379`` or
  ``port=6379``, to the cluster's); it must exit 0.  This module runs them;
- a block tagged ``console`` holds commands too long, slow or remote to run
  verbatim (benchmarks, simulation campaigns, ``make run``, ``crdtkv serve``
  with remote peers).  tests/docs_commands/ runs each in a short form
  made by a per-program rule (``--seeds 2000`` becomes ``--seeds 2``,
  ``-n 20000`` becomes ``-n 20``, benchmarks get ``--quick``...), starts,
  probes and stops the servers, and parses every command verbatim with its
  program's real argparse parser; a program without a rule fails.  Lines
  starting with ``$ `` in a console block are its commands and the rest is
  their output;
- ``text`` blocks are output or listings, never run; an untagged block fails
  the tests, so every block says which it is.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import (
    ROOT,
    clean_env,
    consecutive_free_ports,
    crdtkv_cmd,
    run,
    spawn,
    stop,
    wait_healthy,
)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
RUNNABLE = ("sh", "python")
SAMPLE_TIMEOUT_S = 60
STATUS_MARK = "DOCS-TEST-HTTP-STATUS"
# The error code of each status (docs/api.md, "Errors").
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "wrong_type",
    413: "payload_too_large",
    415: "unsupported_media_type",
    503: "session_unavailable",
}


def samples() -> list[tuple[str, int, str, str]]:
    out = []
    for path in DOCS:
        text = path.read_text()
        for n, m in enumerate(FENCE.finditer(text)):
            if m.group(1) in RUNNABLE:
                out.append((path.name, n, m.group(1), m.group(2)))
    return out


RESP_BASE: list[int] = []  # the docs cluster's first RESP port, once it runs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    root = tmp_path_factory.mktemp("docs")
    base = consecutive_free_ports(3)
    resp_base = consecutive_free_ports(3)
    RESP_BASE[:] = [resp_base]
    data = str(root / "data")
    proc = spawn(
        crdtkv_cmd(
            "cluster",
            *("--base-port", str(base), "--data-dir", data),
            *("--resp-base-port", str(resp_base)),
        ),
        cwd=root,
        stdout="devnull",
        stderr="devnull",
    )
    try:
        urls = [f"http://127.0.0.1:{base + i}" for i in range(3)]
        wait_healthy(proc, urls, 30, what="the docs cluster")
        yield base
    finally:
        stop(proc, signal.SIGINT, 30)


def _rewrite(code: str, base: int) -> str:
    code = re.sub(r"127\.0\.0\.1:700([1-3])", lambda m: f"127.0.0.1:{base + int(m[1]) - 1}", code)
    resp = {"6379": 0, "6380": 1, "6381": 2}
    return re.sub(
        r"(-p |port=)(6379|6380|6381)\b",
        lambda m: f"{m[1]}{RESP_BASE[0] + resp[m[2]]}",
        code,
    )


def test_the_docs_have_runnable_samples() -> None:
    found = {name for name, *_ in samples()}
    assert {"README.md", "sessions.md", "api.md"} <= found


@pytest.mark.parametrize(
    ("doc", "index", "lang", "code"), samples(), ids=[f"{s[0]}#{s[1]}" for s in samples()]
)
def test_sample_runs(
    cluster: int, tmp_path: Path, doc: str, index: int, lang: str, code: str
) -> None:
    code = _rewrite(code, cluster)
    env = clean_env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["CRDTKV_URL"] = f"http://127.0.0.1:{cluster}"
    # curl exits 0 on an HTTP error: have it report every status on stderr, so
    # that an error answer the sample does not document fails the test.
    prelude = "curl() { command curl -w '%{stderr}" + STATUS_MARK + ' %{http_code}\\n\' "$@"; }\n'
    cmd = ["bash", "-eu", "-c", prelude + code] if lang == "sh" else [sys.executable, "-c", code]
    # README samples run from the checkout (they name .venv/bin/crdtkv), others anywhere.
    done = run(
        cmd, cwd=ROOT if doc == "README.md" else tmp_path, env=env, timeout_s=SAMPLE_TIMEOUT_S
    )
    assert done.returncode == 0, (
        f"{doc} sample {index} failed:\n{code}\n{done.stdout}\n{done.stderr}"
    )
    for status in re.findall(STATUS_MARK + r" (\d{3})", done.stderr):
        # An error answer is fine only where the sample shows it (its error code).
        want = ERROR_CODES.get(int(status))
        assert int(status) < 400 or (want is not None and want in code), (
            f"{doc} sample {index}: a request was answered {status}, which the sample "
            f"does not show:\n{code}\n{done.stdout}\n{done.stderr}"
        )

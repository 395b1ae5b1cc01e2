"""``crdtkv bench``'s entry point: options, the server (found or spawned), the run, the output."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from crdtkv.cliutil import UsageError, print_error
from crdtkv.tools.bench.machine import SpawnedServer, listening_pids, proc_rss_kb
from crdtkv.tools.bench.options import PROG, BenchConfig, BenchError, parse_args
from crdtkv.tools.bench.report import ServerInfo, cpu_note, describe, render_table, write_json
from crdtkv.tools.bench.runner import Runner

__all__ = ["main"]

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def _new_loop_runner(cfg: BenchConfig) -> tuple[asyncio.Runner, str]:
    if cfg.use_uvloop:
        try:
            import uvloop

            return asyncio.Runner(loop_factory=uvloop.new_event_loop), "uvloop"
        except ImportError:  # the "fast" extra is optional
            pass
    return asyncio.Runner(), "asyncio"


def _server_pids(cfg: BenchConfig, urls: Sequence[str], spawned: SpawnedServer | None) -> list[int]:
    if spawned is not None:
        return [spawned.pid]
    if cfg.server_pids:
        return list(cfg.server_pids)
    pids: list[int] = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host in LOOPBACK_HOSTS or host.startswith("127."):
            port = parts.port or (443 if parts.scheme == "https" else 80)
            pids.extend(p for p in listening_pids(port) if p != os.getpid() and p not in pids)
    return pids


def _rss_kb(pids: Sequence[int]) -> int | None:
    return sum(filter(None, (proc_rss_kb(p) for p in pids))) or None


async def _run(
    cfg: BenchConfig,
    urls: Sequence[str],
    pids: Sequence[int],
    progress: bool,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    results = []
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    # While the loop runs, SIGTERM cancels the run from the loop: a KeyboardInterrupt
    # raised by _on_term could land in some object's __del__, where Python ignores it.
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        async with Runner(cfg, urls, pids) as runner:
            await runner.check_reachable()
            for op_type in cfg.types:
                if op_type == "register_get" and cfg.prefill:
                    n, secs = await runner.prefill()
                    say(f"prefilled {n} registers in {secs:.1f} s")
                results.append(await runner.run_type(op_type, progress))
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # which leaves SIGTERM's default action
        signal.signal(signal.SIGTERM, _on_term)
    return results


def _on_term(signum: int, frame: object) -> None:
    """SIGTERM outside the event loop (starting or stopping the server): as Ctrl-C."""
    raise KeyboardInterrupt


def _bench(
    cfg: BenchConfig, environ: Mapping[str, str], say: Callable[[str], None]
) -> tuple[list[dict[str, Any]], ServerInfo, str]:
    """The run, with its server started first (``--spawn``) and stopped last, whatever happens.

    Returns the results, the server's side and the event loop's name; raises
    ``BenchError`` (exit 1) or ``KeyboardInterrupt`` (SIGINT or SIGTERM: 130).
    """
    spawned: SpawnedServer | None = None
    spawn_status: int | None = None
    pids: list[int] = []
    runner, loop_name = _new_loop_runner(cfg)
    progress = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    try:
        if cfg.spawn:
            spawned = SpawnedServer(cfg.durability, environ)
            spawned.start()
            urls: Sequence[str] = [spawned.url]
            say(f"spawned crdtkv serve (pid {spawned.pid}, {cfg.durability}) on {spawned.url}")
        else:
            urls = cfg.urls
        pids = _server_pids(cfg, urls, spawned)
        say(describe(cfg, loop_name, urls))
        if not pids:
            say("server process not found: no server CPU figures (see --server-pid)")
        rss_start = _rss_kb(pids)
        with runner:
            results = runner.run(_run(cfg, urls, pids, progress, say))
    finally:
        if spawned is not None:
            spawn_status = spawned.stop()
            if spawn_status not in (0, None):
                say(f"the spawned server exited with status {spawn_status}")
    return results, ServerInfo(tuple(pids), rss_start, cfg.spawn, spawn_status), loop_name


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    try:
        cfg = parse_args(argv, environ)
    except UsageError as e:
        print_error(PROG, str(e))
        return 2

    def say(msg: str) -> None:
        if not cfg.quiet:
            print(msg, file=sys.stderr, flush=True)

    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        results, server, loop_name = _bench(cfg, environ, say)
    except BenchError as e:
        print_error(PROG, str(e))
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C or SIGTERM
        print_error(PROG, "interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(render_table(results, cfg.batch > 0))
    say(cpu_note())
    if cfg.json_path is not None:
        try:
            write_json(cfg.json_path, cfg, started_at, loop_name, server, results)
        except OSError as e:
            print_error(PROG, f"--json: {e}")
            return 1
    errors = sum(r["errors"] for r in results)
    if errors:
        first = next(s for r in results for s in r["error_samples"])
        print_error(PROG, f"{errors} request(s) or op(s) failed; first: {first}")
        return 1
    return 0

"""``crdtkv bench``'s options: the command line, checked, as a ``BenchConfig``.

Every bad option is a ``UsageError`` naming it (the command prints one line
and exits 2); nothing here starts a process or opens a connection.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crdtkv import limits
from crdtkv.cliutil import ArgParser, UsageError

__all__ = ["PROG", "TYPES", "BenchConfig", "BenchError", "UsageError", "parse_args"]

PROG = "crdtkv bench"
TYPES = ("register_set", "register_get", "counter_incr", "set_add", "hll_add")
CLIENTS = ("aiohttp", "raw")
DEFAULT_URL = "http://127.0.0.1:7001"
CONNECTIONS_MAX = 10_000
KEYSPACE_MAX = 10**12
DATA_SIZE_MAX = 512 * 1024  # bytes of one register value (-d)


class BenchError(Exception):
    """A runtime failure: exit 1 with this one line."""


@dataclass(frozen=True)
class BenchConfig:
    urls: tuple[str, ...] = (DEFAULT_URL,)
    connections: int = 50
    requests: int = 100_000
    duration_s: float | None = None
    types: tuple[str, ...] = TYPES
    batch: int = 0
    keyspace: int = 100_000
    sequential: bool = False
    data_size: int = 3
    msgpack: bool = False
    json_path: str | None = None
    spawn: bool = False
    durability: str = "fsync"
    server_pids: tuple[int, ...] = ()
    prefill: bool = True
    progress: bool | None = None  # None: when stderr is a terminal
    quiet: bool = False
    use_uvloop: bool = True
    seed: int | None = None
    timeout_s: float = 30.0
    auth_token: str | None = None
    tls_ca: str | None = None  # the CA bundle https:// URLs are verified with (None: the system's)
    client: str = "aiohttp"  # or "raw": a minimal HTTP/1.1 client, far cheaper per request

    def to_json(self) -> dict[str, Any]:
        return {
            "urls": list(self.urls),
            "connections": self.connections,
            "requests": None if self.duration_s is not None else self.requests,
            "duration_s": self.duration_s,
            "types": list(self.types),
            "batch": self.batch,
            "keyspace": self.keyspace,
            "sequential": self.sequential,
            "data_size": self.data_size,
            "format": "msgpack" if self.msgpack else "json",
            "spawn": self.spawn,
            "durability": self.durability if self.spawn else None,
            "prefill": self.prefill,
            "seed": self.seed,
            "client": self.client,
        }


def _build_parser() -> argparse.ArgumentParser:
    p = ArgParser(
        prog=PROG,
        allow_abbrev=False,
        description="Load generator for crdtkv (requests/s, latency percentiles, CPU shares).",
        epilog=f"operation types: {', '.join(TYPES)}",
    )
    add = p.add_argument
    add(
        "--url",
        action="append",
        metavar="URL",
        help=f"a replica; repeatable (default {DEFAULT_URL})",
    )
    add(
        "-c", "--connections", metavar="C", default="50", help="keep-alive connections (default 50)"
    )
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("-n", "--requests", metavar="N", help="requests per type (default 100000)")
    runs.add_argument("--duration", metavar="S", help="seconds per type, instead of -n")
    add("-t", "--types", metavar="T,T", help="comma list of operation types (default: all)")
    add("--batch", metavar="N", default="0", help="ops per /v1/batch request; 0: single requests")
    add("--keyspace", metavar="K", default="100000", help="distinct keys (default 100000)")
    add("--sequential", action="store_true", help="keys 0..K-1 in order instead of random")
    add("-d", "--data-size", metavar="B", default="3", help="register value bytes (default 3)")
    add("--msgpack", action="store_true", help="send batches as MessagePack (needs --batch)")
    add("--json", metavar="PATH", help="write the results as JSON to PATH")
    add("--spawn", action="store_true", help="start a crdtkv serve in a temp dir and stop it after")
    add("--durability", metavar="fsync|wal", help="the spawned server's durability (default fsync)")
    add("--server-pid", metavar="PID", action="append", help="server process(es) to account CPU to")
    add("--no-prefill", action="store_true", help="register_get: do not fill the keyspace first")
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", action="store_true", default=None, help="always show progress")
    prog.add_argument("--no-progress", action="store_true", help="never show progress")
    add("-q", "--quiet", action="store_true", help="print only the results table")
    add("--no-uvloop", action="store_true", help="use asyncio's default event loop")
    add(
        "--client",
        metavar="aiohttp|raw",
        default="aiohttp",
        help="aiohttp (default), or raw: a minimal keep-alive HTTP/1.1 client that leaves "
        "more CPU to a server on the same machine",
    )
    add("--seed", metavar="S", help="random seed for keys and values")
    add("--timeout", metavar="S", default="30", help="per-request timeout in seconds (default 30)")
    add("--auth-token", metavar="T", help="bearer token for the server [CRDTKV_AUTH_TOKEN]")
    add(
        "--tls-ca",
        metavar="FILE",
        help="CA bundle (PEM) to verify https:// URLs with, instead of the system's "
        "[CRDTKV_TLS_CA]",
    )
    return p


def _int(value: str, option: str, lo: int, hi: int | None = None) -> int:
    try:
        v = int(value.replace("_", ""))
    except ValueError:
        raise UsageError(option, f"expected an integer, not {value!r}") from None
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise UsageError(option, f"must be {bound}, not {v}")
    return v


def _float(value: str, option: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise UsageError(option, f"expected a number of seconds, not {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise UsageError(option, f"must be a positive number of seconds, not {value!r}")
    return v


def _url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError("--url", f"expected http://HOST:PORT, not {value!r}")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise UsageError("--url", f"bad port in {value!r}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError("--url", f"give the replica's base URL only, not {value!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _types(text: str) -> tuple[str, ...]:
    """``-t``: a comma list of operation types, in the order given, without repeats."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("-t", "name at least one operation type")
    for t in names:
        if t not in TYPES:
            raise UsageError("-t", f"unknown operation type {t!r}; choose from {', '.join(TYPES)}")
    return tuple(dict.fromkeys(names))


def parse_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> BenchConfig:
    """The command line as a ``BenchConfig``; ``UsageError`` names the bad option."""
    environ = os.environ if environ is None else environ
    ns = _build_parser().parse_args(list(argv))
    urls = tuple(_url(u) for u in ns.url) if ns.url else (DEFAULT_URL,)
    if ns.spawn and ns.url:
        raise UsageError("--spawn", "starts its own server; do not give --url as well")
    if ns.durability is not None and not ns.spawn:
        raise UsageError("--durability", "only applies to the server --spawn starts")
    durability = ns.durability or "fsync"
    if durability not in ("fsync", "wal"):
        raise UsageError("--durability", f"choose fsync or wal, not {durability!r}")
    types = _types(ns.types) if ns.types is not None else TYPES
    batch = _int(ns.batch, "--batch", 0, limits.BATCH_OPS_MAX)
    if ns.msgpack and batch == 0:
        raise UsageError("--msgpack", "only batches can be MessagePack; add --batch N")
    pids = tuple(_int(p, "--server-pid", 1) for p in ns.server_pid or ())
    if pids and ns.spawn:
        raise UsageError("--server-pid", "--spawn accounts its own server")
    if ns.client not in CLIENTS:
        raise UsageError("--client", f"choose aiohttp or raw, not {ns.client!r}")
    if ns.json is not None and not ns.json:
        raise UsageError("--json", "expected a file path")
    tls_ca = ns.tls_ca or environ.get("CRDTKV_TLS_CA") or None
    if tls_ca is not None:
        from crdtkv.tls import check_ca

        check_ca(tls_ca, "--tls-ca" if ns.tls_ca else "CRDTKV_TLS_CA")  # a UsageError
    return BenchConfig(
        urls=urls,
        connections=_int(ns.connections, "-c", 1, CONNECTIONS_MAX),
        requests=_int(ns.requests, "-n", 1) if ns.requests is not None else 100_000,
        duration_s=_float(ns.duration, "--duration") if ns.duration is not None else None,
        types=types,
        batch=batch,
        keyspace=_int(ns.keyspace, "--keyspace", 1, KEYSPACE_MAX),
        sequential=ns.sequential,
        data_size=_int(ns.data_size, "-d", 0, DATA_SIZE_MAX),
        msgpack=ns.msgpack,
        json_path=ns.json,
        spawn=ns.spawn,
        durability=durability,
        server_pids=pids,
        prefill=not ns.no_prefill,
        progress=False if ns.no_progress else ns.progress,
        quiet=ns.quiet,
        use_uvloop=not ns.no_uvloop,
        seed=_int(ns.seed, "--seed", 0) if ns.seed is not None else None,
        timeout_s=_float(ns.timeout, "--timeout"),
        auth_token=ns.auth_token or environ.get("CRDTKV_AUTH_TOKEN") or None,
        tls_ca=tls_ca,
        client=ns.client,
    )

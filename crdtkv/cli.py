"""The ``crdtkv`` command: ``serve`` (here), ``cluster`` and ``bench`` (their own modules).

Each subcommand is a function ``(argv, environ) -> exit status`` registered
in ``COMMANDS``.  To add one, write ``crdtkv/<name>.py`` with such a
``main`` and point its entry at it with ``_lazy("crdtkv.<name>:main")``:
modules are imported only when their command runs, so ``crdtkv --help``
stays fast and ``serve`` does not pay for the benchmark's imports.

Exit statuses: 0 success, 1 runtime failure (data directory locked or
unreadable, storage failure, port in use), 2 bad usage.  Every failure is one
line on stderr; logs go to stderr too, so stdout carries only what a script
reads (the serving line, ``--check-config``'s JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from crdtkv.config import PROG as SERVE_PROG
from crdtkv.config import ServeConfig, UsageError, parse_serve_command

if TYPE_CHECKING:
    import ssl

    from crdtkv.auth import Auth
    from crdtkv.node import Node

__all__ = ["COMMANDS", "Command", "main", "run_serve", "serve_main", "serve_node"]

log = logging.getLogger("crdtkv.serve")

Runner = Callable[[list[str], Mapping[str, str]], int]

# Time a clean shutdown gives in-flight requests: the longest session wait
# (limits.WAIT_MS_MAX) plus a group commit.
SHUTDOWN_GRACE_S = 12.0
# The keyspace snapshot a clean stop saves in the data directory (crdtkv.replica.store).
KEYSPACE_SNAPSHOT = "keyspace.snapshot"


class Command(NamedTuple):
    help: str  # one line for ``crdtkv --help``
    run: Runner  # (argv after the command name, environment) -> exit status


def _lazy(target: str) -> Runner:
    """A runner that imports ``module:function`` when the command is used."""

    def run(argv: list[str], environ: Mapping[str, str]) -> int:
        module, _, name = target.partition(":")
        fn = cast(Runner, getattr(importlib.import_module(module), name))
        return fn(argv, environ)

    return run


def _fail(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


# -- serve ---------------------------------------------------------------------------------------


def serve_main(argv: list[str], environ: Mapping[str, str]) -> int:
    try:
        command = parse_serve_command(argv, environ)
    except UsageError as e:
        _fail(SERVE_PROG, str(e))
        return 2
    if command.check_config:
        print(json.dumps(command.config.to_json(), indent=2), flush=True)
        return 0
    logging.basicConfig(
        stream=sys.stderr,
        level=command.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    status = run_serve(command.config)
    # The node is closed (flushed, RocksDB closed).  Leave what is left to the
    # OS: without this the interpreter's exit-time collections walk every key's
    # objects, seconds for a million keys written since the start.
    import gc

    gc.freeze()
    return status


def run_serve(config: ServeConfig) -> int:
    """Open the data directory, then serve until SIGINT/SIGTERM or a storage failure."""
    from crdtkv.errors import CrdtkvError
    from crdtkv.replica.persist import load_replica
    from crdtkv.storage.rocks import RocksStorage

    try:
        storage = RocksStorage(config.resolved_data_dir)
    except CrdtkvError as e:  # locked, unreadable, not a database: nothing was written
        _fail(SERVE_PROG, e.message)
        return 1
    import gc

    # The load allocates millions of objects that all live as long as the
    # process: collections during it would walk them again and again (a third
    # of start-up time with 200,000 keys) and find nothing to free.
    gc.disable()
    log = logging.getLogger("crdtkv.load")
    started = time.monotonic()
    snapshot_path = Path(config.resolved_data_dir) / KEYSPACE_SNAPSHOT
    snapshot_file = None
    try:
        import msgpack

        with contextlib.suppress(FileNotFoundError):
            snapshot_file = open(snapshot_path, "rb")  # noqa: SIM115 (closed below)
        snapshot = (
            msgpack.Unpacker(snapshot_file, raw=False, strict_map_key=False, read_size=1 << 24)
            if snapshot_file is not None
            else None
        )
        # Every start is a new incarnation, a new actor (see load_replica).
        incarnation = secrets.token_hex(4)
        replica = load_replica(
            storage,
            config.replica_id,
            incarnation,
            config.max_offset_ms,
            wal=config.durability == "wal",
            # A format-1 migration drops expired registers.
            now_ms=time.time_ns() // 1_000_000 + config.clock_offset_ms,
            snapshot=snapshot,
            progress=log.info,
        )
    except Exception as e:  # wrong replica id, unknown format, corrupt records
        gc.enable()
        storage.close()
        _fail(SERVE_PROG, f"{config.resolved_data_dir}: {e}")
        return 1
    finally:
        if snapshot_file is not None:
            snapshot_file.close()
    # The start made the snapshot stale (META_SNAPSHOT is gone): it only costs disk now.
    with contextlib.suppress(OSError):
        snapshot_path.unlink(missing_ok=True)
    took = time.monotonic() - started
    log.log(  # a small keyspace's load stays out of the way (DEBUG)
        logging.INFO if took >= 0.5 else logging.DEBUG,
        "loaded %d names (%d held compactly) in %.1f s",
        len(replica.names),
        len(replica.states.cold),
        took,
    )
    try:
        config = _cluster_map_at_start(config, storage)
    except _StartError as e:
        gc.enable()
        storage.close()
        _fail(SERVE_PROG, str(e))
        return 1
    from crdtkv.node import Node

    _tune_gc()
    node = Node(replica, storage, durability=config.durability, clock=_clock(config))
    if config.cluster_map is not None:
        from crdtkv.cluster.state import ClusterState

        # The newer of the file's and the data directory's map (_cluster_map_at_start).
        node.cluster = node.core.cluster = ClusterState(config.cluster_map, config.replica_id)
    return _run_loop(serve_node(config, node))


class _StartError(Exception):
    """A start-up refusal: one line, the process exits 1."""


def _cluster_map_at_start(config: ServeConfig, storage: Any) -> ServeConfig:
    """The map to start with: the newer of the ``--cluster-map`` file's and the one
    the data directory holds (persisted there if it is the file's); the peers follow
    it.  A data directory of a sharded replica started without a map is refused."""
    from dataclasses import replace

    from crdtkv.cluster.map import ClusterMap, MapError
    from crdtkv.cluster.state import ClusterState
    from crdtkv.replica.persist import cluster_map_batch, read_cluster_map

    where = config.resolved_data_dir
    try:
        raw = read_cluster_map(storage)
        stored = ClusterMap.from_json(raw) if raw is not None else None
    except (MapError, ValueError) as e:
        raise _StartError(f"{where}: the cluster map in the data directory: {e}") from None
    given = config.cluster_map
    if given is None:
        if stored is not None:
            raise _StartError(
                f"{where} belongs to replica {config.replica_id!r} of a sharded cluster (map"
                f" epoch {stored.epoch}): start it with --cluster-map"
            )
        return config
    source = f"--cluster-map {config.cluster_map_file}"
    chosen = given
    if stored is None:
        log.info("cluster map: epoch %d from %s (the data directory had none)", given.epoch, source)
    elif given.epoch < stored.epoch:
        chosen = stored
        log.info(
            "cluster map: epoch %d from the data directory (newer than %s's epoch %d)",
            stored.epoch,
            source,
            given.epoch,
        )
    elif given.epoch == stored.epoch:
        if given != stored:
            raise _StartError(
                f"--cluster-map: {config.cluster_map_file} holds another map of epoch"
                f" {given.epoch} than the data directory {where}: give the file's map a higher"
                " epoch to replace it"
            )
        log.info("cluster map: epoch %d (%s and the data directory agree)", given.epoch, source)
    else:
        try:
            ClusterState(stored, config.replica_id).set_map(given)
        except MapError as e:
            raise _StartError(f"--cluster-map: {config.cluster_map_file}: {e}") from None
        log.info(
            "cluster map: epoch %d from %s (newer than the data directory's epoch %d)",
            given.epoch,
            source,
            stored.epoch,
        )
    if chosen is not stored:
        storage.write(cluster_map_batch(chosen.to_json()), sync=True)
    if not chosen.has_node(config.replica_id):
        raise _StartError(f"replica {config.replica_id!r} is not in the cluster map")
    peers = {n.id: n.http for n in chosen.peers_of(config.replica_id)}
    return replace(config, cluster_map=chosen, peers=peers)


def _clock(config: ServeConfig) -> Callable[[], int]:
    """The replica's clock: the wall clock, shifted by the (testing) ``--clock-offset-ms``."""
    from crdtkv.node import wall_clock_ms

    offset = config.clock_offset_ms
    if not offset:
        return wall_clock_ms
    return lambda: wall_clock_ms() + offset


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the keyspace.

    The loaded keyspace lives as long as the process; without this, every full
    collection walks every key (tens of ms per collection with a million keys).
    Freezing moves what exists now out of the collector's view, and a larger
    first threshold makes collections of request garbage rarer.  The collector
    was off during the load (``run_serve``); the load makes next to no cyclic
    garbage, so there is no full collection before the freeze (it would walk
    every key once: about a second per million keys).
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.enable()


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional (the "fast" extra)
        runner = asyncio.Runner()
    with runner:
        return runner.run(main)


async def serve_node(config: ServeConfig, node: Node) -> int:
    """Serve ``node`` until SIGINT/SIGTERM (0) or a storage failure (1); closes the node."""
    from aiohttp import web

    from crdtkv.api import make_app
    from replication.http import ReplicationService

    # Large vector sets' index snapshots: saved at a clean stop, loaded at start.
    node.index_dir = Path(config.resolved_data_dir) / "vset-index"
    # The keyspace's snapshot: saved at a clean stop, loaded at start (run_serve).
    node.keyspace_snapshot = Path(config.resolved_data_dir) / KEYSPACE_SNAPSHOT
    node.start()
    try:
        http_tls, resp_tls, peer_tls = _tls_contexts(config)
    except UsageError as e:  # a file changed since the options were checked
        _fail(SERVE_PROG, str(e))
        await node.close()
        return 1
    auth = config.make_auth()  # validated by the config: the users HTTP and RESP share
    replication = None
    if config.peers:
        replication = ReplicationService(
            node,
            config.peers,
            secret=config.cluster_secret,
            previous_secret=config.cluster_secret_previous,
            settings=config.replication,
            ssl_context=peer_tls,
            client_certs=config.tls_peer_auth == "mutual",
        )
    app = make_app(
        node, config, peers_status=replication.status if replication else None, auth=auth
    )
    if replication is not None:
        replication.add_routes(app)
    mover = None
    map_sync = None
    if node.cluster is not None:
        from crdtkv.api.cluster import MAP_SYNC, MapSync
        from crdtkv.api.moves import Mover

        map_sync = MapSync(
            node,
            node.cluster,
            secret=config.cluster_secret,
            previous_secret=config.cluster_secret_previous,
            peers=dict(config.peers),
            ssl_context=peer_tls or _map_tls(config, node),
        )
        app[MAP_SYNC] = map_sync
        mover = Mover(
            node,
            node.cluster,
            secret=config.cluster_secret,
            previous_secret=config.cluster_secret_previous,
        )
        mover.add_routes(app)
        map_sync.on_change.append(mover.map_changed)
    access_log = logging.getLogger("aiohttp.access") if log.isEnabledFor(logging.DEBUG) else None
    runner = web.AppRunner(app, access_log=access_log, shutdown_timeout=SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port, ssl_context=http_tls).start()
    except OSError as e:
        _fail(SERVE_PROG, f"--port: cannot listen on {config.host}:{config.port}: {e.strerror}")
        await runner.cleanup()
        await node.close()
        return 1
    resp = None
    if config.resp_port:
        from crdtkv.resp.server import RespLimits, RespServer

        resp = RespServer(
            node,
            replica_id=config.replica_id,
            cluster_secret=config.cluster_secret,
            auth=auth,
            durability=config.durability,
            peers_status=replication.status if replication else None,
            resp_limits=RespLimits(
                clients_max=config.resp_clients_max,
                value_bytes_max=config.body_bytes_max,
                stalled_s=config.resp_stalled_s,
            ),
            flushall=config.enable_flushall,
        )
        try:
            await resp.start(config.host, config.resp_port, ssl=resp_tls)
        except OSError as e:
            _fail(
                SERVE_PROG,
                f"--resp-port: cannot listen on {config.host}:{config.resp_port}: {e.strerror}",
            )
            await runner.cleanup()
            await node.close()
            return 1
    if replication is not None:
        await replication.start()
    if map_sync is not None:
        await map_sync.start()
    if mover is not None:
        await mover.start()
    where = _url(config)
    if resp is not None:
        where += f" and {'rediss' if resp_tls else 'redis'}://{_host(config)}:{config.resp_port}"
    if config.auth_file is not None:
        # Only with an auth file: without one, SIGHUP stops the process as it always did.
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_auth, auth)
    print(f"crdtkv replica {config.replica_id} serving on {where}", flush=True)
    await _wait_for_stop(node)
    log.info("shutting down: finishing in-flight requests")
    if resp is not None:
        await resp.stop()
    if mover is not None:
        await mover.stop()
    if map_sync is not None:
        await map_sync.stop()
    if replication is not None:
        await replication.stop()
    await runner.cleanup()  # stop accepting, let in-flight requests finish
    await node.close()  # flush, final checkpoint, close RocksDB
    if node.failed is not None:
        log.critical("stopped after a storage failure: %s", node.failed)
        return 1
    log.info("stopped cleanly")
    return 0


def _reload_auth(auth: Auth) -> None:
    """SIGHUP: re-read the auth file (and nothing else); a bad file changes nothing."""
    from crdtkv.auth import AuthFileError

    try:
        n = auth.reload()
    except AuthFileError as e:
        log.error(
            "SIGHUP: auth file not reloaded; the %d users before stay in force: %s",
            len(auth.entries),
            e,
        )
        return
    log.info("SIGHUP: auth file %s reloaded: %d users", auth.path, n)


async def _wait_for_stop(node: Node) -> None:
    """Until SIGINT, SIGTERM or a storage failure (``node.stopped``)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Left installed through shutdown: a second signal must not cut the final flush.
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(node.stopped.wait())]
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()


def _tls_contexts(
    config: ServeConfig,
) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None, ssl.SSLContext | None]:
    """The TLS contexts of the HTTP listener, the RESP listener and the replication
    client (None: plain; no replication client context without https:// peers)."""
    from crdtkv import tls

    http = resp = peer = None
    mutual = config.tls_peer_auth == "mutual"
    if config.tls_cert is not None and config.tls_key is not None:
        # Mutual: the HTTP listener asks for a client certificate (API clients may
        # send none; the replication route refuses a request without one).  RESP
        # never carries replication, so it does not ask.
        http = tls.server_context(
            config.tls_cert, config.tls_key, client_ca=config.tls_ca if mutual else None
        )
        resp = tls.server_context(config.tls_cert, config.tls_key)
    if any(url.startswith("https://") for url in config.peers.values()):
        peer = tls.client_context(
            config.tls_ca,
            cert=config.tls_cert if mutual else None,
            key=config.tls_key if mutual else None,
        )
    return http, resp, peer


def _map_tls(config: ServeConfig, node: Node) -> ssl.SSLContext | None:
    """The client context for https:// processes of the map (None: none is https)."""
    if node.cluster is None or not any(
        n.http.startswith("https://") for n in node.cluster.map.nodes()
    ):
        return None
    from crdtkv import tls

    mutual = config.tls_peer_auth == "mutual"
    return tls.client_context(
        config.tls_ca,
        cert=config.tls_cert if mutual else None,
        key=config.tls_key if mutual else None,
    )


def _host(config: ServeConfig) -> str:
    return f"[{config.host}]" if ":" in config.host else config.host


def _url(config: ServeConfig) -> str:
    scheme = "https" if config.tls_cert else "http"
    return f"{scheme}://{_host(config)}:{config.port}"


# -- the command table ---------------------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "serve": Command("run one replica in the foreground until SIGINT/SIGTERM", serve_main),
    "cluster": Command(
        "run local replicas on 127.0.0.1: N fully meshed, or S shards x R regions",
        _lazy("crdtkv.tools.cluster:main"),
    ),
    "cluster-map": Command(
        "show a sharded cluster's map, or change it (set)",
        _lazy("crdtkv.tools.cluster_map:main"),
    ),
    "bench": Command("benchmark a running cluster", _lazy("crdtkv.tools.bench:main")),
    "reshard": Command(
        "move hash slots to another shard while writes go on",
        _lazy("crdtkv.tools.reshard:main"),
    ),
}


def _client_commands() -> dict[str, Command]:
    from crdtkv.tools.client_cli import COMMANDS as CLIENT

    return {name: Command(help, run) for name, (help, run) in CLIENT.items()}


COMMANDS.update(_client_commands())


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: crdtkv <command> [options]",
        "",
        "A geo-replicated key-value store in which every value is a CRDT.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items()),
        "",
        "Run 'crdtkv <command> --help' for a command's options.",
    ]
    return "\n".join(lines)


def _version() -> str:
    # From the installed metadata: the package __init__ may not run when the
    # editable install resolves crdtkv as a namespace package.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("crdtkv")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"crdtkv {_version()}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        _fail("crdtkv", f"unknown command {args[0]!r}; choose from {', '.join(COMMANDS)}")
        return 2
    try:
        return command.run(args[1:], os.environ)
    except SystemExit as e:  # argparse's --help exits; callers of main() get a status instead
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 1


if __name__ == "__main__":
    sys.exit(main())

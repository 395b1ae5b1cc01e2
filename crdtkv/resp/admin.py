"""Connection and server commands: what clients send on their own.

HELLO, AUTH, ACL WHOAMI, CLIENT, SELECT, PING, ECHO, QUIT, RESET, COMMAND,
CONFIG GET, INFO, DBSIZE, TIME, and ``CRDTKV.SESSION``, the causal session of
a connection.  They see the connection (``crdtkv.resp.server.Connection``).
"""

from __future__ import annotations

import fnmatch
import os
import platform
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from crdtkv import limits
from crdtkv.auth import OPEN_USER
from crdtkv.cluster.slots import format_ranges
from crdtkv.errors import BadRequest
from crdtkv.resp import args as A
from crdtkv.resp.commands import COMMANDS, Command, Context, Run, command, command_keys
from crdtkv.resp.values import NULL_ARRAY, OK, RespError, RMap, Status, syntax_error
from crdtkv.versions import RELEASE

if TYPE_CHECKING:
    from crdtkv.resp.server import Connection

__all__ = ["REDIS_VERSION"]

REDIS_VERSION = "7.2.0"  # the Redis whose commands crdtkv answers (HELLO, INFO)


# The package's own: an editable install's metadata keeps the version it was installed at.
__version__ = RELEASE
_NO_KEYS = (0, 0, 0)


def _conn(ctx: Context) -> Connection:
    return cast("Connection", ctx)


def _server_cmd(name: str, arity: int, **kw: Any) -> Callable[[Run], Run]:
    kw.setdefault("data", False)
    kw.setdefault("keys", _NO_KEYS)
    kw.setdefault("group", "connection")
    return command(name, arity, **kw)


# -- connection ---------------------------------------------------------------------------------
@_server_cmd("PING", -1, flags=("fast",), summary="Returns the server's liveliness response.")
def ping(ctx: Context, argv: list[bytes]) -> Any:
    if len(argv) > 1:
        raise RespError("ERR wrong number of arguments for 'ping' command")
    return argv[0] if argv else Status("PONG")


@_server_cmd("ECHO", 2, flags=("fast",), summary="Returns the given string.")
def echo(ctx: Context, argv: list[bytes]) -> Any:
    return argv[0]


@_server_cmd("QUIT", -1, noauth=True, summary="Closes the connection.")
def quit_(ctx: Context, argv: list[bytes]) -> Any:
    _conn(ctx).quit()
    return OK


_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."


def _check_password(conn: Connection, user: bytes | None, password: bytes) -> None:
    """AUTH: ``user``'s token (``--auth-file``), or the default user's password
    (``--requirepass``/``--auth-token``).  Without a user name, any user's token: a token
    names its user, as over HTTP.  A failure leaves the connection as it was."""
    users = conn.server.auth.resp
    if not users.enabled:  # no password at all: as Redis's nopass default user
        if user is None:
            raise RespError(
                "ERR AUTH <password> called without any password configured for the default "
                "user. Are you sure your configuration is correct?"
            )
        if user != b"default" or password != b"":
            raise RespError(_WRONGPASS)
        conn.set_user(OPEN_USER)
        return
    found = users.check(user, password)  # constant time (crdtkv.auth.Users)
    if found is None:
        raise RespError(_WRONGPASS)
    conn.set_user(found)


@_server_cmd("AUTH", -2, noauth=True, summary="Authenticates the connection.")
def auth(ctx: Context, argv: list[bytes]) -> Any:
    if len(argv) > 2:
        raise syntax_error()
    user, password = (argv[0], argv[1]) if len(argv) == 2 else (None, argv[0])
    _check_password(_conn(ctx), user, password)
    return OK


@_server_cmd("HELLO", -1, noauth=True, summary="Handshakes with the server.")
def hello(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    proto = conn.proto
    i = 0
    if argv:
        try:
            proto = A.integer(argv[0])
        except RespError:
            raise RespError("ERR Protocol version is not an integer or out of range") from None
        if proto not in (2, 3):
            raise RespError("NOPROTO unsupported protocol version")
        i = 1
    name: str | None = None
    while i < len(argv):
        opt = A.upper(argv[i])
        if opt == "AUTH" and i + 2 < len(argv):
            _check_password(conn, argv[i + 1], argv[i + 2])
            i += 3
        elif opt == "SETNAME" and i + 1 < len(argv):
            name = _client_name(argv[i + 1])
            i += 2
        else:
            raise RespError(f"ERR Syntax error in HELLO option '{argv[i].decode('latin-1')}'")
    if not conn.authed:
        raise RespError(
            "NOAUTH HELLO must be called with the client already authenticated, "
            "otherwise the HELLO <proto> AUTH <user> <pass> option can be used to "
            "authenticate the client and select the RESP protocol version at the "
            "same time"
        )
    conn.proto = proto
    if name is not None:
        conn.name = name or None
    return RMap(
        [
            ("server", "redis"),
            ("version", REDIS_VERSION),
            ("proto", proto),
            ("id", conn.id),
            ("mode", "standalone" if conn.node.cluster is None else "cluster"),
            ("role", "master"),
            ("modules", []),
            ("crdtkv_version", __version__),
            ("replica_id", conn.server.replica_id),
        ]
    )


@_server_cmd("RESET", 1, summary="Resets the connection.")
def reset(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    conn.proto = 2
    conn.name = None
    conn.token = None
    conn.wait_ms = limits.WAIT_MS_DEFAULT
    conn.set_user(None if conn.server.auth.resp.enabled else OPEN_USER)
    conn.multi, conn.multi_failed = None, False
    return Status("RESET")


@_server_cmd("SELECT", 2, flags=("fast",), summary="Changes the selected database.")
def select(ctx: Context, argv: list[bytes]) -> Any:
    db = A.integer(argv[0])
    if db != 0:
        raise RespError("ERR DB index is out of range (crdtkv has one database: 0)")
    return OK


@_server_cmd(
    "ACL",
    -2,
    group="server",
    summary="ACL WHOAMI: returns the connection's user name (users come from --auth-file).",
)
def acl(ctx: Context, argv: list[bytes]) -> Any:
    """``ACL WHOAMI`` only: users come from ``--auth-file`` (re-read on SIGHUP), not ACL."""
    conn = _conn(ctx)
    sub = A.upper(argv[0])
    if sub == "WHOAMI" and len(argv) == 1:
        return conn.user.name if conn.user is not None else None
    raise RespError(
        f"ERR unknown subcommand or wrong number of arguments for 'acl|{sub.lower()}' command "
        "(crdtkv answers ACL WHOAMI; its users come from crdtkv serve --auth-file)"
    )


def _client_name(b: bytes) -> str:
    name = A.text(b)
    if any(c <= " " or c > "~" for c in name):
        raise RespError("ERR Client names cannot contain spaces, newlines or special characters.")
    return name


@_server_cmd("CLIENT", -2, summary="A container for client connection commands.")
def client(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    sub = A.upper(argv[0])
    rest = argv[1:]
    if sub == "SETNAME" and len(rest) == 1:
        conn.name = _client_name(rest[0]) or None
        return OK
    if sub == "GETNAME" and not rest:
        return conn.name
    if sub == "ID" and not rest:
        return conn.id
    if sub == "SETINFO" and len(rest) == 2:
        attr = A.upper(rest[0])
        if attr not in ("LIB-NAME", "LIB-VER"):
            raise RespError(f"ERR Unrecognized option '{rest[0].decode('latin-1')}'")
        conn.lib[attr.lower()] = A.text(rest[1])[:128]
        return OK
    if sub == "INFO" and not rest:
        return _client_line(conn) + "\n"
    if sub == "LIST":
        return "".join(_client_line(c) + "\n" for c in conn.server.clients.values())
    if sub in ("NO-EVICT", "NO-TOUCH") and len(rest) == 1:
        return OK
    raise RespError(
        f"ERR unknown subcommand or wrong number of arguments for 'client|{sub.lower()}' command"
    )


def _client_line(c: Connection) -> str:
    age = int(time.time() - c.created)
    return (
        f"id={c.id} addr={c.addr} name={c.name or ''} age={age} db=0 "
        f"user={c.user.name if c.user is not None else 'default'} resp={c.proto} "
        f"lib-name={c.lib.get('lib-name', '')} lib-ver={c.lib.get('lib-ver', '')}"
    )


# -- transactions -------------------------------------------------------------------------------
@_server_cmd(
    "MULTI",
    1,
    group="transactions",
    flags=("fast",),
    summary="Starts a transaction: the commands up to EXEC run together at this replica.",
)
def multi(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    if conn.multi is not None:
        raise RespError("ERR MULTI calls can not be nested")
    conn.multi = []
    conn.multi_failed = False
    return OK


@_server_cmd(
    "EXEC",
    1,
    data=True,
    writes=True,
    group="transactions",
    summary="Runs the commands queued since MULTI, with nothing in between (at this "
    "replica; other replicas apply them as they arrive).",
)
def exec_(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    if conn.multi is None:
        raise RespError("ERR EXEC without MULTI")
    if conn.multi_failed:
        conn.multi, conn.multi_failed = None, False
        raise RespError("EXECABORT Transaction discarded because of previous errors.")
    return conn.run_multi()


@_server_cmd(
    "DISCARD",
    1,
    group="transactions",
    flags=("fast",),
    summary="Discards the commands queued since MULTI.",
)
def discard(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    if conn.multi is None:
        raise RespError("ERR DISCARD without MULTI")
    conn.multi, conn.multi_failed = None, False
    return OK


@_server_cmd(
    "WATCH",
    -2,
    group="transactions",
    flags=("fast",),
    summary="Not supported: a CRDT store has no check-and-set across replicas.",
)
def watch(ctx: Context, argv: list[bytes]) -> Any:
    if _conn(ctx).multi is not None:
        raise RespError("ERR WATCH inside MULTI is not allowed")
    raise RespError(
        "ERR WATCH is not supported: every replica accepts writes, so there is no "
        "check-and-set across replicas (MULTI/EXEC without WATCH works)"
    )


@_server_cmd(
    "UNWATCH",
    1,
    group="transactions",
    flags=("fast",),
    summary="Forgets every watched key (crdtkv watches none).",
)
def unwatch(ctx: Context, argv: list[bytes]) -> Any:
    return OK


# -- sessions -----------------------------------------------------------------------------------
@_server_cmd(
    "CRDTKV.SESSION",
    -1,
    summary="Reads or sets the connection's causal session token (read-your-writes across "
    "replicas).",
)
def session(ctx: Context, argv: list[bytes]) -> Any:
    """``CRDTKV.SESSION``: the connection's session token: the one set, grown by every
    command that ran since (by what this replica had applied then); with none set,
    everything this replica has applied.  ``CRDTKV.SESSION token [WAIT ms]``: serve
    that session: each later command waits (at most ``ms``, default 1000) until
    this replica has applied what the token covers, or fails with
    ``-SESSIONUNAVAILABLE`` and leaves the token unchanged (as HTTP stamps a
    refusal with the request's own token: this replica's dots in it would make
    the session wait for them everywhere else).  ``CRDTKV.SESSION RESET``: stop."""
    conn = _conn(ctx)
    if not argv:
        token = conn.token if conn.token is not None else conn.node.token_now(None)
        return conn.server.signer.encode(token)
    if A.upper(argv[0]) == "RESET" and len(argv) == 1:
        conn.token = None
        conn.wait_ms = limits.WAIT_MS_DEFAULT
        return OK
    wait_ms = limits.WAIT_MS_DEFAULT
    if len(argv) == 3 and A.upper(argv[1]) == "WAIT":
        wait_ms = min(A.integer(argv[2], 0), limits.WAIT_MS_MAX)
    elif len(argv) != 1:
        raise syntax_error()
    try:
        token = conn.server.signer.decode(A.text(argv[0]))
    except BadRequest as e:
        raise RespError(f"ERR {e.message}") from None
    conn.token = token
    conn.wait_ms = wait_ms
    return OK


# -- server -------------------------------------------------------------------------------------
@_server_cmd(
    "DBSIZE",
    1,
    data=True,
    group="server",
    flags=("fast",),
    summary="Returns the number of keys in the database.",
)
def dbsize(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    return conn.node.live_keys()


@_server_cmd("TIME", 1, group="server", flags=("fast",), summary="Returns the server time.")
def time_(ctx: Context, argv: list[bytes]) -> Any:
    ns = time.time_ns()
    return [str(ns // 1_000_000_000), str(ns // 1000 % 1_000_000)]


def _config(conn: Connection) -> list[tuple[str, str]]:
    server = conn.server
    return [
        ("save", ""),
        ("appendonly", "yes"),
        ("appendfsync", "always" if server.durability == "fsync" else "everysec"),
        ("databases", "1"),
        ("maxclients", str(server.limits.clients_max)),
        ("port", str(server.port)),
        ("proto-max-bulk-len", str(server.limits.value_bytes_max)),
        ("timeout", "0"),
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("cluster-enabled", "no" if conn.node.cluster is None else "yes"),
        ("requirepass", ""),  # never shown; set or not
    ]


@_server_cmd("CONFIG", -2, group="server", summary="A container for server configuration commands.")
def config(ctx: Context, argv: list[bytes]) -> Any:
    conn = _conn(ctx)
    sub = A.upper(argv[0])
    if sub == "GET" and len(argv) >= 2:
        patterns = [A.text(p).lower() for p in argv[1:]]
        return RMap(
            (k, v) for k, v in _config(conn) if any(fnmatch.fnmatchcase(k, p) for p in patterns)
        )
    if sub == "SET":
        raise RespError("ERR CONFIG SET is not supported: crdtkv serve takes its settings at start")
    if sub == "RESETSTAT" and len(argv) == 1:
        return OK
    raise RespError(
        f"ERR unknown subcommand or wrong number of arguments for 'config|{sub.lower()}' command"
    )


def info_text(conn: Connection, sections: list[str]) -> str:
    server = conn.server
    node = conn.node
    stats = server.stats
    wanted = {s.lower() for s in sections} or {"default"}
    every = bool(wanted & {"all", "everything", "default"})
    out: list[str] = []

    def section(name: str, fields: list[tuple[str, Any]]) -> None:
        if every or name.lower() in wanted:
            out.append(f"# {name}")
            out.extend(f"{k}:{v}" for k, v in fields)
            out.append("")

    section(
        "Server",
        [
            ("redis_version", REDIS_VERSION),
            ("crdtkv_version", __version__),
            ("redis_mode", "standalone" if node.cluster is None else "cluster"),
            ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
            ("process_id", os.getpid()),
            ("tcp_port", server.port),
            ("uptime_in_seconds", int(time.time() - stats.started)),
            ("python_version", platform.python_version()),
            ("replica_id", server.replica_id),
        ],
    )
    section(
        "Clients",
        [("connected_clients", len(server.clients)), ("maxclients", server.limits.clients_max)],
    )
    if every or "memory" in wanted:
        try:
            import resource

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        except ImportError:  # pragma: no cover - not on Linux
            rss = 0
        section("Memory", [("used_memory_rss", rss), ("maxmemory", 0)])
    section(
        "Persistence",
        [
            ("loading", 0),
            ("aof_enabled", 1),
            ("durability", server.durability),
            ("log_position", node.replica.log_pos),
            ("durable_position", node.durable_pos),
        ],
    )
    section(
        "Stats",
        [
            ("total_connections_received", stats.connections),
            ("total_commands_processed", stats.commands),
            ("rejected_connections", stats.rejected),
            ("total_error_replies", stats.errors),
            ("protocol_errors", stats.protocol_errors),
        ],
    )
    if every or "replication" in wanted:
        peers = dict(server.peers_status()) if server.peers_status else {}
        fields: list[tuple[str, Any]] = [("role", "master"), ("crdt_peers", len(peers))]
        for i, (pid, p) in enumerate(sorted(peers.items())):
            fields.append(
                (
                    f"peer{i}",
                    f"id={pid},url={p.get('url', '')},reachable={int(bool(p.get('reachable')))},"
                    f"lag_ops={p.get('lag_ops', 0)},acked={p.get('acked', 0)}",
                )
            )
        section("Replication", fields)
    state = node.cluster
    if state is None:
        section("Cluster", [("cluster_enabled", 0)])
    else:
        section(
            "Cluster",
            [
                ("cluster_enabled", 1),
                ("cluster_epoch", state.epoch),
                ("cluster_shard", state.shard.id),
                ("cluster_region", state.region),
                ("cluster_slots", format_ranges(state.map.slots_of(state.shard.id)) or "-"),
                ("cluster_slots_count", sum(1 for o in state.map.owners if o == state.shard.id)),
                ("cluster_slots_handed_over", format_ranges(state.handed_over) or "-"),
            ],
        )
    if every or "keyspace" in wanted:
        n = node.live_keys()
        section("Keyspace", [("db0", f"keys={n},expires=0,avg_ttl=0")] if n else [])
    return "\r\n".join(out)


@_server_cmd(
    "INFO", -1, group="server", summary="Returns information and statistics about the server."
)
def info(ctx: Context, argv: list[bytes]) -> Any:
    return info_text(_conn(ctx), [A.text(a) for a in argv])


# -- COMMAND ------------------------------------------------------------------------------------
# A keyspace command's ACL category by its COMMAND DOCS group, as Redis's.
_GROUP_CATEGORY = {
    "string": "@string",
    "generic": "@keyspace",
    "hash": "@hash",
    "sorted_set": "@sortedset",
    "set": "@set",
    "hyperloglog": "@hyperloglog",
    "vector_set": "@vectorset",
    "list": "@list",
}


def _acl_categories(cmd: Command) -> list[Any]:
    """@read or @write, the type's category, @fast or @slow (and @blocking): a keyspace
    command's ACL categories as Redis lists them (``COMMAND INFO``); none for the others."""
    category = _GROUP_CATEGORY.get(cmd.group)
    if not cmd.data or category is None:
        return []
    speed = "@fast" if "fast" in cmd.flags else "@slow"
    out = [Status("@write" if cmd.writes else "@read"), Status(category), Status(speed)]
    if "blocking" in cmd.flags:
        out.append(Status("@blocking"))
    return out


def _command_info(cmd: Command) -> list[Any]:
    first, last, step = cmd.keys
    return [
        cmd.name.lower(),
        cmd.arity,
        [Status(f) for f in cmd.command_flags()],
        first,
        last,
        step,
        _acl_categories(cmd),
        [],
        [],
        [],
    ]


def _command_docs(cmd: Command) -> RMap:
    return RMap(
        [
            ("summary", cmd.summary or cmd.name),
            ("since", "1.0.0"),
            ("group", cmd.group),
        ]
    )


def _named(argv: list[bytes]) -> list[Command | None]:
    return [COMMANDS.get(A.upper(a)) for a in argv]


@_server_cmd(
    "COMMAND", -1, group="server", summary="Returns detailed information about all commands."
)
def command_(ctx: Context, argv: list[bytes]) -> Any:
    if not argv:
        return [_command_info(c) for c in COMMANDS.values()]
    sub = A.upper(argv[0])
    rest = argv[1:]
    if sub == "COUNT" and not rest:
        return len(COMMANDS)
    if sub == "LIST":
        return [c.name.lower() for c in COMMANDS.values()]
    if sub == "INFO":
        cmds = list(COMMANDS.values()) if not rest else _named(rest)
        return [_command_info(c) if c is not None else NULL_ARRAY for c in cmds]
    if sub == "DOCS":
        cmds = list(COMMANDS.values()) if not rest else _named(rest)
        return RMap((c.name.lower(), _command_docs(c)) for c in cmds if c is not None)
    if sub == "GETKEYS" and len(rest) < 2:
        raise RespError("ERR wrong number of arguments for 'command|getkeys' command")
    if sub == "GETKEYS":
        cmd = COMMANDS.get(A.upper(rest[0]))
        if cmd is None:
            raise RespError("ERR Invalid command specified")
        if not cmd.arity_ok(len(rest)):
            raise RespError("ERR Invalid number of arguments specified for command")
        if not cmd.keys[0] and cmd.getkeys is None:
            raise RespError("ERR The command has no key arguments")
        return command_keys(cmd, rest)
    raise RespError(
        f"ERR unknown subcommand or wrong number of arguments for 'command|{sub.lower()}' command"
    )

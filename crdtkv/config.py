"""``crdtkv serve`` settings: command-line options, environment variables, validation.

Every option (docs/api.md, ``crdtkv serve``) can also come from an environment variable (for
containers); the command line wins over the environment.  An empty
environment variable counts as unset, because container tooling often sets
variables to "" rather than leaving them out.  ``--peer`` options replace
``CRDTKV_PEERS`` as a whole (they are not merged with it).

Extras beyond the v1 contract: ``--max-offset-ms``, ``--body-bytes-max``,
``--tls-cert``/``--tls-key``/``--tls-ca``/``--tls-peer-auth`` (TLS for both
listeners and for replication: ``crdtkv.tls``; the files are loaded here, so a
bad one is a usage error), ``--replication-setting NAME=VALUE`` (a field of
``crdtkv.limits.ReplicationSettings``; repeatable),
``--log-level`` (with ``CRDTKV_*`` variables too), ``--check-config``
(validate, print the resolved settings as JSON with secrets redacted, exit 0)
and ``--auth-file`` (named users, read and validated here; ``crdtkv.auth``).

Validation errors name the option (or the environment variable the bad value
came from) in one line; the CLI prints it and exits with status 2.  The
limits are checked together here (``crdtkv.limits``): replication settings
against the bounds every receiver enforces, and the client body limit
against what a replication message can carry.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from crdtkv import limits, tls
from crdtkv.auth import Auth, AuthFileError, UserEntry, load_auth_file
from crdtkv.cliutil import ArgParser as _Parser
from crdtkv.cliutil import UsageError
from crdtkv.cluster.map import ClusterMap
from crdtkv.cluster.slots import format_ranges
from crdtkv.limits import LimitError, ReplicationSettings

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_RESP_PORT",
    "DURABILITY_MODES",
    "TLS_PEER_AUTH",
    "ServeCommand",
    "ServeConfig",
    "UsageError",
    "build_serve_parser",
    "parse_serve_args",
    "parse_serve_command",
]

PROG = "crdtkv serve"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7001
DEFAULT_RESP_PORT = 6379  # Redis's: redis-cli with no options reaches the replica
RESP_CLIENTS_MAX = 10_000
DURABILITY_MODES = ("fsync", "wal")
TLS_PEER_AUTH = ("secret", "mutual")  # how replicas prove who they are over TLS
MAX_OFFSET_MS_MAX = 3_600_000  # an hour of tolerated clock skew is already a broken clock
CLOCK_OFFSET_MS_MAX = 3_600_000  # --clock-offset-ms (testing) is within +-an hour
_REPLICA_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class ServeConfig:
    """Everything one replica needs to run; validated, immutable."""

    replica_id: str  # stable id of this replica, 1..64 chars of [A-Za-z0-9_.-]
    host: str = DEFAULT_HOST  # address to listen on
    port: int = DEFAULT_PORT  # port to listen on
    data_dir: str = ""  # RocksDB directory; "" means ./data/<replica_id> (see resolved_data_dir)
    peers: dict[str, str] = field(default_factory=dict)  # the other replicas: id -> base URL
    cluster_secret: str | None = None  # authenticates replication traffic and session tokens
    cluster_secret_previous: str | None = None  # also accepted on incoming traffic (rotation)
    auth_token: str | None = None  # when set, /v1 and /metrics need "Authorization: Bearer <it>"
    durability: str = "fsync"  # "fsync" survives power loss, "wal" a process crash only
    max_offset_ms: int = 500  # remote HLC timestamps further ahead than this are refused
    body_bytes_max: int = limits.BODY_BYTES_MAX  # client request bodies over this get 413
    resp_port: int = 0  # the Redis protocol's port; 0: off (the command line's default is 6379)
    requirepass: str | None = None  # RESP's password (AUTH); None: the auth token, if any
    resp_clients_max: int = RESP_CLIENTS_MAX  # RESP connections at once
    resp_stalled_s: float = 60.0  # a RESP client that takes no reply this long is dropped
    enable_flushall: bool = False  # FLUSHALL / FLUSHDB over RESP (off: they are refused)
    # TLS (crdtkv.tls): with a certificate, both listeners speak TLS only.
    tls_cert: str | None = None  # the listeners' certificate chain (PEM)
    tls_key: str | None = None  # its private key (PEM, unencrypted)
    tls_ca: str | None = None  # verifies https:// peers (and client certs in mutual mode)
    tls_peer_auth: str = "secret"  # "mutual": replication also needs a verified client cert
    # --auth-file: named users with a token and a role (crdtkv.auth), re-read on SIGHUP.
    auth_file: str | None = None
    auth_users: tuple[UserEntry, ...] = ()  # the file's users as read at start
    # Testing only (hidden): this replica's clock reads the machine's wall clock plus
    # this offset, to run real processes with skewed clocks (simulations.nemesis).
    clock_offset_ms: int = 0
    # --cluster-map: this process is one replica of a sharded cluster (crdtkv.cluster).
    # Its peers are its shard's replicas in the other regions, named by the map.
    cluster_map_file: str | None = None
    cluster_map: ClusterMap | None = field(default=None, compare=False)
    # The replication core's settings (validated when built: crdtkv.limits).
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)

    @property
    def resolved_data_dir(self) -> str:
        return self.data_dir or os.path.join("data", self.replica_id)

    def to_json(self) -> dict[str, Any]:
        """The resolved settings, secrets redacted (``--check-config`` prints this)."""
        return {
            "replica_id": self.replica_id,
            "host": self.host,
            "port": self.port,
            "data_dir": os.path.abspath(self.resolved_data_dir),
            "peers": dict(sorted(self.peers.items())),
            "cluster_secret": _redact(self.cluster_secret),
            "cluster_secret_previous": _redact(self.cluster_secret_previous),
            "auth_token": _redact(self.auth_token),
            "durability": self.durability,
            "max_offset_ms": self.max_offset_ms,
            "body_bytes_max": self.body_bytes_max,
            "resp_port": self.resp_port,
            "requirepass": _redact(self.requirepass),
            "resp_clients_max": self.resp_clients_max,
            "enable_flushall": self.enable_flushall,
            **self._tls_json(),
            **_auth_json(self),
            **_replication_json(self.replication),
            **self._cluster_json(),
            # Hidden testing option: shown only when set.
            **({"clock_offset_ms": self.clock_offset_ms} if self.clock_offset_ms else {}),
        }

    def _cluster_json(self) -> dict[str, Any]:
        m = self.cluster_map
        if m is None:
            return {}
        shard = m.shard_of(self.replica_id)
        return {
            "cluster": {
                "map_file": _abspath(self.cluster_map_file),
                "epoch": m.epoch,
                "shard": shard.id,
                "region": m.node(self.replica_id).region,
                "slots": format_ranges(m.slots_of(shard.id)),
            }
        }

    def _tls_json(self) -> dict[str, Any]:
        """The TLS settings, when there are any (file paths made absolute)."""
        if self.tls_cert is None and self.tls_ca is None:
            return {}
        paths = {"cert": self.tls_cert, "key": self.tls_key, "ca": self.tls_ca}
        tls_json: dict[str, Any] = {k: _abspath(v) for k, v in paths.items()}
        return {"tls": {**tls_json, "peer_auth": self.tls_peer_auth}}

    def make_auth(self) -> Auth:
        """The users in force at start: the auth file's, and the ``default`` user of
        --auth-token (HTTP) and --requirepass (RESP; by default the auth token)."""
        return Auth(
            self.auth_users,
            http_token=self.auth_token,
            resp_password=self.requirepass or self.auth_token,
            path=self.auth_file,
        )


@dataclass(frozen=True)
class ServeCommand:
    """A parsed ``crdtkv serve`` command line."""

    config: ServeConfig  # the settings
    check_config: bool = False  # print the resolved config and exit instead of serving
    log_level: str = "INFO"  # stderr log level


def _replication_json(settings: ReplicationSettings) -> dict[str, Any]:
    """The replication settings that differ from the defaults, if any."""
    defaults = asdict(ReplicationSettings())
    changed = {k: v for k, v in asdict(settings).items() if v != defaults[k]}
    return {"replication": changed} if changed else {}


def _abspath(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


def _auth_json(config: ServeConfig) -> dict[str, Any]:
    """--auth-file and its users' roles, when set (never their tokens)."""
    if config.auth_file is None:
        return {}
    return {
        "auth_file": os.path.abspath(config.auth_file),
        "auth_users": {u.name: u.role for u in config.auth_users},
    }


def _redact(secret: str | None) -> str | None:
    # Printing a secret to stdout would leak it into logs and CI output.
    return None if secret is None else "<redacted>"


# -- the parser --------------------------------------------------------------------------


def build_serve_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        allow_abbrev=False,  # "--rep" must not silently mean --replica-id
        description="Run one crdtkv replica in the foreground until SIGINT/SIGTERM.",
        epilog="Each option can also be set with the environment variable in brackets; "
        "the command line wins.",
    )
    add = p.add_argument
    add("--replica-id", metavar="ID", help="stable id of this replica [CRDTKV_REPLICA_ID]")
    add("--host", metavar="H", help=f"address to listen on (default {DEFAULT_HOST}) [CRDTKV_HOST]")
    add("--port", metavar="P", help=f"port to listen on (default {DEFAULT_PORT}) [CRDTKV_PORT]")
    add(
        "--data-dir",
        metavar="DIR",
        help="RocksDB directory (default ./data/<replica-id>) [CRDTKV_DATA_DIR]",
    )
    add(
        "--peer",
        metavar="ID=URL",
        action="append",
        help="another replica; repeatable [CRDTKV_PEERS, comma-separated ID=URL]",
    )
    add("--cluster-secret", metavar="S", help="shared replication secret [CRDTKV_CLUSTER_SECRET]")
    add(
        "--cluster-secret-previous",
        metavar="S",
        help="the secret being rotated out, still accepted [CRDTKV_CLUSTER_SECRET_PREVIOUS]",
    )
    add(
        "--auth-token",
        metavar="T",
        help="require 'Authorization: Bearer T' on /v1 and /metrics [CRDTKV_AUTH_TOKEN]",
    )
    add(
        "--auth-file",
        metavar="PATH",
        help="TOML file of users ([users.NAME] with token and role read-write|read-only) "
        "for HTTP and RESP; SIGHUP re-reads it [CRDTKV_AUTH_FILE]",
    )
    add("--durability", metavar="fsync|wal", help="default fsync [CRDTKV_DURABILITY]")
    add(
        "--max-offset-ms",
        metavar="MS",
        help="largest tolerated clock offset of peers (default 500) [CRDTKV_MAX_OFFSET_MS]",
    )
    add(
        "--body-bytes-max",
        metavar="N",
        help=f"client request body limit (default {limits.BODY_BYTES_MAX}) [CRDTKV_BODY_BYTES_MAX]",
    )
    add(
        "--resp-port",
        metavar="P",
        help=f"Redis protocol (RESP2/RESP3) port; 0 turns it off (default {DEFAULT_RESP_PORT}) "
        "[CRDTKV_RESP_PORT]",
    )
    add(
        "--requirepass",
        metavar="PW",
        help="password RESP clients send with AUTH (default: the auth token, if set) "
        "[CRDTKV_REQUIREPASS]",
    )
    add(
        "--resp-clients-max",
        metavar="N",
        help=f"RESP connections at once (default {RESP_CLIENTS_MAX}) [CRDTKV_RESP_CLIENTS_MAX]",
    )
    # Hidden: tests make it short to see a client that does not read dropped.
    add("--resp-stalled-s", metavar="S", type=float, help=argparse.SUPPRESS)
    # Hidden, testing only [CRDTKV_CLOCK_OFFSET_MS]: shift this replica's clock (the
    # nemesis runs real processes with skewed clocks; docs/api.md "Testing options").
    add("--clock-offset-ms", metavar="MS", help=argparse.SUPPRESS)
    add(
        "--enable-flushall",
        action="store_true",
        default=None,
        help="allow FLUSHALL/FLUSHDB over RESP (deletes every key at every replica) "
        "[CRDTKV_ENABLE_FLUSHALL=1]",
    )
    add(
        "--tls-cert",
        metavar="PATH",
        help="certificate chain (PEM): both listeners speak TLS only [CRDTKV_TLS_CERT]",
    )
    add("--tls-key", metavar="PATH", help="the certificate's private key (PEM) [CRDTKV_TLS_KEY]")
    add(
        "--tls-ca",
        metavar="PATH",
        help="CA bundle (PEM) that peers' certificates must chain to (default: the system's) "
        "[CRDTKV_TLS_CA]",
    )
    add(
        "--tls-peer-auth",
        metavar="secret|mutual",
        help="secret (default): replicas prove themselves with the cluster secret; mutual: "
        "also with a client certificate signed by --tls-ca [CRDTKV_TLS_PEER_AUTH]",
    )
    add(
        "--replication-setting",
        metavar="NAME=VALUE",
        action="append",
        help="tune the replication core, e.g. push_entries_max=2000; repeatable "
        "[CRDTKV_REPLICATION_SETTINGS, comma-separated NAME=VALUE]",
    )
    add(
        "--cluster-map",
        metavar="PATH",
        help="JSON cluster map: this replica serves its shard's slots, and replicates with "
        "its shard's replicas in the other regions (no --peer) [CRDTKV_CLUSTER_MAP]",
    )
    add("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR [CRDTKV_LOG_LEVEL]")
    add("--check-config", action="store_true", help="validate, print the config as JSON, exit")
    return p


# -- resolving option vs environment ---------------------------------------------------------


def _pick(
    cli: str | None, flag: str, environ: Mapping[str, str], var: str
) -> tuple[str, str] | None:
    """The value to use and the name to blame for it: the flag, else the variable."""
    if cli is not None:
        return cli, flag
    env = environ.get(var)
    if env:
        return env, var
    return None


def _int_in(picked: tuple[str, str] | None, default: int, lo: int, hi: int) -> int:
    if picked is None:
        return default
    text, name = picked
    try:
        value = int(text.strip(), 10)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise UsageError(name, f"must be an integer between {lo} and {hi}")
    return value


def _replica_id(picked: tuple[str, str] | None) -> str:
    if picked is None:
        raise UsageError("--replica-id", "is required (or set CRDTKV_REPLICA_ID)")
    value, name = picked
    if not _REPLICA_ID.fullmatch(value):
        raise UsageError(name, "must be 1 to 64 characters of A-Z a-z 0-9 _ . -")
    return value


def _url(text: str, name: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(name, f"{text!r} is not an http:// or https:// URL")
    try:
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        raise UsageError(name, f"{text!r} has a bad port") from None
    if parts.query or parts.fragment:
        raise UsageError(name, f"{text!r}: a peer URL takes no query or fragment")
    return text.rstrip("/")


def _peers(specs: Sequence[str], name: str, self_id: str) -> dict[str, str]:
    peers: dict[str, str] = {}
    for spec in specs:
        peer_id, eq, url = spec.strip().partition("=")
        if not eq:
            raise UsageError(name, f"{spec!r} is not ID=URL")
        if not _REPLICA_ID.fullmatch(peer_id):
            raise UsageError(
                name, f"peer id {peer_id!r} must be 1 to 64 characters of [A-Za-z0-9_.-]"
            )
        if peer_id == self_id:
            raise UsageError(name, f"peer {peer_id!r} is this replica itself")
        if peer_id in peers:
            raise UsageError(name, f"peer {peer_id!r} is given twice")
        peers[peer_id] = _url(url.strip(), name)
    return peers


def _peer_specs(cli: list[str] | None, environ: Mapping[str, str]) -> tuple[list[str], str]:
    if cli is not None:
        return cli, "--peer"
    env = environ.get("CRDTKV_PEERS", "")
    return [s for s in env.split(",") if s.strip()], "CRDTKV_PEERS"


def _cluster_map(picked: tuple[str, str] | None, replica_id: str) -> ClusterMap | None:
    """The map file's map, validated, with this replica in it (None: not sharded)."""
    if picked is None or not picked[0].strip():
        return None
    path, name = picked
    try:
        with open(path, "rb") as f:
            raw = f.read(16 * 1024 * 1024)
    except OSError as e:
        raise UsageError(name, f"cannot read {path!r}: {e.strerror}") from None
    try:
        m = ClusterMap.from_json(json.loads(raw))
    except ValueError as e:  # JSON errors and MapError
        raise UsageError(name, f"{path}: {e}") from None
    if not m.has_node(replica_id):
        raise UsageError(name, f"{path}: replica {replica_id!r} is not in the map")
    return m


def _replication_specs(cli: list[str] | None, environ: Mapping[str, str]) -> tuple[list[str], str]:
    if cli is not None:
        return cli, "--replication-setting"
    env = environ.get("CRDTKV_REPLICATION_SETTINGS", "")
    return [s for s in env.split(",") if s.strip()], "CRDTKV_REPLICATION_SETTINGS"


def _replication(specs: Sequence[str], name: str) -> ReplicationSettings:
    known = [f.name for f in fields(ReplicationSettings)]
    values: dict[str, int] = {}
    for spec in specs:
        setting, eq, text = spec.partition("=")
        setting = setting.strip()
        if not eq:
            raise UsageError(name, f"{spec!r} is not NAME=VALUE")
        if setting not in known:
            raise UsageError(name, f"unknown setting {setting!r}; known: {', '.join(known)}")
        if setting in values:
            raise UsageError(name, f"{setting} is given twice")
        try:
            values[setting] = int(text.strip(), 10)
        except ValueError:
            raise UsageError(name, f"{setting}: must be an integer, not {text!r}") from None
    try:
        return ReplicationSettings(**values)
    except LimitError as e:
        raise UsageError(name, str(e)) from None


def _body_bytes(picked: tuple[str, str] | None, *, replicated: bool) -> int:
    value = _int_in(picked, limits.BODY_BYTES_MAX, 1024, 64 * limits.BODY_BYTES_MAX)
    try:
        limits.check_body_bytes(value, replicated=replicated)
    except LimitError as e:
        raise UsageError(picked[1] if picked else "--body-bytes-max", e.problem) from None
    return value


def _text(picked: tuple[str, str] | None, default: str | None) -> str | None:
    if picked is None:
        return default
    value, name = picked
    if not value or value != value.strip():
        raise UsageError(name, "must not be empty or start or end with whitespace")
    return value


def _auth_file(picked: tuple[str, str] | None) -> tuple[str | None, tuple[UserEntry, ...]]:
    """The auth file's path and users (read and validated now: a bad file stops the start)."""
    path = _text(picked, None)
    if path is None or picked is None:
        return None, ()
    try:
        return path, load_auth_file(path)
    except AuthFileError as e:
        raise UsageError(picked[1], str(e)) from None


def _choice(picked: tuple[str, str] | None, default: str, choices: Sequence[str]) -> str:
    if picked is None:
        return default
    value, name = picked
    if value not in choices:
        raise UsageError(name, f"must be one of {', '.join(choices)}, not {value!r}")
    return value


def _tls(
    ns: argparse.Namespace, environ: Mapping[str, str], peers: dict[str, str], peers_name: str
) -> dict[str, Any]:
    """The TLS fields of ``ServeConfig``, checked: the files load, the key
    matches the certificate, the options fit together."""
    cert_p = _pick(ns.tls_cert, "--tls-cert", environ, "CRDTKV_TLS_CERT")
    key_p = _pick(ns.tls_key, "--tls-key", environ, "CRDTKV_TLS_KEY")
    ca_p = _pick(ns.tls_ca, "--tls-ca", environ, "CRDTKV_TLS_CA")
    auth_p = _pick(ns.tls_peer_auth, "--tls-peer-auth", environ, "CRDTKV_TLS_PEER_AUTH")
    cert, key, ca = _text(cert_p, None), _text(key_p, None), _text(ca_p, None)
    peer_auth = _choice(auth_p, "secret", TLS_PEER_AUTH)
    if cert_p is not None and key_p is None:
        raise UsageError(cert_p[1], "needs --tls-key (or CRDTKV_TLS_KEY), its private key")
    if key_p is not None and cert_p is None:
        raise UsageError(key_p[1], "needs --tls-cert (or CRDTKV_TLS_CERT), its certificate")
    if cert_p is not None and key_p is not None:
        assert cert is not None and key is not None  # _text refuses empty values
        if peer_auth == "mutual" and ca_p is None:
            raise UsageError(
                auth_p[1] if auth_p else "--tls-peer-auth",
                "mutual needs --tls-ca, the CA that signs the replicas' certificates",
            )
        tls.server_context(cert, key, options=(cert_p[1], key_p[1], ""))
        plain = sorted(p for p, url in peers.items() if not url.startswith("https://"))
        if plain:
            raise UsageError(
                peers_name,
                f"peer {plain[0]!r} has an http:// URL, but this replica speaks TLS "
                f"({cert_p[1]}): give its https:// URL",
            )
    elif peer_auth == "mutual":
        assert auth_p is not None
        raise UsageError(auth_p[1], "mutual needs --tls-cert and --tls-key, this replica's")
    if ca_p is not None and ca is not None:
        tls.check_ca(ca, ca_p[1])
    return {"tls_cert": cert, "tls_key": key, "tls_ca": ca, "tls_peer_auth": peer_auth}


# -- the public entry points ----------------------------------------------------------------


def parse_serve_command(argv: Sequence[str], environ: Mapping[str, str]) -> ServeCommand:
    """Parse and validate; raises ``UsageError`` (argparse's --help raises SystemExit(0))."""
    ns = build_serve_parser().parse_args(list(argv))
    replica_id = _replica_id(_pick(ns.replica_id, "--replica-id", environ, "CRDTKV_REPLICA_ID"))
    specs, peers_name = _peer_specs(ns.peer, environ)
    peers = _peers(specs, peers_name, replica_id)
    map_picked = _pick(ns.cluster_map, "--cluster-map", environ, "CRDTKV_CLUSTER_MAP")
    cluster_map = _cluster_map(map_picked, replica_id)
    if cluster_map is not None and map_picked is not None:
        if peers:
            raise UsageError(peers_name, f"give no peers with {map_picked[1]}: the map names them")
        peers = {n.id: n.http for n in cluster_map.peers_of(replica_id)}
    tls_fields = _tls(ns, environ, peers, peers_name)
    config = ServeConfig(
        replica_id=replica_id,
        host=_text(_pick(ns.host, "--host", environ, "CRDTKV_HOST"), DEFAULT_HOST) or DEFAULT_HOST,
        port=_int_in(_pick(ns.port, "--port", environ, "CRDTKV_PORT"), DEFAULT_PORT, 1, 65535),
        data_dir=_text(_pick(ns.data_dir, "--data-dir", environ, "CRDTKV_DATA_DIR"), None)
        or os.path.join("data", replica_id),
        peers=peers,
        cluster_secret=_text(
            _pick(ns.cluster_secret, "--cluster-secret", environ, "CRDTKV_CLUSTER_SECRET"), None
        ),
        cluster_secret_previous=_text(
            _pick(
                ns.cluster_secret_previous,
                "--cluster-secret-previous",
                environ,
                "CRDTKV_CLUSTER_SECRET_PREVIOUS",
            ),
            None,
        ),
        auth_token=_text(_pick(ns.auth_token, "--auth-token", environ, "CRDTKV_AUTH_TOKEN"), None),
        durability=_choice(
            _pick(ns.durability, "--durability", environ, "CRDTKV_DURABILITY"),
            "fsync",
            DURABILITY_MODES,
        ),
        max_offset_ms=_int_in(
            _pick(ns.max_offset_ms, "--max-offset-ms", environ, "CRDTKV_MAX_OFFSET_MS"),
            500,
            0,
            MAX_OFFSET_MS_MAX,
        ),
        body_bytes_max=_body_bytes(
            _pick(ns.body_bytes_max, "--body-bytes-max", environ, "CRDTKV_BODY_BYTES_MAX"),
            replicated=bool(peers),
        ),
        replication=_replication(*_replication_specs(ns.replication_setting, environ)),
        resp_port=_int_in(
            _pick(ns.resp_port, "--resp-port", environ, "CRDTKV_RESP_PORT"),
            DEFAULT_RESP_PORT,
            0,
            65535,
        ),
        requirepass=_text(
            _pick(ns.requirepass, "--requirepass", environ, "CRDTKV_REQUIREPASS"), None
        ),
        resp_clients_max=_int_in(
            _pick(ns.resp_clients_max, "--resp-clients-max", environ, "CRDTKV_RESP_CLIENTS_MAX"),
            RESP_CLIENTS_MAX,
            1,
            1_000_000,
        ),
        resp_stalled_s=ns.resp_stalled_s if ns.resp_stalled_s and ns.resp_stalled_s > 0 else 60.0,
        enable_flushall=bool(ns.enable_flushall)
        or environ.get("CRDTKV_ENABLE_FLUSHALL", "") in ("1", "true", "yes"),
        **tls_fields,
        clock_offset_ms=_int_in(
            _pick(ns.clock_offset_ms, "--clock-offset-ms", environ, "CRDTKV_CLOCK_OFFSET_MS"),
            0,
            -CLOCK_OFFSET_MS_MAX,
            CLOCK_OFFSET_MS_MAX,
        ),
    )
    if cluster_map is not None and map_picked is not None:
        config = replace(config, cluster_map_file=map_picked[0], cluster_map=cluster_map)
    if config.resp_port and config.resp_port == config.port:
        raise UsageError("--resp-port", "must differ from --port")
    auth_picked = _pick(ns.auth_file, "--auth-file", environ, "CRDTKV_AUTH_FILE")
    auth_file, auth_users = _auth_file(auth_picked)
    if auth_file is not None and auth_picked is not None:
        config = replace(config, auth_file=auth_file, auth_users=auth_users)
        try:
            config.make_auth()  # the file's users against --auth-token and --requirepass
        except AuthFileError as e:
            raise UsageError(auth_picked[1], str(e)) from None
    log_level = _choice(
        _pick(ns.log_level, "--log-level", environ, "CRDTKV_LOG_LEVEL"),
        "INFO",
        ("DEBUG", "INFO", "WARNING", "ERROR"),
    )
    return ServeCommand(config, check_config=bool(ns.check_config), log_level=log_level)


def parse_serve_args(argv: Sequence[str], environ: Mapping[str, str]) -> ServeConfig:
    """The validated ``ServeConfig`` of a ``crdtkv serve`` command line."""
    return parse_serve_command(argv, environ).config

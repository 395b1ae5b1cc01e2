"""Who may import and write what: replication never reaches into the HTTP API,
and each replica field replication relies on is written by one module only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from crdtkv.replica.keyspace import Replica

ROOT = Path(__file__).resolve().parents[2]
SCANNED = sorted(
    p for d in ("crdtkv", "replication", "simulations") for p in (ROOT / d).rglob("*.py")
)

# Field -> the one module allowed to write it (assign, delete, mutate in place).
OWNERS = {
    "digest_dirty": "crdtkv/replica/keyspace.py",  # take_digest_dirty hands it over
    "loaded_log": "crdtkv/replica/keyspace.py",  # take_loaded_log hands it over
    "snapshots": "crdtkv/replica/keyspace.py",  # open_snapshot / close_snapshot
    "peer_book": "crdtkv/replica/keyspace.py",  # changed only through PeerBook's methods
    "synced_vv": "crdtkv/replica/peers.py",  # PeerBook.learn_synced / restore
    "_records": "crdtkv/replica/peers.py",  # PeerBook.record / restore
    "_changed": "crdtkv/replica/peers.py",
    # The replica's own bookkeeping: keyspace.py's methods are the only writers
    # (the op modules, persist.py, the node core and the sync receiver call them).
    "states": "crdtkv/replica/keyspace.py",
    "applied": "crdtkv/replica/keyspace.py",
    "log_pos": "crdtkv/replica/keyspace.py",
    "checkpoint_pos": "crdtkv/replica/keyspace.py",
    "log_truncated_to": "crdtkv/replica/keyspace.py",
    "pending": "crdtkv/replica/keyspace.py",
    "dirty": "crdtkv/replica/keyspace.py",
    "tombstones": "crdtkv/replica/keyspace.py",
    "expiring": "crdtkv/replica/keyspace.py",
    "gc_deleted": "crdtkv/replica/keyspace.py",
    "checkpoint_requested": "crdtkv/replica/keyspace.py",
    "durable_vv": "crdtkv/replica/keyspace.py",
}
REPLICA_FIELDS = {
    "states",
    "applied",
    "log_pos",
    "checkpoint_pos",
    "log_truncated_to",
    "pending",
    "dirty",
    "tombstones",
    "expiring",
    "gc_deleted",
    "checkpoint_requested",
    "durable_vv",
}
MUTATORS = {
    "add",
    "append",
    "clear",
    "discard",
    "extend",
    "insert",
    "pop",
    "remove",
    "setdefault",
    "update",
}


def imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def writes(tree: ast.AST) -> list[tuple[str, int]]:
    """(field, line) of every write to an attribute named in OWNERS."""
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        target: ast.expr | None = None
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store | ast.Del):
            target = node
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store | ast.Del):
            target = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in MUTATORS
        ):
            target = node.func.value
        if isinstance(target, ast.Attribute) and target.attr in OWNERS:
            if target.attr in REPLICA_FIELDS and not _is_replica(target.value):
                continue  # e.g. a peer's ``applied`` or a client's ``pending``
            out.append((target.attr, target.lineno))
    return out


def _is_replica(expr: ast.expr) -> bool:
    """Whether ``expr`` names a replica (``r``, ``replica``, ``x.replica``)."""
    return re.search(r"(^|\.)(r|replica)$", ast.unparse(expr)) is not None


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "replication").glob("*.py")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_replication_does_not_import_the_http_api(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    assert {m for m in imports(tree) if m == "crdtkv.api" or m.startswith("crdtkv.api.")} == set()


def test_fields_of_the_replica_are_written_by_their_owner_only() -> None:
    strays = []
    for path in SCANNED:
        rel = str(path.relative_to(ROOT))
        for name, line in writes(ast.parse(path.read_text(), rel)):
            if OWNERS[name] != rel:
                strays.append(f"{rel}:{line} writes {name} (owner: {OWNERS[name]})")
    assert strays == []


def test_the_scan_catches_a_stray_write() -> None:
    code = "r.snapshots.append(s)\nr.digest_dirty = set()\nr.peer_book._records['x'] = 1\n"
    assert writes(ast.parse(code)) == [("snapshots", 1), ("digest_dirty", 2), ("_records", 3)]


def test_the_untyped_peer_fields_are_gone() -> None:
    replica = Replica("r1", "inc")
    for name in ("peer_meta", "peers_dirty", "synced_vv"):
        assert not hasattr(replica, name), name

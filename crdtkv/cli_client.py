"""The command-line client: ``crdtkv get|set|incr|sadd|srem|smembers|pfadd|pfcount|del``.

For operators and shell scripts.  Every command takes ``--url`` (repeatable;
default ``$CRDTKV_URL``, comma-separated, else http://127.0.0.1:7001),
``--session FILE`` (read the causal session token from FILE if it exists,
write the updated token back: consecutive commands then see each other's
writes even when they go to different replicas) and ``--auth-token``
(default ``$CRDTKV_AUTH_TOKEN``).

Output is plain: a value as JSON, counts as integers, set members one per
line.  Exit status: 0 success, 1 the server refused or no replica answered
(one line on stderr with the error code), 2 bad usage; ``get`` of an absent
key prints nothing and exits 1 with ``not_found``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from crdtkv.errors import CrdtkvError

__all__ = ["COMMANDS"]

DEFAULT_URL = "http://127.0.0.1:7001"
NAMESPACES = ("registers", "counters", "sets", "hlls")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser(name: str, help: str) -> _Parser:
    p = _Parser(prog=f"crdtkv {name}", description=help, allow_abbrev=False)
    p.add_argument("--url", action="append", help="a replica URL; repeatable [CRDTKV_URL]")
    p.add_argument("--session", metavar="FILE", help="read and update a session token file")
    p.add_argument("--auth-token", help="bearer token [CRDTKV_AUTH_TOKEN]")
    p.add_argument("--wait-ms", type=int, help="how long a replica may wait for the session")
    return p


def _run(
    name: str,
    help: str,
    add_args: Callable[[_Parser], None],
    act: Callable[[Any, argparse.Namespace], Any],
    show: Callable[[Any], str | None],
) -> Callable[[list[str], Mapping[str, str]], int]:
    def main(argv: list[str], environ: Mapping[str, str]) -> int:
        p = _parser(name, help)
        add_args(p)
        args = p.parse_args(argv)
        urls = args.url or [
            u for u in environ.get("CRDTKV_URL", DEFAULT_URL).split(",") if u.strip()
        ]
        token = _read_token(args.session)
        from crdtkv.client import Client

        try:
            with Client(
                urls,
                session_token=token,
                auth_token=args.auth_token or environ.get("CRDTKV_AUTH_TOKEN") or None,
                wait_ms=args.wait_ms,
            ) as db:
                try:
                    result = act(db, args)
                finally:
                    _write_token(args.session, db.session_token)
        except CrdtkvError as e:
            print(f"crdtkv {name}: error: {e.code}: {e.message}", file=sys.stderr)
            return 1
        out = show(result)
        if out is not None:
            print(out)
        return 0

    return main


def _read_token(path: str | None) -> str | None:
    if path and os.path.exists(path):
        return Path(path).read_text().strip() or None
    return None


def _write_token(path: str | None, token: str | None) -> None:
    if path and token:
        tmp = Path(path + ".tmp")
        tmp.write_text(token + "\n")
        tmp.replace(path)  # atomic: a concurrent reader never sees half a token


def _key(p: _Parser) -> None:
    p.add_argument("key")


def _key_items(p: _Parser) -> None:
    p.add_argument("key")
    p.add_argument("items", nargs="+", metavar="MEMBER")


def _set_args(p: _Parser) -> None:
    p.add_argument("key")
    p.add_argument("value")
    p.add_argument("--json", action="store_true", help="parse VALUE as JSON (default: a string)")
    p.add_argument("--ttl-ms", type=int, help="expire after this many milliseconds")


def _incr_args(p: _Parser) -> None:
    p.add_argument("key")
    p.add_argument("by", nargs="?", type=int, default=1, help="amount (default 1; negative ok)")


def _del_args(p: _Parser) -> None:
    p.add_argument("key")
    p.add_argument("--type", choices=NAMESPACES, default="registers", help="default registers")


def _set_value(db: Any, a: argparse.Namespace) -> None:
    if a.json:
        try:
            value = json.loads(a.value)
        except json.JSONDecodeError as e:
            raise SystemExit(_usage_error("set", f"VALUE is not JSON: {e.msg}")) from e
    else:
        value = a.value
    db.registers.set(a.key, value, ttl_ms=a.ttl_ms)


def _usage_error(name: str, message: str) -> int:
    print(f"crdtkv {name}: error: {message}", file=sys.stderr)
    return 2


def _delete(db: Any, a: argparse.Namespace) -> None:
    getattr(db, a.type).delete(a.key)


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _lines(v: list[str]) -> str | None:
    return "\n".join(v) if v else None


_Spec = tuple[
    str,
    str,
    Callable[[_Parser], None],
    Callable[[Any, argparse.Namespace], Any],
    Callable[[Any], str | None],
]
_SPECS: list[_Spec] = [
    (
        "get",
        "read a register (prints JSON)",
        _key,
        lambda db, a: db.registers.get(a.key),
        _json,
    ),
    ("set", "write a register", _set_args, _set_value, lambda r: None),
    (
        "incr",
        "add to a counter (prints the new value)",
        _incr_args,
        lambda db, a: db.counters.incr(a.key, a.by),
        str,
    ),
    (
        "sadd",
        "add members to a set (prints how many were new)",
        _key_items,
        lambda db, a: db.sets.add(a.key, *a.items),
        str,
    ),
    (
        "srem",
        "remove members from a set (prints how many were removed)",
        _key_items,
        lambda db, a: db.sets.remove(a.key, *a.items),
        str,
    ),
    (
        "smembers",
        "list a set's members, one per line",
        _key,
        lambda db, a: db.sets.members(a.key),
        _lines,
    ),
    (
        "pfadd",
        "add items to a HyperLogLog (prints 1 if it changed)",
        _key_items,
        lambda db, a: db.hlls.add(a.key, *a.items),
        lambda r: "1" if r else "0",
    ),
    (
        "pfcount",
        "estimated distinct items of a HyperLogLog",
        _key,
        lambda db, a: db.hlls.count(a.key),
        str,
    ),
    (
        "del",
        "delete a key (--type registers|counters|sets|hlls)",
        _del_args,
        _delete,
        lambda r: None,
    ),
]

COMMANDS: dict[str, tuple[str, Callable[[list[str], Mapping[str, str]], int]]] = {
    name: (help, _run(name, help, args, act, show)) for name, help, args, act, show in _SPECS
}

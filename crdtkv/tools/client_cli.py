"""The command-line client: ``crdtkv get|set|incr|sadd|hset|zadd|...|del|type|ttl|scan``.

The verbs are the op table's (``Method.cli`` in ``crdtkv.ops.table``), and so
are their arguments and output: a verb calls one client method, takes that
method's parameters (the key and a JSON value positionally, lists as several
words, an optional integer as ``--name``, one with a default as an optional
word, an optional string as ``--name``), and prints its result by the result
field's kind (several fields: each in turn).  A verb on several types
(``del``) takes ``--type``; without it, it is the key-level op (any type).

For operators and shell scripts.  Every command takes ``--url`` (repeatable;
default ``$CRDTKV_URL``, comma-separated, else http://127.0.0.1:7001),
``--session FILE`` (read the causal session token from FILE if it exists,
write the updated token back: consecutive commands then see each other's
writes even when they go to different replicas), ``--auth-token``
(default ``$CRDTKV_AUTH_TOKEN``) and ``--tls-ca FILE`` (default
``$CRDTKV_TLS_CA``: the CA bundle that https:// replicas are verified with,
instead of the system's).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crdtkv.cliutil import ArgParser, UsageError, print_error
from crdtkv.errors import CrdtkvError
from crdtkv.ops.spec import NO_DEFAULT, WHOLE, Arg, Kind, Method, OpSpec, Out, Verb
from crdtkv.ops.table import KEYS_NAMESPACE, TABLE

__all__ = ["COMMANDS", "VERBS"]

DEFAULT_URL = "http://127.0.0.1:7001"


def _parser(name: str, help: str) -> ArgParser:
    p = ArgParser(prog=f"crdtkv {name}", description=help, allow_abbrev=False)
    p.add_argument("--url", action="append", help="a replica URL; repeatable [CRDTKV_URL]")
    p.add_argument("--session", metavar="FILE", help="read and update a session token file")
    p.add_argument("--auth-token", help="bearer token [CRDTKV_AUTH_TOKEN]")
    p.add_argument("--wait-ms", type=int, help="how long a replica may wait for the session")
    p.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="CA bundle (PEM) to verify https:// replicas with, instead of the system's "
        "[CRDTKV_TLS_CA]",
    )
    return p


def _run(
    name: str,
    help: str,
    add_args: Callable[[ArgParser], None],
    act: Callable[[Any, argparse.Namespace], Any],
    show: Callable[[Any], str | None],
) -> Callable[[list[str], Mapping[str, str]], int]:
    def main(argv: list[str], environ: Mapping[str, str]) -> int:
        p = _parser(name, help)
        add_args(p)
        try:
            args = p.parse_args(argv)
        except UsageError as e:
            print_error(p.prog, str(e))
            return 2
        urls = args.url or [
            u for u in environ.get("CRDTKV_URL", DEFAULT_URL).split(",") if u.strip()
        ]
        ca_file = args.tls_ca or environ.get("CRDTKV_TLS_CA") or None
        if ca_file is not None:
            from crdtkv.tls import check_ca

            try:
                check_ca(ca_file, "--tls-ca" if args.tls_ca else "CRDTKV_TLS_CA")
            except UsageError as e:
                print_error(p.prog, str(e))
                return 2
        token = _read_token(args.session)
        from crdtkv.client import Client

        try:
            with Client(
                urls,
                session_token=token,
                auth_token=args.auth_token or environ.get("CRDTKV_AUTH_TOKEN") or None,
                wait_ms=args.wait_ms,
                ca_file=ca_file,
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


def _usage_error(name: str, message: str) -> int:
    print(f"crdtkv {name}: error: {message}", file=sys.stderr)
    return 2


# -- verbs from the table -----------------------------------------------------------------------


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _lines(v: list[str]) -> str | None:
    return "\n".join(v) if v else None


def _score(v: Any) -> str:
    """A score as Redis prints one: 1 for 1.0, inf for an infinity."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _optional(show: Callable[[Any], str]) -> Callable[[Any], str | None]:
    return lambda v: None if v is None else show(v)


def _zitems(v: list[Any]) -> str | None:
    lines = [f"{x[0]} {_score(x[1])}" if isinstance(x, list) else x for x in v]
    return "\n".join(lines) if lines else None


def _matches(v: list[dict[str, Any]]) -> str | None:
    lines = []
    for m in v:
        line = f"{m['element']} {m['score']!r}"
        if "attributes" in m:
            line += " " + json.dumps(m["attributes"], separators=(",", ":"))
        lines.append(line)
    return "\n".join(lines) or None


_SHOW: dict[Out, Callable[[Any], str | None]] = {
    Out.OK: lambda r: None,
    Out.JSON: _json,
    Out.INT64: str,
    Out.COUNT: str,
    Out.BOOL: lambda r: "1" if r else "0",
    Out.SORTED_STRINGS: _lines,
    Out.STRING: str,
    Out.SCORE: _optional(_score),
    Out.SCORES: lambda v: "\n".join("" if x is None else _score(x) for x in v) or None,
    Out.RANK: _optional(str),
    Out.ZITEMS: _zitems,
    Out.HASH: _json,
    Out.VALUES: _json,
    Out.NUMBER: _json,
    Out.STRINGS: _lines,
    Out.OPT_STRING: _optional(str),
    Out.INDEXES: lambda v: "\n".join(map(str, v)) or None,
    Out.VECTOR: _optional(lambda v: " ".join(repr(x) for x in v)),
    Out.MATCHES: lambda v: _matches(v),
}


@dataclass(frozen=True, slots=True)
class _Verb:
    verb: Verb
    uses: tuple[tuple[OpSpec, Method], ...]  # one per type it works on; the first is the default

    @property
    def args(self) -> tuple[Arg, ...]:
        spec, method = self.uses[0]
        return tuple(a for a in spec.args if a.name not in method.omit)


def _verbs() -> dict[str, _Verb]:
    uses: dict[str, list[tuple[OpSpec, Method]]] = {}
    verbs: dict[str, Verb] = {}
    for spec in TABLE:
        for method in spec.client or ():
            if method.cli is not None:
                verbs.setdefault(method.cli.name, method.cli)
                uses.setdefault(method.cli.name, []).append((spec, method))
    for used in uses.values():  # the key-level op (any type) is a verb's default
        used.sort(key=lambda use: use[0].namespace != KEYS_NAMESPACE)
    # A verb on several types (del) after the others, as it always was.
    order = sorted(verbs, key=lambda name: len(uses[name]) > 1)
    return {name: _Verb(verbs[name], tuple(uses[name])) for name in order}


def _add_args(p: ArgParser, verb: _Verb) -> None:
    for arg in verb.args:
        name = arg.client_name
        if arg.kind in (Kind.STRINGS, Kind.KEYS):
            p.add_argument(name, nargs="+", metavar=name.removesuffix("s").upper())
        elif arg.kind is Kind.SCORES:
            p.add_argument(name, nargs="+", metavar="SCORE MEMBER", help="pairs, as Redis's")
        elif arg.kind is Kind.BOOL:
            flag = f"--{name.replace('_', '-')}"
            p.add_argument(flag, action="store_true", default=None, help=arg.help)
        elif arg.kind is Kind.VECTOR and arg.required:
            p.add_argument(name, nargs="+", type=float, metavar="X", help="the vector's values")
        elif arg.kind is Kind.VECTOR:
            flag = f"--{name.replace('_', '-')}"
            p.add_argument(flag, nargs="+", type=float, metavar="X", help=arg.help)
        elif arg.kind is Kind.JSON and not arg.required:
            flag = f"--{name.replace('_', '-')}"
            p.add_argument(flag, type=_json_option(name), help=f"{name} as JSON")
        elif arg.kind is Kind.FLOAT:
            p.add_argument(name, type=float, help=arg.help)
        elif arg.kind is Kind.INT and not arg.required:
            p.add_argument(f"--{name.replace('_', '-')}", type=int, help=arg.help)
        elif arg.kind is Kind.INT and arg.default is not NO_DEFAULT:
            p.add_argument(name, nargs="?", type=int, default=arg.default, help=arg.help)
        elif arg.kind is Kind.INT:
            p.add_argument(name, type=int, help=arg.help)
        elif not arg.required:
            choices = list(arg.choices) or None
            p.add_argument(f"--{name.replace('_', '-')}", choices=choices, help=arg.help)
        elif arg.default is not NO_DEFAULT:  # LMOVE's ends: right and left unless given
            choices = list(arg.choices) or None
            p.add_argument(name, nargs="?", choices=choices, default=arg.default, help=arg.help)
        elif arg.kind is Kind.FIELDS:
            p.add_argument(name, nargs="+", metavar="FIELD VALUE", help="field and value pairs")
            p.add_argument("--json", action="store_true", help="parse each VALUE as JSON")
        else:
            p.add_argument(name, choices=list(arg.choices) or None)
            if arg.kind is Kind.JSON:
                p.add_argument(
                    "--json",
                    action="store_true",
                    help=f"parse {name.upper()} as JSON (default: a string)",
                )
    if len(verb.uses) > 1:
        types = [spec.namespace for spec, _ in verb.uses]
        p.add_argument(
            "--type", dest="view", choices=types, default=types[0], help=f"default {types[0]}"
        )


def _json_option(name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"--{name} is not JSON: {e.msg}") from None

    return parse


def _act(verb: _Verb) -> Callable[[Any, argparse.Namespace], Any]:
    by_type = {spec.namespace: (spec, method) for spec, method in verb.uses}

    def act(db: Any, a: argparse.Namespace) -> Any:
        spec, method = by_type[getattr(a, "view", verb.uses[0][0].namespace)]
        words: list[Any] = []
        keywords: dict[str, Any] = {}
        variadic = False
        for arg in verb.args:
            value = getattr(a, arg.client_name)
            if arg.kind is Kind.JSON and arg.required and a.json:
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as e:
                    message = f"{arg.client_name.upper()} is not JSON: {e.msg}"
                    raise SystemExit(_usage_error(verb.verb.name, message)) from e
            if arg.kind is Kind.FIELDS:
                value = _pairs(verb.verb.name, value, a.json)
            if arg.kind is Kind.SCORES:
                if len(value) % 2:
                    message = "scores come as SCORE MEMBER pairs"
                    raise SystemExit(_usage_error(verb.verb.name, message))
                words.append(dict(zip(value[1::2], value[0::2], strict=True)))
            elif arg.kind in (Kind.STRINGS, Kind.KEYS):
                words.extend(value)
                variadic = True
            elif variadic:  # after ``*values`` the method takes keywords only
                keywords[arg.client_name] = value
            else:
                words.append(value)
        result = getattr(getattr(db, spec.namespace), method.name)(*words, **keywords)
        return _show(spec, method), result

    return act


def _show(spec: OpSpec, method: Method) -> Callable[[Any], str | None]:
    if method.returns is None:
        return _SHOW[Out.OK]
    if method.returns == WHOLE:
        return _SHOW[Out.JSON]
    if isinstance(method.returns, str):
        return _SHOW[spec.result.field(method.returns).kind]
    shows = [_SHOW[spec.result.field(f).kind] for f in method.returns]

    def show_each(values: Any) -> str | None:  # a tuple of fields: each in turn
        if values is None:
            return None
        outs = [show(v) for show, v in zip(shows, values, strict=True)]
        return "\n".join(o for o in outs if o is not None)

    return show_each


def _shown(pair: tuple[Callable[[Any], str | None], Any]) -> str | None:
    show, result = pair
    return show(result)


def _pairs(name: str, words: list[str], as_json: bool) -> dict[str, Any]:
    """``FIELD VALUE [FIELD VALUE ...]`` as a dict (values parsed as JSON with ``--json``)."""
    if len(words) % 2:
        raise SystemExit(_usage_error(name, "fields and values come in pairs"))
    out: dict[str, Any] = {}
    for field, raw in zip(words[::2], words[1::2], strict=True):
        value: Any = raw
        if as_json:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as e:
                raise SystemExit(_usage_error(name, f"VALUE is not JSON: {e.msg}")) from e
        out[field] = value
    return out


def _command(verb: _Verb) -> Callable[[list[str], Mapping[str, str]], int]:
    name = verb.verb.name
    return _run(name, verb.verb.help, lambda p: _add_args(p, verb), _act(verb), _shown)


VERBS = _verbs()
COMMANDS: dict[str, tuple[str, Callable[[list[str], Mapping[str, str]], int]]] = {
    name: (verb.verb.help, _command(verb)) for name, verb in VERBS.items()
}

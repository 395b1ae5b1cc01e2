"""``crdtkv cluster-map show|set``: inspect a sharded cluster's map, and change it.

``show --via URL`` prints the map the process at URL holds: a summary, or
with ``--json`` the map's JSON (what ``set`` takes).  ``set FILE --via URL``
is the one command that changes the map: it validates FILE, posts it to the
process at URL (``POST /v1/cluster/map``, signed with the cluster secret), which
persists and takes it and then pushes it to every other process; ``set``
then waits (``--wait``, default 30 s) until every process of the new map
reports it.

Exit statuses: 0 done (``set``: every process holds the map, or already held
it); 1 refused or unreachable (an older map: the process holds a newer one;
a bad signature; the map drops or re-shards the process); 2 bad usage or a
map file that is not a valid map; 3 (``set``) the map was taken but some
processes did not report it within ``--wait`` (it keeps spreading: they
catch up when they can be reached).
"""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crdtkv.cliutil import ArgParser, UsageError, print_error

__all__ = ["main"]

PROG = "crdtkv cluster-map"
PATH = "/v1/cluster/map"
TIMEOUT_S = 10.0
WAIT_DEFAULT_S = 30.0
POLL_S = 0.5
SENDER = "crdtkv-cluster-map"  # X-Crdtkv-Peer of the operator's requests (not a process)
EXIT_LAGGING = 3


class _Failed(Exception):
    """A refusal or an unreachable process: one line, exit 1."""


def _parser() -> ArgParser:
    p = ArgParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="action", metavar="{show,set}")
    common = ArgParser(add_help=False)
    common.add_argument("--via", required=True, metavar="URL", help="a process of the cluster")
    common.add_argument(
        "--cluster-secret",
        metavar="S",
        help="the cluster secret [CRDTKV_CLUSTER_SECRET] (set: required; show: signs the read)",
    )
    common.add_argument("--auth-token", metavar="T", help="bearer token (show) [CRDTKV_AUTH_TOKEN]")
    common.add_argument("--tls-ca", metavar="FILE", help="CA bundle for https:// [CRDTKV_TLS_CA]")
    show = sub.add_parser("show", parents=[common], help="print the map a process holds")
    show.add_argument("--json", action="store_true", help="print the map's JSON (what set takes)")
    put = sub.add_parser("set", parents=[common], help="change the map (a higher epoch)")
    put.add_argument("file", metavar="FILE", help="the new map's JSON")
    put.add_argument(
        "--wait",
        type=float,
        default=WAIT_DEFAULT_S,
        metavar="SECONDS",
        help=f"wait until every process holds it (default {WAIT_DEFAULT_S:.0f}; 0: do not wait)",
    )
    return p


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.action is None:
            raise UsageError("", "choose an action: show or set")
        secret = args.cluster_secret or environ.get("CRDTKV_CLUSTER_SECRET") or None
        token = args.auth_token or environ.get("CRDTKV_AUTH_TOKEN") or None
        via = args.via.rstrip("/")
        if not via.startswith(("http://", "https://")):
            raise UsageError("--via", f"must be an http:// or https:// URL, not {args.via!r}")
        ctx = _tls(args.tls_ca or environ.get("CRDTKV_TLS_CA") or None)
        if args.action == "show":
            return _show(via, secret, token, ctx, as_json=args.json)
        if not secret:
            raise UsageError(
                "--cluster-secret", "set signs the new map with the cluster secret: give it"
            )
        if args.wait < 0:
            raise UsageError("--wait", "must be 0 or more seconds")
        return _set(Path(args.file), via, secret, ctx, args.wait)
    except UsageError as e:
        print_error(PROG, str(e))
        return 2
    except _Failed as e:
        print_error(PROG, str(e))
        return 1


def _tls(ca: str | None) -> ssl.SSLContext | None:
    if ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise UsageError("--tls-ca", f"cannot load {ca!r}: {e}") from None


def _request(
    method: str,
    base: str,
    *,
    secret: str | None,
    token: str | None = None,
    body: bytes = b"",
    ctx: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """(status, JSON body) of a request to ``base``'s map route; ``_Failed`` if unreachable."""
    from crdtkv.api.cluster import signed_headers

    headers = signed_headers(secret, SENDER, method, body) if secret else {}
    if token and not secret:
        headers["Authorization"] = f"Bearer {token}"
    if body:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + PATH, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=ctx) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise _Failed(f"{base}: cannot reach it: {reason}") from None
    try:
        return status, json.loads(data)
    except ValueError:
        return status, {"error": {"code": "?", "message": data[:200].decode(errors="replace")}}


def _error_text(body: Any) -> str:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return f"{err.get('code')}: {err.get('message')}"
    return str(body)[:200]


# -- show -----------------------------------------------------------------------------------


def _show(
    via: str, secret: str | None, token: str | None, ctx: ssl.SSLContext | None, *, as_json: bool
) -> int:
    status, body = _request("GET", via, secret=secret, token=token, ctx=ctx)
    if status != 200:
        raise _Failed(f"{via}: HTTP {status}: {_error_text(body)}")
    if not body.get("enabled"):
        raise _Failed(f"{via}: this replica is not sharded (no --cluster-map)")
    if as_json:
        print(json.dumps(body["map"], indent=2))
        return 0
    print(_summary(body))
    return 0


def _summary(view: dict[str, Any]) -> str:
    from crdtkv.cluster.map import ClusterMap
    from crdtkv.cluster.slots import format_ranges

    m = ClusterMap.from_json(view["map"])
    lines = [
        f"epoch {m.epoch}, held by {view['me']} (shard {view['shard']}, region"
        f" {view['region']}); {len(m.shards)} shards x {len(m.regions)} regions"
    ]
    for sh in m.shards:
        slots = m.slots_of(sh.id)
        lines.append(f"shard {sh.id}: {len(slots)} slots {format_ranges(slots) or '-'}")
        for n in sh.replicas:
            resp = f"  redis://{n.resp}" if n.resp else ""
            lines.append(f"  {n.id:<16} region {n.region:<8} {n.http}{resp}")
    moving: dict[str, list[int]] = {}
    for s, t in m.moving.items():
        moving.setdefault(t, []).append(s)
    for t, slots in sorted(moving.items()):
        lines.append(f"moving to {t}: {format_ranges(sorted(slots))}")
    return "\n".join(lines)


# -- set ----------------------------------------------------------------------------------------


def _set(path: Path, via: str, secret: str, ctx: ssl.SSLContext | None, wait_s: float) -> int:
    from crdtkv.cluster.map import ClusterMap, MapError

    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError("FILE", f"cannot read {str(path)!r}: {e.strerror}") from None
    try:
        new = ClusterMap.from_json(json.loads(raw))
    except (ValueError, MapError) as e:  # JSON errors and MapError
        raise UsageError("FILE", f"{path}: {e}") from None
    body = json.dumps(new.to_json()).encode()
    status, reply = _request("POST", via, secret=secret, body=body, ctx=ctx)
    if status == 409:
        held = reply.get("error", {}).get("map", {}) if isinstance(reply, dict) else {}
        raise _Failed(
            f"{via} refused map epoch {new.epoch}: it holds epoch {held.get('epoch', '?')}"
            f" ({_error_text(reply)}); give the new map a higher epoch"
        )
    if status != 200:
        raise _Failed(f"{via} refused map epoch {new.epoch}: HTTP {status}: {_error_text(reply)}")
    if reply.get("changed"):
        print(f"map epoch {new.epoch} taken by {via}; it pushes it to every process", flush=True)
    else:
        print(f"{via} already holds map epoch {new.epoch}", flush=True)
    if wait_s == 0:
        return 0
    return _await_spread(new, secret, ctx, wait_s)


def _await_spread(new: Any, secret: str, ctx: ssl.SSLContext | None, wait_s: float) -> int:
    """Until every process of ``new`` reports its epoch (0), or ``wait_s`` passes (3)."""
    waiting = {n.id: n.http for n in new.nodes()}
    last: dict[str, str] = {}
    deadline = time.monotonic() + wait_s
    while True:
        for nid, url in list(waiting.items()):
            try:
                status, view = _request("GET", url, secret=secret, ctx=ctx)
            except _Failed as e:
                last[nid] = str(e)
                continue
            epoch = view.get("epoch") if status == 200 and isinstance(view, dict) else None
            if isinstance(epoch, int) and epoch >= new.epoch:
                print(f"  {nid} holds epoch {epoch}", flush=True)
                del waiting[nid]
            else:
                last[nid] = f"epoch {epoch}" if status == 200 else f"HTTP {status}"
        if not waiting:
            print(f"every process holds map epoch {new.epoch} or later", flush=True)
            return 0
        if time.monotonic() >= deadline:
            behind = ", ".join(f"{nid} ({last.get(nid, '?')})" for nid in sorted(waiting))
            print_error(
                PROG,
                f"map epoch {new.epoch} is taken but not yet held by {behind} after"
                f" {wait_s:g} s; it keeps spreading",
            )
            return EXIT_LAGGING
        time.sleep(POLL_S)


if __name__ == "__main__":  # pragma: no cover
    import os

    sys.exit(main(sys.argv[1:], os.environ))

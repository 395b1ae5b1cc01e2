"""``crdtkv reshard``: move hash slots to another shard while writes go on.

    crdtkv reshard --slots 0-999,5000 --to s2 --via http://10.0.0.1:7001 \\
        [--cluster-secret S]

It reads the cluster map from ``--via`` (any process of the cluster), then, in
every region at once (docs/architecture.md, "Moving slots"):

1. pushes the map in which the slots move to ``--to`` (epoch +1) to every process;
2. asks each source replica to copy the slots' keys to the target in its region
   and to hand the slots over, and shows the progress (keys and bytes) with tqdm;
3. pushes the map in which ``--to`` owns the slots (the flip, epoch +1);
4. once every process holds that map, asks each source replica to drop its
   copies of the moved keys.

Every step is idempotent and the state is in the processes (their maps and the
sources' move records), so running the same command again after a crash of
the tool or of any process continues where the move stood.  A process that
does not answer is waited for (the tool says which, every few seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from crdtkv.cliutil import ArgParser, UsageError, print_error
from crdtkv.cluster.map import ClusterMap, MapError
from crdtkv.cluster.slots import format_ranges, parse_ranges, slots_of_ranges

__all__ = ["main"]

PROG = "crdtkv reshard"
MAP_PATH = "/v1/cluster/map"
MOVE_PATH = "/v1/cluster/move"
POLL_S = 0.2
SAY_EVERY_S = 5.0
HTTP_TIMEOUT_S = 120.0


class ReshardError(Exception):
    """A refusal the operator must act on (one line)."""


def _parse(argv: list[str], environ: Mapping[str, str]) -> argparse.Namespace:
    p = ArgParser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--slots", required=True, help="slots to move, e.g. 0-999,5000")
    p.add_argument("--to", required=True, help="the shard id that will own them")
    p.add_argument("--via", required=True, help="HTTP URL of any process of the cluster")
    p.add_argument(
        "--cluster-secret",
        default=None,
        help="the cluster secret that signs internal requests (default CRDTKV_CLUSTER_SECRET)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        args.slot_set = set(slots_of_ranges(parse_ranges(args.slots)))
    except ValueError as e:
        raise UsageError("--slots", str(e)) from None
    if not args.slot_set:
        raise UsageError("--slots", "no slots given")
    if not args.via.startswith(("http://", "https://")):
        raise UsageError("--via", f"must be an http(s):// URL, got {args.via!r}")
    args.via = args.via.rstrip("/")
    if args.cluster_secret is None:
        args.cluster_secret = environ.get("CRDTKV_CLUSTER_SECRET") or None
    return args


class Cluster:
    """HTTP to the cluster's processes; waits (and says so) for one that is away."""

    def __init__(self, secret: str | None, say: Callable[[str], None]) -> None:
        self.secret = secret
        self.say = say

    def request(self, method: str, url: str, body: object = None, *, what: str) -> tuple[int, Any]:
        """One request, retried while the process cannot be reached."""
        data = b"" if body is None else json.dumps(body).encode()
        path = url.split("://", 1)[1].partition("/")[2]
        path = "/" + path
        first = time.monotonic()
        last_said = 0.0
        while True:
            req = urllib.request.Request(url, data=data if method == "POST" else None)
            req.method = method
            if method == "POST":
                req.add_header("Content-Type", "application/json")
                from crdtkv.api.moves import signed_headers

                for k, v in signed_headers(self.secret, "reshard", path, data).items():
                    req.add_header(k, v)
            try:
                with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                    return resp.status, json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    return e.code, json.loads(raw)
                except ValueError:
                    return e.code, raw.decode(errors="replace")[:300]
            except (OSError, ValueError) as e:
                now = time.monotonic()
                if now - last_said >= SAY_EVERY_S:
                    waited = int(now - first)
                    self.say(f"waiting for {what} ({url.split(path)[0]}): {_reason(e)}; {waited} s")
                    last_said = now
                time.sleep(POLL_S * 2)

    def status(self, url: str, what: str) -> dict[str, Any]:
        while True:
            code, body = self.request("GET", url + "/v1/status", what=what)
            if code == 200 and isinstance(body, dict):
                return body
            self.say(f"{what} answered /v1/status with {code}: {body!r:.200}; retrying")
            time.sleep(1)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


def _names(m: ClusterMap) -> dict[str, str]:
    return {n.http: n.id for n in m.nodes()}


def _push(cl: Cluster, m: ClusterMap) -> None:
    """``m`` to every process (a process that holds a newer one keeps it)."""
    for n in m.nodes():
        code, body = cl.request("POST", n.http + MAP_PATH, m.to_json(), what=n.id)
        if code == 409:
            held = (body.get("error") or {}).get("map") if isinstance(body, dict) else None
            theirs = held.get("epoch") if isinstance(held, dict) else None
            if isinstance(theirs, int) and theirs > m.epoch:
                continue
        if code != 200:
            raise ReshardError(f"{n.id} refused the cluster map (epoch {m.epoch}): {body!r:.300}")


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    cl = Cluster(args.cluster_secret, say)
    view = cl.status(args.via, "--via")
    cluster = view.get("cluster") or {}
    if not cluster.get("enabled"):
        raise ReshardError(f"{args.via} is not sharded (serve --cluster-map)")
    m = ClusterMap.from_json(cluster["map"])
    # The newest map any process holds, and every source's move record.
    statuses: dict[str, dict[str, Any]] = {}
    for n in m.nodes():
        statuses[n.id] = cl.status(n.http, n.id)
        theirs = ClusterMap.from_json(statuses[n.id]["cluster"]["map"])
        if theirs.epoch > m.epoch:
            m = theirs
    to = args.to
    if not m.has_shard(to):
        raise ReshardError(
            f"unknown shard {to!r}; the shards are {', '.join(s.id for s in m.shards)}"
        )
    slots: set[int] = args.slot_set
    elsewhere = {s: t for s, t in m.moving.items() if s in slots and t != to}
    if elsewhere:
        s0 = min(elsewhere)
        raise ReshardError(
            f"slot {s0} is moving to shard {elsewhere[s0]!r}; finish that move first"
        )
    records = {nid: (st["cluster"].get("moves") or {}).get("move") for nid, st in statuses.items()}
    active = {
        nid: r
        for nid, r in records.items()
        if r
        and r["phase"] != "dropped"
        and r["to"] == to
        and set(slots_of_ranges(parse_ranges(r["slots"]))) & slots
    }
    owned = {s for s in slots if m.owners[s] == to and s not in m.moving}
    if owned == slots and not active:
        raise ReshardError(
            f"slots {format_ranges(sorted(slots))} are already owned by shard {to!r}: "
            "nothing to move"
        )
    # Per source shard, the slots it gives (from the records when the flip is done).
    sources: dict[str, set[int]] = {}
    for s in slots:
        if m.owners[s] != to:
            sources.setdefault(m.owners[s], set()).add(s)
    for nid, r in active.items():
        sh = m.shard_of(nid).id
        sources.setdefault(sh, set()).update(slots_of_ranges(parse_ranges(r["slots"])))
    if owned - set().union(*sources.values()):
        say(
            f"slots {format_ranges(sorted(owned - set().union(*sources.values())))} are "
            f"already owned by {to!r}: left as they are"
        )
    # 1. The moving map.
    start = {s for ss in sources.values() for s in ss if m.owners[s] != to and s not in m.moving}
    if start:
        m = m.with_moving(start, to)
        say(f"epoch {m.epoch}: slots {format_ranges(sorted(start))} moving to {to}")
    _push(cl, m)
    # 2. Copy and hand over, every source replica in every region.
    flipped = all(m.owners[s] == to for ss in sources.values() for s in ss)
    if not flipped:
        _copy(cl, m, sources, to, args, say)
        # 3. The flip.
        m = m.with_owner({s for ss in sources.values() for s in ss}, to)
        say(f"epoch {m.epoch}: shard {to} owns the slots")
    _push(cl, m)
    # 4. Every process holds the flip: the sources drop their copies.
    for n in m.nodes():
        while True:
            st = cl.status(n.http, n.id)
            if st["cluster"]["epoch"] >= m.epoch:
                break
            _push(cl, m)
    dropped = 0
    for sh, ss in sources.items():
        for n in m.shard(sh).replicas:
            body = {"slots": format_ranges(sorted(ss)), "to": to, "step": "drop"}
            code, out = cl.request("POST", n.http + MOVE_PATH, body, what=n.id)
            if code != 200:
                raise ReshardError(f"{n.id} refused the drop: {out!r:.300}")
            rec = out.get("move") or {}
            dropped += int(rec.get("keys_dropped", 0))
    moved = sorted(s for ss in sources.values() for s in ss)
    return {"epoch": m.epoch, "slots": format_ranges(moved), "to": to, "dropped_keys": dropped}


def _copy(
    cl: Cluster,
    m: ClusterMap,
    sources: dict[str, set[int]],
    to: str,
    args: argparse.Namespace,
    say: Callable[[str], None],
) -> None:
    nodes = [(n, ss) for sh, ss in sources.items() for n in m.shard(sh).replicas]
    for n, ss in nodes:
        body = {"slots": format_ranges(sorted(ss)), "to": to}
        code, out = cl.request("POST", n.http + MOVE_PATH, body, what=n.id)
        if code != 200:
            raise ReshardError(f"{n.id} refused to start the move: {out!r:.300}")
    bar = None
    if not args.no_progress:
        from tqdm import tqdm  # type: ignore[import-untyped]

        bar = tqdm(total=0, unit="key", desc="copying", file=sys.stderr)
    try:
        last_said = time.monotonic()
        while True:
            total = copied = nbytes = 0
            done = True
            errors = []
            for n, ss in nodes:
                st = cl.status(n.http, n.id)
                r = (st["cluster"].get("moves") or {}).get("move")
                if r is None or r["phase"] == "copying":
                    done = False
                if r is None:  # restarted without its record: ask again
                    body = {"slots": format_ranges(sorted(ss)), "to": to}
                    cl.request("POST", n.http + MOVE_PATH, body, what=n.id)
                    continue
                total += r["keys_total"]
                copied += r["keys_copied"]
                nbytes += r["bytes_copied"]
                if r["error"]:
                    errors.append(f"{n.id}: {r['error']}")
            if bar is not None:
                bar.total = max(total, copied)
                bar.n = copied
                bar.set_postfix_str(f"{nbytes / 1e6:.1f} MB")
                bar.refresh()
            if done:
                break
            if errors and time.monotonic() - last_said > SAY_EVERY_S:
                say("; ".join(errors))
                last_said = time.monotonic()
            time.sleep(POLL_S)
    finally:
        if bar is not None:
            bar.close()


def main(argv: list[str], environ: Mapping[str, str]) -> int:
    try:
        args = _parse(argv, environ)
    except UsageError as e:
        print_error(PROG, str(e))
        return 2

    def say(line: str) -> None:
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)

    try:
        out = run(args, say)
    except (ReshardError, MapError) as e:
        print_error(PROG, str(e))
        return 1
    except KeyboardInterrupt:
        print_error(PROG, "interrupted; run the same command again to continue the move")
        return 130
    print(
        f"moved slots {out['slots']} to {out['to']} (map epoch {out['epoch']}); "
        f"the sources dropped {out['dropped_keys']} keys",
        flush=True,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:], os.environ))

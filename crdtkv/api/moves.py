"""The shell of slot moves (issue 18, item 3): internal routes and the move driver.

Internal routes, signed like replication (``replication.http.sign``: HMAC of the
method, path, timestamp and body hash with the cluster secret; refused with 401
otherwise, when a secret is set):

- ``POST /v1/cluster/map``: a new cluster map (JSON).  Taken by
  ``ClusterState.set_map`` and persisted (meta ``cluster_map``) before the 200;
  an older map gets 409 ``stale_map`` with this process's map.  (The map
  spreading of ``crdtkv cluster-map set`` uses the same route.)
- ``POST /v1/cluster/import``: a chunk of states (``crdtkv.cluster.move``'s wire
  form) for slots this process owns or imports, joined as one local commit and
  durable before the 200.
- ``POST /v1/cluster/move``: at a source, ``{"slots": "0-99", "to": "s2"}`` starts
  (or resumes) the move of those slots to shard ``to``; ``"step": "drop"`` drops
  them once this process holds the map in which ``to`` owns them.

The driver, per source process (docs/architecture.md, "Moving slots"): it
watches the moving slots (``Replica.watch``), copies every key to the target in
its region (bulk copy), holds the slots (``TryAgain``) while it copies what
changed since (the final copy), then hands them over (``Ask``).  From the start
on, a pump copies every watched key that changes (local writes before the
hand-over, replicated groups at any time) to the target: that is the forwarding.
After the flip and the drop, any key of a slot this process neither owns nor
imports that replication brings back is forwarded to its owner and dropped
again.  The move's record (meta ``cluster_move``) makes it resume after a crash:
a source that restarts copies everything again (joins are idempotent), and a
hand-over it had made stays made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from crdtkv.api.codec import json_response
from crdtkv.cluster import move
from crdtkv.cluster.slots import format_ranges, key_slot, parse_ranges, slots_of_ranges
from crdtkv.cluster.state import ClusterState
from crdtkv.errors import BadRequest, CodecError, PayloadTooLarge
from crdtkv.limits import MESSAGE_BYTES_MAX
from crdtkv.node.aio import Node
from crdtkv.replica import records as rec
from replication.http import sign, verify

__all__ = [
    "IMPORT_PATH",
    "MAP_PATH",
    "META_CLUSTER_MAP",
    "META_CLUSTER_MOVE",
    "MOVE_PATH",
    "Mover",
    "signed_headers",
]

log = logging.getLogger("crdtkv.move")

MAP_PATH = "/v1/cluster/map"
IMPORT_PATH = "/v1/cluster/import"
MOVE_PATH = "/v1/cluster/move"
META_CLUSTER_MAP = b"cluster_map"  # the newest map this process took (JSON form, packed)
META_CLUSTER_MOVE = b"cluster_move"  # the move this process is the source of
PUMP_S = 0.05  # how often the pump looks for changed keys to forward
RETRY_S = 0.5  # after a failed import, before the next try
REQUEST_TIMEOUT_S = 30.0


def signed_headers(secret: str | None, sender: str, path: str, body: bytes) -> dict[str, str]:
    """The headers of an internal request (``replication.http``'s scheme)."""
    headers = {"X-Crdtkv-Peer": sender}
    if secret:
        ts = time.time_ns() // 1_000_000
        headers["X-Crdtkv-Timestamp"] = str(ts)
        headers["X-Crdtkv-Signature"] = sign(secret, "POST", path, ts, body)
    return headers


@dataclass
class MoveRecord:
    """The move this process is the source of (persisted as meta ``cluster_move``)."""

    slots: frozenset[int]
    to: str
    phase: str = "copying"  # copying -> handed_over -> dropped
    keys_total: int = 0  # names found by the bulk copy
    keys_copied: int = 0  # names shipped (bulk, final copy and forwarding)
    bytes_copied: int = 0
    keys_dropped: int = 0
    error: str = ""  # the last failure (the target unreachable, ...), "" when none

    def to_json(self) -> dict[str, Any]:
        return {
            "slots": format_ranges(sorted(self.slots)),
            "to": self.to,
            "phase": self.phase,
            "keys_total": self.keys_total,
            "keys_copied": self.keys_copied,
            "bytes_copied": self.bytes_copied,
            "keys_dropped": self.keys_dropped,
            "error": self.error,
        }

    def persisted(self) -> bytes:
        return rec.pack(
            {"slots": format_ranges(sorted(self.slots)), "to": self.to, "phase": self.phase}
        )


class Mover:
    """One process's side of slot moves: the routes, the driver and the pump."""

    def __init__(
        self,
        node: Node,
        cluster: ClusterState,
        *,
        secret: str | None,
        previous_secret: str | None = None,
    ) -> None:
        self.node = node
        self.cluster = cluster
        self.secret = secret
        self.secrets = [s for s in (secret, previous_secret) if s]
        self.move: MoveRecord | None = None
        self.forwarded = 0  # keys forwarded to their owner outside a move (orphans)
        self.orphans_dropped = 0
        self._pending: set[str] = set()  # changed names not yet forwarded
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._driver: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one import towards a target at a time
        self._kick = asyncio.Event()
        node.mover = self
        node.replica.set_watch(self._watched)
        self._restore()

    # -- what is watched --------------------------------------------------------------------
    def _watched(self, name: str) -> bool:
        slot = key_slot(name)
        m = self.move
        if m is not None and slot in m.slots:
            return True
        c = self.cluster
        return not c.owns(slot) and not c.importing(slot)

    def _restore(self) -> None:
        raw = self.node.storage.get("meta", META_CLUSTER_MOVE)
        if raw is None:
            return
        try:
            d = rec.unpack(raw, "meta cluster_move")
            slots = frozenset(slots_of_ranges(parse_ranges(d["slots"])))
            self.move = MoveRecord(slots, str(d["to"]), str(d["phase"]))
        except (CodecError, KeyError, TypeError, ValueError) as e:
            log.error("the persisted slot move does not decode, ignored: %s", e)
            return
        m = self.move
        if m.phase == "handed_over" and self.cluster.map.moving:
            self.cluster.handed_over |= {
                s for s in m.slots if self.cluster.map.moving.get(s) == m.to
            }
        log.info(
            "resuming the move of slots %s to %s (%s)",
            format_ranges(sorted(m.slots)),
            m.to,
            m.phase,
        )

    # -- lifecycle --------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(IMPORT_PATH, self.handle_import)
        app.router.add_post(MOVE_PATH, self.handle_move)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )
        loop = asyncio.get_running_loop()
        self._scan_orphans()
        self._tasks.append(loop.create_task(self._pump(), name="move-pump"))
        m = self.move
        if m is not None and m.phase != "dropped":
            # A restart lost the names changed since the last copy: copy them all again.
            self._start_driver(recopy=True)

    async def stop(self) -> None:
        for t in [*self._tasks, *([self._driver] if self._driver else [])]:
            t.cancel()
        for t in [*self._tasks, *([self._driver] if self._driver else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._session is not None:
            await self._session.close()

    def status(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {
            "forwarded_keys": self.forwarded,
            "orphans_dropped": self.orphans_dropped,
        }
        out["pending_keys"] = len(self._pending) + len(self.node.replica.watched)
        out["move"] = self.move.to_json() if self.move is not None else None
        return out

    # -- authentication ---------------------------------------------------------------------
    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > MESSAGE_BYTES_MAX:
            raise PayloadTooLarge("internal cluster request over the size limit")
        parts: list[bytes] = []
        size = 0
        while True:  # StreamReader.read(n) returns what has arrived: read to the end
            part = await request.content.read(1 << 20)
            if not part:
                break
            size += len(part)
            if size > MESSAGE_BYTES_MAX:
                raise PayloadTooLarge("internal cluster request over the size limit")
            parts.append(part)
        body = b"".join(parts)
        if self.secrets:
            verify(self.secrets, request.method, request.path, request.headers, body, _now_ms())
        return body

    # -- map changes (crdtkv.api.cluster.MapSync adopts them) ------------------------------
    def map_changed(self) -> None:
        """A newer map was taken: keys of slots this process no longer serves go on to
        their owner (and a finished move hands nothing over any more)."""
        self._scan_orphans()

    # -- POST /v1/cluster/import (target) ---------------------------------------------------
    async def handle_import(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        states = move.decode_chunk(body)
        c = self.cluster
        for _, name in states:
            slot = key_slot(name)
            if not (c.owns(slot) or c.importing(slot)):
                raise c.moved(slot)
        node = self.node
        node.core.check_up()
        move.import_states(node.replica, states, node.clock())
        node.notify_applied()
        await node.durable()
        return json_response({"states": len(states)})

    # -- POST /v1/cluster/move (source) -----------------------------------------------------
    async def handle_move(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        try:
            req = orjson.loads(body)
            slots = frozenset(slots_of_ranges(parse_ranges(req["slots"])))
            to = str(req["to"])
            step = str(req.get("step", "copy"))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise BadRequest(f"a move is {{'slots': '0-99', 'to': 'shard'}}: {e}") from None
        if step not in ("copy", "drop"):
            raise BadRequest("step is 'copy' or 'drop'")
        c = self.cluster
        m = self.move
        if m is not None and m.phase != "dropped" and (m.slots != slots or m.to != to):
            raise BadRequest(
                f"a move of slots {format_ranges(sorted(m.slots))} to {m.to} is in progress here"
            )
        if step == "copy":
            if m is None or m.phase == "dropped" or m.slots != slots:
                bad = [s for s in slots if not c.owns(s) or c.map.moving.get(s) != to]
                if bad:
                    raise BadRequest(
                        f"slots {format_ranges(bad[:50])} are not owned here and moving to "
                        f"{to!r} in this process's map (epoch {c.epoch})"
                    )
                self.move = MoveRecord(slots, to)
                await self.node.write_meta(META_CLUSTER_MOVE, self.move.persisted())
                log.info("moving slots %s to %s", format_ranges(sorted(slots)), to)
            if self._driver is None or self._driver.done():
                if self.move is not None and self.move.phase == "copying":
                    self._start_driver(recopy=False)
        else:
            if m is None or m.slots != slots:
                return json_response({"move": None, "dropped": 0})
            if m.phase != "dropped":
                if any(c.owns(s) or c.map.owners[s] != to for s in slots):
                    raise BadRequest(
                        f"slots {format_ranges(sorted(slots))} are not yet owned by {to!r} "
                        f"in this process's map (epoch {c.epoch}): flip first"
                    )
                await self._drop(m)
        return json_response({"move": self.move.to_json() if self.move else None})

    # -- the driver ---------------------------------------------------------------------------
    def _start_driver(self, *, recopy: bool) -> None:
        self._driver = asyncio.get_running_loop().create_task(self._drive(recopy), name="move")

    async def _drive(self, recopy: bool) -> None:
        m = self.move
        assert m is not None
        while True:
            try:
                if m.phase == "copying" or recopy:
                    await self._bulk_copy(m)
                    recopy = False
                if m.phase == "copying":
                    await self._hand_over(m)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the target away, a refusal: said in status, retried
                m.error = f"bulk copy: {e}"
                log.warning("slot move to %s: %s; retrying", m.to, e)
                await asyncio.sleep(RETRY_S * 4)

    def _target_url(self, m: MoveRecord) -> str:
        return self.cluster.map.shard(m.to).in_region(self.cluster.region).http

    async def _bulk_copy(self, m: MoveRecord) -> None:
        names = move.slot_names(self.node.replica, m.slots)
        m.keys_total = len(names)
        log.info("bulk copy of %d keys to %s", len(names), m.to)
        for chunk in move.export_chunks(self.node.replica, names):
            await self._send(self._target_url(m), chunk, m)
            await asyncio.sleep(0)  # writes go on between chunks

    async def _hand_over(self, m: MoveRecord) -> None:
        c = self.cluster
        while True:
            c.holding |= m.slots
            try:
                await self._flush_changed(only=m.slots)
                break
            except Exception as e:
                c.holding -= m.slots  # serve again while the target is away
                m.error = f"final copy: {e}"
                await asyncio.sleep(RETRY_S)
        c.handed_over |= {s for s in m.slots if c.map.moving.get(s) == m.to}
        c.holding -= m.slots
        m.phase = "handed_over"
        m.error = ""
        await self.node.write_meta(META_CLUSTER_MOVE, m.persisted())
        log.info("slots %s handed over to %s", format_ranges(sorted(m.slots)), m.to)

    async def _drop(self, m: MoveRecord) -> None:
        await self._flush_changed(only=m.slots)
        r = self.node.replica
        names = move.slot_names(r, m.slots)
        m.keys_dropped += move.drop_names(r, names)
        m.phase = "dropped"
        await (
            self.node.checkpoint_now()
        )  # the dropped keys leave storage, and no replay brings them back
        await self.node.write_meta(META_CLUSTER_MOVE, None)
        log.info("dropped %d keys of slots moved to %s", len(names), m.to)

    # -- the pump: forwarding ---------------------------------------------------------------
    def _scan_orphans(self) -> None:
        r = self.node.replica
        c = self.cluster
        m = self.move
        moving = m.slots if m is not None and m.phase != "dropped" else frozenset()
        found = []
        for n in r.names:
            slot = key_slot(n)
            if not c.owns(slot) and not c.importing(slot) and slot not in moving:
                found.append(n)
        self._pending.update(found)
        if found:
            self._kick.set()

    async def _pump(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), PUMP_S)
            self._kick.clear()
            try:
                await self._flush_changed(only=None)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.move is not None:
                    self.move.error = f"forwarding: {e}"
                log.warning("forwarding changed keys failed, retrying: %s", e)
                await asyncio.sleep(RETRY_S)

    async def _flush_changed(self, only: frozenset[int] | None) -> None:
        """Copy the changed names (all, or those of ``only``) to where they belong now."""
        async with self._lock:
            self._pending |= self.node.replica.take_watched()
            if not self._pending:
                return
            m = self.move
            c = self.cluster
            by_url: dict[str, list[str]] = {}
            orphans: set[str] = set()
            for name in sorted(self._pending):
                slot = key_slot(name)
                if only is not None and slot not in only:
                    continue
                if m is not None and m.phase != "dropped" and slot in m.slots:
                    url = self._target_url(m)
                elif not c.owns(slot) and not c.importing(slot):
                    url = c.map.owner_in(slot, c.region).http
                    orphans.add(name)
                else:
                    self._pending.discard(name)  # served here again (a move abandoned)
                    continue
                by_url.setdefault(url, []).append(name)
            r = self.node.replica
            for url, names in by_url.items():
                log.debug("forwarding %d changed keys to %s", len(names), url)
                for chunk in move.export_chunks(r, names):
                    await self._send(url, chunk, m if not orphans.issuperset(chunk.names) else None)
                    self._pending.difference_update(chunk.names)
                    gone = [n for n in chunk.names if n in orphans]
                    if gone:
                        self.forwarded += len(gone)
                        # Dropped only if nothing changed them since they were exported.
                        still = [n for n in gone if n not in r.watched]
                        self.orphans_dropped += move.drop_names(r, still)

    async def _send(self, url: str, chunk: move.Chunk, m: MoveRecord | None) -> None:
        assert self._session is not None
        headers = signed_headers(self.secret, self.node.replica.replica_id, IMPORT_PATH, chunk.body)
        headers["Content-Type"] = "application/msgpack"
        async with self._session.post(url + IMPORT_PATH, data=chunk.body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"import at {url}: HTTP {resp.status}: {data[:300]!r}")
        if m is not None:
            m.keys_copied += len(chunk.names)
            m.bytes_copied += len(chunk.body)
            m.error = ""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000

"""The RESP server of a replica: asyncio, hiredis, pipelining, group commit.

One ``Connection`` per client.  ``data_received`` feeds the bytes to a
``hiredis.Reader`` (a read that starts between requests, ``_fresh``, with a
byte other than ``*`` holds inline commands, split by ``split_inline``; an
inline command in the same read after an array gets a protocol error), takes
every complete
command, runs them in order, and writes their replies with one
``transport.write`` per read batch.  A batch's replies leave only once
everything it saw is durable (``Node.finish_nowait``, the same rule and the
same group commit as HTTP: every connection's commands of one event-loop
turn share one storage write).  Replies keep their order: a batch waiting
for the disk holds back the batches after it.

Bounds (``RespLimits``): the unparsed input of one connection (a bulk string
is at most the value limit, an inline line at most 64 KiB), the commands
parsed but not yet run, the replies not yet taken by the client (a client
that does not read is paused, then disconnected), and the number of
connections.  Garbage gets ``-ERR Protocol error`` and closes that
connection only.

Authentication (``crdtkv.auth``): with users configured, a connection runs
nothing but AUTH, HELLO and QUIT until AUTH names one (``Connection.user``);
a read-only user's write commands are refused with Redis's NOPERM (inside
MULTI when queued, which aborts the EXEC).  A reload of the auth file
(SIGHUP) closes the connections of users it removed or whose token it
changed; the others take their user's new role from their next command.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import hiredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from crdtkv import limits
from crdtkv.auth import OPEN_USER, Auth, User, Users
from crdtkv.errors import CrdtkvError, CrossSlot, Moved, StorageError, TryAgain
from crdtkv.ops.table import OPS
from crdtkv.resp import commands
from crdtkv.resp.commands import (
    Blocked,
    Command,
    Context,
    command_keys,
    error_reply,
    lookup,
)
from crdtkv.resp.values import QUEUED, RespError, encode
from crdtkv.sessions import SessionToken, TokenSigner

if TYPE_CHECKING:
    from ssl import SSLContext

    from crdtkv.api.metrics import PeersStatus
    from crdtkv.cluster.state import ClusterState
    from crdtkv.node import Node
    from crdtkv.ops.spec import OpSpec

__all__ = ["Connection", "RespLimits", "RespServer", "split_inline"]

log = logging.getLogger("crdtkv.resp")

INLINE_BYTES_MAX = 64 * 1024
_RECHECK_S = 1.0  # a blocked command also retries this often (should a wake-up be missed)
# What runs at once inside MULTI instead of being queued.
_MULTI_CONTROL = frozenset({"EXEC", "DISCARD", "MULTI", "WATCH", "UNWATCH", "QUIT", "RESET"})


@dataclass(frozen=True, slots=True)
class RespLimits:
    """The bounds of the RESP server (``crdtkv serve`` options set some)."""

    clients_max: int = 10_000  # connections at once; more get an error and are closed
    value_bytes_max: int = limits.BODY_BYTES_MAX  # one request's unparsed bytes (a bulk string)
    queued_max: int = 100_000  # commands parsed but not run before reading pauses
    output_high: int = 4 * 1024 * 1024  # unsent reply bytes at which reading pauses
    output_max: int = 64 * 1024 * 1024  # unsent reply bytes at which the client is dropped
    stalled_s: float = 60.0  # a client that takes no reply for this long is dropped


class _Stats:
    __slots__ = ("commands", "connections", "errors", "protocol_errors", "rejected", "started")

    def __init__(self) -> None:
        self.commands = 0
        self.connections = 0
        self.rejected = 0
        self.errors = 0
        self.protocol_errors = 0
        self.started = time.time()


class RespServer:
    """The RESP listener of one replica."""

    def __init__(
        self,
        node: Node,
        *,
        replica_id: str,
        cluster_secret: str | None = None,
        password: str | None = None,
        auth: Auth | None = None,
        durability: str = "fsync",
        peers_status: PeersStatus | None = None,
        resp_limits: RespLimits | None = None,
        flushall: bool = False,
    ) -> None:
        commands.ensure_loaded()
        self.node = node
        self.replica_id = replica_id
        self.signer = TokenSigner(cluster_secret)
        # The users (shared with HTTP and reloaded on SIGHUP); by default the one
        # ``default`` user of ``password``, if any.
        self.auth = auth if auth is not None else Auth(resp_password=password)
        self.durability = durability
        self.peers_status = peers_status
        self.limits = resp_limits or RespLimits()
        self.flushall = flushall
        self.clients: dict[int, Connection] = {}
        self.stats = _Stats()
        self.ids = itertools.count(1)
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        # Blocked commands' wake-ups, in the order they blocked: each batch written (a
        # local change or a replicated one, ``Node.on_durable``, hooked by ``start``) sets
        # them all.
        self.wakeups: dict[asyncio.Future[None], None] = {}
        node.metrics.register(_RespCollector(self), replace=True)

    def _wake(self, entries: object) -> None:
        wakeups, self.wakeups = self.wakeups, {}
        for f in wakeups:
            if not f.done():
                f.set_result(None)

    async def start(self, host: str, port: int, *, ssl: SSLContext | None = None) -> None:
        """Listen on ``host:port``; with ``ssl``, TLS only (a plain client's handshake fails)."""
        loop = asyncio.get_running_loop()
        self.node.on_durable.append(self._wake)
        self.auth.on_reload.append(self._users_changed)
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, reuse_address=True, backlog=1024, ssl=ssl
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    def _users_changed(self) -> None:
        """The auth file was re-read: every connection checks its user."""
        users = self.auth.resp
        for conn in list(self.clients.values()):
            conn.recheck_user(users)

    async def stop(self) -> None:
        if self._wake in self.node.on_durable:
            self.node.on_durable.remove(self._wake)
        if self._users_changed in self.auth.on_reload:
            self.auth.on_reload.remove(self._users_changed)
        if self._server is not None:
            self._server.close()
        for conn in list(self.clients.values()):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()


class Connection(asyncio.Protocol, Context):
    """One client connection."""

    def __init__(self, server: RespServer) -> None:
        self.server = server
        self.node = server.node
        self.id = next(server.ids)
        self.proto = 2
        self.name: str | None = None
        self.lib: dict[str, str] = {}
        # Who authenticated (None: nobody yet); ``authed`` and ``can_write`` follow it.
        self.user: User | None = None
        self.authed = False
        self.can_write = False
        self.set_user(None if server.auth.resp.enabled else OPEN_USER)
        self.token: SessionToken | None = None  # CRDTKV.SESSION: the session it serves
        self.wait_ms = limits.WAIT_MS_DEFAULT
        self.created = time.time()
        self.addr = "?"
        self.transport: asyncio.Transport | None = None
        self._reader = hiredis.Reader()
        self._inline = b""  # an inline command's bytes so far
        self._queue: collections.deque[list[bytes]] = collections.deque()
        self._out: collections.deque[list[Any]] = collections.deque()  # [bytes, ready, n]
        self._busy = False  # a command waits for its session: the rest waits behind it
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        self._stall: asyncio.TimerHandle | None = None
        self._saw = False  # a command of this batch read or wrote the keyspace
        self._now = 0  # the clock at the start of the batch (reads use it)
        # Run keyspace commands in ``_process`` itself, not through ``_execute`` (the same
        # checks; tests that stub ``_execute`` turn it off).
        self._inline_run = True
        # MULTI: the commands queued for EXEC (None: no transaction), and whether one
        # was refused (EXEC then aborts).
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_failed = False
        self.blocking = True  # False while EXEC runs: a blocking command answers at once
        # Sharded: ASKING was the last command (``_ask_next``), so the command running
        # (``asking``; a transaction's commands up to EXEC) may use a slot moving here.
        self.asking = False
        self._ask_next = False
        self._fresh = True  # the reader is between requests (it has none begun)
        self._partial = 0  # about the bytes of the request begun (hiredis holds them)
        self._bad: str | None = None  # a protocol error, answered after the commands before it
        # The unfinished request's bytes (b"" between requests; None: not kept, too long).
        self._carry: bytes | None = b""

    # -- authentication -------------------------------------------------------------------------
    def set_user(self, user: User | None) -> None:
        """AUTH, RESET, a reload: the connection's user (None: not authenticated)."""
        self.user = user
        self.authed = user is not None
        self.can_write = user is not None and user.can_write

    def recheck_user(self, users: Users) -> None:
        """After a reload: a user removed, or whose token changed, is disconnected (Redis
        disconnects the clients of a deleted user; a changed token is treated alike, so
        rotating a leaked token also ends the sessions opened with it); a user kept
        takes its new role."""
        user = self.user
        if user is None or user is OPEN_USER:
            return
        now = users.by_name.get(user.name)
        if now is None or now.digest != user.digest:
            log.info(
                "closing RESP client %s: its user %r was removed or its token changed",
                self.addr,
                user.name,
            )
            self.set_user(None)
            self.close()
            return
        self.set_user(now)

    def noperm(self, cmd: Command) -> RespError:
        """Redis's ACL refusal of a command (a read-only user's write)."""
        name = self.user.name if self.user is not None else "default"
        return RespError(
            f"NOPERM User {name} has no permissions to run the '{cmd.name.lower()}' command"
        )

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        server = self.server
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.addr = f"{peer[0]}:{peer[1]}"
        if len(server.clients) >= server.limits.clients_max:
            server.stats.rejected += 1
            transport.write(b"-ERR max number of clients reached\r\n")
            transport.close()
            self._closing = True
            return
        server.clients[self.id] = self
        server.stats.connections += 1
        transport.set_write_buffer_limits(high=server.limits.output_high)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self.server.clients.pop(self.id, None)
        if self._stall is not None:
            self._stall.cancel()
        self._queue.clear()
        self._out.clear()

    def pause_writing(self) -> None:
        # The client does not take its replies: stop reading its commands, and
        # drop it if it stays this way (its replies would otherwise pile up).
        self._write_paused = True
        self._pause_reading()
        if self._stall is None:
            loop = asyncio.get_running_loop()
            self._stall = loop.call_later(self.server.limits.stalled_s, self._stalled)

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._maybe_resume_reading()
        if not self._busy and self._queue:
            self._process()

    def _stalled(self) -> None:
        log.warning(
            "client %s took no reply for %.0f s; disconnecting",
            self.addr,
            self.server.limits.stalled_s,
        )
        self.abort()

    def data_received(self, data: bytes) -> None:
        if self._closing or self._bad is not None:
            return
        try:
            if self._inline or (data[:1] != b"*" and self._fresh):
                data = self._take_inline(data)
            if data:
                self._take_frames(data)
        except RespError as e:
            # The commands before the bad bytes run and are answered first.
            self.server.stats.protocol_errors += 1
            self._bad = e.text
            self._pause_reading()
        if not self._busy:
            if self._queue:
                self._process()
            elif self._bad is not None:
                self._fail(self._bad)

    # -- parsing ------------------------------------------------------------------------------
    def _take_frames(self, data: bytes) -> None:
        reader = self._reader
        limits = self.server.limits
        bad = None
        if self._fresh and _SUSPECT.search(data) is not None:
            # Before hiredis sees a huge array count (it allocates the list at once):
            # the requests before it run, then the error.
            bad = check_headers(data, limits.value_bytes_max, _count_max(limits))
            if bad is not None:
                data = data[: bad[0]]
        reader.feed(data)
        queue = self._queue
        fresh = None  # after the last whole request: nothing more is buffered
        prefix = b"" if self._fresh else self._carry  # the unfinished request's bytes so far
        got: list[Any] = []  # the requests parsed from ``prefix + data``
        while True:
            try:
                frame = reader.gets()
            except hiredis.ProtocolError as e:
                rest = self._after(prefix, data, got)
                if rest is None:
                    raise RespError(f"ERR Protocol error: {e}") from None
                # An inline command after arrays in the same read (redis-cli --pipe ends
                # with an empty line, then ECHO): it starts where the arrays end.
                self._reader = hiredis.Reader()
                self._fresh, self._partial, self._carry = True, 0, b""
                rest = self._take_inline(rest)
                if rest:
                    self._take_frames(rest)
                if bad is not None:
                    raise RespError(bad[1]) from None
                return
            if frame is False:
                break
            got.append(frame)
            fresh = not reader.has_data()
            if type(frame) is not list:
                raise RespError("ERR Protocol error: expected '*', a command is an array")
            if not frame:
                continue  # Redis ignores an empty array
            for part in frame:
                if type(part) is not bytes:
                    raise RespError("ERR Protocol error: expected '$', arguments are bulk strings")
            queue.append(frame)
        if bad is not None:
            raise RespError(bad[1])
        # The request begun: hiredis keeps only its unparsed bytes, so count them here
        # (reader.len() also counts up to 1 KiB already parsed).
        if fresh is None:
            self._fresh = False
            self._partial += len(data)
        else:
            self._fresh = fresh
            self._partial = 0 if fresh else reader.len()
        # Its bytes too, while they are few, to find where an inline command begins.
        if self._fresh:
            self._carry = b""
        elif prefix is not None and self._partial <= _CARRY_MAX:
            buf = prefix + data
            self._carry = buf[_requests_bytes(got) :]
        else:
            self._carry = None
        if self._partial > limits.value_bytes_max + 4096:
            raise RespError(f"ERR Protocol error: a request over {limits.value_bytes_max} bytes")
        if len(queue) > limits.queued_max:
            self._pause_reading()

    @staticmethod
    def _after(prefix: bytes | None, data: bytes, got: list[Any]) -> bytes | None:
        """What follows the requests parsed from ``prefix + data`` when it is an inline
        command; None when it is not (or its start is not known)."""
        if prefix is None:
            return None
        buf = prefix + data
        offset = _requests_bytes(got)
        rest = buf[offset:]
        if offset > len(buf) or rest[:1] in (b"*", b""):
            return None
        return rest

    def _take_inline(self, data: bytes) -> bytes:
        """Inline commands from ``data``; what follows them when it is RESP (``*``)."""
        buf = self._inline + data
        while buf and buf[:1] != b"*":
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > INLINE_BYTES_MAX:
                    raise RespError("ERR Protocol error: too big inline request")
                self._inline = buf
                return b""
            if end > INLINE_BYTES_MAX:
                raise RespError("ERR Protocol error: too big inline request")
            line, buf = buf[:end].rstrip(b"\r"), buf[end + 1 :]
            argv = split_inline(line)
            if argv:
                self._queue.append(argv)
        self._inline = b""
        return buf

    # -- running --------------------------------------------------------------------------------
    def _process(self) -> None:
        """Run every queued command that can run now; one write for their replies.

        A batch stops once its replies pass ``output_high`` (the rest runs in a later
        turn, or after the client has taken them): a pipeline of large reads from a
        client that does not read must not build all its replies at once."""
        out: list[bytes] = []
        n = 0
        size = 0
        high = self.server.limits.output_high
        queue = self._queue
        proto = self.proto
        self._saw = False
        clock = self.node.clock
        self._now = clock()
        cluster = self.node.cluster
        while queue and not self._closing:
            argv = queue.popleft()
            if n & 255 == 255:
                self._now = clock()  # a long pipeline: reads see the time move
            cmd = lookup(argv[0])
            if cluster is not None:
                # Sharded: a key this process does not serve is redirected before anything
                # runs (a few table lookups: the keys' slots, then this process's owners).
                if self.multi is None:
                    self.asking, self._ask_next = self._ask_next, False
                if cmd is not None and (cmd.keys[0] or cmd.getkeys is not None):
                    refusal = self._misrouted(cluster, cmd, argv)
                    if refusal is not None:
                        encode(refusal, proto, out)
                        n += 1
                        continue
            if self.multi is not None and (cmd is None or cmd.name not in _MULTI_CONTROL):
                encode(self._queue_in_multi(cmd, argv), proto, out)
                n += 1
                continue
            if cmd is not None and cmd.data and self.token is not None:
                try:
                    ready = self.node.admit_now(self.token, self.wait_ms, writes=cmd.writes)
                except CrdtkvError as e:
                    encode(error_reply(e), proto, out)
                    n += 1
                    continue
                if not ready:  # wait for the session, then go on in order
                    self._emit(out, n)
                    self._busy = True
                    asyncio.get_running_loop().create_task(self._wait_then_run(cmd, argv))
                    return
            if (
                cmd is not None
                and cmd.simple
                and self._inline_run
                and (len(argv) == cmd.arity if cmd.arity >= 0 else len(argv) >= -cmd.arity)
                and self.authed
                and (self.can_write or not cmd.writes)
            ):
                # The usual command: run it here (``_execute``'s checks passed).
                try:
                    reply = cmd.run(self, argv[1:])
                except Exception as e:
                    reply = self._failure(cmd, e)
            else:
                reply = self._execute(cmd, argv)
                proto = self.proto  # HELLO may change it, and answers in the new one
            n += 1
            t = type(reply)
            if t is Blocked:  # BLPOP ...: the rest waits behind it, as for a session
                assert cmd is not None
                self.server.stats.commands += n
                self._emit(out, n - 1)
                self._busy = True
                asyncio.get_running_loop().create_task(self._block_then_reply(cmd, reply))
                return
            if t is str:  # the usual replies, encoded here (``encode`` does the rest)
                b = reply.encode()
                chunk = b"$%d\r\n%s\r\n" % (len(b), b)
            elif reply is None:
                chunk = b"_\r\n" if proto == 3 else b"$-1\r\n"
            elif t is int:
                chunk = b":%d\r\n" % reply
            else:
                k = len(out)
                encode(reply, proto, out)
                size += len(out[k]) if len(out) == k + 1 else sum(map(len, out[k:]))
                if size > high:
                    break
                continue
            out.append(chunk)
            size += len(chunk)
            if size > high:
                break
        self.server.stats.commands += n
        self._emit(out, n)
        if queue:
            if size > high:  # resume_writing goes on if the client does not take them
                asyncio.get_running_loop().call_soon(self._continue)
        elif self._bad is not None:
            self._fail(self._bad)

    def _misrouted(self, cluster: ClusterState, cmd: Command, argv: list[bytes]) -> Any:
        """Redis Cluster's redirect of a keyed command, checked before it runs: MOVED (a
        slot this process does not own), ASK (one it handed over to a move's target),
        CROSSSLOT (keys over several slots); None when it runs here.  As Redis, a command
        that would be refused anyway (arity, authentication, permission) gets that error
        instead.  Inside MULTI, a redirected command aborts the transaction."""
        if (
            not cmd.arity_ok(len(argv))
            or not self.authed
            or (cmd.denied_read_only and not self.can_write)
        ):
            return None
        try:
            if cmd.getkeys is None and cmd.keys == (1, 1, 1) and len(argv) > 1:
                cluster.check_key(argv[1], self.asking)
            else:
                cluster.check_keys(command_keys(cmd, argv), self.asking)
        except (Moved, CrossSlot, TryAgain) as e:
            self.server.stats.errors += 1
            if self.multi is not None:
                self.multi_failed = True
            return error_reply(e)
        return None

    def check_transaction(self, queued: list[tuple[Command, list[bytes]]]) -> None:
        """EXEC, sharded: every key of the transaction in one slot this process serves
        (Redis Cluster's rule; each command was checked alone when queued)."""
        cluster = self.node.cluster
        if cluster is None:
            return
        keys: list[bytes] = []
        for cmd, argv in queued:
            keys += command_keys(cmd, argv)
        cluster.check_keys(keys, self.asking)  # error_reply gives Redis's texts

    def _continue(self) -> None:
        if self._queue and not (self._busy or self._write_paused or self._closing):
            self._process()

    async def _wait_then_run(self, cmd: Command, argv: list[bytes]) -> None:
        out: list[bytes] = []
        try:
            assert self.token is not None
            await self.node.enter(self.token, self.wait_ms, writes=cmd.writes)
        except CrdtkvError as e:
            encode(error_reply(e), self.proto, out)
        else:
            self._saw = False
            self._now = self.node.clock()
            self.server.stats.commands += 1
            reply = self._execute(cmd, argv)
            if type(reply) is Blocked:
                reply = await self._wait_blocked(cmd, reply)
            encode(reply, self.proto, out)
        self._busy = False
        if self._closing:
            return
        self._emit(out, 1)
        self._maybe_resume_reading()
        if self._queue:
            self._process()
        elif self._bad is not None:
            self._fail(self._bad)

    async def _block_then_reply(self, cmd: Command, blocked: Blocked) -> None:
        reply = await self._wait_blocked(cmd, blocked)
        self._busy = False
        if self._closing:
            return
        out: list[bytes] = []
        encode(reply, self.proto, out)
        self._emit(out, 1)
        self._maybe_resume_reading()
        if self._queue:
            self._process()
        elif self._bad is not None:
            self._fail(self._bad)

    async def _wait_blocked(self, cmd: Command, blocked: Blocked) -> Any:
        """A blocking command's reply: ``retry`` after each wake-up until it answers,
        or the timeout's reply."""
        loop = asyncio.get_running_loop()
        end = None if blocked.timeout_ms == 0 else loop.time() + blocked.timeout_ms / 1000
        server = self.server
        while not self._closing:
            left = _RECHECK_S if end is None else min(_RECHECK_S, end - loop.time())
            if left <= 0:
                return blocked.timeout_reply
            wake: asyncio.Future[None] = loop.create_future()
            server.wakeups[wake] = None
            try:
                await asyncio.wait([wake], timeout=left)
            finally:
                server.wakeups.pop(wake, None)
            if self._closing:
                break
            self._now = self.node.clock()
            try:
                reply = blocked.retry()
            except Exception as e:
                return self._failure(cmd, e)
            if reply is not None:
                return reply
        return blocked.timeout_reply

    def _queue_in_multi(self, cmd: Command | None, argv: list[bytes]) -> Any:
        """A command between MULTI and EXEC: checked now, run by EXEC."""
        assert self.multi is not None
        if cmd is None:
            self.multi_failed = True
            return _unknown(argv)
        if not cmd.arity_ok(len(argv)):
            self.multi_failed = True
            return RespError(f"ERR wrong number of arguments for '{cmd.name.lower()}' command")
        if not self.authed and not cmd.noauth:
            self.multi_failed = True
            return RespError("NOAUTH Authentication required.")
        if cmd.denied_read_only and not self.can_write:
            self.multi_failed = True  # as Redis: refused when queued, and EXEC aborts
            return self.noperm(cmd)
        if len(self.multi) >= self.server.limits.queued_max:
            self.multi_failed = True
            return RespError(
                f"ERR a transaction holds at most {self.server.limits.queued_max} commands"
            )
        self.multi.append((cmd, argv))
        return QUEUED

    def run_multi(self) -> list[Any]:
        """EXEC: every queued command, in order, with nothing in between."""
        queued, self.multi = self.multi or [], None
        self.check_transaction(queued)  # sharded: CROSSSLOT, MOVED (the transaction is gone)
        self.server.stats.commands += len(queued)
        self.blocking = False  # a blocking command answers at once, as in Redis
        try:
            return [self._execute_queued(cmd, argv) for cmd, argv in queued]
        finally:
            self.blocking = True

    def _execute_queued(self, cmd: Command, argv: list[bytes]) -> Any:
        if cmd.denied_read_only and not self.can_write:
            # The role changed (a reload) since the command was queued: Redis's text.
            self.server.stats.errors += 1
            return RespError(
                "NOPERM ACLs rules changed between the moment the transaction was "
                "accumulated and the EXEC call. This command is no longer allowed for the "
                "following reason: no permission to execute the command or subcommand"
            )
        return self._execute(cmd, argv)

    def _execute(self, cmd: Command | None, argv: list[bytes]) -> Any:
        """One command's reply (never raises)."""
        if cmd is None:
            self.server.stats.errors += 1
            return _unknown(argv)
        if not cmd.arity_ok(len(argv)):
            self.server.stats.errors += 1
            return RespError(f"ERR wrong number of arguments for '{cmd.name.lower()}' command")
        if not self.authed and not cmd.noauth:
            self.server.stats.errors += 1
            return RespError("NOAUTH Authentication required.")
        if cmd.denied_read_only and not self.can_write:
            self.server.stats.errors += 1
            return self.noperm(cmd)
        try:
            return cmd.run(self, argv[1:])
        except Exception as e:
            return self._failure(cmd, e)

    def _failure(self, cmd: Command, e: Exception) -> RespError:
        """The error reply of a command that raised ``e``."""
        self.server.stats.errors += 1
        if isinstance(e, RespError):
            return e
        if isinstance(e, StorageError):
            return RespError(f"ERR {e.message}")
        if isinstance(e, CrdtkvError):
            return error_reply(e)
        log.error("unexpected error running %s", cmd.name, exc_info=e)
        return RespError("ERR internal error; see the replica's log")

    # -- Context --------------------------------------------------------------------------------
    def apply(self, op: dict[str, Any]) -> dict[str, Any]:
        self._saw = True
        if not self.can_write:  # a second line behind the command's write flag
            spec = OPS.get(op.get("op"))  # type: ignore[arg-type]
            if spec is not None and spec.writes:
                raise self._no_write()
        return self.node.apply(op, self.asking)

    def run_op(self, spec: OpSpec, op: dict[str, Any]) -> dict[str, Any]:
        self._saw = True
        if not self.can_write and spec.writes:
            raise self._no_write()
        return self.node.run(spec, op, self.asking)

    def _no_write(self) -> RespError:
        name = self.user.name if self.user is not None else "default"
        return RespError(f"NOPERM User {name} has no permissions to write")

    def read(self, name: str, type_: str) -> Any:
        self._saw = True
        node = self.node
        if node.core.failed is not None:
            raise StorageError("replica stopped after a storage failure")
        return node.replica.read(name, type_, self._now)

    def now_ms(self) -> int:
        return self.node.now_ms()

    # -- replies --------------------------------------------------------------------------------
    def _emit(self, out: list[bytes], n: int) -> None:
        """Queue a batch's replies; they leave once what the batch saw is durable."""
        if not out or self._closing:
            return
        data = b"".join(out)
        if not self._saw:
            entry: list[Any] = [data, True, n]
            self._out.append(entry)
            self._drain()
            return
        self._saw = False
        try:
            done = self.node.finish_nowait(self.token)
        except StorageError as e:
            self._out.append([_failed(e, n, self.proto), True, n])
            self._drain()
            return
        if isinstance(done, SessionToken):
            if self.token is not None:
                self.token = done
            self._out.append([data, True, n])
            self._drain()
            return
        entry = [data, False, n]
        self._out.append(entry)
        done.add_done_callback(lambda f: self._durable(entry, f))

    def _durable(self, entry: list[Any], f: asyncio.Future[SessionToken]) -> None:
        if f.cancelled():
            entry[0] = _failed(StorageError("the replica is stopping"), entry[2], self.proto)
        elif f.exception() is not None:
            err = f.exception()
            assert isinstance(err, Exception)
            e = err if isinstance(err, StorageError) else StorageError(str(err))
            entry[0] = _failed(e, entry[2], self.proto)
        elif self.token is not None:
            self.token = f.result()
        entry[1] = True
        self._drain()

    def _drain(self) -> None:
        out = self._out
        if not out or not out[0][1] or self.transport is None:
            return
        chunks = []
        while out and out[0][1]:
            chunks.append(out.popleft()[0])
        if self._closing:
            return
        self.transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if self.transport.get_write_buffer_size() > self.server.limits.output_max:
            log.warning(
                "client %s has over %d reply bytes unread; disconnecting",
                self.addr,
                self.server.limits.output_max,
            )
            self.abort()
            return
        if self._quit_after and not out:
            self.close()

    _quit_after = False

    def quit(self) -> None:
        """QUIT: close once the replies so far (its +OK included) are written."""
        self._quit_after = True
        self._queue.clear()

    # -- flow control and closing -------------------------------------------------------------
    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self._closing:
            self._read_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._read_paused
            and not self._write_paused
            and len(self._queue) <= self.server.limits.queued_max // 2
            and self.transport is not None
            and not self._closing
        ):
            self._read_paused = False
            self.transport.resume_reading()

    def _fail(self, text: str) -> None:
        """A protocol error: answer it after the replies before it, then close."""
        if self._quit_after:
            return  # QUIT came first
        self._queue.clear()
        out: list[bytes] = []
        encode(RespError(text), self.proto, out)
        self._out.append([out[0], True, 1])
        self._quit_after = True
        self._drain()

    def close(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self._closing = True
            self.transport.abort()


class _RespCollector:
    """The RESP server's figures on the node's ``/metrics``."""

    def __init__(self, server: RespServer) -> None:
        self.server = server

    def _families(self, with_samples: bool) -> list[Metric]:
        st = self.server.stats
        rows: list[tuple[type[GaugeMetricFamily] | type[CounterMetricFamily], str, str, float]] = [
            (
                GaugeMetricFamily,
                "crdtkv_resp_connections",
                "RESP connections open",
                len(self.server.clients),
            ),
            (
                CounterMetricFamily,
                "crdtkv_resp_connections",
                "RESP connections accepted",
                st.connections,
            ),
            (
                CounterMetricFamily,
                "crdtkv_resp_rejected_connections",
                "RESP connections refused (over --resp-clients-max)",
                st.rejected,
            ),
            (CounterMetricFamily, "crdtkv_resp_commands", "RESP commands run", st.commands),
            (CounterMetricFamily, "crdtkv_resp_error_replies", "RESP error replies", st.errors),
            (
                CounterMetricFamily,
                "crdtkv_resp_protocol_errors",
                "RESP connections closed for a protocol error",
                st.protocol_errors,
            ),
        ]
        out: list[Metric] = []
        for family, name, doc, value in rows:
            if family is GaugeMetricFamily:
                name += "_open"
            if with_samples:
                out.append(family(name, doc, value=value))
            else:
                out.append(family(name, doc))
        return out

    def collect(self) -> Iterable[Metric]:
        return self._families(True)

    def describe(self) -> Iterable[Metric]:
        return self._families(False)


# A header with a count or length of 100,000 or more (or what looks like one in a value).
_SUSPECT = re.compile(rb"[*$%~>|]\d{6}")


_CARRY_MAX = 64 * 1024  # an unfinished request's bytes kept to find an inline command after it


def _requests_bytes(frames: list[Any]) -> int:
    return sum(_request_bytes(f) if type(f) is list else 0 for f in frames)


def _request_bytes(frame: list[Any]) -> int:
    """The length of ``frame`` sent as a RESP array of bulk strings (as every client sends
    it; a client writing ``$03`` would be miscounted, and then gets a protocol error)."""
    n = 3 + len(str(len(frame)))
    for part in frame:
        size = len(part) if type(part) is bytes else 0
        n += 5 + len(str(size)) + size
    return n


def _count_max(limits: RespLimits) -> int:
    """The most arguments a request within the size limit can have (each takes 4 bytes
    or more: ``$0\r\n`` and the empty value's ``\r\n``)."""
    return (limits.value_bytes_max + 4096) // 4


def _number(b: bytes) -> int | None:
    return int(b) if b.isdigit() and len(b) < 19 else None


def check_headers(data: bytes, bulk_max: int, count_max: int) -> tuple[int, str] | None:
    """Walk the requests in ``data`` (read between requests) for an array count or bulk
    length over the limits, to refuse it before hiredis allocates for it or waits for its
    bytes: (where its request starts, Redis's error), or None.  Stops where ``data`` ends
    or a header is malformed (hiredis says what is wrong then)."""
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] != 0x2A:  # not '*': an inline command, one line
            end = data.find(b"\n", pos)
            if end < 0:
                return None
            pos = end + 1
            continue
        start = pos
        end = data.find(b"\r\n", pos)
        if end < 0:
            return None
        count = _number(data[pos + 1 : end])
        if count is None or count > count_max:
            if count is None and not data[pos + 1 : end].isdigit():
                return None
            return start, "ERR Protocol error: invalid multibulk length"
        pos = end + 2
        for _ in range(count):
            if pos >= n:
                return None
            if data[pos] != 0x24:  # '$'
                return start, "ERR Protocol error: expected '$', arguments are bulk strings"
            end = data.find(b"\r\n", pos)
            if end < 0:
                return None
            length = _number(data[pos + 1 : end])
            if length is None or length > bulk_max:
                if length is None and not data[pos + 1 : end].isdigit():
                    return None
                return start, "ERR Protocol error: invalid bulk length"
            pos = end + 2 + length + 2
    return None


def _failed(e: StorageError, n: int, proto: int) -> bytes:
    out: list[bytes] = []
    err = RespError(f"ERR {e.message}")
    for _ in range(n):
        encode(err, proto, out)
    return b"".join(out)


def _unknown(argv: list[bytes]) -> RespError:
    name = argv[0].decode("utf-8", "replace")[:128]
    args = " ".join(f"'{a.decode('utf-8', 'replace')[:128]}'" for a in argv[1:4])
    return RespError(f"ERR unknown command '{name}', with args beginning with: {args}")


# -- inline commands -------------------------------------------------------------------------------
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("a"): b"\a"}


def split_inline(line: bytes) -> list[bytes]:
    """An inline command's arguments, as Redis's ``sdssplitargs``: spaces separate,
    ``"..."`` takes escapes (``\\n``, ``\\xHH``, ...), ``'...'`` takes ``\\'``.

    As there, blanks before an argument are any ``isspace`` byte, but only space,
    tab, CR and LF end an unquoted one (``a\\vb`` is one argument)."""
    if b'"' not in line and b"'" not in line and b"\v" not in line and b"\f" not in line:
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t\r\n\v\f":
            i += 1
        if i >= n:
            return args
        cur = bytearray()
        inq = insq = False
        while True:
            if inq:
                if i >= n:
                    raise RespError("ERR Protocol error: unbalanced quotes in request")
                c = line[i]
                if (
                    c == ord("\\")
                    and i + 3 < n
                    and line[i + 1] == ord("x")
                    and _ishex(line[i + 2])
                    and _ishex(line[i + 3])
                ):
                    cur.append(int(line[i + 2 : i + 4], 16))
                    i += 3
                elif c == ord("\\") and i + 1 < n:
                    i += 1
                    cur += _ESCAPES.get(line[i], bytes([line[i]]))
                elif c == ord('"'):
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise RespError("ERR Protocol error: unbalanced quotes in request")
                    i += 1
                    break
                else:
                    cur.append(c)
            elif insq:
                if i >= n:
                    raise RespError("ERR Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == ord("\\") and i + 1 < n and line[i + 1] == ord("'"):
                    i += 1
                    cur.append(ord("'"))
                elif c == ord("'"):
                    if i + 1 < n and line[i + 1] not in b" \t\r\n\v\f":
                        raise RespError("ERR Protocol error: unbalanced quotes in request")
                    i += 1
                    break
                else:
                    cur.append(c)
            else:
                if i >= n:
                    break
                c = line[i]
                if c in b" \t\r\n":
                    break
                if c == ord('"'):
                    inq = True
                elif c == ord("'"):
                    insq = True
                else:
                    cur.append(c)
            i += 1
        args.append(bytes(cur))


def _ishex(c: int) -> bool:
    return c in b"0123456789abcdefABCDEF"

"""The RESP command table: every Redis command a replica answers.

Three kinds of command, one table (``COMMANDS``, name -> ``Command``):

- **op commands**, built from the op table's RESP column (``OpSpec.resp``):
  the command's arguments become the op's fields, the op runs as it does for
  HTTP (``Context.apply``: same validation, same CRDT, same durability and
  replication) and its result becomes the reply.  Most commands are these.
- **composite commands** (``crdtkv.resp.strings``, ``crdtkv.resp.keyspace``,
  ...): a few ops in a row on one replica, such as ``SET k v NX GET`` (a read,
  then a write).  They are atomic on the replica that runs them (one event
  loop turn), not across replicas, as everything in a CRDT store.
- **connection and server commands** (this module and ``crdtkv.resp.server``):
  HELLO, AUTH, CLIENT, SELECT, PING, ECHO, QUIT, COMMAND, CONFIG GET, INFO,
  DBSIZE, TIME, CRDTKV.SESSION.

A command function gets the connection (``Context``) and the arguments
after the command's name, and returns a reply value (``crdtkv.resp.values``)
or raises ``RespError`` / ``CrdtkvError`` (the server turns the latter into
Redis's error texts with ``error_reply``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crdtkv.errors import (
    Ask,
    BadRequest,
    CounterOverflow,
    CrdtkvError,
    CrossSlot,
    Moved,
    NotAnInteger,
    NotFound,
    NotNumeric,
    SessionUnavailable,
    TryAgain,
    WrongType,
)
from crdtkv.ops.spec import RAISES, OpSpec, Resp, Result
from crdtkv.resp.values import RespError

__all__ = [
    "COMMANDS",
    "CROSSSLOT",
    "WRONGTYPE",
    "Blocked",
    "Command",
    "Context",
    "Run",
    "command",
    "command_keys",
    "ensure_loaded",
    "error_reply",
    "lookup",
    "op_command",
    "redirect_reply",
    "register",
]

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


class Context:
    """What a command sees of its connection (``crdtkv.resp.server.Connection``)."""

    proto: int  # 2 or 3
    id: int  # CLIENT ID
    name: str | None  # CLIENT SETNAME
    blocking: bool = True  # a blocking command may wait (not inside EXEC)

    def apply(self, op: dict[str, Any]) -> Result:
        """Run one op of the op table at this replica (raises ``CrdtkvError``)."""
        raise NotImplementedError

    def run_op(self, spec: OpSpec, op: dict[str, Any]) -> Result:
        """``apply`` of an op whose spec is known (``op`` needs no ``"op"`` field)."""
        raise NotImplementedError

    def read(self, name: str, type_: str) -> Any:
        """``Replica.read`` now: the key's state of ``type_``, None when absent
        (``WrongType`` for another type).  For a hot read's direct form (``Resp.run``)."""
        raise NotImplementedError

    def now_ms(self) -> int:
        raise NotImplementedError


Run = Callable[[Context, list[bytes]], Any]


@dataclass(frozen=True, slots=True)
class Blocked:
    """The reply of a blocking command (BLPOP, ...) that has nothing to answer yet: the
    server holds the connection's later commands and calls ``retry`` after each batch
    this replica writes (a local or a replicated change) and at least once a second,
    until it answers (anything but None) or ``timeout_ms`` (0: none) has passed; then it
    sends ``timeout_reply``."""

    retry: Callable[[], Any]
    timeout_ms: int
    timeout_reply: Any


@dataclass(frozen=True, slots=True)
class Command:
    """One RESP command."""

    name: str  # upper case
    arity: int  # Redis's: the argument count with the name; negative: at least -arity
    run: Run  # (connection, arguments after the name) -> reply
    writes: bool = False  # it may change the keyspace (a session write: absorbs the HLC)
    data: bool = True  # it reads or writes the keyspace (sessions wait; replies wait for disk)
    flags: tuple[str, ...] = ()  # COMMAND's other flags
    keys: tuple[int, int, int] = (1, 1, 1)  # first key, last key (-1: last), step; (0,0,0): none
    summary: str = ""  # COMMAND DOCS
    group: str = "generic"  # COMMAND DOCS' group
    noauth: bool = False  # allowed before AUTH (AUTH, HELLO, QUIT)
    # The keys of a command whose keys ``keys`` cannot say (a ``numkeys`` argument, a
    # keyword before them: Redis's movable keys): (arguments with the name) -> keys.
    getkeys: Callable[[list[bytes]], list[bytes]] | None = None

    # Whether the server may run it in its fast path: a keyspace command, not one that
    # changes the connection (HELLO, MULTI, QUIT...) or runs others (EXEC).
    simple: bool = field(init=False, repr=False, compare=False)
    # Whether a read-only user is refused it (NOPERM): a write, but not EXEC, whose
    # queued commands were each checked (as Redis's EXEC, which is not a write command).
    denied_read_only: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "simple", self.data and self.name != "EXEC")
        object.__setattr__(self, "denied_read_only", self.writes and self.name != "EXEC")

    def arity_ok(self, argc: int) -> bool:
        """``argc``: the argument count with the name."""
        a = self.arity
        return argc == a if a >= 0 else argc >= -a

    def command_flags(self) -> list[str]:
        base = ["write"] if self.writes else (["readonly"] if self.data else [])
        return base + list(self.flags) + (["movablekeys"] if self.getkeys is not None else [])


def command_keys(cmd: Command, argv: list[bytes]) -> list[bytes]:
    """The keys ``argv`` (with the command's name) names, as Redis's ``COMMAND GETKEYS``:
    ``getkeys`` when the command has one, else ``keys`` (first, last, step; a negative
    last counts from the end: -1 the last argument, -2 the one before).  What a sharded
    replica checks against its slots before it runs the command."""
    if cmd.getkeys is not None:
        return cmd.getkeys(argv)
    first, last, step = cmd.keys
    if not first:
        return []
    if last < 0:
        last += len(argv)
    return argv[first : last + 1 : step]


COMMANDS: dict[str, Command] = {}
_LOOKUP: dict[bytes, Command] = {}


def register(cmd: Command) -> Command:
    if cmd.name in COMMANDS:
        raise ValueError(f"RESP command {cmd.name} is defined twice")
    COMMANDS[cmd.name] = cmd
    _LOOKUP[cmd.name.encode()] = cmd
    _LOOKUP[cmd.name.lower().encode()] = cmd
    return cmd


def command(
    name: str,
    arity: int,
    *,
    writes: bool = False,
    data: bool = True,
    flags: tuple[str, ...] = (),
    keys: tuple[int, int, int] = (1, 1, 1),
    summary: str = "",
    group: str = "generic",
    noauth: bool = False,
    getkeys: Callable[[list[bytes]], list[bytes]] | None = None,
) -> Callable[[Run], Run]:
    """Decorator: register a composite or server command."""

    def deco(run: Run) -> Run:
        register(
            Command(name, arity, run, writes, data, flags, keys, summary, group, noauth, getkeys)
        )
        return run

    return deco


def lookup(name: bytes) -> Command | None:
    cmd = _LOOKUP.get(name)
    if cmd is None:
        cmd = _LOOKUP.get(name.upper())
    return cmd


# -- op commands -----------------------------------------------------------------------------
def op_command(spec: OpSpec, resp: Resp) -> Command:
    """The command of one RESP column of the op table."""
    parse, reply, absent = resp.args, resp.reply, resp.absent

    string_wrongtype = resp.string_wrongtype

    def run_generic(ctx: Context, argv: list[bytes]) -> Any:
        op = parse(argv)
        try:
            result = ctx.run_op(spec, op)
        except NotFound:
            if absent is RAISES:
                raise
            return absent
        except WrongType as e:
            if string_wrongtype is None or isinstance(e, NotAnInteger):
                raise
            if _first_other_type(ctx, spec, op) == "string":
                raise RespError(string_wrongtype) from None
            raise
        return reply(result)

    run: Run = resp.run if resp.run is not None else run_generic
    group = {
        "registers": "string",
        "counters": "string",
        "hlls": "hyperloglog",
        "vsets": "vector_set",
        "hashes": "hash",
        "zsets": "sorted_set",
    }.get(spec.namespace, spec.namespace.rstrip("s") if spec.namespace != "keys" else "generic")
    return Command(
        resp.command,
        resp.arity,
        run,
        writes=spec.writes,
        flags=resp.flags,
        keys=resp.keys,
        summary=resp.summary or spec.doc.summary,
        group=group,
    )


def _first_other_type(ctx: Context, spec: OpSpec, op: dict[str, Any]) -> str | None:
    """The type of the first key the op names (its key, then its ``sources``) that
    holds a type other than the op's; None when there is none (any more)."""
    from crdtkv.ops.table import VIEW_TYPES

    own = VIEW_TYPES.get(spec.namespace)
    for key in [op["key"], *(op.get("sources") or ())]:
        t = ctx.apply({"op": "keys.type", "key": key})["type"]
        if t not in ("none", own):
            return str(t)
    return None


def register_op_table() -> None:
    from crdtkv.ops.table import TABLE

    for spec in TABLE:
        for resp in spec.resp:
            register(op_command(spec, resp))


# -- errors ----------------------------------------------------------------------------------
def error_reply(e: CrdtkvError) -> RespError:
    """A crdtkv error as the error a Redis client expects."""
    if isinstance(e, NotAnInteger):
        return RespError("ERR value is not an integer or out of range")
    if isinstance(e, NotNumeric):
        return RespError(f"ERR {e.message}")
    if isinstance(e, CounterOverflow):
        if "NaN" in e.message:
            return RespError(f"ERR {e.message}")
        return RespError("ERR increment or decrement would overflow")
    if isinstance(e, WrongType):
        if e.message.startswith("ERR "):
            return RespError(e.message)
        return RespError(WRONGTYPE)
    if isinstance(e, SessionUnavailable):
        return RespError(f"SESSIONUNAVAILABLE {e.message}")
    if isinstance(e, Moved):  # and Ask, its subclass
        return redirect_reply(e)
    if isinstance(e, CrossSlot):
        return RespError(CROSSSLOT)
    if isinstance(e, TryAgain):  # a slot's last copy to its new shard is in flight
        return RespError(f"TRYAGAIN {e.message}")
    if isinstance(e, BadRequest):
        return RespError(f"ERR {e.message}")
    return RespError(f"ERR {e.message}")


CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot"


def redirect_reply(e: Moved) -> RespError:
    """Redis Cluster's redirect: ``MOVED <slot> <host>:<port>`` (``ASK`` for a slot handed
    over to a move's target), the owner's RESP address in this process's region."""
    kind = "ASK" if isinstance(e, Ask) else "MOVED"
    if not e.resp:  # the owner serves no RESP: nothing a Redis client could follow
        return RespError(f"ERR {kind} {e.slot}: {e.message}, which serves no RESP port")
    return RespError(f"{kind} {e.slot} {e.resp}")


# -- loading ---------------------------------------------------------------------------------
# The modules whose commands register on import (besides the op table's column).
MODULES = (
    "crdtkv.resp.admin",
    "crdtkv.resp.strings",
    "crdtkv.resp.hashes_zsets",
    "crdtkv.resp.keyspace",
    "crdtkv.resp.sets",
    "crdtkv.resp.lists",
    "crdtkv.resp.vsets",
    "crdtkv.resp.cluster",
)
_loaded = False


def ensure_loaded() -> None:
    """Fill ``COMMANDS`` (once): the op table's RESP column, then ``MODULES``."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import importlib

    register_op_table()
    for module in MODULES:
        importlib.import_module(module)

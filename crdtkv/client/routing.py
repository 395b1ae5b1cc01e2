"""What the clients need to route by slot: the steps a call takes, session tokens per
shard, and the keys of a batch's ops.

A call is run as a *plan*: a generator that yields the I/O it needs (``Send`` a
request, ``Sleep``, run several plans in ``Parallel``) and is sent back the
outcome (``Reply`` or ``Failed``; nothing for ``Sleep``; the plans' results, or
the exceptions they raised, for ``Parallel``).  ``Client`` and ``AsyncClient``
only differ in how they carry these steps out (blocking, or awaited and, for
``Parallel``, concurrently), so the failover, redirect and session logic is
written once (``crdtkv.client._base``).

A sharded cluster's session is one token per shard (each shard's replicas have
their own actors): ``{shard id: token}``.  As one string (``session_token``) it
is ``"<shard>=<token>,<shard>=<token>"``, sorted by shard; a token never holds
``=`` or ``,`` (URL-safe base64 without padding, and a dot) and a shard id
neither, so a plain token (an unsharded cluster's) is told apart by its lack of
``=``.
"""

from __future__ import annotations

import base64
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from crdtkv.errors import BadRequest
from crdtkv.ops.table import OPS

__all__ = [
    "ASKING_HEADER",
    "REDIRECTS_MAX",
    "UNSCOPED",
    "Failed",
    "Parallel",
    "Plan",
    "Reply",
    "Send",
    "Sleep",
    "format_tokens",
    "op_keys",
    "parse_tokens",
    "token_replicas",
]

ASKING_HEADER = "X-Crdtkv-Asking"  # sent with the one request that follows an ``ask``
REDIRECTS_MAX = 5  # 421s followed per call (or per op of a batch) before giving up
UNSCOPED = ""  # the token of an unsharded cluster, or one whose shard is not known yet


@dataclass(frozen=True, slots=True)
class Send:
    url: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    idempotent: bool
    # Keep the connection for the calls that follow; False: close it after the answer
    # (a map request, so that a call's first request goes on a fresh connection as
    # it would without one: the blocking client resends on a kept-alive one).
    keep: bool = True


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Parallel:
    """Run these plans (concurrently in the asyncio client); each one's result or exception."""

    plans: list[Plan]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Any  # a case-insensitive mapping
    data: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer.  ``reached``: the request may have reached the server (a dropped
    connection, a timeout); False: it certainly did not (refused, bad certificate)."""

    error: BaseException
    reached: bool = field(default=True)


Step = Send | Sleep | Parallel
Plan = Generator[Step, Any, Any]


# -- session tokens per shard -----------------------------------------------------------------


def parse_tokens(text: str | None) -> dict[str, str]:
    """``session_token=`` as given: a plain token (for whatever shard it came from, found
    out once the map is known) or ``"shard=token,..."``; BadRequest if malformed."""
    if not text:
        return {}
    if "=" not in text:
        if "," in text:
            raise BadRequest("a session token has no ','; several are 'shard=token,...'")
        return {UNSCOPED: text}
    out: dict[str, str] = {}
    for part in text.split(","):
        shard, sep, token = part.partition("=")
        if not sep or not shard or not token or "=" in token:
            raise BadRequest(f"a sharded session token is 'shard=token,...', not {part[:40]!r}")
        out[shard] = token
    return out


def format_tokens(tokens: Mapping[str, str]) -> str | None:
    if not tokens:
        return None
    if set(tokens) == {UNSCOPED}:
        return tokens[UNSCOPED]
    return ",".join(f"{s}={t}" for s, t in sorted(tokens.items()) if s != UNSCOPED)


def token_replicas(token: str) -> set[str] | None:
    """The replica ids whose updates a token covers, read without verifying it (the
    replica verifies); None if it does not read as a token.  Used once, to find the
    shard of a plain token given to a client of a sharded cluster."""
    payload = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        decoded = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        vv = decoded[1]
        return {str(actor).rsplit("~", 1)[0] for actor in vv}
    except Exception:
        return None


# -- batches ----------------------------------------------------------------------------------


def op_keys(op: object) -> tuple[str, ...]:
    """The keys a batch op names (its KEY and KEYS fields); () for one that names none
    or is malformed (its replica answers the error)."""
    if not isinstance(op, Mapping):
        return ()
    name = op.get("op")
    spec = OPS.get(name) if isinstance(name, str) else None
    if spec is None:
        return ()
    try:
        names = spec.key_names(op)
    except Exception:
        return ()
    if names and isinstance(names[0], str):
        return (names[0],)
    return ()

"""One error tree for the whole project; each error knows its HTTP status.

    CrdtkvError                       base of everything we raise on purpose
    ├── BadRequest (400 bad_request)  the caller sent something we refuse
    │   ├── CodecError                bytes or data that do not decode
    │   ├── CounterOverflow           result outside the 64-bit signed range
    │   ├── NotNumeric                an increment of a value that is not a number
    │   ├── ClockOffsetError          a remote timestamp too far ahead of ours
    │   └── ProtocolError             a replication peer broke the protocol
    │       ├── SyncTooLarge (413)    a state sync past the receiver's buffer bound
    │       └── WireVersionMismatch   a peer speaks a wire format this release does not
    ├── Unauthorized (401)            no or a wrong auth token
    ├── Forbidden (403)               a read-only user's write
    ├── NotFound (404)
    │   └── KeyNotFound               the client's registers.get of an absent key
    ├── MethodNotAllowed (405)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── SessionUnavailable (503)      a session token this replica cannot serve yet
    ├── Moved (421 moved)             the key's slot belongs to another shard (sharding)
    │   └── Ask (421 ask)             the key's slot is being handed to another shard now
    ├── CrossSlot (400 cross_slot)    one request's keys hash to different slots
    ├── TryAgain (503 try_again)      the key's slot is being handed over: retry shortly
    ├── StaleMap (409 stale_map)      a posted cluster map older than the one held
    ├── StorageError (500 internal)   the data directory misbehaved
    └── ClusterUnavailable            (client side) no replica in the list answered

Each class carries its HTTP ``status`` and wire ``code``; nothing else
spells the mapping out.  The API layer maps any CrdtkvError to a response in
one place (``status``, ``code``, ``message``); ``error_for_status`` names the
class of a status that something else raised (aiohttp's router);
``WIRE_ERRORS`` are the codes a response can carry, and the classes the
client raises for them (``error_for_code``).  Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "WIRE_ERRORS",
    "Ask",
    "BadRequest",
    "ClockOffsetError",
    "ClusterUnavailable",
    "CodecError",
    "CounterOverflow",
    "CrdtkvError",
    "CrossSlot",
    "Forbidden",
    "KeyNotFound",
    "MethodNotAllowed",
    "Moved",
    "NotAnInteger",
    "NotFound",
    "NotNumeric",
    "PayloadTooLarge",
    "ProtocolError",
    "SessionUnavailable",
    "StaleMap",
    "StorageError",
    "SyncTooLarge",
    "TryAgain",
    "Unauthorized",
    "UnsupportedMediaType",
    "WireVersionMismatch",
    "WrongType",
    "error_for_code",
    "error_for_status",
]


class CrdtkvError(Exception):
    """Base of every error crdtkv raises on purpose."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message = message or self.code


class BadRequest(CrdtkvError):
    status = 400
    code = "bad_request"


class CodecError(BadRequest):
    """Encoded data that does not decode: garbage, wrong type tag or version."""


class CounterOverflow(BadRequest):
    """A counter change whose result would leave the 64-bit signed range (for a
    float increment: whose result would be infinite or not a number)."""


class NotNumeric(BadRequest):
    """An increment of a value that is not a number (an integer increment: not
    an integer), as Redis's ``ERR value is not an integer``; nothing changed."""


class ClockOffsetError(BadRequest):
    """A remote HLC timestamp further ahead of local physical time than allowed."""


# -- replication: what a peer can get wrong -------------------------------------------------
class ProtocolError(BadRequest):
    """A replication message that decodes but breaks the protocol: out of place
    (a reply sent as a request), inconsistent (push entries outside the range
    it names) or over a bound of the receiver.  Answered with the class's
    status; the sender counts the request as failed and retries later."""


class SyncTooLarge(ProtocolError):
    """The states a state sync shipped so far exceed what the receiver buffers
    (``ReplicationSettings.sync_buffer_bytes_max``): the run is dropped."""

    status = 413
    code = "payload_too_large"


class WireVersionMismatch(ProtocolError):
    """A replication peer speaks a wire format this release does not read
    (``crdtkv.versions``): refused before a byte of the body is decoded, with
    both releases and both formats in the message."""

    code = "wire_version"


class Unauthorized(CrdtkvError):
    status = 401
    code = "unauthorized"


class Forbidden(CrdtkvError):
    """An authenticated user whose role does not allow the call: a read-only user's
    write (``--auth-file``).  Nothing changed."""

    status = 403
    code = "forbidden"


class NotFound(CrdtkvError):
    status = 404
    code = "not_found"


class KeyNotFound(NotFound):
    """A key that does not exist (never written, deleted, expired)."""


class WrongType(CrdtkvError):
    """A write or read of one type on a key that holds another (Redis's WRONGTYPE)."""

    status = 409
    code = "wrong_type"


class NotAnInteger(WrongType):
    """A string increment or counter read of a value that is not an integer (409 over
    HTTP; Redis's ``ERR value is not an integer or out of range`` over RESP)."""


class MethodNotAllowed(CrdtkvError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(CrdtkvError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(CrdtkvError):
    status = 415
    code = "unsupported_media_type"


class SessionUnavailable(CrdtkvError):
    status = 503
    code = "session_unavailable"


class Moved(CrdtkvError):
    """The key's slot is owned by another shard: ask ``url`` (its replica in this region).

    RESP: ``-MOVED <slot> <host:port>``; HTTP: 421 with the owner in the body and
    the ``X-Crdtkv-Owner`` header."""

    status = 421
    code = "moved"

    def __init__(self, message: str = "", *, slot: int = 0, url: str = "", resp: str = "") -> None:
        super().__init__(message)
        self.slot = slot
        self.url = url  # the owner's HTTP base URL
        self.resp = resp  # the owner's "host:port" for RESP ("" if it has none)


class Ask(Moved):
    """The key's slot is being moved and this key is already at the target: ask it
    once (RESP ``-ASK``, after ``ASKING``), without updating the map."""

    code = "ask"


class TryAgain(CrdtkvError):
    """The key's slot is being handed over to a move's target right now (its last
    copy is in flight): retry shortly (RESP ``-TRYAGAIN``).  Nothing was applied."""

    status = 503
    code = "try_again"


class CrossSlot(BadRequest):
    """One request's keys hash to different slots (RESP ``-CROSSSLOT``)."""

    code = "cross_slot"


class StaleMap(CrdtkvError):
    """A posted cluster map is older than the one this process holds (or another
    map of the same epoch): the answer carries the held map's JSON in ``map``."""

    status = 409
    code = "stale_map"

    def __init__(self, message: str = "", *, held: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.held = held


class StorageError(CrdtkvError):
    status = 500
    code = "internal"


WIRE_ERRORS: tuple[type[CrdtkvError], ...] = (
    BadRequest,
    Unauthorized,
    Forbidden,
    KeyNotFound,  # the client raises the subclass: an absent key is the usual 404
    MethodNotAllowed,
    WrongType,
    PayloadTooLarge,
    UnsupportedMediaType,
    SessionUnavailable,
    Moved,
    Ask,
    CrossSlot,
    TryAgain,
    StaleMap,
    CrdtkvError,  # internal
)
"""One class per code a response can carry (the order of the OpenAPI document's list)."""

_BY_CODE: dict[str, type[CrdtkvError]] = {cls.code: cls for cls in WIRE_ERRORS}


class ClusterUnavailable(CrdtkvError):
    """Raised by the client when no replica in its list could serve a call."""

    status = 503
    code = "unavailable"


def error_for_code(code: str, message: str) -> CrdtkvError:
    """The exception a client raises for a server error body."""
    return _BY_CODE.get(code, CrdtkvError)(message)


def error_for_status(status: int) -> type[CrdtkvError]:
    """The class for a status raised outside crdtkv (aiohttp's router, its body limit).

    A 4xx is the direct subclass of ``CrdtkvError`` with that status, else
    ``BadRequest``; anything else is ``CrdtkvError`` (internal).
    """
    if 400 <= status < 500:
        for cls in CrdtkvError.__subclasses__():
            if cls.status == status:
                return cls
        return BadRequest
    return CrdtkvError

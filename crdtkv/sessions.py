"""Causal session tokens: encode, sign, verify, merge.  Pure.

A token is ``<payload>.<mac>``, both URL-safe base64 without padding:

- payload: MessagePack ``[1, {actor: seq, ...}, [wall_ms, logical]]``: the
  version vector the session has observed and the largest HLC timestamp it
  has seen;
- mac: the first 16 bytes of HMAC-SHA256 over the payload, keyed with a key
  derived from the cluster secret (``derive_key``), so a token from another
  cluster, or one tampered with, does not verify.

Without a cluster secret the key derives from the empty secret: tokens still
detect corruption but anyone can forge one (documented in docs/sessions.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field

import msgpack

from crdtkv.crdts.causal import VersionVector, decode_vv, vv_join
from crdtkv.errors import BadRequest, CodecError

__all__ = [
    "SESSION_HEADER",
    "TOKEN_BYTES_MAX",
    "WAIT_HEADER",
    "SessionToken",
    "TokenSigner",
    "derive_key",
]

SESSION_HEADER = "X-Crdtkv-Session"  # carries the token, both ways
WAIT_HEADER = "X-Crdtkv-Wait-Ms"  # how long a replica may wait until it covers the token

TOKEN_BYTES_MAX = 8192  # a vector of a few hundred actors; anything longer is refused
_MAC_BYTES = 16
_VERSION = 1


def derive_key(cluster_secret: str) -> bytes:
    """The token-signing key: separate from the replication HMAC key by domain."""
    return hmac.new(cluster_secret.encode(), b"crdtkv session token v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SessionToken:
    vv: VersionVector = field(default_factory=dict)  # what the session has observed
    hlc: tuple[int, int] = (0, 0)  # largest HLC (wall_ms, logical) the session has seen

    def merge(self, vv: VersionVector, hlc: tuple[int, int] = (0, 0)) -> SessionToken:
        return SessionToken(vv_join(self.vv, vv), max(self.hlc, hlc))


class TokenSigner:
    def __init__(self, cluster_secret: str | None) -> None:
        self._key = derive_key(cluster_secret or "")

    def encode(self, token: SessionToken) -> str:
        payload = msgpack.packb(
            [_VERSION, dict(sorted(token.vv.items())), list(token.hlc)], use_bin_type=True
        )
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return f"{_b64(payload)}.{_b64(mac)}"

    def decode(self, text: str) -> SessionToken:
        """Verify and decode; raises ``BadRequest`` for anything that does not verify."""
        if len(text) > TOKEN_BYTES_MAX:
            raise BadRequest("session token is too long")
        payload_b64, dot, mac_b64 = text.partition(".")
        if not dot:
            raise BadRequest("session token is malformed")
        try:
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except (ValueError, UnicodeEncodeError) as e:
            raise BadRequest("session token is not valid base64") from e
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        if not hmac.compare_digest(mac, expected):
            raise BadRequest("session token does not verify (tampered, or from another cluster)")
        try:
            data = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            if not isinstance(data, list) or len(data) != 3 or data[0] != _VERSION:
                raise CodecError("unknown token version")
            vv = decode_vv(data[1])
            hlc_raw = data[2]
            if (
                not isinstance(hlc_raw, list)
                or len(hlc_raw) != 2
                or not all(
                    isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in hlc_raw
                )
            ):
                raise CodecError("bad hlc")
        except (CodecError, ValueError, TypeError, msgpack.UnpackException) as e:
            raise BadRequest("session token payload is malformed") from e
        return SessionToken(vv, (hlc_raw[0], hlc_raw[1]))

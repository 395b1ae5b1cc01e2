"""TLS contexts from PEM files: the listeners', the replication client's, a client's.

``crdtkv serve --tls-cert C --tls-key K`` makes both listeners (HTTP, which
also carries replication, and RESP) speak TLS only, with the server context
built here; ``--tls-ca A`` is the bundle that peers' certificates are
verified against when this replica connects to them (and, with
``--tls-peer-auth mutual``, that incoming client certificates are verified
against).  Settings are ``ssl.create_default_context``'s (certificate and
host name checks on, no compression, its cipher list) with TLS 1.2 as the
oldest version.

Every loading problem is a ``TlsError`` naming the option to blame, in one
line: a missing or unreadable file, a file without a PEM certificate or
key, a key that does not match the certificate, an encrypted key (there is
nobody to type its passphrase).  Certificates are read at start only: a
renewed certificate takes a restart.
"""

from __future__ import annotations

import ssl

from crdtkv.cliutil import UsageError

__all__ = [
    "TLS_MIN_VERSION",
    "TlsError",
    "check_ca",
    "client_context",
    "server_context",
]

TLS_MIN_VERSION = ssl.TLSVersion.TLSv1_2


class TlsError(UsageError):
    """A certificate, key or CA file that cannot be used; names the option."""


class _Encrypted(Exception):
    pass


def _no_passphrase() -> bytes:
    # Called by OpenSSL only for an encrypted key; without it, it would prompt on the tty.
    raise _Encrypted


def _readable(path: str, option: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise TlsError(option, f"cannot read {path}: {e.strerror or e}") from None


def _reason(e: ssl.SSLError) -> str:
    """`` (what OpenSSL says)``, or nothing when it names no reason."""
    return f" ({e.reason.replace('_', ' ').lower()})" if e.reason else ""


def _load_pair(ctx: ssl.SSLContext, cert: str, key: str, options: tuple[str, str]) -> None:
    """The certificate chain and its key into ``ctx``; ``options`` name them."""
    cert_opt, key_opt = options
    _readable(cert, cert_opt)
    _readable(key, key_opt)
    try:
        ctx.load_cert_chain(cert, key, password=_no_passphrase)
    except _Encrypted:
        raise TlsError(key_opt, f"{key} is encrypted; give a key without a passphrase") from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TlsError(key_opt, f"{key} does not match the certificate in {cert}") from None
        # OpenSSL says only "PEM lib": find which file it could not read.
        if not _has_certificate(cert):
            raise TlsError(cert_opt, f"no PEM certificate in {cert}") from None
        raise TlsError(key_opt, f"no usable PEM private key in {key}{_reason(e)}") from None


def _has_certificate(path: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError):
        return False
    return True


def _with_ca(purpose: ssl.Purpose, ca: str | None, option: str) -> ssl.SSLContext:
    """``ssl.create_default_context``'s context; with ``ca``, trusting only that bundle."""
    if ca is None:
        ctx = ssl.create_default_context(purpose)  # the system's CAs
    else:
        _readable(ca, option)
        try:
            ctx = ssl.create_default_context(purpose, cafile=ca)
        except ssl.SSLError as e:
            raise TlsError(option, f"no PEM CA certificate in {ca}{_reason(e)}") from None
    ctx.minimum_version = TLS_MIN_VERSION
    return ctx


def check_ca(ca: str, option: str) -> None:
    """Raise ``TlsError`` unless ``ca`` is a readable bundle of PEM certificates."""
    _with_ca(ssl.Purpose.SERVER_AUTH, ca, option)


def server_context(
    cert: str,
    key: str,
    *,
    client_ca: str | None = None,
    options: tuple[str, str, str] = ("--tls-cert", "--tls-key", "--tls-ca"),
) -> ssl.SSLContext:
    """A listener's context.  With ``client_ca``, clients are asked for a
    certificate (optional: API clients need none), and one they send must
    verify against ``client_ca`` or the handshake fails."""
    ctx = _with_ca(ssl.Purpose.CLIENT_AUTH, client_ca, options[2])
    _load_pair(ctx, cert, key, options[:2])
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_context(
    ca: str | None = None,
    *,
    cert: str | None = None,
    key: str | None = None,
    options: tuple[str, str, str] = ("--tls-ca", "--tls-cert", "--tls-key"),
) -> ssl.SSLContext:
    """A context that verifies servers (against ``ca``, else the system's CAs)
    and their host names; with ``cert`` and ``key``, it presents them.  A given
    ``ca`` replaces the system's CAs: a cluster's own CA is then the only one
    trusted."""
    ctx = _with_ca(ssl.Purpose.SERVER_AUTH, ca, options[0])
    if cert is not None and key is not None:
        _load_pair(ctx, cert, key, options[1:])
    return ctx

"""Test certificates, made with ``cryptography``: a CA, certificates it signs
(for 127.0.0.1 and localhost), an expired one, and a second, unrelated CA.

``make_pki(dir)`` writes PEM files and returns their paths.  Keys are EC P-256
(quick to make); everything is valid from an hour ago for a day, except the
expired certificate (valid for a day ending yesterday).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the cluster's CA certificate (a bundle of one)
    server: Pair  # signed by ca, for 127.0.0.1 and localhost, server and client use
    server2: Pair  # another one by ca (a second replica's)
    expired: Pair  # signed by ca, expired yesterday
    other_ca: Path  # an unrelated CA
    other: Pair  # signed by other_ca, for 127.0.0.1 and localhost
    wrong_name: Pair  # signed by ca, for example.com only


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: Key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn: str, path: Path) -> tuple[x509.Certificate, Key]:
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_cert(cert, path)
    return cert, key


def make_leaf(
    ca: tuple[x509.Certificate, Key],
    cn: str,
    directory: Path,
    *,
    names: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    expired: bool = False,
) -> Pair:
    ca_cert, ca_key = ca
    key = _key()
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(hours=1), now + dt.timedelta(days=1)
    if expired:
        start, end = now - dt.timedelta(days=2), now - dt.timedelta(days=1)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pair = Pair(directory / f"{cn}.crt", directory / f"{cn}.key")
    _write_cert(cert, pair.cert)
    _write_key(key, pair.key)
    pair.key.chmod(0o600)
    return pair


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca("crdtkv test CA", directory / "ca.crt")
    other_ca = make_ca("some other CA", directory / "other-ca.crt")
    return Pki(
        ca=directory / "ca.crt",
        server=make_leaf(ca, "server", directory),
        server2=make_leaf(ca, "server2", directory),
        expired=make_leaf(ca, "expired", directory, expired=True),
        other_ca=directory / "other-ca.crt",
        other=make_leaf(other_ca, "other", directory),
        wrong_name=make_leaf(ca, "wrong-name", directory, names=("example.com",), ips=()),
    )

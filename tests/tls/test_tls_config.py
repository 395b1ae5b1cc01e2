"""The TLS options at configuration load: each bad file or combination exits 2
with one line naming the option (or the variable the value came from); good
ones reach the config and ``--check-config``; the client refuses a bad CA."""

from __future__ import annotations

import json
import os
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from crdtkv import Client, cli
from crdtkv.config import parse_serve_args
from crdtkv.errors import BadRequest
from tests.procs import clean_env, crdtkv_cmd, run
from tests.tls.certs import Pki


@pytest.fixture
def files(pki: Pki, tmp_path: Path) -> dict[str, str]:
    """Names for the argument lists below: good files, and bad ones of each kind."""
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    key = serialization.load_pem_private_key(pki.server.key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return {
        "CERT": str(pki.server.cert),
        "KEY": str(pki.server.key),
        "OTHER_KEY": str(pki.other.key),
        "CA": str(pki.ca),
        "MISSING": str(tmp_path / "missing.pem"),
        "EMPTY": str(empty),
        "DIR": str(tmp_path),
        "ENCRYPTED": str(encrypted),
    }


def _fill(items: list[str], files: dict[str, str]) -> list[str]:
    return [files.get(x, x) for x in items]


REFUSED: list[tuple[list[str], dict[str, str], list[str]]] = [
    # (argv, environment, what the one line must name); CAPITALS are files above
    (["--tls-cert", "CERT"], {}, ["--tls-cert", "needs --tls-key"]),
    (["--tls-key", "KEY"], {}, ["--tls-key", "needs --tls-cert"]),
    ([], {"CRDTKV_TLS_CERT": "CERT"}, ["CRDTKV_TLS_CERT", "needs --tls-key"]),
    (["--tls-cert", "MISSING", "--tls-key", "KEY"], {}, ["--tls-cert", "cannot read", "missing"]),
    (["--tls-cert", "CERT", "--tls-key", "MISSING"], {}, ["--tls-key", "cannot read"]),
    (["--tls-cert", "DIR", "--tls-key", "KEY"], {}, ["--tls-cert", "Is a directory"]),
    (["--tls-cert", "KEY", "--tls-key", "KEY"], {}, ["--tls-cert", "no PEM certificate"]),
    (["--tls-cert", "EMPTY", "--tls-key", "KEY"], {}, ["--tls-cert", "no PEM certificate"]),
    (["--tls-cert", "CERT", "--tls-key", "CERT"], {}, ["--tls-key", "no usable PEM private key"]),
    (["--tls-cert", "CERT", "--tls-key", "OTHER_KEY"], {}, ["--tls-key", "does not match"]),
    (["--tls-cert", "CERT", "--tls-key", "ENCRYPTED"], {}, ["--tls-key", "encrypted"]),
    (
        ["--tls-cert", "CERT"],
        {"CRDTKV_TLS_KEY": "OTHER_KEY"},
        ["CRDTKV_TLS_KEY", "does not match"],
    ),
    (["--tls-ca", "MISSING"], {}, ["--tls-ca", "cannot read"]),
    (["--tls-ca", "EMPTY"], {}, ["--tls-ca", "no PEM CA certificate"]),
    (["--tls-ca", "KEY"], {}, ["--tls-ca", "no PEM CA certificate"]),
    ([], {"CRDTKV_TLS_CA": "EMPTY"}, ["CRDTKV_TLS_CA", "no PEM CA certificate"]),
    (["--tls-peer-auth", "both"], {}, ["--tls-peer-auth", "secret, mutual"]),
    (["--tls-peer-auth", "mutual"], {}, ["--tls-peer-auth", "needs --tls-cert"]),
    (
        ["--tls-cert", "CERT", "--tls-key", "KEY", "--tls-peer-auth", "mutual"],
        {},
        ["--tls-peer-auth", "needs --tls-ca"],
    ),
    (
        ["--tls-cert", "CERT", "--tls-key", "KEY"],
        {"CRDTKV_TLS_PEER_AUTH": "mutual"},
        ["CRDTKV_TLS_PEER_AUTH", "needs --tls-ca"],
    ),
    # A replica that speaks TLS expects its peers to: a plain URL is a mistake.
    (
        ["--tls-cert", "CERT", "--tls-key", "KEY", "--peer", "r2=http://127.0.0.1:7002"],
        {},
        ["--peer", "'r2'", "https://"],
    ),
    (
        ["--tls-cert", "CERT", "--tls-key", "KEY"],
        {"CRDTKV_PEERS": "r2=https://127.0.0.1:7002,r3=http://127.0.0.1:7003"},
        ["CRDTKV_PEERS", "'r3'"],
    ),
]


@pytest.mark.parametrize(("argv", "env", "named"), REFUSED)
def test_bad_tls_options_exit_2_naming_the_option(
    argv: list[str],
    env: dict[str, str],
    named: list[str],
    files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, files.get(value, value))
    assert cli.main(["serve", "--replica-id", "r1", *_fill(argv, files)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdtkv serve: error: "), err
    for word in named:
        assert files.get(word, word) in lines[0], (word, lines[0])
    assert not (tmp_path / "data").exists()


def test_good_tls_options_reach_the_config_and_check_config(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plain = parse_serve_args(["--replica-id", "r1"], {})
    assert (plain.tls_cert, plain.tls_key, plain.tls_ca, plain.tls_peer_auth) == (
        None,
        None,
        None,
        "secret",
    )
    argv = ["--replica-id", "r1", "--tls-cert", str(pki.server.cert)]
    argv += ["--peer", "r2=https://127.0.0.1:7002"]
    env = {
        "CRDTKV_TLS_KEY": str(pki.server.key),
        "CRDTKV_TLS_CA": str(pki.ca),
        "CRDTKV_TLS_PEER_AUTH": "mutual",
        "CRDTKV_TLS_CERT": "/nonexistent",  # the command line wins
    }
    config = parse_serve_args(argv, env)
    assert config.tls_cert == str(pki.server.cert)
    assert config.tls_key == str(pki.server.key)
    assert config.tls_ca == str(pki.ca)
    assert config.tls_peer_auth == "mutual"
    # Plain replicas may reach https:// peers (behind a TLS proxy, say), with the
    # system's CAs or --tls-ca.
    client_only = parse_serve_args(
        ["--replica-id", "r1", "--peer", "r2=https://example.com", "--tls-ca", str(pki.ca)], {}
    )
    assert client_only.tls_cert is None and client_only.tls_ca == str(pki.ca)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", "--check-config", *argv]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["tls"] == {
        "cert": str(pki.server.cert.resolve()),
        "key": str(pki.server.key.resolve()),
        "ca": str(pki.ca.resolve()),
        "peer_auth": "mutual",
    }
    for name in env:
        monkeypatch.delenv(name)
    assert cli.main(["serve", "--check-config", "--replica-id", "r1"]) == 0
    assert "tls" not in json.loads(capsys.readouterr().out)  # plain: nothing to show


def test_a_real_process_with_a_key_that_does_not_match_exits_2(pki: Pki, tmp_path: Path) -> None:
    argv = ["--replica-id", "r1", "--tls-cert", str(pki.server.cert)]
    done = run(
        crdtkv_cmd("serve", *argv, "--tls-key", str(pki.other.key)),
        cwd=tmp_path,
        env=clean_env(),
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"crdtkv serve: error: --tls-key: {pki.other.key} does not match the certificate "
        f"in {pki.server.cert}\n"
    )
    assert not (tmp_path / "data").exists()


def test_the_client_refuses_a_bad_ca_file_and_ambiguous_settings(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="ca_file: cannot read"):
        Client("https://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(BadRequest, match="ca_file: no PEM CA certificate"):
        Client("https://127.0.0.1:1", ca_file=str(pki.server.key))
    with pytest.raises(BadRequest, match="not both"):
        Client("https://127.0.0.1:1", ca_file=str(pki.ca), ssl_context=ssl.create_default_context())
    given = ssl.create_default_context()
    assert Client("https://127.0.0.1:1", ssl_context=given).ssl_context is given
    assert Client("http://127.0.0.1:1").ssl_context is None  # plain: no context built
    verified = Client("https://127.0.0.1:1", ca_file=str(pki.ca)).ssl_context
    assert verified is not None and verified.verify_mode == ssl.CERT_REQUIRED
    assert verified.check_hostname and verified.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_the_client_cli_refuses_a_bad_ca_file_with_exit_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    done = run(crdtkv_cmd("get", "k", "--url", "https://127.0.0.1:1", "--tls-ca", missing))
    assert done.returncode == 2
    assert done.stderr == (
        f"crdtkv get: error: --tls-ca: cannot read {missing}: No such file or directory\n"
    )
    done = run(crdtkv_cmd("get", "k"), env=clean_env(CRDTKV_TLS_CA=missing))
    assert done.returncode == 2
    assert "CRDTKV_TLS_CA: cannot read" in done.stderr

"""Named users (``--auth-file``, ``crdtkv.auth``): the file's validation, the
``crdtkv serve`` options around it, the token lookup, and ``Auth.reload``."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

import pytest

from crdtkv import auth, cli
from crdtkv.auth import (
    OPEN_USER,
    Auth,
    AuthFileError,
    User,
    UserEntry,
    Users,
    load_auth_file,
    parse_auth_file,
)
from crdtkv.config import parse_serve_args

ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"
GOOD = f"""
[users.alice]
token = "{ALICE}"
role = "read-write"

[users.bob]
token = "{BOB}"
role = "read-only"
"""


def write(tmp_path: Path, text: str, name: str = "users.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- the file ------------------------------------------------------------------------------


def test_a_good_file_gives_its_users_in_order() -> None:
    users = parse_auth_file(GOOD.encode(), "u.toml")
    assert users == (
        UserEntry("alice", "read-write", ALICE),
        UserEntry("bob", "read-only", BOB),
    )
    assert ALICE not in repr(users)  # a token never shows in a repr (logs, tracebacks)


BAD_FILES: list[tuple[str, list[str]]] = [
    # (the file, what its one-line error must name besides the path)
    ("", ["no users"]),
    ("[users]\n", ["no users"]),
    ("[users.alice\n", ["not valid TOML"]),
    (f'[users.a]\ntoken = "{ALICE}"\nrole = "read-write"\n[users.a]\n', ["not valid TOML"]),
    (f'owner = "x"\n[users.a]\ntoken = "{ALICE}"\nrole = "read-write"\n', ["'owner'"]),
    ('users = "alice"\n', ["[users.NAME]"]),
    ('[users]\nalice = "x"\n', ["'alice'", "table"]),
    ('[users.alice]\ntoken = "short"\nrole = "read-write"\n', ["'alice'", "at least 16"]),
    ('[users.alice]\nrole = "read-write"\n', ["'alice'", "token is missing"]),
    ('[users.alice]\ntoken = 1234567890123456789\nrole = "read-write"\n', ["'alice'", "token"]),
    ('[users.alice]\ntoken = "has a space in it ok"\nrole = "read-write"\n', ["'alice'", "spaces"]),
    ('[users.alice]\ntoken = "tökentökentökentöken"\nrole = "read-write"\n', ["'alice'", "ASCII"]),
    (f'[users.alice]\ntoken = "{ALICE}"\n', ["'alice'", "role is missing"]),
    (f'[users.alice]\ntoken = "{ALICE}"\nrole = "admin"\n', ["'alice'", "'admin'", "read-only"]),
    (
        f'[users.alice]\ntoken = "{ALICE}"\nrole = "read-write"\npassword = "x"\n',
        ["'alice'", "'password'"],
    ),
    (f'[users."al ice"]\ntoken = "{ALICE}"\nrole = "read-write"\n', ["'al ice'", "user name"]),
    (
        f'[users.alice]\ntoken = "{ALICE}"\nrole = "read-write"\n'
        f'[users.bob]\ntoken = "{ALICE}"\nrole = "read-only"\n',
        ["'alice'", "'bob'", "same token"],
    ),
]


@pytest.mark.parametrize(("text", "named"), BAD_FILES)
def test_a_bad_file_is_refused_in_one_line_naming_file_and_user(
    text: str, named: list[str]
) -> None:
    with pytest.raises(AuthFileError) as info:
        parse_auth_file(text.encode(), "/etc/crdtkv/users.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("/etc/crdtkv/users.toml: "), message
    for part in named:
        assert part in message, (part, message)
    assert ALICE not in message  # a token never shows in an error


def test_the_documented_example_file_is_valid() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    users = parse_auth_file(example.encode(), "docs/operations.md")
    roles = [(u.name, u.role) for u in users]
    assert roles == [("ingest", "read-write"), ("dashboard", "read-only")]


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(AuthFileError, match="cannot read"):
        load_auth_file(str(tmp_path / "missing.toml"))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe[users]")
    with pytest.raises(AuthFileError, match="not UTF-8"):
        load_auth_file(str(binary))
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (auth.FILE_BYTES_MAX + 1))
    with pytest.raises(AuthFileError, match="over"):
        load_auth_file(str(big))


# -- crdtkv serve's options -------------------------------------------------------------------


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("CRDTKV_")]:
        monkeypatch.delenv(name)
    return tmp_path


def serve_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["serve", "--replica-id", "r1", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("crdtkv serve: error: "), err
    return lines[0]


def test_serve_refuses_a_bad_auth_file_naming_option_file_and_user(
    clean: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(clean, '[users.carol]\ntoken = "tooshort"\nrole = "read-only"\n')
    line = serve_error(["--auth-file", path], capsys)
    assert "--auth-file" in line and path in line and "'carol'" in line
    monkeypatch.setenv("CRDTKV_AUTH_FILE", path)
    line = serve_error([], capsys)
    assert "CRDTKV_AUTH_FILE" in line and "'carol'" in line
    monkeypatch.delenv("CRDTKV_AUTH_FILE")
    line = serve_error(["--auth-file", str(clean / "nope.toml")], capsys)
    assert "--auth-file" in line and "cannot read" in line
    assert serve_error(["--auth-file", ""], capsys).count("--auth-file") == 1
    assert not (clean / "data").exists()  # nothing started


def test_the_file_may_not_clash_with_the_single_secrets(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(clean, GOOD)
    line = serve_error(["--auth-file", path, "--auth-token", ALICE], capsys)
    assert "'alice'" in line and "--auth-token" in line and ALICE not in line
    line = serve_error(["--auth-file", path, "--requirepass", BOB], capsys)
    assert "'bob'" in line and "--requirepass" in line
    named_default = write(
        clean, f'[users.default]\ntoken = "{ALICE}"\nrole = "read-only"\n', "d.toml"
    )
    line = serve_error(["--auth-file", named_default, "--auth-token", "other-secret"], capsys)
    assert "'default'" in line and "--auth-token" in line
    # Without a single secret, a user may be called "default" (AUTH's user without a name).
    assert parse_serve_args(["--replica-id", "r1", "--auth-file", named_default], {}).auth_users


def test_check_config_shows_users_and_roles_never_tokens(
    clean: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(clean, GOOD)
    assert cli.main(["serve", "--replica-id", "r1", "--check-config", "--auth-file", path]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    shown = json.loads(out)
    assert shown["auth_file"] == path
    assert shown["auth_users"] == {"alice": "read-write", "bob": "read-only"}
    assert ALICE not in out and BOB not in out
    # Without the option, the keys are not there (the output is as before).
    assert cli.main(["serve", "--replica-id", "r1", "--check-config"]) == 0
    assert "auth_users" not in json.loads(capsys.readouterr().out)


def test_the_config_makes_the_users_of_both_protocols(clean: Path) -> None:
    path = write(clean, GOOD)
    config = parse_serve_args(
        ["--replica-id", "r1", "--auth-file", path, "--auth-token", "legacy-token"],
        {"CRDTKV_REQUIREPASS": "resp-password"},
    )
    made = config.make_auth()
    assert made.roles() == {"alice": "read-write", "bob": "read-only"}
    # "default" is --auth-token's user over HTTP, --requirepass's over RESP.
    assert made.http.lookup(b"legacy-token") == made.http.by_name["default"]
    assert made.http.lookup(b"resp-password") is None
    assert made.resp.lookup(b"resp-password") == made.resp.by_name["default"]
    assert made.resp.lookup(b"legacy-token") is None
    for users in (made.http, made.resp):
        bob = users.lookup(BOB.encode())
        assert bob is not None and bob.name == "bob" and not bob.can_write
        alice = users.lookup(ALICE.encode())
        assert alice is not None and alice.name == "alice" and alice.can_write


# -- the lookup -----------------------------------------------------------------------------


def test_lookup_and_check() -> None:
    users = Users([("alice", "read-write", ALICE), ("bob", "read-only", BOB)])
    assert users.enabled and len(users) == 2
    alice = User("alice", "read-write", users.by_name["alice"].digest)
    assert users.lookup(ALICE.encode()) == alice
    assert users.lookup(ALICE[:-1].encode()) is None
    assert users.lookup(ALICE.encode() + b"x") is None
    assert users.lookup(b"") is None
    assert users.check(b"bob", BOB.encode()) is users.by_name["bob"]
    assert users.check(None, BOB.encode()) is users.by_name["bob"]
    assert users.check(b"alice", BOB.encode()) is None  # bob's token is not alice's
    assert users.check(b"nobody", BOB.encode()) is None
    assert not Users().enabled and Users().lookup(b"") is None
    assert OPEN_USER.can_write


def test_lookup_is_a_keyed_hash_in_a_dict_one_hmac_per_lookup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Constant time without timing assertions: the lookup hashes the given token once
    with HMAC-SHA256 under the process key and finds the digest in a dict of the
    configured tokens' digests; it compares no token itself, and its work does not
    grow with the number of users."""
    many = [(f"u{i}", "read-only", f"token-{i:012d}-abcdef") for i in range(500)]
    users = Users(many)
    stored = users._by_digest
    assert set(stored) == {
        hmac.new(auth._KEY, t.encode(), hashlib.sha256).digest() for _, _, t in many
    }
    assert not any(t.encode() in repr(stored).encode() for _, _, t in many)
    calls: list[bytes] = []
    real = hmac.digest

    def spy(key: bytes, msg: bytes, digest: str) -> bytes:
        assert (key, digest) == (auth._KEY, "sha256")
        calls.append(msg)
        return real(key, msg, digest)

    compared: list[object] = []
    monkeypatch.setattr(auth.hmac, "digest", spy)
    monkeypatch.setattr(
        auth.hmac, "compare_digest", lambda *a: compared.append(a) or False
    )  # nothing may compare tokens one by one
    for given in (b"token-000000000007-abcdef", b"token-000000000007-abcdeX", b"x"):
        calls.clear()
        found = users.lookup(given)
        assert calls == [given]  # one keyed hash of the given token, whatever it matches
        assert (found is not None) == (given == b"token-000000000007-abcdef")
    assert compared == []


# -- reload -------------------------------------------------------------------------------


def test_reload_swaps_the_users_and_a_bad_file_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    a = Auth(load_auth_file(path), http_token="legacy-http-token", path=path)
    seen: list[int] = []
    a.on_reload.append(lambda: seen.append(len(a.http)))
    new_alice = "alice-new-token-0123456789"
    write(tmp_path, f'[users.alice]\ntoken = "{new_alice}"\nrole = "read-only"\n')
    assert a.reload() == 1
    assert seen == [2]  # alice and the --auth-token default
    assert a.http.lookup(ALICE.encode()) is None
    assert a.http.lookup(BOB.encode()) is None
    now = a.http.lookup(new_alice.encode())
    assert now is not None and now.name == "alice" and not now.can_write
    assert a.http.lookup(b"legacy-http-token") is not None  # the single secret stays
    before = (a.http, a.resp, a.entries)
    clash = '[users.x]\ntoken = "legacy-http-token"\nrole = "read-only"\n'
    for broken in ("[users.alice\n", "", clash):
        write(tmp_path, broken)
        with pytest.raises(AuthFileError):
            a.reload()
        assert (a.http, a.resp, a.entries) == before
    assert seen == [2]  # no callback after a failed reload
    with pytest.raises(AuthFileError, match="no --auth-file"):
        Auth(http_token="x").reload()

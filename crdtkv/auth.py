"""Client authentication: who may call a replica, and whether they may write.

Users come from two places:

- ``--auth-file PATH``: a TOML file of named users, each with a secret token
  and a role, ``read-write`` or ``read-only``::

      [users.alice]
      token = "a-long-random-secret"   # 16 or more printable ASCII characters, no spaces
      role = "read-write"

  It is validated strictly (``parse_auth_file``: unknown keys, a bad role, a
  short token, two users with one token, no user at all are refused in one
  line naming the file and the user), and re-read on SIGHUP
  (``Auth.reload``): a file that does not validate then leaves the users in
  force unchanged.
- the single secrets from before: ``--auth-token`` (HTTP's bearer token) and
  ``--requirepass`` (RESP's password, by default the auth token).  Each is a
  read-write user named ``default`` (so the file may not name a user
  ``default`` while one of them is set, nor reuse their secret).

HTTP knows a user by the bearer token alone.  RESP knows one by
``AUTH <user> <token>`` (``HELLO 3 AUTH <user> <token>``), or by the token
alone with ``AUTH <token>``: as over HTTP, a token names its user, so a client
that can only send a password works for every user.

Nothing here does network I/O; ``load_auth_file`` reads the file.
"""

from __future__ import annotations

import hmac
import re
import secrets
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_USER",
    "OPEN_USER",
    "READ_ONLY",
    "READ_WRITE",
    "ROLES",
    "TOKEN_CHARS_MIN",
    "Auth",
    "AuthFileError",
    "User",
    "UserEntry",
    "Users",
    "load_auth_file",
    "parse_auth_file",
]

READ_WRITE = "read-write"
READ_ONLY = "read-only"
ROLES = (READ_WRITE, READ_ONLY)
DEFAULT_USER = "default"  # Redis's name for the user of a bare password
TOKEN_CHARS_MIN = 16
USERS_MAX = 10_000
FILE_BYTES_MAX = 1024 * 1024
_USER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Printable ASCII without spaces: it travels in an HTTP header and as a RESP argument
# (an inline command splits on spaces), and HTTP strips what surrounds it.
_TOKEN = re.compile(r"[\x21-\x7e]+")
_USER_KEYS = ("token", "role")


class AuthFileError(Exception):
    """An auth file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller: its name and role (the token is not kept here)."""

    name: str
    role: str
    # A keyed hash of the token (``Users``): a RESP connection stays open across a
    # reload only while its user's token is unchanged.  Empty: no token (auth is off).
    digest: bytes = field(default=b"", repr=False)

    @property
    def can_write(self) -> bool:
        return self.role == READ_WRITE


OPEN_USER = User(DEFAULT_USER, READ_WRITE)
"""Everyone, when no secret is configured."""


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One user of an auth file."""

    name: str
    role: str
    token: str = field(repr=False)  # never printed: --check-config shows name and role


# -- the file ----------------------------------------------------------------------------


def parse_auth_file(data: bytes, path: str) -> tuple[UserEntry, ...]:
    """The users of an auth file's bytes, in file order; ``AuthFileError`` names the
    file (``path``) and the user."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AuthFileError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise AuthFileError(f"{path}: not valid TOML: {' '.join(str(e).split())}") from None
    unknown = [k for k in doc if k != "users"]
    if unknown:
        raise AuthFileError(
            f"{path}: unknown key {unknown[0]!r} (the file holds [users.NAME] tables only)"
        )
    users = doc.get("users", {})
    if not isinstance(users, dict):
        raise AuthFileError(f"{path}: 'users' must be tables [users.NAME]")
    if not users:
        raise AuthFileError(
            f"{path}: no users; add a [users.NAME] table with token and role for each"
        )
    if len(users) > USERS_MAX:
        raise AuthFileError(f"{path}: {len(users)} users; at most {USERS_MAX}")
    entries: list[UserEntry] = []
    owner: dict[str, str] = {}  # token -> the first user with it
    for name, spec in users.items():
        entry = _entry(path, name, spec)
        first = owner.setdefault(entry.token, name)
        if first != name:
            raise AuthFileError(
                f"{path}: users {first!r} and {name!r} have the same token; each user needs its own"
            )
        entries.append(entry)
    return tuple(entries)


def _entry(path: str, name: str, spec: Any) -> UserEntry:
    where = f"{path}: user {name!r}"
    if not _USER_NAME.fullmatch(name):
        raise AuthFileError(f"{where}: a user name is 1 to 64 characters of A-Z a-z 0-9 _ . -")
    if not isinstance(spec, dict):
        raise AuthFileError(f"{where}: must be a table with token and role")
    unknown = [k for k in spec if k not in _USER_KEYS]
    if unknown:
        raise AuthFileError(f"{where}: unknown key {unknown[0]!r}; a user has token and role")
    token, role = spec.get("token"), spec.get("role")
    if token is None:
        raise AuthFileError(f"{where}: token is missing")
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise AuthFileError(
            f"{where}: token must be a string of printable ASCII characters without spaces"
        )
    if len(token) < TOKEN_CHARS_MIN:
        raise AuthFileError(
            f"{where}: token is {len(token)} characters; at least {TOKEN_CHARS_MIN} "
            "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if role is None:
        raise AuthFileError(f"{where}: role is missing ({' or '.join(ROLES)})")
    if role not in ROLES:
        raise AuthFileError(f"{where}: role must be {' or '.join(ROLES)}, not {role!r}")
    return UserEntry(name, role, token)


def load_auth_file(path: str) -> tuple[UserEntry, ...]:
    """Read and parse an auth file (``AuthFileError`` when it cannot be read too)."""
    try:
        with open(path, "rb") as f:
            data = f.read(FILE_BYTES_MAX + 1)
    except OSError as e:
        raise AuthFileError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(data) > FILE_BYTES_MAX:
        raise AuthFileError(f"{path}: over {FILE_BYTES_MAX} bytes")
    return parse_auth_file(data, path)


# -- looking tokens up -------------------------------------------------------------------

# One key for the process: digests stay comparable across reloads (``User.digest``).
_KEY = secrets.token_bytes(32)


def _digest(token: bytes) -> bytes:
    return hmac.digest(_KEY, token, "sha256")  # one-shot, in C


class Users:
    """One protocol's users, found by token.

    Constant time: a token is looked up by its keyed hash (HMAC-SHA256 under a
    random key of this process) in a dict of the configured tokens' keyed
    hashes.  What the lookup takes depends on the given token's length (the
    HMAC) and on a digest nobody can predict without the key: how much of a
    guess is right cannot show, whichever token it is near, and the lookup is
    O(1) however many users there are.  Comparing with ``hmac.compare_digest``
    against every token would also be constant time, but costs O(users) on
    every request, and an early ``return`` added to that loop one day would
    quietly break it; here there is no loop to break.
    """

    __slots__ = ("_by_digest", "by_name", "enabled")

    def __init__(self, users: Iterable[tuple[str, str, str]] = ()) -> None:
        """``users``: (name, role, token) of each."""
        self._by_digest: dict[bytes, User] = {}
        self.by_name: dict[str, User] = {}
        for name, role, token in users:
            digest = _digest(token.encode("utf-8"))
            user = User(name, role, digest)
            self._by_digest[digest] = user
            self.by_name[name] = user
        self.enabled = bool(self._by_digest)  # callers must authenticate

    def __len__(self) -> int:
        return len(self.by_name)

    def lookup(self, token: bytes) -> User | None:
        """The user whose token this is, if any."""
        return self._by_digest.get(_digest(token))

    def check(self, name: bytes | None, token: bytes) -> User | None:
        """RESP's AUTH: the user of ``token``, when it is ``name`` (or no name is given)."""
        user = self._by_digest.get(_digest(token))
        if user is None or (name is not None and name != user.name.encode()):
            return None
        return user


class Auth:
    """The users in force for HTTP and for RESP; ``reload`` swaps them at once.

    ``http`` and ``resp`` are immutable ``Users``: a request reads the one in
    force when it arrives.  ``on_reload`` callbacks (the RESP server) run after
    each successful reload.
    """

    def __init__(
        self,
        entries: tuple[UserEntry, ...] = (),
        *,
        http_token: str | None = None,
        resp_password: str | None = None,
        path: str | None = None,
    ) -> None:
        self.path = path
        self._http_token = http_token
        self._resp_password = resp_password
        self.http, self.resp = self._tables(entries)
        self.entries = entries
        self.on_reload: list[Callable[[], None]] = []

    def _tables(self, entries: tuple[UserEntry, ...]) -> tuple[Users, Users]:
        path = self.path or "--auth-file"
        legacy = {"--auth-token": self._http_token, "--requirepass": self._resp_password}
        tokens = {e.token: e.name for e in entries}
        for option, secret in legacy.items():
            if secret is None:
                continue
            if DEFAULT_USER in (e.name for e in entries):
                raise AuthFileError(
                    f"{path}: user {DEFAULT_USER!r} is {option}'s user; give it another name"
                )
            if secret in tokens:
                raise AuthFileError(
                    f"{path}: user {tokens[secret]!r} has the same token as {option}; "
                    "each user needs its own"
                )
        rows = [(e.name, e.role, e.token) for e in entries]
        http = rows + ([(DEFAULT_USER, READ_WRITE, self._http_token)] if self._http_token else [])
        resp = rows + (
            [(DEFAULT_USER, READ_WRITE, self._resp_password)] if self._resp_password else []
        )
        return Users(http), Users(resp)

    def reload(self) -> int:
        """Re-read the auth file; the new users are in force when this returns (their
        count).  ``AuthFileError``: nothing changed."""
        if self.path is None:
            raise AuthFileError("no --auth-file to reload")
        entries = load_auth_file(self.path)
        self.http, self.resp = self._tables(entries)
        self.entries = entries
        for callback in self.on_reload:
            callback()
        return len(entries)

    def roles(self) -> Mapping[str, str]:
        """The auth file's users and their roles (what ``--check-config`` shows)."""
        return {e.name: e.role for e in self.entries}

"""CRDTKV.SESSION over RESP between two real replicas whose link passes a proxy
the test can block, and session tokens shared between HTTP and RESP.

The rules:
- ``CRDTKV.SESSION token [WAIT ms]`` makes every later data command wait until
  this replica has applied what the token covers, or fail with
  ``-SESSIONUNAVAILABLE``;
- a refusal reads and writes nothing and leaves the connection's token as it
  was: ``CRDTKV.SESSION`` (no argument) answers the token set, grown only by
  commands that ran (as HTTP stamps a refusal with the request's token);
- the token text is the same as HTTP's ``X-Crdtkv-Session`` (same cluster secret).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from crdtkv.sessions import SESSION_HEADER, WAIT_HEADER, SessionToken, TokenSigner
from simulations.nemesis.proxy import ProxyMesh
from tests.procs import Server, free_ports, server_group, start_all
from tests.resp.conftest import wait_ping

SECRET = "resp-sessions-secret"
SIGNER = TokenSigner(SECRET)


class Pair:
    """r1 and r2, peered through one blockable proxy per direction
    (``simulations.nemesis.proxy.ProxyMesh``)."""

    def __init__(self, root: Path, servers: list[Server]) -> None:
        p1, p2, r1_resp, r2_resp, x12, x21 = free_ports(6)
        self.mesh = ProxyMesh(
            ["r1", "r2"], {"r1": p1, "r2": p2}, {("r1", "r2"): x12, ("r2", "r1"): x21}
        )
        self.r1 = Server(
            "r1",
            root / "r1",
            port=p1,
            peers=self.mesh.peer_urls("r1"),
            secret=SECRET,
            durability="wal",
            resp_port=r1_resp,
        )
        self.r2 = Server(
            "r2",
            root / "r2",
            port=p2,
            peers=self.mesh.peer_urls("r2"),
            secret=SECRET,
            durability="wal",
            resp_port=r2_resp,
        )
        servers += [self.r1, self.r2]
        start_all([self.r1, self.r2])

    def block(self, blocked: bool) -> None:
        for link in self.mesh.links.values():
            link.blocked = blocked

    def close(self) -> None:
        self.mesh.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with server_group() as group:
        servers: list[Server] = []
        p = Pair(tmp_path_factory.mktemp("sessions"), servers)
        for s in servers:
            group.add(s)
        try:
            yield p
        finally:
            group.close()
            p.close()


@pytest.fixture
def cut(pair: Pair) -> Iterator[Pair]:
    pair.block(True)
    try:
        yield pair
    finally:
        pair.block(False)


def client(server: Server) -> redis.Redis:
    c = redis.Redis(port=server.resp_port, decode_responses=True, socket_timeout=15)
    wait_ping(c)
    return c


def session(c: redis.Redis, *args: object) -> Any:
    return c.execute_command("CRDTKV.SESSION", *args)


def decode(text: str) -> SessionToken:
    return SIGNER.decode(text)


def dots(t: SessionToken, replica_id: str) -> int:
    """How much of ``replica_id``'s writes (any incarnation) ``t`` covers."""
    return sum(n for writer, n in t.vv.items() if writer.split("~")[0] == replica_id)


def covers(big: SessionToken, small: SessionToken) -> bool:
    return all(big.vv.get(r, 0) >= n for r, n in small.vv.items())


def heal_after(pair: Pair, seconds: float) -> threading.Timer:
    t = threading.Timer(seconds, pair.block, args=(False,))
    t.start()
    return t


# -- RESP to RESP -----------------------------------------------------------------------------


def test_refusal_leaves_the_token_then_the_wait_sees_the_write(cut: Pair) -> None:
    c1, c2, other = client(cut.r1), client(cut.r2), client(cut.r2)
    try:
        assert other.set("s:r2-own", "x") is True  # r2 has dots r1 has not seen
        assert c1.set("s:k", "v1") is True
        token = session(c1)
        t = decode(token)
        assert dots(t, "r1") >= 1

        assert session(c2, token, "WAIT", 200) == "OK"
        assert session(c2) == token  # the token set, as it is
        for call in (lambda: c2.get("s:k"), lambda: c2.set("s:w", "no"), c2.dbsize):
            t0 = time.monotonic()
            with pytest.raises(redis.ResponseError, match=r"^SESSIONUNAVAILABLE"):
                call()
            assert 0.15 < time.monotonic() - t0 < 5
            # Refused: nothing added to the connection's token (not r2's own dots).
            assert session(c2) == token
        assert c2.ping() is True  # not a data command: no wait
        assert other.get("s:w") is None  # the refused write wrote nothing
        assert other.get("s:k") is None  # r2 still has not got r1's write

        # Replication back after 0.5 s: a read with a longer wait waits, then sees it.
        assert session(c2, token, "WAIT", 8000) == "OK"
        timer = heal_after(cut, 0.5)
        t0 = time.monotonic()
        assert c2.get("s:k") == "v1"
        waited = time.monotonic() - t0
        timer.join()
        assert 0.4 < waited < 8
        # A command that ran grows the token: now r2's own write too.
        after = decode(session(c2))
        assert covers(after, t)
        assert dots(after, "r2") >= 1
        # RESET: no session; the token is this replica's whole state again.
        assert session(c2, "RESET") == "OK"
        assert covers(decode(session(c2)), after)
    finally:
        for c in (c1, c2, other):
            c.close()


def test_session_bad_arguments(pair: Pair) -> None:
    c = client(pair.r2)
    try:
        token = session(c)
        for args, message in (
            (("garbage",), "session token is malformed"),
            ((token[:-2] + "AA",), "does not verify"),
            ((token, "WAIT"), "syntax error"),
            ((token, "WAIT", "-1"), "not an integer or out of range"),
            ((token, "WAIT", "x"), "not an integer or out of range"),
            ((token, "NOWAIT", "5"), "syntax error"),
            ((token, "WAIT", "5", "extra"), "syntax error"),
        ):
            with pytest.raises(redis.ResponseError, match=message):
                session(c, *args)
        # A token signed with another secret does not verify.
        foreign = TokenSigner("another-secret").encode(decode(token))
        with pytest.raises(redis.ResponseError, match="does not verify"):
            session(c, foreign)
        assert session(c, token) == "OK"
        assert c.set("s:ok", "1") is True
    finally:
        c.close()


# -- HTTP and RESP share tokens -----------------------------------------------------------------


def http_call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def test_http_token_in_resp(cut: Pair) -> None:
    status, headers, _ = http_call("PUT", cut.r1.url + "/v1/registers/s:h", {"value": "from-http"})
    assert status == 200
    token = headers[SESSION_HEADER]
    assert dots(decode(token), "r1") >= 1
    c2 = client(cut.r2)
    try:
        assert session(c2, token, "WAIT", 200) == "OK"
        with pytest.raises(redis.ResponseError, match=r"^SESSIONUNAVAILABLE"):
            c2.get("s:h")
        assert session(c2, token, "WAIT", 8000) == "OK"
        timer = heal_after(cut, 0.3)
        assert c2.get("s:h") == "from-http"
        timer.join()
    finally:
        c2.close()


def test_resp_token_in_http(cut: Pair) -> None:
    c1 = client(cut.r1)
    try:
        assert c1.set("s:r", "from-resp") is True
        token = session(c1)
    finally:
        c1.close()
    url = cut.r2.url + "/v1/registers/s:r"
    status, headers, body = http_call(
        "GET", url, headers={SESSION_HEADER: token, WAIT_HEADER: "200"}
    )
    assert status == 503, body
    assert headers[SESSION_HEADER] == token  # HTTP's refusal keeps the token as well
    timer = heal_after(cut, 0.3)
    status, headers, body = http_call(
        "GET", url, headers={SESSION_HEADER: token, WAIT_HEADER: "8000"}
    )
    timer.join()
    assert (status, body) == (200, {"value": "from-resp"})
    assert covers(decode(headers[SESSION_HEADER]), decode(token))

"""TLS with real ``crdtkv serve`` processes: the happy paths and every refusal.

Three small clusters, each started once for the module:

- ``secret``: r1 and r2 over TLS (HTTP and RESP), replicas authenticated by
  the cluster secret;
- ``mutual``: r1 and r2 with ``--tls-peer-auth mutual`` and *no* cluster
  secret: a client certificate signed by the cluster's CA is all that lets a
  replication request in, so the refusals below are the certificate check's;
- ``expired``: r1 (a good certificate) and r2 (an expired one): r1 refuses
  to push to r2, r2 still pushes to r1;

and ``wrong_name``, one replica whose certificate names example.com only.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from crdtkv import AsyncClient, Client
from crdtkv.errors import ClusterUnavailable
from replication.http import REPLICATE_PATH
from tests.procs import ServerGroup, start_all, wait_until
from tests.replication.real_cluster import signed_headers
from tests.tls.certs import Pki
from tests.tls.servers import TlsServer, context, request, tls_mesh

SECRET = "tls-test-secret"
CONVERGE_S = 20.0


@pytest.fixture(scope="module")
def group() -> Iterator[ServerGroup]:
    g = ServerGroup()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def clusters(
    group: ServerGroup, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[TlsServer]]:
    root = tmp_path_factory.mktemp("tls")
    out = {
        "secret": tls_mesh(["r1", "r2"], root / "secret", pki, secret=SECRET, resp=True),
        "mutual": tls_mesh(
            ["r1", "r2"],
            root / "mutual",
            pki,
            pairs=[pki.server, pki.server2],
            extra=["--tls-peer-auth", "mutual"],
            resp=True,
        ),
        "expired": tls_mesh(
            ["r1", "r2"], root / "expired", pki, pairs=[pki.server, pki.expired], secret=SECRET
        ),
    }
    out["wrong_name"] = tls_mesh(
        ["w1"], root / "wrong-name", pki, pairs=[pki.wrong_name], resp=True
    )
    servers = [s for c in out.values() for s in c]
    for s in servers:
        group.add(s)
    start_all(servers)
    return out


def _redis(server: TlsServer, ca: Path | None, **kw: Any) -> redis.Redis:
    assert server.resp_port is not None
    return redis.Redis(
        host="127.0.0.1",
        port=server.resp_port,
        ssl=True,
        ssl_ca_certs=str(ca) if ca else None,
        socket_timeout=10,
        **kw,
    )


def _still_serving(server: TlsServer) -> None:
    assert server.running()
    assert server.get("/healthz")[0] == 200
    if server.resp_port is not None:
        with _redis(server, server.pki.ca) as r:
            assert r.ping() is True


# -- happy paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["secret", "mutual"])
def test_replicas_replicate_over_tls_both_ways(
    clusters: dict[str, list[TlsServer]], pki: Pki, mode: str
) -> None:
    r1, r2 = clusters[mode]
    # A write at r1 through the HTTP client, read at r2 by the client and by redis-py.
    with Client(r1.url, ca_file=str(pki.ca)) as db:
        db.registers.set(f"{mode}-from-r1", "one")
    with Client(r2.url, ca_file=str(pki.ca)) as db:
        assert wait_until(
            lambda: db.registers.get(f"{mode}-from-r1", default=None) == "one",
            CONVERGE_S,
            what="r1's write at r2",
        )
    with _redis(r2, pki.ca) as r:
        assert r.get(f"{mode}-from-r1") == b"one"
        # And the other way: a write at r2 over RESP, read at r1 by both.
        assert r.set(f"{mode}-from-r2", "two") is True
    with _redis(r1, pki.ca) as r:
        assert wait_until(
            lambda: r.get(f"{mode}-from-r2") == b"two", CONVERGE_S, what="r2's write at r1"
        )
    with Client([r1.url], ca_file=str(pki.ca)) as db:
        assert db.registers.get(f"{mode}-from-r2") == "two"
    statuses = {s.replica_id: s.status() for s in (r1, r2)}
    assert statuses["r1"]["peers"]["r2"]["url"] == r2.url.rstrip("/")
    assert statuses["r1"]["peers"]["r2"]["reachable"] is True
    assert statuses["r2"]["peers"]["r1"]["reachable"] is True


async def test_async_client_over_tls(clusters: dict[str, list[TlsServer]], pki: Pki) -> None:
    r1 = clusters["secret"][0]
    async with AsyncClient(r1.url, ca_file=str(pki.ca)) as db:
        assert await db.counters.incr("async-tls", 2) == 2
        assert await db.counters.get("async-tls") == 2
    async with AsyncClient(r1.url, ca_file=str(pki.other_ca), attempts=1) as db:
        with pytest.raises(ClusterUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await db.counters.get("async-tls")


def test_client_cli_over_tls(clusters: dict[str, list[TlsServer]], pki: Pki) -> None:
    from tests.procs import clean_env, crdtkv_cmd, run

    r1 = clusters["secret"][0]
    ok = run(crdtkv_cmd("incr", "cli-tls", "5", "--url", r1.url, "--tls-ca", str(pki.ca)))
    assert (ok.returncode, ok.stdout.strip()) == (0, "5"), ok.stderr
    env = clean_env(CRDTKV_URL=r1.url, CRDTKV_TLS_CA=str(pki.ca))
    ok = run(crdtkv_cmd("incr", "cli-tls"), env=env)
    assert (ok.returncode, ok.stdout.strip()) == (0, "6"), ok.stderr
    wrong = run(crdtkv_cmd("incr", "cli-tls", "--url", r1.url, "--tls-ca", str(pki.other_ca)))
    assert wrong.returncode == 1
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.stderr, wrong.stderr
    # The refused increments were never applied.
    with Client(r1.url, ca_file=str(pki.ca)) as db:
        assert db.counters.get("cli-tls") == 6


def test_bench_over_tls(clusters: dict[str, list[TlsServer]], pki: Pki, tmp_path: Path) -> None:
    import json

    from tests.procs import crdtkv_cmd, run

    r1 = clusters["secret"][0]
    out = tmp_path / "bench.json"
    args = ["--url", r1.url, "-n", "40", "-c", "2", "--keyspace", "20", "-t", "register_set"]
    args += ["--no-progress", "--json", str(out)]
    ok = run(crdtkv_cmd("bench", *args, "--tls-ca", str(pki.ca)))
    assert ok.returncode == 0, ok.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["requests"] == 40 and result["errors"] == 0, result
    wrong = run(crdtkv_cmd("bench", *args, "--tls-ca", str(pki.other_ca)))
    assert wrong.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.stderr, wrong.stderr


# -- plaintext to a TLS port -------------------------------------------------------------------


def test_plaintext_http_to_the_tls_port_gets_no_answer(
    clusters: dict[str, list[TlsServer]],
) -> None:
    r1 = clusters["secret"][0]
    # The server reads "GET / HTTP/1.1" as a broken TLS handshake and closes the
    # connection: the client gets no HTTP status at all.
    for _ in range(3):
        with pytest.raises((OSError, http.client.HTTPException)):
            request(r1.url, ctx=None)
    _still_serving(r1)


def test_plaintext_resp_to_the_tls_port_fails(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    r1 = clusters["secret"][0]
    assert r1.resp_port is not None
    plain = redis.Redis(host="127.0.0.1", port=r1.resp_port, socket_timeout=10)
    with plain, pytest.raises(redis.ConnectionError):
        plain.ping()
    # A raw inline command gets nothing back but the connection's end.
    with socket.create_connection(("127.0.0.1", r1.resp_port), timeout=10) as s:
        s.sendall(b"PING\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert b"PONG" not in data
    _still_serving(r1)


# -- clients that must not trust the server -------------------------------------------------------


def test_a_client_with_another_ca_refuses_the_server(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    r1 = clusters["secret"][0]
    unverified = pytest.raises(ClusterUnavailable, match="CERTIFICATE_VERIFY_FAILED")
    with Client(r1.url, ca_file=str(pki.other_ca), attempts=2) as db, unverified:
        db.counters.incr("never", 1)  # not idempotent: refused before it was sent
    unverified = pytest.raises(ClusterUnavailable, match="CERTIFICATE_VERIFY_FAILED")
    with Client(r1.url, attempts=1) as db, unverified:  # the system's CAs lack the test CA
        db.registers.get("never", default=None)
    refused = pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED")
    with _redis(r1, pki.other_ca) as r, refused:
        r.ping()
    with pytest.raises(ssl.SSLCertVerificationError):
        request(r1.url, ctx=context(pki.other_ca))
    with Client(r1.url, ca_file=str(pki.ca)) as db:
        assert db.counters.get("never") == 0  # the refused increment never arrived
    _still_serving(r1)


def test_a_client_with_the_right_ca_refuses_an_expired_server(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    expired = clusters["expired"][1]
    refused = pytest.raises(ClusterUnavailable, match="certificate has expired")
    with Client(expired.url, ca_file=str(pki.ca), attempts=1) as db, refused:
        db.registers.get("k", default=None)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate has expired"):
        request(expired.url, ctx=context(pki.ca))


def test_clients_refuse_a_certificate_for_another_name(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    (server,) = clusters["wrong_name"]  # signed by the right CA, for example.com
    refused = pytest.raises(ClusterUnavailable, match="mismatch")
    with Client(server.url, ca_file=str(pki.ca), attempts=1) as db, refused:
        db.registers.get("k", default=None)
    refused = pytest.raises(redis.ConnectionError, match="mismatch")
    with _redis(server, pki.ca, ssl_check_hostname=True) as r, refused:
        r.ping()
    # The same certificate passes once the name is not checked: only the name failed.
    lax = context(pki.ca)
    lax.check_hostname = False
    assert request(server.url, ctx=lax)[0] == 200


def test_a_replica_refuses_to_push_to_a_peer_with_an_expired_certificate(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    good, expired = clusters["expired"]
    # The peer with the expired certificate can still push to the good one
    # (it verifies the good one's certificate) ...
    expired_ctx = context(pki.ca)
    expired_ctx.check_hostname = False
    expired_ctx.verify_mode = ssl.CERT_NONE  # the test itself must reach it
    status, _ = request(
        expired.url,
        "PUT",
        "/v1/registers/from-expired",
        ctx=expired_ctx,
        body=b'{"value": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 200
    with Client(good.url, ca_file=str(pki.ca)) as db:
        assert wait_until(
            lambda: db.registers.get("from-expired", default=None) == 1,
            CONVERGE_S,
            what="the expired peer's write at the good one",
        )
        db.registers.set("from-good", 2)
    # ... but the good one will not push to it: every attempt fails verification.
    wait_until(
        lambda: "certificate has expired" in good.log_path.read_text(),
        CONVERGE_S,
        what="the good replica's verification failure in its log",
    )
    assert good.status()["peers"]["r2"]["lag_ops"] > 0
    status, body = request(expired.url, "GET", "/v1/registers/from-good", ctx=expired_ctx)
    assert status == 404, body


# -- mutual TLS: what the replication route refuses ----------------------------------------------


def _replicate(server: TlsServer, ctx: ssl.SSLContext, body: bytes = b"") -> tuple[int, Any]:
    body = body or msgpack.packb(["garbage"])
    headers = {"Content-Type": "application/msgpack", "X-Crdtkv-Peer": "r2"}
    return request(server.url, "POST", REPLICATE_PATH, ctx=ctx, body=body, headers=headers)


def test_mutual_a_request_without_a_client_certificate_is_401(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    r1 = clusters["mutual"][0]
    status, body = _replicate(r1, context(pki.ca))
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    assert "client certificate" in body["error"]["message"]
    # The same request with a certificate signed by the cluster's CA gets past
    # that check (and only then fails on its garbage body).
    status, body = _replicate(r1, context(pki.ca, pki.server2))
    assert status == 400, body
    assert "MessagePack" in body["error"]["message"] or "expected" in body["error"]["message"]
    _still_serving(r1)


def test_mutual_api_clients_need_no_certificate(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    r1 = clusters["mutual"][0]
    with Client(r1.url, ca_file=str(pki.ca)) as db:
        db.sets.add("mutual-api", "a")
        assert db.sets.members("mutual-api") == ["a"]


@pytest.mark.parametrize("who", ["other_ca", "expired"])
def test_mutual_a_bad_client_certificate_fails_the_handshake(
    clusters: dict[str, list[TlsServer]], pki: Pki, who: str
) -> None:
    r1 = clusters["mutual"][0]
    pair = pki.other if who == "other_ca" else pki.expired
    # The client trusts the server; the server does not trust the client's
    # certificate, so the handshake ends in an alert (under TLS 1.3, seen by the
    # client when it reads): no HTTP answer at all.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _replicate(r1, context(pki.ca, pair))
    _still_serving(r1)


def test_mutual_a_peer_signing_with_the_secret_still_needs_a_certificate(
    clusters: dict[str, list[TlsServer]], pki: Pki
) -> None:
    # A signature proves nothing to a replica without a cluster secret, and the
    # missing certificate is what is refused.
    r1 = clusters["mutual"][0]
    body = msgpack.packb(["garbage"])
    status, reply = request(
        r1.url,
        "POST",
        REPLICATE_PATH,
        ctx=context(pki.ca),
        body=body,
        headers=signed_headers(body, secret=SECRET),
    )
    assert status == 401, reply
    assert "client certificate" in reply["error"]["message"]

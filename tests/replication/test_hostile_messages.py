"""Hostile replication traffic at a real replica: requests that are unsigned,
signed with another secret or for another body, replayed, from a peer not in
the configuration, garbled, or compressed wrongly (a zlib bomb among them) are
refused and change nothing; the same push, properly signed (and compressed),
is applied and answered with a signed reply."""

from __future__ import annotations

import time
import zlib

import msgpack

from crdtkv import Client
from crdtkv.replica import records as rec
from replication import messages
from replication.http import REPLICATE_PATH, verify
from replication.messages import Header, Push, Reply
from tests.deltas import group_of
from tests.procs import Server, http
from tests.replication.real_cluster import (
    SECRET,
    actor_of,
    converge,
    http_raw,
    read,
    signed_headers,
)


def _push_from_r2(servers: list[Server], key: str, amount: int, actor: str) -> tuple[bytes, str]:
    """A well-formed push "from r2" to r1 adding ``amount`` to counter ``key``
    under the dot (actor, 1): (body, r1's incarnation)."""
    r1, r2, _ = servers
    r2_applied = r2.status()["applied"]
    (r2_actor,) = actor_of(r2_applied, "r2")
    # r2 as r1 knows it (its real incarnation and applied vector), so that
    # even an accepted push disturbs nothing but the counter.
    head = Header("r2", r2_actor.split("~", 1)[1], r2_applied)
    group = group_of(actor, {"op": "counters.incr", "key": key, "delta": amount})
    group_blob = rec.pack(rec.encode_group(group))
    (r1_actor,) = actor_of(r1.status()["applied"], "r1")
    r1_incarnation = r1_actor.split("~", 1)[1]
    return messages.encode(Push(head, 0, 1, ((1, group_blob),), r1_incarnation)), r1_incarnation


def _refused_requests(body: bytes) -> list[tuple[str, bytes, dict[str, str]]]:
    """(what is wrong, body, headers): a well-formed push ``body`` sent in ways r1 must
    refuse with 401."""
    return [
        (
            "no signature headers",
            body,
            {"Content-Type": "application/msgpack", "X-Crdtkv-Peer": "r2"},
        ),
        ("signed with another secret", body, signed_headers(body, secret="wrong")),
        ("signature of another body", body, signed_headers(body + b"\x00")),
        (
            "replayed: timestamp 60 s old",
            body,
            signed_headers(body, ts_ms=int(time.time() * 1000) - 60_000),
        ),
        ("a peer id not in the configuration", body, signed_headers(body, peer="r9")),
        (
            "no peer id",
            body,
            {k: v for k, v in signed_headers(body).items() if k != "X-Crdtkv-Peer"},
        ),
        ("a garbage signature", body, {**signed_headers(body), "X-Crdtkv-Signature": "00" * 32}),
    ]


def test_replication_requests_must_be_signed_by_a_configured_peer(
    shared: list[Server],
) -> None:
    servers = shared
    r1, r2, _ = servers
    with Client([r1.url]) as db:
        db.counters.incr("auth-c", 1)
    with Client([r2.url]) as db:
        db.counters.incr("auth-r2", 1)
    converge(servers, [("counters", "auth-c")])
    # A well-formed push from "r2" that would add 5 to auth-c (as the control shows).
    body, r1_incarnation = _push_from_r2(servers, "auth-c", 5, "intruder~x")
    head = messages.decode(body).head
    url = r1.url + REPLICATE_PATH

    def unchanged() -> None:
        assert read(r1, ("counters", "auth-c")) == {"value": 1}
        assert "intruder~x" not in r1.status()["applied"]

    for what, data, headers in _refused_requests(body):
        status, answer = http("POST", url, data=data, headers=headers)
        assert status == 401, (what, status, answer)
        assert answer["error"]["code"] == "unauthorized", (what, answer)
        unchanged()

    garbled_group = messages.encode(Push(head, 0, 1, ((1, b"\xc1garbage"),), r1_incarnation))
    for garbage in (b"\xc1garbage", b"", msgpack.packb(["push", "r2"]), garbled_group):
        status, answer = http("POST", url, data=garbage, headers=signed_headers(garbage))
        assert status == 400, (garbage, status, answer)
        assert answer["error"]["code"] == "bad_request", answer
        unchanged()

    # The control: the same push, properly signed, is accepted and applied,
    # and the reply is signed by r1.
    req = http_raw("POST", url, body, signed_headers(body))
    assert req[0] == 200, req
    verify([SECRET], "REPLY", REPLICATE_PATH, req[1], req[2], int(time.time() * 1000))
    reply = messages.decode(req[2])
    assert isinstance(reply, Reply) and reply.acked == 1 and reply.head.sender == "r1"
    assert read(r1, ("counters", "auth-c")) == {"value": 6}
    assert r1.status()["applied"]["intruder~x"] == 1
    # Accepted traffic travels on: the others get it from r1.
    converge(servers, [("counters", "auth-c")])


def test_compressed_replication_bodies_are_bounded_and_checked(shared: list[Server]) -> None:
    servers = shared
    r1 = servers[0]
    with Client([r1.url]) as db:
        db.counters.incr("zlib-c", 1)
    converge(servers, [("counters", "zlib-c")])
    body, _ = _push_from_r2(servers, "zlib-c", 7, "zipper~x")
    url = r1.url + REPLICATE_PATH

    def unchanged() -> None:
        assert read(r1, ("counters", "zlib-c")) == {"value": 1}
        assert "zipper~x" not in r1.status()["applied"]

    def signed(wire: bytes, encoding: str) -> dict[str, str]:
        return {**signed_headers(wire), "X-Crdtkv-Encoding": encoding}

    bomb = zlib.compress(bytes(64 * 1024 * 1024), 9)  # 64 KiB that inflate to 64 MiB
    refused = [
        ("a bomb", bomb, "zlib", 413, "payload_too_large"),
        ("not zlib", b"\x78\x01garbage" * 20, "zlib", 400, "bad_request"),
        ("truncated", zlib.compress(body)[:-4], "zlib", 400, "bad_request"),
        ("unknown encoding", zlib.compress(body), "br", 400, "bad_request"),
        # Plain bytes announced as compressed, and compressed ones announced as plain.
        ("plain as zlib", body, "zlib", 400, "bad_request"),
        ("zlib as plain", zlib.compress(body), "", 400, "bad_request"),
    ]
    for what, wire, encoding, status, code in refused:
        got, answer = http("POST", url, data=wire, headers=signed(wire, encoding))
        assert (got, answer["error"]["code"]) == (status, code), (what, got, answer)
        unchanged()
    # The control: the same push compressed is applied, and the reply comes back
    # compressed or plain as its size decides, signed either way.
    wire = zlib.compress(body, 1)
    status, rheaders, rbody = http_raw("POST", url, wire, signed(wire, "zlib"))
    assert status == 200, (status, rbody[:200])
    verify([SECRET], "REPLY", REPLICATE_PATH, rheaders, rbody, int(time.time() * 1000))
    reply = messages.decode(messages.decompress(rbody, rheaders.get("X-Crdtkv-Encoding")))
    assert isinstance(reply, Reply) and reply.acked == 1
    assert read(r1, ("counters", "zlib-c")) == {"value": 8}
    converge(servers, [("counters", "zlib-c")])

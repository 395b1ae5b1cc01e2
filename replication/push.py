"""Pushes: shipping our durable log to a peer, and applying a peer's push.

Sender: the entries after the peer's ``acked``, in order, bounded in entries
and bytes, leaving out what the peer's current incarnation already has (no
back-propagation, no redundant state).  Receiver: decode everything first
(a malformed push changes nothing), then join each group whose dot is not
yet applied; the reply names the position reached.

Pure: no I/O, time passed in.
"""

from __future__ import annotations

from crdtkv.errors import CrdtkvError, ProtocolError
from crdtkv.limits import ReplicationSettings
from crdtkv.replica import records as rec
from crdtkv.replica.keyspace import DeltaGroup, Replica
from replication.log import DeltaLog, ShippedEntry
from replication.messages import Header, Push
from replication.peer_state import PeerState

__all__ = ["apply_push", "build_push", "decode_push", "peer_has"]


def build_push(
    log: DeltaLog,
    peer: PeerState,
    head: Header,
    settings: ReplicationSettings,
    *,
    durable_pos: int,
    hold: bool,
    now_ms: int,
) -> tuple[Push, int] | None:
    """The next push for ``peer`` and the position it covers up to; None when
    there is nothing to ship and no heartbeat is due.  ``hold``: ship nothing
    (heartbeats only), the peer lacks dots we learnt by state sync."""
    entries: list[tuple[int, bytes]] = []
    size = 0
    upto = peer.acked
    for e in () if hold else log.after(peer.acked):
        if e.pos > durable_pos:
            break
        if len(entries) >= settings.push_entries_max or (
            entries and size + len(e.blob) > settings.push_bytes_max
        ):
            break
        upto = e.pos
        if peer_has(peer, e):
            continue
        entries.append((e.pos, e.blob))
        size += len(e.blob)
    last = peer.last_sent_ms
    heartbeat_due = last is None or now_ms - last >= settings.heartbeat_ms
    if not entries and upto == peer.acked and not heartbeat_due:
        return None
    return Push(head, peer.acked, upto, tuple(entries), peer.incarnation), upto


def peer_has(peer: PeerState, e: ShippedEntry) -> bool:
    """Whether the peer's *current* incarnation has the entry: it minted it,
    sent it to us, or reported it applied.  What an older incarnation of
    the peer minted or sent is gone with its data, and is shipped again."""
    actor, seq = e.dot
    current = f"{peer.peer_id}~{peer.incarnation}"
    if actor == current or e.origin == current:
        return True
    return seq <= peer.applied.get(actor, 0)


def decode_push(msg: Push) -> list[tuple[int, DeltaGroup]]:
    """Every group of ``msg``, decoded; raises before anything changes."""
    if msg.upto < msg.after or any(not msg.after < pos <= msg.upto for pos, _ in msg.entries):
        raise ProtocolError("push entries outside (after, upto]")
    return [(pos, rec.decode_group(rec.unpack(blob, "group"))) for pos, blob in msg.entries]


def apply_push(
    replica: Replica, origin: str, msg: Push, groups: list[tuple[int, DeltaGroup]], now_ms: int
) -> int:
    """Join the decoded groups in order; returns the position reached.

    ``origin`` is the sender with the incarnation that sent the push.  A group
    this replica refuses (e.g. a timestamp too far ahead of our clock) stops
    the push there: the sender retries from that position later."""
    reached = msg.after
    for pos, group in groups:
        try:
            replica.apply_remote(group, origin, now_ms)
        except CrdtkvError:
            return reached
        reached = pos
    return msg.upto

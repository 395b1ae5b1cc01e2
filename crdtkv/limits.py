"""Limits on everything a client or a peer can make us hold (TigerBeetle style:
units last in names).  Each has a reason next to it.

Three groups, checked against each other in one place (``ReplicationSettings.check``
and ``check_body_bytes``, run when ``crdtkv serve`` loads its configuration):

- what a client may send (keys, members, bodies, waits);
- what a replication message may carry: hard bounds every receiver enforces
  when it decodes a message (``replication.messages``), the same in every
  build of a cluster;
- the replication core's settings (``ReplicationSettings``): how much a sender
  puts in one message, which must stay within the receiver's bounds, and what
  a receiver buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = [
    "BATCH_OPS_MAX",
    "BODY_BYTES_MAX",
    "DIGEST_BUCKETS_MAX",
    "HASH_FIELDS_MAX",
    "HASH_VALUE_BYTES_MAX",
    "HLL_SOURCES_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "ITEM_FRAMING_BYTES",
    "JSON_DEPTH_MAX",
    "KEY_BYTES_MAX",
    "LIST_ELEMENTS_MAX",
    "MEMBERS_PER_OP_MAX",
    "MEMBER_BYTES_MAX",
    "MESSAGE_BYTES_MAX",
    "MESSAGE_RESERVE_BYTES",
    "OP_DELTA_OVERHEAD_BYTES",
    "PUSH_ENTRIES_MAX",
    "RANGE_MAX",
    "SET_MEMBERS_MAX",
    "SYNC_KEYS_MAX",
    "TTL_MS_MAX",
    "VSET_ELEMENTS_MAX",
    "WAIT_MS_DEFAULT",
    "WAIT_MS_MAX",
    "ZSET_MEMBERS_MAX",
    "LimitError",
    "ReplicationSettings",
    "check_body_bytes",
]

# -- clients -------------------------------------------------------------------------------
KEY_BYTES_MAX = 1024  # a key is 1..1024 UTF-8 bytes (docs/api.md, Conventions)
MEMBER_BYTES_MAX = 4096  # set members and HLL items; bigger values belong in registers
MEMBERS_PER_OP_MAX = 10_000  # one add/remove call; bounds the work of one request
SET_MEMBERS_MAX = 10_000_000  # a set this large no longer fits the "held in memory" design
ZSET_MEMBERS_MAX = 10_000_000  # as SET_MEMBERS_MAX: a sorted set is held in memory too
LIST_ELEMENTS_MAX = 10_000_000  # as SET_MEMBERS_MAX: a list is held in memory too
VSET_ELEMENTS_MAX = 10_000_000  # as SET_MEMBERS_MAX; each element also holds its vector
RANGE_MAX = 100_000  # entries one range or pop answers; bounds a response (page with LIMIT)
HASH_FIELDS_MAX = 10_000_000  # fields of one hash: the same bound as a set's members
HASH_VALUE_BYTES_MAX = 512 * 1024  # one hash field's string value; bigger belongs in a register
HLL_SOURCES_MAX = 64  # keys named in one merge or union count
BATCH_OPS_MAX = 1_000  # ops in one /v1/batch request
JSON_DEPTH_MAX = 64  # deeper JSON is refused: keeps recursive checks far from the recursion limit
BODY_BYTES_MAX = 1024 * 1024  # 1 MiB per client request by default (--body-bytes-max)
TTL_MS_MAX = 10 * 365 * 24 * 3600 * 1000  # ten years; longer is a mistake, not a TTL
WAIT_MS_DEFAULT = 1_000  # session-token wait when a request sends no X-Crdtkv-Wait-Ms
WAIT_MS_MAX = 10_000  # and its cap
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# -- replication messages: every receiver refuses more ------------------------------------------
MESSAGE_BYTES_MAX = 16 * 1024 * 1024  # any replication body, compressed or not, once inflated
PUSH_ENTRIES_MAX = 10_000  # log entries in one Push
SYNC_KEYS_MAX = 50_000  # keys named in one SyncKeys, Reply.want or SyncStates
DIGEST_BUCKETS_MAX = 65_536  # bucket digests in one SyncDigest
# Room a message needs beyond its payload: the header's applied and floor
# vectors (one entry per actor the cluster ever had) and ids.
MESSAGE_RESERVE_BYTES = 1024 * 1024
# MessagePack framing of one entry, key or state in a message (array header,
# position or hash, bin and str headers), on top of its own bytes.
ITEM_FRAMING_BYTES = 16
# A delta group is at most its client body plus this: an OR-set add carries a
# dot (actor id, sequence: ~70 bytes) per member, MEMBERS_PER_OP_MAX of them.
OP_DELTA_OVERHEAD_BYTES = 2 * 1024 * 1024

_PAYLOAD_BYTES_MAX = MESSAGE_BYTES_MAX - MESSAGE_RESERVE_BYTES  # what one message may carry
_SYNC_KEY_BYTES_MAX = KEY_BYTES_MAX + 16 + ITEM_FRAMING_BYTES  # key, namespace, hash, framing


class LimitError(ValueError):
    """A setting out of its bounds or inconsistent with another limit.

    ``setting`` names it (a ``ReplicationSettings`` field, or ``body_bytes_max``);
    the configuration loader turns this into a one-line start-up error."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    """Settings of the replication core (``replication.protocol.Settings``).

    Validated when built (``check``): a sender's bounds must stay within what
    every receiver accepts, or every receiver would refuse its messages and
    replication would stall with no error but a failing request.
    """

    push_entries_max: int = 2_000  # entries in one push
    push_bytes_max: int = 1024 * 1024  # encoded group bytes in one push
    heartbeat_ms: int = 1_000  # an idle link still exchanges applied vectors this often
    log_bytes_max: int = 64 * 1024 * 1024  # retained log; beyond it peers need a state sync
    sync_keys_max: int = 5_000  # key hashes in one SyncKeys
    sync_bytes_max: int = 1024 * 1024  # state bytes (keys included) in one SyncStates
    reachable_ms: int = 5_000  # a peer not heard from for this long is unreachable
    # A peer that lacks dots we learnt by state sync: pushes wait this long for
    # it to get them elsewhere, then we catch it up by a state sync.
    orphan_grace_ms: int = 1_000
    # Encoded states (keys included) a receiver buffers for one incoming state
    # sync until its SyncDone.  A run that ships more is dropped (SyncTooLarge),
    # so this must exceed the largest difference a catch-up has to carry.
    sync_buffer_bytes_max: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ``LimitError`` naming the first setting out of bounds."""
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int:
                raise LimitError(f.name, "must be an integer")
            low = 0 if f.name == "orphan_grace_ms" else 1
            if value < low:
                raise LimitError(f.name, f"must be at least {low}")
        _at_most(
            "push_entries_max",
            self.push_entries_max,
            PUSH_ENTRIES_MAX,
            "a receiver refuses a push with more entries",
        )
        _at_most(
            "push_bytes_max",
            self.push_bytes_max + self.push_entries_max * ITEM_FRAMING_BYTES,
            _PAYLOAD_BYTES_MAX,
            f"with push_entries_max={self.push_entries_max} a push would pass the "
            f"{MESSAGE_BYTES_MAX}-byte message bound every receiver enforces",
        )
        _at_most(
            "sync_keys_max",
            self.sync_keys_max,
            min(SYNC_KEYS_MAX, _PAYLOAD_BYTES_MAX // _SYNC_KEY_BYTES_MAX),
            "a receiver refuses a SyncKeys with more keys or bytes",
        )
        _at_most(
            "sync_bytes_max",
            self.sync_bytes_max,
            _PAYLOAD_BYTES_MAX,
            f"a SyncStates would pass the {MESSAGE_BYTES_MAX}-byte message bound",
        )
        if self.sync_buffer_bytes_max < MESSAGE_BYTES_MAX:
            raise LimitError(
                "sync_buffer_bytes_max",
                f"must be at least {MESSAGE_BYTES_MAX}: the states of one message must fit",
            )
        if self.reachable_ms <= self.heartbeat_ms:
            raise LimitError(
                "reachable_ms",
                f"must exceed heartbeat_ms ({self.heartbeat_ms}): a peer answering "
                "every heartbeat would count as unreachable",
            )


def _at_most(setting: str, value: int, bound: int, why: str) -> None:
    if value > bound:
        raise LimitError(setting, f"must be at most {bound}: {why}")


def check_body_bytes(body_bytes_max: int, *, replicated: bool) -> None:
    """Refuse a client body limit whose operations a push could not carry.

    A replica that accepts an operation no message can carry to its peers
    would acknowledge it and never replicate it (every push of it refused by
    the receiver's message bound), so with peers the body limit must leave a
    push room for one operation's delta group and the header."""
    if not replicated:
        return
    bound = _PAYLOAD_BYTES_MAX - OP_DELTA_OVERHEAD_BYTES
    _at_most(
        "body_bytes_max",
        body_bytes_max,
        bound,
        "with peers, one operation's delta must fit a replication message",
    )

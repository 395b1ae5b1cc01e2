"""Limits on everything a client or a peer can make us hold (TigerBeetle style:
units last in names).  Each has a reason next to it."""

from __future__ import annotations

KEY_BYTES_MAX = 1024  # a key is 1..1024 UTF-8 bytes (docs/api.md, Conventions)
MEMBER_BYTES_MAX = 4096  # set members and HLL items; bigger values belong in registers
MEMBERS_PER_OP_MAX = 10_000  # one add/remove call; bounds the work of one request
SET_MEMBERS_MAX = 10_000_000  # a set this large no longer fits the "held in memory" design
HLL_SOURCES_MAX = 64  # keys named in one merge or union count
BATCH_OPS_MAX = 1_000  # ops in one /v1/batch request
JSON_DEPTH_MAX = 64  # deeper JSON is refused: keeps recursive checks far from the recursion limit
BODY_BYTES_MAX = 1024 * 1024  # 1 MiB per client request by default (--body-bytes-max)
TTL_MS_MAX = 10 * 365 * 24 * 3600 * 1000  # ten years; longer is a mistake, not a TTL
WAIT_MS_DEFAULT = 1_000  # session-token wait when a request sends no X-Crdtkv-Wait-Ms
WAIT_MS_MAX = 10_000  # and its cap
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

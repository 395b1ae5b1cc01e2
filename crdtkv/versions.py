"""What this release is, and which formats it writes and reads (pure: constants).

Three things carry a version, each for its own reason (docs/operations.md,
"Upgrades"):

- the **release** (``RELEASE``, the package version): shown in ``/v1/status``,
  INFO and HELLO, sent to peers with every replication request and reply, and
  recorded in the data directory by every start;
- the **replication wire format** (``WIRE_FORMAT``): the bytes of
  ``replication.messages`` and the signing scheme of ``replication.http``.
  Every request and reply names it in ``X-Crdtkv-Wire``.  A receiver accepts
  the formats in ``WIRE_READS`` and refuses any other with a ``WireVersionMismatch``
  that names both releases and both formats, before it decodes a byte of the
  body.  Releases before 0.2.0 send no header: they speak ``WIRE_IMPLICIT``
  (format 1, which this release still speaks), so a mixed cluster of 0.1.0 and
  this release converges;
- the **storage format** of the data directory (``crdtkv.replica.records.FORMAT``):
  refused when newer, migrated when older (``crdtkv.replica.persist``).

A change to any message's bytes or to the signature raises ``WIRE_FORMAT``.
While one release can still read the previous format, ``WIRE_READS`` keeps it
and a rolling upgrade needs no downtime; a release that drops it says so in
docs/operations.md.
"""

from __future__ import annotations

__all__ = [
    "RELEASE",
    "RELEASE_HEADER",
    "WIRE_FORMAT",
    "WIRE_HEADER",
    "WIRE_IMPLICIT",
    "WIRE_READS",
    "wire_accepted",
]

RELEASE = "0.2.0"  # the package version: pyproject.toml says the same (tests/test_repo.py)
WIRE_FORMAT = 1  # what this release sends
WIRE_READS = (1, 1)  # the lowest and highest format this release accepts
WIRE_IMPLICIT = 1  # the format of a peer that sends no X-Crdtkv-Wire (releases before 0.2.0)
WIRE_HEADER = "X-Crdtkv-Wire"
RELEASE_HEADER = "X-Crdtkv-Release"


def wire_accepted(fmt: int) -> bool:
    return WIRE_READS[0] <= fmt <= WIRE_READS[1]

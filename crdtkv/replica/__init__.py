"""The replica core: typed keyspace, the public operations, delta groups.

Pure: no I/O, no clock, no randomness.  The HTTP shell and the simulator
drive the same ``Replica``.
"""

from crdtkv.replica.keyspace import NAMESPACES, DeltaGroup, Replica
from crdtkv.replica.ops import OPS, apply_op

__all__ = ["NAMESPACES", "OPS", "DeltaGroup", "Replica", "apply_op"]

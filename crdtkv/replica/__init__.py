"""The replica core: typed keyspace, delta groups, their persistence records.

Pure: no I/O, no clock, no randomness.  The HTTP shell and the simulator
drive the same ``Replica``.  The operations over it live one layer up, in
``crdtkv.ops``; ``apply_op`` is re-exported here for the node and the
simulator.
"""

from typing import TYPE_CHECKING, Any

from crdtkv.replica.keyspace import STATE_TYPES, TYPES, DeltaGroup, Replica

if TYPE_CHECKING:
    from crdtkv.ops.table import apply_op

__all__ = ["STATE_TYPES", "TYPES", "DeltaGroup", "Replica", "apply_op"]


def __getattr__(name: str) -> Any:
    # Lazy: crdtkv.ops imports this package, so importing it eagerly here would be a cycle.
    if name == "apply_op":
        from crdtkv.ops.table import apply_op

        return apply_op
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

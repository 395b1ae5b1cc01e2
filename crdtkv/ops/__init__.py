"""The operations of the store: one table, their validation and their semantics.

- ``spec``: the record types of a table row and argument validation;
- ``registers``, ``counters``, ``sets``, ``hlls``: each type's operations
  as functions over a ``crdtkv.replica.Replica``;
- ``table``: the rows, and ``apply_op(replica, op, now_ms)``;
- ``routing``: an op as its single-key HTTP request.

Pure: no I/O, no clock, no randomness.
"""

from crdtkv.ops.spec import OpSpec, check_json_value, validate_key
from crdtkv.ops.table import NAMESPACES, OPS, TABLE, apply_op, op_dict, snapshot_read

__all__ = [
    "NAMESPACES",
    "OPS",
    "TABLE",
    "OpSpec",
    "apply_op",
    "check_json_value",
    "op_dict",
    "snapshot_read",
    "validate_key",
]

"""Which list writes a client may send twice (``OpSpec.retry_safe``).

A client retries a write whose reply was lost only when sending it twice is
harmless (crdtkv.client: otherwise ``ClusterUnavailable``, "may or may not
have been applied").  Each list write the table calls retry-safe is applied
twice here and must leave what one application leaves; LTRIM is not safe
(``LTRIM 1 -1`` twice drops two elements), nor are pushes, pops, LINSERT,
LREM and LMOVE.
"""

from __future__ import annotations

from typing import Any

from crdtkv.client.model import op_call
from crdtkv.errors import NotFound
from crdtkv.ops import OPS, apply_op
from crdtkv.replica import Replica

NOW_MS = 1_700_000_000_000
# A sample op of each retry-safe list write, on the list ["a", "b", "c", "a"].
SAFE_SAMPLES: dict[str, dict[str, Any]] = {
    "lists.set": {"index": 1, "element": "x"},
    "lists.delete": {},
}


def fresh() -> Replica:
    r = Replica("r1", "inc1")
    apply_op(r, {"op": "lists.rpush", "key": "l", "values": ["a", "b", "c", "a"]}, NOW_MS)
    return r


def read(r: Replica) -> list[str]:
    try:
        got = apply_op(r, {"op": "lists.range", "key": "l", "start": 0, "stop": -1}, NOW_MS + 9)
    except NotFound:  # the list is gone
        return []
    return list(got["values"])


def test_the_retry_safe_list_writes_are_those_sampled() -> None:
    safe = {n for n, s in OPS.items() if n.startswith("lists.") and s.writes and s.retry_safe}
    assert safe == set(SAFE_SAMPLES)


def test_a_retry_safe_list_write_sent_twice_changes_nothing_more() -> None:
    for name, fields in SAFE_SAMPLES.items():
        once, twice = fresh(), fresh()
        op = {"op": name, "key": "l", **fields}
        first = apply_op(once, op, NOW_MS + 1)
        apply_op(twice, op, NOW_MS + 1)
        assert apply_op(twice, op, NOW_MS + 2) == first, name
        assert read(twice) == read(once), name


def test_ltrim_twice_is_not_ltrim_once_so_it_is_not_retried() -> None:
    once, twice = fresh(), fresh()
    op = {"op": "lists.trim", "key": "l", "start": 1, "stop": -1}
    apply_op(once, op, NOW_MS + 1)
    apply_op(twice, op, NOW_MS + 1)
    apply_op(twice, op, NOW_MS + 2)
    assert (read(once), read(twice)) == (["b", "c", "a"], ["c", "a"])
    spec = OPS["lists.trim"]
    assert spec.client is not None
    call = op_call(spec, spec.client[0], {"key": "l", "start": 1, "stop": -1})
    assert call.idempotent is False  # the client raises rather than send it again

"""A list element is at most MEMBER_BYTES_MAX bytes of UTF-8 however it is written.

RPUSH/LPUSH counted bytes; LSET and LINSERT went through the op row's string
check, which counts characters, so they could store an element of up to four
times the limit (4096 four-byte characters).  Nothing changes on a refusal,
and the check comes before the key is looked at (a 400 even for an absent
list, as every other bad field).
"""

from __future__ import annotations

from typing import Any

import pytest

from crdtkv import limits
from crdtkv.errors import BadRequest
from crdtkv.ops import apply_op
from crdtkv.replica import Replica

NOW_MS = 1_700_000_000_000
WIDE = "\U0001f600"  # four bytes of UTF-8, one character
AT_LIMIT = WIDE * (limits.MEMBER_BYTES_MAX // 4)
OVER = AT_LIMIT + "a"  # 1025 characters, 4097 bytes
OVER_ASCII = "a" * (limits.MEMBER_BYTES_MAX + 1)


def op(r: Replica, name: str, key: str = "l", **fields: Any) -> Any:
    return apply_op(r, {"op": f"lists.{name}", "key": key, **fields}, NOW_MS)


def values(r: Replica, key: str = "l") -> list[str]:
    return list(op(r, "get", key)["values"])


@pytest.fixture
def r() -> Replica:
    r = Replica("r1", "inc1")
    op(r, "rpush", values=["a", "b"], exists=None)
    return r


def test_pushes_lset_and_linsert_take_an_element_of_exactly_the_limit(r: Replica) -> None:
    assert op(r, "rpush", values=[AT_LIMIT], exists=None) == {"length": 3}
    assert op(r, "set", index=0, element=AT_LIMIT) == {"ok": True}
    assert op(r, "insert", where="after", pivot="b", element=AT_LIMIT) == {"length": 4}
    assert values(r) == [AT_LIMIT, "b", AT_LIMIT, AT_LIMIT]


@pytest.mark.parametrize("element", [OVER, OVER_ASCII])
def test_every_write_refuses_an_element_over_the_limit(r: Replica, element: str) -> None:
    writes: list[tuple[str, dict[str, Any]]] = [
        ("rpush", {"values": [element], "exists": None}),
        ("lpush", {"values": ["ok", element], "exists": None}),
        ("set", {"index": 0, "element": element}),
        ("insert", {"where": "before", "pivot": "a", "element": element}),
    ]
    for name, fields in writes:
        with pytest.raises(BadRequest) as e:
            op(r, name, **fields)
        assert str(limits.MEMBER_BYTES_MAX) in e.value.message, (name, e.value.message)
    assert values(r) == ["a", "b"]  # nothing changed
    assert len(r.take_pending()) == 1  # only the fixture's push was logged
    assert op(r, "length") == {"length": 2}


def test_the_element_is_checked_before_the_key(r: Replica) -> None:
    for name, fields in [
        ("set", {"index": 0, "element": OVER}),
        ("insert", {"where": "before", "pivot": "a", "element": OVER}),
    ]:
        with pytest.raises(BadRequest):
            op(r, name, key="absent", **fields)


def test_matching_args_are_not_stored_and_keep_the_character_bound(r: Replica) -> None:
    # LREM's and LPOS's element and LINSERT's pivot only compare: a long one matches nothing.
    assert op(r, "remove", rem_count=0, element=OVER) == {"removed": 0}
    assert op(r, "pos", element=OVER, rank=None, matches=None, maxlen=None) == {"positions": []}
    assert op(r, "insert", where="before", pivot=OVER, element="x") == {"length": -1}

"""sets.size: an op added by its function and its row only."""

from __future__ import annotations

from typing import Any

import pytest

from crdtkv.errors import NotFound
from crdtkv.ops import apply_op
from crdtkv.replica import Replica


def test_sets_size_counts_members() -> None:
    r = Replica("r1", "inc1")
    with pytest.raises(NotFound):
        apply_op(r, {"op": "sets.size", "key": "s"}, 1)
    apply_op(r, {"op": "sets.add", "key": "s", "members": ["a", "b", "a"]}, 1)
    assert apply_op(r, {"op": "sets.size", "key": "s"}, 1) == {"size": 2}


async def test_sets_size_in_a_batch(make_served: Any) -> None:
    served = await make_served()
    ops = [{"op": "sets.add", "key": "s", "members": ["x"]}, {"op": "sets.size", "key": "s"}]
    assert (await served.ok("POST", "/v1/batch", {"ops": ops}))["results"][1] == {"size": 1}

"""What the storage tests share: a naive reference model, batch builders, strategies."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from crdtkv.storage import COLUMN_FAMILIES, Delete, Put, Storage, WriteBatch

Model = dict[str, dict[bytes, bytes]]


def replay(batches: list[WriteBatch]) -> Model:
    """The state after applying ``batches`` in order, computed naively."""
    model: Model = {cf: {} for cf in COLUMN_FAMILIES}
    for batch in batches:
        for op in batch.ops:
            if isinstance(op, Put):
                model[op.cf][op.key] = op.value
            elif isinstance(op, Delete):
                model[op.cf].pop(op.key, None)
            else:
                model[op.cf] = {k: v for k, v in model[op.cf].items() if not op.start <= k < op.end}
    return model


def dump(store: Storage) -> Model:
    return {cf: dict(store.items(cf)) for cf in COLUMN_FAMILIES}


def scan(store: Storage) -> dict[str, list[tuple[bytes, bytes]]]:
    """Like ``dump``, but order matters."""
    return {cf: list(store.items(cf)) for cf in COLUMN_FAMILIES}


def batch_of(*ops: tuple[str, ...]) -> WriteBatch:
    """``("put", cf, key, value)``, ``("del", cf, key)``, ``("range", cf, start, end)``."""
    b = WriteBatch()
    for op in ops:
        if op[0] == "put":
            b.put(op[1], op[2].encode(), op[3].encode())
        elif op[0] == "del":
            b.delete(op[1], op[2].encode())
        else:
            b.delete_range(op[1], op[2].encode(), op[3].encode())
    return b


# -- strategies ----------------------------------------------------------------------------------

KEYS = st.lists(st.sampled_from([0x00, 0x61, 0xFF]), max_size=2).map(bytes)  # 13 keys
CFS = st.sampled_from(COLUMN_FAMILIES)


def batches(max_ops: int) -> st.SearchStrategy[WriteBatch]:
    """Batches of up to ``max_ops`` puts, deletes and range deletes over ``KEYS``."""

    @st.composite
    def draw_batch(draw: st.DrawFn) -> WriteBatch:
        b = WriteBatch()
        for _ in range(draw(st.integers(0, max_ops))):
            kind = draw(st.sampled_from(["put", "put", "delete", "range"]))
            cf = draw(CFS)
            if kind == "put":
                b.put(cf, draw(KEYS), draw(st.binary(max_size=4)))
            elif kind == "delete":
                b.delete(cf, draw(KEYS))
            else:
                lo, hi = sorted((draw(KEYS), draw(KEYS)))
                b.delete_range(cf, lo, hi)
        return b

    return draw_batch()


@dataclass(frozen=True, slots=True)
class Write:
    batch: WriteBatch
    sync: bool

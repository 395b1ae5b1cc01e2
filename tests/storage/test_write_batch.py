"""WriteBatch: the one way to change a Storage, validated before anything is written."""

from __future__ import annotations

import pytest

from crdtkv.storage import Delete, DeleteRange, Put, WriteBatch


def test_write_batch_records_operations_in_order() -> None:
    b = WriteBatch()
    assert len(b) == 0
    b.put("states", b"k", b"v")
    b.delete("log", b"k")
    b.delete_range("meta", b"a", b"z")
    assert len(b) == 3
    assert b.ops == [
        Put("states", b"k", b"v"),
        Delete("log", b"k"),
        DeleteRange("meta", b"a", b"z"),
    ]


@pytest.mark.parametrize("cf", ["", "default", "STATES", "state", "logs"])
def test_write_batch_rejects_unknown_column_family(cf: str) -> None:
    b = WriteBatch()
    with pytest.raises(ValueError, match="unknown column family"):
        b.put(cf, b"k", b"v")
    with pytest.raises(ValueError, match="unknown column family"):
        b.delete(cf, b"k")
    with pytest.raises(ValueError, match="unknown column family"):
        b.delete_range(cf, b"a", b"b")
    assert len(b) == 0


def test_write_batch_rejects_non_bytes() -> None:
    b = WriteBatch()
    with pytest.raises(TypeError):
        b.put("states", "k", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.put("states", b"k", bytearray(b"v"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.delete("states", None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.delete_range("states", b"a", 5)  # type: ignore[arg-type]
    assert len(b) == 0


def test_write_batch_rejects_reversed_range_but_allows_empty_one() -> None:
    b = WriteBatch()
    with pytest.raises(ValueError, match="after end"):
        b.delete_range("log", b"b", b"a")
    b.delete_range("log", b"a", b"a")
    assert len(b) == 1

"""The vector set CRDT's conflict rules, one by one (the law suite covers the laws)."""

from __future__ import annotations

import math
import struct
from random import Random

import pytest

from crdtkv.crdts import VSet, codec
from crdtkv.crdts.hlc import Timestamp
from crdtkv.crdts.vset import KEEP, DimensionMismatch, check_vector, pack_vector, unpack_vector
from crdtkv.errors import BadRequest, CodecError

V3 = pack_vector([1.0, 2.0, 3.0])
W3 = pack_vector([-1.0, 0.5, 0.0])
V2 = pack_vector([1.0, 0.0])


def ts(wall: int, actor: str = "a") -> Timestamp:
    return Timestamp(wall, 0, actor)


def synced(*states: VSet) -> None:
    """Every state joined with every other (full-state anti-entropy)."""
    joined = VSet()
    for s in states:
        joined.merge(s.copy())
    for s in states:
        s.merge(joined.copy())


def test_add_read_and_update() -> None:
    s = VSet()
    _, new = s.add("a", ts(1), "x", V3, '{"y": 1}')
    assert new and s.dim == 3 and len(s) == 1 and "x" in s
    assert s.vector("x") == V3 and s.attrs("x") == '{"y": 1}'
    _, new = s.add("a", ts(2), "x", W3)  # KEEP: the attributes stay
    assert not new and s.vector("x") == W3 and s.attrs("x") == '{"y": 1}'
    assert len(s.entries["x"]) == 1  # the new entry replaced the observed one
    with pytest.raises(DimensionMismatch, match="got 2 but set has 3"):
        s.add("a", ts(3), "z", V2)
    assert "z" not in s and s.dim == 3


def test_concurrent_vector_writes_have_one_lww_winner_everywhere() -> None:
    a, b = VSet(), VSet()
    a.add("a", ts(1, "a"), "x", V3)
    synced(a, b)
    a.add("a", ts(5, "a"), "x", W3)
    b.add("b", ts(4, "b"), "x", pack_vector([0.0, 0.0, 1.0]))
    synced(a, b)
    assert a == b and a.vector("x") == W3 and len(a) == 1


def test_vadd_and_a_concurrent_vsetattr_both_hold() -> None:
    a, b = VSet(), VSet()
    a.add("a", ts(1, "a"), "x", V3, '{"v": 1}')
    synced(a, b)
    a.add("a", ts(5, "a"), "x", W3)  # new vector, attributes kept
    b.set_attrs("b", ts(6, "b"), "x", '{"v": 2}')  # new attributes, old vector carried
    synced(a, b)
    assert a == b and a.vector("x") == W3 and a.attrs("x") == '{"v": 2}'


def test_vrem_racing_vsetattr_keeps_the_element_add_wins() -> None:
    a, b = VSet(), VSet()
    a.add("a", ts(1, "a"), "x", V3)
    a.add("a", ts(1, "a"), "y", W3)
    synced(a, b)
    _, n = a.remove(["x"])
    assert n == 1 and "x" not in a
    _, ok = b.set_attrs("b", ts(2, "b"), "x", '{"kept": true}')
    assert ok
    synced(a, b)
    assert a == b and "x" in a and a.attrs("x") == '{"kept": true}' and a.vector("x") == V3
    # A remove that has seen the write wins.
    a.remove(["x"])
    synced(a, b)
    assert "x" not in b and len(b) == 1


def test_set_attrs_of_an_absent_element_changes_nothing() -> None:
    s = VSet()
    s.add("a", ts(1), "x", V3)
    before = s.copy()
    delta, ok = s.set_attrs("a", ts(2), "nope", "{}")
    assert not ok and delta.is_bottom() and s == before


def test_a_dimension_conflict_resolves_to_the_earlier_creation_and_hides_the_other() -> None:
    a, b = VSet(), VSet()
    b.add("b", ts(7, "b"), "late", V2)  # created later, with 2 dimensions
    a.add("a", ts(3, "a"), "early", V3)  # created earlier, with 3
    b.add("b", ts(8, "b"), "late2", pack_vector([0.0, 1.0]))
    synced(a, b)
    assert a == b and a.dim == 3 and b.dim == 3
    assert a.elements() == ["early"] and len(b) == 1
    assert "late" not in b and b.vector("late") is None and b.attrs("late") is None
    # The hidden elements stay in the state: every replica holds the same state.
    assert set(b.entries) == {"early", "late", "late2"}
    # Writes now follow the winner's dimension.
    with pytest.raises(DimensionMismatch):
        b.add("b", ts(9, "b"), "more", V2)
    # Once the winning creation's elements are all gone, the other creation shows.
    a.remove(["early"])
    synced(a, b)
    assert b.dim == 2 and sorted(b.elements()) == ["late", "late2"]


def test_delete_then_a_new_dimension() -> None:
    s = VSet()
    s.add("a", ts(1), "x", V3)
    s.clear()
    assert s.dim is None and len(s) == 0
    s.add("a", ts(2), "y", V2)
    assert s.dim == 2 and s.elements() == ["y"]


def test_a_delete_keeps_a_concurrent_add() -> None:
    a, b = VSet(), VSet()
    a.add("a", ts(1, "a"), "x", V3)
    synced(a, b)
    a.clear()
    b.add("b", ts(2, "b"), "y", W3)
    synced(a, b)
    assert a == b and a.elements() == ["y"]


class _Index:
    def __init__(self) -> None:
        self.vectors: dict[str, bytes] = {}

    def upsert(self, element: str, vec: bytes) -> None:
        self.vectors[element] = vec

    def remove(self, element: str) -> None:
        del self.vectors[element]


def test_an_attached_index_follows_every_local_and_merged_change() -> None:
    a, b = VSet(), VSet()
    a.add("a", ts(1, "a"), "x", V3)
    a.add("a", ts(1, "a"), "y", W3)
    synced(a, b)
    index = _Index()
    b.attach_index(index)  # nothing recorded: attach as is, then follow
    index.vectors.update((e, v) for e, v, _ in b.items())
    b.remove(["x"])
    assert index.vectors == {"y": W3}
    a.add("a", ts(5, "a"), "z", V3)
    a.add("a", ts(6, "a"), "y", V3)
    b.merge(a.copy())  # merged: z new, y's vector changed; x stays removed at b
    assert index.vectors == {e: v for e, v, _ in b.items()} == {"y": V3, "z": V3}
    b.set_attrs("b", ts(7, "b"), "z", '{"a": 1}')  # attributes only: the index is unchanged
    assert index.vectors == {"y": V3, "z": V3}


def test_a_build_replays_the_changes_made_while_it_ran() -> None:
    s = VSet()
    for i, e in enumerate("abcd"):
        s.add("a", ts(i + 1), e, pack_vector([1.0, float(i)]))
    snapshot = dict(s.snapshot_for_index())
    s.remove(["a"])
    s.add("a", ts(10), "b", pack_vector([0.0, 1.0]))
    s.add("a", ts(11), "e", pack_vector([1.0, 1.0]))
    index = _Index()
    index.vectors.update(snapshot)
    s.attach_index(index)
    assert index.vectors == {e: v for e, v, _ in s.items()}
    assert s.ann is index and s.changed_since_snapshot is None


def test_a_dimension_change_detaches_the_index() -> None:
    a, b = VSet(), VSet()
    b.add("b", ts(7, "b"), "late", V2)
    index = _Index()
    b.attach_index(index)
    a.add("a", ts(3, "a"), "early", V3)
    b.merge(a.copy())  # the winner changes: "late" hides, the index is stale
    assert b.ann is None and b.dim == 3


def test_vectors_are_checked() -> None:
    assert unpack_vector(pack_vector([1.5, -2.0])) == [1.5, -2.0]
    for bad in (b"", b"abc", pack_vector([1.0, 0.0])[:-1], bytes(8)):
        with pytest.raises(BadRequest):
            check_vector(bad)
    for values in ([0.0, 0.0], [1e39], [float("nan")], [float("inf")]):
        with pytest.raises(BadRequest):
            pack_vector(values)


def _check_vector_reference(blob: bytes) -> bool:
    """The plain definition: every value finite, one at least not zero."""
    values = struct.unpack(f"<{len(blob) // 4}f", blob)
    return all(math.isfinite(v) for v in values) and any(v != 0 for v in values)


def test_check_vector_refuses_a_non_finite_value_anywhere() -> None:
    good = pack_vector([0.5] * 130)
    for i in range(130):
        for bad in (float("nan"), float("inf"), float("-inf")):
            blob = good[: 4 * i] + struct.pack("<f", bad) + good[4 * i + 4 :]
            with pytest.raises(BadRequest, match="finite"):
                check_vector(blob)
    for zeros in (bytes(16), struct.pack("<4f", -0.0, 0.0, -0.0, 0.0)):
        with pytest.raises(BadRequest, match="zeros"):
            check_vector(zeros)
    tiny = struct.pack("<3f", 0.0, 1e-45, 0.0)  # a subnormal: finite, not zero
    assert check_vector(tiny) == tiny
    # Little-endian: these bytes are NaN read little-endian, a finite value read big-endian.
    nan_le = bytes([0x00, 0x00, 0xC0, 0x7F])
    with pytest.raises(BadRequest, match="finite"):
        check_vector(nan_le)


def test_check_vector_agrees_with_its_definition_on_random_bytes() -> None:
    rng = Random(17)
    specials = [struct.pack("<f", v) for v in (0.0, -0.0, 1.0, float("nan"), float("inf"))]
    for _ in range(3_000):
        n = rng.randint(1, 40)
        blob = b"".join(
            rng.choice(specials) if rng.random() < 0.5 else rng.randbytes(4) for _ in range(n)
        )
        try:
            ok = check_vector(blob) == blob
        except BadRequest:
            ok = False
        assert ok == _check_vector_reference(blob), blob.hex()


def test_the_codec_round_trips_and_refuses_garbage() -> None:
    s = VSet()
    s.add("a", ts(1), "x", V3, '{"y": [1, 2]}')
    s.add("b", ts(2, "b"), "y", W3, KEEP)
    assert codec.unpack(codec.pack(s), VSet) == s
    good = s.encode()
    assert isinstance(good, list)
    ctx, entries, narrow = good
    bad_payloads = [
        [ctx, [["x", [["a", 1, [1, 0, "a"], [1, 0, "a"], b"abc", [0, 0, ""], None]]]], False],
        [ctx, [["x", [["a", 99, [1, 0, "a"], [1, 0, "a"], V3, [0, 0, ""], None]]]], False],
        [ctx, [["x", [["a", 1, [1, 0, "a"], [1, 0, "a"], V3, [0, 0, ""], 5]]]], False],
        [ctx, [["x", []]], False],  # a full state lists live elements only
        [ctx, entries + entries, narrow],  # an element twice
        [ctx, entries, "no"],
        "garbage",
    ]
    for payload in bad_payloads:
        with pytest.raises(CodecError):
            VSet.decode(payload)


def test_many_vectors_are_checked_at_once_as_one_by_one() -> None:
    from crdtkv.crdts.vset import check_vectors

    good = [V3, W3, V2, pack_vector([3.4e38, -3.4e38])]
    check_vectors(good)  # mixed dimensions, extreme but finite values
    nan = struct.pack("<3f", 1.0, float("nan"), 0.0)
    inf = struct.pack("<2f", float("-inf"), 1.0)
    zeros = struct.pack("<3f", 0.0, -0.0, 0.0)
    for bad, what in ((nan, "finite"), (inf, "finite"), (zeros, "zeros"), (b"abc", "bytes")):
        with pytest.raises(CodecError, match=what):
            check_vectors([*good, bad])

"""A tiny stand-in for the lead's VSet (crdtkv/crdts/vset.py): the same read
methods and index hooks (VSET.md), mutable, no CRDT machinery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def f32(values: Any) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


class StandInVSet:
    def __init__(self) -> None:
        self._vecs: dict[str, bytes] = {}
        self._attrs: dict[str, str | None] = {}
        self.ann: Any = None
        self._recording = False
        self.changed_since_snapshot: set[str] = set()

    @property
    def dim(self) -> int | None:
        for v in self._vecs.values():
            return len(v) // 4
        return None

    def __len__(self) -> int:
        return len(self._vecs)

    def __contains__(self, e: object) -> bool:
        return e in self._vecs

    def items(self) -> Iterator[tuple[str, bytes, str | None]]:
        for e, v in self._vecs.items():
            yield e, v, self._attrs.get(e)

    def vector(self, e: str) -> bytes | None:
        return self._vecs.get(e)

    def attrs(self, e: str) -> str | None:
        return self._attrs.get(e) if e in self._vecs else None

    # writes, calling the hooks as VSet does
    def _changed(self, e: str) -> None:
        if self._recording:
            self.changed_since_snapshot.add(e)
        if self.ann is not None:
            v = self._vecs.get(e)
            if v is None:
                self.ann.remove(e)
            else:
                self.ann.upsert(e, v)

    def add(self, e: str, vec: bytes, attrs: str | None = None) -> None:
        self._vecs[e] = vec
        if attrs is not None:
            self._attrs[e] = attrs
        self._changed(e)

    def set_attrs(self, e: str, attrs: str | None) -> None:
        self._attrs[e] = attrs

    def remove(self, e: str) -> None:
        if self._vecs.pop(e, None) is not None:
            self._attrs.pop(e, None)
            self._changed(e)

    def snapshot_for_index(self) -> list[tuple[str, bytes]]:
        self._recording = True
        self.changed_since_snapshot = set()
        return list(self._vecs.items())

    def attach_index(self, ann: Any) -> None:
        for e in sorted(self.changed_since_snapshot):
            v = self._vecs.get(e)
            if v is None:
                ann.remove(e)
            else:
                ann.upsert(e, v)
        self._recording = False
        self.changed_since_snapshot = set()
        self.ann = ann

"""The background build of a large vector set's index (the shell's part: threads,
clock, logging).

    builder = IndexBuilder(key, vset)          # on the loop: snapshot + exact rows
    ok = await builder.build(lambda: current_vset(key))   # thread, then attach on the loop

Until the build is attached, pass ``builder.pending`` to
:func:`crdtkv.vectors.search.vsim`, which then answers by an exact scan.  The
snapshot is taken when the builder is made, which makes the set record the
elements that change; attaching replays them into the new index.  usearch
releases the GIL while it adds a batch (measured: a spinning Python thread kept
~85% of its idle rate during a build), so the event loop keeps serving; the
default leaves one core to it.  A progress line is logged every ``log_every``
seconds: ``vset KEY: index build DONE/TOTAL elements (P%)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import xxhash

from crdtkv.vectors.ann import AnnIndex
from crdtkv.vectors.search import (
    DEFAULT_OPTIONS,
    IndexOptions,
    PendingBuild,
    SetIndex,
    VectorSetLike,
)

__all__ = ["IndexBuilder", "save_snapshot", "snapshot_path"]

SNAPSHOT_FORMAT = 1


class _Cancelled(Exception):
    """Raised between batches of a build that ``IndexBuilder.cancel`` stopped."""


def snapshot_path(index_dir: Path, key: str) -> Path:
    """Where a set's index snapshot lives: one file (plus ``.labels`` and ``.digests``)
    per key, named by a hash of the key."""
    return index_dir / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".usearch")


def save_snapshot(path: Path, key: str, index: SetIndex, pairs: list[tuple[str, bytes]]) -> None:
    """Write ``index`` (in step with ``pairs``, the set's visible vectors) to ``path``,
    with a 64-bit digest of each element's vector: a load trusts nothing else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    index.ann.save(str(tmp))
    digests = {e: xxhash.xxh3_64_intdigest(v) for e, v in pairs}
    meta = {"format": SNAPSHOT_FORMAT, "key": key, "dim": index.dim, "digests": digests}
    Path(str(tmp) + ".digests").write_bytes(msgpack.packb(meta))
    # The graph, its labels and the digests replace the old ones only once all are written.
    for suffix in (".labels", ".digests", ""):
        Path(str(tmp) + suffix).replace(str(path) + suffix)


def _load_snapshot(path: Path, key: str, pending: PendingBuild, log: logging.Logger) -> SetIndex:
    """The snapshot at ``path``, reconciled with the build's snapshot of the set:
    elements whose vector digest differs are written again, absent ones removed,
    missing ones added.  Raises on any unreadable or foreign file."""
    meta = msgpack.unpackb(Path(str(path) + ".digests").read_bytes(), strict_map_key=False)
    if meta.get("format") != SNAPSHOT_FORMAT or meta.get("key") != key:
        raise ValueError("not this key's snapshot")
    if meta.get("dim") != pending.dim:
        raise ValueError(f"dimension {meta.get('dim')} != {pending.dim}")
    digests: dict[str, int] = meta["digests"]
    ann = AnnIndex.load(str(path))
    if ann.dim != pending.dim:
        raise ValueError("the graph's dimension differs")
    pairs = pending.pairs or []
    seen = set()
    fixed = 0
    for element, vec in pairs:
        seen.add(element)
        if digests.get(element) != xxhash.xxh3_64_intdigest(vec) or element not in ann:
            ann.upsert(element, vec)
            fixed += 1
    for element in [e for e in ann.elements() if e not in seen]:
        ann.remove(element)
        fixed += 1
    log.info(
        "vset %s: index snapshot loaded, %d elements, %d brought up to date", key, len(ann), fixed
    )
    return SetIndex(ann, pending.exact)


log = logging.getLogger("crdtkv.vectors")


class IndexBuilder:
    """Builds one set's index in a thread; attach it on the thread that writes the set."""

    def __init__(
        self,
        key: str,
        vset: VectorSetLike,
        options: IndexOptions = DEFAULT_OPTIONS,
        *,
        threads: int | None = None,
        log_every: float = 5.0,
        logger: logging.Logger = log,
        snapshot: Path | None = None,
    ) -> None:
        self.key = key
        self.snapshot = snapshot  # a saved index to load (and bring up to date) first
        self.pending = PendingBuild(vset, options)
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) - 1)
        self.log_every = log_every
        self.log = logger
        self.error: BaseException | None = None
        self.seconds: float | None = None
        self._done = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def run(self) -> None:
        """The build itself (blocking); :meth:`start` runs it in a thread."""
        started = time.monotonic()
        last = started
        total = self.pending.total
        if self.snapshot is not None and self.snapshot.exists():
            try:
                self.pending.index = _load_snapshot(self.snapshot, self.key, self.pending, self.log)
                self.pending.pairs = None
                self.seconds = time.monotonic() - started
                self._done.set()
                return
            except Exception as e:  # a snapshot is only a shortcut: build instead
                self.log.warning("vset %s: index snapshot not used (%s); building", self.key, e)
        self.log.info("vset %s: index build started, %d elements", self.key, total)

        def progress(done: int, total: int) -> None:
            nonlocal last
            if self._cancel.is_set():
                raise _Cancelled
            now = time.monotonic()
            if now - last >= self.log_every:
                last = now
                self.log.info(
                    "vset %s: index build %d/%d elements (%.0f%%)",
                    self.key,
                    done,
                    total,
                    100.0 * done / max(total, 1),
                )

        try:
            self.pending.run(threads=self.threads, progress=progress)
            self.seconds = time.monotonic() - started
            self.log.info(
                "vset %s: index build done, %d elements in %.1f s", self.key, total, self.seconds
            )
        except _Cancelled as e:
            self.error = e
            self.log.info("vset %s: index build stopped (the replica stops)", self.key)
        except BaseException as e:  # the thread must not die silently
            self.error = e
            self.log.exception("vset %s: index build failed", self.key)
        finally:
            self._done.set()

    def cancel(self) -> None:
        """Stop the build after its current batch (a replica that stops must not exit
        while usearch works in this thread: the C++ runtime would abort the process)."""
        self._cancel.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"vset-index-{self.key}", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def attach(self, vset: VectorSetLike | None) -> bool:
        """On the writing thread, once done: attach to the set's current version
        (None: the key is gone).  False when nothing was attached."""
        if not self.done or self.error is not None or vset is None:
            return False
        ok = self.pending.attach(vset)
        if not ok:
            self.log.info("vset %s: dimension changed during the build; index dropped", self.key)
        return ok

    async def build(self, current: Callable[[], VectorSetLike | None]) -> bool:
        """Run the build in a thread, then attach to ``current()`` on the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.run)
        return self.attach(current())

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
import logging
import os
import threading
import time
from collections.abc import Callable

from crdtkv.vectors.search import DEFAULT_OPTIONS, IndexOptions, PendingBuild, VectorSetLike

__all__ = ["IndexBuilder"]

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
    ) -> None:
        self.key = key
        self.pending = PendingBuild(vset, options)
        self.threads = threads if threads is not None else max(1, (os.cpu_count() or 1) - 1)
        self.log_every = log_every
        self.log = logger
        self.error: BaseException | None = None
        self.seconds: float | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def run(self) -> None:
        """The build itself (blocking); :meth:`start` runs it in a thread."""
        started = time.monotonic()
        last = started
        total = self.pending.total
        self.log.info("vset %s: index build started, %d elements", self.key, total)

        def progress(done: int, total: int) -> None:
            nonlocal last
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
        except BaseException as e:  # the thread must not die silently
            self.error = e
            self.log.exception("vset %s: index build failed", self.key)
        finally:
            self._done.set()

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

"""Node.enter: a session request whose wait runs out is refused, whatever the core
decides while the wait is being torn down.

The real-process nemesis found it (docs/simulation.md, "Seed 130"): a session
read parked at a replica that lacked the session's writes was answered 200
after its 500 ms wait, without the session's own add.  Two timers end a wait
at the same moment: the shell's real-time timeout and the core's deadline
(``NodeCore._recheck`` pops the ticket and queues a refusal).  With
``asyncio.wait_for`` the timeout cancels the request's future and yields
(``_cancel_and_wait``); a refusal the core decides in that window finds the
future cancelled and is dropped, the ticket is gone, and ``core.expire``
returning None was taken as "admitted at the last moment".

The test puts the core's decision exactly in that window: the future's
``cancel`` (which only a timeout calls) moves the clock past the deadline and
ticks the core.  The clock is frozen otherwise, so the core never decides on
its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crdtkv.errors import SessionUnavailable
from crdtkv.node.aio import Node
from crdtkv.replica import Replica
from crdtkv.sessions import SessionToken
from crdtkv.storage.memory import MemoryStorage

NOW = 1_700_000_000_000
WAIT_MS = 30


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


async def test_a_wait_that_runs_out_is_refused_even_if_the_core_refuses_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    node = Node(Replica("r1", "i1"), MemoryStorage(), clock=clock)
    node.start()
    try:
        make_future = node._future

        def future(ticket: int) -> asyncio.Future[Any]:
            fut = make_future(ticket)
            cancel = fut.cancel

            def cancel_then_refuse(*args: Any, **kw: Any) -> bool:
                cancelled = cancel(*args, **kw)
                clock.now += WAIT_MS  # the core's deadline: it refuses the ticket now
                node.notify_applied()
                return cancelled

            fut.cancel = cancel_then_refuse  # type: ignore[method-assign]
            return fut

        monkeypatch.setattr(node, "_future", future)
        # The session has seen a write this replica never applied.
        token = SessionToken({"r2~elsewhere": 1})
        with pytest.raises(SessionUnavailable):
            await node.enter(token, WAIT_MS, writes=False)
        assert node.core.parked == 0
    finally:
        await node.close()


async def test_a_wait_the_core_admits_in_time_is_served() -> None:
    clock = Clock()
    node = Node(Replica("r1", "i1"), MemoryStorage(), clock=clock)
    node.start()
    try:
        node.apply({"op": "registers.set", "key": "k", "value": 1})
        token = node.core.token_now(None)
        await node.enter(token, WAIT_MS, writes=False)  # covered: no wait at all
        ahead = SessionToken({**token.vv, "r2~elsewhere": 1})
        with pytest.raises(SessionUnavailable):  # the frozen clock: refused by the timeout
            await node.enter(ahead, WAIT_MS, writes=False)
    finally:
        await node.close()

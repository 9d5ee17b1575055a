"""Admission control: at most N requests in flight, at most M waiting, each with a deadline.

A request first takes a *slot*. While fewer than ``max_concurrency`` slots are taken it gets one at
once; otherwise it waits in a FIFO queue of at most ``max_queue`` requests, and a request that
finds the queue full is refused at once (:class:`Overloaded`, which the server answers 503 with
``Retry-After``) instead of piling up. Waiting ends at the request's deadline
(:class:`DeadlineExceeded`, answered 504). A released slot goes straight to the oldest waiter, so
the queue drains in order and never starves.

>>> import asyncio
>>> async def demo():
...     gate = Admission(max_concurrency=1, max_queue=0)
...     loop = asyncio.get_running_loop()
...     async with gate.slot(loop.time() + 1):
...         try:
...             await gate.acquire(loop.time() + 1)
...         except Overloaded as e:
...             return e.code, gate.in_flight, gate.rejected
>>> asyncio.run(demo())
('unavailable', 1, 1)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from types import TracebackType

from loopml.errors import InvalidArgument, LoopmlError, Unavailable


class Overloaded(Unavailable):
    """Every slot is taken and the queue is full: come back shortly."""


class DeadlineExceeded(LoopmlError):
    """The request ran out of time (waiting for a slot or for its prediction)."""

    code = "timeout"


class Admission:
    """The gate in front of the models (one per app; all state lives on the event loop)."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        if max_concurrency < 1 or max_queue < 0:
            raise InvalidArgument("max_concurrency must be >= 1 and max_queue >= 0")
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.in_flight = 0
        self.rejected = 0
        self.timed_out = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot now."""
        return len(self._waiters)

    async def acquire(self, deadline: float) -> None:
        """Take a slot, waiting until ``deadline`` (event-loop time) at most."""
        if self.in_flight < self.max_concurrency and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            self.rejected += 1
            raise Overloaded(
                f"the server is at capacity ({self.in_flight} requests in flight, "
                f"{len(self._waiters)} queued); retry shortly",
                details={"in_flight": self.in_flight, "queued": len(self._waiters)},
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as e:
            granted = waiter.done() and not waiter.cancelled()
            if granted:  # the slot arrived as we gave up: pass it on
                self.release()
            else:
                self._forget(waiter)
            if isinstance(e, TimeoutError):
                self.timed_out += 1
                raise DeadlineExceeded("timed out waiting for a free slot") from None
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves; in_flight is unchanged
                return
        self.in_flight -= 1

    def slot(self, deadline: float) -> _Slot:
        """``async with admission.slot(deadline):`` holds a slot for the block."""
        return _Slot(self, deadline)

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)


class _Slot:
    __slots__ = ("_admission", "_deadline")

    def __init__(self, admission: Admission, deadline: float) -> None:
        self._admission = admission
        self._deadline = deadline

    async def __aenter__(self) -> None:
        await self._admission.acquire(self._deadline)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._admission.release()

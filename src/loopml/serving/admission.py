"""Admission control: at most N requests in flight, at most M waiting, each with a deadline.

A request first takes a *slot*. While fewer than ``max_concurrency`` slots are taken it gets one at
once; otherwise it waits in a FIFO queue of at most ``max_queue`` requests, and a request that
finds the queue full is refused at once (:class:`Overloaded`, which the server answers 503 with
``Retry-After``) instead of piling up. Waiting ends at the request's deadline
(:class:`DeadlineExceeded`, answered 504). A released slot goes straight to the oldest waiter, so
the queue drains in order and never starves.

A slot bounds how many requests are at work, not how much memory they take: a 7 MiB JSON body
becomes several times its size as Python objects and frames. :class:`MemoryBudget` bounds that
too: a request reserves ``DECODE_FACTOR`` times its body's size before the body is read and holds
it until its answer (and what is done after it) is finished. Requests that do not fit wait in
order, in a queue as bounded as the slots' (503 when it is full, 504 past the deadline); a
request alone is always let in, so no body under the size limit is refused for its size.

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


DECODE_FACTOR = 16
"""Memory a request body costs while it is parsed, decoded and answered, per byte of body:
JSON numbers become Python floats and lists, then a frame and the answer. Measured on
``loopml serve`` (peak RSS over idle, 16 concurrent bodies): about 7x for records and OIP
tensors, up to 19x for rows of small numbers (``[1.5,3],``)."""


def body_cost(declared: int | None, max_bytes: int) -> int:
    """What a body of ``declared`` bytes reserves (a chunked one: the limit's worth); never 0.

    >>> body_cost(1000, 8 * 2**20), body_cost(None, 100) == body_cost(10**9, 100)
    (16001, True)
    """
    size = max_bytes if declared is None else min(declared, max_bytes)
    return DECODE_FACTOR * size + 1


class MemoryBudget:
    """At most ``budget`` bytes of estimated request memory at once (see the module doc).

    >>> async def demo():
    ...     budget = MemoryBudget(100, max_queue=0)
    ...     deadline = asyncio.get_running_loop().time() + 1
    ...     await budget.acquire(80, deadline)
    ...     try:
    ...         await budget.acquire(30, deadline)
    ...     except Overloaded:
    ...         budget.release(80)
    ...         await budget.acquire(300, deadline)  # alone: always let in
    ...         return budget.reserved, budget.rejected
    >>> asyncio.run(demo())
    (300, 1)
    """

    def __init__(self, budget: int, max_queue: int) -> None:
        if budget < 1 or max_queue < 0:
            raise InvalidArgument("the memory budget must be >= 1 byte and max_queue >= 0")
        self.budget = budget
        self.max_queue = max_queue
        self.reserved = 0
        self.holders = 0
        self.rejected = 0
        self.timed_out = 0
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, cost: int) -> bool:
        return self.holders == 0 or self.reserved + cost <= self.budget

    async def acquire(self, cost: int, deadline: float) -> None:
        """Reserve ``cost`` bytes, waiting (in order) until ``deadline`` at most."""
        if not self._waiters and self._fits(cost):
            self.reserved += cost
            self.holders += 1
            return
        if len(self._waiters) >= self.max_queue:
            self.rejected += 1
            raise Overloaded(
                f"the server is at its memory budget ({self.reserved // 2**20} MiB held for "
                f"{self.holders} requests, {len(self._waiters)} queued); retry shortly",
                details={"reserved_bytes": self.reserved, "queued": len(self._waiters)},
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, cost)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException as e:
            if waiter.done() and not waiter.cancelled():  # granted as we gave up: give it back
                self.release(cost)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
                self._grant()  # those behind may fit now
            if isinstance(e, TimeoutError):
                self.timed_out += 1
                raise DeadlineExceeded("timed out waiting for memory to read the request") from None
            raise

    def hold(self, cost: int, deadline: float) -> _Held:
        """``async with budget.hold(cost, deadline):`` holds ``cost`` bytes for the block."""
        return _Held(self, cost, deadline)

    def release(self, cost: int) -> None:
        """Give ``cost`` bytes back, to the waiters in order while they fit."""
        self.reserved -= cost
        self.holders -= 1
        if self._waiters:
            self._grant()

    def _grant(self) -> None:
        while self._waiters:
            waiter, cost = self._waiters[0]
            if waiter.done():  # cancelled while queued
                self._waiters.popleft()
                continue
            if not self._fits(cost):
                return
            self._waiters.popleft()
            self.reserved += cost
            self.holders += 1
            waiter.set_result(None)


class _Held:
    __slots__ = ("_budget", "_cost", "_deadline")

    def __init__(self, budget: MemoryBudget, cost: int, deadline: float) -> None:
        self._budget, self._cost, self._deadline = budget, cost, deadline

    async def __aenter__(self) -> None:
        await self._budget.acquire(self._cost, self._deadline)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._budget.release(self._cost)


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

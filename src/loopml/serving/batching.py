"""Adaptive micro-batching: concurrent requests share one ``predict`` call, off the event loop.

A :class:`MicroBatcher` collects validated inputs (DataFrames or arrays) and sends them to the
model in batches of at most ``max_batch_size`` rows. A batch leaves when it is full, or when its
oldest request has waited ``max_wait_ms``, or at once when ``more_coming()`` says no other request
is on its way (a lone request never waits for company), and only when one of the batcher's
``threads`` is free: under load requests pile up while the model works, so batches grow with the
load by themselves.
``predict`` runs in a worker thread of a shared :class:`PredictPool`, never on the event loop.

* A request larger than ``max_batch_size`` is predicted alone, in chunks of ``max_batch_size``.
* If a batch fails, each of its requests is retried alone: a poisoned row fails only its own
  request. What the model raised is classified by :func:`model_failure`.
* The batch's output is sliced back by row counts, so every answer goes to its caller.
* A batch still running when all its callers have given up (their deadline passed) is written off:
  its thread finishes whenever it does, its result is dropped, and its slot is reused. Threads
  stuck that way are counted; past ``max_stuck`` the batcher refuses work (503) until they end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loopml.errors import InvalidArgument, LoopmlError, Unavailable

Predict = Callable[[Any], Any]

_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError)


class ModelError(LoopmlError):
    """The model crashed on an input it had accepted (answered 500)."""

    code = "model_error"


def model_failure(exc: BaseException) -> LoopmlError:
    """What a caller is told about an exception the model raised.

    Our own errors pass through; the exceptions Python code raises for bad input (ValueError,
    TypeError, KeyError, IndexError, OverflowError) are the caller's problem (400); anything else
    is a crash of the model (500).
    """
    if isinstance(exc, LoopmlError):
        return exc
    text = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, _INPUT_ERRORS):
        return InvalidArgument(f"the model refused this input: {text}")
    return ModelError(f"the model crashed (not a problem with the input): {text}")


def usable_cpus() -> int:
    """How many CPUs this process may run on (its binding, see :mod:`.placement`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class PredictPool:
    """The worker threads every batcher of an app predicts in.

    ``threads`` is how many batches each model runs at once (default: one per CPU the process
    may use, at most 4: on one CPU a second batch would only wait for the GIL); ``max_stuck``
    more threads stand by for predictions abandoned past their deadline.
    """

    def __init__(self, threads: int | None = None, max_stuck: int = 4) -> None:
        self.threads = max(1, threads if threads is not None else min(4, usable_cpus()))
        self.max_stuck = max(0, max_stuck)
        self.stuck = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.threads + self.max_stuck, thread_name_prefix="loopml-predict"
        )

    def ready(self) -> bool:
        """False while too many predictions are stuck past their deadline."""
        return self.stuck < self.max_stuck or self.max_stuck == 0

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


@dataclass(eq=False, slots=True)
class _Item:
    data: Any
    rows: int
    deadline: float
    arrival: float
    future: asyncio.Future[Any]


class MicroBatcher:
    """Batches the predictions of one model; see the module docstring."""

    def __init__(
        self, predict: Predict, pool: PredictPool, *, max_batch_size: int, max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
        more_coming: Callable[[], bool] | None = None,
    ) -> None:  # fmt: skip
        if max_batch_size < 1 or max_wait_ms < 0:
            raise InvalidArgument("max_batch_size must be >= 1 and max_wait_ms >= 0")
        self._predict = predict
        self._pool = pool
        self.max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000
        self._on_batch = on_batch
        self._more_coming = more_coming
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: deque[_Item] = deque()
        self._pending_rows = 0
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a batch now."""
        return self._pending_rows

    async def predict(self, data: Any, rows: int, deadline: float) -> Any:
        """The model's output for ``data`` (``rows`` rows), computed within a batch."""
        if not self._pool.ready():
            raise Unavailable(
                f"the model is not answering: {self._pool.stuck} predictions are still running "
                "past their deadline; retry later"
            )
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new event loop (tests): start afresh
            self._loop, self._pending, self._pending_rows, self._running = loop, deque(), 0, 0
            self._timer = None
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Item(data, rows, deadline, loop.time(), future))
        self._pending_rows += rows
        self._dispatch()
        return await future  # a caller giving up cancels the future: the batch skips it

    def _dispatch(self) -> None:
        loop = self._loop
        assert loop is not None
        while self._running < self._pool.threads:
            while self._pending and self._pending[0].future.done():
                self._pending_rows -= self._pending.popleft().rows
            if not self._pending:
                return
            due = self._pending[0].arrival + self._max_wait
            if (
                self._pending_rows < self.max_batch_size and loop.time() < due
                and (self._more_coming is None or self._more_coming())
            ):  # fmt: skip
                if self._timer is None:
                    self._timer = loop.call_at(due, self._on_timer)
                return
            batch = self._take()
            self._running += 1
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Item]:
        batch = [self._pending.popleft()]
        rows = batch[0].rows
        while self._pending:
            item = self._pending[0]
            if item.future.done():
                self._pending.popleft()
                self._pending_rows -= item.rows
                continue
            if rows + item.rows > self.max_batch_size:
                break
            batch.append(self._pending.popleft())
            rows += item.rows
        self._pending_rows -= rows
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._on_batch is not None:
                self._on_batch(sum(i.rows for i in batch))
            work = loop.run_in_executor(
                self._pool.executor, predict_batch, self._predict,
                [i.data for i in batch], [i.rows for i in batch], self.max_batch_size,
            )  # fmt: skip
            deadline = max(i.deadline for i in batch)
            done, _ = await asyncio.wait({work}, timeout=max(0.0, deadline - loop.time()))
            if not done:  # every caller has given up; the thread ends when it ends
                self._pool.stuck += 1
                work.add_done_callback(self._unstick)
                return
            results = work.result()
        except Exception as e:  # the pool is shut down, or on_batch failed
            results = [model_failure(e)] * len(batch)
        finally:
            self._running -= 1  # a written-off batch frees its slot too
            self._dispatch()
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)

    def _unstick(self, work: asyncio.Future[Any]) -> None:
        self._pool.stuck -= 1
        if not work.cancelled():
            work.exception()  # retrieved: a late failure is dropped silently, like its result


# -- in the worker thread ---------------------------------------------------------------------


def predict_batch(predict: Predict, datas: list[Any], rows: list[int], max_rows: int) -> list[Any]:
    """Each input's output, or the :class:`LoopmlError` it failed with (one per input)."""
    if len(datas) > 1:
        try:
            return split(predict(concat(datas)), rows)
        except Exception:  # noqa: S110 - retried one by one below, to find who failed
            pass
    out: list[Any] = []
    for data, n in zip(datas, rows, strict=True):
        try:
            out.append(_predict_chunked(predict, data, n, max_rows))
        except Exception as e:
            out.append(model_failure(e))
    return out


def _predict_chunked(predict: Predict, data: Any, rows: int, max_rows: int) -> Any:
    if rows <= max_rows:
        return split(predict(data), [rows])[0]
    parts = [
        split(predict(_rows(data, a, min(a + max_rows, rows))), [min(max_rows, rows - a)])[0]
        for a in range(0, rows, max_rows)
    ]
    return concat(parts)


def concat(parts: list[Any]) -> Any:
    """Stack inputs (or outputs) along their rows: DataFrames, Series, arrays or lists."""
    first = parts[0]
    if len(parts) == 1:
        return first
    if hasattr(first, "iloc"):
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    if isinstance(first, list):
        return [row for part in parts for row in part]
    import numpy as np

    return np.concatenate(parts, axis=0)


def split(output: Any, rows: list[int]) -> list[Any]:
    """Cut a batch's ``output`` into one piece per input of ``rows`` rows."""
    total = sum(rows)
    try:
        n = len(output)
    except TypeError:
        n = -1
    if n != total:
        got = "a single value" if n < 0 else f"{n} predictions"
        raise ModelError(f"the model returned {got} for {total} input rows")
    if len(rows) == 1:
        return [output]
    pieces, start = [], 0
    for count in rows:
        pieces.append(_rows(output, start, start + count))
        start += count
    return pieces


def _rows(data: Any, start: int, stop: int) -> Any:
    if hasattr(data, "iloc"):
        return data.iloc[start:stop]
    return data[start:stop]

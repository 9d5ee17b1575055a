"""The contract every :class:`~loopml.execution.executor.Executor` must pass.

Subclass :class:`ExecutorContract` and provide an ``executor`` fixture: an open executor whose
``max_in_flight`` is small (3 or 4 makes the bound visible). The fixture may be
shared between tests (a Ray cluster is slow to start); the suite never closes it.

The functions handed to ``map`` here live in this module so every worker process can import
them; a test module's own functions may not be importable from a Ray worker.

For example::

    class TestThreads(ExecutorContract):
        @pytest.fixture
        def executor(self):
            with LocalExecutor(workers=2, max_in_flight=3) as ex:
                yield ex
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from loopml.errors import InvalidArgument
from loopml.execution.executor import Executor, TaskFailed


def square(x: int) -> int:
    return x * x


def fail_at(x: int) -> int:
    """Fails for 7 (an InvalidArgument, one of ours) and 11 (a plain ValueError)."""
    if x == 7:
        raise InvalidArgument("seven is not allowed")
    if x == 11:
        raise ValueError("eleven is not allowed")
    return x


def slow_first(x: int) -> int:
    """Earlier items take longer, so a pool finishes them out of order."""
    time.sleep(max(0.0, 0.05 - 0.01 * x))
    return x


def column_sums(frame: np.ndarray) -> np.ndarray:
    return frame.sum(axis=0)


@dataclass(frozen=True)
class ConcurrencyProbe:
    """Counts tasks running at once, across threads *and* processes (a locked file)."""

    path: str
    hold_s: float = 0.02

    def _update(self, delta: int) -> None:
        with open(self.path, "r+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            now, peak = (int(v) for v in f.read().split())
            now += delta
            f.seek(0)
            f.write(f"{now} {max(peak, now)}".ljust(40))
            f.truncate()
            f.flush()
            os.fsync(f.fileno())

    def __call__(self, x: int) -> int:
        self._update(+1)
        try:
            time.sleep(self.hold_s)
            return x
        finally:
            self._update(-1)

    def counts(self) -> tuple[int, int]:
        """(running now, the most ever running at once)."""
        now, peak = (int(v) for v in Path(self.path).read_text().split())
        return now, peak

    @classmethod
    def create(cls, folder: Path) -> ConcurrencyProbe:
        path = folder / "probe"
        path.write_text("0 0")
        return cls(str(path))


class ExecutorContract:
    @pytest.fixture
    def executor(self) -> Executor:
        raise NotImplementedError("provide an executor fixture")

    def test_is_an_executor(self, executor):
        assert isinstance(executor, Executor)
        assert executor.max_in_flight >= 1

    def test_results_come_in_order(self, executor):
        assert list(executor.map(square, range(40))) == [i * i for i in range(40)]

    def test_order_holds_when_later_items_finish_first(self, executor):
        assert list(executor.map(slow_first, range(8))) == list(range(8))

    def test_no_items_no_results(self, executor):
        assert list(executor.map(square, [])) == []
        assert list(executor.map(square, iter(()))) == []

    def test_accepts_a_generator_and_arrays(self, executor):
        frames = (np.full((100, 3), i, dtype=np.float64) for i in range(5))
        sums = list(executor.map(column_sums, frames))
        assert [s.tolist() for s in sums] == [[100.0 * i] * 3 for i in range(5)]

    def test_a_failure_names_the_item_and_keeps_the_cause(self, executor):
        with pytest.raises(TaskFailed) as caught:
            list(executor.map(fail_at, range(20)))
        failure = caught.value
        assert failure.index == 7
        assert "item 7" in failure.message and "seven is not allowed" in failure.message
        assert isinstance(failure.__cause__, InvalidArgument)

    def test_a_plain_exception_is_wrapped_too(self, executor):
        with pytest.raises(TaskFailed) as caught:
            list(executor.map(fail_at, range(8, 20)))
        assert caught.value.index == 3  # the position in this map, item 11
        assert isinstance(caught.value.__cause__, ValueError)
        assert "eleven" in str(caught.value)

    def test_results_before_the_failure_are_delivered(self, executor):
        got: list[int] = []
        with pytest.raises(TaskFailed):
            for value in executor.map(fail_at, range(20)):
                got.append(value)
        assert got == list(range(7))

    def test_still_usable_after_a_failure(self, executor):
        with pytest.raises(TaskFailed):
            list(executor.map(fail_at, range(10)))
        assert list(executor.map(square, range(3))) == [0, 1, 4]

    def test_never_more_than_the_bound_running(self, executor, tmp_path):
        probe = ConcurrencyProbe.create(tmp_path)
        assert list(executor.map(probe, range(24))) == list(range(24))
        now, peak = probe.counts()
        assert now == 0
        assert 1 <= peak <= executor.max_in_flight

    def test_items_are_pulled_lazily(self, executor):
        pulled = 0

        def items() -> Iterator[int]:
            nonlocal pulled
            for i in range(50):
                pulled += 1
                yield i

        consumed = 0
        for value in executor.map(square, items()):
            assert value == consumed * consumed
            consumed += 1
            # taken from the input but not yet handed back: at most the bound
            assert pulled - consumed <= executor.max_in_flight - 1
        assert consumed == pulled == 50

    def test_stopping_early_stops_pulling(self, executor):
        pulled = 0

        def items() -> Iterator[int]:
            nonlocal pulled
            for i in range(1000):
                pulled += 1
                yield i

        results = executor.map(square, items())
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        results.close()
        assert pulled <= 3 + executor.max_in_flight
        assert list(executor.map(square, range(3))) == [0, 1, 4]

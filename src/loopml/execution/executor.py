"""The Executor protocol: map a function over items, results in order, bounded work in flight.

An executor pulls items lazily: at most ``max_in_flight`` items have been taken from the input
and not yet handed back as results, so a caller streaming a large file through ``map`` holds no
more than that many chunks at once. A failing item stops the map with :class:`TaskFailed`, which
names the item's position and chains the original error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

from loopml.errors import LoopmlError

T = TypeVar("T")
R = TypeVar("R")


class TaskFailed(LoopmlError):
    """Applying the function to one item raised; ``index`` is the item's position (from 0)."""

    code = "task_failed"

    def __init__(self, index: int, cause: BaseException) -> None:
        reason = getattr(cause, "message", None) or str(cause) or type(cause).__name__
        super().__init__(
            f"item {index} failed: {type(cause).__name__}: {reason}",
            details={"index": index, "error": type(cause).__name__},
        )
        self.index = index
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, so it can cross process boundaries
        return (TaskFailed, (self.index, self.cause))


@runtime_checkable
class Executor(Protocol):
    """Where work runs (the local process, a thread pool, a Ray cluster)."""

    @property
    def max_in_flight(self) -> int:
        """The most items taken from the input whose results were not yet yielded."""
        ...

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``fn(item)`` for each item, yielded in the items' order.

        ``fn`` and the items may be sent to other processes: module-level functions (or
        picklable callables) and picklable items work everywhere. Raises :class:`TaskFailed`
        for the first failing item in order; work still in flight is cancelled or discarded.
        """
        ...

    def close(self) -> None:
        """Release what the executor started (threads, a cluster); safe to call twice."""
        ...

    def __enter__(self) -> Executor: ...

    def __exit__(self, *exc: object) -> None: ...

"""LocalExecutor: run in this process, in the calling thread or on a small thread pool."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from loopml.errors import InvalidArgument
from loopml.execution.executor import TaskFailed

T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor:
    """In-process executor.

    ``workers=0`` (the default) runs each item in the calling thread when its result is asked
    for: nothing runs ahead, one item in flight. ``workers=N`` runs items on N threads (useful
    when the work releases the GIL: numpy, scikit-learn, I/O) with up to ``max_in_flight``
    (default ``2 * N``) items submitted ahead of the consumer.

    >>> with LocalExecutor(workers=2) as ex:
    ...     list(ex.map(str, range(3)))
    ['0', '1', '2']
    """

    def __init__(self, workers: int = 0, max_in_flight: int | None = None) -> None:
        if workers < 0:
            raise InvalidArgument(f"workers must be 0 or more, got {workers}")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidArgument(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.workers = workers
        self._max_in_flight = 1 if workers == 0 else (max_in_flight or 2 * workers)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        if self.workers == 0:
            return self._map_inline(fn, items)
        return self._map_pooled(fn, items)

    @staticmethod
    def _map_inline(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        for index, item in enumerate(items):
            try:
                result = fn(item)
            except Exception as e:
                raise TaskFailed(index, e) from e
            yield result

    def _map_pooled(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        pool = self._get_pool()
        pending: deque[tuple[int, Future[R]]] = deque()
        source = enumerate(items)
        try:
            while True:
                for index, item in source:  # top up to the bound, pulling items lazily
                    pending.append((index, pool.submit(fn, item)))
                    if len(pending) >= self._max_in_flight:
                        break
                if not pending:
                    return
                index, future = pending.popleft()
                try:
                    result = future.result()
                except Exception as e:
                    raise TaskFailed(index, e) from e
                yield result
        finally:  # failure or the consumer stopped early: drop what has not started
            for _, future in pending:
                future.cancel()

    def _get_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="loopml-exec")
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalExecutor(workers={self.workers}, max_in_flight={self._max_in_flight})"

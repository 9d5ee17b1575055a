"""RayExecutor: run tasks on a Ray cluster (a local one when no address is given).

Ray is imported when the first task is submitted, never at import time, and a missing
installation is a :class:`~loopml.errors.MissingDependency` naming the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from loopml.errors import InvalidArgument, MissingDependency, Unavailable
from loopml.execution.executor import TaskFailed

T = TypeVar("T")
R = TypeVar("R")


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    """The Ray task: ``fn`` travels once per map (``ray.put``), each item with its task."""
    return fn(item)


class RayExecutor:
    """Executor over Ray tasks.

    ``address=None`` starts a private local cluster with ``num_cpus`` CPUs (default: all) on
    first use, and :meth:`close` shuts it down. With an address (``ray://host:10001``,
    ``host:6379`` or ``auto``) it connects to that cluster; if this process is already connected
    to Ray, that connection is used as it is. Either way :meth:`close` shuts down only a
    cluster or connection this executor started.

    At most ``max_in_flight`` tasks (default: twice the cluster's CPUs) are submitted and not
    yet yielded, so the driver and the object store hold a bounded number of items.
    """

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None,
        max_in_flight: int | None = None,
    ) -> None:  # fmt: skip
        if num_cpus is not None and num_cpus < 1:
            raise InvalidArgument(f"num_cpus must be at least 1, got {num_cpus}")
        if num_cpus is not None and address is not None:
            raise InvalidArgument("num_cpus applies to a local cluster; omit it with an address")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidArgument(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.address = address
        self.num_cpus = num_cpus
        self._wanted_in_flight = max_in_flight
        self._ray: Any = None
        self._remote: Any = None
        self._started = False
        self._lock = threading.Lock()

    @property
    def max_in_flight(self) -> int:
        if self._wanted_in_flight is not None:
            return self._wanted_in_flight
        if self.num_cpus is not None:
            return 2 * self.num_cpus
        if self._ray is not None:
            return max(1, 2 * int(self._ray.cluster_resources().get("CPU", 1)))
        return 2 * (os.cpu_count() or 1)

    def _connect(self) -> Any:
        with self._lock:
            if self._ray is not None and self._ray.is_initialized():
                return self._ray
            ray = _import_ray()
            if not ray.is_initialized():
                # Usage statistics are Ray's, not the user's choice to send; keep them off
                # unless the user set the variable themselves.
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                try:
                    ray.init(
                        address=self.address or "local", num_cpus=self.num_cpus,
                        include_dashboard=False, log_to_driver=False,
                        logging_level=logging.WARNING,
                    )  # fmt: skip
                except (ConnectionError, RuntimeError, ValueError) as e:
                    where = self.address or "a local cluster"
                    raise Unavailable(f"could not start or reach Ray at {where}: {e}") from e
                self._started = True
            self._ray = ray
            self._remote = ray.remote(_apply)
            return ray

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        ray = self._connect()
        return self._map(ray, fn, items)

    def _map(self, ray: Any, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        bound = self.max_in_flight
        fn_ref = ray.put(fn)
        pending: deque[tuple[int, Any]] = deque()
        source = enumerate(items)
        try:
            while True:
                for index, item in source:
                    pending.append((index, self._remote.remote(fn_ref, item)))
                    if len(pending) >= bound:
                        break
                if not pending:
                    return
                index, ref = pending.popleft()
                yield self._get(ray, index, ref)
        finally:
            for _, ref in pending:
                _cancel(ray, ref)

    @staticmethod
    def _get(ray: Any, index: int, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, BaseException) else e
            raise TaskFailed(index, cause) from cause
        except ray.exceptions.RayError as e:  # a worker died, an object was lost, …
            raise TaskFailed(index, e) from e

    def close(self) -> None:
        with self._lock:
            ray, started = self._ray, self._started
            self._ray, self._remote, self._started = None, None, False
        if ray is not None and started and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.address or f"local(num_cpus={self.num_cpus})"
        return f"RayExecutor({where}, max_in_flight={self.max_in_flight})"


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise MissingDependency(
            "the Ray executor needs 'ray', which is not installed; install it with: "
            "pip install 'loopml[ray]'"
        ) from e
    return ray


def _cancel(ray: Any, ref: Any) -> None:
    with contextlib.suppress(Exception):  # already finished, or the cluster is gone
        ray.cancel(ref)

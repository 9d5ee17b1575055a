"""SEAM: where work runs. :class:`Executor` maps a function over items, in order, with a
bounded number in flight; :class:`LocalExecutor` runs in this process, :class:`RayExecutor` on
a Ray cluster (the ``ray`` extra).

>>> from loopml.execution import LocalExecutor
>>> with LocalExecutor() as ex:
...     list(ex.map(abs, [-1, 2, -3]))
[1, 2, 3]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.execution.executor import Executor, TaskFailed
from loopml.execution.local import LocalExecutor

if TYPE_CHECKING:
    from loopml.execution.ray_executor import RayExecutor

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "TaskFailed", "make_executor"]


def __getattr__(name: str) -> Any:
    if name == "RayExecutor":  # keeps ``import loopml.execution`` free of Ray
        from loopml.execution.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)


def make_executor(
    kind: str, *, address: str | None = None, workers: int = 0, num_cpus: int | None = None,
    max_in_flight: int | None = None,
) -> Executor:  # fmt: skip
    """An executor by name: ``local`` (``workers`` threads, 0 = the calling thread) or ``ray``."""
    from loopml.errors import InvalidArgument

    if kind == "local":
        return LocalExecutor(workers=workers, max_in_flight=max_in_flight)
    if kind == "ray":
        from loopml.execution.ray_executor import RayExecutor

        return RayExecutor(address=address, num_cpus=num_cpus, max_in_flight=max_in_flight)
    raise InvalidArgument(f"unknown executor {kind!r}; choose 'local' or 'ray'")

"""Frozen domain records of experiment tracking.

Plain frozen dataclasses (with slots) rather than pydantic models: runs and metrics are created in
hot loops and dataclasses cost a fraction of the construction time.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, overload

from loopml.artifacts.paths import canonical_relpath

T = TypeVar("T")


class RunStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


class Lifecycle(enum.StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType(enum.StrEnum):
    ACTIVE_ONLY = "active_only"
    DELETED_ONLY = "deleted_only"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    value: float
    timestamp: int  # milliseconds since the epoch
    step: int = 0


class MetricColumns(Sequence[Metric]):
    """A batch of metrics held as four equal-length columns; reads as a sequence of :class:`Metric`.

    What the REST API hands the store for a columnar batch: item ``i`` is ``keys[i]``,
    ``values[i]``, ``timestamps[i]``, ``steps[i]``. A store that knows this type writes the
    columns as they are (no record per value); any other code just iterates.
    """

    __slots__ = ("keys", "steps", "timestamps", "values")

    def __init__(
        self,
        keys: list[str],
        values: list[float],
        timestamps: list[int],
        steps: list[int] | None = None,
    ) -> None:
        steps = [0] * len(keys) if steps is None else steps
        if not len(keys) == len(values) == len(timestamps) == len(steps):
            raise ValueError(
                "metric columns must have the same length, got "
                f"{len(keys)}, {len(values)}, {len(timestamps)} and {len(steps)}"
            )
        self.keys, self.values, self.timestamps, self.steps = keys, values, timestamps, steps

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Metric: ...
    @overload
    def __getitem__(self, index: slice) -> MetricColumns: ...
    def __getitem__(self, index: int | slice) -> Metric | MetricColumns:
        if isinstance(index, slice):
            return MetricColumns(self.keys[index], self.values[index], self.timestamps[index],
                                 self.steps[index])  # fmt: skip
        return Metric(self.keys[index], self.values[index], self.timestamps[index],
                      self.steps[index])  # fmt: skip

    def __repr__(self) -> str:
        return f"MetricColumns({len(self)} metrics, keys {sorted(set(self.keys))[:5]!r})"


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class RunInput:
    """A dataset a run consumed or produced: name, content digest, and its role (train, test …)."""

    name: str
    digest: str
    role: str = "train"
    source: str = ""


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    project_id: str
    artifact_path: str  # relative to the artifact root
    lifecycle_stage: Lifecycle
    creation_time: int
    last_update_time: int
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    experiment_id: str
    run_name: str
    status: RunStatus
    start_time: int
    end_time: int | None
    user: str
    lifecycle_stage: Lifecycle
    artifact_path: str  # relative to the artifact root: "<experiment_id>/<run_id>/artifacts"
    parent_run_id: str | None = None
    source: str = ""
    git_commit: str | None = None
    git_dirty: bool | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: int | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    inputs: tuple[RunInput, ...] = ()

    @property
    def wall_seconds(self) -> float | None:
        if self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1000.0


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """An artifact a run published, with the digest recorded at upload.

    ``path`` goes through the artifact path choke point whenever a record is built (written by a
    client, read back from a store), so no record with ``..``, an absolute, drive or UNC path or
    a NUL in it exists to be used to open a file.
    """

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        canonical_relpath(self.path)


class Page(list[T]):
    """One page of results: a list (iterate, index, ``len``), as MLflow's ``PagedList``, with
    the token of the next page (None on the last).

    >>> page = Page(["a", "b"], "t2")
    >>> [x for x in page], page[0], len(page), page.next_page_token
    (['a', 'b'], 'a', 2, 't2')
    """

    __slots__ = ("next_page_token",)

    def __init__(self, items: Iterable[T] = (), next_page_token: str | None = None) -> None:
        super().__init__(items)
        self.next_page_token = next_page_token

    @property
    def items(self) -> list[T]:
        """The page itself (a page was once a record holding its items in a list)."""
        return self

    def __repr__(self) -> str:
        return f"Page({list.__repr__(self)}, next_page_token={self.next_page_token!r})"

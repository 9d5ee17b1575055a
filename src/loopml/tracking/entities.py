"""Frozen domain records of experiment tracking.

Plain frozen dataclasses (with slots) rather than pydantic models: runs and metrics are created in
hot loops and dataclasses cost a fraction of the construction time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

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
    """An artifact a run published, with the digest recorded at upload."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str | None = None

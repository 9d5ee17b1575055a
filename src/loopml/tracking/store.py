"""What a metadata backend must offer experiment tracking.

Implementations: ``loopml.backends.sql.tracking.SqlTrackingStore`` (SQLite, PostgreSQL). Every one
passes ``loopml.testing.tracking_contract``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from loopml.tracking.entities import (
    ArtifactRecord,
    Experiment,
    Metric,
    Page,
    Param,
    Run,
    RunInput,
    RunStatus,
    RunTag,
    ViewType,
)


class TrackingStore(Protocol):
    # experiments -------------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        actor: str,
    ) -> Experiment: ...

    def get_experiment(self, experiment_id: str) -> Experiment: ...

    def get_experiment_by_name(self, name: str) -> Experiment | None: ...

    def list_experiments(
        self, *, view: ViewType = ViewType.ACTIVE_ONLY, project: str | None = None
    ) -> list[Experiment]: ...

    def update_experiment(
        self,
        experiment_id: str,
        *,
        actor: str,
        name: str | None = None,
        description: str | None = None,
    ) -> Experiment: ...

    def set_experiment_tag(
        self, experiment_id: str, key: str, value: str, *, actor: str
    ) -> None: ...

    def delete_experiment(self, experiment_id: str, *, actor: str) -> None: ...

    def restore_experiment(self, experiment_id: str, *, actor: str) -> None: ...

    # runs ---------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None,
        user: str,
        start_time: int,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        source: str = "",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        actor: str,
    ) -> Run: ...

    def get_run(self, run_id: str) -> Run: ...

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time: int | None = None,
        cpu_seconds: float | None = None,
        peak_memory_bytes: int | None = None,
        metrics: Sequence[Metric] = (),
        actor: str,
    ) -> None:
        """Change status (and end time, usage); ``metrics`` still buffered land in the same
        transaction, so a FINISHED run never lacks a value logged before it ended."""
        ...

    def delete_run(self, run_id: str, *, actor: str) -> None: ...

    def restore_run(self, run_id: str, *, actor: str) -> None: ...

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        actor: str,
        idempotency_key: str | None = None,
    ) -> None:
        """All or nothing. Params are write-once: a different value raises Conflict.

        A batch carrying an ``idempotency_key`` already applied is not applied again (a client
        retrying after a lost response must not write twice)."""
        ...

    def log_metrics_multi(
        self, batches: Mapping[str, Sequence[Metric]], *, idempotency_key: str | None = None
    ) -> None:
        """Write buffered metrics of several runs in one transaction (the background flusher)."""
        ...

    def delete_tag(self, run_id: str, key: str, *, actor: str) -> None: ...

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput], *, actor: str) -> None: ...

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]: ...

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
    ) -> Page[Run]: ...

    # artifacts ----------------------------------------------------------------------------
    def record_artifacts(self, run_id: str, records: Sequence[ArtifactRecord]) -> None: ...

    def list_artifact_records(self, run_id: str) -> list[ArtifactRecord]: ...

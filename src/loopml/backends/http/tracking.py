"""HttpTrackingStore: the TrackingStore protocol over ``/api/v1``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from loopml.backends.http import decode
from loopml.backends.http.transport import HttpTransport
from loopml.errors import NotFound
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


def _q(value: str) -> str:
    return quote(value, safe="")


class HttpTrackingStore:
    """Every call is one request; batches carry an idempotency key, so retries never double-write.

    ``actor`` arguments are ignored: the server records the authenticated caller.
    """

    def __init__(self, transport: HttpTransport) -> None:
        self._http = transport

    # experiments ---------------------------------------------------------------------------
    def create_experiment(
        self, name: str, *, project: str | None = None, description: str = "",
        tags: dict[str, str] | None = None, actor: str,
    ) -> Experiment:  # fmt: skip
        body = {"name": name, "project": project, "description": description, "tags": tags or {}}
        return decode.experiment(self._http.request("POST", "/api/v1/experiments", json=body))

    def get_experiment(self, experiment_id: str) -> Experiment:
        data = self._http.request("GET", f"/api/v1/experiments/{_q(experiment_id)}")
        return decode.experiment(data)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            data = self._http.request("GET", f"/api/v1/experiments/by-name/{_q(name)}")
        except NotFound:
            return None
        return decode.experiment(data)

    def list_experiments(
        self, *, view: ViewType = ViewType.ACTIVE_ONLY, project: str | None = None
    ) -> list[Experiment]:
        params = {"view": ViewType(view).value} | ({"project": project} if project else {})
        data = self._http.request("GET", "/api/v1/experiments", params=params)
        return [decode.experiment(d) for d in data]

    def update_experiment(
        self, experiment_id: str, *, actor: str, name: str | None = None,
        description: str | None = None,
    ) -> Experiment:  # fmt: skip
        body = {"name": name, "description": description}
        path = f"/api/v1/experiments/{_q(experiment_id)}"
        return decode.experiment(self._http.request("PATCH", path, json=body))

    def set_experiment_tag(self, experiment_id: str, key: str, value: str, *, actor: str) -> None:
        path = f"/api/v1/experiments/{_q(experiment_id)}/tags"
        self._http.request("POST", path, json={"key": key, "value": value})

    def delete_experiment(self, experiment_id: str, *, actor: str) -> None:
        self._http.request("DELETE", f"/api/v1/experiments/{_q(experiment_id)}")

    def restore_experiment(self, experiment_id: str, *, actor: str) -> None:
        self._http.request("POST", f"/api/v1/experiments/{_q(experiment_id)}/restore")

    # runs ----------------------------------------------------------------------------------
    def create_run(
        self, experiment_id: str, *, run_name: str | None, user: str, start_time: int,
        tags: dict[str, str] | None = None, parent_run_id: str | None = None, source: str = "",
        git_commit: str | None = None, git_dirty: bool | None = None, actor: str,
    ) -> Run:  # fmt: skip
        body = {
            "experiment_id": experiment_id, "run_name": run_name, "user": user,
            "start_time": start_time, "tags": tags or {}, "parent_run_id": parent_run_id,
            "source": source, "git_commit": git_commit, "git_dirty": git_dirty,
        }  # fmt: skip
        return decode.run(self._http.request("POST", "/api/v1/runs", json=body))

    def get_run(self, run_id: str) -> Run:
        return decode.run(self._http.request("GET", f"/api/v1/runs/{_q(run_id)}"))

    def update_run(
        self, run_id: str, *, status: RunStatus, end_time: int | None = None,
        cpu_seconds: float | None = None, peak_memory_bytes: int | None = None,
        metrics: Sequence[Metric] = (), actor: str,
    ) -> None:  # fmt: skip
        body = {
            "status": RunStatus(status).value, "end_time": end_time, "cpu_seconds": cpu_seconds,
            "peak_memory_bytes": peak_memory_bytes,
            "metrics": decode.metric_columns(metrics),
        }  # fmt: skip
        # Safe to repeat only without metrics; with them, a key makes the retry a no-op.
        headers = {"Idempotency-Key": uuid.uuid4().hex} if metrics else {}
        self._http.request("PATCH", f"/api/v1/runs/{_q(run_id)}", json=body, headers=headers)

    def delete_run(self, run_id: str, *, actor: str) -> None:
        self._http.request("DELETE", f"/api/v1/runs/{_q(run_id)}")

    def restore_run(self, run_id: str, *, actor: str) -> None:
        self._http.request("POST", f"/api/v1/runs/{_q(run_id)}/restore")

    def log_batch(
        self, run_id: str, *, metrics: Sequence[Metric] = (), params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (), actor: str, idempotency_key: str | None = None,
    ) -> None:  # fmt: skip
        body = {
            "metrics": decode.metric_columns(metrics),
            "params": [{"key": p.key, "value": p.value} for p in params],
            "tags": [{"key": t.key, "value": t.value} for t in tags],
        }
        key = idempotency_key or uuid.uuid4().hex
        self._http.request(
            "POST", f"/api/v1/runs/{_q(run_id)}/batch", json=body,
            headers={"Idempotency-Key": key},
        )  # fmt: skip

    def log_metrics_multi(
        self, batches: Mapping[str, Sequence[Metric]], *, idempotency_key: str | None = None
    ) -> None:
        if not batches:
            return
        body = {"batches": {r: decode.metric_columns(ms) for r, ms in batches.items()}}
        key = idempotency_key or uuid.uuid4().hex
        self._http.request(
            "POST", "/api/v1/metrics/batch", json=body, headers={"Idempotency-Key": key}
        )

    def delete_tag(self, run_id: str, key: str, *, actor: str) -> None:
        self._http.request("DELETE", f"/api/v1/runs/{_q(run_id)}/tags/{_q(key)}")

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput], *, actor: str) -> None:
        body = {"inputs": [{"name": i.name, "digest": i.digest, "role": i.role,
                            "source": i.source} for i in inputs]}  # fmt: skip
        if inputs:
            self._http.request("POST", f"/api/v1/runs/{_q(run_id)}/inputs", json=body)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        data = self._http.request("GET", f"/api/v1/runs/{_q(run_id)}/metrics/{_q(key)}")
        return [decode.metric(d) for d in data]

    def search_runs(
        self, experiment_ids: Sequence[str], *, filter_string: str | None = None,
        order_by: Sequence[str] | None = None, max_results: int = 1000,
        page_token: str | None = None, view: ViewType = ViewType.ACTIVE_ONLY,
    ) -> Page[Run]:  # fmt: skip
        body = {
            "experiment_ids": list(experiment_ids), "filter": filter_string,
            "order_by": list(order_by) if order_by is not None else None,
            "max_results": max_results, "page_token": page_token, "view": ViewType(view).value,
        }  # fmt: skip
        data = self._http.request("POST", "/api/v1/runs/search", json=body)
        return Page([decode.run(r) for r in data["runs"]], data["next_page_token"])

    # artifacts -----------------------------------------------------------------------------
    def record_artifacts(self, run_id: str, records: Sequence[ArtifactRecord]) -> None:
        body = {"records": [{"path": r.path, "size": r.size, "sha256": r.sha256}
                            for r in records]}  # fmt: skip
        if records:
            self._http.request("POST", f"/api/v1/runs/{_q(run_id)}/artifact-records", json=body)

    def list_artifact_records(self, run_id: str) -> list[ArtifactRecord]:
        data = self._http.request("GET", f"/api/v1/runs/{_q(run_id)}/artifact-records")
        return [ArtifactRecord(**d) for d in data]

"""REST routes of experiment tracking: experiments, runs, logging, search."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from loopml.errors import InvalidArgument
from loopml.server.access import caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import (
    ERROR_RESPONSES,
    ArtifactRecordsIn,
    BatchIn,
    ExperimentCreate,
    ExperimentUpdate,
    InputsIn,
    MetricOut,
    MultiMetricsIn,
    Ok,
    RunCreate,
    RunOut,
    RunPage,
    RunUpdate,
    SearchIn,
    TagIn,
    View,
    metrics_of,
)
from loopml.server.scopes import experiment_scope, index_of, run_scope, stack_of
from loopml.tracking.entities import (
    ArtifactRecord,
    Experiment,
    Param,
    RunInput,
    RunStatus,
    RunTag,
    ViewType,
)

router = APIRouter(
    prefix="/api/v1", tags=["tracking"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


def _view(value: str) -> ViewType:
    try:
        return ViewType(value)
    except ValueError:
        raise InvalidArgument(
            f"invalid view {value!r}: use active_only, deleted_only or all"
        ) from None


# experiments ---------------------------------------------------------------------------------
@router.get("/experiments", **protected("experiment.read"))
def list_experiments(
    request: Request,
    view: View = "active_only",
    project: Annotated[str | None, Query(max_length=128)] = None,
) -> list[Experiment]:
    caller = caller_of(request)
    items = stack_of(request).tracking.list_experiments(view=_view(view), project=project)
    return [e for e in items if caller.may("experiment.read", e.project_id)]


@router.post("/experiments", status_code=201, **protected("experiment.write"))
def create_experiment(request: Request, body: ExperimentCreate) -> Experiment:
    stack, caller = stack_of(request), caller_of(request)
    project = body.project or "default"
    caller.require("experiment.write", index_of(request).of_project(project))
    return stack.tracking.create_experiment(
        body.name, project=project, description=body.description, tags=body.tags,
        actor=caller.name,
    )  # fmt: skip


@router.get("/experiments/by-name/{name}", **protected("experiment.read"))
def get_experiment_by_name(request: Request, name: str) -> Experiment:
    exp = stack_of(request).tracking.get_experiment_by_name(name)
    if exp is None or not caller_of(request).may("experiment.read", exp.project_id):
        from loopml.errors import NotFound

        raise NotFound(f"experiment {name!r} not found")
    return exp


@router.get("/experiments/{experiment_id}", **protected("experiment.read", experiment_scope))
def get_experiment(request: Request, experiment_id: str) -> Experiment:
    return stack_of(request).tracking.get_experiment(experiment_id)


@router.patch("/experiments/{experiment_id}", **protected("experiment.write", experiment_scope))
def update_experiment(request: Request, experiment_id: str, body: ExperimentUpdate) -> Experiment:
    return stack_of(request).tracking.update_experiment(
        experiment_id, name=body.name, description=body.description,
        actor=caller_of(request).name,
    )  # fmt: skip


@router.post("/experiments/{experiment_id}/tags", **protected("experiment.write", experiment_scope))
def set_experiment_tag(request: Request, experiment_id: str, body: TagIn) -> Ok:
    stack_of(request).tracking.set_experiment_tag(
        experiment_id, body.key, body.value, actor=caller_of(request).name
    )
    return Ok()


@router.delete("/experiments/{experiment_id}", **protected("experiment.delete", experiment_scope))
def delete_experiment(request: Request, experiment_id: str) -> Ok:
    stack_of(request).tracking.delete_experiment(experiment_id, actor=caller_of(request).name)
    return Ok()


@router.post(
    "/experiments/{experiment_id}/restore", **protected("experiment.delete", experiment_scope)
)
def restore_experiment(request: Request, experiment_id: str) -> Ok:
    stack_of(request).tracking.restore_experiment(experiment_id, actor=caller_of(request).name)
    return Ok()


# runs ----------------------------------------------------------------------------------------
@router.post("/runs", status_code=201, **protected("run.write"))
def create_run(request: Request, body: RunCreate) -> RunOut:
    stack, caller = stack_of(request), caller_of(request)
    caller.require("run.write", index_of(request).of_experiment(body.experiment_id))
    run = stack.tracking.create_run(
        body.experiment_id,
        run_name=body.run_name,
        user=body.user or caller.name,
        start_time=body.start_time if body.start_time is not None else int(time.time() * 1000),
        tags=body.tags,
        parent_run_id=body.parent_run_id,
        source=body.source,
        git_commit=body.git_commit,
        git_dirty=body.git_dirty,
        actor=caller.name,
    )
    return RunOut.of(run)


@router.get("/runs/{run_id}", **protected("run.read", run_scope))
def get_run(request: Request, run_id: str) -> RunOut:
    return RunOut.of(stack_of(request).tracking.get_run(run_id))


@router.patch("/runs/{run_id}", **protected("run.write", run_scope))
def update_run(request: Request, run_id: str, body: RunUpdate) -> Ok:
    status = RunStatus(body.status)
    stack_of(request).tracking.update_run(
        run_id,
        status=status,
        end_time=body.end_time,
        cpu_seconds=body.cpu_seconds,
        peak_memory_bytes=body.peak_memory_bytes,
        metrics=metrics_of(body.metrics),
        actor=caller_of(request).name,
    )
    return Ok()


@router.delete("/runs/{run_id}", **protected("run.delete", run_scope))
def delete_run(request: Request, run_id: str) -> Ok:
    stack_of(request).tracking.delete_run(run_id, actor=caller_of(request).name)
    return Ok()


@router.post("/runs/{run_id}/restore", **protected("run.delete", run_scope))
def restore_run(request: Request, run_id: str) -> Ok:
    stack_of(request).tracking.restore_run(run_id, actor=caller_of(request).name)
    return Ok()


@router.post("/runs/{run_id}/batch", **protected("run.write", run_scope))
def log_batch(
    request: Request, run_id: str, body: BatchIn, idempotency_key: IdempotencyKey = None
) -> Ok:
    """Metrics, params and tags at once. A repeated ``Idempotency-Key`` is applied once.

    (Served by :class:`loopml.server.batchlane.BatchLane` in the app: the same checks, less
    framework; this declaration keeps the route in the OpenAPI spec and the route table.)"""
    write_batch(request, run_id, body, idempotency_key)
    return Ok()


def write_batch(request: Request, run_id: str, body: BatchIn, idempotency_key: str | None) -> None:
    """The batch write; the caller is already authorized for ``run.write`` on the run."""
    stack_of(request).tracking.log_batch(
        run_id,
        metrics=metrics_of(body.metrics),
        params=[Param(p.key, p.value) for p in body.params],
        tags=[RunTag(t.key, t.value) for t in body.tags],
        actor=caller_of(request).name,
        idempotency_key=idempotency_key,
    )


@router.post("/metrics/batch", **protected("run.write"))
def log_metrics_multi(
    request: Request, body: MultiMetricsIn, idempotency_key: IdempotencyKey = None
) -> Ok:
    """Buffered metrics of several runs in one transaction (what the client's flusher sends)."""
    caller, index = caller_of(request), index_of(request)
    for run_id in body.batches:
        caller.require("run.write", index.of_run(run_id))
    stack_of(request).tracking.log_metrics_multi(
        {run_id: metrics_of(items) for run_id, items in body.batches.items()},
        idempotency_key=idempotency_key,
    )
    return Ok()


@router.delete("/runs/{run_id}/tags/{key}", **protected("run.write", run_scope))
def delete_tag(request: Request, run_id: str, key: str) -> Ok:
    stack_of(request).tracking.delete_tag(run_id, key, actor=caller_of(request).name)
    return Ok()


@router.post("/runs/{run_id}/inputs", **protected("run.write", run_scope))
def log_inputs(request: Request, run_id: str, body: InputsIn) -> Ok:
    inputs = [RunInput(i.name, i.digest, i.role, i.source) for i in body.inputs]
    stack_of(request).tracking.log_inputs(run_id, inputs, actor=caller_of(request).name)
    return Ok()


@router.get("/runs/{run_id}/metrics/{key}", **protected("run.read", run_scope))
def metric_history(request: Request, run_id: str, key: str) -> list[MetricOut]:
    history = stack_of(request).tracking.get_metric_history(run_id, key)
    return [MetricOut.model_validate(m) for m in history]


@router.post("/runs/{run_id}/artifact-records", **protected("artifact.write", run_scope))
def record_artifacts(request: Request, run_id: str, body: ArtifactRecordsIn) -> Ok:
    records = [ArtifactRecord(r.path, r.size, r.sha256) for r in body.records]
    stack_of(request).tracking.record_artifacts(run_id, records)
    return Ok()


@router.get("/runs/{run_id}/artifact-records", **protected("artifact.read", run_scope))
def list_artifact_records(request: Request, run_id: str) -> list[ArtifactRecord]:
    return stack_of(request).tracking.list_artifact_records(run_id)


@router.post("/runs/search", **protected("run.read"))
def search_runs(request: Request, body: SearchIn) -> RunPage:
    caller, index = caller_of(request), index_of(request)
    for experiment_id in body.experiment_ids:
        caller.require("run.read", index.of_experiment(experiment_id))
    page = stack_of(request).tracking.search_runs(
        body.experiment_ids, filter_string=body.filter, order_by=body.order_by,
        max_results=body.max_results, page_token=body.page_token, view=_view(body.view),
    )  # fmt: skip
    return RunPage(runs=[RunOut.of(r) for r in page.items], next_page_token=page.next_page_token)

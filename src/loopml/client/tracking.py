"""The Client's tracking calls: experiments, runs, logging, search and run artifacts.

:class:`~loopml.client.Client` extends :class:`TrackingCalls` (every MLflow tracking verb is
one of these, and the metric hot path stays a single call); the other stages' calls live in
their own modules beside this one.

>>> import tempfile, loopml
>>> client = loopml.Client(loopml.Settings(home=tempfile.mkdtemp()))
>>> run = client.create_run(client.create_experiment("demo").experiment_id)
>>> client.log_metric(run.run_id, "acc", 0.91)
>>> client.set_terminated(run.run_id)
>>> client.get_run(run.run_id).metrics
{'acc': 0.91}
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.tracking import validation
from loopml.tracking.buffer import MetricBuffer
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
from loopml.tracking.runinfo import RunUsage, source_info

if TYPE_CHECKING:
    from loopml.stack import Stack
    from loopml.tracking.artifacts import RunArtifacts


def _now_ms() -> int:
    return int(time.time() * 1000)


class TrackingCalls:
    """Experiments, runs, params, tags, buffered metrics, search and artifacts of one stack.

    The actor of every change is the caller the settings name (``settings.resolved_user()``);
    over HTTP the server takes it from the caller's token instead.
    """

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self._tracking = self.stack.tracking
        self.actor = self.settings.resolved_user()
        self._buffer = MetricBuffer(
            self._tracking.log_metrics_multi,
            max_items=self.settings.metric_buffer_size,
            flush_interval=self.settings.metric_flush_interval,
        )
        self._artifacts: RunArtifacts | None = None

    # experiments ---------------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> Experiment:
        return self._tracking.create_experiment(
            name, project=project, description=description, tags=dict(tags or {}), actor=self.actor
        )

    def get_experiment(self, experiment_id: str) -> Experiment:
        return self._tracking.get_experiment(str(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        return self._tracking.get_experiment_by_name(name)

    def list_experiments(
        self, *, view: ViewType | str = ViewType.ACTIVE_ONLY, project: str | None = None
    ) -> list[Experiment]:
        return self._tracking.list_experiments(view=ViewType(view), project=project)

    def update_experiment(
        self, experiment_id: str, *, name: str | None = None, description: str | None = None
    ) -> Experiment:
        return self._tracking.update_experiment(
            str(experiment_id), name=name, description=description, actor=self.actor
        )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self._tracking.set_experiment_tag(str(experiment_id), key, value, actor=self.actor)

    def delete_experiment(self, experiment_id: str) -> None:
        self._tracking.delete_experiment(str(experiment_id), actor=self.actor)

    def restore_experiment(self, experiment_id: str) -> None:
        self._tracking.restore_experiment(str(experiment_id), actor=self.actor)

    # runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str = "0",
        *,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        start_time: int | None = None,
    ) -> Run:
        """Start a run, recording user, source file and git commit (and dirty flag)."""
        src = source_info()
        return self._tracking.create_run(
            str(experiment_id),
            run_name=run_name,
            user=self.actor,
            start_time=start_time if start_time is not None else _now_ms(),
            tags=dict(tags or {}),
            parent_run_id=parent_run_id,
            source=src.source,
            git_commit=src.git_commit,
            git_dirty=src.git_dirty,
            actor=self.actor,
        )

    def get_run(self, run_id: str) -> Run:
        return self._tracking.get_run(run_id)

    def set_terminated(
        self,
        run_id: str,
        status: RunStatus | str = RunStatus.FINISHED,
        *,
        end_time: int | None = None,
        usage: RunUsage | None = None,
    ) -> None:
        """End a run: its buffered metrics and its status, time and usage in one transaction."""
        final = RunStatus(status.upper() if isinstance(status, str) else status)
        self._buffer.drain_run(
            run_id,
            lambda pending: self._tracking.update_run(
                run_id,
                status=final,
                end_time=end_time if end_time is not None else _now_ms(),
                cpu_seconds=usage.cpu_seconds if usage else None,
                peak_memory_bytes=usage.peak_memory_bytes if usage else None,
                metrics=pending,
                actor=self.actor,
            ),
        )

    def resume_run(self, run_id: str) -> Run:
        """Mark an ended run RUNNING again, to log more to it."""
        run = self.get_run(run_id)
        if run.status is not RunStatus.RUNNING:
            self._tracking.update_run(run_id, status=RunStatus.RUNNING, actor=self.actor)
            run = self.get_run(run_id)
        return run

    def delete_run(self, run_id: str) -> None:
        self._tracking.delete_run(run_id, actor=self.actor)

    def restore_run(self, run_id: str) -> None:
        self._tracking.restore_run(run_id, actor=self.actor)

    # logging -------------------------------------------------------------------------------
    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        step: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Buffered: returns at once; the value is written within ``metric_flush_interval``."""
        validation.validate_key(key)
        metric = Metric(
            key,
            value if type(value) is float else validation.metric_value(value, key),
            int(time.time() * 1000)
            if timestamp is None
            else validation.metric_timestamp(timestamp, key),
            0 if step is None else validation.metric_step(step, key),
        )
        self._buffer.add(run_id, metric)

    def log_metrics(
        self, run_id: str, metrics: Mapping[str, float], step: int | None = None
    ) -> None:
        ts = _now_ms()
        items = [
            Metric(validation.validate_key(k), validation.metric_value(v, k), ts,
                   validation.metric_step(step, k))
            for k, v in metrics.items()
        ]  # fmt: skip
        self._buffer.add_many(run_id, items)

    def log_param(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, params=[Param(key, validation.param_value(key, value))])

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        self.log_batch(
            run_id, params=[Param(k, validation.param_value(k, v)) for k, v in params.items()]
        )

    def set_tag(self, run_id: str, key: str, value: Any) -> None:
        self.log_batch(run_id, tags=[RunTag(key, validation.tag_value(key, value))])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(
            run_id, tags=[RunTag(k, validation.tag_value(k, v)) for k, v in tags.items()]
        )

    def delete_tag(self, run_id: str, key: str) -> None:
        self._tracking.delete_tag(run_id, key, actor=self.actor)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
    ) -> None:
        """Write metrics, params and tags at once, synchronously, all or nothing."""
        validation.metric_records(metrics)
        self._tracking.log_batch(
            run_id, metrics=metrics, params=params, tags=tags, actor=self.actor
        )

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput]) -> None:
        self._tracking.log_inputs(run_id, inputs, actor=self.actor)

    def flush(self, run_id: str | None = None) -> None:
        """Write every buffered metric now (raises what the store refused earlier)."""
        self._buffer.flush(run_id)

    def get_artifact_records(self, run_id: str) -> list[ArtifactRecord]:
        """Every artifact file of the run with its recorded size and sha256."""
        return self._tracking.list_artifact_records(run_id)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        self._buffer.flush(run_id)
        return self._tracking.get_metric_history(run_id, key)

    def search_runs(
        self,
        experiment_ids: Sequence[str] | str,
        filter_string: str | None = None,
        *,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: ViewType | str = ViewType.ACTIVE_ONLY,
    ) -> Page[Run]:
        """Runs matching a filter such as ``metrics.acc > 0.9 and params.model = 'rf'``: a
        :class:`~loopml.tracking.entities.Page`, a list of runs with the ``next_page_token`` to
        pass back for the next page (None on the last)."""
        ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
        return self._tracking.search_runs(
            [str(i) for i in ids],
            filter_string=filter_string,
            order_by=order_by,
            max_results=max_results,
            page_token=page_token,
            view=ViewType(view),
        )

    # artifacts -----------------------------------------------------------------------------
    @property
    def artifacts(self) -> RunArtifacts:
        """Run artifacts: log, list, download (:class:`~loopml.tracking.artifacts.RunArtifacts`)."""
        if self._artifacts is None:
            from loopml.tracking.artifacts import RunArtifacts

            self._artifacts = RunArtifacts(self._tracking, self.stack.artifacts)
        return self._artifacts

    def log_artifact(self, run_id: str, local_path: str | Path, artifact_path: str = "") -> None:
        self.artifacts.log_file(self.get_run(run_id), local_path, artifact_path)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str = "") -> None:
        self.artifacts.log_dir(self.get_run(run_id), local_dir, artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.artifacts.log_bytes(self.get_run(run_id), text.encode(), artifact_file)

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        from loopml.tracking.artifacts import serialise_dict

        data = serialise_dict(dictionary, artifact_file)
        self.artifacts.log_bytes(self.get_run(run_id), data, artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        from loopml.tracking.artifacts import render_figure

        data = render_figure(figure, artifact_file)
        self.artifacts.log_bytes(self.get_run(run_id), data, artifact_file)

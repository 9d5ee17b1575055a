"""Models on the client: log a package to a run, register it, load it back, evaluate it.

:class:`~loopml.client.Client` delegates here (``client.models`` is a :class:`ModelCalls`,
built from the run calls, the registry and the projects; it never sees the Client). A package
is written to a temporary folder by :func:`loopml.models.package.save_package`, then published
as the run's artifacts (each file's sha256 recorded). Loading downloads into a cache keyed by
the recorded manifest digest and verifies every file again; pickle-based flavors load only with
trust (see :mod:`loopml.models.trust`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import AlreadyExists, InvalidArgument, NotFound
from loopml.models.refs import AliasRef, RunRef, VersionRef, parse_model_ref
from loopml.tracking.entities import Run

if TYPE_CHECKING:
    import pandas as pd

    from loopml.client.tracking import TrackingCalls
    from loopml.models.evaluation import EvaluationResult, KpiCheck
    from loopml.models.predictor import Predictor
    from loopml.models.signature import Signature
    from loopml.projects.store import ProjectStore
    from loopml.registry.api import ModelRegistry
    from loopml.registry.entities import ModelVersion

MANIFEST = "loopml-model.yaml"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What :func:`log_model` wrote: where, with which digest and signature."""

    source: str  # runs:/<run_id>/<name>
    run_id: str
    path: str
    digest: str  # sha256 of the manifest: the package's identity
    flavor: str
    signature: dict[str, Any] | None
    registered_version: ModelVersion | None = None

    @property
    def model_uri(self) -> str:
        """MLflow's name for :attr:`source` (``runs:/<run_id>/<path>``)."""
        return self.source

    @property
    def artifact_path(self) -> str:
        return self.path


def _fields(info: ModelInfo) -> dict[str, Any]:
    return {f: getattr(info, f) for f in ModelInfo.__slots__}


class ModelCalls:
    """Log, register, load and evaluate model packages through the run calls of a client."""

    def __init__(
        self, runs: TrackingCalls, registry: Callable[[], ModelRegistry], projects: ProjectStore
    ) -> None:
        self._runs = runs
        self._registry = registry  # raises Unavailable when the store has no registry
        self._projects = projects

    def log_model(
        self, run_id: str, model: Any, name: str, *, signature: Signature | None = None,
        input_example: Any = None, flavor: str | None = None,
        datasets: Sequence[Mapping[str, str]] | None = None,
        registered_model_name: str | None = None, metadata: dict[str, Any] | None = None,
    ) -> ModelInfo:  # fmt: skip
        """Save ``model`` as a package under the run's artifacts at ``name``.

        Lineage records the run and its logged inputs (or ``datasets``); the signature is inferred
        from ``input_example`` when not given.
        """
        from loopml.artifacts.paths import clean_relpath
        from loopml.models.package import Lineage, save_package

        path = clean_relpath(name)
        run = self._runs.get_run(run_id)
        if datasets is None:
            datasets = [{"name": i.name, "digest": i.digest, "role": i.role} for i in run.inputs]
        lineage = Lineage(run_id=run.run_id, datasets=tuple(dict(d) for d in datasets))
        with tempfile.TemporaryDirectory(prefix="loopml-model-") as tmp:
            folder = Path(tmp) / "package"
            manifest = save_package(model, folder, flavor=flavor, signature=signature,
                                    input_example=input_example, lineage=lineage,
                                    metadata=metadata)  # fmt: skip
            self._runs.artifacts.log_dir(run, folder, path)
        digest = self._recorded_digest(run.run_id, path)
        info = ModelInfo(
            source=f"runs:/{run.run_id}/{path}", run_id=run.run_id, path=path, digest=digest,
            flavor=manifest.flavor,
            signature=manifest.signature.to_dict() if manifest.signature is not None else None,
        )  # fmt: skip
        if registered_model_name:
            version = self.register_model(info.source, registered_model_name)
            info = ModelInfo(**{**_fields(info), "registered_version": version})
        return info

    def _recorded_digest(self, run_id: str, path: str) -> str:
        wanted = f"{path}/{MANIFEST}"
        for record in self._runs.get_artifact_records(run_id):
            if record.path == wanted and record.sha256:
                return record.sha256
        raise NotFound(f"run {run_id} has no model package at {path!r} (no recorded {MANIFEST})")

    def register_model(
        self, source: str, name: str, *, description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        """The next version of ``name`` (created in the run's project if it does not exist yet)."""
        from loopml.registry.service import parse_source

        registry = self._registry()
        run_id, _ = parse_source(source)
        try:
            registry.get_registered_model(name)
        except NotFound:
            run = self._runs.get_run(run_id)
            project = self._runs.get_experiment(run.experiment_id).project_id
            with contextlib.suppress(AlreadyExists):  # someone else created it meanwhile: fine
                registry.create_registered_model(name, actor=self._runs.actor, project=project)
        return registry.create_model_version(name, source, actor=self._runs.actor,
                                             description=description, tags=tags)  # fmt: skip

    def resolve(self, ref: str) -> tuple[Run, str, str]:
        """(run, path in the run, recorded manifest digest) of a model reference."""
        parsed = parse_model_ref(ref)
        if isinstance(parsed, RunRef):
            run = self._runs.get_run(parsed.run_id)
            return run, parsed.path, self._recorded_digest(run.run_id, parsed.path)
        registry = self._registry()
        if isinstance(parsed, VersionRef):
            version = registry.get_model_version(parsed.name, parsed.version)
        else:
            assert isinstance(parsed, AliasRef)
            version = registry.get_version_by_alias(parsed.name, parsed.alias)
        path = version.source.split("/", 2)[2] if version.source.count("/") >= 2 else ""
        recorded = self._recorded_digest(version.run_id, path)
        if recorded != version.digest:
            from loopml.errors import IntegrityError

            raise IntegrityError(
                f"{ref}: the run's package manifest (sha256 {recorded[:12]}…) is not the one "
                f"registered as version {version.version} ({version.digest[:12]}…)"
            )
        return self._runs.get_run(version.run_id), path, version.digest

    def load_model(self, ref: str, *, trust: bool | None = None) -> Predictor:
        """A :class:`~loopml.models.predictor.Predictor` for ``runs:/…``, ``models:/name/3`` or
        ``models:/name@alias``; every file is checked against the digests recorded at log time."""
        return self._load(*self.resolve(ref), trust=trust)

    def _load(self, run: Run, path: str, digest: str, *, trust: bool | None) -> Predictor:
        from loopml.models.package import load_package

        folder = self._cached(run, path, digest)
        allowed = self._runs.settings.trust_pickled_models if trust is None else trust
        return load_package(folder, trust=allowed, recorded_digest=digest)

    def _cached(self, run: Run, path: str, digest: str) -> Path:
        """The package's files in ``<home>/model-cache/<digest>``, downloaded once (atomically)."""
        cache = self._runs.settings.home / "model-cache"
        target = cache / digest
        if (target / MANIFEST).is_file():
            return target
        cache.mkdir(parents=True, exist_ok=True)
        staging = cache / f".{digest}.{uuid.uuid4().hex}"
        try:
            self._runs.artifacts.download(run, path, staging)
            downloaded = staging / Path(path).name
            try:
                os.replace(downloaded, target)
            except OSError:  # another process got there first
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def evaluate(
        self, ref: str, data: pd.DataFrame, *, target: str, task: str,
        slices: Sequence[str] = (), run_id: str | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> tuple[EvaluationResult, list[KpiCheck]]:  # fmt: skip
        """Score ``data`` with the model, compute metrics per slice, log them with plots, a report
        and a model card draft to the model's run (or ``run_id``), and check the project's
        validation KPIs against them.

        The model sees ``feature_names`` (default: the signature's input columns, or every column
        but the target), so slice columns need not be model inputs."""
        import pandas as pd

        from loopml.models.evaluation import check_kpis, evaluate_predictions

        if not isinstance(data, pd.DataFrame):
            raise InvalidArgument(f"evaluate needs a pandas DataFrame, got {type(data).__name__}")
        if target not in data.columns:
            raise InvalidArgument(f"target column {target!r} is not in the data")
        run, path, digest = self.resolve(ref)  # once: the model and where its results go
        predictor = self._load(run, path, digest, trust=None)
        features = data.drop(columns=[target])
        if feature_names is not None:
            missing = [c for c in feature_names if c not in features.columns]
            if missing:
                raise InvalidArgument(f"feature columns {missing} are not in the data")
            features = features[list(feature_names)]
        elif predictor.signature is not None and predictor.signature.kind == "columns":
            names = [c.name for c in predictor.signature.inputs if c.name in features.columns]
            features = features[names]
        y_pred = predictor.predict(features)
        y_proba = None
        if task == "classification":
            try:
                y_proba = predictor.predict_proba(features)
            except InvalidArgument:
                y_proba = None
        truth = data[target].to_numpy()
        result = evaluate_predictions(truth, _column(y_pred), task=task,  # type: ignore[arg-type]
                                      y_proba=y_proba, slices_frame=data,
                                      slices=slices)  # fmt: skip
        log_to = run_id or run.run_id
        experiment = self._runs.get_experiment(self._runs.get_run(log_to).experiment_id)
        project = self._projects.get_project(experiment.project_id)
        metrics = {**result.metrics, **result.slice_metrics_flat()}
        checks = check_kpis(project.kpis, metrics)
        self._runs.log_metrics(log_to, {k: v for k, v in metrics.items() if v == v})
        self._runs.flush(log_to)
        report = {"model": ref, "evaluation": result.to_dict(),
                  "kpis": [_check_dict(c) for c in checks]}  # fmt: skip
        self._runs.log_dict(log_to, report, "evaluation/report.json")
        for name, figure in result.figures.items():
            self._runs.log_dict(log_to, figure, f"evaluation/{name}.plotly.json")
        self._runs.log_text(log_to, model_card(ref, project.name, result, checks), "model_card.md")
        return result, checks


def _column(values: Any) -> Any:
    import numpy as np

    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    arr = np.asarray(values)
    return arr.ravel() if arr.ndim == 2 and arr.shape[1] == 1 else arr


def _check_dict(c: KpiCheck) -> dict[str, Any]:
    return {"kpi": c.kpi, "metric": c.metric, "target": c.target, "direction": c.direction,
            "value": c.value, "met": c.met, "reason": c.reason}  # fmt: skip


def model_card(ref: str, project: str, result: EvaluationResult, checks: Sequence[KpiCheck]) -> str:
    """A model card draft in Markdown: what was measured and which KPIs it meets."""
    count = int(result.metrics.get("example_count", 0))
    lines = [f"# Model card (draft): {ref}", "", f"Project: {project}", "",
             "## Intended use", "", "_To be written by the model owner._", "",
             f"## Evaluation ({result.task}, {count} examples)",
             "", "| metric | value |", "|---|---|"]  # fmt: skip
    lines += [f"| {k} | {v:.4g} |" for k, v in sorted(result.metrics.items()) if v == v]
    lines += ["", "## KPIs", ""]
    lines += [f"- {'met' if c.met else 'NOT met'}: {c.kpi}: {c.reason}" for c in checks] or [
        "- the project has no validation KPIs"
    ]
    if result.slices:
        lines += ["", "## Slices", "", "| slice | count | metrics |", "|---|---|---|"]
        for s in result.slices[:50]:
            shown = ", ".join(f"{k} {v:.3g}" for k, v in sorted(s.metrics.items())[:4])
            lines.append(f"| {s.column} = {s.value} | {s.count} | {shown} |")
    lines += ["", "## Limitations and risks", "", "_To be written; reviewed by model risk._", ""]
    return "\n".join(lines)

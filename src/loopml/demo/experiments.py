"""The demo's experiment: a sweep of scikit-learn runs with params, inputs, curves, metrics and
artifacts, one run that fails on a bad configuration, and a nested threshold-tuning run."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from loopml.client import Client
from loopml.demo.data import TARGET, _Data
from loopml.demo.deployments import deploy_with_canary
from loopml.demo.evaluation import (
    _confusion,
    _importances,
    _log_loss,
    _stages,
    evaluate,
    operating_threshold,
    recall_at_fpr,
)
from loopml.demo.projects import MAX_FALSE_ALARM_RATE, PROJECT
from loopml.demo.registry import release_best
from loopml.errors import Conflict, InvalidArgument
from loopml.tracking.entities import Run, RunStatus
from loopml.tracking.runinfo import UsageMeter

EXPERIMENT = "fraud-models"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One run of the sweep: a scikit-learn estimator and its hyperparameters."""

    name: str
    estimator: type[ClassifierMixin]
    params: Mapping[str, Any]
    author: str
    core: bool = False  # kept when the demo is asked for fewer runs

    @property
    def family(self) -> str:
        return self.estimator.__name__


_LR, _RF = LogisticRegression, RandomForestClassifier
_GBM, _HGB = GradientBoostingClassifier, HistGradientBoostingClassifier
CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("logreg-baseline", _LR, {"C": 1.0}, "alice", core=True),
    ModelSpec("logreg-balanced", _LR, {"C": 0.1, "class_weight": "balanced"}, "alice"),
    ModelSpec("rf-100-depth6", _RF, {"n_estimators": 100, "max_depth": 6}, "bob"),
    ModelSpec("rf-100-depth12", _RF, {"n_estimators": 100, "max_depth": 12}, "bob"),
    ModelSpec("rf-150-leaf2", _RF, {"n_estimators": 150, "min_samples_leaf": 2}, "bob"),
    ModelSpec(
        "gbm-100-lr0.1", _GBM,
        {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 0.8}, "carol",
    ),
    ModelSpec("hgb-lr0.03", _HGB, {"learning_rate": 0.03, "max_iter": 300}, "carol"),
    ModelSpec("hgb-lr0.1", _HGB, {"learning_rate": 0.1, "max_iter": 150}, "carol", core=True),
    ModelSpec("hgb-lr0.3", _HGB, {"learning_rate": 0.3, "max_iter": 80}, "carol"),
    ModelSpec("hgb-depth3", _HGB, {"learning_rate": 0.1, "max_iter": 200, "max_depth": 3}, "carol"),
    ModelSpec(
        "hgb-l2", _HGB,
        {"learning_rate": 0.1, "max_iter": 150, "l2_regularization": 1.0, "min_samples_leaf": 40},
        "carol",
    ),
    # A loss scikit-learn does not have: fit() raises, so this run ends FAILED.
    ModelSpec(
        "hgb-focal-loss", _HGB, {"loss": "focal_loss", "learning_rate": 0.1, "max_iter": 150},
        "carol", core=True,
    ),
)  # fmt: skip


def _select(runs: int) -> list[ModelSpec]:
    """``runs`` specs from the catalogue: the core ones, then the rest in order."""
    core = [s for s in CATALOGUE if s.core]
    if not len(core) <= runs <= len(CATALOGUE):
        raise InvalidArgument(f"the demo has {len(core)} to {len(CATALOGUE)} runs, not {runs}")
    extra = [s for s in CATALOGUE if not s.core][: runs - len(core)]
    chosen = {s.name for s in core + extra}
    return [s for s in CATALOGUE if s.name in chosen]


def _build(spec: ModelSpec) -> Any:
    params: dict[str, Any] = {"random_state": 0, **spec.params}
    if spec.estimator is LogisticRegression:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **params))
    if spec.estimator is RandomForestClassifier:
        params["n_jobs"] = 1
    if spec.estimator is HistGradientBoostingClassifier:
        params["early_stopping"] = False  # every run trains max_iter rounds: full curves
    return spec.estimator(**params)


def _train_all(client: Client, experiment_id: str, specs: Sequence[ModelSpec], data: _Data) -> None:
    scores: dict[str, tuple[np.ndarray, Any]] = {}
    for spec in specs:
        try:
            run_id, proba, model = _train_run(client, experiment_id, spec, data)
        except ValueError:  # a bad configuration fails its run, not the sweep
            continue
        scores[run_id] = (proba, model)
    runs = client.search_runs(experiment_id, max_results=1000).items
    best = _best(runs)
    proba, model = scores[best.run_id]
    _tune_threshold(client, experiment_id, best, proba, data)
    features = pd.DataFrame(data.x_val, columns=data.features)
    release_best(client, PROJECT, best.run_id, model, features, data.y_val,
                 data.validation[["merchant_category"]])  # fmt: skip
    runner_up = _best([r for r in runs if r.run_id != best.run_id and r.run_id in scores])
    deploy_with_canary(client, runner_up.run_id, scores[runner_up.run_id][1], features)


@contextmanager
def _tracked_run(
    client: Client,
    experiment_id: str,
    name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """A run that ends FINISHED, or FAILED with ``error.txt`` when the block raises."""
    run = client.create_run(experiment_id, run_name=name, tags=tags, parent_run_id=parent_run_id)
    meter = UsageMeter()
    try:
        yield run.run_id
    except KeyboardInterrupt:
        client.set_terminated(run.run_id, RunStatus.KILLED, usage=meter.read())
        raise
    except Exception as exc:
        client.set_tag(run.run_id, "error", type(exc).__name__)
        client.log_text(run.run_id, f"{type(exc).__name__}: {exc}\n", "error.txt")
        client.set_terminated(run.run_id, RunStatus.FAILED, usage=meter.read())
        raise
    client.set_terminated(run.run_id, RunStatus.FINISHED, usage=meter.read())


def _train_run(
    client: Client, experiment_id: str, spec: ModelSpec, data: _Data
) -> tuple[str, np.ndarray, Any]:
    """Fit one model and log everything about it; return the run id, validation scores and
    the fitted model."""
    tags = {"model_family": spec.family, "author": spec.author}
    with _tracked_run(client, experiment_id, spec.name, tags) as run_id:
        client.log_inputs(run_id, data.inputs)
        client.log_params(
            run_id,
            {"model": spec.family, **spec.params, "decision_threshold": 0.5,
             "train_rows": len(data.train), "features": len(data.features)},
        )  # fmt: skip
        model = _build(spec)
        started = time.perf_counter()
        model.fit(data.x_train, data.y_train)
        fit_seconds = time.perf_counter() - started
        _log_curves(client, run_id, model, data)
        proba = model.predict_proba(data.x_val)[:, 1]
        metrics = evaluate(data.y_val, proba)
        client.log_metrics(run_id, {**metrics, "fit_seconds": round(fit_seconds, 3)})
        _log_evaluation(client, run_id, spec, model, data, proba, metrics)
    return run_id, proba, model


def _log_curves(client: Client, run_id: str, model: Any, data: _Data, points: int = 25) -> None:
    """Training loss, validation loss and validation AUC as trees or boosting rounds are added."""
    sample = slice(0, 3000)
    val_stages = _stages(model, data.x_val)
    train_stages = _stages(model, data.x_train[sample])
    if val_stages is None or train_stages is None:
        return
    total = _n_stages(model)
    checkpoints = set(np.unique(np.linspace(1, total, min(points, total)).round().astype(int)))
    for stage, (p_val, p_train) in enumerate(zip(val_stages, train_stages, strict=True), start=1):
        if stage in checkpoints:
            client.log_metric(run_id, "train_loss", _log_loss(data.y_train[sample], p_train), stage)
            client.log_metric(run_id, "val_loss", _log_loss(data.y_val, p_val), stage)
            client.log_metric(run_id, "val_auc", float(roc_auc_score(data.y_val, p_val)), stage)


def _n_stages(model: Any) -> int:
    if isinstance(model, HistGradientBoostingClassifier):
        return int(model.n_iter_)
    if isinstance(model, GradientBoostingClassifier):
        return int(model.n_estimators_)
    return len(model.estimators_)


def _log_evaluation(
    client: Client,
    run_id: str,
    spec: ModelSpec,
    model: Any,
    data: _Data,
    proba: np.ndarray,
    metrics: Mapping[str, float],
) -> None:
    importances = _importances(model, data)
    client.log_dict(run_id, _confusion(data.y_val, proba, 0.5), "eval/confusion_matrix.json")
    client.log_dict(run_id, importances, "eval/feature_importances.json")
    _log_roc(client, run_id, spec.name, data.y_val, proba)
    top = ", ".join(list(importances["importances"])[:4])
    client.log_text(run_id, _summary_text(spec, model, data, metrics, top), "model_summary.txt")


def _summary_text(
    spec: ModelSpec, model: Any, data: _Data, metrics: Mapping[str, float], top: str
) -> str:
    fraud = float(data.train[TARGET].mean())
    lines = [
        f"{spec.name}: {model!r}",
        f"trained on {len(data.train):,} transactions ({fraud:.1%} fraud), "
        f"validated on {len(data.validation):,}",
        "",
        "validation (threshold 0.5 unless said otherwise):",
        *(f"  {k:<20} {v:.4f}" for k, v in metrics.items()),
        "",
        f"top features: {top}",
    ]
    return "\n".join(lines) + "\n"


def _log_roc(client: Client, run_id: str, name: str, y: np.ndarray, proba: np.ndarray) -> None:
    """The ROC curve as a PNG (matplotlib, Agg), or its points as JSON without matplotlib."""
    fpr, tpr, _ = roc_curve(y, proba)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        points = {"false_alarm_rate": fpr.round(6).tolist(), "recall": tpr.round(6).tolist()}
        client.log_dict(run_id, points, "plots/roc.json")
        return
    fig = Figure(figsize=(5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc_score(y, proba):.3f})")
    ax.axvline(MAX_FALSE_ALARM_RATE, color="grey", linestyle="--", label="1 % false alarms")
    caught = recall_at_fpr(y, proba)
    ax.axhline(caught, color="tab:red", linestyle=":", label=f"{caught:.1%} caught at 1 %")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-alarm rate", ylabel="fraud caught")
    ax.set_title(name)
    ax.legend(loc="lower right")
    client.log_figure(run_id, fig, "plots/roc.png")


def _best(runs: Sequence[Run]) -> Run:
    """The finished top-level run that catches the most fraud at 1 % false alarms (then AUC)."""
    candidates = [
        r
        for r in runs
        if r.parent_run_id is None
        and r.status is RunStatus.FINISHED
        and "recall_at_1pct_fpr" in r.metrics
    ]
    if not candidates:
        raise Conflict(
            f"experiment {EXPERIMENT!r} holds no finished model run yet: it is still loading, or "
            "loading was interrupted (delete the experiment to load the demo again)"
        )
    return max(candidates, key=lambda r: (r.metrics["recall_at_1pct_fpr"], r.metrics["roc_auc"]))


def _tune_threshold(
    client: Client, experiment_id: str, parent: Run, proba: np.ndarray, data: _Data
) -> None:
    """A child of the best run: pick the threshold that keeps false alarms at 1 % or below."""
    tags = {"model_family": parent.tags.get("model_family", ""), "author": "dave"}
    with _tracked_run(client, experiment_id, "threshold-tuning", tags, parent.run_id) as run_id:
        client.log_inputs(run_id, [i for i in data.inputs if i.role == "validation"])
        client.log_params(
            run_id,
            {
                "objective": "most fraud caught with false_alarm_rate <= 0.01",
                "max_false_alarm_rate": MAX_FALSE_ALARM_RATE,
                "tuned_model": parent.run_name,
            },
        )
        for step, threshold in enumerate(np.geomspace(0.002, 0.9, 40)):
            swept = evaluate(data.y_val, proba, float(threshold))
            client.log_metric(run_id, "sweep_threshold", float(threshold), step)
            for key in ("recall", "precision", "false_alarm_rate"):
                client.log_metric(run_id, f"sweep_{key}", swept[key], step)
        threshold = operating_threshold(data.y_val, proba)
        chosen = evaluate(data.y_val, proba, threshold)
        client.log_metrics(run_id, {**chosen, "threshold": threshold})
        client.log_dict(
            run_id, {**_confusion(data.y_val, proba, threshold), "metrics": chosen},
            "eval/operating_point.json",
        )  # fmt: skip

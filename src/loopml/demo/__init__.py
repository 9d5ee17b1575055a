"""The demo ``loopml up`` loads into an empty store: a fraud-detection project, end to end.

It generates card transactions (nothing is downloaded), creates the project ``fraud-detection``
with its business goal, an OKR and KPIs, and tracks an experiment ``fraud-models`` of scikit-learn
runs: params, inputs with digests, metric curves, final metrics and artifacts, one run that fails
on a bad configuration and one nested threshold-tuning run under the best model. Later stages
extend the demo, so a fresh store always shows the whole platform at work::

    python -m loopml.demo --home ./.loopml

One module per stage: :mod:`~loopml.demo.data` (the transactions), :mod:`~loopml.demo.projects`
(goal, OKR, KPIs), :mod:`~loopml.demo.experiments` and :mod:`~loopml.demo.evaluation` (the
tracked sweep), :mod:`~loopml.demo.registry` (the release through gates and an approval),
:mod:`~loopml.demo.deployments` (the canary deployment) and :mod:`~loopml.demo.traffic` (live
payments for ``loopml up``); this module ties them together.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits

from loopml.client import Client
from loopml.demo.data import (
    CATEGORIES,
    SEED,
    TARGET,
    _Data,
    generate_transactions,
    transaction_features,
)
from loopml.demo.evaluation import evaluate, operating_threshold, recall_at_fpr
from loopml.demo.experiments import CATALOGUE, EXPERIMENT, ModelSpec, _best, _select, _train_all
from loopml.demo.projects import MAX_FALSE_ALARM_RATE, PROJECT, _create_project
from loopml.demo.registry import MODEL
from loopml.errors import AlreadyExists, NotFound
from loopml.settings import Settings
from loopml.tracking.entities import Experiment, RunStatus

__all__ = [
    "CATALOGUE", "CATEGORIES", "EXPERIMENT", "MAX_FALSE_ALARM_RATE", "PROJECT", "SEED", "TARGET",
    "DemoSummary", "ModelSpec", "describe", "evaluate", "generate_transactions", "load_demo",
    "main", "operating_threshold", "recall_at_fpr", "transaction_features",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo holds: the project, the experiment, its runs and the best model run."""

    project: str
    experiment_id: str
    run_ids: tuple[str, ...]  # every run, in start order
    best_run_id: str
    failed_run_id: str | None
    tuning_run_id: str | None  # the threshold-tuning run, a child of the best run
    created: bool  # False when the demo was already there


def load_demo(client: Client, *, runs: int = 12, n: int = 20_000) -> DemoSummary:
    """Load the demo through ``client``, unless it is already there; return what it holds.

    ``runs`` model runs (3 to 12, one of them FAILED) train on ``n`` generated transactions;
    a nested threshold-tuning run follows under the best one, so the experiment holds
    ``runs + 1`` runs. An existing project or experiment is left as it is.
    """
    specs = _select(runs)
    if not any(p.name == PROJECT for p in client.list_projects()):
        _create_project(client)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return _summary(client, experiment, created=False)
    try:
        experiment = client.create_experiment(
            EXPERIMENT, project=PROJECT, description="Which model catches the most fraud at "
            "<= 1 % false alarms? Generated card transactions, scikit-learn models.",
            tags={"demo": "true"},
        )  # fmt: skip
    except AlreadyExists:  # another process is loading it right now
        found = client.get_experiment_by_name(EXPERIMENT)
        assert found is not None
        return _summary(client, found, created=False)
    with threadpool_limits(limits=1):  # one core per model: faster than contended threads
        _train_all(client, experiment.experiment_id, specs, _Data.prepare(n, SEED))
    return _summary(client, experiment, created=True)


def _summary(client: Client, experiment: Experiment, *, created: bool) -> DemoSummary:
    runs = sorted(
        client.search_runs(experiment.experiment_id, max_results=1000).items,
        key=lambda r: r.start_time,
    )
    failed = [r.run_id for r in runs if r.status is RunStatus.FAILED]
    children = [r.run_id for r in runs if r.parent_run_id is not None]
    return DemoSummary(
        project=PROJECT,
        experiment_id=experiment.experiment_id,
        run_ids=tuple(r.run_id for r in runs),
        best_run_id=_best(runs).run_id,
        failed_run_id=failed[0] if failed else None,
        tuning_run_id=children[0] if children else None,
        created=created,
    )


def describe(client: Client, summary: DemoSummary) -> str:
    """A few lines on the demo: its runs, the best one and how it does against the KPIs."""
    best = client.get_run(summary.best_run_id)
    project = client.get_project(summary.project)
    verb = "loaded" if summary.created else "already there"
    lines = [
        f"demo {verb}: project {project.name!r}, experiment {EXPERIMENT!r} "
        f"({summary.experiment_id}) with {len(summary.run_ids)} runs",
        f"best run: {best.run_name} ({best.run_id})",
    ]
    for kpi in project.kpis:
        value = best.metrics.get(kpi.metric)
        if value is None:
            lines.append(f"  KPI {kpi.name!r}: {kpi.metric} is judged in {kpi.judged_at.value}")
            continue
        verdict = "met" if kpi.is_met(value) else "missed"
        lines.append(
            f"  KPI {kpi.name!r}: {kpi.metric} = {value:.4f}, target {kpi.target} -> {verdict}"
        )
    try:
        production = client.registry.get_version_by_alias(MODEL, "production")
        lines.append(f"model {MODEL!r} version {production.version} is in production "
                     f"(models:/{MODEL}@production)")  # fmt: skip
    except NotFound:
        pass
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loopml.demo [--home DIR] [--runs N]``: load the demo into a store."""
    parser = argparse.ArgumentParser(
        prog="python -m loopml.demo", description="Load the loopml demo into a store."
    )
    parser.add_argument(
        "--home", type=Path, help="store folder (default: LOOPML_HOME or ./.loopml)"
    )
    parser.add_argument("--runs", type=int, default=12, help="model runs, 3 to 12 (default 12)")
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home is not None else Settings()
    with Client(settings) as client:
        summary = load_demo(client, runs=args.runs)
        print(describe(client, summary))
    return 0

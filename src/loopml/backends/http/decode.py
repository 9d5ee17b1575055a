"""JSON from the REST API back into frozen records (and non-finite floats back from strings)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from loopml.governance.audit import AuditEvent, ChainReport
from loopml.projects.entities import Direction, JudgedAt, Kpi, Okr, Project
from loopml.tracking.entities import (
    Experiment,
    Lifecycle,
    Metric,
    Run,
    RunInput,
    RunStatus,
)

_NAMED = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def number(value: Any) -> float:
    if value is None:
        return math.nan
    return _NAMED[value] if isinstance(value, str) else float(value)


def wire_number(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def metric_columns(metrics: Sequence[Metric]) -> dict[str, list[Any]]:
    """Metrics as the API's column form: four lists instead of a JSON object per value."""
    values: list[Any] = [m.value for m in metrics]
    # v - v is 0 for every finite float, NaN for NaN and ±inf: only those travel as names.
    if not all(v - v == 0 for v in values):
        values = [v if v - v == 0 else wire_number(v) for v in values]
    return {
        "key": [m.key for m in metrics],
        "value": values,
        "timestamp": [m.timestamp for m in metrics],
        "step": [m.step for m in metrics],
    }


def experiment(d: dict[str, Any]) -> Experiment:
    return Experiment(**{**d, "lifecycle_stage": Lifecycle(d["lifecycle_stage"])})


def run(d: dict[str, Any]) -> Run:
    return Run(
        **{
            **d,
            "status": RunStatus(d["status"]),
            "lifecycle_stage": Lifecycle(d["lifecycle_stage"]),
            "metrics": {k: number(v) for k, v in d["metrics"].items()},
            "inputs": tuple(RunInput(**i) for i in d["inputs"]),
        }
    )


def metric(d: dict[str, Any]) -> Metric:
    return Metric(d["key"], number(d["value"]), d["timestamp"], d["step"])


def kpi(d: dict[str, Any]) -> Kpi:
    return Kpi(
        **{**d, "direction": Direction(d["direction"]), "judged_at": JudgedAt(d["judged_at"])}
    )


def okr(d: dict[str, Any]) -> Okr:
    return Okr(**{**d, "key_results": tuple(d["key_results"])})


def project(d: dict[str, Any]) -> Project:
    return Project(
        **{**d, "okrs": tuple(okr(o) for o in d["okrs"]), "kpis": tuple(kpi(k) for k in d["kpis"])}
    )


def audit_event(d: dict[str, Any]) -> AuditEvent:
    return AuditEvent(**d)


def chain_report(d: dict[str, Any]) -> ChainReport:
    return ChainReport(events_checked=d["events_checked"], problems=list(d["problems"]))

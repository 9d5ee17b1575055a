"""The promotion gates: pure checks of a candidate against its policy, KPIs and champion.

>>> from loopml.registry.entities import MetricGate, PromotionPolicy
>>> policy = PromotionPolicy(metric_gates=(MetricGate("auc", 0.9),), require_kpis=False)
>>> [(c.name, c.passed) for c in run_gates(policy, {"auc": 0.93}, kpis=())]
[('metric auc >= 0.9', True)]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

from loopml.projects.entities import JudgedAt, Kpi
from loopml.registry.entities import GateCheck, PromotionPolicy


def _fmt(value: float | None) -> str:
    return "missing" if value is None or math.isnan(value) else f"{value:.6g}"


def _beats(value: float, reference: float, direction: str, margin: float = 0.0) -> bool:
    if direction == "minimize":
        return value <= reference - margin
    return value >= reference + margin


def run_gates(
    policy: PromotionPolicy,
    metrics: Mapping[str, float],
    *,
    kpis: Sequence[Kpi],
    champion: tuple[int, Mapping[str, float]] | None = None,
    artifacts: Collection[str] = (),
) -> tuple[GateCheck, ...]:
    """Every check the policy asks for, each with a sentence saying why it passed or failed.

    ``metrics`` are the candidate's (its run's latest values); ``champion`` is the version the
    policy's champion alias points at and its metrics, if there is one; ``artifacts`` are the
    paths of the candidate run's artifacts.
    """
    checks: list[GateCheck] = []
    for gate in policy.metric_gates:
        op = "<=" if gate.direction == "minimize" else ">="
        value = metrics.get(gate.metric)
        passed = value is not None and not math.isnan(value)
        passed = passed and _beats(value, gate.threshold, gate.direction)  # type: ignore[arg-type]
        checks.append(GateCheck(
            f"metric {gate.metric} {op} {gate.threshold:g}", passed,
            f"{gate.metric} is {_fmt(value)}, needs {op} {gate.threshold:g}",
        ))  # fmt: skip
    for cg in policy.champion_gates:
        name = f"beats champion on {cg.metric}"
        value = metrics.get(cg.metric)
        if champion is None:
            checks.append(GateCheck(name, True, "no champion yet: nothing to beat"))
            continue
        version, theirs = champion
        reference = theirs.get(cg.metric)
        if value is None or math.isnan(value) or reference is None or math.isnan(reference):
            detail = f"{cg.metric} is {_fmt(value)} here, {_fmt(reference)} on champion v{version}"
            checks.append(GateCheck(name, False, detail))
            continue
        passed = _beats(value, reference, cg.direction, cg.min_improvement)
        word = "lower" if cg.direction == "minimize" else "higher"
        checks.append(GateCheck(
            name, passed,
            f"{cg.metric} {_fmt(value)} vs champion v{version} {_fmt(reference)}; needs "
            f"{word} by at least {cg.min_improvement:g}",
        ))  # fmt: skip
    if policy.require_kpis:
        for kpi in kpis:
            if kpi.judged_at is not JudgedAt.VALIDATION:
                continue
            value = metrics.get(kpi.metric)
            op = ">=" if kpi.direction.value == "maximize" else "<="
            met = value is not None and kpi.is_met(value)
            checks.append(GateCheck(
                f"kpi {kpi.name}", met,
                f"{kpi.metric} is {_fmt(value)}, the KPI needs {op} {kpi.target:g}",
            ))  # fmt: skip
    present = set(artifacts)
    for path in policy.required_artifacts:
        found = path in present or any(p.startswith(path.rstrip("/") + "/") for p in present)
        checks.append(GateCheck(
            f"artifact {path}", found, "present" if found else f"the run has no artifact {path!r}"
        ))  # fmt: skip
    return tuple(checks)

"""The demo's model release: the best run's model evaluated, registered, gated against the
project's KPIs, approved by a risk manager and promoted to production.

Two people act, as in a real team: Dana (data scientist) registers, evaluates and asks; Rita
(model risk manager) approves. The registry refuses Dana approving her own request, so the
audit log shows the separation of duties as it happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.errors import AlreadyExists
from loopml.registry.entities import ChampionGate, MetricGate, PromotionPolicy, Stage

if TYPE_CHECKING:
    from loopml.client import Client

MODEL = "fraud-detector"
DATA_SCIENTIST = "dana"
RISK_MANAGER = "rita"
POLICY = PromotionPolicy(
    metric_gates=(MetricGate("roc_auc", 0.95), MetricGate("false_alarm_rate", 0.01, "minimize")),
    champion_gates=(ChampionGate("recall_at_1pct_fpr", min_improvement=0.0),),
    require_kpis=True,
    required_artifacts=("model_card.md", "evaluation/report.json"),
    production_approvers=("risk_manager",),
)


def release_best(
    client: Client, project: str, run_id: str, model: Any, features: pd.DataFrame,
    labels: np.ndarray, slices: pd.DataFrame,
) -> int:  # fmt: skip
    """Log, evaluate, register and release the model of ``run_id``; returns its version.

    The version carries its input columns in the tag ``feature_names`` (the model takes a plain
    array), which the demo's traffic uses to build requests."""
    registry = client.registry
    info = client.log_model(run_id, model, "model", input_example=features.to_numpy()[:5])
    data = pd.concat([features.reset_index(drop=True), slices.reset_index(drop=True)], axis=1)
    data["is_fraud"] = labels
    client.evaluate(
        info.source, data, target="is_fraud", task="classification", slices=list(slices.columns),
        feature_names=list(features.columns),
    )  # fmt: skip
    try:
        registry.create_registered_model(
            MODEL, actor=DATA_SCIENTIST, project=project, owner="fraud-ops", risk_tier="high",
            description="Scores every card payment for fraud in real time.",
            intended_use="Flag card payments for review before settlement; not for credit "
            "decisions or for judging individual customers.",
        )  # fmt: skip
        registry.set_policy(MODEL, POLICY, actor=DATA_SCIENTIST)
    except AlreadyExists:
        pass
    version = registry.create_model_version(
        MODEL,
        info.source,
        actor=DATA_SCIENTIST,
        description="best run of the demo sweep",
        tags={"feature_names": ",".join(features.columns)},
    ).version
    registry.set_alias(MODEL, "staging", version, actor=DATA_SCIENTIST)
    registry.promote(MODEL, version, to=Stage.VALIDATED, actor=DATA_SCIENTIST)
    request = registry.request_approval(
        MODEL, version, actor=DATA_SCIENTIST, comment="Meets every validation KPI; card attached."
    )
    registry.decide(
        request.request_id, actor=RISK_MANAGER, roles={"risk_manager"}, approve=True,
        comment="Reviewed the gate report, the slices and the model card draft.",
    )  # fmt: skip
    registry.promote(MODEL, version, to=Stage.PRODUCTION, actor=DATA_SCIENTIST)
    return version

"""The demo's deployment: the runner-up as a 10 % canary beside production, served by
``loopml up`` under the name ``fraud-scoring``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from loopml.client import Client
from loopml.demo.registry import DATA_SCIENTIST, MODEL

DEPLOYMENT = "fraud-scoring"
DEVOPS = "devon"


def deploy_with_canary(client: Client, run_id: str, model: Any, features: pd.DataFrame) -> None:
    """The runner-up as a canary: registered (a candidate, it has not passed the champion gate),
    given the ``canary`` alias, and served to 10 % of the traffic of the deployment
    ``fraud-scoring`` beside ``production``."""
    from loopml.serving.deployments import DeploymentSpec, Target

    registry, deployments = client.registry, client.stack.deployments
    info = client.log_model(run_id, model, "model", input_example=features.to_numpy()[:5])
    canary = registry.create_model_version(
        MODEL, info.source, actor=DATA_SCIENTIST, description="runner-up, canary",
        tags={"feature_names": ",".join(features.columns)},
    ).version  # fmt: skip
    registry.set_alias(MODEL, "canary", canary, actor=DATA_SCIENTIST)
    if deployments is None:
        return
    spec = DeploymentSpec(
        targets=(Target(MODEL, alias="production", weight=0.9),
                 Target(MODEL, alias="canary", weight=0.1)),
        sticky_key="X-Routing-Key",
    )  # fmt: skip
    deployments.create_deployment(
        DEPLOYMENT, spec, actor=DEVOPS, description="card payments scored in real time; "
        "10 % canary for the runner-up",
    )  # fmt: skip

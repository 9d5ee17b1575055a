"""xgboost flavor: the native UBJSON format (``model.ubj``), which holds no code.

A ``Booster`` or one of xgboost's sklearn wrappers is saved with ``save_model``; the wrapper's
class name is kept in the manifest metadata and looked up in a fixed table when loading, so a
manifest can never name an arbitrary class to construct.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidArgument
from loopml.models.flavors import SavedModel, distribution_version, need, pinned

if TYPE_CHECKING:
    from loopml.models.package import Manifest

MODEL_FILE = "model.ubj"
WRAPPERS = ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier", "XGBRFRegressor")
_PROBA_OBJECTIVES = ("binary:logistic", "multi:softprob")


def _xgb() -> Any:
    return need("xgboost", "loopml[xgboost]")


def save(model: Any, directory: Path) -> SavedModel:
    """Write the model with xgboost's own ``save_model``."""
    xgb = _xgb()
    if isinstance(model, xgb.Booster):
        model_class = "Booster"
    elif type(model).__name__ in WRAPPERS and isinstance(model, xgb.XGBModel):
        model_class = type(model).__name__
    else:
        raise InvalidArgument(
            f"the xgboost flavor saves a Booster or one of {', '.join(WRAPPERS)}, "
            f"not a {type(model).__name__}"
        )
    model.save_model(str(directory / MODEL_FILE))
    dist, version = distribution_version("xgboost", "xgboost-cpu")
    reqs = (pinned(dist),)
    return SavedModel("xgboost", version, (MODEL_FILE,), {"model_class": model_class}, reqs)


def load(directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None) -> Any:
    """Read the model back into a ``Booster`` or the recorded sklearn wrapper class."""
    xgb = _xgb()
    model_class = manifest.metadata.get("model_class", "Booster")
    if model_class == "Booster":
        model = xgb.Booster()
    elif model_class in WRAPPERS:
        model = getattr(xgb, model_class)()
    else:
        raise InvalidArgument(f"unknown xgboost model class {model_class!r} in the manifest")
    model.load_model(str(directory / MODEL_FILE))
    return model


def predict(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """Predictions: labels for classifiers, values for regressors, raw output for a Booster."""
    xgb = _xgb()
    if isinstance(model, xgb.Booster):
        return model.predict(xgb.DMatrix(data))
    return model.predict(data)


def predict_proba(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """Class probabilities (one column per class, also for a binary ``Booster``)."""
    import numpy as np

    xgb = _xgb()
    if isinstance(model, xgb.Booster):
        objective = _objective(model)
        if objective not in _PROBA_OBJECTIVES:
            raise InvalidArgument(
                f"an xgboost Booster with objective {objective!r} has no probabilities"
            )
        p = model.predict(xgb.DMatrix(data))
        return np.column_stack([1 - p, p]) if p.ndim == 1 else p
    if not callable(getattr(model, "predict_proba", None)):
        raise InvalidArgument(f"an xgboost {type(model).__name__} does not predict probabilities")
    return model.predict_proba(data)


def _objective(booster: Any) -> str:
    import json

    config = json.loads(booster.save_config())
    return str(config.get("learner", {}).get("objective", {}).get("name", "unknown"))

"""lightgbm flavor: the native text format (``model.txt``), which holds no code.

A ``Booster`` is saved as is; an sklearn wrapper (``LGBMClassifier`` …) saves its booster and
keeps its class in the manifest metadata, plus the class labels for a classifier. Loading gives
back the ``Booster``; :func:`predict` turns a classifier's probabilities into those labels again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidArgument
from loopml.models.flavors import SavedModel, distribution_version, need, pinned

if TYPE_CHECKING:
    from loopml.models.package import Manifest

MODEL_FILE = "model.txt"
_PROBA_OBJECTIVES = ("binary", "multiclass", "multiclassova", "cross_entropy")


def _lgb() -> Any:
    return need("lightgbm", "loopml[lightgbm]")


def save(model: Any, directory: Path) -> SavedModel:
    """Write the model's booster with lightgbm's own ``save_model``."""
    lgb = _lgb()
    metadata: dict[str, Any] = {"model_class": type(model).__name__}
    if isinstance(model, lgb.Booster):
        booster = model
        metadata["model_class"] = "Booster"
    elif isinstance(model, lgb.LGBMModel):
        booster = model.booster_
        if isinstance(model, lgb.LGBMClassifier):
            metadata["classes"] = [_plain(c) for c in model.classes_.tolist()]
    else:
        raise InvalidArgument(
            f"the lightgbm flavor saves a Booster or an LGBMModel, not a {type(model).__name__}"
        )
    booster.save_model(str(directory / MODEL_FILE))
    version = distribution_version("lightgbm")[1]
    return SavedModel("lightgbm", version, (MODEL_FILE,), metadata, (pinned("lightgbm"),))


def load(directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None) -> Any:
    """Read the ``Booster`` back."""
    return _lgb().Booster(model_file=str(directory / MODEL_FILE))


def predict(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """Predictions; for a saved classifier, its class labels."""
    import numpy as np

    if not isinstance(model, _lgb().Booster):
        return model.predict(data)
    classes = metadata.get("classes")
    if classes is None:
        return model.predict(data)
    proba = _proba(model, data)
    return np.asarray(classes)[np.argmax(proba, axis=1)]


def predict_proba(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """Class probabilities, one column per class."""
    if not isinstance(model, _lgb().Booster):
        if not callable(getattr(model, "predict_proba", None)):
            raise InvalidArgument(f"a {type(model).__name__} does not predict probabilities")
        return model.predict_proba(data)
    objective = str(model.params.get("objective", "")) if model.params else ""
    if metadata.get("classes") is None and objective.split(" ")[0] not in _PROBA_OBJECTIVES:
        raise InvalidArgument(f"a lightgbm model with objective {objective!r} has no probabilities")
    return _proba(model, data)


def _proba(booster: Any, data: Any) -> Any:
    import numpy as np

    p = np.asarray(booster.predict(data))
    return np.column_stack([1 - p, p]) if p.ndim == 1 else p


def _plain(value: Any) -> Any:
    if isinstance(value, str | int | float | bool):
        return value
    raise InvalidArgument(f"lightgbm class label {value!r} is not a string or number")

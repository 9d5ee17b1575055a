"""python flavor: any object with a ``predict`` method, written with cloudpickle (``model.pkl``).

Reading it back runs pickle, so it goes through :mod:`loopml.models.trust`: only with
``trust=True`` and for a package whose manifest digest the platform recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidArgument
from loopml.models.flavors import SavedModel, distribution_version, need, pinned
from loopml.models.trust import load_pickled

if TYPE_CHECKING:
    from loopml.models.package import Manifest

MODEL_FILE = "model.pkl"


def save(model: Any, directory: Path) -> SavedModel:
    """Write ``model`` with cloudpickle (classes defined in ``__main__`` travel by value)."""
    if not callable(getattr(model, "predict", None)):
        raise InvalidArgument(
            f"a python-flavor model needs a predict method; {type(model).__name__} has none"
        )
    cloudpickle = need("cloudpickle", "cloudpickle>=3")
    with open(directory / MODEL_FILE, "wb") as f:
        cloudpickle.dump(model, f)
    version = distribution_version("cloudpickle")[1]
    meta = {"serialization": "cloudpickle", "model_class": type(model).__qualname__}
    return SavedModel("python", version, (MODEL_FILE,), meta, (pinned("cloudpickle"),))


def load(directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None) -> Any:
    """Unpickle the model through the trust choke point."""
    return load_pickled(
        directory, manifest, MODEL_FILE, trust=trust, recorded_digest=recorded_digest
    )


def predict(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """``model.predict(data)``."""
    return model.predict(data)


def predict_proba(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """``model.predict_proba(data)``, if the object has it."""
    if not callable(getattr(model, "predict_proba", None)):
        raise InvalidArgument(
            f"the python model {type(model).__name__} does not predict probabilities"
        )
    return model.predict_proba(data)

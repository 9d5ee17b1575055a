"""scikit-learn flavor: skops (no code execution) first, cloudpickle only as a trusted fallback.

skops trusts scikit-learn estimators and plain data by default and reports every other type it
would construct. loopml passes skops exactly that list, and only when every type on it is in
:data:`SAFE_SKOPS_TYPES` (never "trust everything"). A model skops cannot write, or whose file
would need a type outside the allow-list (a lambda, a custom class), is written with cloudpickle
instead; reading that goes through :mod:`loopml.models.trust`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import IntegrityError, InvalidArgument, PermissionDenied
from loopml.models.flavors import SavedModel, distribution_version, need, pinned
from loopml.models.trust import load_pickled

if TYPE_CHECKING:
    from loopml.models.package import Manifest

SKOPS_FILE = "model.skops"
PICKLE_FILE = "model.pkl"

SAFE_SKOPS_TYPES = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.ChebyshevDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csr.csr_array",
        "scipy.sparse._csc.csc_matrix",
        "scipy.sparse._csc.csc_array",
        "collections.OrderedDict",
        "collections.defaultdict",
    }
)
"""Types outside skops' defaults that sklearn models hold and that run no code of their own."""


def save(model: Any, directory: Path) -> SavedModel:
    """Write ``model`` with skops, or with cloudpickle if skops cannot hold it safely."""
    sio = need("skops.io", "skops>=0.10")
    path = directory / SKOPS_FILE
    try:
        sio.dump(model, path)
        untrusted = set(sio.get_untrusted_types(file=path))
    except Exception:  # skops refuses some objects outright; the pickle fallback handles them
        untrusted = {"<skops could not write this model>"}
    sklearn_req = pinned("scikit-learn")
    version = distribution_version("scikit-learn")[1]
    if untrusted <= SAFE_SKOPS_TYPES:
        meta = {"serialization": "skops"}
        return SavedModel(
            "scikit-learn", version, (SKOPS_FILE,), meta, (sklearn_req, pinned("skops"))
        )
    path.unlink(missing_ok=True)
    cloudpickle = need("cloudpickle", "cloudpickle>=3")
    with open(directory / PICKLE_FILE, "wb") as f:
        cloudpickle.dump(model, f)
    meta = {"serialization": "cloudpickle"}
    reqs = (sklearn_req, pinned("cloudpickle"))
    return SavedModel("scikit-learn", version, (PICKLE_FILE,), meta, reqs)


def load(directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None) -> Any:
    """Read the model: skops with the allow-list, or the pickle through the trust choke point."""
    serialization = manifest.metadata.get("serialization", "skops")
    if serialization == "cloudpickle":
        return load_pickled(
            directory, manifest, PICKLE_FILE, trust=trust, recorded_digest=recorded_digest
        )
    if serialization != "skops":
        raise InvalidArgument(f"unknown sklearn serialization {serialization!r} in the manifest")
    sio = need("skops.io", "skops>=0.10")
    data = (directory / SKOPS_FILE).read_bytes()  # check and load the same bytes
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.files.get(SKOPS_FILE):
        raise IntegrityError(f"model package file '{SKOPS_FILE}' was changed after it was logged")
    untrusted = list(sio.get_untrusted_types(data=data))
    refused = sorted(set(untrusted) - SAFE_SKOPS_TYPES)
    if refused:
        raise PermissionDenied(
            f"refusing to load '{SKOPS_FILE}': it needs types loopml does not trust "
            f"({', '.join(refused)})",
            details={"file": SKOPS_FILE, "types": refused},
        )
    return sio.loads(data, trusted=untrusted)


def predict(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """``model.predict(data)``."""
    return model.predict(data)


def predict_proba(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """``model.predict_proba(data)``, if the estimator has it."""
    if not callable(getattr(model, "predict_proba", None)):
        raise InvalidArgument(f"a {type(model).__name__} does not predict probabilities")
    return model.predict_proba(data)

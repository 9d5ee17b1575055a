"""Predictor: a loaded model package, predicting through its signature and its flavor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.models.flavors import Flavor
    from loopml.models.package import Manifest
    from loopml.models.signature import Signature


class Predictor:
    """A model read from a package (see :func:`loopml.models.package.load_package`).

    ``model`` is the framework's own object (an sklearn estimator, an xgboost model, a lightgbm
    ``Booster``, an onnxruntime ``InferenceSession``, or the python object). Inputs are checked
    against the signature, when the package has one, before the model sees them.
    """

    def __init__(self, manifest: Manifest, model: Any, flavor: Flavor | None = None) -> None:
        from loopml.models.flavors import get_flavor

        self.manifest = manifest
        self.model = model
        self.flavor = manifest.flavor
        self._flavor = flavor or get_flavor(manifest.flavor)

    @property
    def signature(self) -> Signature | None:
        """The package's signature, if it has one."""
        return self.manifest.signature

    def prepare(self, data: Any) -> Any:
        """Validate ``data`` with the signature (or turn columns into a DataFrame without one)."""
        if self.signature is not None:
            return self.signature.validate(data)
        if isinstance(data, Mapping) or (
            isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data)
        ):
            from loopml.models.signature import _to_frame

            return _to_frame(data)
        return data

    def predict(self, data: Any) -> Any:
        """Predictions for ``data`` (a numpy array or a DataFrame, as the framework returns)."""
        return self._flavor.predict(self.model, self.prepare(data), self.manifest.metadata)

    def predict_prepared(self, data: Any) -> Any:
        """Predictions for input :meth:`prepare` already returned (the serving hot path checks
        each request once, then batches them)."""
        return self._flavor.predict(self.model, data, self.manifest.metadata)

    def predict_proba(self, data: Any) -> Any:
        """Class probabilities for ``data``; :class:`~loopml.errors.InvalidArgument` if none."""
        return self._flavor.predict_proba(self.model, self.prepare(data), self.manifest.metadata)

    def __repr__(self) -> str:
        m = self.manifest
        return f"Predictor(flavor={m.flavor!r}, framework={m.framework} {m.framework_version})"

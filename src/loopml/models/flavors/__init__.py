"""Flavors: how each framework's model is written to, and read from, a package directory.

A flavor is a module (imported lazily by name, so its framework loads only when used) with:

* ``save(model, directory) -> SavedModel``: write the model's files into ``directory``;
* ``load(directory, manifest, *, trust, recorded_digest) -> model``: read them back (pickle only
  through :mod:`loopml.models.trust`);
* ``predict(model, data, metadata)`` and ``predict_proba(model, data, metadata)``: call the model
  (in memory or loaded) on model-ready input; ``predict_proba`` raises
  :class:`~loopml.errors.InvalidArgument` when the model has no probabilities.

>>> detect_flavor(b"\\x08\\x07")
'onnx'
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from loopml.errors import InvalidArgument

if TYPE_CHECKING:
    from loopml.models.package import Manifest

FLAVORS: dict[str, str] = {
    "sklearn": "loopml.models.flavors.sklearn",
    "xgboost": "loopml.models.flavors.xgboost",
    "lightgbm": "loopml.models.flavors.lightgbm",
    "onnx": "loopml.models.flavors.onnx",
    "python": "loopml.models.flavors.python",
}
"""Flavor name -> module implementing it."""


@dataclass(frozen=True)
class SavedModel:
    """What a flavor's ``save`` wrote: the files, and what the manifest should say about them."""

    framework: str
    framework_version: str
    files: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()


class Flavor(Protocol):
    """The functions every flavor module defines (see the module docstring)."""

    def save(self, model: Any, directory: Path) -> SavedModel: ...

    def load(
        self, directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None
    ) -> Any: ...

    def predict(self, model: Any, data: Any, metadata: Mapping[str, Any]) -> Any: ...

    def predict_proba(self, model: Any, data: Any, metadata: Mapping[str, Any]) -> Any: ...


def get_flavor(name: str) -> Flavor:
    """Import and return the flavor module called ``name``."""
    module = FLAVORS.get(name)
    if module is None:
        raise InvalidArgument(f"unknown model flavor {name!r}; known: {', '.join(sorted(FLAVORS))}")
    return cast(Flavor, importlib.import_module(module))


def detect_flavor(model: Any) -> str:
    """Tell the flavor of ``model`` from its type, without importing any framework.

    xgboost and lightgbm are checked before scikit-learn (their sklearn wrappers subclass
    sklearn's ``BaseEstimator``); any other object with a callable ``predict`` is ``python``.
    """
    if isinstance(model, bytes | bytearray | memoryview):
        return "onnx"
    roots = {c.__module__.split(".")[0] for c in type(model).__mro__}
    for root, name in (("onnx", "onnx"), ("xgboost", "xgboost"), ("lightgbm", "lightgbm")):
        if root in roots:
            return name
    if "sklearn" in roots:
        return "sklearn"
    if callable(getattr(model, "predict", None)):
        return "python"
    raise InvalidArgument(
        f"cannot tell the flavor of a {type(model).__name__}: pass flavor= "
        f"({', '.join(sorted(FLAVORS))}) or give the object a predict method"
    )


def distribution_version(*names: str) -> tuple[str, str]:
    """The first installed distribution among ``names`` and its version (for requirements)."""
    from importlib import metadata

    for name in names:
        try:
            return name, metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return names[0], "unknown"


def pinned(*names: str) -> str:
    """``'name==version'`` for the first installed distribution among ``names``."""
    name, version = distribution_version(*names)
    return name if version == "unknown" else f"{name}=={version}"


def need(module: str, install: str) -> Any:
    """Import ``module`` or raise :class:`~loopml.errors.MissingDependency` saying how to get it.

    ``install`` is what to pip install: an extra (``"loopml[xgboost]"``) or a core dependency.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        from loopml.errors import MissingDependency

        raise MissingDependency(
            f"{module!r} is not installed; install it with: pip install '{install}'"
        ) from e

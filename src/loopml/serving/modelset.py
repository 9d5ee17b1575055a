"""What an inference server serves: a :class:`ModelSet` of :class:`ServedModel` objects.

The app asks its model set which model answers a request (:meth:`ModelSet.route`: the primary and
any shadows) or looks one up by name (:meth:`ModelSet.get`, for the OIP routes). ``loopml serve
MODEL_REF`` serves a :class:`SingleModel`; a deployment-backed set (weighted routing, hot reload)
implements the same protocol. A set hands out :class:`ServedModel` objects and may replace them at
any time; the app attaches a batcher to each the first time it sees it.

>>> class Echo:
...     flavor, signature = "python", None
...     def prepare(self, data): return data
...     def predict(self, data): return data
>>> models = SingleModel("echo", "1", Echo())
>>> primary, shadows = models.route(None)
>>> primary.name, primary.version, shadows, models.names()
('echo', '1', [], ['echo'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from loopml.errors import NotFound

if TYPE_CHECKING:
    from loopml.models.signature import Signature
    from loopml.serving.batching import MicroBatcher


class PredictorLike(Protocol):
    """What the server needs of a model: :class:`loopml.models.predictor.Predictor` has it."""

    flavor: str

    @property
    def signature(self) -> Signature | None: ...

    def prepare(self, data: Any) -> Any:
        """Validate ``data`` against the signature (raising InvalidArgument) into model input."""

    def predict(self, data: Any) -> Any: ...


@dataclass(eq=False)
class ServedModel:
    """One model version as served: its name, version and predictor (and the app's batcher)."""

    name: str
    version: str
    predictor: PredictorLike
    batcher: MicroBatcher | None = field(default=None, repr=False)

    @cached_property
    def metadata(self) -> dict[str, Any]:
        """The OIP metadata document, computed once."""
        from loopml.serving.protocol import model_metadata

        p = self.predictor
        return model_metadata(self.name, [self.version], p.flavor, p.signature)


class ModelSet(Protocol):
    """The models an inference server answers with."""

    def names(self) -> list[str]:
        """The model names served (what ``/v2/models/{name}`` accepts)."""
        ...

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The model called ``name`` (at ``version``), or :class:`~loopml.errors.NotFound`."""
        ...

    def served(self) -> list[ServedModel]:
        """Every model version answering here, shadows too (the OIP repository index)."""
        ...

    def route(
        self, key: str | None, name: str | None = None
    ) -> tuple[ServedModel, list[ServedModel]]:
        """Who answers a request: (primary, shadows). ``key`` (a routing key, or ``None``) lets a
        weighted set keep a caller on one model; ``name`` limits the choice to that model's
        traffic (the OIP routes name the model)."""
        ...

    def ready(self) -> bool:
        """True once every model is loaded and can answer."""
        ...


class SingleModel:
    """One model (plus optional shadows that see the same inputs); what ``loopml serve`` serves."""

    def __init__(
        self, name: str, version: str, predictor: PredictorLike,
        shadows: Sequence[ServedModel] = (),
    ) -> None:  # fmt: skip
        self.primary = ServedModel(name, version, predictor)
        self.shadows = list(shadows)

    def names(self) -> list[str]:
        return [self.primary.name]

    def served(self) -> list[ServedModel]:
        return [self.primary, *self.shadows]

    def get(self, name: str, version: str | None = None) -> ServedModel:
        for served in (self.primary, *self.shadows):
            if served.name == name and version in (None, served.version):
                return served
        which = f"{name!r}" if version is None else f"{name!r} version {version!r}"
        raise NotFound(
            f"no model {which} here; this server serves {self.primary.name!r} "
            f"version {self.primary.version!r}"
        )

    def route(
        self, key: str | None, name: str | None = None
    ) -> tuple[ServedModel, list[ServedModel]]:
        if name is not None and name != self.primary.name:
            return self.get(name), []
        return self.primary, self.shadows

    def ready(self) -> bool:
        return True

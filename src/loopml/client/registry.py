"""The registry verbs MLflow users know, with MLflow's names, argument order and return types.

:class:`~loopml.client.Client` delegates its ``create_registered_model``,
``set_registered_model_alias``, ``get_model_version_by_alias`` … here. The actor is the
client's (its settings' user embedded; over HTTP the server takes the token's user), never an
argument. Versions come back with ``aliases`` filled, models with ``latest_versions`` (the
newest version in each stage); stages are ours (candidate, validated, approved, production,
archived), and MLflow's ``"None"`` means candidate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from loopml.errors import InvalidArgument, NotFound
from loopml.registry.entities import ModelVersion, RegisteredModel, Stage, parse_stage
from loopml.registry.search import matches, page_of, parse_registry_filter
from loopml.tracking.entities import Page
from loopml.tracking.validation import validate_key

if TYPE_CHECKING:
    from loopml.client.tracking import TrackingCalls
    from loopml.registry.api import ModelRegistry

MODEL_ORDER = {
    "name": lambda m: m.name,
    "creation_timestamp": lambda m: m.created_time,
    "last_updated_timestamp": lambda m: m.updated_time,
}
VERSION_ORDER = {
    "name": lambda v: v.name,
    "version_number": lambda v: v.version,
    "creation_timestamp": lambda v: v.created_time,
    "last_updated_timestamp": lambda v: v.updated_time,
}


class RegistryVerbs:
    def __init__(self, registry: Callable[[], ModelRegistry], runs: TrackingCalls) -> None:
        self._registry = registry  # raises Unavailable when the store has no registry
        self._runs = runs

    @property
    def _actor(self) -> str:
        return self._runs.actor

    # registered models -----------------------------------------------------------------------
    def create_registered_model(
        self, name: str, tags: Mapping[str, str] | None = None, description: str | None = None
    ) -> RegisteredModel:
        """A new registered model (in the default project; ``loopml models create`` or
        ``client.registry`` choose another)."""
        return self._registry().create_registered_model(
            name, actor=self._actor, description=description or "", tags=_tags(tags)
        )

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._with_latest(self._registry().get_registered_model(name))

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100,
        order_by: Sequence[str] | None = None, page_token: str | None = None,
    ) -> Page[RegisteredModel]:  # fmt: skip
        """Models matching e.g. ``name LIKE 'fraud%'``, sorted by name unless ``order_by`` says."""
        clauses = parse_registry_filter(filter_string, ("name",))
        found = [
            m for m in self._registry().list_registered_models()
            if matches(clauses, {"name": m.name, **_tag_values(m.tags)})
        ]  # fmt: skip
        page = page_of(found, order_by=order_by, orderings=MODEL_ORDER, default=["name"],
                       max_results=max_results, page_token=page_token)  # fmt: skip
        return Page([self._with_latest(m) for m in page], page.next_page_token)

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        return self._with_latest(
            self._registry().update_registered_model(
                name, actor=self._actor, description=description
            )
        )

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        tags = self._registry().get_registered_model(name).tags
        self._registry().update_registered_model(
            name, actor=self._actor, tags={**tags, **_tags({key: value})}
        )

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        tags = dict(self._registry().get_registered_model(name).tags)
        if tags.pop(key, None) is None:
            raise NotFound(f"model {name!r} has no tag {key!r}")
        self._registry().update_registered_model(name, actor=self._actor, tags=tags)

    # versions ----------------------------------------------------------------------------------
    def create_model_version(
        self, name: str, source: str, run_id: str | None = None,
        tags: Mapping[str, str] | None = None, description: str | None = None,
    ) -> ModelVersion:  # fmt: skip
        """Register the package logged at ``source`` (``runs:/<run_id>/<path>``, or a path in
        the run ``run_id``) as the next version of the existing model ``name``."""
        version = self._registry().create_model_version(
            name, _source(source, run_id), actor=self._actor, description=description or "",
            tags=_tags(tags),
        )  # fmt: skip
        return self._with_aliases(version)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self._with_aliases(self._registry().get_model_version(name, _number(version)))

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 10_000,
        order_by: Sequence[str] | None = None, page_token: str | None = None,
    ) -> Page[ModelVersion]:  # fmt: skip
        """Versions matching e.g. ``name = 'fraud'`` or ``run_id = '…'``; by name, then newest
        version first, unless ``order_by`` says otherwise."""
        clauses = parse_registry_filter(filter_string, ("name", "run_id", "source"))
        registry = self._registry()
        named = {c.value for c in clauses if c.key == "name" and c.op == "="}
        if len(named) > 1:
            names: list[str] = []
        elif named:
            names = list(named)
        else:
            names = [m.name for m in registry.list_registered_models()]
        found = []
        for model in names:
            try:
                versions = registry.list_model_versions(model)
            except NotFound:
                continue
            found += [v for v in versions if matches(clauses, _version_values(v))]
        page = page_of(found, order_by=order_by, orderings=VERSION_ORDER,
                       default=["name", "version_number DESC"], max_results=max_results,
                       page_token=page_token)  # fmt: skip
        aliases = {m: self._aliases(m) for m in {v.name for v in page}}
        return Page([_aliased(v, aliases[v.name]) for v in page], page.next_page_token)

    def update_model_version(
        self, name: str, version: int | str, description: str | None = None
    ) -> ModelVersion:
        updated = self._registry().update_model_version(
            name, _number(version), actor=self._actor, description=description
        )
        return self._with_aliases(updated)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        number = _number(version)
        tags = self._registry().get_model_version(name, number).tags
        self._registry().update_model_version(
            name, number, actor=self._actor, tags={**tags, **_tags({key: value})}
        )

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        number = _number(version)
        tags = dict(self._registry().get_model_version(name, number).tags)
        if tags.pop(key, None) is None:
            raise NotFound(f"model {name!r} version {number} has no tag {key!r}")
        self._registry().update_model_version(name, number, actor=self._actor, tags=tags)

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        """The newest version in each of ``stages`` (every stage when None) that has one."""
        wanted = None if stages is None else {_stage(s) for s in _strings(stages, "stages")}
        newest = _newest_per_stage(self._registry().list_model_versions(name))
        aliases = self._aliases(name)
        return [_aliased(v, aliases) for s, v in newest.items() if wanted is None or s in wanted]

    # aliases -----------------------------------------------------------------------------------
    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        self._registry().set_alias(name, alias, _number(version), actor=self._actor)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._registry().delete_alias(name, alias, actor=self._actor)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._with_aliases(self._registry().get_version_by_alias(name, alias))

    # filling MLflow's attributes ------------------------------------------------------------
    def _aliases(self, name: str) -> Mapping[str, int]:
        return self._registry().get_registered_model(name).aliases

    def _with_aliases(self, version: ModelVersion) -> ModelVersion:
        return _aliased(version, self._aliases(version.name))

    def _with_latest(self, model: RegisteredModel) -> RegisteredModel:
        newest = _newest_per_stage(self._registry().list_model_versions(model.name))
        latest = tuple(_aliased(v, model.aliases) for v in newest.values())
        return dataclasses.replace(model, latest_versions=latest)


def _aliased(version: ModelVersion, aliases: Mapping[str, int]) -> ModelVersion:
    names = tuple(sorted(a for a, n in aliases.items() if n == version.version))
    return dataclasses.replace(version, aliases=names)


def _newest_per_stage(versions: Sequence[ModelVersion]) -> dict[Stage, ModelVersion]:
    newest: dict[Stage, ModelVersion] = {}
    for v in versions:
        if v.stage not in newest or v.version > newest[v.stage].version:
            newest[v.stage] = v
    return {s: newest[s] for s in Stage if s in newest}


def _version_values(v: ModelVersion) -> dict[str, str | None]:
    return {"name": v.name, "run_id": v.run_id, "source": v.source, **_tag_values(v.tags)}


def _tag_values(tags: Mapping[str, str]) -> dict[str, str | None]:
    return {f"tags.{k}": v for k, v in tags.items()}


def _tags(tags: Mapping[str, str] | None) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise InvalidArgument(f"tags must be a mapping of strings, got {type(tags).__name__}")
    return {validate_key(str(k), "tag"): str(v) for k, v in tags.items()}


def _number(version: int | str) -> int:
    """MLflow passes versions as strings ("3"); ours are positive integers."""
    if isinstance(version, str) and version.strip().isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidArgument(f"a model version is a positive integer, got {version!r}")
    return version


def _stage(value: str) -> Stage:
    return Stage.CANDIDATE if str(value).strip().lower() == "none" else parse_stage(value)


def _strings(values: Sequence[str], what: str) -> Sequence[str]:
    if isinstance(values, str):
        raise InvalidArgument(f"{what} must be a list of strings, not a single string")
    return values


def _source(source: str, run_id: str | None) -> str:
    """``runs:/<run_id>/<path>`` for MLflow's source forms: a ``runs:/`` URI (whose run must be
    ``run_id`` when given), or, with ``run_id``, the run's artifact location or a path in it."""
    if not isinstance(source, str):
        raise InvalidArgument(f"source must be a string, got {type(source).__name__}")
    if source.startswith("runs:/") or run_id is None:
        if run_id is not None and source[len("runs:/") :].partition("/")[0] != run_id:
            raise InvalidArgument(f"source {source!r} is not in run {run_id!r}")
        return source
    marker = f"{run_id}/artifacts/"
    path = source.split(marker, 1)[1] if marker in source else source
    if "://" in path or path.startswith("models:"):
        raise InvalidArgument(
            f"source {source!r} is not a path in run {run_id!r}: pass 'runs:/<run_id>/<path>'"
        )
    return f"runs:/{run_id}/{path}"

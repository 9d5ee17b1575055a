"""Client: the explicit facade over every stage. The fluent API (``loopml.log_metric`` …) uses one.

Tracking is the Client's base (:class:`~loopml.client.tracking.TrackingCalls`); each other stage
is an attribute built from the Stack (``client.registry``, ``client.models``,
``client.deployments``, and later ``client.data``, ``client.monitoring``, ``client.pipelines``,
``client.ct``), and the MLflow-habit verbs on the Client delegate to those modules.

>>> import tempfile, loopml
>>> client = loopml.Client(loopml.Settings(home=tempfile.mkdtemp()))
>>> client.create_project("fraud", business_goal="stop card fraud").business_goal
'stop card fraud'
>>> client.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loopml.client.models import ModelCalls, ModelInfo
from loopml.client.projects import ProjectCalls
from loopml.client.registry import RegistryVerbs
from loopml.client.tracking import TrackingCalls
from loopml.errors import Unavailable

if TYPE_CHECKING:
    from loopml.governance.audit import AuditEvent, ChainReport
    from loopml.models.evaluation import EvaluationResult, KpiCheck
    from loopml.models.predictor import Predictor
    from loopml.projects.entities import Kpi, Okr, Project
    from loopml.registry.api import ModelRegistry
    from loopml.registry.entities import ModelVersion, RegisteredModel
    from loopml.serving.deployment_store import DeploymentRegistry
    from loopml.settings import Settings
    from loopml.stack import Stack
    from loopml.tracking.entities import Page


class Client(TrackingCalls):
    """Talks to one loopml stack: metadata store plus artifact store.

    ``Client()`` reads the settings (``LOOPML_*`` environment or ``loopml.toml``);
    ``Client(Settings(...))`` or ``Client(stack)`` wires it explicitly.
    """

    def __init__(self, target: Stack | Settings | None = None) -> None:
        from loopml.settings import Settings
        from loopml.stack import Stack

        if target is None:
            target = Settings()
        super().__init__(target if isinstance(target, Stack) else Stack.from_settings(target))
        self.projects = ProjectCalls(self.stack.projects, self.actor)
        self.models = ModelCalls(self, lambda: self.registry, self.stack.projects)
        self._registry_verbs = RegistryVerbs(lambda: self.registry, self)

    # stages ----------------------------------------------------------------------------------
    @property
    def registry(self) -> ModelRegistry:
        """Registered models, versions, aliases, gates and approvals (the stage's own calls,
        each naming its actor; the MLflow-named verbs below take it from the settings)."""
        if self.stack.registry is None:
            raise Unavailable("this store has no model registry")
        return self.stack.registry

    @property
    def deployments(self) -> DeploymentRegistry:
        """Deployments: which model versions a served name routes to, and how."""
        if self.stack.deployments is None:
            raise Unavailable("this store has no deployments")
        return self.stack.deployments

    # projects --------------------------------------------------------------------------------
    def create_project(
        self, name: str, *, business_goal: str = "", description: str = "", owner: str = ""
    ) -> Project:
        return self.projects.create_project(
            name, business_goal=business_goal, description=description, owner=owner
        )

    def get_project(self, name_or_id: str) -> Project:
        return self.projects.get_project(name_or_id)

    def list_projects(self) -> list[Project]:
        return self.projects.list_projects()

    def update_project(
        self,
        name_or_id: str,
        *,
        business_goal: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> Project:
        return self.projects.update_project(
            name_or_id, business_goal=business_goal, description=description, owner=owner
        )

    def add_okr(
        self, project: str, objective: str, key_results: Sequence[str] = (), *, owner: str = ""
    ) -> Okr:
        return self.projects.add_okr(project, objective, key_results, owner=owner)

    def add_kpi(
        self,
        project: str,
        name: str,
        *,
        metric: str,
        target: float,
        direction: str = "maximize",
        judged_at: str = "validation",
        description: str = "",
        owner: str = "",
    ) -> Kpi:
        """A KPI reads ``metric`` and is met when it reaches ``target`` in ``direction``."""
        return self.projects.add_kpi(
            project, name, metric=metric, target=target, direction=direction,
            judged_at=judged_at, description=description, owner=owner,
        )  # fmt: skip

    def update_kpi(self, project: str, name: str, **changes: Any) -> Kpi:
        return self.projects.update_kpi(project, name, **changes)

    # models ----------------------------------------------------------------------------------
    def log_model(self, run_id: str, model: Any, name: str = "model", **options: Any) -> ModelInfo:
        """Save ``model`` as a safe package in the run (:meth:`ModelCalls.log_model`)."""
        return self.models.log_model(run_id, model, name, **options)

    def register_model(self, source: str, name: str, **options: Any) -> ModelVersion:
        """Register the package at ``runs:/<run_id>/<path>`` as the next version of ``name``."""
        return self.models.register_model(source, name, **options)

    def load_model(self, ref: str, *, trust: bool | None = None) -> Predictor:
        """Load ``runs:/…``, ``models:/name/3`` or ``models:/name@alias`` (digests verified)."""
        return self.models.load_model(ref, trust=trust)

    def evaluate(
        self, ref: str, data: Any, **options: Any
    ) -> tuple[EvaluationResult, list[KpiCheck]]:
        """Metrics per slice, plots, report and KPI checks of a model on ``data``."""
        return self.models.evaluate(ref, data, **options)

    # the registry, as MLflow's client calls it (:mod:`loopml.client.registry`) ---------------
    def create_registered_model(
        self, name: str, tags: Mapping[str, str] | None = None, description: str | None = None
    ) -> RegisteredModel:
        return self._registry_verbs.create_registered_model(name, tags, description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._registry_verbs.get_registered_model(name)

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100,
        order_by: Sequence[str] | None = None, page_token: str | None = None,
    ) -> Page[RegisteredModel]:  # fmt: skip
        return self._registry_verbs.search_registered_models(
            filter_string, max_results, order_by, page_token
        )

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        return self._registry_verbs.update_registered_model(name, description)

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._registry_verbs.set_registered_model_tag(name, key, value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._registry_verbs.delete_registered_model_tag(name, key)

    def create_model_version(
        self, name: str, source: str, run_id: str | None = None,
        tags: Mapping[str, str] | None = None, description: str | None = None,
    ) -> ModelVersion:  # fmt: skip
        return self._registry_verbs.create_model_version(name, source, run_id, tags, description)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self._registry_verbs.get_model_version(name, version)

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 10_000,
        order_by: Sequence[str] | None = None, page_token: str | None = None,
    ) -> Page[ModelVersion]:  # fmt: skip
        return self._registry_verbs.search_model_versions(
            filter_string, max_results, order_by, page_token
        )

    def update_model_version(
        self, name: str, version: int | str, description: str | None = None
    ) -> ModelVersion:
        return self._registry_verbs.update_model_version(name, version, description)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self._registry_verbs.set_model_version_tag(name, version, key, value)

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        self._registry_verbs.delete_model_version_tag(name, version, key)

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        return self._registry_verbs.get_latest_versions(name, stages)

    def set_registered_model_alias(self, name: str, alias: str, version: int | str) -> None:
        self._registry_verbs.set_registered_model_alias(name, alias, version)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self._registry_verbs.delete_registered_model_alias(name, alias)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self._registry_verbs.get_model_version_by_alias(name, alias)

    # audit -----------------------------------------------------------------------------------
    def audit_events(self, **filters: Any) -> list[AuditEvent]:
        return self.stack.audit.list_events(**filters)

    def verify_audit(self) -> ChainReport:
        return self.stack.audit.verify()

    def close(self) -> None:
        """Flush buffered metrics, stop the background writer, release connections."""
        try:
            self._buffer.close()
        finally:
            self.stack.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

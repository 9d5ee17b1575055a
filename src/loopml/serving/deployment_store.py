"""The two faces of deployments: what a metadata backend keeps (:class:`DeploymentStore`) and what
callers use (:class:`DeploymentRegistry`: the embedded
:class:`~loopml.serving.deployment_service.DeploymentService` or the remote
``loopml.backends.http.deployments.HttpDeployments``, the same calls either way).

A store keeps the records and makes each change atomic, with its revision row and its audit event
in the same transaction; the service checks what the store cannot see (that the models, versions
and aliases a spec names exist in the registry).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from loopml.serving.deployments import Deployment, DeploymentRevision, DeploymentSpec


class DeploymentStore(Protocol):
    def create_deployment(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        project: str | None,
        description: str,
        actor: str,
    ) -> Deployment:
        """Revision 1 (reason ``create``); AlreadyExists if the name is taken."""
        ...

    def get_deployment(self, name: str) -> Deployment: ...

    def list_deployments(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[Deployment]: ...

    def update_deployment(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        actor: str,
        expected_revision: int | None,
        reason: str,
        action: str = "deployment.update",
        skip_unchanged: bool = False,
    ) -> Deployment:
        """The next revision with ``spec``; Conflict when the deployment is no longer at
        ``expected_revision``. With ``skip_unchanged`` an equal spec changes nothing."""
        ...

    def get_revision(self, name: str, revision: int) -> DeploymentRevision: ...

    def list_revisions(self, name: str) -> list[DeploymentRevision]: ...

    def delete_deployment(self, name: str, *, actor: str) -> None:
        """The deployment and its revisions (the audit log keeps their story)."""
        ...


class DeploymentRegistry(Protocol):
    def create_deployment(
        self, name: str, spec: DeploymentSpec, *, actor: str, project: str | None = None,
        description: str = "",
    ) -> Deployment: ...  # fmt: skip

    def get_deployment(self, name: str) -> Deployment: ...

    def list_deployments(self) -> list[Deployment]: ...

    def update_deployment(
        self, name: str, spec: DeploymentSpec, *, actor: str,
        expected_revision: int | None = None, reason: str = "update",
    ) -> Deployment: ...  # fmt: skip

    def set_traffic(self, name: str, weights: Mapping[str, float], *, actor: str) -> Deployment: ...

    def rollback(self, name: str, *, actor: str, to_revision: int | None = None) -> Deployment: ...

    def history(self, name: str) -> list[DeploymentRevision]: ...

    def delete_deployment(self, name: str, *, actor: str) -> None: ...

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
from typing import Any, Protocol

from loopml.serving.deployments import Deployment, DeploymentRevision, DeploymentSpec
from loopml.serving.predlog_records import HourCompaction, LogPolicy, LogStatus, PruneResult


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
        """The deployment and its revisions (the audit log keeps their story); Conflict while
        it is on legal hold."""
        ...

    def get_log_policy(self, name: str) -> LogPolicy: ...

    def set_log_policy(
        self, name: str, *, retention_days: int | None, legal_hold: bool, actor: str
    ) -> LogPolicy:
        """Store the policy (audited as ``deployment.log_policy``; an unchanged one is not)."""
        ...

    def record_log_prune(
        self, name: str, *, seen: LogPolicy, actor: str, change: dict[str, Any]
    ) -> None:
        """Audit a prune (``deployment.log_prune``) before its files go; Conflict when the
        deployment is on hold or its policy is no longer ``seen``."""
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

    # the prediction log (retention, legal hold, compaction, pruning)
    def log_status(self, name: str) -> LogStatus:
        """The policy as it applies now and what the log holds."""
        ...

    def set_log_policy(
        self, name: str, *, actor: str, retention_days: int | None = None,
        default_retention: bool = False, legal_hold: bool | None = None,
    ) -> LogStatus:  # fmt: skip
        """Change what is given: ``retention_days`` (never below the server's floor), back to
        the server's default with ``default_retention``, or the ``legal_hold``."""
        ...

    def compact_log(
        self, name: str, *, actor: str, hour_ms: int | None = None
    ) -> list[HourCompaction]:
        """Compact one hour (``hour_ms``) or every compactable hour of the log."""
        ...

    def prune_log(self, name: str, *, actor: str) -> list[PruneResult]:
        """Remove the hours past retention (nothing on legal hold); one result per audit event."""
        ...

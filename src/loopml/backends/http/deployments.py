"""HttpDeployments: deployments over ``/api/v1/deployments`` (the server checks and records)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from loopml.backends.http.transport import HttpTransport
from loopml.serving.deployment_service import as_spec
from loopml.serving.deployments import (
    Deployment,
    DeploymentRevision,
    DeploymentSpec,
    validate_deployment_name,
)
from loopml.serving.predlog_records import HourCompaction, LogStatus, PruneResult


def _d(name: str, *rest: str) -> str:
    # Checked here: a '/' in a name would otherwise just miss the route.
    validate_deployment_name(name)
    return "/".join([f"/api/v1/deployments/{quote(name, safe='')}", *rest])


class HttpDeployments:
    """The same calls as :class:`~loopml.serving.deployment_service.DeploymentService`; the
    actor is the server's to decide (the caller's credentials), so it is not sent."""

    def __init__(self, transport: HttpTransport) -> None:
        self._http = transport

    def create_deployment(
        self, name: str, spec: DeploymentSpec | Mapping[str, Any], *, actor: str,
        project: str | None = None, description: str = "",
    ) -> Deployment:  # fmt: skip
        validate_deployment_name(name)
        body = {"name": name, "project": project, "description": description,
                "spec": as_spec(spec).to_dict()}  # fmt: skip
        return Deployment.from_dict(self._http.request("POST", "/api/v1/deployments", json=body))

    def get_deployment(self, name: str) -> Deployment:
        return Deployment.from_dict(self._http.request("GET", _d(name)))

    def list_deployments(self) -> list[Deployment]:
        return [Deployment.from_dict(d) for d in self._http.request("GET", "/api/v1/deployments")]

    def update_deployment(
        self, name: str, spec: DeploymentSpec | Mapping[str, Any], *, actor: str,
        expected_revision: int | None = None, reason: str = "update",
    ) -> Deployment:  # fmt: skip
        body = {"spec": as_spec(spec).to_dict(), "expected_revision": expected_revision,
                "reason": reason}  # fmt: skip
        return Deployment.from_dict(self._http.request("PUT", _d(name), json=body))

    def set_traffic(self, name: str, weights: Mapping[str, float], *, actor: str) -> Deployment:
        body = {"weights": dict(weights)}
        return Deployment.from_dict(self._http.request("POST", _d(name, "traffic"), json=body))

    def rollback(self, name: str, *, actor: str, to_revision: int | None = None) -> Deployment:
        body = {"to_revision": to_revision}
        return Deployment.from_dict(self._http.request("POST", _d(name, "rollback"), json=body))

    def history(self, name: str) -> list[DeploymentRevision]:
        found = self._http.request("GET", _d(name, "history"))
        return [DeploymentRevision.from_dict(d) for d in found]

    def delete_deployment(self, name: str, *, actor: str) -> None:
        self._http.request("DELETE", _d(name))

    def log_status(self, name: str) -> LogStatus:
        return LogStatus.from_dict(self._http.request("GET", _d(name, "log")))

    def set_log_policy(
        self, name: str, *, actor: str, retention_days: int | None = None,
        default_retention: bool = False, legal_hold: bool | None = None,
    ) -> LogStatus:  # fmt: skip
        body = {"retention_days": retention_days, "default_retention": default_retention,
                "legal_hold": legal_hold}  # fmt: skip
        return LogStatus.from_dict(self._http.request("PUT", _d(name, "log", "policy"), json=body))

    def compact_log(
        self, name: str, *, actor: str, hour_ms: int | None = None
    ) -> list[HourCompaction]:
        found = self._http.request("POST", _d(name, "log", "compact"), json={"hour_ms": hour_ms})
        return [HourCompaction.from_dict(d) for d in found]

    def prune_log(self, name: str, *, actor: str) -> list[PruneResult]:
        found = self._http.request("POST", _d(name, "log", "prune"))
        return [PruneResult.from_dict(d) for d in found]

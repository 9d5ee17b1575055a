"""HttpRegistry: the model registry over ``/api/v1`` (the server runs the rules and the gates)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from loopml.backends.http.transport import HttpTransport
from loopml.registry.entities import (
    Approval,
    ApprovalRequest,
    ApprovalStatus,
    GateCheck,
    GateReport,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    RiskTier,
    Stage,
    Webhook,
    validate_alias,
)


def _m(name: str, *rest: str | int) -> str:
    return "/".join(
        [f"/api/v1/models/{quote(name, safe='')}", *(quote(str(r), safe="") for r in rest)]
    )


def _model(d: dict[str, Any]) -> RegisteredModel:
    latest = tuple(_version(v) for v in d.get("latest_versions", ()))
    return RegisteredModel(
        **{**d, "risk_tier": RiskTier(d["risk_tier"]), "latest_versions": latest}
    )


def _version(d: dict[str, Any]) -> ModelVersion:
    return ModelVersion(**{**d, "stage": Stage(d["stage"]), "datasets": tuple(d["datasets"]),
                           "aliases": tuple(d.get("aliases", ()))})  # fmt: skip


def _report(d: dict[str, Any]) -> GateReport:
    return GateReport(**{**d, "target": Stage(d["target"]),
                         "checks": tuple(GateCheck(**c) for c in d["checks"])})  # fmt: skip


def _request(d: dict[str, Any]) -> ApprovalRequest:
    return ApprovalRequest(**{
        **d, "target": Stage(d["target"]), "status": ApprovalStatus(d["status"]),
        "required_roles": tuple(d["required_roles"]),
        "decisions": tuple(Approval(**a) for a in d["decisions"]),
    })  # fmt: skip


class HttpRegistry:
    """The same calls as :class:`~loopml.registry.service.RegistryService`; ``actor`` and
    ``roles`` are the server's to decide (the caller's credentials), so they are not sent."""

    def __init__(self, transport: HttpTransport) -> None:
        self._http = transport

    def create_registered_model(
        self, name: str, *, actor: str, project: str | None = None, description: str = "",
        owner: str = "", risk_tier: str | RiskTier = RiskTier.MEDIUM, intended_use: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:  # fmt: skip
        body = {"name": name, "project": project, "description": description, "owner": owner,
                "risk_tier": str(RiskTier(risk_tier) if isinstance(risk_tier, RiskTier)
                                 else risk_tier),
                "intended_use": intended_use, "tags": dict(tags or {})}  # fmt: skip
        return _model(self._http.request("POST", "/api/v1/models", json=body))

    def get_registered_model(self, name: str) -> RegisteredModel:
        return _model(self._http.request("GET", _m(name)))

    def list_registered_models(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[RegisteredModel]:
        models = [_model(d) for d in self._http.request("GET", "/api/v1/models")]
        if project_ids is not None:
            models = [m for m in models if m.project_id in set(project_ids)]
        return models

    def update_registered_model(
        self, name: str, *, actor: str, description: str | None = None, owner: str | None = None,
        risk_tier: str | RiskTier | None = None, intended_use: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:  # fmt: skip
        body = {"description": description, "owner": owner, "intended_use": intended_use,
                "risk_tier": None if risk_tier is None else str(risk_tier),
                "tags": None if tags is None else dict(tags)}  # fmt: skip
        return _model(self._http.request("PATCH", _m(name), json=body))

    def create_model_version(
        self, name: str, source: str, *, actor: str, description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        body = {"source": source, "description": description, "tags": dict(tags or {})}
        return _version(self._http.request("POST", _m(name, "versions"), json=body))

    def update_model_version(
        self, name: str, version: int, *, actor: str, description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        body = {"description": description, "tags": None if tags is None else dict(tags)}
        return _version(self._http.request("PATCH", _m(name, "versions", version), json=body))

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return _version(self._http.request("GET", _m(name, "versions", version)))

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        return [_version(d) for d in self._http.request("GET", _m(name, "versions"))]

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return _version(self._http.request("GET", _m(name, "aliases", alias)))

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        validate_alias(alias)  # here: a '/' in it would otherwise just miss the route
        self._http.request("PUT", _m(name, "aliases", alias), json={"version": version})

    def delete_alias(self, name: str, alias: str, *, actor: str) -> None:
        self._http.request("DELETE", _m(name, "aliases", alias))

    def set_policy(self, name: str, policy: PromotionPolicy, *, actor: str) -> None:
        self._http.request("PUT", _m(name, "policy"), json=policy.to_dict())

    def get_policy(self, name: str) -> PromotionPolicy:
        return PromotionPolicy.from_dict(self._http.request("GET", _m(name, "policy")))

    def check_gates(
        self, name: str, version: int, *, target: str | Stage, actor: str
    ) -> GateReport:
        body = {"target": str(Stage(target) if isinstance(target, Stage) else target)}
        return _report(
            self._http.request("POST", _m(name, "versions", version, "gates"), json=body)
        )

    def list_gate_reports(self, name: str, version: int | None = None) -> list[GateReport]:
        params = {} if version is None else {"version": version}
        found = self._http.request("GET", _m(name, "gate-reports"), params=params)
        return [_report(d) for d in found]

    def override(self, report_id: str, *, actor: str, is_admin: bool, reason: str) -> GateReport:
        path = f"/api/v1/gate-reports/{quote(report_id, safe='')}/override"
        return _report(self._http.request("POST", path, json={"reason": reason}))

    def promote(
        self, name: str, version: int, *, to: str | Stage, actor: str,
        report_id: str | None = None,
    ) -> ModelVersion:  # fmt: skip
        body = {"to": str(Stage(to) if isinstance(to, Stage) else to), "report_id": report_id}
        return _version(self._http.request("POST", _m(name, "versions", version, "promote"),
                                           json=body))  # fmt: skip

    def request_approval(
        self, name: str, version: int, *, actor: str, comment: str = ""
    ) -> ApprovalRequest:
        path = _m(name, "versions", version, "approval-requests")
        return _request(self._http.request("POST", path, json={"comment": comment}))

    def get_approval_request(self, request_id: str) -> ApprovalRequest:
        path = f"/api/v1/approval-requests/{quote(request_id, safe='')}"
        return _request(self._http.request("GET", path))

    def list_approval_requests(
        self, name: str | None = None, version: int | None = None,
        status: ApprovalStatus | None = None,
    ) -> list[ApprovalRequest]:  # fmt: skip
        params = {k: v for k, v in {"name": name, "version": version,
                                    "status": None if status is None else str(status)}.items()
                  if v is not None}  # fmt: skip
        found = self._http.request("GET", "/api/v1/approval-requests", params=params)
        return [_request(d) for d in found]

    def decide(
        self, request_id: str, *, actor: str, roles: Collection[str], approve: bool,
        comment: str = "",
    ) -> ApprovalRequest:  # fmt: skip
        path = f"/api/v1/approval-requests/{quote(request_id, safe='')}/decision"
        return _request(self._http.request("POST", path, json={"approve": approve,
                                                               "comment": comment}))  # fmt: skip

    def create_webhook(
        self, url: str, *, secret: str, events: Sequence[str] = (), model: str | None = None,
        actor: str,
    ) -> Webhook:  # fmt: skip
        body = {"url": url, "secret": secret, "events": list(events), "model": model}
        d = self._http.request("POST", "/api/v1/webhooks", json=body)
        return Webhook(**{**d, "events": tuple(d["events"])})

    def list_webhooks(self) -> list[Webhook]:
        return [Webhook(**{**d, "events": tuple(d["events"])})
                for d in self._http.request("GET", "/api/v1/webhooks")]  # fmt: skip

    def delete_webhook(self, webhook_id: str, *, actor: str) -> None:
        self._http.request("DELETE", f"/api/v1/webhooks/{quote(webhook_id, safe='')}")

"""REST routes of the model registry: models, versions, aliases, gates, approvals, webhooks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from loopml.errors import PermissionDenied
from loopml.registry.api import ModelRegistry
from loopml.registry.entities import (
    ApprovalRequest,
    ApprovalStatus,
    ChampionGate,
    GateReport,
    MetricGate,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    Webhook,
)
from loopml.registry.service import parse_source
from loopml.server.access import authenticated, caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import (
    ERROR_RESPONSES,
    AliasIn,
    ApprovalRequestIn,
    DecisionIn,
    GatesIn,
    ModelCreate,
    ModelUpdate,
    Ok,
    OverrideIn,
    PolicyIn,
    PromoteIn,
    VersionCreate,
    VersionUpdate,
    WebhookIn,
)
from loopml.server.scopes import index_of, model_scope, registry_of, stack_of

router = APIRouter(
    prefix="/api/v1", tags=["registry"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)
Version = Annotated[int, Path(ge=1, le=2**63 - 1)]
VersionQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


def _registry(request: Request) -> ModelRegistry:
    return registry_of(stack_of(request))


@router.get("/models", **protected("model.read"))
def list_models(request: Request) -> list[RegisteredModel]:
    caller = caller_of(request)
    return [
        m for m in _registry(request).list_registered_models()
        if caller.may("model.read", m.project_id)
    ]  # fmt: skip


@router.post("/models", status_code=201, **authenticated())
def create_model(request: Request, body: ModelCreate) -> RegisteredModel:
    caller = caller_of(request)
    caller.require("model.write", index_of(request).of_project(body.project or "default"))
    return _registry(request).create_registered_model(
        body.name, actor=caller.name, project=body.project, description=body.description,
        owner=body.owner, risk_tier=body.risk_tier, intended_use=body.intended_use,
        tags=body.tags,
    )  # fmt: skip


@router.get("/models/{name}", **protected("model.read", model_scope))
def get_model(request: Request, name: str) -> RegisteredModel:
    return _registry(request).get_registered_model(name)


@router.patch("/models/{name}", **protected("model.write", model_scope))
def update_model(request: Request, name: str, body: ModelUpdate) -> RegisteredModel:
    return _registry(request).update_registered_model(
        name, actor=caller_of(request).name, description=body.description, owner=body.owner,
        risk_tier=body.risk_tier, intended_use=body.intended_use, tags=body.tags,
    )  # fmt: skip


@router.get("/models/{name}/versions", **protected("model.read", model_scope))
def list_versions(request: Request, name: str) -> list[ModelVersion]:
    return _registry(request).list_model_versions(name)


@router.post("/models/{name}/versions", status_code=201, **protected("model.write", model_scope))
def create_version(request: Request, name: str, body: VersionCreate) -> ModelVersion:
    caller = caller_of(request)
    run_id, _ = parse_source(body.source)  # and the caller must be able to read that run
    caller.require("run.read", index_of(request).of_run(run_id))
    return _registry(request).create_model_version(
        name, body.source, actor=caller.name, description=body.description, tags=body.tags
    )


@router.get("/models/{name}/versions/{version}", **protected("model.read", model_scope))
def get_version(request: Request, name: str, version: Version) -> ModelVersion:
    return _registry(request).get_model_version(name, version)


@router.patch("/models/{name}/versions/{version}", **protected("model.write", model_scope))
def update_version(
    request: Request, name: str, version: Version, body: VersionUpdate
) -> ModelVersion:
    return _registry(request).update_model_version(
        name, version, actor=caller_of(request).name, description=body.description,
        tags=body.tags,
    )  # fmt: skip


@router.get("/models/{name}/aliases/{alias}", **protected("model.read", model_scope))
def get_alias(request: Request, name: str, alias: str) -> ModelVersion:
    return _registry(request).get_version_by_alias(name, alias)


@router.put("/models/{name}/aliases/{alias}", **protected("model.write", model_scope))
def set_alias(request: Request, name: str, alias: str, body: AliasIn) -> Ok:
    _registry(request).set_alias(name, alias, body.version, actor=caller_of(request).name)
    return Ok()


@router.delete("/models/{name}/aliases/{alias}", **protected("model.write", model_scope))
def delete_alias(request: Request, name: str, alias: str) -> Ok:
    _registry(request).delete_alias(name, alias, actor=caller_of(request).name)
    return Ok()


@router.get("/models/{name}/policy", **protected("model.read", model_scope))
def get_policy(request: Request, name: str) -> PolicyIn:
    return PolicyIn(**_registry(request).get_policy(name).to_dict())


@router.put("/models/{name}/policy", **protected("model.write", model_scope))
def set_policy(request: Request, name: str, body: PolicyIn) -> Ok:
    policy = PromotionPolicy(
        metric_gates=tuple(MetricGate(**g.model_dump()) for g in body.metric_gates),
        champion_gates=tuple(ChampionGate(**g.model_dump()) for g in body.champion_gates),
        require_kpis=body.require_kpis, required_artifacts=tuple(body.required_artifacts),
        production_approvers=tuple(body.production_approvers), champion_alias=body.champion_alias,
    )  # fmt: skip
    _registry(request).set_policy(name, policy, actor=caller_of(request).name)
    return Ok()


@router.post("/models/{name}/versions/{version}/gates", **protected("model.write", model_scope))
def check_gates(request: Request, name: str, version: Version, body: GatesIn) -> GateReport:
    return _registry(request).check_gates(
        name, version, target=body.target, actor=caller_of(request).name
    )


@router.get("/models/{name}/gate-reports", **protected("model.read", model_scope))
def list_gate_reports(
    request: Request, name: str, version: VersionQuery = None
) -> list[GateReport]:
    return _registry(request).list_gate_reports(name, version)


@router.post("/gate-reports/{report_id}/override", **authenticated())
def override(request: Request, report_id: str, body: OverrideIn) -> GateReport:
    """Let a failed gate report through: platform admins only, with a reason (audited)."""
    caller = caller_of(request)
    return _registry(request).override(
        report_id, actor=caller.name, is_admin=caller.is_admin, reason=body.reason
    )


@router.post("/models/{name}/versions/{version}/promote", **protected("model.write", model_scope))
def promote(request: Request, name: str, version: Version, body: PromoteIn) -> ModelVersion:
    return _registry(request).promote(
        name, version, to=body.to, actor=caller_of(request).name, report_id=body.report_id
    )


@router.post(
    "/models/{name}/versions/{version}/approval-requests", status_code=201,
    **protected("model.write", model_scope),
)  # fmt: skip
def request_approval(
    request: Request, name: str, version: Version, body: ApprovalRequestIn
) -> ApprovalRequest:
    return _registry(request).request_approval(
        name, version, actor=caller_of(request).name, comment=body.comment
    )


@router.get("/approval-requests", **protected("model.read"))
def list_approval_requests(
    request: Request, name: str | None = Query(None, max_length=128),
    version: VersionQuery = None, status: ApprovalStatus | None = None,
) -> list[ApprovalRequest]:  # fmt: skip
    caller, index = caller_of(request), index_of(request)
    found = _registry(request).list_approval_requests(name, version, status)
    return [r for r in found if caller.may("model.read", index.of_model(r.name))]


@router.get("/approval-requests/{request_id}", **authenticated())
def get_approval_request(request: Request, request_id: str) -> ApprovalRequest:
    found = _registry(request).get_approval_request(request_id)
    caller_of(request).require("model.read", index_of(request).of_model(found.name))
    return found


@router.post("/approval-requests/{request_id}/decision", **authenticated())
def decide(request: Request, request_id: str, body: DecisionIn) -> ApprovalRequest:
    """Approve or reject, in a role the caller holds on the model's project."""
    caller, registry = caller_of(request), _registry(request)
    pending = registry.get_approval_request(request_id)
    project = index_of(request).of_model(pending.name)
    caller.require("model.approve", project)
    return registry.decide(
        request_id, actor=caller.name, roles=caller.roles(project), approve=body.approve,
        comment=body.comment,
    )  # fmt: skip


def _admin(request: Request) -> str:
    caller = caller_of(request)
    if not caller.is_admin:
        raise PermissionDenied(f"{caller.name} may not manage webhooks: only an admin may")
    return caller.name


@router.get("/webhooks", **authenticated())
def list_webhooks(request: Request) -> list[Webhook]:
    _admin(request)
    return _registry(request).list_webhooks()


@router.post("/webhooks", status_code=201, **authenticated())
def create_webhook(request: Request, body: WebhookIn) -> Webhook:
    return _registry(request).create_webhook(
        body.url, secret=body.secret, events=body.events, model=body.model, actor=_admin(request)
    )


@router.delete("/webhooks/{webhook_id}", **authenticated())
def delete_webhook(request: Request, webhook_id: str) -> Ok:
    _registry(request).delete_webhook(webhook_id, actor=_admin(request))
    return Ok()

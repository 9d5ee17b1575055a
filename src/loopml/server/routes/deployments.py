"""REST routes of deployments: routing configs, traffic splits, history and rollback.

Reading a deployment needs ``model.read`` on its project, changing it ``deployment.write``; the
models it routes to must be readable by the caller too (nobody deploys what they cannot see).

The prediction log's policy, compaction and pruning (``/deployments/{name}/log…``) need
``deployment.write`` too, except lifting a legal hold: only a platform admin may, since a hold is
usually placed for someone outside the team that deploys (legal, an auditor), and the people who
could benefit from the deletion must not be the ones who allow it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from loopml.errors import PermissionDenied, Unavailable
from loopml.server.access import authenticated, caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import (
    ERROR_RESPONSES,
    DeploymentCreate,
    DeploymentSpecIn,
    DeploymentUpdate,
    LogCompactIn,
    LogPolicyIn,
    Ok,
    RollbackIn,
    TrafficIn,
)
from loopml.server.scopes import deployment_scope, index_of, stack_of
from loopml.serving.deployment_store import DeploymentRegistry
from loopml.serving.deployments import (
    Deployment,
    DeploymentRevision,
    DeploymentSpec,
    parse_ref,
)
from loopml.serving.predlog_records import HourCompaction, LogStatus, PruneResult

router = APIRouter(
    prefix="/api/v1", tags=["deployments"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)


def _deployments(request: Request) -> DeploymentRegistry:
    found = stack_of(request).deployments
    if found is None:
        raise Unavailable("this server has no deployments (they need the metadata database)")
    return found


def _spec(body: DeploymentSpecIn) -> DeploymentSpec:
    return DeploymentSpec.from_dict(body.model_dump())


def _may_read_models(request: Request, models: set[str]) -> None:
    caller, index = caller_of(request), index_of(request)
    for model in sorted(models):
        caller.require("model.read", index.of_model(model))


@router.get("/deployments", **protected("model.read"))
def list_deployments(request: Request) -> list[Deployment]:
    caller = caller_of(request)
    return [
        d for d in _deployments(request).list_deployments()
        if caller.may("model.read", d.project_id)
    ]  # fmt: skip


@router.post("/deployments", status_code=201, **authenticated())
def create_deployment(request: Request, body: DeploymentCreate) -> Deployment:
    """Revision 1, in ``project`` (default: the project of the first target's model)."""
    caller, index = caller_of(request), index_of(request)
    spec = _spec(body.spec)
    project = (
        index.of_project(body.project) if body.project is not None
        else index.of_model(spec.targets[0].model)
    )  # fmt: skip
    caller.require("deployment.write", project)
    _may_read_models(request, {t.model for t in spec.targets})
    return _deployments(request).create_deployment(
        body.name, spec, actor=caller.name, project=project, description=body.description
    )


@router.get("/deployments/{name}", **protected("model.read", deployment_scope))
def get_deployment(request: Request, name: str) -> Deployment:
    return _deployments(request).get_deployment(name)


@router.put("/deployments/{name}", **protected("deployment.write", deployment_scope))
def update_deployment(request: Request, name: str, body: DeploymentUpdate) -> Deployment:
    """A new revision (an unchanged spec makes none); 409 on a stale ``expected_revision``."""
    spec = _spec(body.spec)
    _may_read_models(request, {t.model for t in spec.targets})
    return _deployments(request).update_deployment(
        name, spec, actor=caller_of(request).name, expected_revision=body.expected_revision,
        reason=body.reason,
    )  # fmt: skip


@router.delete("/deployments/{name}", **protected("deployment.write", deployment_scope))
def delete_deployment(request: Request, name: str) -> Ok:
    _deployments(request).delete_deployment(name, actor=caller_of(request).name)
    return Ok()


@router.post("/deployments/{name}/traffic", **protected("deployment.write", deployment_scope))
def set_traffic(request: Request, name: str, body: TrafficIn) -> Deployment:
    """Split live traffic: ``{"weights": {"fraud:3": 0.9, "fraud@challenger": 0.1}}``."""
    _may_read_models(request, {parse_ref(ref).model for ref in body.weights})
    return _deployments(request).set_traffic(name, body.weights, actor=caller_of(request).name)


@router.post("/deployments/{name}/rollback", **protected("deployment.write", deployment_scope))
def rollback(request: Request, name: str, body: RollbackIn) -> Deployment:
    """Restore an earlier revision's spec (default: the previous one) as a new revision."""
    return _deployments(request).rollback(
        name, actor=caller_of(request).name, to_revision=body.to_revision
    )


@router.get("/deployments/{name}/history", **protected("model.read", deployment_scope))
def history(request: Request, name: str) -> list[DeploymentRevision]:
    return _deployments(request).history(name)


# the prediction log -------------------------------------------------------------------------
@router.get("/deployments/{name}/log", **protected("model.read", deployment_scope))
def log_status(request: Request, name: str) -> LogStatus:
    """The log's retention and hold as they apply now, and what it holds."""
    return _deployments(request).log_status(name)


@router.put("/deployments/{name}/log/policy", **protected("deployment.write", deployment_scope))
def set_log_policy(request: Request, name: str, body: LogPolicyIn) -> LogStatus:
    """Set the retention (never below the server's floor) or the legal hold; lifting a hold
    needs a platform admin."""
    caller, deployments = caller_of(request), _deployments(request)
    lifting = body.legal_hold is False and not caller.is_admin
    if lifting and deployments.log_status(name).legal_hold:
        raise PermissionDenied(f"{caller.name} may not lift a legal hold: ask an admin")
    return deployments.set_log_policy(
        name, actor=caller.name, retention_days=body.retention_days,
        default_retention=body.default_retention, legal_hold=body.legal_hold,
    )  # fmt: skip


@router.post("/deployments/{name}/log/compact", **protected("deployment.write", deployment_scope))
def compact_log(request: Request, name: str, body: LogCompactIn) -> list[HourCompaction]:
    """Compact one hour (``hour_ms``) or every hour that needs it."""
    return _deployments(request).compact_log(
        name, actor=caller_of(request).name, hour_ms=body.hour_ms
    )


@router.post("/deployments/{name}/log/prune", **protected("deployment.write", deployment_scope))
def prune_log(request: Request, name: str) -> list[PruneResult]:
    """Remove the hours past retention (nothing on legal hold); each batch is an audit event."""
    return _deployments(request).prune_log(name, actor=caller_of(request).name)

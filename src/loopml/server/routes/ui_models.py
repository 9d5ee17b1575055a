"""The web UI of the model registry: the models list, a model, and one version.

Same rules as the rest of the UI (``loopml.server.routes.ui``): every page declares its access,
lists only what the caller may see (``model.read`` on the model's project), and renders through
the autoescaping templates. A version's source run is linked (and its metrics shown) only when
the caller may also read that run. Two small forms (request approval; approve or reject) post
to this router; ``server/sessions.py`` checks their CSRF token and origin like every other form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from loopml.errors import InvalidArgument, LoopmlError, NotFound
from loopml.governance.audit import AuditEvent
from loopml.projects.entities import JudgedAt
from loopml.registry.entities import ApprovalRequest, ApprovalStatus, ModelVersion, Stage
from loopml.server.access import Caller, authenticated, caller_of, protected
from loopml.server.errors import status_of
from loopml.server.routes.ui import _page, _redirect
from loopml.server.scopes import index_of, model_scope, registry_of, stack_of
from loopml.server.sessions import parse_form
from loopml.ui import views

router = APIRouter(include_in_schema=False)
Version = Annotated[int, Path(ge=1, le=2**63 - 1)]
HISTORY = 200  # audit events shown per object (the model, and the version)
MAX_COLUMNS = 1000  # signature rows shown
NOTICES = {
    "requested": "Approval requested.",
    "approved": "Your approval is recorded.",
    "rejected": "Your rejection is recorded.",
}


def _model_url(name: str) -> str:
    return f"/models/{quote(name, safe='')}"


def _version_url(name: str, version: int) -> str:
    return f"{_model_url(name)}/versions/{version}"


def _readable_run(request: Request, caller: Caller, run_id: str) -> bool:
    """Whether the caller may read ``run_id`` (False if the run is gone)."""
    try:
        return caller.may("run.read", index_of(request).of_run(run_id))
    except NotFound:
        return False


# the list ------------------------------------------------------------------------------------
@router.get("/models", **authenticated())
def models_page(request: Request) -> HTMLResponse:
    """Every registered model the caller may read (``model.read`` on its project)."""
    caller, stack = caller_of(request), stack_of(request)
    models = [
        m for m in registry_of(stack).list_registered_models()
        if caller.may("model.read", m.project_id)
    ]  # fmt: skip
    projects = {p.project_id: p.name for p in stack.projects.list_projects()}
    return _page(
        request,
        "models.html",
        caller=caller,
        title="Models",
        nav="models",
        models=sorted(models, key=lambda m: m.name.lower()),
        projects=projects,
    )


# one model -----------------------------------------------------------------------------------
@router.get("/models/{name}", **protected("model.read", model_scope))
def model_page(request: Request, name: str) -> HTMLResponse:
    caller, stack = caller_of(request), stack_of(request)
    registry = registry_of(stack)
    model = registry.get_registered_model(name)
    project = stack.projects.get_project(model.project_id)
    policy = registry.get_policy(name)
    versions = sorted(registry.list_model_versions(name), key=lambda v: v.version, reverse=True)
    aliases: dict[int, list[str]] = {}
    for alias, number in sorted(model.aliases.items()):
        aliases.setdefault(number, []).append(alias)
    readable = {v.run_id: _readable_run(request, caller, v.run_id) for v in versions}
    kpis = [k for k in project.kpis if k.judged_at is JudgedAt.VALIDATION]
    return _page(
        request,
        "model.html",
        caller=caller,
        title=model.name,
        nav="models",
        model=model,
        project=project,
        policy=policy,
        kpis=kpis if policy.require_kpis else [],
        versions=versions,
        aliases=aliases,
        readable=readable,
        model_url=_model_url(model.name),
    )


# one version ---------------------------------------------------------------------------------
@router.get("/models/{name}/versions/{version}", **protected("model.read", model_scope))
def version_page(
    request: Request,
    name: str,
    version: Version,
    done: Annotated[str, Query(max_length=20)] = "",
) -> HTMLResponse:
    context = _version_context(request, name, version)
    return _page(request, "model_version.html", notice=NOTICES.get(done), error=None, **context)


def _version_context(request: Request, name: str, number: int) -> dict[str, Any]:
    caller, stack = caller_of(request), stack_of(request)
    registry = registry_of(stack)
    model = registry.get_registered_model(name)
    mv = registry.get_model_version(name, number)
    policy = registry.get_policy(name)
    run = experiment = None
    if _readable_run(request, caller, mv.run_id):
        run = stack.tracking.get_run(mv.run_id)
        experiment = stack.tracking.get_experiment(run.experiment_id)
    reports = sorted(
        registry.list_gate_reports(name, number), key=lambda r: r.created_time, reverse=True
    )
    requests = sorted(
        registry.list_approval_requests(name, number),
        key=lambda r: r.created_time,
        reverse=True,
    )
    gate_metrics = {g.metric for g in policy.metric_gates} | {
        g.metric for g in policy.champion_gates
    }
    return {
        "caller": caller,
        "title": f"{model.name} v{mv.version}",
        "nav": "models",
        "model": model,
        "mv": mv,
        "aliases": sorted(a for a, v in model.aliases.items() if v == mv.version),
        "run": run,
        "experiment": experiment,
        "signature": signature_view(mv.signature),
        "datasets": [dataset_view(d) for d in mv.datasets],
        "gate_metrics": gate_metrics,
        "reports": reports,
        "requests": [_request_view(caller, model.project_id, r) for r in requests],
        "can_request": _can_request(caller, model.project_id, mv, requests),
        "history": [_event_view(e) for e in _history(stack.audit, name, number)],
        "model_url": _model_url(model.name),
        "version_url": _version_url(model.name, mv.version),
    }


def _can_request(
    caller: Caller, project_id: str, mv: ModelVersion, requests: list[ApprovalRequest]
) -> bool:
    """Show the "request approval" form when the service would accept it."""
    pending = any(r.status is ApprovalStatus.PENDING for r in requests)
    return (
        caller.may("model.write", project_id)
        and mv.stage in (Stage.VALIDATED, Stage.APPROVED)
        and not pending
    )


def _request_view(caller: Caller, project_id: str, request: ApprovalRequest) -> dict[str, Any]:
    """An approval request, and whether this caller could decide it (the service re-checks)."""
    may_decide = (
        request.status is ApprovalStatus.PENDING
        and caller.name != request.requested_by
        and not any(d.user == caller.name for d in request.decisions)
        and caller.may("model.approve", project_id)
        and bool(set(request.missing_roles) & caller.roles(project_id))
    )
    return {"request": request, "may_decide": may_decide}


def _history(audit: Any, name: str, number: int) -> list[AuditEvent]:
    """The model's and this version's audit events, newest first."""
    events = [
        *audit.list_events(object_type="model", object_id=name, limit=HISTORY),
        *audit.list_events(object_type="model", object_id=f"{name}/{number}", limit=HISTORY),
    ]
    unique = {e.seq: e for e in events}
    return [unique[seq] for seq in sorted(unique, reverse=True)]


def _event_view(event: AuditEvent) -> dict[str, Any]:
    return {"event": event, "change": views.compact_json(event.change)}


def _columns(specs: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if not isinstance(specs, list | tuple):
        return rows
    for spec in specs[:MAX_COLUMNS]:
        if not isinstance(spec, Mapping):
            continue
        shape = spec.get("shape")
        if isinstance(shape, list | tuple):
            shown = "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"
        else:
            shown = ""
        name = spec.get("name")
        rows.append(
            {
                "name": "" if name is None else str(name),
                "dtype": str(spec.get("dtype", "")),
                "shape": shown,
                "optional": bool(spec.get("optional", False)),
            }
        )
    return rows


def signature_view(signature: Any) -> dict[str, Any] | None:
    """A version's signature (as its manifest recorded it) as rows for the tables.

    >>> view = signature_view({
    ...     "kind": "tensor",
    ...     "inputs": [{"name": None, "dtype": "float32", "shape": [-1, 28, 28]}],
    ...     "outputs": [{"name": "p", "dtype": "float64", "shape": [2]}],
    ... })
    >>> view["kind"], view["inputs"][0]["shape"], view["outputs"][0]["shape"]
    ('tensor', '(-1, 28, 28)', '(2,)')
    >>> signature_view(None) is None, signature_view("junk") is None
    (True, True)
    """
    if not isinstance(signature, Mapping):
        return None
    params = signature.get("params")
    return {
        "kind": str(signature.get("kind") or "columns"),
        "inputs": _columns(signature.get("inputs")),
        "outputs": _columns(signature.get("outputs")),
        "params": dict(params) if isinstance(params, Mapping) else {},
    }


def dataset_view(entry: Mapping[str, Any]) -> dict[str, str]:
    """A lineage dataset: its name, version (or digest) and role.

    >>> dataset_view({"name": "tx", "digest": "sha256:ab", "role": "train"})["version"]
    'sha256:ab'
    """
    version = entry.get("version") or entry.get("digest") or ""
    return {
        "name": str(entry.get("name", "")),
        "version": str(version),
        "role": str(entry.get("role", "")),
    }


# forms ---------------------------------------------------------------------------------------
async def _form(request: Request) -> dict[str, str]:
    return parse_form(await request.body())


def _failed(request: Request, name: str, number: int, error: LoopmlError) -> HTMLResponse:
    """The version page again, with the service's refusal at the top."""
    context = _version_context(request, name, number)
    return _page(
        request,
        "model_version.html",
        status=status_of(error),
        notice=None,
        error=error.message,
        **context,
    )


@router.post(
    "/models/{name}/versions/{version}/approval-requests",
    **protected("model.write", model_scope),
)
async def request_approval(request: Request, name: str, version: Version) -> Response:
    form = await _form(request)
    caller, registry = caller_of(request), registry_of(stack_of(request))
    try:
        await run_in_threadpool(
            registry.request_approval,
            name,
            version,
            actor=caller.name,
            comment=form.get("comment", "")[:2000],
        )
    except LoopmlError as e:
        return await run_in_threadpool(_failed, request, name, version, e)
    return _redirect(f"{_version_url(name, version)}?done=requested")


@router.post(
    "/models/{name}/approval-requests/{request_id}/decision",
    **protected("model.approve", model_scope),
)
async def decide(request: Request, name: str, request_id: str) -> Response:
    """Approve or reject, in a role the caller holds on the model's project."""
    form = await _form(request)
    caller, registry = caller_of(request), registry_of(stack_of(request))
    pending = await run_in_threadpool(registry.get_approval_request, request_id[:100])
    if pending.name != name:
        raise NotFound(f"model {name!r} has no approval request {request_id[:100]!r}")
    decision = form.get("decision", "")
    project = index_of(request).of_model(name)
    try:
        if decision not in ("approve", "reject"):
            raise InvalidArgument("choose approve or reject")
        await run_in_threadpool(
            registry.decide,
            pending.request_id,
            actor=caller.name,
            roles=caller.roles(project),
            approve=decision == "approve",
            comment=form.get("comment", "")[:2000],
        )
    except LoopmlError as e:
        return await run_in_threadpool(_failed, request, name, pending.version, e)
    done = "approved" if decision == "approve" else "rejected"
    return _redirect(f"{_version_url(name, pending.version)}?done={done}")

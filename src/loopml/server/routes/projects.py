"""REST routes of stage 1: projects, OKRs, KPIs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from loopml.projects.entities import Kpi, Okr, Project, parse_direction, parse_judged_at
from loopml.server.access import caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import (
    ERROR_RESPONSES,
    KpiCreate,
    KpiUpdate,
    OkrCreate,
    ProjectCreate,
    ProjectUpdate,
)
from loopml.server.scopes import project_scope, stack_of

router = APIRouter(
    prefix="/api/v1/projects", tags=["projects"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)


@router.get("", **protected("project.read"))
def list_projects(request: Request) -> list[Project]:
    caller = caller_of(request)
    return [
        p
        for p in stack_of(request).projects.list_projects()
        if caller.may("project.read", p.project_id)
    ]


@router.post("", status_code=201, **protected("user.manage"))
def create_project(request: Request, body: ProjectCreate) -> Project:
    """Creating a project is an admin's act; its members then get roles in it."""
    return stack_of(request).projects.create_project(
        body.name, business_goal=body.business_goal, description=body.description,
        owner=body.owner, actor=caller_of(request).name,
    )  # fmt: skip


@router.get("/{project}", **protected("project.read", project_scope))
def get_project(request: Request, project: str) -> Project:
    return stack_of(request).projects.get_project(project)


@router.patch("/{project}", **protected("project.write", project_scope))
def update_project(request: Request, project: str, body: ProjectUpdate) -> Project:
    return stack_of(request).projects.update_project(
        project, business_goal=body.business_goal, description=body.description,
        owner=body.owner, actor=caller_of(request).name,
    )  # fmt: skip


@router.post("/{project}/okrs", status_code=201, **protected("project.write", project_scope))
def add_okr(request: Request, project: str, body: OkrCreate) -> Okr:
    return stack_of(request).projects.add_okr(
        project, body.objective, list(body.key_results), owner=body.owner,
        actor=caller_of(request).name,
    )  # fmt: skip


@router.post("/{project}/kpis", status_code=201, **protected("kpi.write", project_scope))
def add_kpi(request: Request, project: str, body: KpiCreate) -> Kpi:
    return stack_of(request).projects.add_kpi(
        project, body.name, metric=body.metric, target=body.target,
        direction=parse_direction(body.direction), judged_at=parse_judged_at(body.judged_at),
        description=body.description, owner=body.owner, actor=caller_of(request).name,
    )  # fmt: skip


@router.patch("/{project}/kpis/{name}", **protected("kpi.write", project_scope))
def update_kpi(request: Request, project: str, name: str, body: KpiUpdate) -> Kpi:
    return stack_of(request).projects.update_kpi(
        project, name, actor=caller_of(request).name, target=body.target,
        direction=parse_direction(body.direction) if body.direction else None,
        judged_at=parse_judged_at(body.judged_at) if body.judged_at else None,
        description=body.description, owner=body.owner, metric=body.metric,
    )  # fmt: skip

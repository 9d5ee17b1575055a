"""REST routes of the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from loopml.governance.audit import AuditEvent, ChainReport
from loopml.server.access import caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import ERROR_RESPONSES
from loopml.server.scopes import index_of, stack_of

router = APIRouter(
    prefix="/api/v1/audit", tags=["audit"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)


@router.get("/events", **protected("audit.read"))
def list_events(
    request: Request,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=256)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    until: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    before: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    project: Annotated[list[str] | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[AuditEvent]:
    """The newest ``limit`` matching events, oldest first; ``before=<seq>`` pages back.

    Admins see all; others the events of projects they may audit (filtered in the database,
    so a page is full whenever enough events match). ``project`` narrows to those projects.
    """
    return stack_of(request).audit.list_events(
        object_type=object_type, object_id=object_id, actor=actor, action=action, since=since,
        until=until, before=before, projects=auditable(request, project), limit=limit,
    )  # fmt: skip


def auditable(request: Request, wanted: list[str] | None = None) -> list[str] | None:
    """The ids of the projects whose events the caller may read, within ``wanted`` (ids or
    names) when given; ``None`` means every event (an admin asking for no project)."""
    caller, stack = caller_of(request), stack_of(request)
    chosen = None if wanted is None else {index_of(request).of_project(ref) for ref in wanted}
    if caller.is_admin:
        return None if chosen is None else sorted(chosen)
    ids = [p.project_id for p in stack.projects.list_projects()]
    return [i for i in ids if (chosen is None or i in chosen) and caller.may("audit.read", i)]


@router.get("/verify", **protected("audit.read"))
def verify(request: Request) -> ChainReport:
    return stack_of(request).audit.verify()

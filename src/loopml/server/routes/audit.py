"""REST routes of the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from loopml.errors import NotFound
from loopml.governance.audit import AuditEvent, ChainReport
from loopml.server.access import Caller, caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import ERROR_RESPONSES
from loopml.server.scopes import ProjectIndex, index_of, stack_of

router = APIRouter(
    prefix="/api/v1/audit", tags=["audit"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)


@router.get("/events", **protected("audit.read"))
def list_events(
    request: Request,
    object_type: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=256)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    until: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[AuditEvent]:
    """Events, oldest first. Admins see all; others the events of projects they may audit."""
    events = stack_of(request).audit.list_events(
        object_type=object_type, object_id=object_id, actor=actor, since=since, until=until,
        limit=limit,
    )  # fmt: skip
    caller = caller_of(request)
    if caller.is_admin:
        return events
    index = index_of(request)
    return [e for e in events if _visible(e, caller, index)]


def _visible(event: AuditEvent, caller: Caller, index: ProjectIndex) -> bool:
    """An event belongs to the project of its object; users and tokens belong to admins."""
    try:
        project = {
            "run": index.of_run,
            "experiment": index.of_experiment,
            "project": lambda ref: ref,
            "model": lambda ref: index.of_model(ref.split("/", 1)[0]),  # "name" or "name/3"
            "deployment": index.of_deployment,
        }[event.object_type](event.object_id)
    except (KeyError, NotFound):
        return False
    return caller.may("audit.read", project)


@router.get("/verify", **protected("audit.read"))
def verify(request: Request) -> ChainReport:
    return stack_of(request).audit.verify()

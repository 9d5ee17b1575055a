"""HttpProjectStore and HttpAuditStore: stage 1 and the audit log over ``/api/v1``."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import quote

from loopml.backends.http import decode
from loopml.backends.http.transport import HttpTransport
from loopml.governance.audit import AuditEvent, ChainReport
from loopml.projects.entities import Direction, JudgedAt, Kpi, Okr, Project


def _p(ref: str) -> str:
    return f"/api/v1/projects/{quote(str(ref), safe='')}"


class HttpProjectStore:
    def __init__(self, transport: HttpTransport) -> None:
        self._http = transport

    def create_project(
        self, name: str, *, business_goal: str, description: str, owner: str, actor: str
    ) -> Project:
        body = {"name": name, "business_goal": business_goal, "description": description,
                "owner": owner}  # fmt: skip
        return decode.project(self._http.request("POST", "/api/v1/projects", json=body))

    def get_project(self, name_or_id: str) -> Project:
        return decode.project(self._http.request("GET", _p(name_or_id)))

    def list_projects(self) -> list[Project]:
        return [decode.project(d) for d in self._http.request("GET", "/api/v1/projects")]

    def update_project(
        self, name_or_id: str, *, actor: str, business_goal: str | None = None,
        description: str | None = None, owner: str | None = None,
    ) -> Project:  # fmt: skip
        body = {"business_goal": business_goal, "description": description, "owner": owner}
        return decode.project(self._http.request("PATCH", _p(name_or_id), json=body))

    def add_okr(
        self, project: str, objective: str, key_results: list[str], *, owner: str, actor: str
    ) -> Okr:
        body = {"objective": objective, "key_results": key_results, "owner": owner}
        return decode.okr(self._http.request("POST", f"{_p(project)}/okrs", json=body))

    def add_kpi(
        self, project: str, name: str, *, metric: str, target: float, direction: Direction,
        judged_at: JudgedAt, description: str, owner: str, actor: str,
    ) -> Kpi:  # fmt: skip
        body = {"name": name, "metric": metric, "target": target,
                "direction": Direction(direction).value, "judged_at": JudgedAt(judged_at).value,
                "description": description, "owner": owner}  # fmt: skip
        return decode.kpi(self._http.request("POST", f"{_p(project)}/kpis", json=body))

    def update_kpi(
        self, project: str, name: str, *, actor: str, target: float | None = None,
        direction: Direction | None = None, judged_at: JudgedAt | None = None,
        description: str | None = None, owner: str | None = None, metric: str | None = None,
    ) -> Kpi:  # fmt: skip
        body: dict[str, Any] = {
            "target": target, "description": description, "owner": owner, "metric": metric,
            "direction": Direction(direction).value if direction else None,
            "judged_at": JudgedAt(judged_at).value if judged_at else None,
        }  # fmt: skip
        path = f"{_p(project)}/kpis/{quote(name, safe='')}"
        return decode.kpi(self._http.request("PATCH", path, json=body))


class HttpAuditStore:
    def __init__(self, transport: HttpTransport) -> None:
        self._http = transport

    def list_events(
        self, *, object_type: str | None = None, object_id: str | None = None,
        actor: str | None = None, action: str | None = None, since: int | None = None,
        until: int | None = None, before: int | None = None,
        projects: Collection[str] | None = None, limit: int = 1000,
    ) -> list[AuditEvent]:  # fmt: skip
        """The server filters by project in SQL, also by the projects the caller may audit."""
        if projects is not None and not projects:
            return []
        params = {
            k: v
            for k, v in (("object_type", object_type), ("object_id", object_id),
                         ("actor", actor), ("action", action), ("since", since),
                         ("until", until), ("before", before),
                         ("project", sorted(projects) if projects is not None else None),
                         ("limit", limit))
            if v is not None
        }  # fmt: skip
        data = self._http.request("GET", "/api/v1/audit/events", params=params)
        return [decode.audit_event(d) for d in data]

    def verify(self) -> ChainReport:
        return decode.chain_report(self._http.request("GET", "/api/v1/audit/verify"))

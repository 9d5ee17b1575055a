"""The Client's project calls: business goals, OKRs and KPIs (stage 1).

The actor of every change is the client's (from its settings, or the token's user over HTTP).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loopml.projects.entities import Kpi, Okr, Project, parse_direction, parse_judged_at
from loopml.projects.store import ProjectStore


class ProjectCalls:
    def __init__(self, store: ProjectStore, actor: str) -> None:
        self._store = store
        self._actor = actor

    def create_project(
        self, name: str, *, business_goal: str = "", description: str = "", owner: str = ""
    ) -> Project:
        return self._store.create_project(
            name, business_goal=business_goal, description=description, owner=owner,
            actor=self._actor,
        )  # fmt: skip

    def get_project(self, name_or_id: str) -> Project:
        return self._store.get_project(name_or_id)

    def list_projects(self) -> list[Project]:
        return self._store.list_projects()

    def update_project(
        self,
        name_or_id: str,
        *,
        business_goal: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> Project:
        return self._store.update_project(
            name_or_id, business_goal=business_goal, description=description, owner=owner,
            actor=self._actor,
        )  # fmt: skip

    def add_okr(
        self, project: str, objective: str, key_results: Sequence[str] = (), *, owner: str = ""
    ) -> Okr:
        return self._store.add_okr(
            project, objective, list(key_results), owner=owner, actor=self._actor
        )

    def add_kpi(
        self,
        project: str,
        name: str,
        *,
        metric: str,
        target: float,
        direction: str = "maximize",
        judged_at: str = "validation",
        description: str = "",
        owner: str = "",
    ) -> Kpi:
        """A KPI reads ``metric`` and is met when it reaches ``target`` in ``direction``."""
        return self._store.add_kpi(
            project, name, metric=metric, target=target, direction=parse_direction(direction),
            judged_at=parse_judged_at(judged_at), description=description, owner=owner,
            actor=self._actor,
        )  # fmt: skip

    def update_kpi(self, project: str, name: str, **changes: Any) -> Kpi:
        if changes.get("direction") is not None:
            changes["direction"] = parse_direction(changes["direction"])
        if changes.get("judged_at") is not None:
            changes["judged_at"] = parse_judged_at(changes["judged_at"])
        return self._store.update_kpi(project, name, actor=self._actor, **changes)

"""What a metadata backend must offer stage 1."""

from __future__ import annotations

from typing import Protocol

from loopml.projects.entities import Direction, JudgedAt, Kpi, Okr, Project


class ProjectStore(Protocol):
    def create_project(
        self, name: str, *, business_goal: str, description: str, owner: str, actor: str
    ) -> Project: ...

    def get_project(self, name_or_id: str) -> Project:
        """By name or id; NotFound when neither matches."""
        ...

    def list_projects(self) -> list[Project]: ...

    def update_project(
        self,
        name_or_id: str,
        *,
        actor: str,
        business_goal: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> Project: ...

    def add_okr(
        self, project: str, objective: str, key_results: list[str], *, owner: str, actor: str
    ) -> Okr: ...

    def add_kpi(
        self,
        project: str,
        name: str,
        *,
        metric: str,
        target: float,
        direction: Direction,
        judged_at: JudgedAt,
        description: str,
        owner: str,
        actor: str,
    ) -> Kpi: ...

    def update_kpi(
        self,
        project: str,
        name: str,
        *,
        actor: str,
        target: float | None = None,
        direction: Direction | None = None,
        judged_at: JudgedAt | None = None,
        description: str | None = None,
        owner: str | None = None,
        metric: str | None = None,
    ) -> Kpi: ...

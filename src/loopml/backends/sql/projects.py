"""SqlProjectStore: projects, OKRs and KPIs (stage 1)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.rows import execute_unique, now_ms
from loopml.backends.sql.schema import kpis, okrs, projects
from loopml.errors import InvalidArgument, NotFound
from loopml.projects.entities import (
    DEFAULT_PROJECT,
    Direction,
    JudgedAt,
    Kpi,
    Okr,
    Project,
    validate_name,
    validate_target,
)
from loopml.tracking.validation import validate_key


def resolve_project_id(conn: Connection, name_or_id: str | None) -> int:
    """The id of a project given by name or id; ``None`` means the default project."""
    ref = DEFAULT_PROJECT if name_or_id is None else str(name_or_id)
    cond = projects.c.name == ref
    if ref.isascii() and ref.isdigit() and int(ref) < 2**63:  # beyond BIGINT: no project
        cond = sa.or_(cond, projects.c.project_id == int(ref))
    pid = conn.execute(sa.select(projects.c.project_id).where(cond)).scalar()
    if pid is None:
        raise NotFound(f"project {ref!r} not found")
    return int(pid)


def _kpi(row: Any) -> Kpi:
    return Kpi(
        kpi_id=str(row.kpi_id),
        project_id=str(row.project_id),
        name=row.name,
        metric=row.metric,
        target=row.target,
        direction=Direction(row.direction),
        judged_at=JudgedAt(row.judged_at),
        description=row.description,
        owner=row.owner,
    )


def _okr(row: Any) -> Okr:
    return Okr(
        okr_id=str(row.okr_id),
        project_id=str(row.project_id),
        objective=row.objective,
        key_results=tuple(json.loads(row.key_results)),
        owner=row.owner,
    )


class SqlProjectStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_project(
        self, name: str, *, business_goal: str, description: str, owner: str, actor: str
    ) -> Project:
        validate_name("project", name)
        if name.isdigit():
            raise InvalidArgument(f"project name {name!r} must not be all digits (ids are)")

        def work(conn: Connection) -> None:
            now = now_ms()
            pid = execute_unique(
                conn,
                projects.insert()
                .values(
                    name=name,
                    business_goal=business_goal,
                    description=description,
                    owner=owner,
                    creation_time=now,
                    last_update_time=now,
                )
                .returning(projects.c.project_id),
                f"project {name!r} already exists",
            )
            append_event(
                conn,
                actor=actor,
                action="project.create",
                object_type="project",
                object_id=str(pid),
                change={"name": name, "business_goal": business_goal, "owner": owner},
            )

        self._db.write(work)
        return self.get_project(name)

    def get_project(self, name_or_id: str) -> Project:
        def work(conn: Connection) -> Project:
            pid = resolve_project_id(conn, name_or_id)
            return self._load(conn, [pid])[0]

        return self._db.read(work)

    def list_projects(self) -> list[Project]:
        def work(conn: Connection) -> list[Project]:
            ids = list(
                conn.execute(sa.select(projects.c.project_id).order_by("project_id")).scalars()
            )
            return self._load(conn, ids)

        return self._db.read(work)

    @staticmethod
    def _load(conn: Connection, ids: list[int]) -> list[Project]:
        if not ids:
            return []
        rows = conn.execute(sa.select(projects).where(projects.c.project_id.in_(ids))).all()
        kpi_rows = conn.execute(
            sa.select(kpis).where(kpis.c.project_id.in_(ids)).order_by(kpis.c.kpi_id)
        ).all()
        okr_rows = conn.execute(
            sa.select(okrs).where(okrs.c.project_id.in_(ids)).order_by(okrs.c.okr_id)
        ).all()
        by_id = {r.project_id: r for r in rows}
        return [
            Project(
                project_id=str(pid),
                name=by_id[pid].name,
                business_goal=by_id[pid].business_goal,
                description=by_id[pid].description,
                owner=by_id[pid].owner,
                creation_time=by_id[pid].creation_time,
                last_update_time=by_id[pid].last_update_time,
                okrs=tuple(_okr(o) for o in okr_rows if o.project_id == pid),
                kpis=tuple(_kpi(k) for k in kpi_rows if k.project_id == pid),
            )
            for pid in ids
        ]

    def update_project(
        self,
        name_or_id: str,
        *,
        actor: str,
        business_goal: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> Project:
        changes = {
            k: v
            for k, v in (("business_goal", business_goal), ("description", description),
                         ("owner", owner))
            if v is not None
        }  # fmt: skip
        if not changes:
            raise InvalidArgument("nothing to update: give a goal, a description or an owner")

        def work(conn: Connection) -> None:
            pid = resolve_project_id(conn, name_or_id)
            conn.execute(
                projects.update()
                .where(projects.c.project_id == pid)
                .values(**changes, last_update_time=now_ms())
            )
            append_event(
                conn,
                actor=actor,
                action="project.update",
                object_type="project",
                object_id=str(pid),
                change=changes,
            )

        self._db.write(work)
        return self.get_project(name_or_id)

    def add_okr(
        self, project: str, objective: str, key_results: list[str], *, owner: str, actor: str
    ) -> Okr:
        if not objective.strip():
            raise InvalidArgument("an OKR needs an objective")
        if not all(isinstance(k, str) and k.strip() for k in key_results):
            raise InvalidArgument("key results must be non-empty strings")

        def work(conn: Connection) -> int:
            pid = resolve_project_id(conn, project)
            okr_id = conn.execute(
                okrs.insert()
                .values(
                    project_id=pid,
                    objective=objective,
                    key_results=json.dumps(list(key_results)),
                    owner=owner,
                    creation_time=now_ms(),
                )
                .returning(okrs.c.okr_id)
            ).scalar_one()
            append_event(
                conn,
                actor=actor,
                action="project.add_okr",
                object_type="project",
                object_id=str(pid),
                change={"okr_id": okr_id, "objective": objective, "key_results": key_results},
            )
            return int(okr_id)

        okr_id = self._db.write(work)
        return next(o for o in self.get_project(project).okrs if o.okr_id == str(okr_id))

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
    ) -> Kpi:
        validate_name("KPI", name)
        validate_key(metric, "KPI metric")
        values = {
            "name": name,
            "metric": metric,
            "target": validate_target(target),
            "direction": Direction(direction).value,
            "judged_at": JudgedAt(judged_at).value,
            "description": description,
            "owner": owner,
        }

        def work(conn: Connection) -> None:
            pid = resolve_project_id(conn, project)
            now = now_ms()
            execute_unique(
                conn,
                kpis.insert().values(
                    project_id=pid, creation_time=now, last_update_time=now, **values
                ),
                f"project {project!r} already has a KPI {name!r}",
            )
            append_event(
                conn,
                actor=actor,
                action="kpi.create",
                object_type="project",
                object_id=str(pid),
                change=values,
            )

        self._db.write(work)
        return self._get_kpi(project, name)

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
    ) -> Kpi:
        changes: dict[str, Any] = {}
        if target is not None:
            changes["target"] = validate_target(target)
        if direction is not None:
            changes["direction"] = Direction(direction).value
        if judged_at is not None:
            changes["judged_at"] = JudgedAt(judged_at).value
        if metric is not None:
            changes["metric"] = validate_key(metric, "KPI metric")
        for key, value in (("description", description), ("owner", owner)):
            if value is not None:
                changes[key] = value
        if not changes:
            raise InvalidArgument("nothing to update for the KPI")

        def work(conn: Connection) -> None:
            pid = resolve_project_id(conn, project)
            updated = conn.execute(
                kpis.update()
                .where(kpis.c.project_id == pid, kpis.c.name == name)
                .values(**changes, last_update_time=now_ms())
            ).rowcount
            if not updated:
                raise NotFound(f"project {project!r} has no KPI {name!r}")
            append_event(
                conn,
                actor=actor,
                action="kpi.update",
                object_type="project",
                object_id=str(pid),
                change={"name": name, **changes},
            )

        self._db.write(work)
        return self._get_kpi(project, name)

    def _get_kpi(self, project: str, name: str) -> Kpi:
        for kpi in self.get_project(project).kpis:
            if kpi.name == name:
                return kpi
        raise NotFound(f"project {project!r} has no KPI {name!r}")

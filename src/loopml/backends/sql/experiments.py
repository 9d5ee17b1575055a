"""Experiments on SQLite or PostgreSQL: the experiment half of SqlTrackingStore."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.projects import resolve_project_id
from loopml.backends.sql.rows import (
    execute_unique,
    experiment_from_row,
    insert_for,
    load_experiment_tags,
    now_ms,
)
from loopml.backends.sql.schema import experiment_tags, experiments
from loopml.errors import Conflict, InvalidArgument, NotFound
from loopml.tracking import validation
from loopml.tracking.entities import Experiment, Lifecycle, ViewType

_ACTIVE, _DELETED = Lifecycle.ACTIVE.value, Lifecycle.DELETED.value


def int_id(kind: str, value: str) -> int:
    """A stored integer id; anything else (text, out of BIGINT range) names nothing that exists."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number < 2**63:
        raise NotFound(f"{kind} {value!r:.40} not found")
    return number


def _lifecycle_filter(q: sa.Select[Any], column: Any, view: ViewType) -> sa.Select[Any]:
    if view is ViewType.ACTIVE_ONLY:
        return q.where(column == _ACTIVE)
    if view is ViewType.DELETED_ONLY:
        return q.where(column == _DELETED)
    return q


def checked_tags(tag_map: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (tag_map or {}).items():
        validation.validate_key(k, "tag")
        out[k] = validation.tag_value(k, v)
    return out


class SqlExperimentOps:
    _db: Database
    _experiment_q: Any

    def create_experiment(
        self,
        name: str,
        *,
        project: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        actor: str,
    ) -> Experiment:
        validation.experiment_name(name)
        valid_tags = checked_tags(tags)

        def work(conn: Connection) -> int:
            project_id = resolve_project_id(conn, project)
            now = now_ms()
            eid = execute_unique(
                conn,
                experiments.insert()
                .values(
                    name=name,
                    project_id=project_id,
                    description=description,
                    lifecycle_stage=_ACTIVE,
                    creation_time=now,
                    last_update_time=now,
                )
                .returning(experiments.c.experiment_id),
                f"experiment {name!r} already exists",
            )
            if valid_tags:
                conn.execute(
                    experiment_tags.insert(),
                    [{"experiment_id": eid, "key": k, "value": v} for k, v in valid_tags.items()],
                )
            append_event(
                conn,
                actor=actor,
                action="experiment.create",
                object_type="experiment",
                object_id=str(eid),
                change={"name": name, "project_id": project_id, "tags": valid_tags},
            )
            return int(eid)

        return self.get_experiment(str(self._db.write(work)))

    def get_experiment(self, experiment_id: str) -> Experiment:
        eid = int_id("experiment", experiment_id)

        def work(conn: Connection) -> Experiment:
            row = conn.execute(
                sa.select(experiments).where(experiments.c.experiment_id == eid)
            ).first()
            if row is None:
                raise NotFound(f"experiment {experiment_id!r} not found")
            return experiment_from_row(row, load_experiment_tags(conn, [eid])[eid])

        return self._db.read(work)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        def work(conn: Connection) -> Experiment | None:
            row = conn.execute(sa.select(experiments).where(experiments.c.name == name)).first()
            if row is None:
                return None
            tag_rows = load_experiment_tags(conn, [row.experiment_id])[row.experiment_id]
            return experiment_from_row(row, tag_rows)

        return self._db.read(work)

    def list_experiments(
        self, *, view: ViewType = ViewType.ACTIVE_ONLY, project: str | None = None
    ) -> list[Experiment]:
        def work(conn: Connection) -> list[Experiment]:
            q = sa.select(experiments).order_by(experiments.c.experiment_id)
            q = _lifecycle_filter(q, experiments.c.lifecycle_stage, view)
            if project is not None:
                q = q.where(experiments.c.project_id == resolve_project_id(conn, project))
            rows = conn.execute(q).all()
            tag_map = load_experiment_tags(conn, [r.experiment_id for r in rows])
            return [experiment_from_row(r, tag_map[r.experiment_id]) for r in rows]

        return self._db.read(work)

    def update_experiment(
        self,
        experiment_id: str,
        *,
        actor: str,
        name: str | None = None,
        description: str | None = None,
    ) -> Experiment:
        eid = int_id("experiment", experiment_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validation.experiment_name(name)
        if description is not None:
            changes["description"] = description
        if not changes:
            raise InvalidArgument("nothing to update: give a name or a description")

        def work(conn: Connection) -> None:
            self._experiment_row(conn, eid)
            execute_unique(
                conn,
                experiments.update()
                .where(experiments.c.experiment_id == eid)
                .values(**changes, last_update_time=now_ms()),
                f"experiment {name!r} already exists",
            )
            append_event(
                conn,
                actor=actor,
                action="experiment.update",
                object_type="experiment",
                object_id=str(eid),
                change=changes,
            )

        self._db.write(work)
        return self.get_experiment(experiment_id)

    def set_experiment_tag(self, experiment_id: str, key: str, value: str, *, actor: str) -> None:
        eid = int_id("experiment", experiment_id)
        validation.validate_key(key, "tag")
        value = validation.tag_value(key, value)

        def work(conn: Connection) -> None:
            self._experiment_row(conn, eid)
            stmt = insert_for(conn, experiment_tags).values(experiment_id=eid, key=key, value=value)
            conn.execute(stmt.on_conflict_do_update(index_elements=["experiment_id", "key"],
                                                    set_={"value": value}))  # fmt: skip
            append_event(
                conn,
                actor=actor,
                action="experiment.set_tag",
                object_type="experiment",
                object_id=str(eid),
                change={"key": key, "value": value},
            )

        self._db.write(work)

    def delete_experiment(self, experiment_id: str, *, actor: str) -> None:
        self._set_experiment_lifecycle(experiment_id, _DELETED, actor)

    def restore_experiment(self, experiment_id: str, *, actor: str) -> None:
        self._set_experiment_lifecycle(experiment_id, _ACTIVE, actor)

    def _set_experiment_lifecycle(self, experiment_id: str, stage: str, actor: str) -> None:
        eid = int_id("experiment", experiment_id)
        if eid == 0 and stage == _DELETED:
            raise InvalidArgument("the Default experiment cannot be deleted")

        def work(conn: Connection) -> None:
            row = self._experiment_row(conn, eid)
            if row.lifecycle_stage == stage:
                raise Conflict(f"experiment {experiment_id} is already {stage}")
            conn.execute(
                experiments.update()
                .where(experiments.c.experiment_id == eid)
                .values(lifecycle_stage=stage, last_update_time=now_ms())
            )
            action = "experiment.delete" if stage == _DELETED else "experiment.restore"
            append_event(
                conn,
                actor=actor,
                action=action,
                object_type="experiment",
                object_id=str(eid),
                change={"lifecycle_stage": stage},
            )

        self._db.write(work)

    def _experiment_row(self, conn: Connection, eid: int) -> Any:
        row = conn.execute(self._experiment_q, {"experiment_id": eid}).first()
        if row is None:
            raise NotFound(f"experiment {eid} not found")
        return row

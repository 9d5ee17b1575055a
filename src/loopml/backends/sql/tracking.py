"""SqlTrackingStore: experiments and runs on SQLite or PostgreSQL."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from loopml.backends.sql import runwrites as rw
from loopml.backends.sql import search as sql_search
from loopml.backends.sql.audit import append_event, tx_of
from loopml.backends.sql.engine import Database
from loopml.backends.sql.fastpath import DbapiTx
from loopml.backends.sql.projects import resolve_project_id
from loopml.backends.sql.rows import (
    experiment_from_row,
    insert_for,
    load_experiment_tags,
    run_from_dict,
    runs_with_data,
)
from loopml.backends.sql.schema import (
    experiment_tags,
    experiments,
    run_artifacts,
    run_inputs,
    runs,
)
from loopml.backends.sql.schema import metrics as metric_table
from loopml.backends.sql.schema import tags as tag_table
from loopml.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from loopml.tracking import validation
from loopml.tracking.entities import (
    ArtifactRecord,
    Experiment,
    Lifecycle,
    Metric,
    Page,
    Param,
    Run,
    RunInput,
    RunStatus,
    RunTag,
    ViewType,
)
from loopml.tracking.naming import random_run_name

_ACTIVE, _DELETED = Lifecycle.ACTIVE.value, Lifecycle.DELETED.value


def _now() -> int:
    return int(time.time() * 1000)


def _int_id(kind: str, value: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise NotFound(f"{kind} {value!r} not found") from None


class SqlTrackingStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._experiment_q = sa.select(experiments).where(
            experiments.c.experiment_id == sa.bindparam("experiment_id")
        )

    # experiments ---------------------------------------------------------------------------
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
        checked_tags = _checked_tags(tags)

        def work(conn: Connection) -> int:
            project_id = resolve_project_id(conn, project)
            now = _now()
            try:
                with conn.begin_nested():
                    eid = conn.execute(
                        experiments.insert()
                        .values(
                            name=name,
                            project_id=project_id,
                            description=description,
                            lifecycle_stage=_ACTIVE,
                            creation_time=now,
                            last_update_time=now,
                        )
                        .returning(experiments.c.experiment_id)
                    ).scalar_one()
            except IntegrityError as e:
                raise AlreadyExists(f"experiment {name!r} already exists") from e
            if checked_tags:
                conn.execute(
                    experiment_tags.insert(),
                    [{"experiment_id": eid, "key": k, "value": v} for k, v in checked_tags.items()],
                )
            append_event(
                conn,
                actor=actor,
                action="experiment.create",
                object_type="experiment",
                object_id=str(eid),
                change={"name": name, "project_id": project_id, "tags": checked_tags},
            )
            return int(eid)

        return self.get_experiment(str(self._db.write(work)))

    def get_experiment(self, experiment_id: str) -> Experiment:
        eid = _int_id("experiment", experiment_id)

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
        eid = _int_id("experiment", experiment_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = validation.experiment_name(name)
        if description is not None:
            changes["description"] = description
        if not changes:
            raise InvalidArgument("nothing to update: give a name or a description")

        def work(conn: Connection) -> None:
            self._experiment_row(conn, eid)
            try:
                with conn.begin_nested():
                    conn.execute(
                        experiments.update()
                        .where(experiments.c.experiment_id == eid)
                        .values(**changes, last_update_time=_now())
                    )
            except IntegrityError as e:
                raise AlreadyExists(f"experiment {name!r} already exists") from e
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
        eid = _int_id("experiment", experiment_id)
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
        eid = _int_id("experiment", experiment_id)
        if eid == 0 and stage == _DELETED:
            raise InvalidArgument("the Default experiment cannot be deleted")

        def work(conn: Connection) -> None:
            row = self._experiment_row(conn, eid)
            if row.lifecycle_stage == stage:
                raise Conflict(f"experiment {experiment_id} is already {stage}")
            conn.execute(
                experiments.update()
                .where(experiments.c.experiment_id == eid)
                .values(lifecycle_stage=stage, last_update_time=_now())
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

    # runs ----------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        *,
        run_name: str | None,
        user: str,
        start_time: int,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
        source: str = "",
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        actor: str,
    ) -> Run:
        eid = _int_id("experiment", experiment_id)
        name = validation.run_name(run_name) or random_run_name()
        checked_tags = _checked_tags(tags)
        run_id = uuid.uuid4().hex
        row = {
            "run_id": run_id,
            "experiment_id": eid,
            "run_name": name,
            "status": RunStatus.RUNNING.value,
            "start_time": start_time,
            "end_time": None,
            "user": user,
            "lifecycle_stage": _ACTIVE,
            "parent_run_id": parent_run_id,
            "source": source,
            "git_commit": git_commit,
            "git_dirty": git_dirty,
            "cpu_seconds": None,
            "peak_memory_bytes": None,
            "deleted_time": None,
        }

        def work(tx: DbapiTx) -> None:
            rw.active_experiment(tx, eid)
            if parent_run_id is not None:
                rw.active_run(tx, parent_run_id)
            tx.execute(rw.INSERT_RUN, row)
            if checked_tags:
                rw.write_tags(tx, run_id, checked_tags)
            append_event(
                tx,
                actor=actor,
                action="run.create",
                object_type="run",
                object_id=run_id,
                change={"experiment_id": eid, "run_name": name, "tags": checked_tags},
            )

        self._db.write_fast(work)
        return run_from_dict(row, checked_tags)

    def get_run(self, run_id: str) -> Run:
        def work(conn: Connection) -> Run:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                raise NotFound(f"run {run_id!r} not found")
            return runs_with_data(conn, [row])[0]

        return self._db.read(work)

    def update_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        end_time: int | None = None,
        cpu_seconds: float | None = None,
        peak_memory_bytes: int | None = None,
        metrics: Sequence[Metric] = (),
        actor: str,
    ) -> None:
        status = _status(status)
        if end_time is None and status.is_terminal:
            end_time = _now()
        values: dict[str, Any] = {
            "status": status.value,
            "end_time": end_time,
            "cpu_seconds": None if cpu_seconds is None else float(cpu_seconds),
            "peak_memory_bytes": None if peak_memory_bytes is None else int(peak_memory_bytes),
        }

        def work(tx: DbapiTx) -> None:
            experiment_id = rw.active_run(tx, run_id)
            if metrics:
                rw.write_metrics(tx, run_id, experiment_id, metrics)
            tx.execute(rw.UPDATE_RUN, {"run_id": run_id, **values})
            append_event(
                tx,
                actor=actor,
                action="run.update",
                object_type="run",
                object_id=run_id,
                change={k: v for k, v in values.items() if v is not None},
            )

        self._db.write_fast(work)

    def delete_run(self, run_id: str, *, actor: str) -> None:
        self._set_run_lifecycle(run_id, _DELETED, actor)

    def restore_run(self, run_id: str, *, actor: str) -> None:
        self._set_run_lifecycle(run_id, _ACTIVE, actor)

    def _set_run_lifecycle(self, run_id: str, stage: str, actor: str) -> None:
        def work(conn: Connection) -> None:
            row = self._run_row(conn, run_id)
            if row[2] == stage:
                raise Conflict(f"run {run_id} is already {stage}")
            deleted_time = _now() if stage == _DELETED else None
            conn.execute(
                runs.update()
                .where(runs.c.run_id == run_id)
                .values(lifecycle_stage=stage, deleted_time=deleted_time)
            )
            append_event(
                conn,
                actor=actor,
                action="run.delete" if stage == _DELETED else "run.restore",
                object_type="run",
                object_id=run_id,
                change={"lifecycle_stage": stage},
            )

        self._db.write(work)

    def _run_row(self, conn: Connection, run_id: str) -> Any:
        return rw.run_state(tx_of(conn), run_id)

    def _active_run(self, conn: Connection, run_id: str) -> int:
        return rw.active_run(tx_of(conn), run_id)

    # logging -------------------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        actor: str,
    ) -> None:
        total = len(metrics) + len(params) + len(tags)
        if total > validation.MAX_BATCH_ITEMS:
            raise InvalidArgument(
                f"a batch holds at most {validation.MAX_BATCH_ITEMS} items, got {total}"
            )
        param_map = _checked_params(params)
        tag_map = {t.key: t.value for t in tags}
        _checked_tags(tag_map)

        def work(tx: DbapiTx) -> None:
            experiment_id = rw.active_run(tx, run_id)
            if param_map:
                rw.write_params(tx, run_id, param_map)
            if tag_map:
                rw.write_tags(tx, run_id, tag_map)
                append_event(
                    tx,
                    actor=actor,
                    action="run.set_tags",
                    object_type="run",
                    object_id=run_id,
                    change={"tags": tag_map},
                )
            if metrics:
                rw.write_metrics(tx, run_id, experiment_id, metrics)

        self._db.write_fast(work)

    def log_metrics_multi(self, batches: Mapping[str, Sequence[Metric]]) -> None:
        def work(tx: DbapiTx) -> None:
            for run_id, items in sorted(batches.items()):
                rw.write_metrics(tx, run_id, rw.active_run(tx, run_id), items)

        if batches:
            self._db.write_fast(work)

    def delete_tag(self, run_id: str, key: str, *, actor: str) -> None:
        def work(conn: Connection) -> None:
            self._active_run(conn, run_id)
            deleted = conn.execute(
                tag_table.delete().where(tag_table.c.run_id == run_id, tag_table.c.key == key)
            ).rowcount
            if not deleted:
                raise NotFound(f"run {run_id} has no tag {key!r}")
            append_event(
                conn,
                actor=actor,
                action="run.delete_tag",
                object_type="run",
                object_id=run_id,
                change={"key": key},
            )

        self._db.write(work)

    def log_inputs(self, run_id: str, inputs: Sequence[RunInput], *, actor: str) -> None:
        for i in inputs:
            if not i.name or not i.digest or not i.role:
                raise InvalidArgument("a run input needs a name, a digest and a role")

        def work(conn: Connection) -> None:
            self._active_run(conn, run_id)
            stmt = insert_for(conn, run_inputs).on_conflict_do_nothing()
            conn.execute(
                stmt,
                [
                    {"run_id": run_id, "name": i.name, "digest": i.digest, "role": i.role,
                     "source": i.source}
                    for i in inputs
                ],
            )  # fmt: skip
            append_event(
                conn,
                actor=actor,
                action="run.log_inputs",
                object_type="run",
                object_id=run_id,
                change={"inputs": [[i.name, i.digest, i.role] for i in inputs]},
            )

        if inputs:
            self._db.write(work)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        mt = metric_table
        q = (
            sa.select(mt.c.key, mt.c.value, mt.c.timestamp, mt.c.step)
            .where(mt.c.run_id == run_id, mt.c.key == key)
            .order_by(mt.c.step, mt.c.timestamp, mt.c.id)
        )

        def work(conn: Connection) -> list[Metric]:
            self._run_row(conn, run_id)
            return [
                Metric(r.key, math.nan if r.value is None else r.value, r.timestamp, r.step)
                for r in conn.execute(q)
            ]

        return self._db.read(work)

    # search --------------------------------------------------------------------------------
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        *,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view: ViewType = ViewType.ACTIVE_ONLY,
    ) -> Page[Run]:
        ids = [_int_id("experiment", e) for e in experiment_ids]
        plan = sql_search.plan_search(
            ids, filter_string, order_by, max_results, page_token, ViewType(view)
        )

        def work(conn: Connection) -> Page[Run]:
            rows, token = plan.execute(conn)
            return Page(runs_with_data(conn, rows), token)

        return self._db.read(work)

    # artifacts -----------------------------------------------------------------------------
    def record_artifacts(self, run_id: str, records: Sequence[ArtifactRecord]) -> None:
        now = _now()

        def work(conn: Connection) -> None:
            self._active_run(conn, run_id)
            stmt = insert_for(conn, run_artifacts)
            stmt = stmt.on_conflict_do_update(
                index_elements=["run_id", "path"],
                set_={"size": stmt.excluded.size, "sha256": stmt.excluded.sha256,
                      "created_time": stmt.excluded.created_time},
            )  # fmt: skip
            conn.execute(
                stmt,
                [
                    {"run_id": run_id, "path": r.path, "size": r.size, "sha256": r.sha256,
                     "created_time": now}
                    for r in records
                ],
            )  # fmt: skip

        if records:
            self._db.write(work)

    def list_artifact_records(self, run_id: str) -> list[ArtifactRecord]:
        q = (
            sa.select(run_artifacts)
            .where(run_artifacts.c.run_id == run_id)
            .order_by(run_artifacts.c.path)
        )
        rows = self._db.read(lambda c: c.execute(q).all())
        return [ArtifactRecord(r.path, r.size, r.sha256) for r in rows]


# ---------------------------------------------------------------------------------------------
def _status(status: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(status.upper() if isinstance(status, str) else status)
    except ValueError:
        raise InvalidArgument(
            f"invalid run status {status!r}: use one of {', '.join(s.value for s in RunStatus)}"
        ) from None


def _lifecycle_filter(q: sa.Select[Any], column: Any, view: ViewType) -> sa.Select[Any]:
    if view is ViewType.ACTIVE_ONLY:
        return q.where(column == _ACTIVE)
    if view is ViewType.DELETED_ONLY:
        return q.where(column == _DELETED)
    return q


def _checked_tags(tag_map: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (tag_map or {}).items():
        validation.validate_key(k, "tag")
        out[k] = validation.tag_value(k, v)
    return out


def _checked_params(items: Sequence[Param]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in items:
        validation.validate_key(p.key, "param")
        value = validation.param_value(p.key, p.value)
        if p.key in out and out[p.key] != value:
            raise InvalidArgument(f"param {p.key!r} appears twice in one batch with other values")
        out[p.key] = value
    return out

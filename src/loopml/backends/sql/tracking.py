"""SqlTrackingStore: experiments and runs on SQLite or PostgreSQL."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql import runwrites as rw
from loopml.backends.sql import search as sql_search
from loopml.backends.sql.audit import append_event, tx_of
from loopml.backends.sql.engine import Database
from loopml.backends.sql.experiments import (
    SqlExperimentOps,
    checked_tags,
    int_id,
)
from loopml.backends.sql.fastpath import DbapiTx
from loopml.backends.sql.rows import (
    insert_for,
    now_ms,
    run_from_dict,
    runs_with_data,
)
from loopml.backends.sql.schema import (
    experiments,
    run_artifacts,
    run_inputs,
    runs,
)
from loopml.backends.sql.schema import metrics as metric_table
from loopml.backends.sql.schema import tags as tag_table
from loopml.errors import Conflict, IntegrityError, InvalidArgument, NotFound
from loopml.tracking import validation
from loopml.tracking.entities import (
    ArtifactRecord,
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


class SqlTrackingStore(SqlExperimentOps):
    """Runs and their data; experiments come from :class:`SqlExperimentOps`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._experiment_q = sa.select(experiments).where(
            experiments.c.experiment_id == sa.bindparam("experiment_id")
        )

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
        eid = int_id("experiment", experiment_id)
        name = validation.run_name(run_name) or random_run_name()
        valid_tags = checked_tags(tags)
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
            if valid_tags:
                rw.write_tags(tx, run_id, valid_tags)
            append_event(
                tx,
                actor=actor,
                action="run.create",
                object_type="run",
                object_id=run_id,
                change={"experiment_id": eid, "run_name": name, "tags": valid_tags},
            )

        self._db.write_fast(work)
        return run_from_dict(row, valid_tags)

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
            end_time = now_ms()
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
            deleted_time = now_ms() if stage == _DELETED else None
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
        idempotency_key: str | None = None,
    ) -> None:
        total = len(metrics) + len(params) + len(tags)
        if total > validation.MAX_BATCH_ITEMS:
            raise InvalidArgument(
                f"a batch holds at most {validation.MAX_BATCH_ITEMS} items, got {total}"
            )
        param_map = _checked_params(params)
        tag_map = {t.key: t.value for t in tags}
        checked_tags(tag_map)

        def work(tx: DbapiTx) -> None:
            experiment_id = rw.active_run(tx, run_id)
            if not rw.first_use(tx, idempotency_key):
                return
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

    def log_metrics_multi(
        self, batches: Mapping[str, Sequence[Metric]], *, idempotency_key: str | None = None
    ) -> None:
        def work(tx: DbapiTx) -> None:
            if not rw.first_use(tx, idempotency_key):
                return
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
        ids = [int_id("experiment", e) for e in experiment_ids]
        plan = sql_search.plan_search(
            ids, filter_string, order_by, max_results, page_token, ViewType(view)
        )

        def work(conn: Connection) -> Page[Run]:
            rows, token = plan.execute(conn)
            return Page(runs_with_data(conn, rows), token)

        return self._db.read(work)

    # artifacts -----------------------------------------------------------------------------
    def record_artifacts(self, run_id: str, records: Sequence[ArtifactRecord]) -> None:
        now = now_ms()

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
        try:
            return [ArtifactRecord(r.path, r.size, r.sha256) for r in rows]
        except InvalidArgument as e:  # written behind the API's back: refuse, never open it
            raise IntegrityError(
                f"run {run_id} holds an artifact record the path rules refuse ({e.message}); "
                "no artifact of it is listed or served until the record is removed",
                details={"run_id": run_id, **e.details},
            ) from e


# ---------------------------------------------------------------------------------------------
def _status(status: RunStatus | str) -> RunStatus:
    try:
        return RunStatus(status.upper() if isinstance(status, str) else status)
    except ValueError:
        raise InvalidArgument(
            f"invalid run status {status!r}: use one of {', '.join(s.value for s in RunStatus)}"
        ) from None


def _checked_params(items: Sequence[Param]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in items:
        validation.validate_key(p.key, "param")
        value = validation.param_value(p.key, p.value)
        if p.key in out and out[p.key] != value:
            raise InvalidArgument(f"param {p.key!r} appears twice in one batch with other values")
        out[p.key] = value
    return out

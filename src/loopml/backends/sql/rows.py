"""Turning rows into frozen tracking records, and the dialect-aware upsert both stores use."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from loopml.backends.sql.schema import experiment_tags, latest_metrics, params, run_inputs, tags
from loopml.errors import AlreadyExists
from loopml.tracking.entities import Experiment, Lifecycle, Run, RunInput, RunStatus

NAN = math.nan


def now_ms() -> int:
    """Milliseconds since the epoch, the unit of every stored time."""
    return int(time.time() * 1000)


def execute_unique(conn: Connection, stmt: Any, conflict: str) -> Any:
    """Run an INSERT/UPDATE that may hit a unique constraint: the clash becomes
    ``AlreadyExists(conflict)`` and the surrounding transaction stays usable (a savepoint).
    Returns the single value of a ``RETURNING`` clause, if any."""
    try:
        with conn.begin_nested():
            result = conn.execute(stmt)
            return result.scalar_one() if len(stmt.exported_columns) else None
    except IntegrityError as e:
        raise AlreadyExists(conflict) from e


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """An INSERT that supports ``on_conflict_do_*`` on this connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def experiment_from_row(row: Any, tag_rows: Sequence[Any] = ()) -> Experiment:
    eid = str(row.experiment_id)
    return Experiment(
        experiment_id=eid,
        name=row.name,
        project_id=str(row.project_id),
        artifact_path=eid,
        lifecycle_stage=Lifecycle(row.lifecycle_stage),
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
        description=row.description,
        tags={t.key: t.value for t in tag_rows},
    )


def load_experiment_tags(conn: Connection, ids: Sequence[int]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = defaultdict(list)
    if ids:
        q = sa.select(experiment_tags).where(experiment_tags.c.experiment_id.in_(ids))
        for r in conn.execute(q):
            out[r.experiment_id].append(r)
    return out


def runs_with_data(conn: Connection, run_rows: Sequence[Any]) -> list[Run]:
    """Attach params, latest metrics, tags and inputs to run rows with one query per table."""
    if not run_rows:
        return []
    ids = [r.run_id for r in run_rows]
    p: dict[str, dict[str, str]] = defaultdict(dict)
    m: dict[str, dict[str, float]] = defaultdict(dict)
    t: dict[str, dict[str, str]] = defaultdict(dict)
    inp: dict[str, list[RunInput]] = defaultdict(list)
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        for r in conn.execute(sa.select(params).where(params.c.run_id.in_(chunk))):
            p[r.run_id][r.key] = r.value
        q = sa.select(latest_metrics.c.run_id, latest_metrics.c.key, latest_metrics.c.value)
        for r in conn.execute(q.where(latest_metrics.c.run_id.in_(chunk))):
            m[r.run_id][r.key] = NAN if r.value is None else r.value
        for r in conn.execute(sa.select(tags).where(tags.c.run_id.in_(chunk))):
            t[r.run_id][r.key] = r.value
        for r in conn.execute(sa.select(run_inputs).where(run_inputs.c.run_id.in_(chunk))):
            inp[r.run_id].append(RunInput(r.name, r.digest, r.role, r.source))
    return [
        run_from_row(
            r, params=p[r.run_id], metrics=m[r.run_id], tags=t[r.run_id], inputs=inp[r.run_id]
        )
        for r in run_rows
    ]


def run_from_row(
    row: Any,
    *,
    params: dict[str, str],
    metrics: dict[str, float],
    tags: dict[str, str],
    inputs: list[RunInput],
) -> Run:
    return Run(
        run_id=row.run_id,
        experiment_id=str(row.experiment_id),
        run_name=row.run_name,
        status=RunStatus(row.status),
        start_time=row.start_time,
        end_time=row.end_time,
        user=row.user,
        lifecycle_stage=Lifecycle(row.lifecycle_stage),
        artifact_path=f"{row.experiment_id}/{row.run_id}/artifacts",
        parent_run_id=row.parent_run_id,
        source=row.source,
        git_commit=row.git_commit,
        git_dirty=row.git_dirty,
        cpu_seconds=row.cpu_seconds,
        peak_memory_bytes=row.peak_memory_bytes,
        params=params,
        metrics=metrics,
        tags=tags,
        inputs=tuple(inputs),
    )


def run_from_dict(row: dict[str, Any], tag_map: dict[str, str]) -> Run:
    """The record of a run just created, without reading it back."""
    return run_from_row(SimpleNamespace(**row), params={}, metrics={}, tags=tag_map, inputs=[])

"""Audit events written inside the caller's transaction, and the audit store that reads them."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.engine import Database
from loopml.backends.sql.fastpath import DbapiTx
from loopml.backends.sql.schema import (
    audit_events,
    audit_head,
    deployments,
    experiments,
    registered_models,
    runs,
)
from loopml.governance.audit import (
    AuditEvent,
    ChainReport,
    canonical_json,
    digest_change,
    event_hash,
    verify_chain,
)

_LOCK_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
_HEAD_SQL = "SELECT seq, hash FROM audit_head WHERE id = 1"
_INSERT_EVENT = (
    "INSERT INTO audit_events (seq, ts, actor, action, object_type, object_id, change, "
    "change_digest, prev_hash, hash) VALUES (:seq, :ts, :actor, :action, :object_type, "
    ":object_id, :change, :change_digest, :prev_hash, :hash)"
)
_ADVANCE_HEAD = "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1"


def tx_of(conn: Connection) -> DbapiTx:
    """The driver-level view of a SQLAlchemy connection's open transaction."""
    return DbapiTx(conn.connection.driver_connection, conn.dialect.name == "postgresql")


def append_event(
    tx: DbapiTx | Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    change: dict[str, Any],
) -> None:
    """Append one event to the chain; must run inside the mutation's own write transaction.

    The head row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's write lock is already held),
    which serialises appends, so sequence numbers are gap-free and each event hashes its
    predecessor.
    """
    if isinstance(tx, Connection):
        tx = tx_of(tx)
    head = tx.one(_HEAD_SQL + (" FOR UPDATE" if tx.postgres else ""))
    assert head is not None, "audit_head row missing: run migrations"
    prev_seq, prev_hash = head
    seq, ts = prev_seq + 1, int(time.time() * 1000)
    change_json = canonical_json(change)
    change_digest = digest_change(change_json)
    h = event_hash(seq, ts, actor, action, object_type, object_id, change_digest, prev_hash)
    tx.execute(
        _INSERT_EVENT,
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "change": change_json,
            "change_digest": change_digest,
            "prev_hash": prev_hash,
            "hash": h,
        },
    )
    tx.execute(_ADVANCE_HEAD, {"seq": seq, "hash": h})


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        change=json.loads(row.change),
        change_digest=row.change_digest,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _of_projects(projects: list[str]) -> sa.ColumnElement[bool]:
    """Events whose object belongs to one of ``projects`` (what ``ProjectIndex`` would answer).

    Run, experiment, model (``name`` or ``name/3``) and deployment events belong to the project
    of their object; users, tokens and webhooks to no project (admins only). Each branch is a
    semi-join the database runs beside the ``seq`` order, so a page holds what it asks for.
    """
    ev = audit_events.c
    ids = [int(p) for p in projects if p.isascii() and p.isdigit()]
    if not ids:
        return sa.false()
    in_projects = experiments.c.project_id.in_(ids)
    experiment_ids = sa.select(sa.cast(experiments.c.experiment_id, sa.String)).where(in_projects)
    run_ids = (
        sa.select(runs.c.run_id)
        .join(experiments, experiments.c.experiment_id == runs.c.experiment_id)
        .where(runs.c.run_id == ev.object_id, in_projects)
    )
    models = registered_models.c
    model_ids = sa.select(models.name).where(
        models.project_id.in_(ids),
        sa.or_(
            models.name == ev.object_id,
            sa.func.substr(ev.object_id, 1, sa.func.length(models.name) + 1) == models.name + "/",
        ),
    )
    deployment_ids = sa.select(deployments.c.name).where(deployments.c.project_id.in_(ids))
    return sa.or_(
        sa.and_(ev.object_type == "project", ev.object_id.in_([str(i) for i in ids])),
        sa.and_(ev.object_type == "experiment", ev.object_id.in_(experiment_ids)),
        sa.and_(ev.object_type == "run", run_ids.exists()),
        sa.and_(ev.object_type == "model", model_ids.exists()),
        sa.and_(ev.object_type == "deployment", ev.object_id.in_(deployment_ids)),
    )


class SqlAuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list_events(
        self,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        since: int | None = None,
        until: int | None = None,
        before: int | None = None,
        projects: Collection[str] | None = None,
        limit: int = 1000,
    ) -> list[AuditEvent]:
        q = sa.select(audit_events)
        for column, value in (
            (audit_events.c.object_type, object_type),
            (audit_events.c.object_id, object_id),
            (audit_events.c.actor, actor),
            (audit_events.c.action, action),
        ):
            if value is not None:
                q = q.where(column == value)
        if since is not None:
            q = q.where(audit_events.c.ts >= since)
        if until is not None:
            q = q.where(audit_events.c.ts <= until)
        if before is not None:
            q = q.where(audit_events.c.seq < before)
        if projects is not None:
            q = q.where(_of_projects(sorted(set(projects))))
        q = q.order_by(audit_events.c.seq.desc()).limit(max(1, min(limit, 100_000)))
        rows = self._db.read(lambda c: c.execute(q).all())
        return [_event(r) for r in reversed(rows)]

    def verify(self) -> ChainReport:
        with self._db.engine.connect() as conn:
            if self._db.dialect == "postgresql":  # one snapshot for head and events
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            head = conn.execute(_LOCK_HEAD).one_or_none()
            return verify_chain(self._iter_events(conn), tuple(head) if head else None)

    @staticmethod
    def _iter_events(conn: Connection, chunk: int = 5000) -> Iterator[AuditEvent]:
        last = -1
        while True:
            q = (
                sa.select(audit_events)
                .where(audit_events.c.seq > last)
                .order_by(audit_events.c.seq)
                .limit(chunk)
            )
            rows = conn.execute(q).all()
            if not rows:
                return
            yield from (_event(r) for r in rows)
            last = rows[-1].seq

"""SqlDeploymentStore: deployments, their revisions, and the audit of every change."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.projects import resolve_project_id
from loopml.backends.sql.rows import execute_unique, now_ms
from loopml.backends.sql.schema import deployment_revisions, deployments
from loopml.errors import Conflict, InvalidArgument, NotFound
from loopml.serving.deployments import (
    Deployment,
    DeploymentRevision,
    DeploymentSpec,
    spec_diff,
    validate_deployment_name,
)
from loopml.serving.predlog_records import LogPolicy

_D = deployments.c
_R = deployment_revisions.c


def _spec_json(spec: DeploymentSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


def _spec(raw: str) -> DeploymentSpec:
    return DeploymentSpec.from_dict(json.loads(raw))


def _deployment(row: Any) -> Deployment:
    return Deployment(
        name=row.name, project_id=str(row.project_id), spec=_spec(row.spec),
        revision=int(row.revision), description=row.description, created_by=row.created_by,
        created_time=row.created_time, updated_by=row.updated_by, updated_time=row.updated_time,
    )  # fmt: skip


def _revision(row: Any) -> DeploymentRevision:
    return DeploymentRevision(
        name=row.name, revision=int(row.revision), spec=_spec(row.spec), actor=row.actor,
        time=row.time, reason=row.reason,
    )  # fmt: skip


def _audit(conn: Connection, actor: str, action: str, name: str, change: dict[str, Any]) -> None:
    append_event(
        conn, actor=actor, action=action, object_type="deployment", object_id=name, change=change
    )


def _not_found(name: str) -> NotFound:
    return NotFound(f"deployment {name!r} not found")


def _named(name: str) -> str:
    """A name no deployment can have is simply not found (and never reaches the database: a NUL
    in a PostgreSQL string literal is an error of its own)."""
    try:
        return validate_deployment_name(name)
    except InvalidArgument:
        raise _not_found(name) from None


class SqlDeploymentStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_deployment(
        self, name: str, spec: DeploymentSpec, *, project: str | None, description: str,
        actor: str,
    ) -> Deployment:  # fmt: skip
        validate_deployment_name(name)

        def work(conn: Connection) -> None:
            now = now_ms()
            pid = resolve_project_id(conn, project)
            execute_unique(
                conn,
                deployments.insert().values(
                    name=name, project_id=pid, spec=_spec_json(spec), revision=1,
                    description=description, created_by=actor, created_time=now,
                    updated_by=actor, updated_time=now,
                ),
                f"deployment {name!r} already exists",
            )  # fmt: skip
            conn.execute(deployment_revisions.insert().values(
                name=name, revision=1, spec=_spec_json(spec), actor=actor, time=now,
                reason="create",
            ))  # fmt: skip
            _audit(conn, actor, "deployment.create", name, {
                "project_id": str(pid), "revision": 1, "reason": "create",
                "diff": spec_diff(None, spec),
            })  # fmt: skip

        self._db.write(work)
        return self.get_deployment(name)

    def get_deployment(self, name: str) -> Deployment:
        _named(name)

        def work(conn: Connection) -> Deployment:
            row = conn.execute(sa.select(deployments).where(_D.name == name)).first()
            if row is None:
                raise _not_found(name)
            return _deployment(row)

        return self._db.read(work)

    def list_deployments(self, *, project_ids: Collection[str] | None = None) -> list[Deployment]:
        def work(conn: Connection) -> list[Deployment]:
            query = sa.select(deployments).order_by(_D.name)
            if project_ids is not None:
                ids = [int(p) for p in project_ids if str(p).isascii() and str(p).isdigit()]
                query = query.where(_D.project_id.in_(ids))
            return [_deployment(r) for r in conn.execute(query).all()]

        return self._db.read(work)

    @staticmethod
    def _locked(conn: Connection, name: str) -> Any:
        """The deployment's row, locked for this transaction (PostgreSQL; SQLite's write lock is
        already held): changes to one deployment queue here."""
        row = conn.execute(sa.select(deployments).where(_D.name == name).with_for_update()).first()
        if row is None:
            raise _not_found(name)
        return row

    def update_deployment(
        self, name: str, spec: DeploymentSpec, *, actor: str, expected_revision: int | None,
        reason: str, action: str = "deployment.update", skip_unchanged: bool = False,
    ) -> Deployment:  # fmt: skip
        _named(name)
        if action not in ("deployment.update", "deployment.rollback"):
            raise InvalidArgument(f"unknown deployment action {action!r}")

        def work(conn: Connection) -> None:
            row = self._locked(conn, name)
            before = _spec(row.spec)
            if skip_unchanged and before == spec:
                return  # a repeated request: nothing changes, no new revision
            if expected_revision is not None and row.revision != expected_revision:
                raise Conflict(
                    f"deployment {name!r} is at revision {row.revision}, not "
                    f"{expected_revision}: someone changed it; look again and retry",
                    details={"revision": int(row.revision)},
                )
            revision, now = int(row.revision) + 1, now_ms()
            moved = conn.execute(
                deployments.update()
                .where(_D.name == name, _D.revision == row.revision)
                .values(spec=_spec_json(spec), revision=revision, updated_by=actor,
                        updated_time=now)
            ).rowcount  # fmt: skip
            if moved != 1:
                raise Conflict(f"deployment {name!r} changed meanwhile; look again and retry")
            conn.execute(deployment_revisions.insert().values(
                name=name, revision=revision, spec=_spec_json(spec), actor=actor, time=now,
                reason=reason,
            ))  # fmt: skip
            _audit(conn, actor, action, name, {
                "revision": revision, "reason": reason, "diff": spec_diff(before, spec),
            })  # fmt: skip

        self._db.write(work)
        return self.get_deployment(name)

    def get_revision(self, name: str, revision: int) -> DeploymentRevision:
        _named(name)

        def work(conn: Connection) -> DeploymentRevision:
            if not isinstance(revision, int) or not 0 < revision < 2**63:
                raise InvalidArgument(f"a revision is a positive integer, got {revision!r}")
            row = conn.execute(
                sa.select(deployment_revisions).where(_R.name == name, _R.revision == revision)
            ).first()
            if row is None:
                if conn.execute(sa.select(_D.name).where(_D.name == name)).first() is None:
                    raise _not_found(name)
                raise NotFound(f"deployment {name!r} has no revision {revision}")
            return _revision(row)

        return self._db.read(work)

    def list_revisions(self, name: str) -> list[DeploymentRevision]:
        _named(name)

        def work(conn: Connection) -> list[DeploymentRevision]:
            if conn.execute(sa.select(_D.name).where(_D.name == name)).first() is None:
                raise _not_found(name)
            rows = conn.execute(
                sa.select(deployment_revisions).where(_R.name == name).order_by(_R.revision)
            ).all()
            return [_revision(r) for r in rows]

        return self._db.read(work)

    def delete_deployment(self, name: str, *, actor: str) -> None:
        _named(name)

        def work(conn: Connection) -> None:
            row = self._locked(conn, name)
            if row.legal_hold:  # deleting the row would lift the hold
                raise Conflict(
                    f"deployment {name!r} is on legal hold: lift the hold before deleting it"
                )
            conn.execute(deployment_revisions.delete().where(_R.name == name))
            conn.execute(deployments.delete().where(_D.name == name))
            _audit(conn, actor, "deployment.delete", name, {
                "revision": int(row.revision), "project_id": str(row.project_id),
                "diff": spec_diff(_spec(row.spec), None),
            })  # fmt: skip

        self._db.write(work)

    # the prediction log's policy: kept on the row, outside the revisioned spec --------------
    def get_log_policy(self, name: str) -> LogPolicy:
        _named(name)

        def work(conn: Connection) -> LogPolicy:
            row = conn.execute(
                sa.select(_D.log_retention_days, _D.legal_hold).where(_D.name == name)
            ).first()
            if row is None:
                raise _not_found(name)
            return _policy(name, row)

        return self._db.read(work)

    def set_log_policy(
        self, name: str, *, retention_days: int | None, legal_hold: bool, actor: str
    ) -> LogPolicy:
        _named(name)

        def work(conn: Connection) -> None:
            before = _policy(name, self._locked(conn, name))
            after = LogPolicy(name, retention_days, legal_hold)
            if after == before:
                return
            conn.execute(deployments.update().where(_D.name == name).values(
                log_retention_days=retention_days, legal_hold=legal_hold
            ))  # fmt: skip
            _audit(conn, actor, "deployment.log_policy", name, {
                "retention_days": {"from": before.retention_days, "to": retention_days},
                "legal_hold": {"from": before.legal_hold, "to": legal_hold},
            })  # fmt: skip

        self._db.write(work)
        return self.get_log_policy(name)

    def record_log_prune(
        self, name: str, *, seen: LogPolicy, actor: str, change: dict[str, Any]
    ) -> None:
        _named(name)

        def work(conn: Connection) -> None:
            now = _policy(name, self._locked(conn, name))
            if now.legal_hold:
                raise Conflict(f"deployment {name!r} is on legal hold: its log is not pruned")
            if now != seen:
                raise Conflict(f"the log policy of deployment {name!r} changed meanwhile")
            _audit(conn, actor, "deployment.log_prune", name, change)

        self._db.write(work)


def _policy(name: str, row: Any) -> LogPolicy:
    days = row.log_retention_days
    return LogPolicy(name, None if days is None else int(days), bool(row.legal_hold))

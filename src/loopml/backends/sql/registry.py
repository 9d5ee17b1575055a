"""SqlRegistryStore: registered models, versions, aliases, gate reports, approvals, webhooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loopml.backends.sql.audit import append_event
from loopml.backends.sql.engine import Database
from loopml.backends.sql.projects import resolve_project_id
from loopml.backends.sql.rows import execute_unique, now_ms
from loopml.backends.sql.schema import (
    approval_requests,
    gate_reports,
    model_aliases,
    model_versions,
    registered_models,
    runs,
    webhooks,
)
from loopml.errors import Conflict, InvalidArgument, NotFound
from loopml.registry.entities import (
    Approval,
    ApprovalRequest,
    ApprovalStatus,
    GateCheck,
    GateReport,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    RiskTier,
    Stage,
    Webhook,
    validate_alias,
    validate_model_name,
)

_VERSIONS = model_versions.c


def _model(row: Any, aliases: dict[str, int]) -> RegisteredModel:
    return RegisteredModel(
        name=row.name, project_id=str(row.project_id), description=row.description,
        owner=row.owner, risk_tier=RiskTier(row.risk_tier), intended_use=row.intended_use,
        tags=json.loads(row.tags), aliases=aliases, latest_version=row.latest_version,
        created_time=row.created_time, updated_time=row.updated_time,
    )  # fmt: skip


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        name=row.name, version=row.version, source=row.source, run_id=row.run_id,
        digest=row.digest, stage=Stage(row.stage), flavor=row.flavor,
        signature=json.loads(row.signature) if row.signature else None,
        datasets=tuple(json.loads(row.datasets)), description=row.description,
        tags=json.loads(row.tags), created_by=row.created_by, created_time=row.created_time,
        updated_time=row.updated_time,
    )  # fmt: skip


def _report(row: Any) -> GateReport:
    return GateReport(
        report_id=row.report_id, name=row.name, version=row.version, target=Stage(row.target),
        passed=bool(row.passed), checks=tuple(GateCheck(**c) for c in json.loads(row.checks)),
        created_by=row.created_by, created_time=row.created_time, override_by=row.override_by,
        override_reason=row.override_reason,
    )  # fmt: skip


def _request(row: Any) -> ApprovalRequest:
    return ApprovalRequest(
        request_id=row.request_id, name=row.name, version=row.version, target=Stage(row.target),
        requested_by=row.requested_by, required_roles=tuple(json.loads(row.required_roles)),
        status=ApprovalStatus(row.status),
        decisions=tuple(Approval(**d) for d in json.loads(row.decisions)), comment=row.comment,
        created_time=row.created_time, updated_time=row.updated_time,
    )  # fmt: skip


def _audit(conn: Connection, actor: str, action: str, oid: str, change: dict[str, Any]) -> None:
    append_event(
        conn, actor=actor, action=action, object_type="model", object_id=oid, change=change
    )


class SqlRegistryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # registered models ---------------------------------------------------------------------
    def create_registered_model(
        self, name: str, *, project: str | None, description: str, owner: str,
        risk_tier: RiskTier, intended_use: str, tags: dict[str, str], actor: str,
    ) -> RegisteredModel:  # fmt: skip
        validate_model_name(name)

        def work(conn: Connection) -> None:
            now = now_ms()
            pid = resolve_project_id(conn, project)
            execute_unique(
                conn,
                registered_models.insert().values(
                    name=name,
                    project_id=pid,
                    description=description,
                    owner=owner,
                    risk_tier=RiskTier(risk_tier).value,
                    intended_use=intended_use,
                    tags=json.dumps(tags),
                    policy="{}",
                    latest_version=0,
                    created_time=now,
                    updated_time=now,
                ),
                f"registered model {name!r} already exists",
            )
            _audit(conn, actor, "model.create", name, {
                "project_id": str(pid), "risk_tier": RiskTier(risk_tier).value, "owner": owner,
            })  # fmt: skip

        self._db.write(work)
        return self.get_registered_model(name)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self._db.read(lambda conn: self._load_model(conn, name))

    @staticmethod
    def _lock_model(conn: Connection, name: str) -> None:
        """Take the model's row lock (PostgreSQL; SQLite's write lock is already held): alias
        moves and production hand-overs of one model queue here instead of interleaving."""
        found = conn.execute(
            sa.select(registered_models.c.name)
            .where(registered_models.c.name == name)
            .with_for_update()
        ).scalar()
        if found is None:
            raise NotFound(f"registered model {name!r} not found")

    @staticmethod
    def _load_model(conn: Connection, name: str) -> RegisteredModel:
        row = conn.execute(
            sa.select(registered_models).where(registered_models.c.name == name)
        ).first()
        if row is None:
            raise NotFound(f"registered model {name!r} not found")
        aliases = conn.execute(
            sa.select(model_aliases.c.alias, model_aliases.c.version).where(
                model_aliases.c.name == name
            )
        ).all()
        return _model(row, {a: v for a, v in sorted(aliases)})

    def list_registered_models(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[RegisteredModel]:
        def work(conn: Connection) -> list[RegisteredModel]:
            query = sa.select(registered_models).order_by(registered_models.c.name)
            if project_ids is not None:
                ids = [int(p) for p in project_ids if str(p).isdigit()]
                query = query.where(registered_models.c.project_id.in_(ids))
            rows = conn.execute(query).all()
            alias_rows = conn.execute(
                sa.select(model_aliases.c.name, model_aliases.c.alias, model_aliases.c.version)
            ).all()
            by_model: dict[str, dict[str, int]] = {}
            for n, a, v in sorted(alias_rows):
                by_model.setdefault(n, {})[a] = v
            return [_model(r, by_model.get(r.name, {})) for r in rows]

        return self._db.read(work)

    def update_registered_model(
        self, name: str, *, actor: str, description: str | None = None, owner: str | None = None,
        risk_tier: RiskTier | None = None, intended_use: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> RegisteredModel:  # fmt: skip
        change: dict[str, Any] = {
            k: v for k, v in {"description": description, "owner": owner,
                              "intended_use": intended_use}.items() if v is not None
        }  # fmt: skip
        if risk_tier is not None:
            change["risk_tier"] = RiskTier(risk_tier).value
        if tags is not None:
            change["tags"] = json.dumps(tags)

        def work(conn: Connection) -> None:
            self._load_model(conn, name)
            if change:
                conn.execute(
                    registered_models.update()
                    .where(registered_models.c.name == name)
                    .values(**change, updated_time=now_ms())
                )
                _audit(conn, actor, "model.update", name, change)

        self._db.write(work)
        return self.get_registered_model(name)

    # versions ------------------------------------------------------------------------------
    def create_model_version(
        self, name: str, *, source: str, run_id: str, digest: str, flavor: str,
        signature: dict[str, Any] | None, datasets: Sequence[dict[str, str]], description: str,
        tags: dict[str, str], actor: str,
    ) -> ModelVersion:  # fmt: skip
        def work(conn: Connection) -> int:
            if (
                conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
                is None
            ):
                raise NotFound(f"run {run_id!r} not found")
            now = now_ms()
            # One statement takes the model's row lock and the next number: concurrent
            # registrations queue here, and a rolled-back one returns its number.
            version = conn.execute(
                registered_models.update()
                .where(registered_models.c.name == name)
                .values(latest_version=registered_models.c.latest_version + 1, updated_time=now)
                .returning(registered_models.c.latest_version)
            ).scalar()
            if version is None:
                raise NotFound(f"registered model {name!r} not found")
            conn.execute(
                model_versions.insert().values(
                    name=name, version=version, source=source, run_id=run_id, digest=digest,
                    stage=Stage.CANDIDATE.value, flavor=flavor,
                    signature=json.dumps(signature) if signature is not None else None,
                    datasets=json.dumps(list(datasets)), description=description,
                    tags=json.dumps(tags), created_by=actor, created_time=now, updated_time=now,
                )
            )  # fmt: skip
            _audit(conn, actor, "model_version.create", f"{name}/{version}", {
                "source": source, "digest": digest, "flavor": flavor,
            })  # fmt: skip
            return int(version)

        version = self._db.write(work)
        return self.get_model_version(name, version)

    def update_model_version(
        self, name: str, version: int, *, actor: str, description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        change: dict[str, Any] = {} if description is None else {"description": description}
        if tags is not None:
            change["tags"] = json.dumps(tags)

        def work(conn: Connection) -> None:
            self._load_version(conn, name, version)
            if change:
                conn.execute(
                    model_versions.update()
                    .where(_VERSIONS.name == name, _VERSIONS.version == version)
                    .values(**change, updated_time=now_ms())
                )
                _audit(conn, actor, "model_version.update", name, {"version": version, **change})

        self._db.write(work)
        return self.get_model_version(name, version)

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return self._db.read(lambda conn: self._load_version(conn, name, version))

    @staticmethod
    def _load_version(conn: Connection, name: str, version: int) -> ModelVersion:
        if not isinstance(version, int) or not 0 < version < 2**63:
            raise InvalidArgument(f"model version must be a positive integer, got {version!r}")
        row = conn.execute(
            sa.select(model_versions).where(_VERSIONS.name == name, _VERSIONS.version == version)
        ).first()
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return _version(row)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        def work(conn: Connection) -> list[ModelVersion]:
            self._load_model(conn, name)
            rows = conn.execute(
                sa.select(model_versions).where(_VERSIONS.name == name).order_by(_VERSIONS.version)
            ).all()
            return [_version(r) for r in rows]

        return self._db.read(work)

    # aliases ---------------------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        validate_alias(alias)
        self._db.write(lambda conn: self._point_alias(conn, name, alias, version, actor))

    def _point_alias(
        self, conn: Connection, name: str, alias: str, version: int, actor: str
    ) -> None:
        self._lock_model(conn, name)
        self._load_version(conn, name, version)
        key = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
        before = conn.execute(sa.select(model_aliases.c.version).where(key)).scalar()
        if before == version:
            return
        now = now_ms()
        if before is None:
            conn.execute(model_aliases.insert().values(
                name=name, alias=alias, version=version, updated_by=actor, updated_time=now
            ))  # fmt: skip
        else:
            conn.execute(model_aliases.update().where(key).values(
                version=version, updated_by=actor, updated_time=now
            ))  # fmt: skip
        _audit(conn, actor, "model.alias", name, {"alias": alias, "from": before, "to": version})

    def delete_alias(self, name: str, alias: str, *, actor: str) -> None:
        def work(conn: Connection) -> None:
            self._lock_model(conn, name)
            key = (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
            before = conn.execute(sa.select(model_aliases.c.version).where(key)).scalar()
            if before is None:
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            conn.execute(model_aliases.delete().where(key))
            _audit(conn, actor, "model.alias_delete", name, {"alias": alias, "from": before})

        self._db.write(work)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        def work(conn: Connection) -> ModelVersion:
            version = conn.execute(
                sa.select(model_aliases.c.version).where(
                    (model_aliases.c.name == name) & (model_aliases.c.alias == alias)
                )
            ).scalar()
            if version is None:
                self._load_model(conn, name)
                raise NotFound(f"model {name!r} has no alias {alias!r}")
            return self._load_version(conn, name, int(version))

        return self._db.read(work)

    # stages ----------------------------------------------------------------------------------
    def transition(
        self, name: str, version: int, *, to: Stage, expected: Stage, actor: str,
        move_aliases: Sequence[str] = (), retire_stage: Stage | None = None,
        report_id: str | None = None, request_id: str | None = None,
    ) -> ModelVersion:  # fmt: skip
        for alias in move_aliases:
            validate_alias(alias)

        def work(conn: Connection) -> None:
            if move_aliases or retire_stage is not None:  # one hand-over at a time per model
                self._lock_model(conn, name)
            now = now_ms()
            moved = conn.execute(
                model_versions.update()
                .where(_VERSIONS.name == name, _VERSIONS.version == version,
                       _VERSIONS.stage == Stage(expected).value)
                .values(stage=Stage(to).value, updated_time=now)
            ).rowcount  # fmt: skip
            if moved != 1:
                current = self._load_version(conn, name, version)  # NotFound if absent
                raise Conflict(
                    f"model {name!r} version {version} is {current.stage.value}, "
                    f"not {Stage(expected).value}: someone moved it; look again and retry"
                )
            if Stage(to) in (Stage.CANDIDATE, Stage.ARCHIVED):  # sent back: approvals lapse
                self._cancel_requests(conn, name, [version], now)
            retired: list[int] = []
            if retire_stage is not None:
                retired = list(conn.execute(
                    sa.select(_VERSIONS.version).where(
                        _VERSIONS.name == name, _VERSIONS.version != version,
                        _VERSIONS.stage == Stage(retire_stage).value)
                ).scalars())  # fmt: skip
                if retired:
                    self._cancel_requests(conn, name, retired, now)
                    conn.execute(
                        model_versions.update()
                        .where(_VERSIONS.name == name, _VERSIONS.version.in_(retired))
                        .values(stage=Stage.ARCHIVED.value, updated_time=now)
                    )
            _audit(conn, actor, "model_version.transition", f"{name}/{version}", {
                "from": Stage(expected).value, "to": Stage(to).value, "gate_report": report_id,
                "approval_request": request_id, "archived": retired,
            })  # fmt: skip
            for alias in move_aliases:
                self._point_alias(conn, name, alias, version, actor)

        self._db.write(work)
        return self.get_model_version(name, version)

    @staticmethod
    def _cancel_requests(conn: Connection, name: str, versions: list[int], now: int) -> None:
        """A version leaving the road to production takes its open and granted approvals along:
        coming back needs a new request."""
        conn.execute(
            approval_requests.update()
            .where(approval_requests.c.name == name, approval_requests.c.version.in_(versions),
                   approval_requests.c.status.in_([ApprovalStatus.PENDING.value,
                                                   ApprovalStatus.APPROVED.value]))
            .values(status=ApprovalStatus.CANCELLED.value, updated_time=now)
        )  # fmt: skip

    # policy and gate reports -----------------------------------------------------------------
    def set_policy(self, name: str, policy: PromotionPolicy, *, actor: str) -> None:
        def work(conn: Connection) -> None:
            self._load_model(conn, name)
            conn.execute(
                registered_models.update()
                .where(registered_models.c.name == name)
                .values(policy=json.dumps(policy.to_dict()), updated_time=now_ms())
            )
            _audit(conn, actor, "model.policy", name, policy.to_dict())

        self._db.write(work)

    def get_policy(self, name: str) -> PromotionPolicy:
        def work(conn: Connection) -> PromotionPolicy:
            raw = conn.execute(
                sa.select(registered_models.c.policy).where(registered_models.c.name == name)
            ).scalar()
            if raw is None:
                raise NotFound(f"registered model {name!r} not found")
            return PromotionPolicy.from_dict(json.loads(raw))

        return self._db.read(work)

    def save_gate_report(self, report: GateReport) -> None:
        def work(conn: Connection) -> None:
            conn.execute(gate_reports.insert().values(
                report_id=report.report_id, name=report.name, version=report.version,
                target=report.target.value, passed=report.passed,
                checks=json.dumps([{"name": c.name, "passed": c.passed, "detail": c.detail}
                                   for c in report.checks]),
                created_by=report.created_by, created_time=report.created_time,
                override_by="", override_reason="",
            ))  # fmt: skip
            _audit(conn, report.created_by, "model_version.gates",
                   f"{report.name}/{report.version}", {
                       "report_id": report.report_id, "target": report.target.value,
                       "passed": report.passed,
                       "failed": [c.name for c in report.checks if not c.passed],
                   })  # fmt: skip

        self._db.write(work)

    def get_gate_report(self, report_id: str) -> GateReport:
        def work(conn: Connection) -> GateReport:
            row = conn.execute(
                sa.select(gate_reports).where(gate_reports.c.report_id == report_id)
            ).first()
            if row is None:
                raise NotFound(f"gate report {report_id!r} not found")
            return _report(row)

        return self._db.read(work)

    def list_gate_reports(self, name: str, version: int | None = None) -> list[GateReport]:
        def work(conn: Connection) -> list[GateReport]:
            query = sa.select(gate_reports).where(gate_reports.c.name == name)
            if version is not None:
                query = query.where(gate_reports.c.version == version)
            rows = conn.execute(query.order_by(gate_reports.c.created_time)).all()
            return [_report(r) for r in rows]

        return self._db.read(work)

    def override_gate_report(self, report_id: str, *, actor: str, reason: str) -> GateReport:
        def work(conn: Connection) -> None:
            row = conn.execute(
                sa.select(gate_reports).where(gate_reports.c.report_id == report_id)
            ).first()
            if row is None:
                raise NotFound(f"gate report {report_id!r} not found")
            report = _report(row)
            if report.passed or report.override_by:
                raise Conflict(f"gate report {report_id!r} needs no override")
            conn.execute(
                gate_reports.update()
                .where(gate_reports.c.report_id == report_id)
                .values(override_by=actor, override_reason=reason)
            )
            _audit(conn, actor, "model_version.override", f"{report.name}/{report.version}", {
                "report_id": report_id, "reason": reason,
                "failed": [c.name for c in report.checks if not c.passed],
            })  # fmt: skip

        self._db.write(work)
        return self.get_gate_report(report_id)

    # approvals -------------------------------------------------------------------------------
    def create_approval_request(
        self, name: str, version: int, *, target: Stage, required_roles: Sequence[str],
        comment: str, actor: str,
    ) -> ApprovalRequest:  # fmt: skip
        request_id = uuid.uuid4().hex

        def work(conn: Connection) -> None:
            self._lock_model(conn, name)  # one open request per version, even when two ask at once
            self._load_version(conn, name, version)
            open_request = conn.execute(
                sa.select(approval_requests.c.request_id).where(
                    approval_requests.c.name == name, approval_requests.c.version == version,
                    approval_requests.c.status == ApprovalStatus.PENDING.value)
            ).scalar()  # fmt: skip
            if open_request is not None:
                raise Conflict(f"model {name!r} version {version} already has a pending request "
                               f"({open_request})")  # fmt: skip
            now = now_ms()
            conn.execute(approval_requests.insert().values(
                request_id=request_id, name=name, version=version, target=Stage(target).value,
                requested_by=actor, required_roles=json.dumps(list(required_roles)),
                status=ApprovalStatus.PENDING.value, decisions="[]", comment=comment,
                created_time=now, updated_time=now,
            ))  # fmt: skip
            _audit(conn, actor, "approval.request", f"{name}/{version}", {
                "request_id": request_id, "target": Stage(target).value,
                "required_roles": list(required_roles), "comment": comment,
            })  # fmt: skip

        self._db.write(work)
        return self.get_approval_request(request_id)

    def get_approval_request(self, request_id: str) -> ApprovalRequest:
        return self._db.read(lambda conn: self._load_request(conn, request_id))

    @staticmethod
    def _load_request(conn: Connection, request_id: str) -> ApprovalRequest:
        row = conn.execute(
            sa.select(approval_requests).where(approval_requests.c.request_id == request_id)
        ).first()
        if row is None:
            raise NotFound(f"approval request {request_id!r} not found")
        return _request(row)

    def list_approval_requests(
        self, name: str | None = None, version: int | None = None,
        status: ApprovalStatus | None = None,
    ) -> list[ApprovalRequest]:  # fmt: skip
        def work(conn: Connection) -> list[ApprovalRequest]:
            query = sa.select(approval_requests).order_by(approval_requests.c.created_time)
            if name is not None:
                query = query.where(approval_requests.c.name == name)
            if version is not None:
                query = query.where(approval_requests.c.version == version)
            if status is not None:
                query = query.where(approval_requests.c.status == ApprovalStatus(status).value)
            return [_request(r) for r in conn.execute(query).all()]

        return self._db.read(work)

    def decide_approval(
        self, request_id: str, *, role: str, user: str, approved: bool, comment: str
    ) -> ApprovalRequest:
        def work(conn: Connection) -> None:
            request = self._load_request(conn, request_id)
            if request.status is not ApprovalStatus.PENDING:
                raise Conflict(f"approval request {request_id!r} is {request.status.value}")
            decisions = [*request.decisions, Approval(role, user, approved, comment, now_ms())]
            granted = {d.role for d in decisions if d.approved}
            status = (
                ApprovalStatus.REJECTED if not approved
                else ApprovalStatus.APPROVED if granted >= set(request.required_roles)
                else ApprovalStatus.PENDING
            )  # fmt: skip
            updated = conn.execute(
                approval_requests.update()
                .where(approval_requests.c.request_id == request_id,
                       approval_requests.c.status == ApprovalStatus.PENDING.value,
                       approval_requests.c.updated_time == request.updated_time)
                .values(status=status.value, updated_time=max(now_ms(), request.updated_time + 1),
                        decisions=json.dumps([{
                            "role": d.role, "user": d.user, "approved": d.approved,
                            "comment": d.comment, "time": d.time} for d in decisions]))
            ).rowcount  # fmt: skip
            if updated != 1:
                raise Conflict(f"approval request {request_id!r} changed meanwhile; retry")
            _audit(conn, user, "approval.grant" if approved else "approval.reject",
                   f"{request.name}/{request.version}", {
                       "request_id": request_id, "role": role, "comment": comment,
                       "status": status.value,
                   })  # fmt: skip

        self._db.write(work)
        return self.get_approval_request(request_id)

    # webhooks --------------------------------------------------------------------------------
    def create_webhook(
        self, url: str, *, secret: str, events: Sequence[str], model: str | None, actor: str
    ) -> Webhook:
        webhook_id = uuid.uuid4().hex

        def work(conn: Connection) -> None:
            conn.execute(webhooks.insert().values(
                webhook_id=webhook_id, url=url, secret=secret, events=json.dumps(list(events)),
                model=model, created_by=actor, created_time=now_ms(),
            ))  # fmt: skip
            append_event(conn, actor=actor, action="webhook.create", object_type="webhook",
                         object_id=webhook_id, change={"url": url, "events": list(events),
                                                       "model": model})  # fmt: skip

        self._db.write(work)
        return next(w for w in self.list_webhooks() if w.webhook_id == webhook_id)

    def list_webhooks(self) -> list[Webhook]:
        def work(conn: Connection) -> list[Webhook]:
            rows = conn.execute(sa.select(webhooks).order_by(webhooks.c.created_time)).all()
            return [
                Webhook(webhook_id=r.webhook_id, url=r.url, events=tuple(json.loads(r.events)),
                        model=r.model, created_by=r.created_by, created_time=r.created_time)
                for r in rows
            ]  # fmt: skip

        return self._db.read(work)

    def delete_webhook(self, webhook_id: str, *, actor: str) -> None:
        def work(conn: Connection) -> None:
            gone = conn.execute(webhooks.delete().where(webhooks.c.webhook_id == webhook_id))
            if gone.rowcount != 1:
                raise NotFound(f"webhook {webhook_id!r} not found")
            append_event(conn, actor=actor, action="webhook.delete", object_type="webhook",
                         object_id=webhook_id, change={})  # fmt: skip

        self._db.write(work)

    def webhook_secret(self, webhook_id: str) -> str:
        def work(conn: Connection) -> str:
            secret = conn.execute(
                sa.select(webhooks.c.secret).where(webhooks.c.webhook_id == webhook_id)
            ).scalar()
            if secret is None:
                raise NotFound(f"webhook {webhook_id!r} not found")
            return str(secret)

        return self._db.read(work)

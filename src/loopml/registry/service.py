"""The registry's rules: registering logged models, promotion through gates, approvals.

:class:`RegistryService` is what the client (embedded) and the server (for remote clients) call.
It reads the candidate's run, project KPIs and champion, runs the gates
(:func:`~loopml.registry.gates.run_gates`), keeps the reports, and asks the store for one atomic
change per step; every step is audited.

Who may do what is partly the permission matrix (the server checks the route's action) and partly
here: an override needs an admin and a reason; an approval needs one of the required roles and
someone other than the requester (separation of duties).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from loopml.artifacts.store import ArtifactStore
from loopml.errors import Conflict, InvalidArgument, NotFound, PermissionDenied, ValidationFailed
from loopml.governance.roles import parse_role
from loopml.projects.store import ProjectStore
from loopml.registry.entities import (
    EVENTS,
    TRANSITIONS,
    ApprovalRequest,
    ApprovalStatus,
    GateReport,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    RiskTier,
    Stage,
    Webhook,
    parse_risk_tier,
    parse_stage,
    validate_alias,
    validate_model_name,
)
from loopml.registry.gates import run_gates
from loopml.registry.store import RegistryStore
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.store import TrackingStore

MANIFEST_NAME = "loopml-model.yaml"
Publish = Callable[[str, str, dict[str, Any]], None]  # (event, model name, payload)


def parse_source(source: str) -> tuple[str, str]:
    """``runs:/<run_id>/<path>`` → (run_id, path)."""
    if not isinstance(source, str) or not source.startswith("runs:/"):
        raise InvalidArgument(
            f"a model version's source is 'runs:/<run_id>/<path>', got {source!r}"
        )
    run_id, _, path = source[len("runs:/") :].strip("/").partition("/")
    if not run_id or not path:
        raise InvalidArgument(
            f"source {source!r} needs a run id and a path: 'runs:/<run_id>/<path>'"
        )
    from loopml.artifacts.paths import clean_relpath

    return run_id, clean_relpath(path)


class RegistryService:
    def __init__(
        self, store: RegistryStore, tracking: TrackingStore, projects: ProjectStore,
        artifacts: ArtifactStore, *, publish: Publish | None = None,
        check_webhook_url: Callable[[str], str] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self._tracking = tracking
        self._projects = projects
        self._artifacts = RunArtifacts(tracking, artifacts)
        self._publish = publish or (lambda event, name, payload: None)
        self._check_webhook_url = check_webhook_url

    # models ----------------------------------------------------------------------------------
    def create_registered_model(
        self, name: str, *, actor: str, project: str | None = None, description: str = "",
        owner: str = "", risk_tier: str | RiskTier = RiskTier.MEDIUM, intended_use: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:  # fmt: skip
        return self.store.create_registered_model(
            validate_model_name(name), project=project, description=description,
            owner=owner or actor, risk_tier=parse_risk_tier(risk_tier),
            intended_use=intended_use, tags=dict(tags or {}), actor=actor,
        )  # fmt: skip

    def create_model_version(
        self, name: str, source: str, *, actor: str, description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        """Register the model package logged at ``source`` as the next version of ``name``.

        The version keeps the digest the run recorded for the package manifest: loading the
        version later refuses a package whose files no longer match it.
        """
        run_id, path = parse_source(source)
        run = self._tracking.get_run(run_id)
        records = {r.path: r for r in self._tracking.list_artifact_records(run_id)}
        manifest_path = f"{path}/{MANIFEST_NAME}"
        record = records.get(manifest_path)
        if record is None or not record.sha256:
            raise NotFound(f"run {run_id} has no model package at {path!r} (no {MANIFEST_NAME})")
        import yaml

        manifest = yaml.safe_load(self._artifacts.read_bytes(run, manifest_path)) or {}
        if not isinstance(manifest, dict):
            raise ValidationFailed(f"{manifest_path} of run {run_id} is not a model manifest")
        lineage = manifest.get("lineage") or {}
        version = self.store.create_model_version(
            name, source=f"runs:/{run_id}/{path}", run_id=run_id, digest=record.sha256,
            flavor=str(manifest.get("flavor", "")), signature=manifest.get("signature"),
            datasets=list(lineage.get("datasets") or ()), description=description,
            tags=dict(tags or {}), actor=actor,
        )  # fmt: skip
        self._publish("model_version.created", name, {
            "name": name, "version": version.version, "source": version.source,
            "digest": version.digest, "actor": actor,
        })  # fmt: skip
        return version

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None:
        self.store.set_alias(name, validate_alias(alias), version, actor=actor)
        self._publish("alias.moved", name, {"name": name, "alias": alias, "version": version,
                                            "actor": actor})  # fmt: skip

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(name)

    def list_registered_models(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[RegisteredModel]:
        return self.store.list_registered_models(project_ids=project_ids)

    def update_registered_model(
        self, name: str, *, actor: str, description: str | None = None, owner: str | None = None,
        risk_tier: str | RiskTier | None = None, intended_use: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel:  # fmt: skip
        return self.store.update_registered_model(
            name, actor=actor, description=description, owner=owner,
            risk_tier=None if risk_tier is None else parse_risk_tier(risk_tier),
            intended_use=intended_use, tags=None if tags is None else dict(tags),
        )  # fmt: skip

    def update_model_version(
        self, name: str, version: int, *, actor: str, description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion:  # fmt: skip
        """Change a version's description or tags (replaced whole); its package never changes."""
        return self.store.update_model_version(
            name, version, actor=actor, description=description,
            tags=None if tags is None else dict(tags),
        )  # fmt: skip

    def get_model_version(self, name: str, version: int) -> ModelVersion:
        return self.store.get_model_version(name, version)

    def list_model_versions(self, name: str) -> list[ModelVersion]:
        return self.store.list_model_versions(name)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.store.get_version_by_alias(name, alias)

    def delete_alias(self, name: str, alias: str, *, actor: str) -> None:
        self.store.delete_alias(name, alias, actor=actor)

    def set_policy(self, name: str, policy: PromotionPolicy, *, actor: str) -> None:
        for role in policy.production_approvers:
            parse_role(role)
        self.store.set_policy(name, policy, actor=actor)

    def get_policy(self, name: str) -> PromotionPolicy:
        return self.store.get_policy(name)

    def list_gate_reports(self, name: str, version: int | None = None) -> list[GateReport]:
        return self.store.list_gate_reports(name, version)

    def get_approval_request(self, request_id: str) -> ApprovalRequest:
        return self.store.get_approval_request(request_id)

    def list_approval_requests(
        self, name: str | None = None, version: int | None = None,
        status: ApprovalStatus | None = None,
    ) -> list[ApprovalRequest]:  # fmt: skip
        return self.store.list_approval_requests(name, version, status)

    def list_webhooks(self) -> list[Webhook]:
        return self.store.list_webhooks()

    def delete_webhook(self, webhook_id: str, *, actor: str) -> None:
        self.store.delete_webhook(webhook_id, actor=actor)

    # gates -----------------------------------------------------------------------------------
    def check_gates(
        self, name: str, version: int, *, target: str | Stage, actor: str
    ) -> GateReport:
        """Run the policy's gates for moving ``version`` to ``target``; the report is kept."""
        target = parse_stage(target)
        model = self.store.get_registered_model(name)
        candidate = self.store.get_model_version(name, version)
        policy = self.store.get_policy(name)
        metrics = self._tracking.get_run(candidate.run_id).metrics
        champion = self._champion(model, policy, exclude=version)
        kpis = self._projects.get_project(model.project_id).kpis if policy.require_kpis else ()
        artifacts = [r.path for r in self._tracking.list_artifact_records(candidate.run_id)]
        checks = run_gates(policy, metrics, kpis=kpis, champion=champion, artifacts=artifacts)
        report = GateReport(
            report_id=uuid.uuid4().hex, name=name, version=version, target=target,
            passed=all(c.passed for c in checks), checks=checks, created_by=actor,
            created_time=int(time.time() * 1000),
        )  # fmt: skip
        self.store.save_gate_report(report)
        return report

    def _champion(
        self, model: RegisteredModel, policy: PromotionPolicy, *, exclude: int
    ) -> tuple[int, Mapping[str, float]] | None:
        version = model.aliases.get(policy.champion_alias) or model.aliases.get("production")
        if version is None or version == exclude:
            return None
        champion = self.store.get_model_version(model.name, version)
        return version, self._tracking.get_run(champion.run_id).metrics

    def override(self, report_id: str, *, actor: str, is_admin: bool, reason: str) -> GateReport:
        """Let a failed gate report through: admins only, with a reason; audited."""
        if not is_admin:
            raise PermissionDenied(f"{actor} may not override gates: only an admin may")
        if not reason or not reason.strip():
            raise InvalidArgument("an override needs a reason")
        return self.store.override_gate_report(report_id, actor=actor, reason=reason.strip())

    # stages ----------------------------------------------------------------------------------
    def promote(
        self, name: str, version: int, *, to: str | Stage, actor: str,
        report_id: str | None = None,
    ) -> ModelVersion:  # fmt: skip
        """Move a version one step: to ``validated`` and ``production`` through the gates (a
        fresh report, or the given overridden one), to ``production`` also through approvals
        when the policy names approvers; to ``archived`` or back to ``candidate`` freely."""
        to = parse_stage(to)
        current = self.store.get_model_version(name, version)
        if to not in TRANSITIONS[current.stage]:
            raise Conflict(f"model {name!r} version {version} is {current.stage.value}; it cannot "
                           f"go to {to.value} from there")  # fmt: skip
        policy = self.store.get_policy(name)
        request_id: str | None = None
        if to in (Stage.VALIDATED, Stage.PRODUCTION):
            report = self._report_for(name, version, to, actor, report_id)
            if not report.allowed:
                failed = "; ".join(c.detail for c in report.checks if not c.passed)
                raise ValidationFailed(
                    f"model {name!r} version {version} failed its gates for {to.value}: {failed}",
                    details={"report_id": report.report_id},
                )
            report_id = report.report_id
        if to is Stage.APPROVED or (to is Stage.PRODUCTION and policy.production_approvers):
            request_id = self._approved_request(name, version, policy)
        if to is Stage.PRODUCTION:
            aliases = ("production", policy.champion_alias)
            moved = self.store.transition(
                name, version, to=to, expected=current.stage, actor=actor,
                move_aliases=tuple(dict.fromkeys(aliases)), retire_stage=Stage.PRODUCTION,
                report_id=report_id, request_id=request_id,
            )  # fmt: skip
            for alias in dict.fromkeys(aliases):
                moved_to = {"name": name, "alias": alias, "version": version, "actor": actor}
                self._publish("alias.moved", name, moved_to)
        else:
            moved = self.store.transition(
                name, version, to=to, expected=current.stage, actor=actor, report_id=report_id,
                request_id=request_id,
            )  # fmt: skip
        self._publish("model_version.stage", name, {
            "name": name, "version": version, "from": current.stage.value, "to": to.value,
            "actor": actor,
        })  # fmt: skip
        return moved

    def _report_for(
        self, name: str, version: int, to: Stage, actor: str, report_id: str | None
    ) -> GateReport:
        if report_id is None:
            return self.check_gates(name, version, target=to, actor=actor)
        report = self.store.get_gate_report(report_id)
        if (report.name, report.version, report.target) != (name, version, to):
            raise InvalidArgument(
                f"gate report {report_id} is for {report.name} v{report.version} → "
                f"{report.target.value}, not {name} v{version} → {to.value}"
            )
        return report

    def _approved_request(self, name: str, version: int, policy: PromotionPolicy) -> str:
        approved = self.store.list_approval_requests(name, version, ApprovalStatus.APPROVED)
        if not approved:
            roles = ", ".join(policy.production_approvers) or "an approver"
            raise PermissionDenied(
                f"model {name!r} version {version} needs an approved request from {roles} "
                "before production: request_approval, then have them approve"
            )
        return approved[-1].request_id

    # approvals -------------------------------------------------------------------------------
    def request_approval(
        self, name: str, version: int, *, actor: str, comment: str = ""
    ) -> ApprovalRequest:
        policy = self.store.get_policy(name)
        current = self.store.get_model_version(name, version)
        if current.stage not in (Stage.VALIDATED, Stage.APPROVED):
            raise Conflict(f"model {name!r} version {version} is {current.stage.value}: only a "
                           "validated version can be put up for approval")  # fmt: skip
        pending = self.store.list_approval_requests(name, version, ApprovalStatus.PENDING)
        if pending:
            raise Conflict(f"model {name!r} version {version} already has a pending request "
                           f"({pending[0].request_id})")  # fmt: skip
        roles = policy.production_approvers or ("risk_manager",)
        request = self.store.create_approval_request(
            name, version, target=Stage.PRODUCTION, required_roles=roles, comment=comment,
            actor=actor,
        )  # fmt: skip
        self._publish("approval.requested", name, {
            "request_id": request.request_id, "name": name, "version": version,
            "required_roles": list(roles), "requested_by": actor,
        })  # fmt: skip
        return request

    def decide(
        self, request_id: str, *, actor: str, roles: Collection[str], approve: bool,
        comment: str = "",
    ) -> ApprovalRequest:  # fmt: skip
        """Approve or reject as one of the request's required roles the actor holds."""
        request = self.store.get_approval_request(request_id)
        if actor == request.requested_by:
            raise PermissionDenied(
                f"{actor} requested this approval and may not decide it (separation of duties)"
            )
        if any(d.user == actor for d in request.decisions):
            raise Conflict(f"{actor} has already decided on request {request_id}")
        if request.status is not ApprovalStatus.PENDING:
            raise Conflict(f"approval request {request_id} is {request.status.value}, not pending")
        held = [r for r in request.missing_roles if r in set(roles)]
        if not held:
            needed = ", ".join(request.missing_roles) or "none left"
            raise PermissionDenied(f"{actor} holds none of the roles this request still needs "
                                   f"({needed})")  # fmt: skip
        decided = self.store.decide_approval(
            request_id, role=held[0], user=actor, approved=approve, comment=comment
        )
        moved = False
        if decided.status is ApprovalStatus.APPROVED:
            version = self.store.get_model_version(decided.name, decided.version)
            if version.stage is Stage.VALIDATED:
                self.store.transition(decided.name, decided.version, to=Stage.APPROVED,
                                      expected=Stage.VALIDATED, actor=actor,
                                      request_id=request_id)  # fmt: skip
                moved = True
        event = "approval.granted" if approve else "approval.rejected"
        self._publish(event, decided.name, {
            "request_id": request_id, "name": decided.name, "version": decided.version,
            "role": held[0], "by": actor, "status": decided.status.value,
        })  # fmt: skip
        if moved:  # a stage change like any other: subscribers to stages hear of it too
            self._publish("model_version.stage", decided.name, {
                "name": decided.name, "version": decided.version, "from": Stage.VALIDATED.value,
                "to": Stage.APPROVED.value, "actor": actor,
            })  # fmt: skip
        return decided

    # webhooks ----------------------------------------------------------------------------------
    def create_webhook(
        self, url: str, *, secret: str, events: Sequence[str] = (), model: str | None = None,
        actor: str,
    ) -> Webhook:  # fmt: skip
        unknown = sorted(set(events) - set(EVENTS))
        if unknown:
            raise InvalidArgument(f"unknown webhook events {unknown}: use {', '.join(EVENTS)}")
        if len(secret) < 16:
            raise InvalidArgument("a webhook secret needs at least 16 characters")
        if model is not None:
            self.store.get_registered_model(model)
        if self._check_webhook_url is not None:  # refused now, and again at each delivery
            url = self._check_webhook_url(url)
        return self.store.create_webhook(url, secret=secret, events=events, model=model,
                                         actor=actor)  # fmt: skip

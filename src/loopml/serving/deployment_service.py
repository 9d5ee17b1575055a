"""The deployments' rules: names and specs valid, every target real, rollbacks to real revisions.

:class:`DeploymentService` is what the client (embedded) and the server (for remote clients) call.
It checks each target against the model registry (the model exists; the version exists, or the
alias points somewhere: serving would fail otherwise) and asks the store for one atomic change per
call; the store audits it.

>>> import tempfile
>>> from loopml.settings import Settings
>>> from loopml.stack import Stack
>>> from loopml.testing.registry_contract import log_fake_package
>>> stack = Stack.from_settings(Settings(home=tempfile.mkdtemp()))
>>> _ = stack.registry.create_registered_model("fraud", actor="me")
>>> source = log_fake_package(stack, {"auc": 0.9})
>>> for _ in range(2):
...     _ = stack.registry.create_model_version("fraud", source, actor="me")
>>> spec = DeploymentSpec((Target("fraud", version=1, weight=1.0),))
>>> stack.deployments.create_deployment("fraud-api", spec, actor="me").revision
1
>>> stack.deployments.set_traffic("fraud-api", {"fraud:1": 0.9, "fraud:2": 0.1},
...                               actor="me").revision
2
>>> stack.deployments.rollback("fraud-api", actor="me").spec == spec
True
>>> [r.reason for r in stack.deployments.history("fraud-api")]
['create', 'traffic', 'rollback to 1']
>>> stack.close()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from loopml.artifacts.store import ArtifactStore
from loopml.errors import Conflict, InvalidArgument, NotFound, Unavailable
from loopml.registry.api import ModelRegistry
from loopml.registry.entities import ModelVersion
from loopml.serving.deployment_store import DeploymentStore
from loopml.serving.deployments import (
    Deployment,
    DeploymentRevision,
    DeploymentSpec,
    Target,
    validate_deployment_name,
)
from loopml.serving.predlog_records import (
    HourCompaction,
    LogStatus,
    PruneResult,
    RetentionRules,
    hour_label,
)

MAX_DESCRIPTION = 10_000
MAX_REASON = 256


def as_spec(spec: DeploymentSpec | Mapping[str, Any]) -> DeploymentSpec:
    """A spec, or its ``to_dict`` form (validated)."""
    if isinstance(spec, DeploymentSpec):
        return spec
    if isinstance(spec, Mapping):
        return DeploymentSpec.from_dict(spec)
    raise InvalidArgument(f"a deployment spec is a DeploymentSpec or a mapping, got {spec!r}")


def resolve_target(registry: ModelRegistry, target: Target) -> ModelVersion:
    """The model version a target serves now (an alias is followed at the time of the call)."""
    try:
        if target.alias is not None:
            return registry.get_version_by_alias(target.model, target.alias)
        assert target.version is not None
        return registry.get_model_version(target.model, target.version)
    except NotFound as e:
        message = e.message
        try:  # say so when the model itself is missing, not just its version
            registry.get_registered_model(target.model)
        except NotFound as missing:
            message = missing.message
        raise NotFound(f"deployment target {target.ref}: {message}") from None


def _revision_number(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidArgument(f"{what} must be a positive integer, got {value!r}")
    return value


class DeploymentService:
    """``artifacts`` holds the prediction log (under ``log_prefix``); ``retention`` is the
    server's default and floor; ``clock`` gives the time (seconds) that retention counts from."""

    def __init__(
        self, store: DeploymentStore, registry: ModelRegistry, *,
        artifacts: ArtifactStore | None = None, retention: RetentionRules | None = None,
        log_prefix: str = "predictions", clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.store = store
        self._registry = registry
        self._artifacts = artifacts
        self.retention = retention or RetentionRules()
        self._prefix, self._clock = log_prefix, clock

    def check_targets(self, spec: DeploymentSpec) -> None:
        """NotFound, naming the target, unless every model, version and alias exists."""
        for target in spec.targets:
            resolve_target(self._registry, target)

    def create_deployment(
        self, name: str, spec: DeploymentSpec | Mapping[str, Any], *, actor: str,
        project: str | None = None, description: str = "",
    ) -> Deployment:  # fmt: skip
        """Revision 1 of ``name``, in ``project`` (default: the first target's model's)."""
        validate_deployment_name(name)
        spec = as_spec(spec)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"a description is text of at most {MAX_DESCRIPTION} characters")
        self.check_targets(spec)
        if project is None:
            project = self._registry.get_registered_model(spec.targets[0].model).project_id
        return self.store.create_deployment(
            name, spec, project=project, description=description, actor=actor
        )

    def get_deployment(self, name: str) -> Deployment:
        return self.store.get_deployment(name)

    def list_deployments(self) -> list[Deployment]:
        return self.store.list_deployments()

    def update_deployment(
        self, name: str, spec: DeploymentSpec | Mapping[str, Any], *, actor: str,
        expected_revision: int | None = None, reason: str = "update",
    ) -> Deployment:  # fmt: skip
        """A new revision with ``spec`` (an unchanged spec makes none, so retries are safe);
        Conflict when someone changed the deployment since ``expected_revision``."""
        spec = as_spec(spec)
        if expected_revision is not None:
            _revision_number(expected_revision, "expected_revision")
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
            raise InvalidArgument(f"a reason is 1-{MAX_REASON} characters of text")
        self.check_targets(spec)
        return self.store.update_deployment(
            name, spec, actor=actor, expected_revision=expected_revision, reason=reason.strip(),
            skip_unchanged=True,
        )  # fmt: skip

    def set_traffic(self, name: str, weights: Mapping[str, float], *, actor: str) -> Deployment:
        """Live traffic split as ``weights`` (``model:version``/``model@alias`` → weight); the
        shadows stay, and a shadow named here goes live."""
        current = self.store.get_deployment(name)
        spec = current.spec.with_traffic(weights)
        self.check_targets(spec)
        return self.store.update_deployment(
            name, spec, actor=actor, expected_revision=current.revision, reason="traffic",
            skip_unchanged=True,
        )  # fmt: skip

    def rollback(self, name: str, *, actor: str, to_revision: int | None = None) -> Deployment:
        """Restore the spec of ``to_revision`` (default: the one before the current) as a new
        revision."""
        current = self.store.get_deployment(name)
        if to_revision is None:
            if current.revision <= 1:
                raise Conflict(f"deployment {name!r} has only its first revision: nothing to "
                               "roll back to")  # fmt: skip
            to_revision = current.revision - 1
        _revision_number(to_revision, "to_revision")
        if to_revision >= current.revision:
            raise InvalidArgument(
                f"deployment {name!r} is at revision {current.revision}: roll back to an "
                "earlier one"
            )
        old = self.store.get_revision(name, to_revision)
        self.check_targets(old.spec)  # an alias may have been deleted since
        return self.store.update_deployment(
            name, old.spec, actor=actor, expected_revision=current.revision,
            reason=f"rollback to {to_revision}", action="deployment.rollback",
        )  # fmt: skip

    def history(self, name: str) -> list[DeploymentRevision]:
        return self.store.list_revisions(name)

    def delete_deployment(self, name: str, *, actor: str) -> None:
        self.store.delete_deployment(name, actor=actor)

    def resolve(self, name: str) -> dict[Target, ModelVersion]:
        """Each target of the deployment with the model version it serves now."""
        spec = self.store.get_deployment(name).spec
        return {t: resolve_target(self._registry, t) for t in spec.targets}

    # the prediction log ----------------------------------------------------------------------
    def _log(self, name: str) -> tuple[ArtifactStore, str]:
        if self._artifacts is None:
            raise Unavailable("this deployment service has no artifact store for its logs")
        validate_deployment_name(name)
        return self._artifacts, f"{self._prefix}/{name}"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def log_status(self, name: str) -> LogStatus:
        """The policy as it applies now and what the log holds (hours, files, bytes)."""
        from loopml.serving.predlog_compaction import compactable_hours  # lazily: pyarrow
        from loopml.serving.predlog_segments import hour_files

        policy = self.store.get_log_policy(name)
        artifacts, base = self._log(name)
        hours = hour_files(artifacts, base, None, None)
        sizes = [i.size or 0 for i in artifacts.list(base, recursive=True)]
        starts = [h.start_ms for h in hours]
        return LogStatus(
            deployment=name, retention_days=policy.retention_days, legal_hold=policy.legal_hold,
            effective_retention_days=policy.effective_days(self.retention),
            default_retention_days=self.retention.default_days,
            floor_days=self.retention.floor_days, hours=len(hours),
            files=sum(len(f) for f in hours.values()), bytes=sum(sizes),
            oldest_hour=hour_label(min(starts)) if starts else None,
            newest_hour=hour_label(max(starts)) if starts else None,
            compactable_hours=compactable_hours(artifacts, base, now_ms=self._now_ms()),
        )  # fmt: skip

    def set_log_policy(
        self, name: str, *, actor: str, retention_days: int | None = None,
        default_retention: bool = False, legal_hold: bool | None = None,
    ) -> LogStatus:  # fmt: skip
        """Change the retention (never below the floor), reset it to the server's default, or
        set or lift the legal hold; audited with ``actor``."""
        if retention_days is not None and default_retention:
            raise InvalidArgument("give retention_days or default_retention, not both")
        if legal_hold is not None and not isinstance(legal_hold, bool):
            raise InvalidArgument(f"legal_hold must be true or false, got {legal_hold!r}")
        if retention_days is not None:
            self.retention.check(retention_days)
        current = self.store.get_log_policy(name)
        days = None if default_retention else (retention_days or current.retention_days)
        hold = current.legal_hold if legal_hold is None else legal_hold
        self.store.set_log_policy(name, retention_days=days, legal_hold=hold, actor=actor)
        return self.log_status(name)

    def compact_log(
        self, name: str, *, actor: str, hour_ms: int | None = None
    ) -> list[HourCompaction]:
        """Compact the hour starting at ``hour_ms``, or every hour that needs it (never the
        hour being written). Rows stay as they are, so this is not an audit event."""
        from loopml.serving.predlog_compaction import compact_hour, compactable_hours

        self.store.get_log_policy(name)  # NotFound for an unknown deployment
        artifacts, base = self._log(name)
        now = self._now_ms()
        if hour_ms is not None and (isinstance(hour_ms, bool) or not isinstance(hour_ms, int)):
            raise InvalidArgument(f"hour_ms must be an integer (ms since epoch), got {hour_ms!r}")
        hours = compactable_hours(artifacts, base, now_ms=now) if hour_ms is None else [hour_ms]
        done: list[HourCompaction] = []
        for hour in hours:
            done += compact_hour(artifacts, base, hour, now_ms=now)
        return done

    def prune_log(self, name: str, *, actor: str) -> list[PruneResult]:
        """Remove whole hours past the retention, each batch audited (with its hours, files and
        rows) before it goes; nothing while the deployment is on legal hold."""
        from loopml.serving import predlog_retention as retention  # lazily: pyarrow

        policy = self.store.get_log_policy(name)
        artifacts, base = self._log(name)
        days = policy.effective_days(self.retention)
        cutoff = retention.cutoff_ms(now_ms=self._now_ms(), days=days)
        if policy.legal_hold:
            return [PruneResult(name, True, days, cutoff)]
        results = []
        for plan in retention.plan_prune(artifacts, base, cutoff):
            self.store.record_log_prune(
                name, seen=policy, actor=actor, change=plan.audit_change(policy, days, cutoff)
            )
            retention.remove_hours(artifacts, base, plan.hours)
            change = plan.audit_change(policy, days, cutoff)
            results.append(PruneResult(name, False, days, cutoff, change["hours"], plan.files,
                                       plan.rows))  # fmt: skip
        return results

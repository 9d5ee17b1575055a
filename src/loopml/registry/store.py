"""What a metadata backend must offer the registry: records and atomic state changes.

The rules (which transitions need which gates and approvals) live in
:mod:`loopml.registry.service`; a store only keeps the records and makes each change atomic,
with its audit event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol

from loopml.registry.entities import (
    ApprovalRequest,
    ApprovalStatus,
    GateReport,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
    RiskTier,
    Stage,
    Webhook,
)


class RegistryStore(Protocol):
    def create_registered_model(
        self, name: str, *, project: str | None, description: str, owner: str,
        risk_tier: RiskTier, intended_use: str, tags: dict[str, str], actor: str,
    ) -> RegisteredModel: ...  # fmt: skip

    def get_registered_model(self, name: str) -> RegisteredModel: ...

    def list_registered_models(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[RegisteredModel]: ...

    def update_registered_model(
        self, name: str, *, actor: str, description: str | None = None, owner: str | None = None,
        risk_tier: RiskTier | None = None, intended_use: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> RegisteredModel: ...  # fmt: skip

    def create_model_version(
        self,
        name: str,
        *,
        source: str,
        run_id: str,
        digest: str,
        flavor: str,
        signature: dict[str, Any] | None,
        datasets: Sequence[dict[str, str]],
        description: str,
        tags: dict[str, str],
        actor: str,
    ) -> ModelVersion:
        """The next version number (1, 2, …), unique and gap-free under concurrency."""
        ...  # fmt: skip

    def update_model_version(
        self, name: str, version: int, *, actor: str, description: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> ModelVersion: ...  # fmt: skip

    def get_model_version(self, name: str, version: int) -> ModelVersion: ...

    def list_model_versions(self, name: str) -> list[ModelVersion]: ...

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None: ...

    def delete_alias(self, name: str, alias: str, *, actor: str) -> None: ...

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    def transition(
        self,
        name: str,
        version: int,
        *,
        to: Stage,
        expected: Stage,
        actor: str,
        move_aliases: Sequence[str] = (),
        retire_stage: Stage | None = None,
        report_id: str | None = None,
        request_id: str | None = None,
    ) -> ModelVersion:
        """Move ``version`` from ``expected`` to ``to`` (Conflict if it is elsewhere now); point
        ``move_aliases`` at it and archive any other version in ``retire_stage``, atomically."""
        ...  # fmt: skip

    def set_policy(self, name: str, policy: PromotionPolicy, *, actor: str) -> None: ...

    def get_policy(self, name: str) -> PromotionPolicy: ...

    def save_gate_report(self, report: GateReport) -> None: ...

    def get_gate_report(self, report_id: str) -> GateReport: ...

    def list_gate_reports(self, name: str, version: int | None = None) -> list[GateReport]: ...

    def override_gate_report(self, report_id: str, *, actor: str, reason: str) -> GateReport: ...

    def create_approval_request(
        self, name: str, version: int, *, target: Stage, required_roles: Sequence[str],
        comment: str, actor: str,
    ) -> ApprovalRequest: ...  # fmt: skip

    def get_approval_request(self, request_id: str) -> ApprovalRequest: ...

    def list_approval_requests(
        self, name: str | None = None, version: int | None = None,
        status: ApprovalStatus | None = None,
    ) -> list[ApprovalRequest]: ...  # fmt: skip

    def decide_approval(
        self, request_id: str, *, role: str, user: str, approved: bool, comment: str
    ) -> ApprovalRequest:
        """Record one decision (atomically with the request's new status)."""
        ...

    def create_webhook(
        self, url: str, *, secret: str, events: Sequence[str], model: str | None, actor: str
    ) -> Webhook: ...

    def list_webhooks(self) -> list[Webhook]: ...

    def delete_webhook(self, webhook_id: str, *, actor: str) -> None: ...

    def webhook_secret(self, webhook_id: str) -> str: ...

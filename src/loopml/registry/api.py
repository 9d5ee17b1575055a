"""The registry as its callers see it: embedded (:class:`~loopml.registry.service.RegistryService`)
or remote (``loopml.backends.http.registry.HttpRegistry``), the same calls either way."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

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


class ModelRegistry(Protocol):
    def create_registered_model(
        self, name: str, *, actor: str, project: str | None = None, description: str = "",
        owner: str = "", risk_tier: str | RiskTier = RiskTier.MEDIUM, intended_use: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel: ...  # fmt: skip

    def create_model_version(
        self, name: str, source: str, *, actor: str, description: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion: ...  # fmt: skip

    def set_alias(self, name: str, alias: str, version: int, *, actor: str) -> None: ...

    def get_registered_model(self, name: str) -> RegisteredModel: ...

    def list_registered_models(
        self, *, project_ids: Collection[str] | None = None
    ) -> list[RegisteredModel]: ...

    def update_registered_model(
        self, name: str, *, actor: str, description: str | None = None, owner: str | None = None,
        risk_tier: str | RiskTier | None = None, intended_use: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> RegisteredModel: ...  # fmt: skip

    def update_model_version(
        self, name: str, version: int, *, actor: str, description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ModelVersion: ...  # fmt: skip

    def get_model_version(self, name: str, version: int) -> ModelVersion: ...

    def list_model_versions(self, name: str) -> list[ModelVersion]: ...

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    def delete_alias(self, name: str, alias: str, *, actor: str) -> None: ...

    def set_policy(self, name: str, policy: PromotionPolicy, *, actor: str) -> None: ...

    def get_policy(self, name: str) -> PromotionPolicy: ...

    def list_gate_reports(self, name: str, version: int | None = None) -> list[GateReport]: ...

    def get_approval_request(self, request_id: str) -> ApprovalRequest: ...

    def list_approval_requests(
        self, name: str | None = None, version: int | None = None,
        status: ApprovalStatus | None = None,
    ) -> list[ApprovalRequest]: ...  # fmt: skip

    def list_webhooks(self) -> list[Webhook]: ...

    def delete_webhook(self, webhook_id: str, *, actor: str) -> None: ...

    def check_gates(
        self, name: str, version: int, *, target: str | Stage, actor: str
    ) -> GateReport: ...

    def override(
        self, report_id: str, *, actor: str, is_admin: bool, reason: str
    ) -> GateReport: ...

    def promote(
        self, name: str, version: int, *, to: str | Stage, actor: str,
        report_id: str | None = None,
    ) -> ModelVersion: ...  # fmt: skip

    def request_approval(
        self, name: str, version: int, *, actor: str, comment: str = ""
    ) -> ApprovalRequest: ...

    def decide(
        self, request_id: str, *, actor: str, roles: Collection[str], approve: bool,
        comment: str = "",
    ) -> ApprovalRequest: ...  # fmt: skip

    def create_webhook(
        self, url: str, *, secret: str, events: Sequence[str] = (), model: str | None = None,
        actor: str,
    ) -> Webhook: ...  # fmt: skip

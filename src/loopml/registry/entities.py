"""Frozen records of the model registry.

A registered model has numbered versions (1, 2, 3, … with no gaps), named aliases that point at
one version each (``production``, ``champion``, anything), and a promotion policy. A version moves
through stages; each move is checked by the gates and, where the policy says so, approved by
people other than the one who asked.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Any

from loopml.errors import InvalidArgument


class Stage(enum.StrEnum):
    CANDIDATE = "candidate"
    VALIDATED = "validated"
    APPROVED = "approved"
    PRODUCTION = "production"
    ARCHIVED = "archived"


# Where a version may go from each stage. Archived versions come back only as candidates, so a
# retired model re-enters through the gates.
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.CANDIDATE: frozenset({Stage.VALIDATED, Stage.ARCHIVED}),
    Stage.VALIDATED: frozenset({Stage.APPROVED, Stage.PRODUCTION, Stage.ARCHIVED, Stage.CANDIDATE}),
    Stage.APPROVED: frozenset({Stage.PRODUCTION, Stage.ARCHIVED, Stage.CANDIDATE}),
    Stage.PRODUCTION: frozenset({Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.CANDIDATE}),
}


# What webhooks can subscribe to.
EVENTS = (
    "model_version.created", "model_version.stage", "alias.moved", "approval.requested",
    "approval.granted", "approval.rejected",
)  # fmt: skip


class RiskTier(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# Names of models and deployments (and the prediction log's folders): 1-128 of letters, digits,
# "_", "." and "-", starting with a letter or digit. Use with fullmatch.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


def validate_model_name(name: str) -> str:
    """Letters, digits, ``_ . -``; 1-128 characters, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def validate_alias(alias: str) -> str:
    """Letters, digits, ``_ -``; starts with a letter (so it never reads as a version number)."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidArgument(
            f"invalid alias {alias!r}: use 1-64 letters, digits, '_' or '-', starting with a letter"
        )
    return alias


def parse_stage(value: str | Stage) -> Stage:
    try:
        return Stage(str(value).strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in Stage)
        raise InvalidArgument(f"unknown stage {value!r}: use one of {names}") from None


def parse_risk_tier(value: str | RiskTier) -> RiskTier:
    try:
        return RiskTier(str(value).strip().lower())
    except ValueError:
        names = ", ".join(t.value for t in RiskTier)
        raise InvalidArgument(f"unknown risk tier {value!r}: use one of {names}") from None


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    project_id: str
    description: str = ""
    owner: str = ""
    risk_tier: RiskTier = RiskTier.MEDIUM
    intended_use: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)
    latest_version: int = 0
    created_time: int = 0
    updated_time: int = 0
    # The newest version in each stage, as MLflow's ``latest_versions``: filled by the Client's
    # MLflow-named verbs (``client.get_registered_model``), empty from the registry's own calls.
    latest_versions: tuple[ModelVersion, ...] = ()

    @property
    def creation_timestamp(self) -> int:
        """MLflow's name for :attr:`created_time` (milliseconds since the epoch)."""
        return self.created_time

    @property
    def last_updated_timestamp(self) -> int:
        return self.updated_time


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: int
    source: str  # runs:/<run_id>/<path>
    run_id: str
    digest: str  # sha256 of the package manifest, as recorded when the model was logged
    stage: Stage = Stage.CANDIDATE
    flavor: str = ""
    signature: dict[str, Any] | None = None
    datasets: tuple[dict[str, str], ...] = ()
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    created_by: str = ""
    created_time: int = 0
    updated_time: int = 0
    # The aliases pointing here, as MLflow's ``aliases``: filled by the Client's MLflow-named
    # verbs (``client.get_model_version`` …), empty from the registry's own calls.
    aliases: tuple[str, ...] = ()

    @property
    def current_stage(self) -> str:
        """MLflow's name for the stage (ours: candidate, validated, approved, production …)."""
        return self.stage.value

    @property
    def creation_timestamp(self) -> int:
        return self.created_time

    @property
    def last_updated_timestamp(self) -> int:
        return self.updated_time

    @property
    def user_id(self) -> str:
        return self.created_by


@dataclass(frozen=True, slots=True)
class MetricGate:
    """``metric`` must be ≥ (``maximize``) or ≤ (``minimize``) ``threshold``."""

    metric: str
    threshold: float
    direction: str = "maximize"


@dataclass(frozen=True, slots=True)
class ChampionGate:
    """``metric`` must beat the current champion's by at least ``min_improvement``."""

    metric: str
    direction: str = "maximize"
    min_improvement: float = 0.0


@dataclass(frozen=True, slots=True)
class PromotionPolicy:
    """What a version must show before it is validated or goes to production."""

    metric_gates: tuple[MetricGate, ...] = ()
    champion_gates: tuple[ChampionGate, ...] = ()
    require_kpis: bool = True  # every validation KPI of the model's project must be met
    required_artifacts: tuple[str, ...] = ()  # paths in the version's run, e.g. "model_card.md"
    production_approvers: tuple[str, ...] = ()  # roles that must each approve (e.g. risk_manager)
    champion_alias: str = "champion"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric_gates": [
                {"metric": g.metric, "threshold": g.threshold, "direction": g.direction}
                for g in self.metric_gates
            ],
            "champion_gates": [
                {"metric": g.metric, "direction": g.direction, "min_improvement": g.min_improvement}
                for g in self.champion_gates
            ],
            "require_kpis": self.require_kpis,
            "required_artifacts": list(self.required_artifacts),
            "production_approvers": list(self.production_approvers),
            "champion_alias": self.champion_alias,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PromotionPolicy:
        return cls(
            metric_gates=tuple(MetricGate(**g) for g in d.get("metric_gates", ())),
            champion_gates=tuple(ChampionGate(**g) for g in d.get("champion_gates", ())),
            require_kpis=bool(d.get("require_kpis", True)),
            required_artifacts=tuple(d.get("required_artifacts", ())),
            production_approvers=tuple(d.get("production_approvers", ())),
            champion_alias=d.get("champion_alias", "champion"),
        )


@dataclass(frozen=True, slots=True)
class GateCheck:
    name: str  # e.g. "metric roc_auc >= 0.9", "kpi fraud caught", "champion roc_auc"
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class GateReport:
    report_id: str
    name: str
    version: int
    target: Stage
    passed: bool
    checks: tuple[GateCheck, ...]
    created_by: str
    created_time: int
    override_by: str = ""
    override_reason: str = ""

    @property
    def allowed(self) -> bool:
        """Passed, or overridden by an admin with a reason."""
        return self.passed or bool(self.override_by)


@dataclass(frozen=True, slots=True)
class Approval:
    role: str
    user: str
    approved: bool
    comment: str
    time: int


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    request_id: str
    name: str
    version: int
    target: Stage
    requested_by: str
    required_roles: tuple[str, ...]
    status: ApprovalStatus
    decisions: tuple[Approval, ...] = ()
    comment: str = ""
    created_time: int = 0
    updated_time: int = 0

    @property
    def missing_roles(self) -> tuple[str, ...]:
        granted = {d.role for d in self.decisions if d.approved}
        return tuple(r for r in self.required_roles if r not in granted)


@dataclass(frozen=True, slots=True)
class Webhook:
    webhook_id: str
    url: str
    events: tuple[str, ...]  # empty: every event
    model: str | None  # only this model's events; None: every model
    created_by: str
    created_time: int

"""Request and response bodies of the REST API (bounded: every list and string has a limit)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    model_validator,
)

from loopml.tracking.entities import Metric, MetricColumns, Run

Key = Annotated[str, Field(min_length=1, max_length=250)]
Text = Annotated[str, Field(max_length=10_000)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
ShortId = Annotated[str, Field(max_length=32)]
OrderItem = Annotated[str, Field(max_length=300)]
MAX_ITEMS = 100_000
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]  # what a BIGINT column holds
View = Literal["active_only", "deleted_only", "all"]
Status = Literal["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"]
DirectionIn = Literal["maximize", "minimize"]
JudgedAtIn = Literal["validation", "production"]
_NON_FINITE = ("NaN", "Infinity", "-Infinity")  # pydantic reads these strings as floats
# JSON has no NaN or infinity; they travel as these strings, and the schema says so.
JsonFloat = Annotated[
    float,
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "enum": list(_NON_FINITE)}]}),
]


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, ser_json_inf_nan="strings")


# projects ------------------------------------------------------------------------------------
class ProjectCreate(In):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    business_goal: Text = ""
    description: Text = ""
    owner: Annotated[str, Field(max_length=256)] = ""


class ProjectUpdate(In):
    business_goal: Text | None = None
    description: Text | None = None
    owner: Annotated[str, Field(max_length=256)] | None = None


class OkrCreate(In):
    objective: Text
    key_results: Annotated[list[Text], Field(max_length=50)] = []
    owner: Annotated[str, Field(max_length=256)] = ""


class KpiCreate(In):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    metric: Key
    target: float
    direction: DirectionIn = "maximize"
    judged_at: JudgedAtIn = "validation"
    description: Text = ""
    owner: Annotated[str, Field(max_length=256)] = ""


class KpiUpdate(In):
    metric: Key | None = None
    target: float | None = None
    direction: DirectionIn | None = None
    judged_at: JudgedAtIn | None = None
    description: Text | None = None
    owner: Annotated[str, Field(max_length=256)] | None = None


# experiments ---------------------------------------------------------------------------------
class ExperimentCreate(In):
    name: Name
    project: Annotated[str, Field(max_length=128)] | None = None
    description: Text = ""
    tags: Annotated[dict[Key, Annotated[str, Field(max_length=8000)]], Field(max_length=100)] = {}


class ExperimentUpdate(In):
    name: Name | None = None
    description: Text | None = None


class TagIn(In):
    key: Key
    value: Annotated[str, Field(max_length=8000)]


# runs ----------------------------------------------------------------------------------------
class MetricIn(In):
    key: Key
    value: JsonFloat | None  # null or "NaN"/"Infinity"/"-Infinity" for non-finite values
    timestamp: Int64
    step: Int64 = 0

    def to_metric(self) -> Metric:
        return Metric(self.key, math.nan if self.value is None else self.value, self.timestamp,
                      self.step)  # fmt: skip


class MetricColumnsIn(In):
    """Metrics as equal-length columns: item ``i`` is ``key[i]``, ``value[i]``, ... (``step``
    defaults to zeros). What the Python client sends: it parses and validates without a Python
    object per value, about ten times faster than a list of records."""

    key: Annotated[list[Key], Field(max_length=MAX_ITEMS)]
    value: Annotated[list[JsonFloat | None], Field(max_length=MAX_ITEMS)]
    timestamp: Annotated[list[Int64], Field(max_length=MAX_ITEMS)]
    step: Annotated[list[Int64], Field(max_length=MAX_ITEMS)] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> MetricColumnsIn:
        lengths = {len(self.key), len(self.value), len(self.timestamp)}
        if self.step is not None:
            lengths.add(len(self.step))
        if len(lengths) > 1:
            raise ValueError(
                "key, value, timestamp and step must be lists of the same length, got "
                f"{len(self.key)}, {len(self.value)}, {len(self.timestamp)} and "
                f"{'-' if self.step is None else len(self.step)}"
            )
        return self

    def to_metrics(self) -> MetricColumns:
        values = self.value
        if None in values:  # null stands for NaN
            values = [math.nan if v is None else v for v in values]
        return MetricColumns(self.key, values, self.timestamp, self.step)  # type: ignore[arg-type]


# A list of records, or the same as columns (an object); the shape picks the one that validates,
# so an error names the field of that shape alone.
MetricsIn = Annotated[
    Annotated[MetricColumnsIn, Tag("columns")]
    | Annotated[Annotated[list[MetricIn], Field(max_length=MAX_ITEMS)], Tag("records")],
    Discriminator(lambda v: "columns" if isinstance(v, dict | MetricColumnsIn) else "records"),
]


def metrics_of(body: MetricColumnsIn | list[MetricIn]) -> Sequence[Metric]:
    if isinstance(body, MetricColumnsIn):
        return body.to_metrics()
    return [m.to_metric() for m in body]


class ParamIn(In):
    key: Key
    value: Annotated[str, Field(max_length=6000)]


class RunCreate(In):
    experiment_id: Annotated[str, Field(max_length=32)] = "0"
    run_name: Annotated[str, Field(max_length=250)] | None = None
    user: Annotated[str, Field(max_length=256)] | None = None
    start_time: Int64 | None = None
    tags: Annotated[dict[Key, Annotated[str, Field(max_length=8000)]], Field(max_length=100)] = {}
    parent_run_id: Annotated[str, Field(max_length=32)] | None = None
    source: Annotated[str, Field(max_length=4096)] = ""
    git_commit: Annotated[str, Field(max_length=64)] | None = None
    git_dirty: bool | None = None


class RunUpdate(In):
    status: Status
    end_time: Int64 | None = None
    cpu_seconds: float | None = None
    peak_memory_bytes: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    metrics: MetricsIn = []


class BatchIn(In):
    metrics: MetricsIn = []
    params: Annotated[list[ParamIn], Field(max_length=1000)] = []
    tags: Annotated[list[TagIn], Field(max_length=1000)] = []


class MultiMetricsIn(In):
    batches: Annotated[
        dict[Annotated[str, Field(max_length=32)], MetricsIn], Field(max_length=10_000)
    ]


class RunInputIn(In):
    name: Name
    digest: Annotated[str, Field(min_length=1, max_length=128)]
    role: Annotated[str, Field(min_length=1, max_length=64)] = "train"
    source: Annotated[str, Field(max_length=4096)] = ""


class InputsIn(In):
    inputs: Annotated[list[RunInputIn], Field(max_length=1000)]


class ArtifactRecordIn(In):
    path: Annotated[str, Field(min_length=1, max_length=1024)]
    size: Annotated[int, Field(ge=0, le=2**63 - 1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ArtifactRecordsIn(In):
    records: Annotated[list[ArtifactRecordIn], Field(max_length=10_000)]


class SearchIn(In):
    experiment_ids: Annotated[list[ShortId], Field(min_length=1, max_length=1000)]
    filter: Annotated[str, Field(max_length=10_000)] | None = None
    order_by: Annotated[list[OrderItem], Field(max_length=10)] | None = None
    max_results: Annotated[int, Field(ge=1, le=50_000)] = 1000
    page_token: Annotated[str, Field(max_length=10_000)] | None = None
    view: View = "active_only"


# responses -----------------------------------------------------------------------------------
class RunInputOut(Out):
    name: str
    digest: str
    role: str
    source: str


class RunOut(Out):
    run_id: str
    experiment_id: str
    run_name: str
    status: str
    start_time: int
    end_time: int | None
    user: str
    lifecycle_stage: str
    artifact_path: str
    parent_run_id: str | None
    source: str
    git_commit: str | None
    git_dirty: bool | None
    cpu_seconds: float | None
    peak_memory_bytes: int | None
    params: dict[str, str]
    metrics: dict[str, JsonFloat]
    tags: dict[str, str]
    inputs: list[RunInputOut]

    @classmethod
    def of(cls, run: Run) -> RunOut:
        return cls.model_validate(run)


class RunPage(Out):
    runs: list[RunOut]
    next_page_token: str | None


class MetricOut(Out):
    key: str
    value: JsonFloat
    timestamp: int
    step: int


class Ok(Out):
    ok: bool = True


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorOut(BaseModel):
    """Every error: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "invalid request"), (401, "authentication required"), (403, "not allowed"),
        (404, "not found"), (409, "conflict"), (413, "body too large"),
        (415, "unsupported media type"), (503, "unavailable; retry"),
    )
}  # fmt: skip
"""Declared on every router, so the OpenAPI spec documents the errors the API returns."""


# model registry ------------------------------------------------------------------------------
ModelName = Annotated[str, Field(min_length=1, max_length=128)]
RiskTierIn = Literal["low", "medium", "high", "critical"]
StageIn = Literal["candidate", "validated", "approved", "production", "archived"]
Tags = Annotated[dict[Key, Annotated[str, Field(max_length=8000)]], Field(max_length=100)]


class ModelCreate(In):
    name: ModelName
    project: Annotated[str, Field(max_length=128)] | None = None
    description: Text = ""
    owner: Annotated[str, Field(max_length=256)] = ""
    risk_tier: RiskTierIn = "medium"
    intended_use: Text = ""
    tags: Tags = {}


class ModelUpdate(In):
    description: Text | None = None
    owner: Annotated[str, Field(max_length=256)] | None = None
    risk_tier: RiskTierIn | None = None
    intended_use: Text | None = None
    tags: Tags | None = None


class VersionUpdate(In):
    description: Text | None = None
    tags: Tags | None = None


class VersionCreate(In):
    source: Annotated[str, Field(min_length=1, max_length=1024)]
    description: Text = ""
    tags: Tags = {}


class AliasIn(In):
    version: Annotated[int, Field(ge=1, le=2**63 - 1)]


class MetricGateIn(In):
    metric: Key
    threshold: float
    direction: DirectionIn = "maximize"


class ChampionGateIn(In):
    metric: Key
    direction: DirectionIn = "maximize"
    min_improvement: Annotated[float, Field(ge=0)] = 0.0


class PolicyIn(In):
    metric_gates: Annotated[list[MetricGateIn], Field(max_length=100)] = []
    champion_gates: Annotated[list[ChampionGateIn], Field(max_length=100)] = []
    require_kpis: bool = True
    required_artifacts: Annotated[
        list[Annotated[str, Field(max_length=1024)]], Field(max_length=100)
    ] = []
    production_approvers: Annotated[
        list[Annotated[str, Field(max_length=64)]], Field(max_length=10)
    ] = []
    champion_alias: Annotated[str, Field(min_length=1, max_length=64)] = "champion"


class GatesIn(In):
    target: StageIn = "validated"


class PromoteIn(In):
    to: StageIn
    report_id: ShortId | None = None


class OverrideIn(In):
    reason: Annotated[str, Field(min_length=1, max_length=4000)]


class ApprovalRequestIn(In):
    comment: Text = ""


class DecisionIn(In):
    approve: bool
    comment: Text = ""


class WebhookIn(In):
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    secret: Annotated[str, Field(min_length=16, max_length=256)]
    events: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=20)] = []
    model: ModelName | None = None


# deployments ---------------------------------------------------------------------------------
DeploymentName = Annotated[str, Field(min_length=1, max_length=128)]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
TrafficWeight = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]
Revision = Annotated[int, Field(ge=1, le=2**63 - 1)]


class TargetIn(In):
    model: ModelName
    version: Annotated[int, Field(ge=1, le=2**63 - 1)] | None = None
    alias: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    weight: TrafficWeight = 0.0
    shadow: bool = False


class DeploymentSpecIn(In):
    targets: Annotated[list[TargetIn], Field(min_length=1, max_length=100)]
    shadow_share: Share = 1.0
    sticky_key: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    max_batch_size: Annotated[int, Field(ge=1, le=100_000)] | None = None
    max_wait_ms: Annotated[float, Field(ge=0, le=60_000, allow_inf_nan=False)] | None = None
    sample_rate: Share = 1.0
    redact: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=250)], Literal["drop", "hash"]],
        Field(max_length=1000),
    ] = {}


class DeploymentCreate(In):
    name: DeploymentName
    project: Annotated[str, Field(max_length=128)] | None = None
    description: Text = ""
    spec: DeploymentSpecIn


class DeploymentUpdate(In):
    spec: DeploymentSpecIn
    expected_revision: Revision | None = None
    reason: Annotated[str, Field(min_length=1, max_length=256)] = "update"


class TrafficIn(In):
    weights: Annotated[
        dict[Annotated[str, Field(min_length=1, max_length=200)], TrafficWeight],
        Field(min_length=1, max_length=100),
    ]


class RollbackIn(In):
    to_revision: Revision | None = None


class LogPolicyIn(In):
    """Only what is given changes; ``default_retention`` goes back to the server's default."""

    retention_days: Annotated[int, Field(strict=True, ge=1, le=36_500)] | None = None
    default_retention: Annotated[bool, Field(strict=True)] = False
    legal_hold: Annotated[bool, Field(strict=True)] | None = None


class LogCompactIn(In):
    hour_ms: Annotated[int, Field(strict=True, ge=0, le=2**53)] | None = None

"""The prediction log's plain records: its time units, a deployment's log policy and the
server's retention rules, and what a compaction or a prune reports. No Parquet here, so the
deployment protocols and the CLI import these without loading pyarrow.

>>> rules = RetentionRules(default_days=180, floor_days=30)
>>> [LogPolicy("fraud", days, False).effective_days(rules) for days in (None, 10, 365)]
[180, 30, 365]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loopml.errors import InvalidArgument
from loopml.registry.entities import NAME_PATTERN

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def hour_label(hour_ms: int) -> str:
    """``2023-11-14T22`` for the UTC hour starting at ``hour_ms``."""
    return f"{datetime.fromtimestamp(hour_ms / 1000, UTC):%Y-%m-%dT%H}"


def check_deployment_name(name: object) -> str:
    """Return ``name`` if it is a safe deployment name (letters, digits, ``_.-``), else raise."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidArgument(
            f"deployment name {name!r} is not allowed: use 1-128 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit",
            details={"deployment": repr(name)[:200]},
        )
    return name


MAX_RETENTION_DAYS = 36_500


@dataclass(frozen=True, slots=True)
class RetentionRules:
    """The server's defaults (from ``LOOPML_PREDLOG_RETENTION_DAYS`` and
    ``LOOPML_PREDLOG_RETENTION_FLOOR_DAYS``)."""

    default_days: int = 180
    floor_days: int = 180

    def __post_init__(self) -> None:
        if not 1 <= self.floor_days <= self.default_days <= MAX_RETENTION_DAYS:
            raise InvalidArgument(
                f"the prediction-log retention default ({self.default_days} days) must be at "
                f"least the floor ({self.floor_days} days), and both between 1 and "
                f"{MAX_RETENTION_DAYS}"
            )

    def check(self, days: int) -> int:
        """``days`` if it is a retention this server accepts, else a clear InvalidArgument."""
        if isinstance(days, bool) or not isinstance(days, int):
            raise InvalidArgument(f"retention_days must be a whole number of days, got {days!r}")
        if days < self.floor_days:
            raise InvalidArgument(
                f"a retention of {days} days is below this server's floor of {self.floor_days} "
                "days (LOOPML_PREDLOG_RETENTION_FLOOR_DAYS)",
                details={"floor_days": self.floor_days},
            )
        if days > MAX_RETENTION_DAYS:
            raise InvalidArgument(f"retention_days must be at most {MAX_RETENTION_DAYS}")
        return days


@dataclass(frozen=True, slots=True)
class LogPolicy:
    """What a deployment says about its log: its own retention (None: the server's default) and
    whether it is on legal hold."""

    deployment: str
    retention_days: int | None
    legal_hold: bool

    def effective_days(self, rules: RetentionRules) -> int:
        return max(self.retention_days or rules.default_days, rules.floor_days)


@dataclass(frozen=True, slots=True)
class LogStatus:
    """A deployment's log policy as it applies now, and what its log holds."""

    deployment: str
    retention_days: int | None
    legal_hold: bool
    effective_retention_days: int
    default_retention_days: int
    floor_days: int
    hours: int
    files: int
    bytes: int
    oldest_hour: str | None
    newest_hour: str | None
    compactable_hours: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogStatus:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one prune removed (nothing when on hold or when no hour is old enough)."""

    deployment: str
    legal_hold: bool
    retention_days: int
    cutoff_ms: int
    hours: list[str] = field(default_factory=list)
    files: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneResult:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class HourCompaction:
    """What compacting one kind of one hour did."""

    hour_ms: int
    kind: str
    files_before: int  # files of the kind in the folder before
    files_removed: int
    rows: int  # rows in the compacted file (0 when only leftovers were removed)
    compacted: str | None  # the new file's name, None when nothing new was written

    def to_dict(self) -> dict[str, object]:
        return {
            "hour": hour_label(self.hour_ms), "hour_ms": self.hour_ms, "kind": self.kind,
            "files_before": self.files_before, "files_removed": self.files_removed,
            "rows": self.rows, "compacted": self.compacted,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> HourCompaction:
        fields = ("hour_ms", "kind", "files_before", "files_removed", "rows", "compacted")
        return cls(**{k: d[k] for k in fields})  # type: ignore[arg-type]

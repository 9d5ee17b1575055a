"""How long a deployment's prediction log is kept, and the pruning of whole hours past it.

A deployment keeps its log for its own ``retention_days`` or, unset, the server's default
(180 days: the EU AI Act asks deployers of high-risk systems to keep their logs at least six
months), and never less than the server's floor: :class:`RetentionRules`, built from the
settings. A ``legal_hold`` stops pruning altogether. Both live on the deployment row, outside its
revisioned spec, so a rollback never lifts a hold.

Pruning removes whole hour folders (predictions and feedback) whose hour *ended* at or before
``now - retention``: a row exactly ``retention`` old is kept, and rows are gone within the hour
after they pass the edge. The rows of each hour are counted before anything is removed, and the
audit event (deployment, hours, files, rows) is written before the files go, in a transaction
that checks the hold and the retention are still what the plan was made with.

>>> rules = RetentionRules(default_days=180, floor_days=30)
>>> [LogPolicy("fraud", days, False).effective_days(rules) for days in (None, 10, 365)]
[180, 30, 365]
>>> cutoff_ms(now_ms=200 * DAY_MS, days=180) == 20 * DAY_MS
True
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument, NotFound
from loopml.serving.predlog import HOUR_MS
from loopml.serving.predlog_compaction import hour_label
from loopml.serving.predlog_segments import (
    DAY_MS,
    KINDS,
    HourFolder,
    hour_files,
    is_compacted,
    is_segment,
    local_segments,
    read_manifest,
    visible,
)

MAX_RETENTION_DAYS = 36_500
HOURS_PER_EVENT = 168
"""A prune removes at most this many hours per audit event (a long backlog makes several)."""


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
class PrunePlan:
    """Hours to remove, with their files and visible rows per kind (counted before removal)."""

    hours: list[HourFolder]
    files: int
    rows: dict[str, int]

    def audit_change(self, policy: LogPolicy, days: int, cutoff: int) -> dict[str, Any]:
        return {
            "retention_days": days, "configured_retention_days": policy.retention_days,
            "cutoff_ms": cutoff, "hours": [hour_label(h.start_ms) for h in self.hours],
            "folders": [h.folder for h in self.hours], "files": self.files, "rows": self.rows,
        }  # fmt: skip


def cutoff_ms(*, now_ms: int, days: int) -> int:
    """Rows with a timestamp at or after this are kept."""
    return now_ms - days * DAY_MS


def plan_prune(artifacts: ArtifactStore, base: str, cutoff: int) -> list[PrunePlan]:
    """The hours under ``base`` that ended at or before ``cutoff``, oldest first, in chunks of
    :data:`HOURS_PER_EVENT`, each with its files and rows."""
    last = cutoff // HOUR_MS * HOUR_MS - HOUR_MS  # the last hour whose end is <= cutoff
    folders = hour_files(artifacts, base, None, last)
    plans: list[PrunePlan] = []
    items = list(folders.items())
    for start in range(0, len(items), HOURS_PER_EVENT):
        chunk = items[start : start + HOURS_PER_EVENT]
        rows = dict.fromkeys(KINDS, 0)
        with local_segments(artifacts) as local:
            for hour, files in chunk:
                names = [f.rpartition("/")[2] for f in files]
                for kind in KINDS:
                    rows[kind] += _visible_rows(local, hour.folder, names, kind)
        plans.append(PrunePlan([h for h, _ in chunk], sum(len(f) for _, f in chunk), rows))
    return plans


def _visible_rows(local: Any, folder: str, names: list[str], kind: str) -> int:
    import pyarrow.parquet as pq

    mine = [n for n in names if is_segment(n, kind)]
    manifests = {
        n: read_manifest(local.path(f"{folder}/{n}")) for n in mine if is_compacted(n, kind)
    }
    return sum(
        pq.read_metadata(local.path(f"{folder}/{n}")).num_rows for n in visible(mine, manifests)
    )


def remove_hours(artifacts: ArtifactStore, base: str, hours: list[HourFolder]) -> None:
    """Delete the hour folders, then day folders left empty."""
    days = set()
    for hour in hours:
        with contextlib.suppress(NotFound):  # a prune elsewhere was first
            artifacts.delete(hour.folder)
        days.add(hour.folder.rpartition("/")[0])
    for day in sorted(days):
        if not artifacts.list(day, recursive=True):
            with contextlib.suppress(NotFound):
                artifacts.delete(day)

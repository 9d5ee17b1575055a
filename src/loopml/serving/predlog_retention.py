"""How long a deployment's prediction log is kept, and the pruning of whole hours past it.

A deployment keeps its log for its own ``retention_days`` or, unset, the server's default
(180 days: the EU AI Act asks deployers of high-risk systems to keep their logs at least six
months), and never less than the server's floor (the settings'
:class:`~loopml.serving.predlog_records.RetentionRules`). A ``legal_hold`` stops pruning.
Both live on the deployment row, outside its revisioned spec, so a rollback never lifts a hold.

Pruning removes whole hour folders (predictions and feedback) whose hour *ended* at or before
``now - retention``: a row exactly ``retention`` old is kept, and rows are gone within the hour
after they pass the edge. The rows of each hour are counted before anything is removed, and the
audit event (deployment, hours, files, rows) is written before the files go, in a transaction
that checks the hold and the retention are still what the plan was made with.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from loopml.artifacts.store import ArtifactStore
from loopml.errors import NotFound
from loopml.serving.predlog_records import DAY_MS, HOUR_MS, LogPolicy, hour_label
from loopml.serving.predlog_segments import (
    KINDS,
    HourFolder,
    hour_files,
    is_compacted,
    is_segment,
    local_segments,
    read_manifest,
    visible,
)

HOURS_PER_EVENT = 168
"""A prune removes at most this many hours per audit event (a long backlog makes several)."""


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
    """Rows with a timestamp at or after this are kept.

    >>> cutoff_ms(now_ms=200 * DAY_MS, days=180) == 20 * DAY_MS
    True
    """
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

"""Runs as a pandas DataFrame with MLflow's column names (what ``loopml.search_runs`` returns).

One row per run: ``run_id``, ``experiment_id``, ``status``, ``artifact_uri``, ``start_time``
and ``end_time`` (UTC datetimes, ``NaT`` while running), then ``metrics.<key>`` (float, NaN when
the run lacks it), ``params.<key>`` and ``tags.<key>`` (strings, None when missing), each group
sorted by key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loopml.tracking.entities import Run

if TYPE_CHECKING:
    import pandas as pd

INFO_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")


def runs_frame(runs: Sequence[Run], artifact_root: str) -> pd.DataFrame:
    """``runs`` as rows; ``artifact_uri`` is ``artifact_root`` joined with each run's path."""
    import pandas as pd

    root = artifact_root.rstrip("/")
    columns: dict[str, Any] = {
        "run_id": [r.run_id for r in runs],
        "experiment_id": [r.experiment_id for r in runs],
        "status": [r.status.value for r in runs],
        "artifact_uri": [f"{root}/{r.artifact_path}" for r in runs],
        "start_time": pd.to_datetime([r.start_time for r in runs], unit="ms", utc=True),
        "end_time": pd.to_datetime(
            [r.end_time if r.end_time is not None else None for r in runs], unit="ms", utc=True
        ),
    }
    for group in ("metrics", "params", "tags"):
        missing = float("nan") if group == "metrics" else None
        for key in sorted({k for r in runs for k in getattr(r, group)}):
            columns[f"{group}.{key}"] = [getattr(r, group).get(key, missing) for r in runs]
    return pd.DataFrame(columns)

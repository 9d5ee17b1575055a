"""Read the prediction log back: DuckDB over the Parquet segments of the hours a window touches.

The segments are those written by :class:`loopml.serving.predlog.PredictionLogger`. Only the
``date=``/``hour=`` folders that overlap the window are listed (one listing per day); a local
(``file://``) store's segments are read in place, through the artifact path choke point, any other
store's are fetched to a temporary folder first. Of an hour that was compacted, only the files
that hold its rows are read (:mod:`loopml.serving.predlog_segments`), and a file that a
compaction removes between listing and reading makes the read list again. Feedback is joined by
``request_id``; it may
arrive any time after its prediction (from one hour before the window's first hour on), and the
latest feedback of a request wins.

>>> from loopml.artifacts.factory import artifact_store_from_uri
>>> from loopml.serving.predlog import PredictionLogger, PredictionRecord
>>> store = artifact_store_from_uri("memory://predlog-reader-doctest")
>>> with PredictionLogger(store) as log:
...     log.record(PredictionRecord("r1", "fraud", "m", "1", 1_700_000_000_000, "/predict",
...                                 {"amount": [3.0]}, [0.9], latency_ms=2.0))
...     log.record_feedback("r1", "fraud", [1], timestamp_ms=1_700_000_600_000)
>>> frame = read_predictions(store, "fraud", 1_700_000_000_000, 1_700_000_000_001)
>>> frame[["request_id", "inputs", "ground_truth"]].to_dict("records")
[{'request_id': 'r1', 'inputs': '{"amount":[3.0]}', 'ground_truth': '[1]'}]
"""

from __future__ import annotations

import operator
from typing import Any

import pandas as pd

from loopml.artifacts.paths import clean_relpath
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument
from loopml.serving.predlog import HOUR_MS, check_deployment_name
from loopml.serving.predlog_segments import LocalSegments, read_with_retries

_TEXT = ("request_id", "deployment", "model", "version", "route", "inputs", "outputs")
_DTYPES: dict[str, Any] = {
    **dict.fromkeys(_TEXT, str),
    "timestamp": "datetime64[ms, UTC]",
    "latency_ms": "float64",
    "status": "int64",
    "shadow": "bool",
}
_ORDER = (*_TEXT[:4], "timestamp", *_TEXT[4:], "latency_ms", "status", "shadow")
PREDICTION_COLUMNS = list(_ORDER)
FEEDBACK_COLUMNS = ["ground_truth", "feedback_timestamp"]


def read_predictions(
    artifacts: ArtifactStore,
    deployment: str,
    start_ms: int,
    end_ms: int,
    *,
    prefix: str = "predictions",
    with_feedback: bool = True,
) -> pd.DataFrame:
    """The predictions of ``deployment`` with ``start_ms <= timestamp < end_ms``, by timestamp.

    Columns: :data:`PREDICTION_COLUMNS` (``timestamp`` as UTC ``datetime64[ms]``, ``inputs`` and
    ``outputs`` as JSON text) and, with ``with_feedback``, ``ground_truth`` (JSON text or None)
    and ``feedback_timestamp`` (NaT without feedback). An empty window gives an empty frame with
    the same columns.
    """
    check_deployment_name(deployment)
    prefix = clean_relpath(prefix)
    try:
        if isinstance(start_ms, bool) or isinstance(end_ms, bool):
            raise TypeError("a bool is not a time")
        start_ms, end_ms = operator.index(start_ms), operator.index(end_ms)
    except TypeError as e:
        raise InvalidArgument("start_ms and end_ms must be integers (ms since epoch)") from e
    columns = PREDICTION_COLUMNS + (FEEDBACK_COLUMNS if with_feedback else [])
    if end_ms <= start_ms:
        return _typed(pd.DataFrame(columns=columns))
    first_hour = start_ms // HOUR_MS * HOUR_MS
    last_hour = (end_ms - 1) // HOUR_MS * HOUR_MS
    base = f"{prefix}/{deployment}"

    def attempt(local: LocalSegments) -> pd.DataFrame | None:
        predictions = local.visible_paths(local.files(base, first_hour, last_hour),
                                          "predictions")  # fmt: skip
        if not predictions:
            return None
        feedback = (
            local.visible_paths(local.files(base, first_hour - HOUR_MS, None), "feedback")
            if with_feedback
            else []
        )
        return _query(predictions, feedback, start_ms, end_ms, with_feedback)

    frame = read_with_retries(attempt, artifacts)
    if frame is None:
        return _typed(pd.DataFrame(columns=columns))
    return _typed(frame[columns])


_SEGMENTS = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
_LATEST_FEEDBACK = (  # one row per request: its latest ground truth
    'SELECT request_id, arg_max(ground_truth, "timestamp") AS ground_truth, '
    f'max("timestamp") AS at FROM {_SEGMENTS} GROUP BY request_id'
)


def _query(
    predictions: list[str], feedback: list[str], start_ms: int, end_ms: int, with_feedback: bool
) -> pd.DataFrame:
    import duckdb  # lazily: only readers of the log pay for it

    select = ", ".join(f'p."{c}"' for c in _ORDER if c != "timestamp")  # names are ours
    sql = f'SELECT {select}, epoch_ms(p."timestamp") AS "timestamp"'
    params: list[Any] = [predictions]
    if with_feedback and feedback:
        sql += ", f.ground_truth, epoch_ms(f.at) AS feedback_timestamp"
        sql += f" FROM {_SEGMENTS} AS p LEFT JOIN ({_LATEST_FEEDBACK}) AS f USING (request_id)"
        params.append(feedback)
    else:
        sql += ", NULL::VARCHAR AS ground_truth, NULL::BIGINT AS feedback_timestamp"
        sql += f" FROM {_SEGMENTS} AS p"
    sql += (
        ' WHERE epoch_ms(p."timestamp") >= ? AND epoch_ms(p."timestamp") < ?'
        ' ORDER BY p."timestamp", p.request_id, p.shadow'
    )
    with duckdb.connect() as con:
        return con.execute(sql, [*params, start_ms, end_ms]).df()


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes whether the frame came from DuckDB or is empty."""
    out = frame.reset_index(drop=True)
    for column in out.columns:
        if column in ("timestamp", "feedback_timestamp"):
            ms = pd.to_datetime(out[column], unit="ms", utc=True)
            out[column] = ms.astype("datetime64[ms, UTC]")
        elif column == "ground_truth":
            values = out[column].astype(object)
            out[column] = values.where(values.notna(), None)
        else:
            out[column] = out[column].astype(_DTYPES[column])
    return out

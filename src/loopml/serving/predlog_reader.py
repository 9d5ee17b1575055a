"""Read the prediction log back: DuckDB over the Parquet segments of the hours a window touches.

The segments are those written by :class:`loopml.serving.predlog.PredictionLogger`. Only the
``date=``/``hour=`` folders that overlap the window are listed (one listing per day); a local
(``file://``) store's segments are read in place, through the artifact path choke point, any other
store's are fetched to a temporary folder first. Feedback is joined by ``request_id``; it may
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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from loopml.artifacts.paths import clean_relpath, resolve_local
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument
from loopml.serving.predlog import HOUR_MS, check_deployment_name

DAY_MS = 24 * HOUR_MS
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
    predictions = _segments(artifacts, base, "predictions", first_hour, last_hour)
    if not predictions:
        return _typed(pd.DataFrame(columns=columns))
    feedback = (
        _segments(artifacts, base, "feedback", first_hour - HOUR_MS, None) if with_feedback else []
    )
    with _local_files(artifacts, predictions + feedback) as paths:
        frame = _query(
            paths[: len(predictions)], paths[len(predictions) :], start_ms, end_ms, with_feedback
        )
    return _typed(frame[columns])


def _segments(
    artifacts: ArtifactStore, base: str, kind: str, first_hour: int, last_hour: int | None
) -> list[str]:
    """Segment files of ``kind`` under ``base`` whose hour is in [first_hour, last_hour]."""
    found = []
    for day in artifacts.list(base):
        day_ms = _partition_ms(day.path.rpartition("/")[2], "date=", "%Y-%m-%d")
        if not day.is_dir or day_ms is None or day_ms + DAY_MS <= first_hour:
            continue
        if last_hour is not None and day_ms > last_hour:
            continue
        for info in artifacts.list(day.path, recursive=True):
            hour, _, name = info.path.removeprefix(day.path + "/").partition("/")
            offset = _partition_ms(hour, "hour=", "%H")
            if offset is None or not (name.startswith(f"{kind}-") and name.endswith(".parquet")):
                continue
            if first_hour <= day_ms + offset and (
                last_hour is None or day_ms + offset <= last_hour
            ):
                found.append(info.path)
    return found


def _partition_ms(segment: str, key: str, fmt: str) -> int | None:
    """``date=2024-01-31`` → its midnight in ms, ``hour=07`` → 7 h in ms; None if malformed."""
    if not segment.startswith(key):
        return None
    try:
        parsed = datetime.strptime(segment.removeprefix(key), fmt).replace(tzinfo=UTC)
    except ValueError:
        return None
    if fmt == "%H":
        return parsed.hour * HOUR_MS
    return int(parsed.timestamp()) * 1000


@contextmanager
def _local_files(artifacts: ArtifactStore, rels: list[str]) -> Iterator[list[str]]:
    """Local paths of the segments ``rels``: in place for ``file://`` stores, else fetched."""
    root_uri = artifacts.root_uri
    if root_uri.startswith("file://"):
        root = Path(root_uri.removeprefix("file://"))
        yield [str(resolve_local(root, rel)) for rel in rels]
        return
    with tempfile.TemporaryDirectory(prefix="loopml-predlog-") as tmp:
        yield [
            str(artifacts.get_file(rel, Path(tmp, f"{i}.parquet"))) for i, rel in enumerate(rels)
        ]


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

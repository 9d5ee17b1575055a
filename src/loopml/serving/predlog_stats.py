"""Traffic statistics of a window of the prediction log, aggregated by DuckDB over the Parquet
files: per served version (model, version, shadow) and per time bucket.

Only the columns the statistics need are read (``model``, ``version``, ``shadow``, ``status``,
``latency_ms``, ``timestamp``: never the inputs and outputs), and rows are aggregated as they are
scanned, so memory does not follow the window's rows except for the latencies exact percentiles
need (8 bytes a prediction, held by DuckDB while a group is aggregated). Latency percentiles are
linear interpolations between order statistics, as pandas' ``quantile`` computes them; NaN
latencies are left out, as pandas leaves them out.

>>> from loopml.artifacts.factory import artifact_store_from_uri
>>> from loopml.serving.predlog import PredictionLogger, PredictionRecord
>>> store = artifact_store_from_uri("memory://predlog-stats-doctest")
>>> with PredictionLogger(store) as log:
...     for i, latency in enumerate([1.0, 2.0, 4.0]):
...         log.record(PredictionRecord(f"r{i}", "fraud", "m", "1", 1_700_000_000_000 + i,
...                                     "/predict", {}, [0], latency_ms=latency))
>>> stats = traffic_stats(store, "fraud", 1_700_000_000_000, 1_700_000_060_000, 60_000)
>>> [(s.requests, s.errors, s.p50) for s in stats.series], [b.requests for b in stats.buckets]
([(3, 0, 2.0)], [3])
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from loopml.artifacts.store import ArtifactStore
from loopml.serving.predlog_records import HOUR_MS, check_deployment_name
from loopml.serving.predlog_segments import LocalSegments, read_with_retries

QUANTILES = (0.5, 0.9, 0.99)
THREADS = min(4, os.cpu_count() or 1)
"""DuckDB threads per aggregation: a page view must not take every core (or its buffers)."""


@dataclass(frozen=True, slots=True)
class SeriesStats:
    """One served version over the whole window."""

    model: str
    version: str
    shadow: bool
    requests: int
    errors: int  # status >= 400
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class BucketStats:
    """One served version in one bucket (``bucket`` counts buckets from the window's first)."""

    model: str
    version: str
    shadow: bool
    bucket: int
    requests: int
    median: float | None


@dataclass(frozen=True, slots=True)
class TrafficStats:
    first_ms: int  # start of bucket 0: the window's start rounded down to the bucket width
    width_ms: int
    buckets_in_window: int
    series: list[SeriesStats] = field(default_factory=list)
    buckets: list[BucketStats] = field(default_factory=list)


_FROM = "FROM read_parquet(?, union_by_name = true, hive_partitioning = false)"
_WINDOW = 'WHERE epoch_ms("timestamp") >= ? AND epoch_ms("timestamp") < ?'
_LATENCY = "FILTER (WHERE NOT isnan(latency_ms))"
_SERIES = (
    "SELECT model, version, shadow, count(*), count(*) FILTER (WHERE status >= 400), "
    f"quantile_cont(latency_ms, {list(QUANTILES)}) {_LATENCY} {_FROM} {_WINDOW} "
    "GROUP BY model, version, shadow"
)
_BUCKETS = (
    'SELECT model, version, shadow, least(greatest((epoch_ms("timestamp") - ?) // ?, 0), ?) '
    f"AS bucket, count(*), median(latency_ms) {_LATENCY} {_FROM} {_WINDOW} "
    "GROUP BY model, version, shadow, bucket"
)


def traffic_stats(
    artifacts: ArtifactStore, deployment: str, start_ms: int, end_ms: int, width_ms: int, *,
    prefix: str = "predictions",
) -> TrafficStats:  # fmt: skip
    """The statistics of the predictions of ``deployment`` with ``start_ms <= timestamp <
    end_ms``, in buckets of ``width_ms``."""
    check_deployment_name(deployment)
    first = start_ms // width_ms * width_ms
    count = max(0, (end_ms - 1 - first) // width_ms + 1)
    empty = TrafficStats(first, width_ms, count)
    if end_ms <= start_ms:
        return empty
    base = f"{prefix}/{deployment}"
    first_hour, last_hour = start_ms // HOUR_MS * HOUR_MS, (end_ms - 1) // HOUR_MS * HOUR_MS

    def attempt(local: LocalSegments) -> TrafficStats:
        files = local.visible_paths(local.files(base, first_hour, last_hour), "predictions")
        if not files:
            return empty
        import duckdb  # lazily: only readers of the log pay for it

        with duckdb.connect(config={"threads": THREADS}) as con:
            series = con.execute(_SERIES, [files, start_ms, end_ms]).fetchall()
            buckets = con.execute(
                _BUCKETS, [first, width_ms, count - 1, files, start_ms, end_ms]
            ).fetchall()
        return TrafficStats(
            first, width_ms, count,
            [SeriesStats(m, v, bool(s), n, e, *_quantiles(q)) for m, v, s, n, e, q in series],
            [BucketStats(m, v, bool(s), int(b), n, med) for m, v, s, b, n, med in buckets],
        )  # fmt: skip

    return read_with_retries(attempt, artifacts)


def _quantiles(values: Any) -> tuple[float | None, ...]:
    return tuple(values) if values is not None else (None,) * len(QUANTILES)

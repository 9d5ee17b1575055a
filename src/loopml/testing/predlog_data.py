"""Synthetic prediction logs written straight to Parquet in the logger's layout: millions of rows
in seconds, for memory tests and benchmark (l).

Each hour gets ``segments_per_hour`` segments named as :class:`~loopml.serving.predlog.
PredictionLogger` names them, with :data:`~loopml.serving.predlog.PREDICTION_SCHEMA`; versions,
statuses and latencies are drawn from a seeded generator, and ``inputs``/``outputs`` carry JSON
text of a realistic size (what a reader that loads whole rows pays for).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loopml.serving.predlog import HOUR_MS, PREDICTION_SCHEMA, segment_folder

VERSIONS = (("fraud", "1", False), ("fraud", "2", False), ("fraud-xgb", "1", True))
_INPUTS = [
    f'{{"amount":[{i}.25],"country":["FR"],"merchant":["m-{i:04d}"],"card_age_days":'
    f'[{i % 900}],"hour":[{i % 24}],"email":["{i * 7919:032x}"]}}'
    for i in range(997)
]


def write_log(
    root: Path, deployment: str, *, start_ms: int, hours: int, rows: int,
    segments_per_hour: int = 4, seed: int = 0, prefix: str = "predictions",
) -> int:  # fmt: skip
    """Write ``rows`` predictions spread evenly over ``hours`` hours from ``start_ms`` (an hour
    boundary) under the local artifact root ``root``; the number of files written."""
    rng = np.random.default_rng(seed)
    inputs = pa.array(_INPUTS, pa.string())
    per_hour = [rows // hours + (h < rows % hours) for h in range(hours)]
    files = 0
    for h, count in enumerate(per_hour):
        hour_ms = start_ms + h * HOUR_MS
        folder = root / segment_folder(prefix, deployment, hour_ms)
        folder.mkdir(parents=True, exist_ok=True)
        for s in range(segments_per_hour):
            n = count // segments_per_hour + (s < count % segments_per_hour)
            if n == 0:
                continue
            table = _segment(rng, deployment, hour_ms, n, inputs)
            first = int(table.column("timestamp")[0].value)
            pq.write_table(
                table, folder / f"predictions-{first}-{uuid.uuid4().hex}.parquet",
                compression="zstd",
            )  # fmt: skip
            files += 1
    return files


def _segment(
    rng: np.random.Generator, deployment: str, hour_ms: int, n: int, inputs: pa.Array
) -> pa.Table:
    which = rng.choice(len(VERSIONS), size=n, p=[0.8, 0.15, 0.05])
    models = pa.array([v[0] for v in VERSIONS])
    versions = pa.array([v[1] for v in VERSIONS])
    timestamps = np.sort(hour_ms + rng.integers(0, HOUR_MS, size=n))
    zeros = pa.array(np.zeros(n, dtype=np.int64))
    ids = pc.cast(pa.array(rng.integers(0, 2**62, size=n)), pa.string())
    scores = pc.cast(pa.array(rng.random(n).round(6)), pa.string())
    columns = {
        "request_id": pc.binary_join_element_wise("r", ids, ""),
        "deployment": pa.array([deployment]).take(zeros),
        "model": models.take(pa.array(which)),
        "version": versions.take(pa.array(which)),
        "timestamp": pa.array(timestamps, pa.timestamp("ms", tz="UTC")),
        "route": pa.array(["/predict"]).take(zeros),
        "inputs": inputs.take(pa.array(rng.integers(0, len(inputs), size=n))),
        "outputs": pc.binary_join_element_wise("[", scores, "]", ""),
        "latency_ms": pa.array(rng.gamma(2.0, 3.0, size=n) + which * 5.0),
        "status": pa.array(np.where(rng.random(n) < 0.01, 500, 200).astype(np.int32)),
        "shadow": pa.array(np.array([v[2] for v in VERSIONS])[which]),
    }
    return pa.Table.from_pydict(columns, schema=PREDICTION_SCHEMA)

"""The deployment page's traffic statistics: DuckDB's aggregates equal pandas over the same
window (pandas as the oracle, as the page computed them before), and aggregating millions of
rows does not load them."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopml.artifacts.factory import artifact_store_from_uri
from loopml.artifacts.store import ArtifactStore
from loopml.server.routes.ui_deployments import (
    MINUTE_MS,
    QUANTILES,
    _finite,
    _label,
    _series_key,
    percent,
    traffic_charts,
    traffic_rows,
)
from loopml.serving.predlog import HOUR_MS, PredictionLogger, PredictionRecord
from loopml.serving.predlog_compaction import compact_hour
from loopml.serving.predlog_reader import read_predictions
from loopml.serving.predlog_stats import traffic_stats

T0 = 472_223 * HOUR_MS
SERIES = [("fraud", "1", False), ("fraud", "2", False), ("fraud", "10", False),
          ("xgb", "1", True), ("xgb", "v-next", False)]  # fmt: skip


# the oracle: the page's pandas code before it moved to DuckDB ---------------------------------
def oracle_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if frame.empty:
        return []
    live_total = int((~frame["shadow"]).sum())
    rows = []
    for (model, version, shadow), group in frame.groupby(["model", "version", "shadow"]):
        latency = group["latency_ms"].dropna()
        errors = int((group["status"] >= 400).sum())
        url = f"/models/{model}/versions/{version}" if version.isdigit() else None
        row = {"model": model, "version": version, "shadow": bool(shadow),
               "label": _label(model, version, bool(shadow)), "requests": len(group),
               "errors": errors, "error_rate": percent(errors / len(group)),
               "share": None if shadow or not live_total else percent(len(group) / live_total),
               "version_url": url}  # fmt: skip
        for q, name in QUANTILES:
            row[name] = _finite(latency.quantile(q)) if len(latency) else None
        rows.append(row)
    return sorted(rows, key=lambda r: _series_key(r["model"], r["version"], r["shadow"]))


def oracle_charts(frame: pd.DataFrame, start_ms: int, end_ms: int, width_ms: int) -> list[Any]:
    first = start_ms // width_ms * width_ms
    count = (end_ms - 1 - first) // width_ms + 1
    minutes = width_ms / MINUTE_MS
    ms = frame["timestamp"].astype("int64")
    data = frame.assign(bucket=((ms - first) // width_ms).clip(0, count - 1))
    out: dict[str, list[Any]] = {"requests": [], "latency": []}
    groups = sorted(data.groupby(["model", "version", "shadow"]), key=lambda i: _series_key(*i[0]))
    for (model, version, shadow), group in groups:
        buckets = group.groupby("bucket")
        sizes, medians = buckets.size().to_dict(), buckets["latency_ms"].median().to_dict()
        name = _label(model, version, bool(shadow))
        out["requests"].append((name, [round(sizes.get(i, 0) / minutes, 3) for i in range(count)]))
        out["latency"].append(
            (name, [_finite(medians[i]) if i in medians else None for i in range(count)])
        )
    return [out["requests"], out["latency"]]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-3)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def seed(store: ArtifactStore, rng: random.Random, n: int) -> None:
    with PredictionLogger(store, flush_interval_s=3600) as log:
        for i in range(n):
            model, version, shadow = rng.choice(SERIES)
            latency = rng.choice([float("nan"), rng.expovariate(0.1), float(rng.randint(1, 9))])
            ts = T0 + rng.randrange(-HOUR_MS, 8 * HOUR_MS)
            log.record(PredictionRecord(f"r{i}", "fraud", model, version, ts, "/predict",
                                        {"x": [i]}, [0], latency_ms=latency,
                                        status=rng.choice([200, 200, 200, 404, 500]),
                                        shadow=shadow))  # fmt: skip
            if i % 40 == 0:
                log.flush()  # several segments an hour


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "file":
        yield artifact_store_from_uri((tmp_path / "a").as_uri())
        return
    yield artifact_store_from_uri(f"memory://stats-{uuid.uuid4().hex}")


@pytest.mark.parametrize("seed_value", [0, 1, 2])
def test_the_pages_aggregates_equal_pandas_over_the_same_window(store, seed_value):
    rng = random.Random(seed_value)
    seed(store, rng, 600)
    if seed_value == 1:  # compacted hours read the same
        compact_hour(store, "predictions/fraud", T0 + 2 * HOUR_MS, now_ms=T0 + 10**9)
    windows = [(T0, T0 + HOUR_MS, MINUTE_MS), (T0 + 1234, T0 + 6 * HOUR_MS - 77, 5 * MINUTE_MS),
               (T0 - 2 * HOUR_MS, T0 + 9 * HOUR_MS, 30 * MINUTE_MS),
               (T0 + 20 * HOUR_MS, T0 + 21 * HOUR_MS, MINUTE_MS)]  # fmt: skip
    for start, end, width in windows:
        frame = read_predictions(store, "fraud", start, end, with_feedback=False)
        stats = traffic_stats(store, "fraud", start, end, width)
        assert same(traffic_rows(stats), oracle_rows(frame)), (start, end)
        charts = traffic_charts(stats)
        if frame.empty:
            assert charts == []
            continue
        got = [[(t["name"], t["value"]) for t in c["traces"]] for c in charts]
        assert same(got, oracle_charts(frame, start, end, width)), (start, end)
        assert sum(r["requests"] for r in traffic_rows(stats)) == len(frame)


def test_aggregating_millions_of_rows_does_not_load_them(tmp_path):
    """Peak resident memory of the aggregation, measured in a fresh process, stays a small part
    of the text the window's rows carry (what loading the window would hold at the least)."""
    script = textwrap.dedent(
        f"""
        import json
        from pathlib import Path
        from loopml.artifacts.factory import artifact_store_from_uri
        from loopml.serving.predlog_stats import traffic_stats
        from loopml.testing.predlog_data import write_log

        HOUR = {HOUR_MS}
        root, start, rows = Path({str(tmp_path / "log")!r}), {T0}, 2_000_000
        write_log(root, "fraud", start_ms=start, hours=168, rows=rows)
        store = artifact_store_from_uri(root.as_uri())
        traffic_stats(store, "fraud", start, start + HOUR, 60_000)  # warm DuckDB up

        def mib(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) / 1024

        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM)
        before = mib("VmRSS:")
        stats = traffic_stats(store, "fraud", start, start + 168 * HOUR, 30 * 60_000)
        grew = mib("VmHWM:") - before
        import duckdb
        text = duckdb.sql(
            "SELECT sum(strlen(inputs) + strlen(outputs) + strlen(request_id)) FROM "
            f"read_parquet('{{root}}/**/*.parquet')"
        ).fetchall()[0][0] / 2**20
        print(json.dumps({{"grew": grew, "text": text, "requests":
                          sum(s.requests for s in stats.series)}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert found["requests"] == 2_000_000
    assert found["text"] > 300  # MiB of text in the window's rows
    assert found["grew"] < found["text"] / 3, found

"""(l) The deployment page's traffic summary over a 7-day window of the prediction log: peak
memory of loopml's DuckDB aggregation against loading the window with pandas, as the page did
before (the side-by-side anchor is that old approach).

The log is written straight to Parquet in the prediction log's layout
(:func:`loopml.testing.predlog_data.write_log`: ``--rows`` predictions over 168 hours, a few
segments an hour, JSON inputs of about 130 bytes) under ``--dir``. Then one untimed warm-up over
one hour, the peak resident set size is reset (``/proc/self/clear_refs``), and the page's work
runs once over the 7 days with 30-minute buckets:

- ``duckdb``: ``traffic_stats`` then the page's ``traffic_rows`` and ``traffic_charts``;
- ``pandas``: ``read_predictions`` of the window (the whole rows) then the page's former pandas
  code (group by version, quantiles, per-bucket counts and medians).

The result is the growth of the peak RSS over the RSS before the call (``VmHWM - VmRSS``, MiB),
the call's time, and the numbers the page shows (they must agree between the two approaches on
the same log: ``--check`` compares them in one process at a small size).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000
START = 472_055 * HOUR_MS  # 2023-11-07 23:00 UTC: seven days end on 2023-11-14 23:00
HOURS = 168
WIDTH_MS = 30 * 60_000


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def page_duckdb(store: Any, start: int, end: int) -> dict[str, Any]:
    from loopml.server.routes.ui_deployments import traffic_charts, traffic_rows
    from loopml.serving.predlog_stats import traffic_stats

    stats = traffic_stats(store, "fraud", start, end, WIDTH_MS)
    return {"rows": traffic_rows(stats), "charts": traffic_charts(stats)}


def page_pandas(store: Any, start: int, end: int) -> dict[str, Any]:
    """The page's code before it aggregated in DuckDB: load the window, group in pandas."""
    from loopml.server.routes.ui_deployments import (
        MINUTE_MS,
        QUANTILES,
        _finite,
        _label,
        _series_key,
        percent,
    )
    from loopml.serving.predlog_reader import read_predictions

    frame = read_predictions(store, "fraud", start, end, with_feedback=False)
    live_total = int((~frame["shadow"]).sum())
    rows = []
    for (model, version, shadow), group in frame.groupby(["model", "version", "shadow"]):
        latency = group["latency_ms"].dropna()
        errors = int((group["status"] >= 400).sum())
        share = None if shadow or not live_total else percent(len(group) / live_total)
        label = _label(model, version, bool(shadow))
        row = {"label": label, "requests": len(group), "errors": errors,
               "error_rate": percent(errors / len(group)), "share": share}  # fmt: skip
        for q, name in QUANTILES:
            row[name] = _finite(latency.quantile(q)) if len(latency) else None
        rows.append((_series_key(model, version, bool(shadow)), row))
    first = start // WIDTH_MS * WIDTH_MS
    count = (end - 1 - first) // WIDTH_MS + 1
    ms = frame["timestamp"].astype("int64")
    data = frame.assign(bucket=((ms - first) // WIDTH_MS).clip(0, count - 1))
    traces = []
    for (model, version, shadow), group in data.groupby(["model", "version", "shadow"]):
        buckets = group.groupby("bucket")
        sizes, medians = buckets.size().to_dict(), buckets["latency_ms"].median().to_dict()
        minutes = WIDTH_MS / MINUTE_MS
        per_minute = [round(sizes.get(i, 0) / minutes, 3) for i in range(count)]
        median = [_finite(medians[i]) if i in medians else None for i in range(count)]
        traces.append((_label(model, version, bool(shadow)), per_minute, median))
    return {"rows": [r for _, r in sorted(rows, key=lambda kv: kv[0])], "traces": sorted(traces)}


def shown(page: dict[str, Any]) -> dict[str, Any]:
    """What the page shows, in one shape for both approaches."""
    rows = [{k: r[k] for k in ("label", "requests", "errors", "error_rate", "share", "p50", "p90",
                               "p99")} for r in page["rows"]]  # fmt: skip
    if "traces" in page:
        traces = page["traces"]
    else:
        charts = {c["id"]: c["traces"] for c in page["charts"]}
        traces = sorted(
            (t["name"], t["value"], m["value"])
            for t, m in zip(charts.get("requests", []), charts.get("latency", []), strict=True)
        )
    return {"rows": rows, "traces": [list(t) for t in traces]}


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-3 + 1e-9 * abs(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="fresh folder for the log")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--approach", choices=("duckdb", "pandas"), default="duckdb")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--segments-per-hour", type=int, default=4)
    parser.add_argument(
        "--check", type=int, default=20_000,
        help="rows of a second, small log on which both approaches must agree",
    )  # fmt: skip
    args = parser.parse_args()
    from loopml.artifacts.factory import artifact_store_from_uri
    from loopml.testing.predlog_data import write_log

    args.dir.mkdir(parents=True, exist_ok=True)
    small = args.dir / "check"
    write_log(small, "fraud", start_ms=START, hours=HOURS, rows=args.check, seed=1)
    small_store = artifact_store_from_uri(small.resolve().as_uri())
    end = START + HOURS * HOUR_MS
    agree = _close(shown(page_duckdb(small_store, START, end)),
                   shown(page_pandas(small_store, START, end)))  # fmt: skip

    root = args.dir / "log"
    t0 = time.perf_counter()
    files = write_log(root, "fraud", start_ms=START, hours=HOURS, rows=args.rows,
                      segments_per_hour=args.segments_per_hour)  # fmt: skip
    generate_s = time.perf_counter() - t0
    log_bytes = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    store = artifact_store_from_uri(root.resolve().as_uri())
    work = page_duckdb if args.approach == "duckdb" else page_pandas
    work(store, START, START + HOUR_MS)  # warm-up: imports, DuckDB's first query

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
    before = _status_mib("VmRSS:")
    t0 = time.perf_counter()
    page = work(store, START, end)
    seconds = time.perf_counter() - t0
    peak = _status_mib("VmHWM:")
    requests = sum(r["requests"] for r in page["rows"])
    result = {
        "approach": args.approach,
        "rows": args.rows,
        "hours": HOURS,
        "files": files,
        "log_mib": round(log_bytes / 2**20, 1),
        "generate_s": round(generate_s, 2),
        "rss_before_mib": round(before, 1),
        "peak_rss_mib": round(peak, 1),
        "peak_growth_mib": round(peak - before, 1),
        "seconds": round(seconds, 3),
        "requests_counted": requests,
        "complete": requests == args.rows,
        "matches_expected": agree,
        "check_rows": args.check,
    }
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

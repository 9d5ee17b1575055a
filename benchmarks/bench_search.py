"""(d) search ``metrics.m0 > 0.5 and params.p1 = 'x'`` ordered by ``metrics.m1 DESC``, 100 rows.

The store is filled by :mod:`populate` (untimed), checked with one ``get_run`` and one search,
then searched once to warm up and ``--repeats`` times for the timing. One more, untimed call runs
with a SQLAlchemy cursor listener (both tools use SQLAlchemy) that captures the SELECTs; they are
replayed with plain sqlite3 to split the time between SQL and Python, and loopml's slowest one
goes through ``EXPLAIN QUERY PLAN``.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common import Stopwatch, mlflow_uri, summary, worker_args, write_result
from populate import GenRun, generate, populate_loopml, populate_mlflow

FILTER = "metrics.m0 > 0.5 and params.p1 = 'x'"
ORDER_BY = ["metrics.m1 DESC"]
MAX_RESULTS = 100


def _args(p: Any) -> None:
    p.add_argument("--runs", type=int, required=True, help="runs in the store")
    p.add_argument("--repeats", type=int, default=20)


def expected_ids(runs: Sequence[GenRun]) -> list[str]:
    hits = [r for r in runs if r.m0 > 0.5 and r.p1 == "x"]
    hits.sort(key=lambda r: r.m1, reverse=True)
    return [r.run_id for r in hits[:MAX_RESULTS]]


def loopml_setup(folder: Path, runs: Sequence[GenRun]) -> tuple[Callable[[], list[str]], dict]:
    import loopml

    experiment_id, seconds = populate_loopml(folder, runs)
    client = loopml.Client(loopml.Settings(home=folder))
    sample = client.get_run(runs[0].run_id)
    check = {
        "params": len(sample.params),
        "metrics": len(sample.metrics),
        "tags": len(sample.tags),
        "m1_matches": sample.metrics.get("m1") == runs[0].m1,
    }

    def search() -> list[str]:
        page = client.search_runs([experiment_id], FILTER, order_by=ORDER_BY, max_results=100)
        return [r.run_id for r in page.items]

    return search, {"populate_seconds": seconds, "sample_run": check, "db": "loopml.db"}


def mlflow_setup(folder: Path, runs: Sequence[GenRun]) -> tuple[Callable[[], list[str]], dict]:
    from mlflow import MlflowClient

    experiment_id, seconds = populate_mlflow(folder, runs)
    client = MlflowClient(tracking_uri=mlflow_uri(folder))
    data = client.get_run(runs[0].run_id).data
    check = {
        "params": len(data.params),
        "metrics": len(data.metrics),
        "tags": len(data.tags),
        "m1_matches": data.metrics.get("m1") == runs[0].m1,
    }

    def search() -> list[str]:
        found = client.search_runs([experiment_id], FILTER, order_by=ORDER_BY, max_results=100)
        return [r.info.run_id for r in found]

    return search, {"populate_seconds": seconds, "sample_run": check, "db": "mlflow.db"}


class SqlCapture:
    """Records every statement SQLAlchemy sends, with its parameters and time, while active."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Any, float]] = []

    def __enter__(self) -> SqlCapture:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        self._event, self._engine = event, Engine
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: object) -> None:
        self._event.remove(self._engine, "before_cursor_execute", self._before)
        self._event.remove(self._engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        self.statements.append((statement, params, time.perf_counter() - conn.info["bench_t0"]))


def query_plan(db: Path, statement: str, params: Any) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + statement, params or ()).fetchall()
    finally:
        conn.close()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def replay(db: Path, statements: Sequence[tuple[str, Any, float]]) -> list[tuple[str, Any, float]]:
    """Each SELECT again with plain sqlite3, execute + fetchall (SQLite does its work while
    rows are fetched, which the cursor events do not see); the second of two runs is kept."""
    conn = sqlite3.connect(db)
    timed = []
    try:
        for statement, params, _ in statements:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            for _ in range(2):
                t0 = time.perf_counter()
                conn.execute(statement, params or ()).fetchall()
                seconds = time.perf_counter() - t0
            timed.append((statement, params, seconds))
    finally:
        conn.close()
    return timed


def main() -> None:
    args = worker_args(__doc__.splitlines()[0], _args)
    runs = generate(args.runs)
    expected = expected_ids(runs)
    setup = loopml_setup if args.tool == "loopml" else mlflow_setup
    search, info = setup(args.dir, runs)

    first = search()  # warm-up, and the correctness check
    samples = []
    for _ in range(args.repeats):
        with Stopwatch() as sw:
            search()
        samples.append(sw.seconds)

    with SqlCapture() as cap, Stopwatch() as one:
        search()
    db = args.dir / info["db"]
    replayed = replay(db, cap.statements)
    slowest = max(replayed, key=lambda s: s[2])
    result: dict[str, Any] = {
        "tool": args.tool,
        "runs": args.runs,
        **summary(samples),
        **info,
        "results": len(first),
        "matches_expected": first == expected,
        "result_digest": hashlib.sha256(",".join(first).encode()).hexdigest()[:12],
        "db_mib": round(db.stat().st_size / 2**20, 1),
        "one_call": {
            "total_ms": one.seconds * 1000,
            "sql_ms": sum(t for _, _, t in replayed) * 1000,
            "statements": len(replayed),
            "slowest_statement_ms": slowest[2] * 1000,
        },
    }
    if args.tool == "loopml":
        result["slowest_statement"] = slowest[0]
        result["query_plan"] = query_plan(db, slowest[0], slowest[1])
    if args.profile:
        from common import profile_top

        result["profile"] = profile_top(lambda: [search() for _ in range(5)])
    write_result(args.out, result)


if __name__ == "__main__":
    main()

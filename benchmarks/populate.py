"""Fill a tool's SQLite store with N finished runs, identically for loopml and MLflow.

Each tool first creates its own schema (loopml's ``Client`` migrates; MLflow's ``MlflowClient``
runs its Alembic history when it creates the experiment). Then the same generated runs go straight
into the tool's tables with ``sqlite3.executemany``, in transactions of ``CHUNK`` runs. Every run
has params p1 (uniform over x/y/z/w) and p2, metrics m0 and m1 (uniform 0..1, one history row
each, also in the latest-value table) and one tag. Run ids come from a seeded generator and are
inserted in sorted order (cheap B-tree appends); both tools get the same ids and values, so their
search results can be compared. No ANALYZE is run for either tool: each plans queries as it would
on a store it filled itself.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 50_000
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01, so every row has the same timestamps in any run
P1_VALUES = ("x", "y", "z", "w")


@dataclass(frozen=True, slots=True)
class GenRun:
    run_id: str
    name: str
    start_time: int
    p1: str
    p2: str
    m0: float
    m1: float
    tag: str


def generate(n: int, seed: int = 42) -> list[GenRun]:
    rng = random.Random(seed)
    ids = sorted({f"{rng.getrandbits(128):032x}" for _ in range(n)})
    while len(ids) < n:  # a 128-bit collision will not happen, but keep the count exact anyway
        ids = sorted({*ids, f"{rng.getrandbits(128):032x}"})
    return [
        GenRun(
            run_id=run_id,
            name=f"run-{i}",
            start_time=BASE_TIME_MS + i,
            p1=rng.choice(P1_VALUES),
            p2=str(rng.randrange(1000)),
            m0=rng.random(),
            m1=rng.random(),
            tag=f"t{i % 10}",
        )
        for i, run_id in enumerate(ids)
    ]


def _chunks(runs: Sequence[GenRun]) -> Iterator[Sequence[GenRun]]:
    for start in range(0, len(runs), CHUNK):
        yield runs[start : start + CHUNK]


def _insert_sql(conn: sqlite3.Connection, table: str, columns: Sequence[str]) -> str:
    """The INSERT for ``columns``, after checking they cover every NOT NULL column of the table."""
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()
    names = {row[1] for row in info}
    unknown = set(columns) - names
    if unknown:
        raise RuntimeError(f"{table} has no columns {sorted(unknown)}")
    # A NOT NULL column without a default must be given; an INTEGER PRIMARY KEY fills itself.
    missing = [
        row[1]
        for row in info
        if row[3] and row[4] is None and row[1] not in columns and row[2].upper() != "INTEGER"
    ]
    if missing:
        raise RuntimeError(f"{table}: NOT NULL columns without a value: {missing}")
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({marks})'


def _bulk(
    db: Path, plan: Sequence[tuple[str, Sequence[str], object]], runs: Sequence[GenRun]
) -> None:
    """``plan`` is (table, columns, rows_for(chunk)) per table; one transaction per chunk."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # loading only; the timed tools use their own
        statements = [(_insert_sql(conn, t, cols), rows) for t, cols, rows in plan]
        for chunk in _chunks(runs):
            conn.execute("BEGIN")
            for sql, rows_for in statements:
                conn.executemany(sql, rows_for(chunk))  # type: ignore[operator]
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


# loopml ------------------------------------------------------------------------------------
def populate_loopml(folder: Path, runs: Sequence[GenRun]) -> tuple[str, float]:
    """Returns (experiment_id, seconds). The schema and experiment come from loopml itself."""
    import loopml

    t0 = time.perf_counter()
    client = loopml.Client(loopml.Settings(home=folder))
    experiment_id = client.create_experiment("bench").experiment_id
    client.close()
    eid = int(experiment_id)
    plan = [
        (
            "runs",
            (
                "run_id",
                "experiment_id",
                "run_name",
                "status",
                "start_time",
                "end_time",
                "user",
                "lifecycle_stage",
                "source",
            ),
            lambda c: (
                (
                    r.run_id,
                    eid,
                    r.name,
                    "FINISHED",
                    r.start_time,
                    r.start_time + 1000,
                    "bench",
                    "active",
                    "",
                )
                for r in c
            ),
        ),
        ("params", ("run_id", "key", "value"), lambda c: _kv(c, ("p1", "p2"))),
        ("tags", ("run_id", "key", "value"), lambda c: ((r.run_id, "t", r.tag) for r in c)),
        (
            "metrics",
            ("run_id", "key", "value", "step", "timestamp"),
            lambda c: ((r.run_id, k, v, 0, r.start_time) for r in c for k, v in _ms(r)),
        ),
        (
            "latest_metrics",
            ("run_id", "key", "experiment_id", "value", "step", "timestamp"),
            lambda c: ((r.run_id, k, eid, v, 0, r.start_time) for r in c for k, v in _ms(r)),
        ),
    ]
    _bulk(folder / "loopml.db", plan, runs)
    return experiment_id, time.perf_counter() - t0


# MLflow ------------------------------------------------------------------------------------
def populate_mlflow(folder: Path, runs: Sequence[GenRun]) -> tuple[str, float]:
    """Returns (experiment_id, seconds). MLflow creates its schema and the experiment."""
    from common import mlflow_artifacts, mlflow_uri
    from mlflow import MlflowClient

    t0 = time.perf_counter()
    art = mlflow_artifacts(folder)
    client = MlflowClient(tracking_uri=mlflow_uri(folder))
    experiment_id = client.create_experiment("bench", artifact_location=art)
    eid = int(experiment_id)
    plan = [
        (
            "runs",
            (
                "run_uuid",
                "name",
                "source_type",
                "source_name",
                "entry_point_name",
                "user_id",
                "status",
                "start_time",
                "end_time",
                "source_version",
                "lifecycle_stage",
                "artifact_uri",
                "experiment_id",
            ),
            lambda c: (
                (
                    r.run_id,
                    r.name,
                    "LOCAL",
                    "",
                    "",
                    "bench",
                    "FINISHED",
                    r.start_time,
                    r.start_time + 1000,
                    "",
                    "active",
                    f"{art}/{r.run_id}/artifacts",
                    eid,
                )
                for r in c
            ),
        ),
        ("params", ("run_uuid", "key", "value"), lambda c: _kv(c, ("p1", "p2"))),
        ("tags", ("run_uuid", "key", "value"), lambda c: ((r.run_id, "t", r.tag) for r in c)),
        (
            "metrics",
            ("run_uuid", "key", "value", "timestamp", "step", "is_nan"),
            lambda c: ((r.run_id, k, v, r.start_time, 0, 0) for r in c for k, v in _ms(r)),
        ),
        (
            "latest_metrics",
            ("run_uuid", "key", "value", "timestamp", "step", "is_nan"),
            lambda c: ((r.run_id, k, v, r.start_time, 0, 0) for r in c for k, v in _ms(r)),
        ),
    ]
    _bulk(folder / "mlflow.db", plan, runs)
    return experiment_id, time.perf_counter() - t0


def _kv(chunk: Sequence[GenRun], keys: Sequence[str]) -> Iterator[tuple[str, str, str]]:
    for r in chunk:
        for k in keys:
            yield r.run_id, k, getattr(r, k)


def _ms(r: GenRun) -> tuple[tuple[str, float], tuple[str, float]]:
    return ("m0", r.m0), ("m1", r.m1)

"""Many writers, crashes: every acknowledged value lands exactly once, nothing says 'locked'."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import loopml
from loopml.tracking.entities import Metric

PROCESSES = 16
SINGLE = 2000
BATCHES, BATCH = 200, 50


def _writer(uri: str, artifacts: str, index: int, queue: mp.Queue) -> None:
    try:
        client = loopml.Client(loopml.Settings(uri=uri, artifacts=artifacts))
        run = client.create_run("0", run_name=f"writer-{index}")
        for i in range(SINGLE):
            client.log_metric(run.run_id, "single", float(i), step=i)
        now = int(time.time() * 1000)
        for b in range(BATCHES):
            batch = [
                Metric("batch", float(b * BATCH + j), now, b * BATCH + j) for j in range(BATCH)
            ]
            client.log_batch(run.run_id, metrics=batch)
        client.set_terminated(run.run_id)
        client.close()
        queue.put((index, run.run_id, None))
    except BaseException as e:  # report every failure to the parent
        queue.put((index, None, f"{type(e).__name__}: {e}"))


def _hammer(uri: str, artifacts: str) -> None:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(uri, artifacts, i, queue)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [r for r in results if r[2] is not None]
    assert errors == [], errors

    with loopml.Client(loopml.Settings(uri=uri, artifacts=artifacts)) as client:
        _check_values(client, [r[1] for r in results])


def _check_values(client: loopml.Client, run_ids: list[str]) -> None:
    for run_id in run_ids:
        single = client.get_metric_history(run_id, "single")
        batch = client.get_metric_history(run_id, "batch")
        assert [m.step for m in single] == list(range(SINGLE))
        assert [m.value for m in single] == [float(i) for i in range(SINGLE)]
        assert [m.step for m in batch] == list(range(BATCHES * BATCH))
        run = client.get_run(run_id)
        assert run.metrics == {"single": SINGLE - 1.0, "batch": BATCHES * BATCH - 1.0}
    assert client.verify_audit().ok


@pytest.mark.slow
def test_sixteen_processes_into_one_sqlite_store(tmp_path):
    _hammer(f"sqlite:///{tmp_path / 'shared.db'}", (tmp_path / "artifacts").as_uri())


@pytest.mark.slow
@pytest.mark.postgres
def test_sixteen_processes_into_one_postgres_store(pg_url, tmp_path):
    _hammer(pg_url, (tmp_path / "artifacts").as_uri())


_KILL_SCRIPT = """
import sys, loopml
client = loopml.Client(loopml.Settings(home=sys.argv[1]))
run = client.create_run("0")
print("run", run.run_id, flush=True)
i = 0
while True:
    for _ in range(100):
        client.log_metric(run.run_id, "m", float(i), step=i)
        i += 1
    client.flush()
    print("flushed", i, flush=True)
"""


def test_sigkill_while_logging_keeps_every_flushed_value(tmp_path):
    home = tmp_path / "home"
    with subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(home)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().split()[1]
        flushed = 0
        while flushed < 3000:
            line = proc.stdout.readline()
            assert line, "writer died early"
            flushed = int(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    db = home / "loopml.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with loopml.Client(loopml.Settings(home=home)) as client:
        run = client.get_run(run_id)
        steps = [m.step for m in client.get_metric_history(run_id, "m")]
    assert run.status.value == "RUNNING"  # it never ended; the record says so
    assert len(steps) == len(set(steps)), "a value was written twice"
    assert steps[:flushed] == list(range(flushed)), "a flushed value is missing"
    assert Path(db).exists()

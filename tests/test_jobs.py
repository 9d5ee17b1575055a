"""The background-job slot of `loopml up`: periodic, isolated failures, clean start and stop."""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient

from loopml.server.app import create_app
from loopml.server.jobs import JobRunner
from loopml.server.main import background_jobs
from loopml.settings import Settings
from loopml.stack import Stack


def _wait(predicate, seconds=5.0):
    deadline = time.time() + seconds
    while time.time() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


def test_jobs_run_periodically_and_a_failing_job_does_not_stop_the_others():
    runner = JobRunner(tick=0.01)
    ticks: list[float] = []
    good = runner.add("good", 0.05, lambda: ticks.append(time.time()))
    bad = runner.add("bad", 0.05, lambda: 1 / 0)
    runner.start()
    assert _wait(lambda: good.runs >= 3 and bad.failures >= 3)
    runner.stop()
    stopped_at = good.runs
    time.sleep(0.2)
    assert good.runs == stopped_at
    assert "ZeroDivisionError" in (bad.last_error or "")
    with pytest.raises(ValueError):
        runner.add("never", 0, lambda: None)


def test_the_app_starts_and_stops_its_jobs_with_its_lifespan(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path, background_jobs=True))
    jobs = background_jobs(stack)
    assert jobs is not None and [j.name for j in jobs.jobs] == ["prune stale uploads"]
    stale = tmp_path / "uploads" / ("a" * 32)
    stale.mkdir(parents=True)
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    with TestClient(create_app(stack, jobs=jobs)) as client:
        assert client.get("/healthz").status_code == 200
        assert _wait(lambda: not stale.exists())
    assert jobs.jobs[0].runs >= 1
    assert background_jobs(Stack.from_settings(Settings(home=tmp_path / "x"))) is None
    stack.close()

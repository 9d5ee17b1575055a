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
    assert jobs is not None
    names = [j.name for j in jobs.jobs]
    assert {"prune stale uploads", "prediction log retention and compaction"} <= set(names)
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


def test_loopml_up_prunes_and_compacts_prediction_logs_in_the_background(tmp_path):
    from loopml.serving.predlog import HOUR_MS, PredictionLogger, PredictionRecord
    from loopml.serving.predlog_reader import read_predictions
    from loopml.testing.deployment_contract import registered_model, single

    settings = Settings(home=tmp_path, background_jobs=True, predlog_jobs_interval_s=0.05,
                        predlog_retention_days=30, predlog_retention_floor_days=30)  # fmt: skip
    stack = Stack.from_settings(settings)
    model = registered_model(stack)
    for name in ("kept", "held"):
        stack.deployments.create_deployment(name, single(model), actor="setup")
    stack.deployments.set_log_policy("held", actor="legal", legal_hold=True)
    now_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    old, recent = now_hour - 40 * 24 * HOUR_MS, now_hour - 2 * HOUR_MS
    for name in ("kept", "held"):
        for hour in (old, recent):
            for i in range(3):  # three segments an hour
                with PredictionLogger(stack.artifacts) as log:
                    log.record(PredictionRecord(f"{name}-{hour}-{i}", name, "m", "1", hour + i,
                                                "/predict", {}, [0], latency_ms=1.0))  # fmt: skip

    def logged(name):
        return sorted(read_predictions(stack.artifacts, name, 0, 2**62)["request_id"])

    def files(name):
        return len(stack.artifacts.list(f"predictions/{name}", recursive=True))

    jobs = background_jobs(stack)
    with TestClient(create_app(stack, jobs=jobs)) as client:
        assert client.get("/healthz").status_code == 200
        assert _wait(lambda: files("kept") == 1 and files("held") == 2)
    assert logged("kept") == [f"kept-{recent}-{i}" for i in range(3)]
    assert len(logged("held")) == 6  # on hold: nothing pruned, both hours compacted
    events = stack.audit.list_events(action="deployment.log_prune")
    assert [(e.object_id, e.actor, e.change["rows"]["predictions"]) for e in events] == [
        ("kept", "loopml:jobs", 3)
    ]  # fmt: skip
    [upkeep] = [j for j in jobs.jobs if j.name == "prediction log retention and compaction"]
    assert upkeep.runs >= 1 and upkeep.failures == 0
    stack.close()

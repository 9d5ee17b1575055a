"""A deployment served: canary split, shadows logged but never returned, an alias move and a
rollback under load without a failed request, every admitted request in the prediction log."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import loopml
from loopml.server.inference import InferenceServerSpec, build_deployment
from loopml.serving.deployments import DeploymentSpec, Target
from loopml.serving.predlog_reader import read_predictions
from loopml.settings import Settings

MODEL = "scorer"
ACTOR = "devops"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A store with three versions of one model (each predicts its own constant) and aliases."""
    from sklearn.dummy import DummyClassifier

    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    frame = pd.DataFrame({"amount": np.arange(20, dtype=float), "age": np.arange(20.0)})
    with loopml.Client(Settings()) as client:
        run = client.create_run(client.create_experiment("serve").experiment_id)
        for n in (1, 2, 3):
            model = DummyClassifier(strategy="constant", constant=n).fit(frame, [n] * 20)
            info = client.log_model(run.run_id, model, f"model{n}", input_example=frame.head())
            client.register_model(info.source, MODEL)
        client.registry.set_alias(MODEL, "production", 1, actor=ACTOR)
        client.registry.set_alias(MODEL, "canary", 2, actor=ACTOR)
    return tmp_path / "home"


def _deploy(spec: DeploymentSpec) -> None:
    with loopml.Client(Settings()) as client:
        assert client.stack.deployments is not None
        client.stack.deployments.create_deployment("fraud", spec, actor=ACTOR)


def _server(**options) -> TestClient:
    spec = InferenceServerSpec(source="fraud", build=build_deployment, log_predictions=True,
                               poll_s=0.05, allowed_hosts=("testserver",), **options)  # fmt: skip
    return TestClient(spec())


ROW = {"records": [{"amount": 3.0, "age": 40.0}]}


def test_a_canary_split_and_shadows_that_are_logged_but_never_returned(home):
    _deploy(DeploymentSpec(targets=(
        Target(MODEL, alias="production", weight=0.9), Target(MODEL, alias="canary", weight=0.1),
        Target(MODEL, version=3, shadow=True),
    )))  # fmt: skip
    n = 2000
    with _server() as http:
        answers = [http.post("/predict", json=ROW) for _ in range(n)]
        index = http.post("/v2/repository/index").json()  # every version served, shadows too
    assert [(m["name"], m["version"], m["state"]) for m in index] == [
        (MODEL, v, "READY") for v in ("1", "2", "3")
    ]
    assert all(a.status_code == 200 for a in answers)
    versions = [a.json()["version"] for a in answers]
    assert set(versions) <= {"1", "2"}  # the shadow (version 3) never answers
    assert all(a.json()["predictions"] == [int(a.json()["version"])] for a in answers)
    canary = versions.count("2")
    assert abs(canary - 0.1 * n) <= 6 * math.sqrt(n * 0.1 * 0.9)  # binomial, 6 sigma
    with loopml.Client(Settings()) as client:
        log = read_predictions(client.stack.artifacts, "fraud", 0, int(time.time() * 1000) + 1)
    primary, shadow = log[~log["shadow"]], log[log["shadow"]]
    assert len(primary) == n  # a clean shutdown flushed every admitted request
    assert set(shadow["version"]) == {"3"} and len(shadow) == n  # shadow_share 1.0
    assert set(primary["request_id"]) == {a.headers["x-request-id"] for a in answers}


def test_an_alias_move_and_a_rollback_under_load_fail_no_request(home):
    _deploy(DeploymentSpec(targets=(Target(MODEL, alias="production", weight=1.0),)))
    failures: list[int] = []
    seen: set[str] = set()
    stop = threading.Event()
    with _server() as http:

        def load() -> None:
            while not stop.is_set():
                answer = http.post("/predict", json=ROW)
                if answer.status_code != 200:
                    failures.append(answer.status_code)
                else:
                    seen.add(answer.json()["version"])

        workers = [threading.Thread(target=load) for _ in range(4)]
        for w in workers:
            w.start()
        with loopml.Client(Settings()) as client:
            deployments = client.stack.deployments
            assert deployments is not None

            def answered_by(version: str) -> bool:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    if http.post("/predict", json=ROW).json()["version"] == version:
                        return True
                    time.sleep(0.02)
                return False

            assert answered_by("1")
            client.registry.set_alias(MODEL, "production", 2, actor=ACTOR)  # a release
            assert answered_by("2")
            deployments.set_traffic("fraud", {f"{MODEL}:3": 1.0}, actor=ACTOR)
            assert answered_by("3")
            deployments.rollback("fraud", actor=ACTOR)  # back to production (now version 2)
            assert answered_by("2")
        stop.set()
        for w in workers:
            w.join()
    assert failures == [] and seen == {"1", "2", "3"}


def test_sticky_keys_keep_a_caller_on_one_version(home):
    _deploy(DeploymentSpec(targets=(
        Target(MODEL, version=1, weight=0.5), Target(MODEL, version=2, weight=0.5),
    )))  # fmt: skip
    with _server() as http:
        for key in ("alice", "bob", "carol", "dave"):
            answers = {
                http.post("/predict", json=ROW, headers={"X-Routing-Key": key}).json()["version"]
                for _ in range(20)
            }
            assert len(answers) == 1


def test_a_deployment_may_name_its_own_sticky_header(home):
    _deploy(DeploymentSpec(targets=(
        Target(MODEL, version=1, weight=0.5), Target(MODEL, version=2, weight=0.5),
    ), sticky_key="X-Customer"))  # fmt: skip
    with _server() as http:
        per_customer = [
            {http.post("/predict", json=ROW, headers={"X-Customer": f"c{i}"}).json()["version"]
             for _ in range(10)}
            for i in range(8)
        ]  # fmt: skip
    assert all(len(versions) == 1 for versions in per_customer)
    assert set().union(*per_customer) == {"1", "2"}  # customers spread over both versions

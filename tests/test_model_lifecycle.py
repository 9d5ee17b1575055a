"""Models through the platform: log, register, alias, load by every reference form, evaluate;
tampered and untrusted packages refused (embedded and through the server)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml.errors import IntegrityError, InvalidArgument, NotFound, PermissionDenied
from loopml.projects.entities import Direction, JudgedAt
from loopml.settings import Settings
from loopml.stack import Stack
from model_fixtures import Doubler, Evil
from server_fixtures import in_process_stack


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"amount": rng.random(300) * 100, "age": rng.integers(18, 90, 300)})
    frame = frame.astype("float64")
    labels = ((frame["amount"] > 50) ^ (frame["age"] > 60)).astype(int).to_numpy()
    return frame, labels


def _models(frame: pd.DataFrame, labels: np.ndarray) -> dict[str, tuple[object, object]]:
    """flavor -> (model to log, input to predict on)"""
    import lightgbm
    import xgboost
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = frame.to_numpy(dtype=np.float32)
    onnx_model = to_onnx(LogisticRegression().fit(features, labels), features[:1],
                         options={"zipmap": False}, target_opset=17)  # fmt: skip
    return {
        "sklearn": (
            make_pipeline(StandardScaler(), RandomForestClassifier(20, random_state=0)).fit(
                frame, labels
            ),
            frame,
        ),
        "xgboost": (xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(frame, labels), frame),
        "lightgbm": (
            lightgbm.LGBMClassifier(n_estimators=20, verbose=-1).fit(frame, labels),
            frame,
        ),
        "onnx": (onnx_model, features),
        "python": (Doubler(), frame.to_numpy()),
    }


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = loopml.Client(Settings(home=tmp_path / "home"))
    yield c
    c.close()


@pytest.mark.parametrize("flavor", ["sklearn", "xgboost", "lightgbm", "onnx", "python"])
def test_each_flavor_round_trips_through_every_reference_form(client, data, flavor):
    frame, labels = data
    model, x = _models(frame, labels)[flavor]
    experiment = client.create_experiment(f"flavors-{flavor}")
    run = client.create_run(experiment.experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=x[:5])
    assert info.flavor == flavor and info.source == f"runs:/{run.run_id}/model"
    version = client.register_model(info.source, f"m-{flavor}")
    assert version.version == 1 and version.digest == info.digest
    client.registry.set_alias(f"m-{flavor}", "champion", 1, actor=client.actor)
    trust = flavor == "python"  # the only pickle-based one here: recorded digest + trust
    predictions = [
        client.load_model(ref, trust=trust).predict(x)
        for ref in (info.source, f"models:/m-{flavor}/1", f"models:/m-{flavor}@champion")
    ]
    first = client.load_model(info.source, trust=trust).predict(x)
    for p in predictions:
        np.testing.assert_allclose(np.asarray(p), np.asarray(first))
    if flavor != "onnx":
        np.testing.assert_allclose(np.asarray(first), np.asarray(model.predict(x)))  # type: ignore[attr-defined]


def test_the_signature_checks_input_before_the_model_sees_it(client, data):
    frame, labels = data
    model, _ = _models(frame, labels)["sklearn"]
    run = client.create_run(client.create_experiment("sig").experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=frame.head())
    predictor = client.load_model(info.source)
    assert predictor.predict({"amount": [10.0], "age": [30.0]}).shape == (1,)
    with pytest.raises(InvalidArgument, match="age"):
        predictor.predict({"amount": [10.0]})
    with pytest.raises(InvalidArgument, match="amount"):
        predictor.predict({"amount": ["lots"], "age": [30.0]})


def test_a_changed_byte_in_the_store_fails_the_load(client, data, tmp_path):
    frame, labels = data
    model, _ = _models(frame, labels)["sklearn"]
    run = client.create_run(client.create_experiment("tamper").experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=frame.head())
    stored = tmp_path / "home" / "artifacts" / run.artifact_path / "model"
    victim = next(p for p in stored.iterdir() if p.suffix == ".skops")
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    victim.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        client.load_model(info.source)


def test_pickles_do_not_run_by_default_and_never_from_unrecorded_sources(client, tmp_path):
    marker = tmp_path / "pwned"
    run = client.create_run(client.create_experiment("evil").experiment_id)
    info = client.log_model(run.run_id, Evil(marker), "model")
    assert info.flavor == "python" and not marker.exists()
    with pytest.raises(PermissionDenied, match="pickle"):
        client.load_model(info.source)
    assert not marker.exists()
    # the same package copied somewhere this platform never recorded
    from loopml.models.package import load_package

    cached = next((tmp_path / "home" / "model-cache").iterdir())
    with pytest.raises(PermissionDenied):
        load_package(cached, trust=True, recorded_digest=None)
    assert not marker.exists()


def test_unknown_references_are_clear_errors(client):
    for bad in ("s3://bucket/model", "models:/x", "models:/x/one", "runs:/"):
        with pytest.raises(InvalidArgument):
            client.load_model(bad)
    with pytest.raises(NotFound):
        client.load_model("models:/nothing/1")


def test_evaluate_logs_metrics_slices_plots_and_checks_kpis(client, data):
    frame, labels = data
    model, _ = _models(frame, labels)["sklearn"]
    project = client.stack.projects.create_project(
        "risk", business_goal="catch fraud", description="", owner="", actor=client.actor
    )
    client.stack.projects.add_kpi(
        project.name, "fraud caught", metric="recall", target=0.8, direction=Direction.MAXIMIZE,
        judged_at=JudgedAt.VALIDATION, description="", owner="", actor=client.actor,
    )  # fmt: skip
    experiment = client.create_experiment("eval", project="risk")
    run = client.create_run(experiment.experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=frame.head())
    test = frame.assign(label=labels, segment=np.where(frame["age"] > 50, "old", "young"))
    result, checks = client.evaluate(info.source, test, target="label", task="classification",
                                     slices=["segment"])  # fmt: skip
    assert 0.5 < result.metrics["accuracy"] <= 1.0 and "roc_auc" in result.metrics
    assert {s.value for s in result.slices} == {"old", "young"}
    assert [c.kpi for c in checks] == ["fraud caught"]
    assert checks[0].met == (result.metrics["recall"] >= 0.8)
    logged = client.get_run(run.run_id).metrics
    assert logged["accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert any(k.startswith("slice.segment") for k in logged)
    paths = {r.path for r in client.get_artifact_records(run.run_id)}
    assert {"evaluation/report.json", "model_card.md", "evaluation/roc_curve.plotly.json"} <= paths
    with pytest.raises(InvalidArgument, match="target"):
        client.evaluate(info.source, test, target="nope", task="classification")


def test_models_round_trip_through_the_server(tmp_path, data):
    frame, labels = data
    model, _ = _models(frame, labels)["lightgbm"]
    server = Stack.from_settings(Settings(home=tmp_path / "server"))
    remote, http = in_process_stack(server, home=tmp_path / "client")
    try:
        client = loopml.Client(remote)
        run = client.create_run(client.create_experiment("remote").experiment_id)
        info = client.log_model(run.run_id, model, "model", input_example=frame.head(),
                                registered_model_name="remote-model")  # fmt: skip
        assert info.registered_version is not None and info.registered_version.version == 1
        client.registry.set_alias("remote-model", "staging", 1, actor=client.actor)
        got = client.load_model("models:/remote-model@staging").predict(frame)
        np.testing.assert_array_equal(np.asarray(got), model.predict(frame))
        client.close()
    finally:
        http.close()
        server.close()

"""The demo ``loopml up`` loads: a fraud-detection project whose best model meets its KPIs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import loopml
from loopml import demo
from loopml.demo.experiments import _log_roc
from loopml.errors import InvalidArgument
from loopml.tracking.entities import Run, RunStatus

FINAL_METRICS = {
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "false_alarm_rate",
    "recall_at_1pct_fpr",
}  # fmt: skip
MODEL_ARTIFACTS = {
    "eval/confusion_matrix.json", "eval/feature_importances.json", "model_summary.txt",
    "plots/roc.png",
}  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The full default demo (12 model runs), loaded once for the whole module."""
    home = tmp_path_factory.mktemp("demo-home")
    client = loopml.Client(loopml.Settings(home=home))
    summary = demo.load_demo(client)
    yield client, summary, home
    client.close()


@pytest.fixture
def client(store) -> loopml.Client:
    return store[0]


@pytest.fixture
def summary(store) -> demo.DemoSummary:
    return store[1]


def _runs(client: loopml.Client, summary: demo.DemoSummary) -> dict[str, Run]:
    return {r.run_name: r for r in client.search_runs(summary.experiment_id).items}


def _model_runs(client: loopml.Client, summary: demo.DemoSummary) -> list[Run]:
    return [
        r
        for r in _runs(client, summary).values()
        if r.parent_run_id is None and r.status is RunStatus.FINISHED
    ]


# -- the project ------------------------------------------------------------------------------


def test_project_has_a_goal_an_okr_and_kpis(client, summary):
    project = client.get_project(demo.PROJECT)
    assert summary.project == demo.PROJECT and summary.created
    assert project.business_goal and project.owner == "fraud-ops"
    assert len(project.okrs) == 1 and 2 <= len(project.okrs[0].key_results) <= 3
    kpis = {k.name: k for k in project.kpis}
    expected = {
        "fraud caught": ("recall_at_1pct_fpr", 0.9, "maximize", "validation"),
        "false alarms": ("false_alarm_rate", 0.01, "minimize", "validation"),
        "ranking quality": ("roc_auc", 0.95, "maximize", "validation"),
        "daily fraud losses": ("fraud_loss_eur", 5000.0, "minimize", "production"),
    }
    for name, (metric, target, direction, judged_at) in expected.items():
        kpi = kpis[name]
        assert (kpi.metric, kpi.target, kpi.direction.value, kpi.judged_at.value) == (
            metric, target, direction, judged_at,
        )  # fmt: skip
    experiment = client.get_experiment(summary.experiment_id)
    assert experiment.name == demo.EXPERIMENT and experiment.project_id == project.project_id


# -- the runs ---------------------------------------------------------------------------------


def test_a_dozen_model_runs_one_failed_and_one_nested_tuning_run(client, summary):
    runs = _runs(client, summary)
    assert len(runs) == 13 and len(summary.run_ids) == 13
    assert set(summary.run_ids) == {r.run_id for r in runs.values()}
    families = {r.tags["model_family"] for r in runs.values()}
    assert {"LogisticRegression", "RandomForestClassifier", "HistGradientBoostingClassifier"} <= (
        families
    )

    failed = [r for r in runs.values() if r.status is RunStatus.FAILED]
    assert [r.run_id for r in failed] == [summary.failed_run_id]
    assert failed[0].tags["error"] == "InvalidParameterError"
    error = client.artifacts.read_bytes(failed[0], "error.txt").decode()
    assert "focal_loss" in error

    children = [r for r in runs.values() if r.parent_run_id is not None]
    assert [r.run_id for r in children] == [summary.tuning_run_id]
    assert children[0].parent_run_id == summary.best_run_id
    finished = [r for r in runs.values() if r.status is RunStatus.FINISHED]
    assert len(finished) == 12 and all(r.end_time is not None for r in finished)


def test_every_run_records_inputs_params_tags_and_final_metrics(client, summary):
    for run in _model_runs(client, summary):
        assert {(i.name, i.role) for i in run.inputs} == {
            ("transactions-train", "train"),
            ("transactions-validation", "validation"),
        }
        assert all(len(i.digest) == 64 for i in run.inputs)
        assert run.params["model"] == run.tags["model_family"]
        assert run.params["train_rows"] == "14000"
        assert run.tags["author"]
        assert set(run.metrics) >= FINAL_METRICS
        assert run.cpu_seconds is not None and run.cpu_seconds > 0


def test_input_digests_match_the_generated_data(client, summary):
    run = client.get_run(summary.best_run_id)
    digests = {i.role: i.digest for i in run.inputs}
    train = next(i for i in run.inputs if i.role == "train")
    assert "generate_transactions(n=20000, seed=7)" in train.source
    data = demo._Data.prepare(20_000, demo.SEED)
    assert digests == {
        "train": loopml.dataset_digest(data.train),
        "validation": loopml.dataset_digest(data.validation),
    }


def test_iterative_models_log_curves_of_at_least_ten_steps(client, summary):
    iterative = [
        r for r in _model_runs(client, summary) if "Logistic" not in r.tags["model_family"]
    ]
    assert len(iterative) >= 8
    for run in iterative:
        for key in ("train_loss", "val_loss", "val_auc"):
            history = client.get_metric_history(run.run_id, key)
            steps = [m.step for m in history]
            assert len(steps) >= 10 and steps == sorted(steps) and len(set(steps)) == len(steps)
        auc = [m.value for m in client.get_metric_history(run.run_id, "val_auc")]
        assert auc[-1] > auc[0] - 0.01  # more trees do not make it worse


def test_artifacts_are_logged_with_digests(client, summary):
    for run in _model_runs(client, summary):
        entries = {e.path: e for e in client.artifacts.list(run, recursive=True) if not e.is_dir}
        if run.run_id == summary.best_run_id:  # released: its package, evaluation and card too
            released = {p for p in entries if p.startswith(("model/", "evaluation/"))}
            assert "model/loopml-model.yaml" in released and "evaluation/report.json" in released
            entries = {p: e for p, e in entries.items() if p not in released | {"model_card.md"}}
        elif "model/loopml-model.yaml" in entries:  # the runner-up: packaged for the canary
            entries = {p: e for p, e in entries.items() if not p.startswith("model/")}
        assert set(entries) == MODEL_ARTIFACTS
        assert all(e.sha256 and len(e.sha256) == 64 and e.size for e in entries.values())
        assert client.artifacts.read_bytes(run, "plots/roc.png").startswith(b"\x89PNG")
        matrix = json.loads(client.artifacts.read_bytes(run, "eval/confusion_matrix.json"))
        assert sum(map(sum, matrix["matrix"])) == 6000
        importances = json.loads(client.artifacts.read_bytes(run, "eval/feature_importances.json"))
        assert "merchant_category" in importances["importances"]
        text = client.artifacts.read_bytes(run, "model_summary.txt").decode()
        assert run.run_name in text and "recall_at_1pct_fpr" in text


# -- the promise: the best run meets the KPIs, a linear model does not ------------------------


def test_best_run_meets_the_validation_kpis(client, summary):
    best = client.get_run(summary.best_run_id)
    kpis = {k.name: k for k in client.get_project(demo.PROJECT).kpis}
    for name in ("fraud caught", "false alarms", "ranking quality"):
        kpi = kpis[name]
        assert kpi.is_met(best.metrics[kpi.metric]), (name, best.run_name, best.metrics)
    recall = best.metrics["recall_at_1pct_fpr"]
    assert all(recall >= r.metrics["recall_at_1pct_fpr"] for r in _model_runs(client, summary))


def test_logistic_regression_is_clearly_worse(client, summary):
    best = client.get_run(summary.best_run_id)
    fraud_caught = next(
        k for k in client.get_project(demo.PROJECT).kpis if k.name == "fraud caught"
    )
    linear = [
        r for r in _model_runs(client, summary) if r.tags["model_family"] == "LogisticRegression"
    ]
    assert len(linear) == 2
    for run in linear:
        assert not fraud_caught.is_met(run.metrics["recall_at_1pct_fpr"])
        assert run.metrics["recall_at_1pct_fpr"] < best.metrics["recall_at_1pct_fpr"] - 0.05


def test_threshold_tuning_picks_an_operating_point_within_one_percent(client, summary):
    child = client.get_run(summary.tuning_run_id)
    assert child.run_name == "threshold-tuning" and child.status is RunStatus.FINISHED
    assert child.metrics["false_alarm_rate"] <= 0.01
    assert child.metrics["recall"] >= 0.9
    assert 0 < child.metrics["threshold"] < 1
    assert len(client.get_metric_history(child.run_id, "sweep_recall")) >= 10
    point = json.loads(client.artifacts.read_bytes(child, "eval/operating_point.json"))
    assert point["threshold"] == pytest.approx(child.metrics["threshold"])


# -- loading again ----------------------------------------------------------------------------


def test_loading_twice_duplicates_nothing(client, summary):
    def counts() -> tuple[int, ...]:
        project = client.get_project(demo.PROJECT)
        return (
            len(client.list_projects()), len(project.okrs), len(project.kpis),
            len(client.list_experiments()), len(client.search_runs(summary.experiment_id).items),
            len(client.audit_events(limit=100_000)),
        )  # fmt: skip

    before = counts()
    again = demo.load_demo(client)
    assert counts() == before
    assert not again.created
    assert (again.experiment_id, set(again.run_ids), again.best_run_id) == (
        summary.experiment_id, set(summary.run_ids), summary.best_run_id,
    )  # fmt: skip
    assert (again.failed_run_id, again.tuning_run_id) == (
        summary.failed_run_id,
        summary.tuning_run_id,
    )


def test_main_reports_the_best_run_against_the_kpis(store, capsys):
    _client, summary, home = store
    assert demo.main(["--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "already there" in out and summary.best_run_id in out
    assert "'fraud caught'" in out and "-> met" in out and "judged in production" in out


def test_fewer_runs_keep_the_baseline_the_winner_and_the_failure(tmp_path):
    with loopml.Client(loopml.Settings(home=tmp_path)) as client:
        with pytest.raises(InvalidArgument):
            demo.load_demo(client, runs=2)
        assert all(p.name != demo.PROJECT for p in client.list_projects())
        summary = demo.load_demo(client, runs=3)
        runs = _runs(client, summary)
        assert set(runs) == {"logreg-baseline", "hgb-lr0.1", "hgb-focal-loss", "threshold-tuning"}
        assert runs["hgb-lr0.1"].run_id == summary.best_run_id


def test_an_existing_project_is_left_alone(tmp_path):
    with loopml.Client(loopml.Settings(home=tmp_path)) as client:
        client.create_project(demo.PROJECT, business_goal="mine", owner="me")
        summary = demo.load_demo(client, runs=3)
        project = client.get_project(demo.PROJECT)
        assert (project.business_goal, project.kpis, project.okrs) == ("mine", (), ())
        assert len(summary.run_ids) == 4


def test_roc_falls_back_to_json_without_matplotlib(client, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    experiment = client.create_experiment("roc-fallback")
    run = client.create_run(experiment.experiment_id)
    y = np.array([0, 0, 1, 1, 0, 1])
    _log_roc(client, run.run_id, "tiny", y, np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9]))
    points = json.loads(client.artifacts.read_bytes(run, "plots/roc.json"))
    assert points["false_alarm_rate"][0] == 0.0 and points["recall"][-1] == 1.0
    client.set_terminated(run.run_id)


# -- the data ---------------------------------------------------------------------------------


def test_generate_transactions_is_deterministic_with_the_promised_fraud_rate():
    frame = demo.generate_transactions()
    pd.testing.assert_frame_equal(frame, demo.generate_transactions())
    assert not frame.equals(demo.generate_transactions(seed=8))
    assert len(frame) == 20_000 and 0.02 <= frame["is_fraud"].mean() <= 0.03
    assert list(frame.columns) == [
        "amount", "merchant_category", "hour", "card_present", "country_mismatch",
        "distance_from_home_km", "transactions_last_24h", "account_age_days", "is_fraud",
    ]  # fmt: skip
    assert not frame.isna().any().any()
    assert frame["amount"].gt(0).all() and frame["hour"].between(0, 23).all()
    assert set(frame["card_present"]) == {0, 1} and set(frame["country_mismatch"]) == {0, 1}
    assert frame["account_age_days"].ge(1).all() and frame["transactions_last_24h"].ge(1).all()
    assert set(frame["merchant_category"].cat.categories) == set(demo.CATEGORIES)


def test_fraud_depends_on_the_features():
    frame = demo.generate_transactions()
    fraud, legit = frame[frame["is_fraud"] == 1], frame[frame["is_fraud"] == 0]
    assert fraud["amount"].median() > legit["amount"].median()
    assert fraud["country_mismatch"].mean() > 2 * legit["country_mismatch"].mean()
    assert fraud["card_present"].mean() < legit["card_present"].mean()
    assert fraud["transactions_last_24h"].mean() > 2 * legit["transactions_last_24h"].mean()


def test_import_loopml_does_not_load_the_demo():
    code = (
        "import sys, loopml; loopml.Client; "
        "print('loopml.demo' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- the release: the best run's model, gated, approved by a risk manager, in production ------
def test_the_best_model_is_in_production_with_its_whole_history(client, summary):
    from loopml.demo.registry import MODEL, RISK_MANAGER
    from loopml.registry.entities import ApprovalStatus, Stage

    registry = client.registry
    production = registry.get_version_by_alias(MODEL, "production")
    assert production.stage is Stage.PRODUCTION
    assert production.run_id == summary.best_run_id
    assert registry.get_registered_model(MODEL).aliases["champion"] == production.version
    reports = registry.list_gate_reports(MODEL, production.version)
    assert reports and all(r.passed for r in reports)
    assert {c.name for c in reports[-1].checks} >= {"kpi fraud caught", "artifact model_card.md"}
    [request] = registry.list_approval_requests(MODEL, production.version)
    assert request.status is ApprovalStatus.APPROVED
    assert [(d.user, d.role) for d in request.decisions] == [(RISK_MANAGER, "risk_manager")]
    assert request.requested_by != RISK_MANAGER
    width = production.signature["inputs"][0]["shape"][1]  # a tensor signature: (-1, features)
    predictor = client.load_model(f"models:/{MODEL}@production")
    assert predictor.predict_proba(np.zeros((2, width))).shape == (2, 2)
    actions = [e.action for e in client.audit_events(object_type="model")]
    assert "approval.grant" in actions and actions.count("model_version.transition") >= 3
    assert client.verify_audit().ok


# -- the deployment: production plus a 10 % canary, fed by a gentle stream --------------------
def test_the_demo_deployment_serves_production_and_a_canary(store, monkeypatch):
    from fastapi.testclient import TestClient

    from loopml.demo.deployments import DEPLOYMENT
    from loopml.demo.registry import MODEL
    from loopml.demo.traffic import demo_traffic_job
    from loopml.server.inference import InferenceServerSpec, build_deployment
    from loopml.serving.predlog_reader import read_predictions

    client, _, home = store
    deployment = client.stack.deployments.get_deployment(DEPLOYMENT)
    assert {(t.alias, t.weight) for t in deployment.spec.live} == {
        ("production", 0.9), ("canary", 0.1)
    }  # fmt: skip
    canary = client.registry.get_version_by_alias(MODEL, "canary")
    assert canary.version != client.registry.get_version_by_alias(MODEL, "production").version
    monkeypatch.setenv("LOOPML_HOME", str(home))
    spec = InferenceServerSpec(source=DEPLOYMENT, build=build_deployment, log_predictions=True,
                               allowed_hosts=("testserver",))  # fmt: skip
    with TestClient(spec()) as http:  # runs the app's lifespan: a clean stop flushes the log
        traffic = demo_traffic_job("http://testserver", client, http=http)
        assert traffic is not None
        answers = sum(traffic.tick() for _ in range(5))
    assert answers == 20
    logged = read_predictions(client.stack.artifacts, DEPLOYMENT, 0, 2**62)
    assert len(logged) == 20 and set(logged["version"]) <= {
        str(canary.version), str(client.registry.get_version_by_alias(MODEL, "production").version)
    }  # fmt: skip
    assert logged["ground_truth"].notna().sum() >= 1  # feedback joined to its prediction

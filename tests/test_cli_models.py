"""``loopml models``: registry, policy, gates, promotion, approvals and webhooks from the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

import loopml
from loopml.cli.context import reset_client
from loopml.cli.main import app
from loopml.cli.models import parse_champion_gate, parse_metric_gate
from loopml.cli.models_governance import local_is_admin, local_roles
from loopml.errors import InvalidArgument
from loopml.registry.entities import ChampionGate, MetricGate

PASSWORD = "a long enough passphrase"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "alice")
    for var in ("LOOPML_URI", "LOOPML_ARTIFACTS", "LOOPML_TOKEN", "LOOPML_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    reset_client()
    yield tmp_path / "home"
    reset_client()


@pytest.fixture
def logged(home):
    """A finished run (roc_auc 0.85, log_loss 0.3) with a real scikit-learn model at 'model'."""
    frame = pd.DataFrame({"amount": [1.0, 5.0, 2.0, 8.0, 3.0, 9.0], "hour": [1, 2, 3, 4, 5, 6]})
    model = LogisticRegression().fit(frame, [0, 1, 0, 1, 0, 1])
    with loopml.Client(loopml.Settings(home=home)) as client:
        run = client.create_run(client.create_experiment("fraud-exp").experiment_id)
        client.log_metrics(run.run_id, {"roc_auc": 0.85, "log_loss": 0.3})
        info = client.log_model(run.run_id, model, "model", input_example=frame.head())
        client.set_terminated(run.run_id)
    return info


@pytest.fixture
def cli(monkeypatch):
    """Run ``loopml …`` as ``user`` (a fresh client each time, as each real invocation is)."""

    def run(*args: str, user: str = "alice"):
        monkeypatch.setenv("LOOPML_USER", user)
        reset_client()
        return CliRunner().invoke(app, list(args))

    return run


def ok(cli, *args: str, user: str = "alice") -> str:
    result = cli(*args, user=user)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(cli, *args: str, user: str = "alice", code: int = 1) -> str:
    """The one-line error of a refused command."""
    result = cli(*args, user=user)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and message.count("error:") == 1, message
    # Rich folds a long message at the console width (160 when piped): join the folds back.
    return " ".join(message.split())


def as_json(cli, *args: str, user: str = "alice"):
    return json.loads(ok(cli, *args, "--json", user=user))


def registered(cli, logged, *policy: str) -> None:
    ok(cli, "models", "register", logged.source, "fraud")
    if policy:
        ok(cli, "models", "policy", "fraud", *policy)


def users(home, *, admin: str | None = None, **roles: str) -> None:
    """Users in the identity store, each granted a role on the default project."""
    with loopml.Client(loopml.Settings(home=home)) as client:
        identity = client.stack.identity
        assert identity is not None
        if admin:
            identity.create_user(admin, PASSWORD, is_admin=True, actor="root")
        for name, role in roles.items():
            identity.create_user(name, PASSWORD, actor="root")
            if role:
                identity.grant(name, "default", role, actor="root")


# models, versions, aliases ----------------------------------------------------------------------
def test_create_register_list_show_and_alias(cli, logged):
    out = ok(cli, "models", "create", "fraud", "--risk-tier", "high", "--description", "card fraud",
             "--intended-use", "score card payments")  # fmt: skip
    assert "created model fraud" in out
    assert ok(cli, "models", "register", logged.source, "fraud").strip() == (
        "registered fraud version 1"
    )
    assert "version 2" in ok(
        cli, "models", "register", logged.source, "fraud", "--description", "b"
    )
    [model] = as_json(cli, "models", "list")
    assert (model["name"], model["risk_tier"], model["latest_version"]) == ("fraud", "high", 2)
    assert "fraud" in ok(cli, "models", "list") and "high" in ok(cli, "models", "list")

    ok(cli, "models", "alias", "fraud", "champion", "1")
    shown = as_json(cli, "models", "show", "fraud")
    assert shown["model"]["aliases"] == {"champion": 1}
    assert shown["model"]["intended_use"] == "score card payments"
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["versions"][0]["digest"] == logged.digest
    assert (
        shown["versions"][0]["flavor"] == "sklearn" and shown["versions"][1]["description"] == "b"
    )
    assert shown["policy"]["require_kpis"] is True
    table = ok(cli, "models", "show", "fraud")
    assert logged.digest[:12] in table and "champion" in table and "candidate" in table

    versions = as_json(cli, "models", "versions", "fraud")
    assert [(v["version"], v["stage"], v["created_by"]) for v in versions] == [
        (1, "candidate", "alice"), (2, "candidate", "alice"),
    ]  # fmt: skip
    assert "alias fraud@champion deleted" in ok(cli, "models", "alias", "fraud", "champion",
                                                 "--delete")  # fmt: skip
    assert as_json(cli, "models", "show", "fraud")["model"]["aliases"] == {}
    assert "VERSION" in fails(cli, "models", "alias", "fraud", "champion")
    assert "not both" in fails(cli, "models", "alias", "fraud", "champion", "1", "--delete")


def test_register_creates_the_model_in_the_runs_project(cli, logged):
    registered(cli, logged)
    [model] = as_json(cli, "models", "list")
    with loopml.Client() as client:
        assert model["project_id"] == client.get_project("default").project_id


# policy -----------------------------------------------------------------------------------------
def test_policy_is_parsed_strictly_and_changed_field_by_field(cli, logged):
    registered(cli, logged)
    ok(cli, "models", "policy", "fraud",
       "--metric-gate", "roc_auc>=0.9", "--metric-gate", "log_loss <= 0.4",
       "--champion-gate", "roc_auc:0.01", "--champion-gate", "-log_loss:0.02", "--no-require-kpis",
       "--require-artifact", "model_card.md", "--approver", "Risk_Manager")  # fmt: skip
    policy = as_json(cli, "models", "policy", "fraud", "--show")
    assert policy["metric_gates"] == [
        {"metric": "roc_auc", "threshold": 0.9, "direction": "maximize"},
        {"metric": "log_loss", "threshold": 0.4, "direction": "minimize"},
    ]
    assert policy["champion_gates"] == [
        {"metric": "roc_auc", "direction": "maximize", "min_improvement": 0.01},
        {"metric": "log_loss", "direction": "minimize", "min_improvement": 0.02},
    ]
    assert policy["require_kpis"] is False
    assert policy["required_artifacts"] == ["model_card.md"]
    assert policy["production_approvers"] == ["risk_manager"]

    ok(cli, "models", "policy", "fraud", "--metric-gate", "roc_auc>=0.8")  # only that field
    policy = as_json(cli, "models", "policy", "fraud")
    assert [g["threshold"] for g in policy["metric_gates"]] == [0.8]
    assert policy["production_approvers"] == ["risk_manager"] and len(policy["champion_gates"]) == 2
    assert "roc_auc >= 0.8" in ok(cli, "models", "policy", "fraud", "--show")

    bad = {
        ("--metric-gate", "roc_auc>0.9"): "METRIC>=VALUE",
        ("--metric-gate", ">=0.9"): "METRIC>=VALUE",
        ("--metric-gate", "roc_auc>=high"): "not a number",
        ("--metric-gate", "roc_auc>=nan"): "not a finite number",
        ("--metric-gate", "roc auc!>=0.9"): "invalid metric key",
        ("--champion-gate", "roc_auc:-0.1"): "cannot be negative",
        ("--champion-gate", "roc_auc:lots"): "not a number",
        ("--champion-gate", "-:0.1"): "METRIC:MIN_IMPROVEMENT",
        ("--champion-gate", "roc_auc:"): "METRIC:MIN_IMPROVEMENT",
        ("--approver", "boss"): "unknown role 'boss'",
        ("--require-artifact", "../secrets"): "",
    }
    for args, said in bad.items():
        assert said in fails(cli, "models", "policy", "fraud", *args), args
    assert "--show" in fails(cli, "models", "policy", "fraud", "--show", "--no-require-kpis")
    assert [g["threshold"] for g in as_json(cli, "models", "policy", "fraud")["metric_gates"]] == [
        0.8
    ]  # nothing changed by the refused commands

    ok(cli, "models", "policy", "fraud", "--reset")
    assert as_json(cli, "models", "policy", "fraud")["metric_gates"] == []


def test_gate_parsers():
    assert parse_metric_gate(" acc >= 1e-1 ") == MetricGate("acc", 0.1, "maximize")
    assert parse_metric_gate("val/loss<=2") == MetricGate("val/loss", 2.0, "minimize")
    assert parse_champion_gate("auc") == ChampionGate("auc", "maximize", 0.0)
    assert parse_champion_gate("-loss:0.5") == ChampionGate("loss", "minimize", 0.5)
    assert parse_champion_gate("eval:auc:0.01") == ChampionGate("eval:auc", "maximize", 0.01)
    for bad in ("acc=>0.9", "acc>=", "acc>=inf", "acc>=0.9>=1"):
        with pytest.raises(InvalidArgument):
            parse_metric_gate(bad)


# gates and promotion ----------------------------------------------------------------------------
def test_a_failing_metric_gate_exits_1_and_says_why(cli, logged):
    registered(cli, logged, "--metric-gate", "roc_auc>=0.9", "--no-require-kpis")
    result = cli("models", "gates", "fraud", "1")
    assert result.exit_code == 1
    assert "✗ metric roc_auc >= 0.9: roc_auc is 0.85, needs >= 0.9" in result.stdout
    assert "gates failed" in result.stdout and "Traceback" not in result.output
    report = json.loads(cli("models", "gates", "fraud", "1", "--json").stdout)
    assert report["passed"] is False and report["checks"][0]["passed"] is False
    message = fails(cli, "models", "promote", "fraud", "1", "--to", "validated")
    assert "roc_auc is 0.85, needs >= 0.9" in message and "gate report" in message
    assert as_json(cli, "models", "versions", "fraud")[0]["stage"] == "candidate"

    ok(cli, "models", "policy", "fraud", "--metric-gate", "roc_auc>=0.8")
    passed = ok(cli, "models", "gates", "fraud", "1", "--target", "production")
    assert "✓ metric roc_auc >= 0.8" in passed and "gates passed" in passed
    assert ok(cli, "models", "promote", "fraud", "v1", "--to", "Validated").strip() == (
        "fraud version 1 is now validated"
    )
    assert "cannot go to validated" in fails(cli, "models", "promote", "fraud", "1", "--to",
                                             "validated")  # fmt: skip


def test_override_needs_a_reason_and_an_admin(cli, logged, home):
    registered(cli, logged, "--metric-gate", "roc_auc>=0.99", "--no-require-kpis")
    users(home, admin="root", alice="data_scientist")
    result = cli("models", "gates", "fraud", "1", "--json")
    report_id = json.loads(result.stdout)["report_id"]
    assert "--reason" in fails(cli, "models", "override", report_id)
    assert "--reason" in fails(cli, "models", "override", report_id, "--reason", "  ")
    assert "only an admin" in fails(cli, "models", "override", report_id, "--reason", "known")
    out = ok(cli, "models", "override", report_id, "--reason", "backtest on 2 years", user="root")
    assert f"--report {report_id}" in out
    assert "is now validated" in ok(cli, "models", "promote", "fraud", "1", "--to", "validated",
                                    "--report", report_id)  # fmt: skip


def test_the_single_local_user_may_override(cli, logged, home):
    registered(cli, logged, "--metric-gate", "roc_auc>=0.99", "--no-require-kpis")
    report_id = json.loads(cli("models", "gates", "fraud", "1", "--json").stdout)["report_id"]
    ok(cli, "models", "override", report_id, "--reason", "accepted by the model owner")
    ok(cli, "models", "promote", "fraud", "1", "--to", "validated", "--report", report_id)
    with loopml.Client(loopml.Settings(home=home)) as client:
        assert local_is_admin(client) and "risk_manager" in local_roles(client, "any")


# approvals --------------------------------------------------------------------------------------
def test_approval_by_another_user_with_the_role(cli, logged, home):
    registered(cli, logged, "--metric-gate", "roc_auc>=0.8", "--no-require-kpis",
               "--approver", "risk_manager")  # fmt: skip
    users(home, alice="data_scientist", rita="risk_manager", dave="data_scientist")
    ok(cli, "models", "promote", "fraud", "1", "--to", "validated")
    assert "approved request" in fails(cli, "models", "promote", "fraud", "1", "--to",
                                       "production")  # fmt: skip

    request_id = ok(cli, "models", "request-approval", "fraud", "1", "--comment", "please").strip()
    assert len(request_id) >= 8 and "\n" not in request_id
    [pending] = as_json(cli, "models", "approvals", "--status", "pending")
    assert (pending["request_id"], pending["missing_roles"]) == (request_id, ["risk_manager"])
    assert "already has a pending request" in fails(cli, "models", "request-approval", "fraud", "1")

    assert "separation of duties" in fails(cli, "models", "approve", request_id)
    assert "holds none of the roles" in fails(cli, "models", "approve", request_id, user="dave")
    out = ok(cli, "models", "approve", request_id, "--comment", "checked", user="rita")
    assert "approved fraud v1 as risk_manager: request is approved" in out
    [done] = as_json(cli, "models", "approvals", "--name", "fraud")
    assert done["status"] == "approved" and done["decisions"][0]["user"] == "rita"
    assert as_json(cli, "models", "approvals", "--status", "pending") == []
    assert "rita (risk_manager) yes" in ok(cli, "models", "approvals")

    assert as_json(cli, "models", "versions", "fraud")[0]["stage"] == "approved"
    ok(cli, "models", "promote", "fraud", "1", "--to", "production")
    aliases = as_json(cli, "models", "show", "fraud")["model"]["aliases"]
    assert aliases == {"production": 1, "champion": 1}


def test_reject_and_roles_from_the_identity_store(cli, logged, home):
    registered(cli, logged, "--no-require-kpis", "--approver", "risk_manager")
    users(home, admin="root", alice="", rita="risk_manager", vic="viewer")
    ok(cli, "models", "promote", "fraud", "1", "--to", "validated")
    request_id = ok(cli, "models", "request-approval", "fraud", "1").strip()
    assert "holds none" in fails(cli, "models", "reject", request_id, user="vic")
    assert "request is rejected" in ok(cli, "models", "reject", request_id, user="root")
    assert as_json(cli, "models", "approvals", "--status", "rejected")[0]["request_id"] == (
        request_id
    )
    with loopml.Client(loopml.Settings(home=home, user="rita")) as client:
        project_id = client.get_project("default").project_id
        assert local_roles(client, project_id) == {"risk_manager"}
        assert local_roles(client, "another-project") == frozenset()
        assert not local_is_admin(client)


def test_a_remote_client_leaves_roles_to_the_server(tmp_path):
    settings = loopml.Settings(home=tmp_path, uri="http://127.0.0.1:9", user="alice")
    with loopml.Client(settings) as client:
        assert local_roles(client, "p") == frozenset() and not local_is_admin(client)


# errors -----------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_errors(cli, logged):
    registered(cli, logged)
    cases = [
        (("models", "show", "nope"), "not found"),
        (("models", "versions", "nope"), "not found"),
        (("models", "promote", "fraud", "1", "--to", "heaven"), "unknown stage 'heaven'"),
        (("models", "promote", "fraud", "x", "--to", "validated"), "a version is a number"),
        (("models", "promote", "fraud", "0", "--to", "validated"), "a version is a number"),
        (("models", "promote", "fraud", "9", "--to", "validated"), "has no version 9"),
        (("models", "gates", "fraud", "1", "--target", "archived"), "validated and production"),
        (("models", "gates", "nope", "1"), "not found"),
        (("models", "approvals", "--status", "maybe"), "unknown status 'maybe'"),
        (("models", "approve", "no-such-request"), "not found"),
        (("models", "override", "no-such-report", "--reason", "r"), "not found"),
        (("models", "register", "models:/fraud/1", "fraud"), "runs:/<run_id>/<path>"),
        (("models", "register", logged.source.replace("/model", "/none"), "fraud"), "no model"),
        (("models", "create", "bad name"), "invalid model name"),
        (("models", "create", "other", "--risk-tier", "extreme"), "unknown risk tier"),
        (("models", "create", "fraud"), "fraud"),
        (("models", "alias", "fraud", "1abc", "1"), "invalid alias"),
        (("models", "request-approval", "fraud", "1"), "only a validated version"),
    ]
    for args, said in cases:
        assert said in fails(cli, *args), args


def test_webhooks_add_list_delete(cli, logged, monkeypatch):
    registered(cli, logged)
    monkeypatch.setenv("LOOPML_WEBHOOK_ALLOW_PRIVATE", "true")
    secret = "s" * 24
    out = ok(cli, "models", "webhooks", "add", "http://127.0.0.1:9/hook", "--secret", secret,
             "--event", "approval.requested", "--model", "fraud")  # fmt: skip
    webhook_id = out.split()[1]
    [hook] = as_json(cli, "models", "webhooks", "list")
    assert (hook["webhook_id"], hook["events"], hook["model"]) == (
        webhook_id, ["approval.requested"], "fraud",
    )  # fmt: skip
    assert secret not in json.dumps(hook) and secret not in ok(cli, "models", "webhooks", "list")
    assert "at least 16" in fails(cli, "models", "webhooks", "add", "http://127.0.0.1:9/",
                                  "--secret", "short")  # fmt: skip
    assert "unknown webhook events" in fails(cli, "models", "webhooks", "add",
                                             "http://127.0.0.1:9/", "--secret", secret,
                                             "--event", "everything")  # fmt: skip
    assert "deleted" in ok(cli, "models", "webhooks", "delete", webhook_id)
    assert as_json(cli, "models", "webhooks", "list") == []

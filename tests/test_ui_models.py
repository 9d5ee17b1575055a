"""The model registry's web pages: the list, a model, a version; access, escaping, the forms,
and one walk through them in a real browser."""

from __future__ import annotations

import html
import os
import re
import shutil
import time
from dataclasses import dataclass, field

import pytest
import yaml
from fastapi.testclient import TestClient

from loopml.registry.entities import ChampionGate, MetricGate, PromotionPolicy, Stage
from loopml.server.access import route_table
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.entities import Metric
from server_fixtures import uvicorn_server
from ui_fixtures import EVIL, ORIGIN, PASSWORD, UiWorld, login, page, populate, text_of

ESCAPED = html.escape(EVIL, quote=False)
MODEL = "fraud-detector"
CHROMIUM = "/usr/bin/chromium"
SIGNATURE = {
    "kind": "columns",
    "inputs": [
        {"name": "amount", "dtype": "float64"},
        {"name": "merchant_country", "dtype": "str", "optional": True},
        {"name": "embedding", "dtype": "float32", "shape": [-1, 16]},
    ],
    "outputs": [{"name": "fraud_score", "dtype": "float64"}],
    "params": {},
}
DATASETS = [
    {"name": "transactions-2024", "version": "7", "role": "train"},
    {"name": "holdout-q3", "digest": "sha256:" + "cd" * 32, "role": "eval"},
]


@dataclass
class Registry:
    """What :func:`seed` registered: run ids by name, and the reports worth looking for."""

    runs: dict[str, str] = field(default_factory=dict)
    failed_report: str = ""


def log_package(stack: Stack, experiment_id: str, metrics: dict[str, float], name: str) -> str:
    """A finished run with ``metrics``, a model card and a (manifest-only) model package."""
    tracking = stack.tracking
    now = int(time.time() * 1000)
    run = tracking.create_run(
        experiment_id, run_name=name, user="ada", start_time=now, actor="setup"
    )
    tracking.log_batch(
        run.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()], actor="setup"
    )
    manifest = {
        "format_version": 1,
        "flavor": "sklearn",
        "signature": SIGNATURE,
        "lineage": {"run_id": run.run_id, "datasets": DATASETS},
        "files": {},
    }
    artifacts = RunArtifacts(tracking, stack.artifacts)
    artifacts.log_bytes(run, yaml.safe_dump(manifest).encode(), "model/loopml-model.yaml")
    artifacts.log_bytes(run, b"# Model card\n", "model_card.md")
    return run.run_id


def seed(stack: Stack, ui: UiWorld) -> Registry:
    """On top of :func:`populate`: ``fraud-detector`` in *alpha* (v1 in production through
    gates and an approval, v2 failed its gates and was overridden, v3 and v4 validated; the
    form test takes v4), a model in
    *beta*, and a model in *alpha* whose version came from a *beta* run."""
    identity, registry = stack.identity, stack.registry
    assert identity is not None and registry is not None
    rita = identity.create_user("rita", PASSWORD, actor="setup")
    identity.grant(rita, "alpha", "risk_manager", actor="setup")
    seeded = Registry()
    exp = stack.tracking.create_experiment("registry-runs", project="alpha", actor="setup")
    for name, auc, loss in (("strong", 0.95, 0.1), ("weak", 0.8, 0.3), ("stronger", 0.97, 0.09)):
        seeded.runs[name] = log_package(
            stack, exp.experiment_id, {"val_auc": auc, "val_loss": loss}, name
        )
    registry.create_registered_model(
        MODEL, project="alpha", description=EVIL, owner="risk-team", risk_tier="high",
        intended_use="score card payments in real time", tags={"team": "fraud"}, actor="ada",
    )  # fmt: skip
    policy = PromotionPolicy(
        metric_gates=(MetricGate("val_auc", 0.9),),
        champion_gates=(ChampionGate("val_auc", min_improvement=0.0),),
        require_kpis=True,
        required_artifacts=("model_card.md",),
        production_approvers=("risk_manager",),
    )
    registry.set_policy(MODEL, policy, actor="ada")
    for run in ("strong", "weak", "stronger", "stronger"):
        registry.create_model_version(MODEL, f"runs:/{seeded.runs[run]}/model", actor="ada")
    registry.promote(MODEL, 1, to=Stage.VALIDATED, actor="ada")
    registry.request_approval(MODEL, 1, actor="ada", comment=f"ship it {EVIL}")
    request = registry.list_approval_requests(MODEL, 1)[0]
    registry.decide(request.request_id, actor="rita", roles={"risk_manager"}, approve=True,
                    comment="card looks fine")  # fmt: skip
    registry.promote(MODEL, 1, to=Stage.PRODUCTION, actor="ada")
    failed = registry.check_gates(MODEL, 2, target=Stage.VALIDATED, actor="ada")
    assert not failed.passed
    registry.override(failed.report_id, actor="root", is_admin=True, reason=f"accepted {EVIL}")
    seeded.failed_report = failed.report_id
    registry.promote(MODEL, 3, to=Stage.VALIDATED, actor="ada")
    registry.promote(MODEL, 4, to=Stage.VALIDATED, actor="ada")
    registry.set_alias(MODEL, "shadow", 3, actor="ada")

    registry.create_registered_model("beta-secret-model", project="beta", actor="setup")
    registry.create_registered_model("cross-project", project="alpha", actor="setup")
    beta_run = stack.tracking.get_run(ui.beta_run)
    seeded.runs["beta"] = beta_run.run_id
    stack.tracking.log_batch(
        beta_run.run_id, metrics=[Metric("beta_secret_metric", 0.5, 1, 0)], actor="setup"
    )
    RunArtifacts(stack.tracking, stack.artifacts).log_bytes(
        beta_run, yaml.safe_dump({"flavor": "sklearn"}).encode(), "model/loopml-model.yaml"
    )
    registry.create_model_version("cross-project", f"runs:/{beta_run.run_id}/model", actor="setup")
    return seeded


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("ui-models")))
    seeded = seed(stack, populate(stack))
    app = create_app(stack, authenticate=token_authenticator(stack))
    yield app, stack, seeded
    stack.close()


@pytest.fixture
def client(world):
    app, _stack, _seeded = world
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as c:
        yield c


# pages -------------------------------------------------------------------------------------
def test_models_list_shows_the_models_the_caller_may_read(world, client):
    login(client, "ada")
    body = page(client, "/models")
    assert f'href="/models/{MODEL}"' in body and 'href="/models/cross-project"' in body
    assert "beta-secret-model" not in body
    row = re.search(r"<tr>\s*<td><a class=\"model-name\" href=\"/models/fraud-detector\".*?</tr>",
                    body, re.S).group(0)  # fmt: skip
    assert "alpha" in row and "high risk" in row and "risk-team" in row
    assert f'href="/models/{MODEL}/versions/4">v4</a>' in row
    for alias, version in (("champion", 1), ("production", 1), ("shadow", 3)):
        assert f"{alias} → v{version}" in row, alias
    assert "<time datetime=" in row
    assert '<a href="/models" aria-current="page">Models</a>' in body


def test_model_page_shows_description_policy_aliases_and_versions(world, client):
    _app, _stack, seeded = world
    login(client, "ada")
    body = page(client, f"/models/{MODEL}")
    text = text_of(body)
    assert ESCAPED in body and EVIL not in body
    for needle in ("risk-team", "score card payments in real time", "team", "fraud"):
        assert needle in text, needle
    # the policy
    assert "val_auc" in text and "≥ 0.9" in text
    assert "higher by at least 0" in text and "champion" in text
    assert "fraud caught" in text and "loss ceiling" in text  # the project's validation KPIs
    assert "model_card.md" in text and "risk_manager" in text
    # versions: newest first, each with its stage, run link and digest
    rows = re.findall(r"<tr>\s*<td><a href=\"/models/fraud-detector/versions/(\d)\">", body)
    assert rows == ["4", "3", "2", "1"]
    assert "badge-stage-production" in body and "badge-stage-validated" in body
    assert "badge-stage-candidate" in body
    for run in ("strong", "weak", "stronger"):
        assert f'href="/runs/{seeded.runs[run]}"' in body, run
    digest = world[1].registry.get_model_version(MODEL, 1).digest
    assert digest[:12] in body


def test_version_page_shows_lineage_signature_metrics_gates_approvals_and_history(world, client):
    _app, _stack, seeded = world
    login(client, "ada")
    body = page(client, f"/models/{MODEL}/versions/1")
    text = text_of(body)
    assert "badge-stage-production" in body
    # lineage back to the run, and the datasets
    assert f'class="source-run" href="/runs/{seeded.runs["strong"]}">strong</a>' in body
    assert "registry-runs" in text
    for needle in ("transactions-2024", "7", "train", "holdout-q3", "sha256:cdcd", "eval"):
        assert needle in text, needle
    # the signature
    inputs = re.search(r'<table class="signature inputs">.*?</table>', body, re.S).group(0)
    for needle in ("amount", "merchant_country", "embedding", "float32", "(-1, 16)", "yes"):
        assert needle in inputs, needle
    outputs = re.search(r'<table class="signature outputs">.*?</table>', body, re.S).group(0)
    assert "fraud_score" in outputs
    # the run's metrics, the gated one highlighted
    assert '<tr class="kpi"><th scope="row">val_auc</th><td class="num">0.95</td>' in body
    assert "val_loss" in text
    # gate reports: every check with its detail
    gates = re.search(r'<section id="gates">.*?</section>', body, re.S).group(0)
    assert "to production: passed" in text_of(gates) and "to validated: passed" in text_of(gates)
    for needle in (
        "metric val_auc &gt;= 0.9",
        "val_auc is 0.95, needs &gt;= 0.9",
        "kpi fraud caught",
        "artifact model_card.md",
        "beats champion on val_auc",
        "no champion yet",
    ):
        assert needle in gates, needle
    assert "check-fail" not in gates
    # the approval: status, roles, the decision with its user, role and comment
    approvals = re.search(r'<section class="card approvals".*?</section>', body, re.S).group(0)
    for needle in ("badge-approval-approved", "requested by ada", "risk_manager", "rita",
                   "card looks fine", f"ship it {ESCAPED}"):  # fmt: skip
        assert needle in approvals, needle
    assert 'class="search decide"' not in approvals  # decided: no form
    assert "Request approval" not in approvals  # in production: nothing to request
    # history, newest first: the model's events and this version's
    history = re.search(r'<section id="history">.*?</section>', body, re.S).group(0)
    actions = re.findall(r"<code>([a-z_.]+)</code>", history)
    for action in ("model.create", "model.policy", "model_version.create",
                   "model_version.gates", "model_version.transition", "approval.request",
                   "approval.grant", "model.alias"):  # fmt: skip
        assert action in actions, action
    assert actions.index("model_version.transition") < actions.index("model.create")
    assert actions[-1] == "model.create"
    assert "fraud-detector/1" in history and "fraud-detector/2" not in history


def test_a_failed_and_overridden_gate_report_shows_each_failing_check(world, client):
    login(client, "ada")
    body = page(client, f"/models/{MODEL}/versions/2")
    gates = re.search(r'<section id="gates">.*?</section>', body, re.S).group(0)
    assert "failed, overridden" in text_of(gates)
    assert "val_auc is 0.8, needs &gt;= 0.9" in gates
    assert "val_auc 0.8 vs champion v1 0.95" in gates
    assert "the KPI needs" in gates and "check-fail" in gates and "check-pass" in gates
    assert f"by root: accepted {ESCAPED}" in text_of(gates)
    assert "badge-stage-candidate" in body
    assert "No approval requests." in body


def test_every_user_string_is_escaped(world, client):
    login(client, "ada")
    for path in ("/models", f"/models/{MODEL}", f"/models/{MODEL}/versions/1",
                 f"/models/{MODEL}/versions/2"):  # fmt: skip
        body = page(client, path)
        assert EVIL not in body, path
    assert ESCAPED in page(client, f"/models/{MODEL}")


def test_a_version_from_a_run_the_caller_cannot_read_hides_the_run(world, client):
    _app, _stack, seeded = world
    login(client, "ada")
    body = page(client, "/models/cross-project/versions/1")
    assert f'href="/runs/{seeded.runs["beta"]}"' not in body
    assert "beta_secret_metric" not in body and "beta-secret" not in body
    assert "you may not read this run" in body
    model = page(client, "/models/cross-project")
    assert f'href="/runs/{seeded.runs["beta"]}"' not in model


def test_other_projects_models_are_hidden_and_forbidden(world, client):
    login(client, "bob")  # a viewer on beta only
    body = page(client, "/models")
    assert "beta-secret-model" in body and MODEL not in body and "cross-project" not in body
    for path in (f"/models/{MODEL}", f"/models/{MODEL}/versions/1", "/models/cross-project"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "permission_denied"
        assert "risk-team" not in response.text
    assert client.get("/models/no-such-model").status_code == 404
    login(client, "ada")
    assert client.get(f"/models/{MODEL}/versions/99").status_code == 404
    assert client.get(f"/models/{MODEL}/versions/0").status_code == 400


def test_pages_need_a_login(client):
    response = client.get(f"/models/{MODEL}", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fmodels%2Ffraud-detector"


def test_routes_are_declared_and_kept_out_of_the_api_schema(world):
    app, _stack, _seeded = world
    table = {(p, tuple(sorted(m))): a for p, m, a, _g in route_table(app.routes)}
    assert table[("/models", ("GET",))] == "authenticated"
    assert table[("/models/{name}", ("GET",))] == "model.read"
    assert table[("/models/{name}/versions/{version}", ("GET",))] == "model.read"
    post = ("POST",)
    assert table[("/models/{name}/versions/{version}/approval-requests", post)] == "model.write"
    assert table[("/models/{name}/approval-requests/{request_id}/decision", post)] == (
        "model.approve"
    )
    assert not [p for p in app.openapi()["paths"] if p.startswith("/models")]


# forms -------------------------------------------------------------------------------------
def test_request_approval_and_decide_through_the_forms(world):
    app, stack, _seeded = world
    path = f"/models/{MODEL}/versions/4"
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as ada:
        token = login(ada, "ada")
        assert "Request approval" in page(ada, path)
        refused = ada.post(
            f"{path}/approval-requests", data={"comment": "x"}, headers={"Origin": ORIGIN}
        )
        assert refused.status_code == 403  # no CSRF token
        response = ada.post(
            f"{path}/approval-requests",
            data={"csrf_token": token, "comment": f"please {EVIL}"},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"{path}?done=requested"
        body = page(ada, response.headers["location"])
        assert "Approval requested." in body and "badge-approval-pending" in body
        assert f"please {ESCAPED}" in body and EVIL not in body
        assert 'class="search decide"' not in body  # the requester does not decide
        assert "Request approval" not in body  # one pending request at a time
        again = ada.post(
            f"{path}/approval-requests",
            data={"csrf_token": token},
            headers={"Origin": ORIGIN},
        )
        assert again.status_code == 409 and "already has a pending request" in again.text
    request = stack.registry.list_approval_requests(MODEL, 4)[0]
    decide = f"/models/{MODEL}/approval-requests/{request.request_id}/decision"
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as bob:
        token = login(bob, "bob")
        denied = bob.post(
            decide, data={"csrf_token": token, "decision": "approve"}, headers={"Origin": ORIGIN}
        )
        assert denied.status_code == 403
    with TestClient(app, base_url=ORIGIN, raise_server_exceptions=False) as rita:
        token = login(rita, "rita")
        assert 'class="search decide"' in page(rita, path)
        response = rita.post(
            decide,
            data={"csrf_token": token, "decision": "approve", "comment": "ok by risk"},
            headers={"Origin": ORIGIN},
            follow_redirects=False,
        )
        assert response.status_code == 303
        body = page(rita, response.headers["location"])
        assert "Your approval is recorded." in body and "badge-approval-approved" in body
        assert "ok by risk" in body and "badge-stage-approved" in body
        assert 'class="search decide"' not in body
    assert stack.registry.get_model_version(MODEL, 4).stage is Stage.APPROVED


# a real browser ----------------------------------------------------------------------------
@pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and shutil.which(CHROMIUM)),
    reason=f"the browser test needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)",
)
def test_browse_models_to_a_versions_gate_report(tmp_path):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs playwright (the dev extra)"
    )
    expect = sync_api.expect
    stack = Stack.from_settings(Settings(home=tmp_path))
    try:
        seed(stack, populate(stack))
        app = create_app(stack, authenticate=token_authenticator(stack))
        with uvicorn_server(app) as url, sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                tab = browser.new_page(viewport={"width": 1400, "height": 1000})
                dialogs: list[str] = []
                problems: list[str] = []
                tab.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                tab.on("console", lambda m: m.type == "error" and problems.append(m.text))
                tab.on("pageerror", lambda e: problems.append(str(e)))
                tab.goto(f"{url}/models")
                expect(tab).to_have_url(re.compile(r"/login\?next=%2Fmodels$"))
                tab.fill('input[name="username"]', "ada")
                tab.fill('input[name="password"]', PASSWORD)
                tab.click('form[action="/login"] button[type="submit"]')
                expect(tab).to_have_url(f"{url}/models")
                expect(tab.locator("table.models tbody tr")).to_have_count(2)
                tab.click(f'table.models a.model-name:has-text("{MODEL}")')
                expect(tab.locator("h1")).to_contain_text(MODEL)
                assert EVIL in tab.inner_text("p.description")  # shown as text
                tab.click(f'table.versions a[href="/models/{MODEL}/versions/2"]')
                expect(tab.locator("h1")).to_contain_text("v2")
                report = tab.locator(".gate-report").first
                expect(report).to_contain_text("failed, overridden")
                expect(report.locator("tr.fail")).to_have_count(4)
                expect(report).to_contain_text("val_auc is 0.8, needs >= 0.9")
                expect(tab.locator("table.signature.inputs")).to_contain_text("merchant_country")
                tab.click("a.source-run")
                expect(tab.locator("h1")).to_contain_text("weak")
                assert dialogs == [], "a user string ran as script"
                assert problems == [], problems
            finally:
                browser.close()
    finally:
        stack.close()


def test_doctests():
    import doctest

    from loopml.server.routes import ui_models

    result = doctest.testmod(ui_models)
    assert result.attempted > 0 and result.failed == 0

"""Authentication and authorization over HTTP: tokens, default deny, scoped roles, filtered lists,
and every role-by-action cell of the permission matrix through a real route."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from loopml.governance.roles import Action, Role, allowed
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.server.inference import create_inference_app
from loopml.server.inference_auth import InferenceAuth, store_lookup
from loopml.serving.deployments import DeploymentSpec, Target
from loopml.serving.modelset import SingleModel
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import log_fake_package
from serving.inference_fakes import FakePredictor


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Projects P and Q with an experiment and a run each; an admin; one user per role on P."""
    stack = Stack.from_settings(Settings(home=tmp_path_factory.mktemp("auth")))
    ident = stack.identity
    assert ident is not None
    admin = ident.create_first_admin("root", "correct horse battery", actor="setup")
    tokens = {"root": ident.create_token(admin, "t", actor="setup")[1]}
    ids = {}
    for name in ("p", "q"):
        project = stack.projects.create_project(
            name, business_goal="", description="", owner="", actor="setup"
        )
        exp = stack.tracking.create_experiment(f"exp-{name}", project=name, actor="setup")
        run = stack.tracking.create_run(exp.experiment_id, run_name=None, user="u", start_time=1,
                                        actor="setup")  # fmt: skip
        ids[name] = {"project": project.project_id, "experiment": exp.experiment_id,
                     "run": run.run_id, "artifacts": run.artifact_path}  # fmt: skip
    for role in Role:
        user = ident.create_user(role.value.replace("_", "-"), None, is_service_account=True,
                                 actor="setup")  # fmt: skip
        ident.grant(user, "p", role, actor="setup")
        tokens[role.value] = ident.create_token(user, "t", actor="setup")[1]
    # Project P's model, with a version up for approval, and a deployment serving it.
    assert stack.registry is not None and stack.deployments is not None
    source = log_fake_package(stack, {"auc": 0.9}, project="p", actor="setup")
    stack.registry.create_registered_model("m", actor="setup", project="p")
    stack.registry.create_model_version("m", source, actor="setup")
    stack.registry.promote("m", 1, to="validated", actor="setup")
    ids["p"]["request"] = stack.registry.request_approval("m", 1, actor="setup").request_id
    stack.deployments.create_deployment(
        "d", DeploymentSpec(targets=(Target("m", version=1, weight=1.0),)), actor="setup"
    )
    outsider = ident.create_user("outsider", None, is_service_account=True, actor="setup")
    tokens["outsider"] = ident.create_token(outsider, "t", actor="setup")[1]
    app = create_app(stack, authenticate=token_authenticator(stack))
    # P's model on an inference server with auth: deployment.invoke is checked there.
    served = SingleModel("m", "1", FakePredictor(lambda frame: frame["x"].to_numpy()))
    auth = InferenceAuth(store_lookup(ident), ids["p"]["project"])
    inference = create_inference_app(served, max_wait_ms=0, auth=auth)
    with (
        TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as http,
        TestClient(inference, base_url="http://localhost") as ids["serve"],
    ):
        yield http, tokens, ids
    stack.close()


def _as(tokens, who):
    return {"Authorization": f"Bearer {tokens[who]}"}


def test_no_or_bad_credentials_get_401(world):
    http, _tokens, ids = world
    bad = [
        {},
        {"Authorization": "Bearer lml_0123456789abcdef_" + "x" * 43},
        {"Authorization": "Basic cm9vdDpwdw=="},
        {"Authorization": "Bearer"},
    ]
    for headers in bad:
        response = http.get(f"/api/v1/runs/{ids['p']['run']}", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
    assert http.get("/healthz").status_code == 200  # public


def test_other_projects_are_invisible_and_untouchable(world):
    http, tokens, ids = world
    me = _as(tokens, "data_scientist")
    names = [e["name"] for e in http.get("/api/v1/experiments", headers=me).json()]
    assert "exp-p" in names and "exp-q" not in names  # (the model's run has its own, in P)
    assert [p["name"] for p in http.get("/api/v1/projects", headers=me).json()] == ["p"]
    assert http.get(f"/api/v1/runs/{ids['q']['run']}", headers=me).status_code == 403
    batch = {"params": [{"key": "x", "value": "1"}]}
    assert http.post(f"/api/v1/runs/{ids['q']['run']}/batch", json=batch,
                     headers=me).status_code == 403  # fmt: skip
    body = {"experiment_ids": [ids["q"]["experiment"]]}
    assert http.post("/api/v1/runs/search", json=body, headers=me).status_code == 403
    outsider = _as(tokens, "outsider")
    assert http.get("/api/v1/experiments", headers=outsider).status_code == 403
    assert http.get(f"/api/v1/runs/{ids['p']['run']}", headers=outsider).status_code == 403


def test_actor_is_the_authenticated_user(world):
    http, tokens, ids = world
    me = _as(tokens, "data_scientist")
    run = http.post("/api/v1/runs", json={"experiment_id": ids["p"]["experiment"]}, headers=me)
    assert run.status_code == 201 and run.json()["user"] == "data-scientist"
    events = http.get("/api/v1/audit/events", params={"object_id": run.json()["run_id"]},
                      headers=_as(tokens, "root")).json()  # fmt: skip
    assert [e["actor"] for e in events] == ["data-scientist"]


def test_auditors_see_only_their_projects_events(world):
    http, tokens, ids = world
    events = http.get("/api/v1/audit/events", headers=_as(tokens, "risk_manager")).json()
    visible = {(e["object_type"], e["object_id"]) for e in events}
    q = ids["q"]
    assert not visible & {("project", q["project"]), ("experiment", q["experiment"]),
                          ("run", q["run"])}  # fmt: skip
    assert {
        ("project", ids["p"]["project"]),
        ("run", ids["p"]["run"]),
        ("model", "m"),
        ("model", "m/1"),
        ("deployment", "d"),
    } <= visible  # P's story, models included
    assert not [e for e in events if e["object_type"] in ("user", "token", "membership")]


def _attempt(http, action: Action, ids, headers):
    """One request that needs exactly ``action`` on project P."""
    p = ids["p"]
    match action:
        case Action.PROJECT_READ:
            return http.get("/api/v1/projects/p", headers=headers)
        case Action.PROJECT_WRITE:
            return http.patch("/api/v1/projects/p", json={"owner": "x"}, headers=headers)
        case Action.KPI_WRITE:
            return http.patch("/api/v1/projects/p/kpis/none", json={"target": 1}, headers=headers)
        case Action.EXPERIMENT_READ:
            return http.get(f"/api/v1/experiments/{p['experiment']}", headers=headers)
        case Action.EXPERIMENT_WRITE:
            return http.post(f"/api/v1/experiments/{p['experiment']}/tags",
                             json={"key": "k", "value": "v"}, headers=headers)  # fmt: skip
        case Action.EXPERIMENT_DELETE:
            return http.post(f"/api/v1/experiments/{p['experiment']}/restore", headers=headers)
        case Action.RUN_READ:
            return http.get(f"/api/v1/runs/{p['run']}", headers=headers)
        case Action.RUN_WRITE:
            return http.post(f"/api/v1/runs/{p['run']}/batch", json={"tags": [
                {"key": "k", "value": "v"}]}, headers=headers)  # fmt: skip
        case Action.RUN_DELETE:
            return http.post(f"/api/v1/runs/{p['run']}/restore", headers=headers)
        case Action.ARTIFACT_READ:
            return http.get(f"/api/v1/runs/{p['run']}/artifact-records", headers=headers)
        case Action.ARTIFACT_WRITE:
            return http.put(f"/api/v1/artifacts/{p['artifacts']}/f.txt", content=b"x",
                            headers=headers)  # fmt: skip
        case Action.AUDIT_READ:
            return http.get("/api/v1/audit/verify", headers=headers)
        case Action.TOKEN_MANAGE_OWN:
            return http.get("/api/v1/tokens", headers=headers)
        case Action.USER_MANAGE:
            return http.post("/api/v1/projects", json={"name": "new-" + headers["x-who"]},
                             headers=headers)  # fmt: skip
        case Action.MODEL_READ:
            return http.get("/api/v1/models/m", headers=headers)
        case Action.MODEL_WRITE:
            return http.put("/api/v1/models/m/aliases/staging", json={"version": 1},
                            headers=headers)  # fmt: skip
        case Action.MODEL_APPROVE:  # the first allowed caller decides; later ones meet a 409
            return http.post(f"/api/v1/approval-requests/{p['request']}/decision",
                             json={"approve": False}, headers=headers)  # fmt: skip
        case Action.DEPLOYMENT_WRITE:
            return http.post("/api/v1/deployments/d/traffic", json={"weights": {"m:1": 1.0}},
                             headers=headers)  # fmt: skip
        case Action.DEPLOYMENT_INVOKE:  # on the inference server (loopml serve --auth)
            return ids["serve"].post("/predict", json={"instances": [{"x": 1.0}]},
                                     headers=headers)  # fmt: skip
    return None


# Actions whose routes arrive with later stages (data).
NOT_ROUTED_YET = {Action.DATA_WRITE}
ROUTED = [a for a in Action if a not in NOT_ROUTED_YET]


def test_every_routed_action_has_an_attempt(world):
    http, tokens, ids = world
    headers = {**_as(tokens, "root"), "x-who": "root"}
    assert [a for a in ROUTED if _attempt(http, a, ids, headers) is None] == []


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", ROUTED)
def test_permission_matrix_cell_over_http(world, role, action):
    http, tokens, ids = world
    headers = {**_as(tokens, role.value), "x-who": role.value.replace("_", "-")}
    response = _attempt(http, action, ids, headers)
    expected = allowed(role, action) and action is not Action.USER_MANAGE  # platform-only
    if expected:
        assert response.status_code not in (401, 403), (role, action, response.json())
    else:
        assert response.status_code == 403, (role, action, response.status_code)


def test_self_service_tokens(world):
    http, tokens, _ids = world
    me = _as(tokens, "viewer")
    created = http.post("/api/v1/tokens", json={"name": "laptop", "expires_in_days": 7}, headers=me)
    assert created.status_code == 201
    secret, token_id = created.json()["secret"], created.json()["token"]["token_id"]
    assert (
        http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).json()["name"]
        == "viewer"
    )
    mine = http.get("/api/v1/tokens", headers=me).json()
    assert token_id in [t["token_id"] for t in mine] and all("secret" not in t for t in mine)
    # Someone else's token does not exist for you; an admin may see and revoke it.
    other = _as(tokens, "devops")
    assert http.delete(f"/api/v1/tokens/{token_id}", headers=other).status_code == 404
    assert http.get("/api/v1/tokens", params={"user": "viewer"}, headers=other).status_code == 404
    admin = _as(tokens, "root")
    listed = http.get("/api/v1/tokens", params={"user": "viewer"}, headers=admin).json()
    assert token_id in [t["token_id"] for t in listed]
    assert http.delete(f"/api/v1/tokens/{token_id}", headers=me).json()["revoked_time"]
    revoked = http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert revoked.status_code == 401


def test_a_project_admin_is_not_a_platform_admin(world):
    http, tokens, ids = world
    events = http.get("/api/v1/audit/events", headers=_as(tokens, "admin")).json()
    assert ("run", ids["q"]["run"]) not in {(e["object_type"], e["object_id"]) for e in events}
    assert (
        http.get(f"/api/v1/runs/{ids['q']['run']}", headers=_as(tokens, "admin")).status_code == 403
    )
    assert (
        http.post("/api/v1/projects", json={"name": "x1"}, headers=_as(tokens, "admin")).status_code
        == 403
    )


def test_the_batch_fast_lane_keeps_every_guard(world):
    """``/runs/{id}/batch`` is answered past FastAPI's router: still authenticated, authorized,
    CSRF-checked and schema-checked, with the same errors."""
    http, tokens, ids = world
    url = f"/api/v1/runs/{ids['p']['run']}/batch"
    body = {"tags": [{"key": "k", "value": "v"}]}
    assert http.post(url, json=body).status_code == 401
    assert http.post(url, json=body, headers=_as(tokens, "viewer")).status_code == 403
    q_run = f"/api/v1/runs/{ids['q']['run']}/batch"
    assert http.post(q_run, json=body, headers=_as(tokens, "data_scientist")).status_code == 403
    cross_site = http.post(url, content=b'{"tags": []}', headers={
        **_as(tokens, "data_scientist"), "Content-Type": "text/plain", "Origin": "https://evil.example",
    })  # fmt: skip
    assert cross_site.status_code in (400, 403, 415)
    bad = http.post(url, json={"metrics": {"key": ["a"], "value": [1.0]}},
                    headers=_as(tokens, "data_scientist"))  # fmt: skip
    assert bad.status_code == 400
    assert (
        bad.json()["error"]["details"]["problems"][0]["where"] == "body.metrics.columns.timestamp"
    )
    ok = http.post(url, json=body, headers=_as(tokens, "data_scientist"))
    assert ok.status_code == 200 and ok.json() == {"ok": True}

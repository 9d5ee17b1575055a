"""Deployments: the contract on SQLite, PostgreSQL and HTTP; routing statistics; REST access and
bodies; the ``loopml deploy`` CLI."""

from __future__ import annotations

import json
import math
import random
import threading
import time

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import loopml
from loopml.cli.context import reset_client
from loopml.cli.main import app as cli_app
from loopml.errors import Conflict, InvalidArgument
from loopml.governance.roles import Role
from loopml.server.app import create_app
from loopml.server.identity import token_authenticator
from loopml.serving.deployments import (
    DeploymentSpec,
    Target,
    choose,
    parse_ref,
    spec_diff,
)
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.deployment_contract import DeploymentContract, registered_model, single
from loopml.testing.registry_contract import log_fake_package
from server_fixtures import in_process_stack


# the contract on every backend ------------------------------------------------------------------
@pytest.fixture
def sql_stack(metadata_url, tmp_path):
    stack = Stack.from_settings(
        Settings(home=tmp_path / "home", uri=metadata_url, artifacts=(tmp_path / "a").as_uri())
    )
    yield stack
    stack.close()


class TestSqlDeployments(DeploymentContract):
    @pytest.fixture
    def deployment_stack(self, sql_stack):
        return sql_stack


class TestInProcessDeployments(DeploymentContract):
    @pytest.fixture
    def deployment_stack(self, tmp_path):
        server = Stack.from_settings(Settings(home=tmp_path / "server"))
        self.server = server
        remote, client = in_process_stack(server)
        yield remote
        client.close()
        server.close()

    def log_artifacts(self, stack):
        return self.server.artifacts  # the server's store: a remote client cannot write logs

    def recorded_actor(self, actor: str) -> str:
        return Settings().resolved_user()  # auth off: every caller is the server's local user


def test_concurrent_updates_from_one_revision_one_wins(sql_stack):
    deployments = sql_stack.deployments
    model = registered_model(sql_stack, versions=3)
    deployments.create_deployment("race", single(model), actor="t")
    results: list[object] = []
    barrier = threading.Barrier(2)

    def update(version: int) -> None:
        barrier.wait()
        try:
            results.append(deployments.update_deployment(
                "race", single(model, version), actor="t", expected_revision=1
            ).revision)  # fmt: skip
        except Conflict as e:
            results.append(e)

    threads = [threading.Thread(target=update, args=(v,)) for v in (2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(str(type(r).__name__) for r in results) == ["Conflict", "int"]
    assert [r.revision for r in deployments.history("race")] == [1, 2]
    assert sql_stack.audit.verify().ok


# specs --------------------------------------------------------------------------------------------
def test_specs_normalise_round_trip_and_diff():
    spec = DeploymentSpec(
        (Target("m", version=1, weight=3), Target("m", version=2, weight=1),
         Target("m", alias="next", weight=5, shadow=True)),
        shadow_share=0.5, sticky_key="X-User", max_wait_ms=2, redact={"b": "drop", "a": "hash"},
    )  # fmt: skip
    assert [t.weight for t in spec.targets] == [0.75, 0.25, 0.0]
    assert DeploymentSpec.from_dict(spec.to_dict()) == spec
    assert DeploymentSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    thirds = DeploymentSpec(tuple(Target("m", version=v, weight=1) for v in (1, 2, 3)))
    assert DeploymentSpec.from_dict(thirds.to_dict()).targets == thirds.targets  # exact floats
    assert parse_ref("m:2") == Target("m", version=2) and parse_ref("m@next").alias == "next"
    for bad in ("m", "m:x", "m:1:2", "m@1", "", "m@", "a b:1"):
        with pytest.raises(InvalidArgument):
            parse_ref(bad)
    diff = spec_diff(spec, spec.with_traffic({"m:1": 1, "m@next": 1}))
    assert diff["targets_removed"][0]["version"] == 2
    assert diff["targets_changed"]["m@next"]["shadow"] == {"from": True, "to": False}
    assert spec_diff(spec, spec) == {}
    with pytest.raises(InvalidArgument, match="unknown deployment spec fields"):
        DeploymentSpec.from_dict({**spec.to_dict(), "extra": 1})
    for weight in (math.nan, math.inf, True, "1"):
        with pytest.raises(InvalidArgument):
            Target("m", version=1, weight=weight)  # type: ignore[arg-type]


# routing statistics -----------------------------------------------------------------------------
def _within_binomial(count: int, n: int, p: float, sigmas: float = 6.0) -> bool:
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


CANARY = DeploymentSpec((Target("m", version=1, weight=0.9), Target("m", version=2, weight=0.1)))


def test_weighted_draws_follow_the_weights():
    rng = random.Random(1234)
    draws = [choose(CANARY, None, rng)[0].version for _ in range(2000)]
    assert _within_binomial(draws.count(2), 2000, 0.1)
    assert set(draws) == {1, 2}


def test_a_zero_weight_target_gets_nothing():
    spec = DeploymentSpec((Target("m", version=1, weight=0), Target("m", version=2, weight=1),
                           Target("m", version=3, weight=0)))  # fmt: skip
    rng = random.Random(7)
    assert {choose(spec, None, rng)[0].version for _ in range(2000)} == {2}
    assert {choose(spec, f"k{i}", rng)[0].version for i in range(2000)} == {2}


def test_sticky_keys_pin_callers_and_split_by_weight():
    keys = [f"customer-{i}" for i in range(2000)]
    first = [choose(CANARY, k, random.Random(1))[0] for k in keys]
    again = [choose(CANARY, k, random.Random(99))[0] for k in keys]
    assert first == again  # the same key meets the same target, whatever the randomness
    rebuilt = DeploymentSpec.from_dict(json.loads(json.dumps(CANARY.to_dict())))
    assert [choose(rebuilt, k, random.Random(5))[0] for k in keys] == first
    assert _within_binomial(sum(t.version == 2 for t in first), 2000, 0.1)


def test_shadows_are_mirrored_at_their_share():
    spec = DeploymentSpec(
        (Target("m", version=1, weight=1), Target("m", version=2, shadow=True),
         Target("m", alias="next", shadow=True)),
        shadow_share=0.3,
    )  # fmt: skip
    rng = random.Random(42)
    mirrored = [choose(spec, None, rng) for _ in range(2000)]
    assert all(live.version == 1 for live, _ in mirrored)
    assert {shadows for _, shadows in mirrored} == {(), spec.shadows}
    assert _within_binomial(sum(bool(s) for _, s in mirrored), 2000, 0.3)
    from dataclasses import replace

    never, always = replace(spec, shadow_share=0.0), replace(spec, shadow_share=1.0)
    assert not any(choose(never, None, rng)[1] for _ in range(500))
    assert all(choose(always, "k", rng)[1] == spec.shadows for _ in range(500))
    assert choose(CANARY, None, rng)[1] == ()


# REST: bodies and access ------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path / "served"))
    with TestClient(create_app(stack), base_url="http://testserver") as http:
        yield stack, http
    stack.close()


@pytest.mark.parametrize(
    "spec",
    [
        {"targets": []},
        {"targets": [{"model": "M", "version": 1, "weight": -1}]},
        {"targets": [{"model": "M", "version": 0, "weight": 1}]},
        {"targets": [{"model": "M", "version": 1, "weight": 1}], "shadow_share": 2},
        {"targets": [{"model": "M", "version": 1, "weight": 1}], "redact": {"c": "keep"}},
        {"targets": [{"model": "M", "version": 1, "weight": 1, "extra": 1}]},
        {"targets": [{"model": "M", "weight": 1}]},
        {"targets": [{"model": "M", "version": 1, "weight": 1}] * 2},
        {"targets": [{"model": "M", "version": 1, "weight": 1}], "sticky_key": "a/b"},
    ],
)
def test_bad_bodies_are_400_and_store_nothing(served, spec):
    stack, http = served
    model = registered_model(stack)
    spec = json.loads(json.dumps(spec).replace('"M"', json.dumps(model)))
    response = http.post("/api/v1/deployments", json={"name": "d", "spec": spec})
    assert response.status_code == 400, response.json()
    assert response.json()["error"]["code"] == "invalid_argument"
    assert http.get("/api/v1/deployments").json() == []


def test_unknown_targets_and_deployments_are_404(served):
    stack, http = served
    model = registered_model(stack)
    for target in ({"model": model, "version": 9}, {"model": "nosuch", "version": 1},
                   {"model": model, "alias": "nobody"}):  # fmt: skip
        body = {"name": "d", "spec": {"targets": [{**target, "weight": 1}]}}
        assert http.post("/api/v1/deployments", json=body).status_code == 404
    for method, path in (("GET", "/x"), ("GET", "/x/history"), ("DELETE", "/x")):
        assert http.request(method, f"/api/v1/deployments{path}").status_code == 404
    assert http.post("/api/v1/deployments/x/rollback", json={}).status_code == 404


@pytest.fixture
def world(tmp_path):
    """Projects P (model mp) and Q (model mq); one user per role on P, an outsider, an admin."""
    stack = Stack.from_settings(Settings(home=tmp_path / "auth"))
    ident = stack.identity
    assert ident is not None
    admin = ident.create_first_admin("root", "correct horse battery", actor="setup")
    tokens = {"root": ident.create_token(admin, "t", actor="setup")[1]}
    models = {}
    for name in ("p", "q"):
        stack.projects.create_project(name, business_goal="", description="", owner="",
                                      actor="setup")  # fmt: skip
        models[name] = registered_model(stack, project=name)
    for role in Role:
        user = ident.create_user(role.value.replace("_", "-"), None, is_service_account=True,
                                 actor="setup")  # fmt: skip
        ident.grant(user, "p", role, actor="setup")
        tokens[role.value] = ident.create_token(user, "t", actor="setup")[1]
    outsider = ident.create_user("outsider", None, is_service_account=True, actor="setup")
    tokens["outsider"] = ident.create_token(outsider, "t", actor="setup")[1]
    stack.deployments.create_deployment("dp", single(models["p"]), actor="setup")
    stack.deployments.create_deployment("dq", single(models["q"]), actor="setup")
    app = create_app(stack, authenticate=token_authenticator(stack))
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as http:
        yield http, tokens, models
    stack.close()


def _as(tokens, who):
    return {"Authorization": f"Bearer {tokens[who]}"}


@pytest.mark.parametrize("role", list(Role))
def test_deployment_write_follows_the_permission_matrix(world, role):
    from loopml.governance.roles import allowed

    http, tokens, models = world
    headers = _as(tokens, role.value)
    may = allowed(role, "deployment.write")
    body = {"weights": {f"{models['p']}:1": 0.5, f"{models['p']}:2": 0.5}}
    response = http.post("/api/v1/deployments/dp/traffic", json=body, headers=headers)
    assert response.status_code == (200 if may else 403), response.json()
    create = {
        "name": f"new-{role.value}".replace("_", "-"),
        "spec": {"targets": [{"model": models["p"], "version": 1, "weight": 1}]},
    }
    response = http.post("/api/v1/deployments", json=create, headers=headers)
    assert response.status_code == (201 if may else 403), response.json()
    history = http.get("/api/v1/deployments/dp/history", headers=headers).status_code
    assert history == (200 if allowed(role, "model.read") else 403)  # an application reads none
    if may:  # deploying a model of a project one cannot read is refused
        spec = {"targets": [{"model": models["q"], "version": 1, "weight": 1}]}
        response = http.put("/api/v1/deployments/dp", json={"spec": spec}, headers=headers)
        assert response.status_code == 403, response.json()


def test_lists_are_filtered_and_the_actor_is_the_caller(world):
    http, tokens, models = world
    names = [d["name"] for d in http.get("/api/v1/deployments",
                                          headers=_as(tokens, "viewer")).json()]  # fmt: skip
    assert "dp" in names and "dq" not in names
    outsider = _as(tokens, "outsider")
    assert http.get("/api/v1/deployments", headers=outsider).status_code == 403
    assert http.get("/api/v1/deployments/dp", headers=outsider).status_code == 403
    assert http.get("/api/v1/deployments").status_code == 401
    http.post("/api/v1/deployments/dp/traffic", headers=_as(tokens, "devops"),
              json={"weights": {f"{models['p']}:2": 1}})  # fmt: skip
    [*_, last] = http.get("/api/v1/deployments/dp/history", headers=_as(tokens, "root")).json()
    assert (last["actor"], last["reason"]) == ("devops", "traffic")


@pytest.mark.parametrize("role", list(Role))
def test_log_policy_needs_deployment_write_and_lifting_a_hold_an_admin(world, role):
    from loopml.governance.roles import allowed

    http, tokens, _models = world
    headers, root = _as(tokens, role.value), _as(tokens, "root")
    may = allowed(role, "deployment.write")
    status = http.get("/api/v1/deployments/dp/log", headers=headers)
    if not allowed(role, "model.read"):  # an application's service account reads nothing
        assert status.status_code == 403 and not may
        hold = http.put("/api/v1/deployments/dp/log/policy", json={"legal_hold": True},
                        headers=headers)  # fmt: skip
        assert hold.status_code == 403
        return
    assert status.status_code == 200 and status.json()["legal_hold"] is False
    hold = http.put("/api/v1/deployments/dp/log/policy", json={"legal_hold": True}, headers=headers)
    assert hold.status_code == (200 if may else 403), hold.json()
    http.put("/api/v1/deployments/dp/log/policy", json={"legal_hold": True}, headers=root)
    lift = http.put("/api/v1/deployments/dp/log/policy", json={"legal_hold": False},
                    headers=headers)  # fmt: skip
    assert lift.status_code == 403, lift.json()  # no project role lifts a hold
    assert http.get("/api/v1/deployments/dp/log", headers=root).json()["legal_hold"] is True
    for path in ("compact", "prune"):
        response = http.post(f"/api/v1/deployments/dp/log/{path}", json={}, headers=headers)
        assert response.status_code == (200 if may else 403), response.json()
    assert http.put("/api/v1/deployments/dp/log/policy", json={"legal_hold": False},
                    headers=root).status_code == 200  # fmt: skip
    query = "object_type=deployment&object_id=dp&action=deployment.log_policy"
    events = http.get(f"/api/v1/audit/events?{query}", headers=root).json()
    assert events[-1]["actor"] == "root" and events[-1]["change"]["legal_hold"] == {
        "from": True, "to": False
    }  # fmt: skip
    if may:
        assert events[0]["actor"] == role.value.replace("_", "-")


def test_log_policy_bodies_are_checked(world):
    http, tokens, _models = world
    root = _as(tokens, "root")
    for body in ({"retention_days": 10}, {"retention_days": "200"}, {"legal_hold": "yes"},
                 {"retention_days": 0}, {"surprise": 1}, {"hour_ms": 1},
                 {"retention_days": 200, "default_retention": True}):  # fmt: skip
        response = http.put("/api/v1/deployments/dp/log/policy", json=body, headers=root)
        assert response.status_code == 400, (body, response.json())
    assert (
        "floor of 180 days"
        in http.put(
            "/api/v1/deployments/dp/log/policy", json={"retention_days": 10}, headers=root
        ).json()["error"]["message"]
    )
    assert http.get("/api/v1/deployments/dp/log", headers=root).json()["retention_days"] is None
    for path in ("log", "log/policy"):
        method = http.get if path == "log" else http.put
        assert method(f"/api/v1/deployments/nope/{path}", headers=root).status_code in (404, 400)
    assert http.post("/api/v1/deployments/nope/log/prune", headers=root).status_code == 404


# CLI ----------------------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOOPML_USER", "alice")
    for var in ("LOOPML_URI", "LOOPML_ARTIFACTS", "LOOPML_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    reset_client()
    with loopml.Client(loopml.Settings(home=tmp_path / "home")) as client:
        registry = client.registry
        registry.create_registered_model("fraud", actor="alice")
        source = log_fake_package(client.stack, {"auc": 0.9})
        for _ in range(3):
            registry.create_model_version("fraud", source, actor="alice")
        registry.set_alias("fraud", "champion", 3, actor="alice")
    yield tmp_path / "home"
    reset_client()


def _cli(*args: str):
    reset_client()
    return CliRunner().invoke(cli_app, list(args))


def ok(*args: str) -> str:
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def fails(*args: str) -> str:
    result = _cli(*args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and message.count("error:") == 1, message
    return " ".join(message.split())


def test_cli_create_show_traffic_rollback_history_delete(home):
    out = ok("deploy", "create", "fraud-api", "--model", "fraud:1=0.9", "--model", "fraud:2=0.1",
             "--shadow", "fraud@champion", "--shadow-share", "0.5", "--sticky-key", "X-User",
             "--sample-rate", "0.2", "--redact", "email=hash", "--redact", "name=drop")  # fmt: skip
    assert out.strip() == "created deployment fraud-api (revision 1): fraud:1 90%, fraud:2 10%"
    [listed] = json.loads(ok("deploy", "list", "--json"))
    assert (listed["name"], listed["revision"], listed["created_by"]) == ("fraud-api", 1, "alice")
    spec = json.loads(ok("deploy", "show", "fraud-api", "--json"))["spec"]
    assert spec["shadow_share"] == 0.5 and spec["sticky_key"] == "X-User"
    assert spec["sample_rate"] == 0.2 and spec["redact"] == {"email": "hash", "name": "drop"}
    assert [(t["version"], t["alias"], t["shadow"]) for t in spec["targets"]] == [
        (1, None, False), (2, None, False), (None, "champion", True)
    ]  # fmt: skip
    assert "fraud@champion" in ok("deploy", "show", "fraud-api")
    assert "fraud-api" in ok("deploy", "list")

    out = ok("deploy", "traffic", "fraud-api", "fraud:1=0.5", "fraud@champion=0.5")
    assert out.strip() == "deployment fraud-api revision 2: fraud:1 50%, fraud@champion 50%"
    out = ok("deploy", "rollback", "fraud-api")
    assert out.strip() == "deployment fraud-api revision 3: fraud:1 90%, fraud:2 10%"
    assert "revision 4" in ok("deploy", "rollback", "fraud-api", "--to", "2")
    history = json.loads(ok("deploy", "history", "fraud-api", "--json"))
    assert [(h["revision"], h["reason"], h["actor"]) for h in history] == [
        (1, "create", "alice"), (2, "traffic", "alice"), (3, "rollback to 1", "alice"),
        (4, "rollback to 2", "alice"),
    ]  # fmt: skip
    assert "rollback to 1" in ok("deploy", "history", "fraud-api")

    bare = ok("deploy", "create", "latest", "--model", "fraud", "--project", "default")
    assert "fraud:3 100%" in bare
    assert ok("deploy", "delete", "latest").strip() == "deployment latest deleted"
    assert [d["name"] for d in json.loads(ok("deploy", "list", "--json"))] == ["fraud-api"]


def test_cli_errors_are_one_line(home):
    assert "registered model 'nosuch' not found" in fails(
        "deploy", "create", "x", "--model", "nosuch:1"
    )
    assert "has no version 7" in fails("deploy", "create", "x", "--model", "fraud:7")
    assert "has no alias 'beta'" in fails("deploy", "create", "x", "--model", "fraud@beta")
    assert "not a number" in fails("deploy", "create", "x", "--model", "fraud:1=lots")
    assert "to every --model or to none" in fails(
        "deploy", "create", "x", "--model", "fraud:1=1", "--model", "fraud:2"
    )
    assert "COLUMN=drop or COLUMN=hash" in fails(
        "deploy", "create", "x", "--model", "fraud:1", "--redact", "email=keep"
    )
    assert "shadow_share" in fails(
        "deploy", "create", "x", "--model", "fraud:1", "--shadow-share", "2"
    )
    assert "invalid deployment name" in fails("deploy", "create", "a b", "--model", "fraud:1")
    ok("deploy", "create", "api", "--model", "fraud:1")
    assert "already exists" in fails("deploy", "create", "api", "--model", "fraud:1")
    assert "nothing to roll back" in fails("deploy", "rollback", "api")
    assert "REF=WEIGHT" in fails("deploy", "traffic", "api", "fraud:2")
    assert "given twice" in fails("deploy", "traffic", "api", "fraud:2=1", "fraud:2=2")
    assert "not found" in fails("deploy", "show", "nope")
    assert "not found" in fails("deploy", "delete", "nope")
    assert json.loads(ok("deploy", "history", "api", "--json"))[-1]["revision"] == 1


def test_cli_log_show_policy_prune_and_compact(home):
    from loopml.serving.predlog import HOUR_MS, PredictionLogger, PredictionRecord

    ok("deploy", "create", "api", "--model", "fraud:1")
    now_hour = int(time.time() * 1000) // HOUR_MS * HOUR_MS
    old, recent = now_hour - 400 * 24 * HOUR_MS, now_hour - 3 * HOUR_MS
    with loopml.Client(loopml.Settings(home=home)) as client:
        for hour in (old, recent):
            for i in range(3):
                with PredictionLogger(client.stack.artifacts) as log:
                    log.record(PredictionRecord(f"r{hour}-{i}", "api", "fraud", "1", hour + i,
                                                "/predict", {}, [0], latency_ms=1.0))  # fmt: skip
    shown = json.loads(ok("deploy", "log", "show", "api", "--json"))
    assert (shown["effective_retention_days"], shown["hours"], shown["files"]) == (180, 2, 6)
    assert "server default" in ok("deploy", "log", "show", "api")
    assert "below this server's floor of 180 days" in fails(
        "deploy", "log", "policy", "api", "--retention-days", "30"
    )
    assert "--retention-days N" in fails("deploy", "log", "policy", "api")
    assert (
        json.loads(ok("deploy", "log", "policy", "api", "--retention-days", "365", "--json"))[
            "effective_retention_days"
        ]
        == 365
    )
    assert "nothing is pruned" in ok("deploy", "log", "policy", "api", "--legal-hold")
    assert (
        ok("deploy", "log", "prune", "api").strip() == "deployment api is on legal hold: "
        "nothing pruned"
    )
    assert "legal hold" in fails("deploy", "delete", "api")
    ok("deploy", "log", "policy", "api", "--no-legal-hold", "--default-retention")
    out = ok("deploy", "log", "prune", "api")
    assert out.startswith("pruned 1 hours of api (3 files, 3 predictions, 0 feedback rows)")
    assert json.loads(ok("deploy", "log", "prune", "api", "--json")) == []
    assert "3" in ok("deploy", "log", "compact", "api")
    assert json.loads(ok("deploy", "log", "compact", "api", "--json")) == []
    assert json.loads(ok("deploy", "log", "show", "api", "--json"))["files"] == 1
    assert "not found" in fails("deploy", "log", "show", "nope")


def test_doctests():
    import doctest

    from loopml.serving import deployment_service, deployments

    for module in (deployments, deployment_service):
        assert doctest.testmod(module).failed == 0

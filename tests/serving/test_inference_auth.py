"""``loopml serve --auth``: the platform's API tokens on the inference server.

In process (the ASGI app over a real SQLite identity store) every route is walked: health public,
everything else 401 without a token, 403 without ``deployment.invoke`` on the served project,
200 with it, in the protocol's error shape on ``/v2``. Then a live ``loopml serve --auth``
process: a revoked token stops working once its cache entry expires.
"""

from __future__ import annotations

import asyncio
import doctest
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import loopml
from loopml.errors import PermissionDenied, Unavailable
from loopml.governance.roles import Role
from loopml.server import inference_auth
from loopml.server.access import route_table
from loopml.server.inference import create_inference_app
from loopml.server.inference_auth import PUBLIC_PATHS, InferenceAuth, store_lookup
from loopml.serving.modelset import SingleModel
from loopml.settings import Settings
from server_fixtures import free_port

from .inference_fakes import FakePredictor

LOCAL = "http://localhost"
ROW = {"instances": [{"x": 1.5}]}
OIP = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.5]}]}
WRONG = "lml_0123456789abcdef_" + "x" * 43  # well formed, never issued


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """Projects P and Q; on P a DevOps engineer and a viewer; Q's data scientist; tokens."""
    home = tmp_path_factory.mktemp("serve-auth") / "home"
    client = loopml.Client(Settings(home=home))
    ident = client.stack.identity
    assert ident is not None
    root = ident.create_first_admin("root", "correct horse battery", actor="setup")
    tokens = {"root": ident.create_token(root, "t", actor="setup")[1]}
    projects = {}
    for name in ("p", "q"):
        projects[name] = client.stack.projects.create_project(
            name, business_goal="", description="", owner="", actor="setup"
        ).project_id
    for user, project, role in (
        ("ops", "p", Role.DEVOPS), ("viewer", "p", Role.VIEWER),
        ("q-scientist", "q", Role.DATA_SCIENTIST), ("app", "p", Role.DEVOPS),
    ):  # fmt: skip
        account = ident.create_user(user, None, is_service_account=True, actor="setup")
        ident.grant(account, project, role, actor="setup")
        tokens[user] = ident.create_token(account, "t", actor="setup")[1]
    yield SimpleNamespace(client=client, ident=ident, home=home, tokens=tokens, projects=projects)
    client.close()


def _app(world, *, cache_s: float = 5.0, lookup=None):
    models = SingleModel("m", "1", FakePredictor(lambda frame: frame["x"].to_numpy() * 2))
    auth = InferenceAuth(lookup or store_lookup(world.ident), world.projects["p"], cache_s=cache_s)
    return create_inference_app(models, max_wait_ms=0, auth=auth)


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def http(world) -> Iterator[TestClient]:
    with TestClient(_app(world), base_url=LOCAL) as c:
        yield c


def test_no_wrong_or_malformed_token_is_401_naming_bearer(http):
    for headers in ({}, _bearer(WRONG), {"Authorization": "Basic cm9vdDpwdw=="},
                    {"Authorization": "Bearer"}, _bearer("not-a-token")):  # fmt: skip
        predict = http.post("/predict", json=ROW, headers=headers)
        assert predict.status_code == 401, headers
        assert predict.headers["www-authenticate"] == "Bearer"
        assert predict.json()["error"]["code"] == "unauthenticated"  # the server's own shape
        infer = http.post("/v2/models/m/infer", json=OIP, headers=headers)
        assert infer.status_code == 401 and infer.headers["www-authenticate"] == "Bearer"
        assert list(infer.json()) == ["error"] and isinstance(infer.json()["error"], str)
        assert "token" in infer.json()["error"].lower()


def test_a_token_without_deployment_invoke_on_the_project_is_403(http, world):
    for who in ("viewer", "q-scientist"):  # a role without it; the permission elsewhere only
        refused = http.post("/v2/models/m/infer", json=OIP, headers=_bearer(world.tokens[who]))
        assert refused.status_code == 403, who
        assert refused.json() == {"error": f"{who} may not deployment.invoke in project "
                                           f"{world.projects['p']}"}  # fmt: skip
        assert http.post("/predict", json=ROW, headers=_bearer(world.tokens[who])).json()[
            "error"]["code"] == "permission_denied"  # fmt: skip


def test_a_token_with_it_calls_every_route(http, world):
    for who in ("ops", "root"):  # the role allows it; a platform admin may do everything
        me = _bearer(world.tokens[who])
        assert http.post("/predict", json=ROW, headers=me).json()["predictions"] == [3.0]
        infer = http.post("/v2/models/m/infer", json=OIP, headers=me)
        assert infer.status_code == 200 and infer.json()["outputs"][0]["data"] == [3.0]
        assert http.post("/invocations", json={"dataframe_records": [{"x": 2.0}]},
                         headers=me).json() == {"predictions": [4.0]}  # fmt: skip
        assert http.get("/v2/models/m", headers=me).json()["name"] == "m"
        assert http.get("/v2", headers=me).status_code == 200
        feedback = {"request_id": "r1", "ground_truth": 1}
        assert http.post("/feedback", json=feedback, headers=me).status_code == 202


def test_health_is_public_and_every_other_route_needs_a_token(http):
    for path in sorted(PUBLIC_PATHS):
        assert http.get(path).status_code == 200, path
    paths = {path for path, *_ in route_table(http.app.routes)} - PUBLIC_PATHS
    paths |= {"/predict", "/invocations", "/v2/models/m/infer", "/v2/models/m/versions/1/infer",
              "/nothing/here", "/v2/repository/index"}  # the fast lane's, unknown ones  # fmt: skip
    assert "/v2/models/{name}" in paths and "/feedback" in paths
    for template in sorted(paths):
        path = template.replace("{name}", "m").replace("{version}", "1")
        for method in ("GET", "POST"):
            response = http.request(method, path, json=ROW)
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["x-content-type-options"] == "nosniff"


def test_answers_are_cached_per_token_so_a_hit_never_reads_the_store(world):
    calls: list[str] = []

    def counting(secret: str):
        calls.append(secret)
        return store_lookup(world.ident)(secret)

    with TestClient(_app(world, cache_s=300, lookup=counting), base_url=LOCAL) as http:
        for _ in range(5):
            assert http.post("/predict", json=ROW, headers=_bearer(world.tokens["ops"])).is_success
            viewer = _bearer(world.tokens["viewer"])
            assert http.post("/predict", json=ROW, headers=viewer).status_code == 403
            assert http.post("/predict", json=ROW, headers=_bearer(WRONG)).status_code == 401
    # one look-up per good token; an unknown token is asked each time (nothing to remember)
    assert sorted(calls) == sorted([world.tokens["ops"], world.tokens["viewer"], *[WRONG] * 5])


def test_a_revoked_token_with_no_cache_is_refused_at_once(world):
    ident = world.ident
    account = ident.get_user_by_name("app")
    token, secret = ident.create_token(account, "short-lived", actor="setup")
    with TestClient(_app(world, cache_s=0), base_url=LOCAL) as http:
        assert http.post("/predict", json=ROW, headers=_bearer(secret)).status_code == 200
        ident.revoke_token(token.token_id, actor="setup")
        assert http.post("/predict", json=ROW, headers=_bearer(secret)).status_code == 401


def test_the_cache_is_bounded(world):
    ada = world.ident.principal(world.ident.get_user_by_name("ops"))
    auth = InferenceAuth(lambda _secret: ada, world.projects["p"], max_entries=3)

    async def call(i: int) -> None:
        header = f"Bearer lml_0123456789abcdef_{'y' * 42}{i}".encode()
        assert await auth.refusal({"headers": [(b"authorization", header)]}) is None

    async def main() -> None:
        for i in range(10):
            await call(i)

    asyncio.run(main())
    assert len(auth._cache) == 3


def test_a_store_that_refuses_or_is_down_is_401_or_503_never_a_crash(world):
    def refusing(_secret: str):
        raise PermissionDenied("invalid, expired or revoked API token")

    def down(_secret: str):
        raise Unavailable("the database is locked; retry")

    me = _bearer(world.tokens["ops"])
    with TestClient(_app(world, lookup=refusing), base_url=LOCAL) as http:
        assert http.post("/predict", json=ROW, headers=me).status_code == 401
    with TestClient(_app(world, lookup=down), base_url=LOCAL) as http:
        for response in (http.post("/predict", json=ROW, headers=me),
                         http.get("/v2/models/m", headers=me)):  # fmt: skip
            assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert doctest.testmod(inference_auth).failed == 0


# -- a live `loopml serve --auth` ---------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(world) -> str:
    """Project P's model ``guarded`` (version 1, a LogisticRegression over ``x``)."""
    from sklearn.linear_model import LogisticRegression

    client = world.client
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.random(50)})
    model = LogisticRegression().fit(frame, (frame["x"] > 0.5).astype(int))
    exp = client.create_experiment("served", project="p")
    run = client.create_run(exp.experiment_id)
    info = client.log_model(run.run_id, model, "model", input_example=frame.head())
    client.register_model(info.source, "guarded")
    client.registry.set_alias("guarded", "production", 1, actor="setup")
    return run.run_id


def test_the_checked_project_is_the_served_models_or_deployments(world, guarded):
    from loopml.server.inference import (
        InferenceServerSpec,
        build_deployment,
        model_set_from_ref,
        served_project,
    )
    from loopml.serving.deployments import DeploymentSpec, Target

    client, p = world.client, world.projects["p"]
    for ref in ("models:/guarded/1", "models:/guarded@production", f"runs:/{guarded}/model"):
        spec = InferenceServerSpec(ref)
        assert served_project(client, spec, model_set_from_ref(client, ref)) == p, ref
    deployments = client.stack.deployments
    assert deployments is not None
    target = Target("guarded", version=1, weight=1.0)
    deployments.create_deployment("gd", DeploymentSpec(targets=(target,)), actor="setup")
    spec = InferenceServerSpec("gd", build=build_deployment)
    models = build_deployment(client, spec)
    try:
        assert served_project(client, spec, models) == p
    finally:
        models.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def live(world, guarded) -> Iterator[str]:
    ref = "models:/guarded/1"
    port = free_port()
    env = {**os.environ, "LOOPML_HOME": str(world.home), "LOOPML_SERVE_AUTH_CACHE_S": "0.5",
           "LOOPML_SERVE_CPUS_PER_WORKER": "0"}  # fmt: skip
    env.pop("LOOPML_URI", None)
    env.pop("LOOPML_ARTIFACTS", None)
    code = "from loopml.cli.main import main; main()"
    with subprocess.Popen(
        [sys.executable, "-c", code, "serve", ref, "--auth", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as proc:  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"loopml serve did not start: {proc.stdout.read()}")
            time.sleep(0.1)
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_live_server_takes_the_platforms_tokens(live, world):
    url, tokens = live, world.tokens
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [0.9]}]}
    infer = f"{url}/v2/models/guarded/infer"
    for path in ("/v2/health/live", "/v2/health/ready", "/ping", "/metrics"):
        assert httpx.get(url + path).status_code == 200, path  # public
    assert httpx.get(f"{url}/v2/models/guarded").status_code == 401  # metadata is not
    assert httpx.post(infer, json=body).status_code == 401
    wrong = httpx.post(infer, json=body, headers=_bearer(WRONG))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert isinstance(wrong.json()["error"], str)
    assert httpx.post(infer, json=body, headers=_bearer(tokens["viewer"])).status_code == 403
    answer = httpx.post(infer, json=body, headers=_bearer(tokens["ops"]))
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [1]
    assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_live_server_refuses_a_revoked_token_once_its_cache_entry_expires(live, world):
    ident = world.ident
    token, secret = ident.create_token(ident.get_user_by_name("app"), "revoke-me", actor="setup")
    body = {"instances": [{"x": 0.2}]}
    assert httpx.post(f"{live}/predict", json=body, headers=_bearer(secret)).status_code == 200
    ident.revoke_token(token.token_id, actor="setup")
    deadline = time.monotonic() + 30  # the server's cache holds answers for 0.5 s
    while (status := httpx.post(f"{live}/predict", json=body,
                                headers=_bearer(secret)).status_code) == 200:  # fmt: skip
        assert time.monotonic() < deadline, "the revoked token kept working"
        time.sleep(0.1)
    assert status == 401


def test_an_oip_client_sends_the_token_and_reads_the_refusals(live, world):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    triton = httpclient.InferenceServerClient(live.removeprefix("http://"))
    try:
        x = httpclient.InferInput("x", [2], "FP64")
        x.set_data_from_numpy(np.array([0.1, 0.9]))  # binary, the client's default
        assert triton.is_server_live() and triton.is_server_ready()  # public probes
        me = _bearer(world.tokens["ops"])
        assert triton.get_model_metadata("guarded", headers=me)["name"] == "guarded"
        result = triton.infer("guarded", [x], headers=me)
        assert result.as_numpy("predict").tolist() == [0, 1]
        viewer = _bearer(world.tokens["viewer"])
        refusals = [({}, "authentication required"), (_bearer(WRONG), "token"),
                    (viewer, "deployment.invoke")]  # fmt: skip
        for headers, message in refusals:
            with pytest.raises(InferenceServerException, match=message):
                triton.infer("guarded", [x], headers=headers)
    finally:
        triton.close()

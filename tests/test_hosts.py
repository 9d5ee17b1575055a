"""The Host allow-list on both servers: DNS rebinding gets 421 before any route runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from loopml.server.app import create_app
from loopml.server.hosts import AllowedHosts, HostGuard, host_name
from loopml.server.inference import create_inference_app
from loopml.serving.modelset import SingleModel
from loopml.settings import Settings
from loopml.stack import Stack
from server_fixtures import free_port, uvicorn_server
from serving.inference_fakes import FakePredictor, Recorder

EVIL = {"Host": "evil.example"}
ACCEPTED = ["localhost:5100", "127.0.0.1", "[::1]:5101", "ml.example.com", "ML.Example.COM:8443"]
REFUSED = ["evil.example", "evil.example:5100", "127.0.0.1.evil.example", "localhost.evil",
           "ml.example.com.evil.example", "[::2]", "[::1", "localhost:http", "", "a b"]  # fmt: skip


@pytest.fixture
def platform(tmp_path):
    # explicit names: the tests' environment also allows "testserver" (see conftest.py)
    stack = Stack.from_settings(Settings(home=tmp_path, allowed_hosts=("ml.example.com",)))
    with TestClient(create_app(stack), base_url="http://localhost:5100") as http:
        yield stack, http
    stack.close()


def test_the_platform_refuses_a_foreign_host_before_any_route(platform):
    stack, http = platform
    refused = http.get("/api/v1/projects", headers=EVIL)
    assert refused.status_code == 421
    error = refused.json()["error"]
    assert error["code"] == "misdirected_request" and "evil.example" in error["message"]
    assert "LOOPML_ALLOWED_HOSTS" in error["message"]
    assert refused.headers["x-content-type-options"] == "nosniff"  # still a page of ours
    before = {e.name for e in stack.tracking.list_experiments()}
    made = http.post("/api/v1/experiments", json={"name": "rebound"}, headers=EVIL)
    assert made.status_code == 421
    assert {e.name for e in stack.tracking.list_experiments()} == before
    for path in ("/", "/login", "/healthz", "/metrics", "/api/v1/openapi.json"):
        assert http.get(path, headers=EVIL).status_code == 421, path


def test_the_platform_answers_loopback_names_and_configured_ones(platform):
    stack, http = platform
    for host in ACCEPTED:
        assert http.get("/api/v1/projects", headers={"Host": host}).status_code == 200, host
    made = http.post("/api/v1/experiments", json={"name": "local"}, headers={"Host": "[::1]"})
    assert made.status_code == 201
    assert "local" in {e.name for e in stack.tracking.list_experiments()}
    for host in REFUSED:
        assert http.get("/api/v1/projects", headers={"Host": host}).status_code == 421, host


def test_the_platform_answers_to_its_bind_address_and_nothing_by_default(tmp_path):
    stack = Stack.from_settings(Settings(home=tmp_path, host="10.1.2.3", allowed_hosts=()))
    http = TestClient(create_app(stack), base_url="http://localhost")
    assert http.get("/healthz", headers={"Host": "10.1.2.3:5100"}).status_code == 200
    assert http.get("/healthz", headers={"Host": "testserver"}).status_code == 421
    explicit = TestClient(create_app(stack, allowed_hosts=["testserver"]))
    assert explicit.get("/healthz").status_code == 200
    stack.close()


@pytest.fixture
def inference():
    recorder = Recorder()
    model = SingleModel("m", "1", FakePredictor(recorder))
    app = create_inference_app(model, allowed_hosts=("ml.example.com",), max_wait_ms=0)
    with TestClient(app, base_url="http://localhost:5101") as http:
        yield recorder, http


def test_the_inference_server_refuses_a_foreign_host_before_the_fast_lane(inference):
    recorder, http = inference
    body = {"columns": {"x": [1.0, 2.0]}}
    refused = http.post("/predict", json=body, headers=EVIL)
    assert refused.status_code == 421
    assert refused.json()["error"]["code"] == "misdirected_request"
    infer = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
    oip = http.post("/v2/models/m/infer", json=infer, headers=EVIL)
    assert oip.status_code == 421 and "evil.example" in oip.json()["error"]  # OIP's error shape
    assert recorder.batches == []  # no prediction ran
    assert oip.headers["x-content-type-options"] == "nosniff"
    ready = http.get("/v2/health/ready", headers=EVIL)
    assert ready.status_code == 421 and isinstance(ready.json()["error"], str)
    for path in ("/metrics", "/v2/models/m", "/ping"):
        assert http.get(path, headers=EVIL).status_code == 421, path


def test_the_inference_server_answers_loopback_names_and_configured_ones(inference):
    recorder, http = inference
    for host in ACCEPTED:
        headers = {"Host": host}
        assert http.get("/v2/health/ready", headers=headers).status_code == 200, host
        answer = http.post("/predict", json={"columns": {"x": [1.0]}}, headers=headers)
        assert answer.status_code == 200 and answer.json()["predictions"] == [2.0], host
    assert len(recorder.batches) == len(ACCEPTED)
    for host in REFUSED:
        assert http.get("/v2/health/ready", headers={"Host": host}).status_code == 421, host


def test_a_live_server_refuses_a_rebound_name(tmp_path):
    """Through uvicorn and real sockets: the browser's view of a rebinding attack."""
    stack = Stack.from_settings(Settings(home=tmp_path, allowed_hosts=()))
    with uvicorn_server(create_app(stack)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/api/v1/projects").status_code == 200  # Host: 127.0.0.1:<port>
        assert http.get("/api/v1/projects", headers=EVIL).status_code == 421
        made = http.post("/api/v1/experiments", json={"name": "x"}, headers=EVIL)
        assert made.status_code == 421
    model = SingleModel("m", "1", FakePredictor(Recorder()))
    with uvicorn_server(create_inference_app(model)) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v2/health/ready", headers=EVIL).status_code == 421
        predicted = http.post("/predict", json={"columns": {"x": [1.0]}}, headers=EVIL)
        assert predicted.status_code == 421
    stack.close()


def test_a_request_without_host_is_refused():
    asyncio.run(_without_host())


async def _without_host() -> None:
    reached = []

    async def app(scope, receive, send):
        reached.append(scope)

    sent = []

    async def send(message):
        sent.append(message)

    guard = HostGuard(app, hosts=AllowedHosts.of("127.0.0.1"))
    await guard({"type": "http", "path": "/", "headers": []}, None, send)
    assert sent[0]["status"] == 421 and b"Host header is required" in sent[1]["body"]
    await guard({"type": "lifespan"}, None, send)  # not a request: passed on
    assert reached == [{"type": "lifespan"}]


@pytest.mark.parametrize(
    ("value", "name"),
    [("LocalHost.:5100", "localhost"), ("[::1]:80", "[::1]"), ("::1", "[::1]"),
     ("[0:0::1]", "[0:0::1]"), ("10.0.0.5:1", "10.0.0.5"), ("x:", None), ("[zz]", None),
     ("a/b", None), ("a@b", None), ("é.example", None)],
)  # fmt: skip
def test_host_names_are_normalised(value, name):
    assert host_name(value) == name


def test_the_setting_takes_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("LOOPML_ALLOWED_HOSTS", " ML.example.com, 10.0.0.5 ,,")
    assert Settings().allowed_hosts == ("ml.example.com", "10.0.0.5")
    for bad in ("https://ml.example.com", "ml.example.com:443", "a b"):
        monkeypatch.setenv("LOOPML_ALLOWED_HOSTS", bad)
        with pytest.raises(ValueError, match="allowed_hosts"):
            Settings()


def test_doctests():
    import doctest

    from loopml.server import asgi_headers, hosts

    assert doctest.testmod(hosts).failed == 0
    assert doctest.testmod(asgi_headers).failed == 0


def _start(command: list[str], env: dict[str, str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, f"{command[1]} exited: {proc.communicate()[0]}"
        assert time.monotonic() < deadline, f"{command[1]} did not start"
        try:
            if httpx.get(url).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def test_the_cli_servers_take_their_names_from_the_setting(tmp_path):
    """`loopml server` and `loopml serve` as a user starts them, LOOPML_ALLOWED_HOSTS set."""
    from sklearn.linear_model import LogisticRegression

    import loopml

    home = tmp_path / "home"
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0]})
    with loopml.Client(Settings(home=home)) as client:
        run = client.create_run(client.create_experiment("hosts").experiment_id)
        model = LogisticRegression().fit(frame, [0, 0, 1, 1])
        info = client.log_model(run.run_id, model, "model", input_example=frame.head(1))
    env = {**os.environ, "LOOPML_HOME": str(home), "LOOPML_ALLOWED_HOSTS": "ml.example.com"}
    cli = os.path.join(os.path.dirname(sys.executable), "loopml")
    platform_port, serve_port = free_port(), free_port()
    platform = f"http://127.0.0.1:{platform_port}"
    serving = f"http://127.0.0.1:{serve_port}"
    procs = [
        _start([cli, "server", "--port", str(platform_port)], env, f"{platform}/healthz"),
        _start([cli, "serve", info.source, "--port", str(serve_port), "--no-log-predictions"],
               env, f"{serving}/v2/health/ready"),
    ]  # fmt: skip
    try:
        for base, path in ((platform, "/api/v1/projects"), (serving, "/v2/health/ready")):
            assert httpx.get(base + path, headers={"Host": "ml.example.com"}).status_code == 200
            assert httpx.get(base + path, headers=EVIL).status_code == 421
            assert httpx.get(base + path, headers={"Host": "testserver"}).status_code == 421
        body = {"records": [{"x": 2.5}]}
        assert httpx.post(f"{serving}/predict", json=body, headers=EVIL).status_code == 421
        assert httpx.post(f"{serving}/predict", json=body).status_code == 200
    finally:
        for proc in procs:
            proc.terminate()
            proc.communicate(timeout=30)

"""The platform server: route declarations, JSON errors, limits, headers, metrics, traversal,
retries without double writes, and many concurrent writers."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

import loopml
from loopml.errors import InvalidArgument
from loopml.server.access import route_table
from loopml.server.app import create_app
from loopml.server.main import check_bind
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.tracking.entities import Metric
from server_fixtures import uvicorn_server


@pytest.fixture
def stack(tmp_path):
    s = Stack.from_settings(Settings(home=tmp_path / "srv", max_request_bytes=64 * 1024))
    yield s
    s.close()


@pytest.fixture
def app(stack):
    return create_app(stack)


@pytest.fixture
def http(app):
    with TestClient(app, base_url="http://testserver", raise_server_exceptions=False) as c:
        yield c


def _run(http) -> dict:
    exp = http.post("/api/v1/experiments", json={"name": "e"}).json()
    return http.post("/api/v1/runs", json={"experiment_id": exp["experiment_id"]}).json()


def test_every_route_is_declared_public_or_protected(app):
    table = route_table(app.routes)
    undeclared = [path for path, _, access, _ in table if access is None]
    unguarded = [path for path, _, access, guarded in table if access != "public" and not guarded]
    assert undeclared == [] and unguarded == []
    declared = {access for _, _, access, _ in table}
    assert {"public", "run.write", "run.read", "artifact.write", "audit.read"} <= declared
    assert len(table) > 30


def test_health_openapi_and_security_headers(http):
    health = http.get("/healthz")
    assert health.json() == {"status": "ok", "version": loopml.__version__}
    for name in ("x-content-type-options", "x-frame-options", "content-security-policy"):
        assert name in health.headers
    spec = http.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs/{run_id}/batch" in spec["paths"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/api/v1/runs/" + "0" * 32, None, 404, "not_found"),
        ("POST", "/api/v1/experiments", {"name": ""}, 400, "invalid_argument"),
        ("POST", "/api/v1/experiments", {"name": "x", "evil": 1}, 400, "invalid_argument"),
        ("POST", "/api/v1/runs/search", {"experiment_ids": ["0"], "filter": "metrics.a >"},
         400, "invalid_argument"),
        ("POST", "/api/v1/runs/search", {"experiment_ids": ["0"], "max_results": 0},
         400, "invalid_argument"),
        ("DELETE", "/api/v1/experiments/0", None, 400, "invalid_argument"),
        ("PUT", "/api/v1/experiments", None, 405, "method_not_allowed"),
        ("GET", "/api/v1/nothing-here", None, 404, "not_found"),
    ],
)  # fmt: skip
def test_client_mistakes_are_json_4xx(http, method, path, body, status, code):
    response = http.request(method, path, json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def test_malformed_json_is_400_not_500(http):
    response = http.post(
        "/api/v1/experiments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_argument"


def test_metrics_arrive_as_records_or_as_columns(http):
    run_id = _run(http)["run_id"]
    records = [{"key": "m", "value": 1.5, "timestamp": 10, "step": 0},
               {"key": "m", "value": "NaN", "timestamp": 11, "step": 1}]  # fmt: skip
    columns = {"key": ["m", "m", "m"], "value": [None, "-Infinity", 4.0],
               "timestamp": [12, 13, 14], "step": [2, 3, 4]}  # fmt: skip
    assert http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": records}).status_code == 200
    assert http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": columns}).status_code == 200
    no_steps = {"key": ["n"], "value": [7.0], "timestamp": [15]}
    assert http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": no_steps}).status_code == 200
    history = http.get(f"/api/v1/runs/{run_id}/metrics/m").json()
    assert [(h["step"], h["value"]) for h in history] == [
        (0, 1.5), (1, "NaN"), (2, "NaN"), (3, "-Infinity"), (4, 4.0)
    ]  # fmt: skip
    assert [h["step"] for h in http.get(f"/api/v1/runs/{run_id}/metrics/n").json()] == [0]
    latest = http.get(f"/api/v1/runs/{run_id}").json()["metrics"]
    assert latest["m"] == 4.0 and latest["n"] == 7.0


@pytest.mark.parametrize(
    ("metrics", "where"),
    [
        ({"key": ["a", "b"], "value": [1.0], "timestamp": [1, 2]}, "body.metrics.columns"),
        ({"key": ["a"], "value": ["x"], "timestamp": [1]}, "body.metrics.columns.value.0"),
        ({"key": [""], "value": [1.0], "timestamp": [1]}, "body.metrics.columns.key.0"),
        ({"key": ["a"], "value": [1.0], "timestamp": [2**63]}, "body.metrics.columns.timestamp.0"),
        ({"key": ["a"], "value": [1.0]}, "body.metrics.columns.timestamp"),
        ([{"key": "a", "value": "x", "timestamp": 1}], "body.metrics.records.0.value"),
        (7, "body.metrics.records"),
    ],
)
def test_bad_metrics_name_the_field_and_write_nothing(http, metrics, where):
    run_id = _run(http)["run_id"]
    response = http.post(f"/api/v1/runs/{run_id}/batch", json={"metrics": metrics})
    assert response.status_code == 400
    wheres = [d["where"] for d in response.json()["error"]["details"]["problems"]]
    assert wheres == [where]
    assert http.get(f"/api/v1/runs/{run_id}").json()["metrics"] == {}


def test_search_error_points_at_the_position(http):
    body = {"experiment_ids": ["0"], "filter": "metrics.acc > 0.5 and"}
    error = http.post("/api/v1/runs/search", json=body).json()["error"]
    assert error["details"]["position"] == 22


def test_oversized_bodies_get_413_declared_or_streamed(http):
    big = b"x" * (65 * 1024)
    declared = http.post(
        "/api/v1/experiments", content=big, headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"

    def chunks():
        for _ in range(70):
            yield b"x" * 1024

    streamed = http.post(
        "/api/v1/experiments", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert http.get("/healthz").status_code == 200


def test_metrics_count_requests_by_route_template(http):
    run = _run(http)
    http.get(f"/api/v1/runs/{run['run_id']}")
    text = http.get("/metrics").text
    assert 'route="/api/v1/runs/{run_id}"' in text and run["run_id"] not in text


def test_invented_http_methods_cannot_grow_the_metrics_without_end(http):
    """An attacker sending a new method name per request must not add a label value each."""
    for i in range(40):
        http.request(f"BREW{i}", "/healthz")
    text = http.get("/metrics").text
    assert "BREW" not in text and 'method="OTHER"' in text


@pytest.mark.parametrize(
    "evil",
    ["..%2f..%2fescape.txt", "%2e%2e/%2e%2e/escape.txt", "%252e%252e%252fescape.txt",
     "0/..%2f..%2fescape.txt", "0/%252e%252e%252f%252e%252e%252fescape.txt", "%2fetc%2fpasswd",
     "C:%2fescape.txt", "C:%5cescape.txt", "0/..%5c..%5cescape.txt", "0/%00x"],
)  # fmt: skip
def test_artifact_routes_refuse_traversal(http, stack, tmp_path, evil):
    root = tmp_path / "srv" / "artifacts"
    outside = tmp_path / "srv" / "escape.txt"
    outside.write_text("secret")
    for method in ("GET", "PUT", "DELETE"):
        response = http.request(method, f"/api/v1/artifacts/{evil}", content=b"pwned")
        assert 400 <= response.status_code < 500, (method, evil, response.status_code)
    listing = http.get("/api/v1/artifact-list", params={"prefix": evil.replace("%2f", "/")})
    assert 400 <= listing.status_code < 500
    assert outside.read_text() == "secret"
    assert not (tmp_path / "escape.txt").exists()
    assert not any(p.name == "escape.txt" for p in root.rglob("*")) if root.exists() else True


def test_artifact_upload_checks_the_digest_and_resumes_downloads(http):
    import hashlib

    run = _run(http)
    path = f"/api/v1/artifacts/{run['artifact_path']}/model.bin"
    data = bytes(range(256)) * 1000
    bad = http.put(path, content=data, headers={"X-Content-SHA256": "0" * 64})
    assert bad.status_code == 409 and bad.json()["error"]["code"] == "integrity"
    good = http.put(
        path, content=data, headers={"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    )
    assert good.status_code == 200 and good.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert http.get(path).content == data
    tail = http.get(path, headers={"Range": "bytes=1000-"})
    assert tail.status_code == 206 and tail.content == data[1000:]


class _LosesFirstBatchAnswer(httpx.BaseTransport):
    """Delivers the first batch to the server, then drops the connection before the answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.dropped = 0
        self.unavailable = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/runs/search") and self.unavailable < 2:
            self.unavailable += 1
            return httpx.Response(503, json={"error": {"code": "unavailable", "message": "busy",
                                                       "details": {}}})  # fmt: skip
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/batch") and self.dropped == 0:
            self.dropped += 1
            response.read()
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_retries_after_a_lost_answer_do_not_write_twice(app):
    inner = TestClient(app, base_url="http://testserver")
    flaky = _LosesFirstBatchAnswer(inner._transport)
    client_http = httpx.Client(transport=flaky, base_url="http://testserver")
    remote = Stack.remote(Settings(uri="http://testserver"), http_client=client_http)
    exp = remote.tracking.create_experiment("retry", actor="x")
    run = remote.tracking.create_run(exp.experiment_id, run_name=None, user="u", start_time=1,
                                     actor="x")  # fmt: skip
    batch = [Metric("m", float(i), 1, i) for i in range(500)]
    remote.tracking.log_batch(run.run_id, metrics=batch, actor="x")
    assert flaky.dropped == 1
    assert len(remote.tracking.get_metric_history(run.run_id, "m")) == 500
    page = remote.tracking.search_runs([exp.experiment_id])  # two 503s, then an answer
    assert flaky.unavailable == 2 and len(page.items) == 1
    remote.close()
    inner.close()


def test_bind_beyond_loopback_needs_auth():
    check_bind("127.0.0.1", auth=False)
    check_bind("::1", auth=False)
    check_bind("0.0.0.0", auth=True)
    for host in ("0.0.0.0", "10.0.0.5", "::"):
        with pytest.raises(InvalidArgument, match="without authentication"):
            check_bind(host, auth=False)


@pytest.mark.slow
def test_64_concurrent_clients_log_batches_exactly_once(tmp_path):
    server = Stack.from_settings(Settings(home=tmp_path / "srv"))
    clients, batches, size = 64, 20, 500
    with uvicorn_server(create_app(server)) as url:
        setup = Stack.from_settings(Settings(uri=url))
        exp = setup.tracking.create_experiment("load", actor="x")
        run_ids = [
            setup.tracking.create_run(exp.experiment_id, run_name=f"c{i}", user="u",
                                      start_time=1, actor="x").run_id
            for i in range(clients)
        ]  # fmt: skip
        errors: list[str] = []
        barrier = threading.Barrier(clients)

        def client(i: int) -> None:
            remote = Stack.from_settings(Settings(uri=url))
            try:
                barrier.wait(30)
                for b in range(batches):
                    now = int(time.time() * 1000)
                    metrics = [Metric("v", float(b * size + j), now, b * size + j)
                               for j in range(size)]  # fmt: skip
                    remote.tracking.log_batch(run_ids[i], metrics=metrics, actor="x")
            except Exception as e:  # collected and asserted below
                errors.append(f"client {i}: {e!r}")
            finally:
                remote.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert errors == []
        for run_id in run_ids:
            steps = [m.step for m in setup.tracking.get_metric_history(run_id, "v")]
            assert steps == list(range(batches * size))
        setup.close()
    server.close()


def test_every_connection_gets_tcp_nodelay_even_from_a_protocol_0_listener():
    """uvicorn's multi-worker socket is protocol 0, so asyncio skips TCP_NODELAY: we set it."""
    import socket

    from loopml.server.http_protocol import HttpProtocol, tuned_protocol

    class Base:
        def connection_made(self, transport):
            self.transport = transport

    class Transport:
        def __init__(self, sock):
            self.sock = sock

        def get_extra_info(self, name):
            return self.sock if name == "socket" else None

    listener = socket.socket(socket.AF_INET)  # protocol 0, as uvicorn binds for workers
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with listener, socket.create_connection(listener.getsockname()) as _client:
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            proto = tuned_protocol(Base)()
            asyncio.run(_connect(proto, Transport(accepted)))
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert proto.transport.get_extra_info("socket") is accepted
    assert HttpProtocol.__module__ == "loopml.server.http_protocol"  # importable by workers


async def _connect(proto, transport):
    proto.connection_made(transport)

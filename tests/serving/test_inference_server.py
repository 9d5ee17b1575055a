"""The inference server over HTTP (in process): OIP V2, /predict, MLflow's /invocations,
feedback, events, shadows, metrics, and every client mistake answered 4xx, never 500."""

from __future__ import annotations

import doctest
import pickle
import time
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import orjson
import pandas as pd
import pytest
from fastapi.testclient import TestClient

import loopml
from loopml.models.signature import ColumnSpec, Signature
from loopml.server import inference
from loopml.server.inference import (
    InferenceServerSpec,
    create_inference_app,
    model_set_from_ref,
)
from loopml.serving.modelset import ServedModel, SingleModel
from loopml.serving.protocol import FeedbackEvent, PredictionEvent
from loopml.settings import Settings

from .inference_fakes import FakePredictor, Recorder, TextLength, crash

LOCAL = "http://localhost"  # what the test clients call the server (a Host it answers to)


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[SimpleNamespace]:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("serve") / "home"
    client = loopml.Client(Settings(home=home))
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"amount": rng.random(200) * 100, "age": rng.integers(18, 90, 200)})
    labels = ((frame["amount"] > 50) ^ (frame["age"] > 60)).astype(int).to_numpy()
    run = client.create_run(client.create_experiment("serving").experiment_id)
    columns = LogisticRegression(max_iter=500).fit(frame, labels)
    info = client.log_model(run.run_id, columns, "model", input_example=frame.head())
    client.register_model(info.source, "fraud")
    client.registry.set_alias("fraud", "champion", 1, actor=client.actor)
    x32 = frame.to_numpy(dtype=np.float32)
    tensor = LogisticRegression(max_iter=500).fit(x32, labels)
    tinfo = client.log_model(run.run_id, tensor, "tensor", input_example=x32[:5])
    texts = pd.DataFrame({"text": ["ab", "cde"]})
    text_info = client.log_model(run.run_id, TextLength(), "text", input_example=texts)
    yield SimpleNamespace(
        client=client, home=home, frame=frame, run_id=run.run_id, sklearn=columns,
        columns=client.load_model(info.source), tensor=client.load_model(tinfo.source),
        tensor_sklearn=tensor, text=client.load_model(text_info.source, trust=True),
    )  # fmt: skip
    client.close()


@pytest.fixture
def http(platform) -> Iterator[TestClient]:
    app = create_inference_app(SingleModel("fraud", "1", platform.columns), max_wait_ms=0)
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def _expected(platform, frame: pd.DataFrame) -> list[int]:
    return platform.sklearn.predict(frame).tolist()


def _oip_columns(frame: pd.DataFrame, **extra) -> dict:
    n = len(frame)
    return {
        "inputs": [
            {"name": "amount", "shape": [n], "datatype": "FP64", "data": frame["amount"].tolist()},
            {"name": "age", "shape": [n, 1], "datatype": "INT64",
             "data": [[v] for v in frame["age"].tolist()]},
        ],
        **extra,
    }  # fmt: skip


# -- Open Inference Protocol V2 ----------------------------------------------------------------


def test_oip_health_and_model_metadata_come_from_the_signature(http):
    assert http.get("/v2/health/live").json() == {"live": True}
    ready = http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    assert http.get("/v2").json()["name"] == "loopml"
    meta = http.get("/v2/models/fraud").json()
    assert meta == {
        "name": "fraud", "versions": ["1"], "platform": "loopml-sklearn",
        "inputs": [{"name": "amount", "datatype": "FP64", "shape": [-1]},
                   {"name": "age", "datatype": "INT64", "shape": [-1]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    }  # fmt: skip
    assert http.get("/v2/models/fraud/versions/1").json() == meta
    assert http.get("/v2/models/fraud/ready").json() == {"name": "fraud", "ready": True}
    assert http.get("/v2/models/fraud/versions/1/ready").status_code == 200
    for path in ("/v2/models/nope", "/v2/models/fraud/versions/2", "/v2/models/nope/ready"):
        missing = http.get(path)  # the protocol's error shape: {"error": "<message>"}
        assert missing.status_code == 404 and missing.json() == {"error": missing.json()["error"]}
        assert "no model" in missing.json()["error"]
    unknown = http.get("/v2/nothing/here")  # the router's 404 and 405, in the same shape
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)
    wrong_method = http.get("/v2/repository/index")
    assert wrong_method.status_code == 405 and isinstance(wrong_method.json()["error"], str)
    assert http.get("/ping/nothing").json()["error"]["code"] == "not_found"  # not /v2: ours


def test_oip_infer_with_fp64_and_int64_columns_echoes_the_id(http, platform):
    rows = platform.frame.head(7)
    for path in ("/v2/models/fraud/infer", "/v2/models/fraud/versions/1/infer"):
        response = http.post(path, json=_oip_columns(rows, id="req-42"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_name"] == "fraud" and body["model_version"] == "1"
        assert body["id"] == "req-42"
        [out] = body["outputs"]
        assert out["name"] == "predict" and out["shape"] == [7] and out["datatype"] == "INT64"
        assert out["data"] == _expected(platform, rows)
    wrong = http.post("/v2/models/fraud/versions/9/infer", json=_oip_columns(rows))
    assert wrong.status_code == 404


def test_oip_infer_with_an_fp32_tensor(platform):
    app = create_inference_app(SingleModel("t", "3", platform.tensor))
    x = platform.frame.head(3).to_numpy(dtype=np.float32)
    with TestClient(app, base_url=LOCAL) as http:
        meta = http.get("/v2/models/t").json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}]
        request = {"inputs": [{"name": "input-0", "shape": [3, 2], "datatype": "FP32",
                               "data": x.ravel().tolist()}]}  # fmt: skip
        response = http.post("/v2/models/t/infer", json=request)
        assert response.status_code == 200, response.text
        [out] = response.json()["outputs"]
        assert out["shape"] == [3] and out["datatype"] == "INT64"
        assert out["data"] == platform.tensor_sklearn.predict(x).tolist()
        nested = {"inputs": [{**request["inputs"][0], "data": x.tolist()}]}
        assert http.post("/v2/models/t/infer", json=nested).json()["outputs"][0] == out
        wide = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
        refused = http.post("/v2/models/t/infer", json=wide)
        assert refused.status_code == 400 and "shape" in refused.json()["error"]


def test_oip_bytes_inputs_reach_the_model_as_strings(platform):
    app = create_inference_app(SingleModel("text", "1", platform.text))
    with TestClient(app, base_url=LOCAL) as http:
        assert http.get("/v2/models/text").json()["inputs"] == [
            {"name": "text", "datatype": "BYTES", "shape": [-1]}
        ]
        request = {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                               "data": ["a", "héllo", ""]}]}  # fmt: skip
        response = http.post("/v2/models/text/infer", json=request)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == response.headers["x-request-id"]
        assert response.json()["outputs"] == [
            {"name": "predict", "shape": [3], "datatype": "INT64", "data": [1, 5, 0]}
        ]
        numbers = {"inputs": [{**request["inputs"][0], "data": [1, 2, 3]}]}
        assert http.post("/v2/models/text/infer", json=numbers).status_code == 400


# -- /predict and MLflow's /invocations ----------------------------------------------------------


def test_predict_takes_records_and_columns(http, platform):
    rows = platform.frame.head(4)
    expected = _expected(platform, rows)
    records = rows.to_dict(orient="records")
    columns = {k: v.tolist() for k, v in rows.items()}
    for body in (records, {"records": records}, {"columns": columns}):
        response = http.post("/predict", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected, "model": "fraud", "version": "1"}


def test_invocations_speak_the_mlflow_scoring_format(http, platform):
    rows = platform.frame.head(5)
    expected = {"predictions": _expected(platform, rows)}
    split = orjson.loads(rows.to_json(orient="split"))
    bodies = [
        {"dataframe_split": split},
        {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}},
        {"dataframe_records": rows.to_dict(orient="records")},
        {"instances": rows.to_dict(orient="records")},
        {"inputs": {k: v.tolist() for k, v in rows.items()}},
        {"inputs": {k: v.tolist() for k, v in rows.items()}, "params": {}},
    ]
    for body in bodies:
        response = http.post("/invocations", json=body)
        assert response.status_code == 200, (body, response.text)
        assert response.json() == expected
    csv = http.post("/invocations", content=rows.to_csv(index=False),
                    headers={"content-type": "text/csv; charset=utf-8"})  # fmt: skip
    assert csv.status_code == 200 and csv.json() == expected


def test_invocations_with_a_tensor_model(platform):
    x = platform.frame.head(3).to_numpy(dtype=np.float32)
    expected = {"predictions": platform.tensor_sklearn.predict(x).tolist()}
    app = create_inference_app(SingleModel("t", "1", platform.tensor))
    with TestClient(app, base_url=LOCAL) as http:
        for body in ({"inputs": x.tolist()}, {"instances": x.tolist()}):
            assert http.post("/invocations", json=body).json() == expected
        assert (
            http.post("/predict", json={"instances": x.tolist()}).json()["predictions"]
            == (expected["predictions"])
        )


# -- client mistakes ---------------------------------------------------------------------------

DEEP = b"[" * 1000 + b"1" + b"]" * 1000
JSON = {"content-type": "application/json"}
MISTAKES = [
    ("/predict", b'{"records": [', JSON, 400, "malformed JSON"),
    ("/predict", b"[" * 10_000, JSON, 400, "malformed JSON"),
    ("/predict", b'{"columns": {"amount": ' + DEEP + b', "age": [1]}}', JSON, 400, "too deeply"),
    ("/predict", b'[{"amount": 1.0, "age": ' + DEEP + b"}]", JSON, 400, "too deeply"),
    ("/predict", b'[{"amount": "lots", "age": 3}]', JSON, 400, "'amount'"),
    ("/predict", b'[{"amount": 1.0}]', JSON, 400, "missing column 'age'"),
    ("/predict", b'[{"amount": 1.0, "age": null}]', JSON, 400, "NaN not allowed"),
    ("/predict", b'[{"amount": 1.0, "age": 2.5}]', JSON, 400, "'age'"),
    ("/predict", b'[{"amount": 1.0, "age": 2, "extra": 1}]', JSON, 400, "'extra'"),
    ("/predict", b'[{"amount": NaN, "age": 2}]', JSON, 400, "malformed JSON"),
    ("/predict", b'[{"amount": 1e999, "age": 2}]', JSON, 400, "malformed JSON"),
    ("/predict", b"[]", JSON, 400, "no rows"),
    ("/predict", b'{"rows": []}', JSON, 400, "exactly one of"),
    ("/predict", b'"text"', JSON, 400, "list of records"),
    ("/predict", b"amount,age\n1,2\n", {"content-type": "text/csv"}, 415, "text/csv"),
    ("/predict", b"amount=1", {"content-type": "application/x-www-form-urlencoded"}, 415, ""),
    ("/invocations", b"x", {"content-type": "text/plain"}, 415, "application/json or text/csv"),
    ("/invocations", b"amount,age\n1.0,\n", {"content-type": "text/csv"}, 400, "NaN"),
    ("/invocations", b"amount,age\n1.0,inf\n", {"content-type": "text/csv"}, 400, "'age'"),
    ("/invocations", b"amount,age\n", {"content-type": "text/csv"}, 400, "no rows"),
    ("/invocations", b"\xff\xfe,\x00", {"content-type": "text/csv"}, 400, "CSV"),
    (
        "/invocations",
        b'{"dataframe_split": {"columns": ["amount", "age"], "data": [[1.0]]}}',
        JSON,
        400,
        "row 0",
    ),
    ("/invocations", b'{"instances": [], "inputs": []}', JSON, 400, "exactly one of"),
    (
        "/invocations",
        b'{"inputs": {"amount": [1.0], "age": [1]}, "params": {"k": 1}}',
        JSON,
        400,
        "params",
    ),
    ("/v2/models/fraud/infer", b'{"inputs": []}', JSON, 400, "non-empty list"),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP128", "data": [1]}]}',
        JSON,
        400,
        "unknown datatype",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [3], "datatype": "FP64", "data": [1, 2]}]}',
        JSON,
        400,
        "holds 3 values",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [1.5]}]}',
        JSON,
        400,
        "whole numbers",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [null]}]}',
        JSON,
        400,
        "integers",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": ["x"]}]}',
        JSON,
        400,
        "must hold numbers",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}]}',
        JSON,
        400,
        "missing column 'age'",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [1], '
        b'"datatype": "FP64", "data": ' + DEEP + b"}]}",
        JSON,
        400,
        "amount",
    ),
    (
        "/v2/models/fraud/infer",
        b'{"inputs": [{"name": "amount", "shape": [1, 1], "datatype": '
        b'"FP64", "data": [1.0]}, {"name": "age", "shape": [1], "datatype": "INT64", '
        b'"data": [3]}], "outputs": [{"name": "proba"}]}',
        JSON,
        400,
        "unknown outputs",
    ),
    ("/feedback", b'{"ground_truth": 1}', JSON, 400, "request_id"),
    ("/feedback", b'{"request_id": "r1"}', JSON, 400, "ground_truth"),
    ("/feedback", b"{", JSON, 400, "malformed JSON"),
    ("/feedback", b"x", {"content-type": "text/plain"}, 415, ""),
    # No Content-Type: what a page on another site can post without a CORS preflight
    ("/predict", b'[{"amount": 1.0, "age": 2}]', {}, 415, "no Content-Type"),
    ("/invocations", b'{"instances": [[1.0, 2]]}', {}, 415, "application/json or text/csv"),
    ("/v2/models/fraud/infer", b'{"inputs": []}', {}, 415, "no Content-Type"),
    ("/feedback", b'{"request_id": "r1", "ground_truth": 1}', {}, 415, "no Content-Type"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "match"), MISTAKES)
def test_client_mistakes_get_a_4xx_json_error_and_the_server_keeps_serving(
    http, platform, path, body, headers, status, match
):
    response = http.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if path.startswith("/v2/"):  # the protocol's error shape
        assert response.json() == {"error": error} and match in error
    else:
        assert error["code"] == {400: "invalid_argument", 415: "unsupported_media_type"}[status]
        assert match in error["message"]
    assert response.headers["x-request-id"]
    good = http.post("/predict", json=platform.frame.head(2).to_dict(orient="records"))
    assert good.status_code == 200


def test_oversized_bodies_get_413_declared_or_streamed(platform):
    app = create_inference_app(SingleModel("fraud", "1", platform.columns), max_request_bytes=4096)
    with TestClient(app, base_url=LOCAL) as http:
        declared = http.post("/predict", content=b"[" + b" " * 5000 + b"]", headers=JSON)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "too_large"

        def chunks():
            for _ in range(10):
                yield b" " * 1024

        streamed = http.post("/invocations", content=chunks(), headers=JSON)
        assert streamed.status_code == 413
        good = http.post("/predict", json=platform.frame.head(2).to_dict(orient="records"))
        assert good.status_code == 200


@pytest.mark.parametrize("path", ["/predict", "/invocations", "/v2/models/fraud/infer"])
def test_inference_routes_answer_other_methods_405_naming_post(http, path):
    for method in ("GET", "PUT", "DELETE"):
        response = http.request(method, path)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        error = response.json()["error"]
        assert "use POST" in (error if path.startswith("/v2/") else error["message"])
        assert response.headers["x-request-id"]
    for i in range(20):  # invented methods: refused, and counted under one label
        assert http.request(f"BREW{i}", path).status_code == 405
    template = path.replace("/fraud/", "/{name}/")  # labelled by route template
    metrics = http.get("/metrics").text
    assert f'loopml_http_requests_total{{method="GET",route="{template}",status="405"}}' in metrics
    assert f'{{method="OTHER",route="{template}",status="405"}} 20.0' in metrics
    assert "BREW" not in metrics


def test_model_failures_say_whose_fault_it_was(platform):
    refusing = FakePredictor(Recorder())
    refused = create_inference_app(SingleModel("r", "1", refusing))
    with TestClient(refused, base_url=LOCAL) as http:
        bad = http.post("/predict", json={"columns": {"x": [1.0, -1.0]}})
        assert bad.status_code == 400 and "refused this input" in bad.json()["error"]["message"]
    crashing = create_inference_app(SingleModel("c", "1", FakePredictor(crash)))
    with TestClient(crashing, base_url=LOCAL) as http:
        crashed = http.post("/predict", json={"columns": {"x": [1.0]}})
        assert crashed.status_code == 500
        assert crashed.json()["error"]["code"] == "model_error"
        assert "crashed (not a problem with the input)" in crashed.json()["error"]["message"]
        assert http.get("/v2/health/live").status_code == 200


# -- request ids, feedback, events, shadows, metrics -------------------------------------------


def test_request_ids_feedback_and_prediction_events(platform):
    events: list[PredictionEvent] = []
    feedback: list[FeedbackEvent] = []
    app = create_inference_app(
        SingleModel("fraud", "1", platform.columns),
        on_prediction=events.append,
        on_feedback=feedback.append,
    )
    rows = platform.frame.head(2).to_dict(orient="records")
    with TestClient(app, base_url=LOCAL) as http:
        mine = http.post("/predict", json=rows, headers={"x-request-id": "order-17:a"})
        assert mine.headers["x-request-id"] == "order-17:a"
        odd = http.post("/predict", json=rows, headers={"x-request-id": "bad id!"})
        assert len(odd.headers["x-request-id"]) == 32 and odd.headers["x-request-id"] != "bad"
        refused = http.post("/predict", json=[{"amount": 1.0}])
        done = http.post("/feedback", json={"request_id": "order-17:a", "ground_truth": 1,
                                            "deployment": "fraud-prod"})  # fmt: skip
        assert done.status_code == 202 and done.json()["request_id"] == "order-17:a"
    first = events[0]
    assert (first.request_id, first.model, first.version, first.route, first.status) == (
        "order-17:a", "fraud", "1", "/predict", 200)  # fmt: skip
    assert first.inputs == rows and first.outputs == mine.json()["predictions"]
    assert not first.shadow and first.latency_ms >= 0 and first.timestamp_ms > 0
    assert orjson.loads(orjson.dumps(first.inputs)) == rows  # JSON-able
    assert events[2].status == 400 and events[2].outputs is None
    assert events[2].request_id == refused.headers["x-request-id"]
    assert feedback == [FeedbackEvent("order-17:a", 1, "fraud-prod", feedback[0].timestamp_ms)]


def test_shadows_see_the_same_input_and_never_touch_the_caller(platform):
    events: list[PredictionEvent] = []
    recorder = Recorder()
    shadows = [ServedModel("shadow-ok", "2", FakePredictor(recorder)),
               ServedModel("shadow-crash", "3", FakePredictor(crash))]  # fmt: skip
    primary = FakePredictor(lambda frame: frame["x"].to_numpy() + 1)
    app = create_inference_app(SingleModel("m", "1", primary, shadows),
                               on_prediction=events.append)  # fmt: skip
    with TestClient(app, base_url=LOCAL) as http:
        response = http.post("/predict", json={"columns": {"x": [1.0, 2.0]}})
        assert response.json()["predictions"] == [2.0, 3.0]
        deadline = time.monotonic() + 30
        while len(events) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    by_model = {e.model: e for e in events}
    assert by_model["m"].shadow is False and by_model["m"].status == 200
    ok, bad = by_model["shadow-ok"], by_model["shadow-crash"]
    assert ok.shadow and ok.status == 200 and ok.outputs == [2.0, 4.0]
    assert ok.request_id == response.headers["x-request-id"]
    assert bad.shadow and bad.status == 500 and bad.outputs is None
    assert ok.inputs == bad.inputs == {"x": [1.0, 2.0]}


def test_metrics_count_requests_batches_and_refusals(http, platform):
    http.post("/predict", json=platform.frame.head(3).to_dict(orient="records"))
    http.post("/predict", content=b"{", headers=JSON)
    text = http.get("/metrics").text
    assert 'loopml_http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'route="/predict",status="400"' in text
    assert "loopml_serving_batch_rows_count 1.0" in text
    assert "loopml_serving_queue_depth 0.0" in text
    assert "loopml_serving_in_flight 0.0" in text


# -- building the server from a reference ------------------------------------------------------


def test_model_set_from_every_reference_form(platform):
    client = platform.client
    by_run = model_set_from_ref(client, f"runs:/{platform.run_id}/model")
    assert by_run.names() == ["model"] and by_run.get("model").version == platform.run_id
    for ref in ("models:/fraud/1", "models:/fraud@champion"):
        served, shadows = model_set_from_ref(client, ref).route(None)
        assert (served.name, served.version, shadows) == ("fraud", "1", [])
        assert served.predictor.flavor == "sklearn"


def test_the_worker_spec_pickles_and_builds_the_app(platform, monkeypatch):
    monkeypatch.setenv("LOOPML_HOME", str(platform.home))
    monkeypatch.delenv("LOOPML_URI", raising=False)
    monkeypatch.delenv("LOOPML_ARTIFACTS", raising=False)
    spec = pickle.loads(pickle.dumps(InferenceServerSpec("models:/fraud@champion", max_queue=3)))
    try:
        app = spec()
    finally:
        import gc

        gc.unfreeze()
    assert app.state.inference.admission.max_queue == 3
    with TestClient(app, base_url=LOCAL) as http:
        rows = platform.frame.head(2)
        body = http.post("/predict", json=rows.to_dict(orient="records")).json()
        assert body["predictions"] == _expected(platform, rows) and body["version"] == "1"


def test_no_bind_beyond_loopback_without_auth():
    from typer.testing import CliRunner

    from loopml.cli.main import app

    for host in ("0.0.0.0", "192.168.1.20", "::"):
        result = CliRunner().invoke(app, ["serve", "models:/fraud/1", "--host", host],
                                    env={"COLUMNS": "200"})  # fmt: skip
        assert result.exit_code == 1, host
        assert f"refusing to serve on {host} without authentication: use --auth" in result.output
    usage = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "--auth" in usage and "--expose-without-auth" not in usage


def test_signature_less_models_and_doctests():
    class Echo:
        flavor, signature = "python", None

        def prepare(self, data):
            return data

        def predict(self, data):
            return np.asarray(data) * 10

    echo = create_inference_app(SingleModel("e", "1", Echo()))
    with TestClient(echo, base_url=LOCAL) as http:
        assert http.post("/predict", json={"instances": [1, 2]}).json()["predictions"] == [10, 20]
        assert http.get("/v2/models/e").json()["inputs"] == []
    assert doctest.testmod(inference).failed == 0
    sig = Signature(inputs=(ColumnSpec("x", "float64"),))
    assert FakePredictor(crash, sig).signature is sig


def test_frames_become_the_same_column_lists_by_either_path():
    """plain(): a one-dtype numeric frame goes through one array, any other column by column;
    both give what pandas gives column by column."""
    from loopml.server.inference_runtime import plain

    numeric = pd.DataFrame({"a": [1.5, float("nan")], "b": [2.0, 3.0]})
    mixed = pd.DataFrame({"n": [1, 2], "x": [0.5, 1.5], "s": ["p", "q"], "f": [True, False]})
    nullable = pd.DataFrame({"i": pd.array([1, None], dtype="Int64"), "j": [1, 2]})
    for frame in (numeric, mixed, nullable, numeric[["b", "a"]], pd.DataFrame({"k": [7, 8]})):
        expected = {str(c): frame[c].to_numpy().tolist() for c in frame.columns}
        got = plain(frame)
        assert list(got) == list(expected)
        assert {k: repr(v) for k, v in got.items()} == {k: repr(v) for k, v in expected.items()}


def test_every_answer_carries_nosniff_and_a_csp_that_allows_nothing(http, platform):
    rows = platform.frame.head(1).to_dict(orient="records")
    answers = [
        http.post("/predict", json=rows),  # the fast lane
        http.post("/v2/models/fraud/infer", json=_oip_columns(platform.frame.head(1))),
        http.post("/predict", content=b"x"),  # the fast lane's errors
        http.get("/predict"),
        http.get("/v2/health/ready"),  # the routes behind the middleware
        http.get("/v2/models/fraud"),
        http.get("/metrics"),
        http.get("/nothing/here"),
        http.post("/feedback", content=b"x" * (9 * 2**20), headers=JSON),  # the body limit's 413
    ]
    assert [r.status_code for r in answers] == [200, 200, 415, 405, 200, 200, 200, 404, 413]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"

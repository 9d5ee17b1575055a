"""A standard Open Inference Protocol client, installed from PyPI and used with its default
settings, against a live ``loopml serve`` process on loopback: NVIDIA's ``tritonclient[http]``
(binary tensors in and out by default).

KServe's ``InferenceRESTClient`` is not tested here: installing ``kserve`` (0.21) would replace
pandas 3 with 2.3 and protobuf 7 with 6 and add uvloop, which uvicorn would then run loopml on.
"""

from __future__ import annotations

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
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import loopml
from loopml.settings import Settings
from server_fixtures import free_port

JSON = {"Content-Type": "application/json"}  # a body without binary tensors says it is JSON


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[SimpleNamespace]:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("oip-clients") / "home"
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"amount": rng.random(200) * 100, "age": rng.integers(18, 90, 200)})
    labels = ((frame["amount"] > 50) ^ (frame["age"] > 60)).astype(int).to_numpy()
    model = LogisticRegression(max_iter=500).fit(frame, labels)
    with loopml.Client(Settings(home=home)) as client:
        run = client.create_run(client.create_experiment("oip").experiment_id)
        info = client.log_model(run.run_id, model, "model", input_example=frame.head())
        client.register_model(info.source, "fraud")
    port = free_port()
    loopml_bin = os.path.join(os.path.dirname(sys.executable), "loopml")
    server = subprocess.Popen(
        [loopml_bin, "serve", "models:/fraud/1", "--port", str(port), "--no-log-predictions"],
        env={**os.environ, "LOOPML_HOME": str(home)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"loopml serve exited: {server.stdout.read()}"
            assert time.monotonic() < deadline, "loopml serve did not become ready"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        triton = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        yield SimpleNamespace(triton=triton, model=model, frame=frame, port=port)
        triton.close()
    finally:
        server.terminate()
        server.communicate(timeout=30)


def _inputs(frame: pd.DataFrame, *, binary: tuple[bool, bool] = (True, True)) -> list:
    amount = httpclient.InferInput("amount", [len(frame)], "FP64")
    amount.set_data_from_numpy(frame["amount"].to_numpy(), binary_data=binary[0])
    age = httpclient.InferInput("age", [len(frame), 1], "INT64")
    age.set_data_from_numpy(frame[["age"]].to_numpy(dtype=np.int64), binary_data=binary[1])
    return [amount, age]


def test_server_and_model_metadata_and_readiness(served):
    triton = served.triton
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("fraud") and triton.is_model_ready("fraud", "1")
    server = triton.get_server_metadata()
    assert server["name"] == "loopml" and "binary_tensor_data" in server["extensions"]
    meta = triton.get_model_metadata("fraud")
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "amount", "datatype": "FP64", "shape": [-1]},
                              {"name": "age", "datatype": "INT64", "shape": [-1]}]  # fmt: skip
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


def test_infer_with_binary_tensors_the_clients_default(served):
    rows = served.frame.head(9)
    result = served.triton.infer("fraud", _inputs(rows), request_id="req-7")
    expected = served.model.predict(rows)
    labels = result.as_numpy("predict")
    assert labels.dtype == np.int64 and labels.tolist() == expected.tolist()
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "fraud"
    assert response["outputs"][0]["parameters"] == {"binary_data_size": 9 * 8}  # came as binary
    asked = served.triton.infer("fraud", _inputs(rows), model_version="1",
                                outputs=[httpclient.InferRequestedOutput("predict")])  # fmt: skip
    assert asked.as_numpy("predict").tolist() == expected.tolist()
    # unknown parameters, request-level, are accepted
    custom = served.triton.infer("fraud", _inputs(rows), parameters={"tenant": "a", "n": 3})
    assert custom.as_numpy("predict").tolist() == expected.tolist()


def test_infer_with_json_tensors_and_json_outputs(served):
    rows = served.frame.iloc[20:25]
    result = served.triton.infer(
        "fraud", _inputs(rows, binary=(False, False)), headers=JSON,
        outputs=[httpclient.InferRequestedOutput("predict", binary_data=False)],
    )  # fmt: skip
    assert "parameters" not in result.get_response()["outputs"][0]  # came as JSON
    assert result.as_numpy("predict").tolist() == served.model.predict(rows).tolist()


def test_json_and_binary_tensors_mixed_in_one_request(served):
    rows = served.frame.iloc[40:46]
    expected = served.model.predict(rows).tolist()
    for binary in ((True, False), (False, True)):
        result = served.triton.infer("fraud", _inputs(rows, binary=binary))
        assert result.as_numpy("predict").tolist() == expected


def test_an_unknown_model_s_error_is_read_by_the_client(served):
    with pytest.raises(InferenceServerException) as infer_error:
        served.triton.infer("nope", _inputs(served.frame.head(2)))
    assert infer_error.value.status() == "404"
    assert "no model 'nope' here" in infer_error.value.message()
    with pytest.raises(InferenceServerException) as meta_error:
        served.triton.get_model_metadata("nope")
    assert "no model 'nope' here" in meta_error.value.message()
    wrong = httpclient.InferInput("amount", [2], "FP64")
    wrong.set_data_from_numpy(np.array([1.0, 2.0]))
    with pytest.raises(InferenceServerException) as bad_input:
        served.triton.infer("fraud", [wrong])
    assert bad_input.value.status() == "400" and "age" in bad_input.value.message()


def test_the_repository_index_lists_the_served_model_and_its_state(served):
    assert served.triton.get_model_repository_index() == [
        {"name": "fraud", "version": "1", "state": "READY", "reason": ""}
    ]


def test_bad_binary_framing_from_outside_is_a_400_not_a_500(served):
    head = b'{"inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", '
    head += b'"parameters": {"binary_data_size": 8}}]}'
    url = f"http://127.0.0.1:{served.port}/v2/models/fraud/infer"
    for body, length in ((head + b"\0" * 7, len(head)), (head + b"\0" * 8, len(head) + 100)):
        response = httpx.post(url, content=body,
                              headers={"Inference-Header-Content-Length": str(length)})  # fmt: skip
        assert response.status_code == 400 and set(response.json()) == {"error"}
    assert served.triton.is_server_ready()

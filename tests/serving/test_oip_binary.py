"""The OIP binary tensor data extension: round trips of every datatype, JSON and binary tensors
mixed, binary outputs on request, and every framing attack refused as a 400 (never a 500); the
repository index and the protocol's error shape on every /v2 route."""

from __future__ import annotations

import doctest
import struct

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from loopml.errors import InvalidArgument
from loopml.models.signature import ColumnSpec, Signature
from loopml.server.inference import create_inference_app
from loopml.serving import oip_binary
from loopml.serving.modelset import SingleModel
from loopml.serving.oip_binary import (
    binary_outputs,
    decode_tensor,
    encode_tensor,
    read_request,
)
from loopml.serving.protocol import OIP_DTYPES, decode_infer, encode_outputs

from .inference_fakes import FakePredictor

SAMPLES = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65534, 65535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**64 - 2, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-(2**15), -1, 0, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [-65504.0, -0.5, 0.0009765625, 65504.0],
    "FP32": [-3.4e38, -1.5, 1e-38, 3.4e38],
    "FP64": [-1.7e308, -0.1, 5e-324, 1.7e308],
    "BYTES": ["", "héllo", "Ωmega 日本", "x" * 300],
}


def _body(inputs: list[dict], blobs: list[bytes], **extra) -> tuple[bytes, str]:
    head = orjson.dumps({"inputs": inputs, **extra})
    return head + b"".join(blobs), str(len(head))


def _binary_input(name: str, datatype: str, shape: list[int], raw: bytes) -> dict:
    return {"name": name, "shape": shape, "datatype": datatype,
            "parameters": {"binary_data_size": len(raw)}}  # fmt: skip


def test_the_module_doctests_run():
    assert doctest.testmod(oip_binary).failed == 0


def test_samples_cover_every_datatype_the_server_accepts():
    assert set(SAMPLES) == set(OIP_DTYPES)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_every_datatype_round_trips_through_its_binary_form(datatype):
    values = SAMPLES[datatype]
    dtype = object if datatype == "BYTES" else OIP_DTYPES[datatype]
    arr = np.array(values, dtype=dtype)
    raw = encode_tensor(datatype, arr)
    if datatype == "BYTES":  # each element: a 4-byte little-endian length, then UTF-8
        first = "héllo".encode()
        assert raw[:4] == b"\0\0\0\0" and raw[4:8] == struct.pack("<I", len(first))
        assert raw[8 : 8 + len(first)] == first
    else:  # little-endian, no padding; BOOL one byte each
        expected = arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
        assert raw == (arr.astype(np.uint8).tobytes() if datatype == "BOOL" else expected)
    back = decode_tensor("input 't'", datatype, [2, 2], memoryview(raw))
    assert back.tolist() == arr.tolist() and back.flags.writeable
    if datatype != "BYTES":
        assert back.dtype == np.dtype(dtype)
    # and through a whole request, into the model's input
    body, length = _body([_binary_input("t", datatype, [4], raw)], [raw])
    decoded = decode_infer(read_request(body, length), None)
    assert decoded.data.tolist() == arr.tolist() and decoded.binary is None


def test_json_and_binary_tensors_mix_in_one_request_in_input_order():
    a = np.array([1.5, 2.5, -1.0])
    c = np.array([7, 8, 9], dtype=np.int32)
    text = encode_tensor("BYTES", ["x", "", "yz"])
    inputs = [
        _binary_input("a", "FP64", [3], a.tobytes()),
        {"name": "b", "shape": [3, 1], "datatype": "INT64", "data": [[1], [2], [3]],
         "parameters": {"custom": "kept"}},
        _binary_input("s", "BYTES", [3], text),
        _binary_input("c", "INT32", [3, 1], c.tobytes()),
    ]  # fmt: skip
    body, length = _body(inputs, [a.tobytes(), text, c.tobytes()], id="r-9",
                         parameters={"unknown_param": 1, "binary_data_output": True})  # fmt: skip
    decoded = decode_infer(read_request(body, length), None)
    assert decoded.request_id == "r-9"
    assert {k: v.tolist() for k, v in decoded.data.items()} == {
        "a": [1.5, 2.5, -1.0], "b": [1, 2, 3], "s": ["x", "", "yz"], "c": [7, 8, 9],
    }  # fmt: skip
    assert "anything" in decoded.binary  # binary_data_output: every output


def test_binary_outputs_follow_binary_data_and_binary_data_output():
    def chosen(request: dict) -> list[str]:
        request = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}],
                   **request}  # fmt: skip
        decoded = decode_infer(request, None)
        frame = {"p": np.array([0.25, 0.75]), "label": np.array(["no", "yes"], dtype=object)}
        outputs = encode_outputs(frame, (), decoded.outputs)
        if decoded.binary is None:
            return []
        blobs = binary_outputs(outputs, decoded.binary)
        binary = [o["name"] for o in outputs if "parameters" in o]
        for o, raw in zip([o for o in outputs if "parameters" in o], blobs, strict=True):
            assert o["parameters"] == {"binary_data_size": len(raw)} and "data" not in o
            back = decode_tensor("out", o["datatype"], o["shape"], memoryview(raw))
            assert back.tolist() == frame[o["name"]].tolist()
        assert all("data" in o for o in outputs if o["name"] not in binary)
        return binary

    assert chosen({}) == []
    assert chosen({"parameters": {"binary_data_output": True}}) == ["p", "label"]
    assert chosen({"outputs": [{"name": "p", "parameters": {"binary_data": True}},
                               {"name": "label"}]}) == ["p"]  # fmt: skip
    assert chosen({"parameters": {"binary_data_output": True},
                   "outputs": [{"name": "p", "parameters": {"binary_data": False}},
                               {"name": "label"}]}) == ["label"]  # fmt: skip
    with pytest.raises(InvalidArgument, match="binary_data must be true or false"):
        chosen({"outputs": [{"name": "p", "parameters": {"binary_data": "yes"}}]})
    with pytest.raises(InvalidArgument, match="binary_data_output must be true or false"):
        chosen({"parameters": {"binary_data_output": 1}})


F32 = np.array([1.0, 2.0], dtype="<f4").tobytes()
ONE_F32 = [_binary_input("x", "FP32", [2], F32)]


def _framed(head: dict | bytes, tail: bytes) -> tuple[bytes, str]:
    raw = head if isinstance(head, bytes) else orjson.dumps(head)
    return raw + tail, str(len(raw))


def _size(value) -> dict:
    return {"inputs": [{**ONE_F32[0], "parameters": {"binary_data_size": value}}]}


ATTACKS = [
    # (what, body, Inference-Header-Content-Length, message)
    ("header longer than the body", b'{"inputs": []}', "999", "body has only 14 bytes"),
    ("header length not a number", b"{}", "12abc", "non-negative integer"),
    ("header length negative", b"{}", "-1", "non-negative integer"),
    ("header length huge", b"{}", "9" * 40, "non-negative integer"),
    ("header cuts the JSON", b'{"inputs": []}', "5", "malformed JSON header"),
    ("sizes add up to less than the body", *_framed({"inputs": ONE_F32}, F32 + b"\0"),
     "add up to 8"),
    ("sizes add up to more than the body", *_framed({"inputs": ONE_F32}, F32[:7]),
     "only 7 bytes"),
    ("binary data but no binary input", *_framed({"inputs": [
        {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}]}, F32), "add up to 0"),
    ("negative size", *_framed(_size(-8), F32), "non-negative integer"),
    ("float size", *_framed(_size(8.0), F32), "non-negative integer"),
    ("boolean size", *_framed(_size(True), F32), "non-negative integer"),
    ("string size", *_framed(_size("8"), F32), "non-negative integer"),
    ("size disagrees with shape x datatype", *_framed(
        {"inputs": [{**ONE_F32[0], "shape": [3]}]}, F32), "takes 12 bytes"),
    ("size not a multiple of the element", *_framed(
        {"inputs": [_binary_input("x", "FP64", [1], b"1234567")]}, b"1234567"), "takes 8 bytes"),
    ("both data and binary_data_size", *_framed(
        {"inputs": [{**ONE_F32[0], "data": [1, 2]}]}, F32), "both 'data' and binary_data_size"),
    ("parameters not an object", *_framed(
        {"inputs": [{**ONE_F32[0], "parameters": [8]}]}, F32), "'parameters' must be an object"),
    ("unknown datatype", *_framed(
        {"inputs": [{**ONE_F32[0], "datatype": "BF16"}]}, F32), "unknown datatype"),
    ("bad shape", *_framed({"inputs": [{**ONE_F32[0], "shape": [-2]}]}, F32), "'shape'"),
    ("BOOL byte other than 0 or 1", *_framed(
        {"inputs": [_binary_input("b", "BOOL", [2], b"\x01\x02")]}, b"\x01\x02"), "0 or 1"),
    ("BYTES prefix past the end", *_framed(
        {"inputs": [_binary_input("s", "BYTES", [1], b"\xff\0\0\0ab")]}, b"\xff\0\0\0ab"),
     "has length 255 but only 2 bytes"),
    ("BYTES prefix cut off", *_framed(
        {"inputs": [_binary_input("s", "BYTES", [2], b"\1\0\0\0a\1\0")]}, b"\1\0\0\0a\1\0"),
     "prefix is cut off"),
    ("BYTES fewer elements than the shape", *_framed(
        {"inputs": [_binary_input("s", "BYTES", [2], b"\1\0\0\0a")]}, b"\1\0\0\0a"),
     "holds 2 values but the BYTES data has 1"),
    ("BYTES more elements than the shape", *_framed(
        {"inputs": [_binary_input("s", "BYTES", [1], b"\0\0\0\0\0\0\0\0")]}, b"\0" * 8),
     "has more"),
    ("BYTES not UTF-8", *_framed(
        {"inputs": [_binary_input("s", "BYTES", [1], b"\2\0\0\0\xff\xfe")]}, b"\2\0\0\0\xff\xfe"),
     "not UTF-8"),
    ("huge shape, tiny body", *_framed(
        {"inputs": [{**ONE_F32[0], "shape": [2**40, 2**40]}]}, F32), "binary_data_size is 8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "body", "length", "message"), ATTACKS, ids=[a[0] for a in ATTACKS]
)
def test_bad_framing_is_refused_with_a_clear_message(what, body, length, message):
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        decode_infer(read_request(body, length), None)


def test_binary_data_size_without_the_header_says_what_is_missing():
    with pytest.raises(InvalidArgument, match="no Inference-Header-Content-Length"):
        decode_infer({"inputs": ONE_F32}, None)


SIGNATURE = Signature(
    inputs=(ColumnSpec("x", "float64"),), outputs=(ColumnSpec(None, "float64", (-1,)),)
)


@pytest.fixture(scope="module")
def http():
    model = FakePredictor(lambda frame: frame["x"].to_numpy() * 2, SIGNATURE)
    app = create_inference_app(SingleModel("m", "1", model), max_wait_ms=0,
                               max_request_bytes=64 * 1024)  # fmt: skip
    with TestClient(app, base_url="http://localhost") as client:
        yield client


@pytest.mark.parametrize(
    ("what", "body", "length", "message"), ATTACKS, ids=[a[0] for a in ATTACKS]
)
def test_bad_framing_over_http_is_a_400_in_the_protocols_error_shape(
    http, what, body, length, message
):
    headers = {"Inference-Header-Content-Length": length,
               "Content-Type": "application/octet-stream"}  # fmt: skip
    response = http.post("/v2/models/m/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and message in response.json()["error"]
    good = np.array([1.0, 2.0]).tobytes()
    body, length = _body([_binary_input("x", "FP64", [2], good)], [good])
    ok = http.post("/v2/models/m/infer", content=body,
                   headers={"Inference-Header-Content-Length": length})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["outputs"][0]["data"] == [2.0, 4.0]


def test_binary_answers_carry_the_header_length_and_content_type(http):
    x = np.array([0.5, 1.5, 3.0])
    body, length = _body([_binary_input("x", "FP64", [3], x.tobytes())], [x.tobytes()],
                         id="abc", parameters={"binary_data_output": True})  # fmt: skip
    response = http.post("/v2/models/m/infer", content=body,
                         headers={"Inference-Header-Content-Length": length})  # fmt: skip
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    head_length = int(response.headers["inference-header-content-length"])
    head = orjson.loads(response.content[:head_length])
    assert head["id"] == "abc"
    [out] = head["outputs"]
    assert out["parameters"] == {"binary_data_size": 24} and "data" not in out
    assert np.frombuffer(response.content[head_length:], "<f8").tolist() == [1.0, 3.0, 6.0]
    # a JSON request asking for binary outputs gets them too; a plain one gets plain JSON
    request = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2.0]}]}
    plain = http.post("/v2/models/m/infer", json=request)
    assert plain.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in plain.headers
    asked = http.post("/v2/models/m/infer", json={**request, "outputs": [
        {"name": "predict", "parameters": {"binary_data": True}}]})  # fmt: skip
    assert asked.content.endswith(np.array([4.0]).tobytes())


def test_binary_bodies_are_bounded_by_the_request_limit(http):
    x = np.zeros(10_000)  # 80 kB, over the 64 KiB limit of this app
    body, length = _body([_binary_input("x", "FP64", [10_000], x.tobytes())], [x.tobytes()])
    response = http.post("/v2/models/m/infer", content=body,
                         headers={"Inference-Header-Content-Length": length})  # fmt: skip
    assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]


def test_binary_tensors_in_a_form_or_text_body_are_refused_415(http):
    x = np.array([1.0])
    body, length = _body([_binary_input("x", "FP64", [1], x.tobytes())], [x.tobytes()])
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        response = http.post("/v2/models/m/infer", content=body, headers={
            "Inference-Header-Content-Length": length, "Content-Type": content_type})  # fmt: skip
        assert response.status_code == 415 and "octet-stream" in response.json()["error"]


def test_the_repository_index_says_what_is_served_and_whether_it_is_ready(http, monkeypatch):
    ready = [{"name": "m", "version": "1", "state": "READY", "reason": ""}]
    assert http.post("/v2/repository/index").json() == ready
    assert http.post("/v2/repository/index", json={"ready": True}).json() == ready
    monkeypatch.setattr(http.app.state.inference.pool, "ready", lambda: False)
    [entry] = http.post("/v2/repository/index").json()
    assert entry["state"] == "UNAVAILABLE" and entry["reason"]


def test_errors_written_by_middleware_on_v2_routes_take_the_protocols_shape(http):
    too_big = http.post("/v2/repository/index", content=b"{" + b" " * 70_000 + b"}",
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert too_big.status_code == 413 and too_big.json() == {"error": too_big.json()["error"]}
    assert "exceeds the limit" in too_big.json()["error"]
    assert int(too_big.headers["content-length"]) == len(too_big.content)
    gone = http.get("/v2/models/m/nothing")
    assert gone.status_code == 404 and isinstance(gone.json()["error"], str)
    assert http.get("/metrics/nothing").json()["error"]["code"] == "not_found"  # not /v2

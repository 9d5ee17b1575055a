"""The request/response codecs: OIP V2 tensors of every datatype, /predict and MLflow bodies."""

from __future__ import annotations

import dataclasses
import doctest

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidArgument, NotFound
from loopml.models.signature import ColumnSpec, Signature
from loopml.serving import modelset, payloads, protocol
from loopml.serving.modelset import SingleModel
from loopml.serving.payloads import decode_csv, decode_invocations, decode_predict, predictions
from loopml.serving.protocol import (
    PredictionEvent,
    clean_request_id,
    decode_infer,
    encode_outputs,
    model_metadata,
)

TENSOR = Signature(inputs=(ColumnSpec(None, "float32", (-1, 2)),), kind="tensor")


def _one(datatype: str, data: list, shape: list[int] | None = None) -> dict:
    shape = shape if shape is not None else [len(data)]
    return {"inputs": [{"name": "t", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("BOOL", [True, False], "bool"),
        ("UINT8", [0, 255], "uint8"),
        ("UINT64", [0, 2**64 - 1], "uint64"),
        ("INT8", [-128, 127], "int8"),
        ("INT16", [-3, 3], "int16"),
        ("INT32", [1, 2.0], "int32"),
        ("INT64", [-(2**63), 2**63 - 1], "int64"),
        ("FP16", [0.5, 1], "float16"),
        ("FP32", [0.25, None], "float32"),
        ("FP64", [1e300, -2], "float64"),
        ("BYTES", ["a", ""], "object"),
    ],
)
def test_every_oip_datatype_decodes_to_its_numpy_type(datatype, data, dtype):
    arr = decode_infer(_one(datatype, data), None).data
    assert arr.dtype == np.dtype(dtype) and arr.shape == (2,)


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        ("UINT8", [256], "out of range for UINT8"),
        ("UINT16", [-1], "out of range"),
        ("INT8", [1.5], "whole numbers"),
        ("INT64", [True], "integers"),
        ("BOOL", [1], "true/false"),
        ("FP32", [True], "numbers"),
        ("FP16", [1e10], "does not fit in FP16"),
        ("FP64", ["1.0"], "numbers"),
        ("INT32", [None], "integers"),
        ("BYTES", [1], "strings"),
        ("BYTES", [["a"], ["b", "c"]], "strings"),
        ("FP64", [[1.0], [2.0, 3.0]], "rectangular"),
        ("STRING", ["a"], "unknown datatype"),
    ],
)
def test_values_that_do_not_match_the_datatype_are_refused(datatype, data, match):
    with pytest.raises(InvalidArgument, match=match):
        decode_infer(_one(datatype, data, [1]), None)


def test_shape_data_and_request_structure_are_checked():
    assert decode_infer(_one("FP32", [[1, 2], [3, 4]], [2, 2]), TENSOR).data.shape == (2, 2)
    assert decode_infer(_one("FP32", [1, 2, 3, 4], [2, 2]), TENSOR).data.tolist() == [
        [1, 2],
        [3, 4],
    ]
    bad = [
        ({"inputs": "x"}, "non-empty list"),
        ({"inputs": [1]}, "must be an object"),
        ({"id": 3, "inputs": []}, "'id' must be a string"),
        ({"inputs": [], "extra": 1}, "unknown fields"),
        ({"parameters": [], "inputs": []}, "'parameters'"),
        (_one("FP32", [1, 2], [3]), "holds 3 values but data has 2"),
        (_one("FP32", [1], [True]), "'shape'"),
        (_one("FP32", [1], [-1]), "'shape'"),
        (_one("FP32", [1], [1] * 33), "'shape'"),
        ({"inputs": [{"name": "", "shape": [1], "datatype": "FP32", "data": [1]}]}, "'name'"),
        ({"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": 1}]}, "'data'"),
        ({"inputs": [{"name": "t", "shape": [1], "datatype": "FP32", "data": [1], "x": 1}]},
         "unknown fields"),
        ({"inputs": [_one("FP32", [1])["inputs"][0]] * 2}, "unique"),
        ({**_one("FP32", [1]), "outputs": ["predict"]}, "'outputs'"),
    ]  # fmt: skip
    for request, match in bad:
        with pytest.raises(InvalidArgument, match=match):
            decode_infer(request, None)
    two = {"inputs": [_one("FP32", [1, 2], [1, 2])["inputs"][0], {
        "name": "u", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}  # fmt: skip
    with pytest.raises(InvalidArgument, match="one input tensor, got 2"):
        decode_infer(two, TENSOR)


def test_columns_signatures_take_one_tensor_per_column():
    sig = Signature(inputs=(ColumnSpec("a", "int64"), ColumnSpec("v", "float64", (3,))))
    request = {
        "id": "r",
        "outputs": [{"name": "predict"}],
        "inputs": [
            {"name": "a", "shape": [2, 1], "datatype": "INT32", "data": [[1], [2]]},
            {"name": "v", "shape": [2, 3], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]},
        ],
    }
    decoded = decode_infer(request, sig)
    assert decoded.request_id == "r" and decoded.outputs == ("predict",)
    assert decoded.data["a"].tolist() == [1, 2]
    assert [row.tolist() for row in decoded.data["v"]] == [[1, 2, 3], [4, 5, 6]]
    wide = {"inputs": [{"name": "a", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}
    with pytest.raises(InvalidArgument, match=r"shape \[n\] or \[n, 1\]"):
        decode_infer(wide, sig)


def test_outputs_are_encoded_as_typed_tensors():
    [single] = encode_outputs(np.array([[1, 2], [3, 4]], dtype=np.int32), ())
    assert single["name"] == "predict" and single["shape"] == [2, 2]
    assert single["datatype"] == "INT32" and single["data"].tolist() == [1, 2, 3, 4]
    frame = pd.DataFrame({"label": ["yes", "no"], "score": [0.9, 0.2]})
    label, score = encode_outputs(frame, ())
    assert label == {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["yes", "no"]}
    assert score["datatype"] == "FP64"
    [only] = encode_outputs(frame, (), requested=["score"])
    assert only["name"] == "score"
    with pytest.raises(InvalidArgument, match="unknown outputs"):
        encode_outputs(frame, (), requested=["proba"])
    named = encode_outputs([True, False], (ColumnSpec("fraud", "bool", (-1,)),))
    assert named[0]["name"] == "fraud" and named[0]["datatype"] == "BOOL"
    when = encode_outputs(np.array(["2024-01-02T03:04"], dtype="datetime64[m]"), ())
    assert when[0]["datatype"] == "BYTES" and when[0]["data"] == ["2024-01-02T03:04"]
    assert encode_outputs({"a": [1.5]}, ())[0]["datatype"] == "FP64"


def test_model_metadata_describes_inputs_and_outputs():
    sig = Signature(
        inputs=(ColumnSpec("text", "string"), ColumnSpec("when", "datetime")),
        outputs=(ColumnSpec(None, "int64", (-1,)), ColumnSpec(None, "float32", (-1, 2))),
    )
    meta = model_metadata("m", ["4"], "python", sig)
    assert meta["platform"] == "loopml-python" and meta["versions"] == ["4"]
    assert meta["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [-1]},
        {"name": "when", "datatype": "BYTES", "shape": [-1]},
    ]
    assert meta["outputs"] == [
        {"name": "output-0", "datatype": "INT64", "shape": [-1]},
        {"name": "output-1", "datatype": "FP32", "shape": [-1, 2]},
    ]
    tensor = model_metadata("t", ["1"], "onnx", TENSOR)
    assert tensor["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 2]}]
    assert tensor["outputs"] == []


def test_predict_and_mlflow_bodies():
    assert decode_predict({"records": [{"a": 1}]}).data == [{"a": 1}]
    assert decode_predict({"columns": {"a": [1]}}).data == {"a": [1]}
    assert decode_predict({"instances": [[1, 2]]}).data == [[1, 2]]
    for bad, match in [
        ({"columns": []}, "'columns' must be an object"),
        ({"records": {}}, "list of rows"),
        ({"records": [], "columns": {}}, "exactly one of"),
        (3, "list of records"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            decode_predict(bad)
    assert decode_invocations({"dataframe_split": {"data": [[1, 2]]}}).data == [[1, 2]]
    assert decode_invocations({"dataframe_records": [{"a": 1}], "params": None}).data == [{"a": 1}]
    split = {"columns": ["a", "b"], "data": [[1, 2]], "index": [7]}
    assert decode_invocations({"dataframe_split": split}).data == {"a": [1], "b": [2]}
    for bad, match in [
        ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, "twice"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, "row 0"),
        ({"dataframe_split": {"columns": [1], "data": [[1]]}}, "list of names"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1]], "dtypes": {}}}, "unknown fields"),
        ({"dataframe_split": []}, "'columns' and 'data'"),
        ({"inputs": {}}, "no columns"),
        ([], "MLflow scoring format"),
    ]:
        with pytest.raises(InvalidArgument, match=match):
            decode_invocations(bad)
    frame = decode_csv(b"a,b\n1,x\n2,y\n").data
    assert frame.to_dict(orient="list") == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(InvalidArgument, match="CSV"):
        decode_csv(b"")


def test_predictions_keep_arrays_and_turn_frames_into_records():
    arr = np.arange(3)
    assert predictions(arr) is arr
    assert predictions(pd.DataFrame({"a": [1, 2]})) == [{"a": 1}, {"a": 2}]
    assert predictions(pd.Series([1.5])).tolist() == [1.5]
    assert predictions({"p": pd.Series([1])})["p"].tolist() == [1]
    assert predictions([1, 2]) == [1, 2]


def test_request_ids_events_and_model_sets():
    assert clean_request_id("abc-1.2:x_Y") == "abc-1.2:x_Y"
    for odd in (None, "", "a b", "x" * 129, "-leading", "é"):
        assert len(clean_request_id(odd)) == 32
    event = PredictionEvent("r", "m", "1", "/predict", [1], [2], 1.0, 0, 200)
    assert event.shadow is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = 500  # type: ignore[misc]
    models = SingleModel("m", "1", object())  # type: ignore[arg-type]
    assert models.route("key", "m")[0] is models.get("m", "1")
    for name, version in (("x", None), ("m", "2")):
        with pytest.raises(NotFound, match="this server serves 'm'"):
            models.get(name, version)
    for module in (protocol, payloads, modelset):
        assert doctest.testmod(module).failed == 0

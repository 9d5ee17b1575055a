"""Signatures: inference from examples, and the validation every prediction goes through."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidArgument
from loopml.models import signature as signature_module
from loopml.models.signature import ColumnSpec, Signature, infer_signature

FRAME = pd.DataFrame(
    {
        "age": np.array([30, 41, 52], dtype="int64"),
        "amount": [9.5, 12.0, float("nan")],
        "country": ["fr", "de", "fr"],
        "flag": [True, False, True],
        "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
    }
)


@pytest.fixture
def sig() -> Signature:
    return infer_signature(FRAME[["age", "amount", "country"]])


def test_infer_from_dataframe() -> None:
    s = infer_signature(FRAME, np.array([0, 1, 1]))
    assert s.kind == "columns"
    assert [(c.name, c.dtype) for c in s.inputs] == [
        ("age", "int64"),
        ("amount", "float64"),
        ("country", "string"),
        ("flag", "bool"),
        ("when", "datetime"),
    ]
    assert s.outputs == (ColumnSpec(None, "int64", shape=(-1,)),)


def test_infer_from_numpy() -> None:
    s = infer_signature(np.zeros((5, 4), dtype="float32"), np.zeros((5, 2)))
    assert s.kind == "tensor"
    assert s.inputs == (ColumnSpec(None, "float32", shape=(-1, 4)),)
    assert s.outputs == (ColumnSpec(None, "float64", shape=(-1, 2)),)


def test_infer_from_dict_and_records() -> None:
    by_columns = infer_signature({"a": [1, 2], "b": ["x", "y"]})
    by_records = infer_signature([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert by_columns == by_records
    assert [(c.name, c.dtype) for c in by_columns.inputs] == [("a", "int64"), ("b", "string")]


def test_infer_refuses_mixed_object_column() -> None:
    with pytest.raises(InvalidArgument, match="column 'm': mixed values"):
        infer_signature(pd.DataFrame({"m": pd.Series([1, "a"], dtype=object)}))


def test_round_trip_dict() -> None:
    s = Signature(
        inputs=(ColumnSpec("a", "int32"), ColumnSpec("b", "string", optional=True)),
        outputs=(ColumnSpec(None, "float32", shape=(-1, 3)),),
        params={"top_k": 3, "labels": ["a", "b"]},
    )
    assert Signature.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"inputs": [{"name": "a", "dtype": "complex"}]}, "unknown dtype 'complex'"),
        ({"inputs": []}, "at least one input"),
        ({"inputs": [{"name": "a", "dtype": "int8"}] * 2}, "duplicate input columns"),
        ({"kind": "tensor", "inputs": [{"name": None, "dtype": "int8"}]}, "with a shape"),
        ({"inputs": [{"dtype": "int8"}]}, "needs a name"),
        ({"inputs": [{"name": "a", "dtype": "int8", "shape": [-2]}]}, "shape must hold"),
        ({"inputs": [{"name": "a", "dtype": "int8"}], "extra": 1}, "unknown keys"),
    ],
)
def test_from_dict_refuses_bad_documents(doc: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Signature.from_dict(doc)


def test_validate_accepts_every_input_form(sig: Signature) -> None:
    expected = pd.DataFrame({"age": [52], "amount": [3.0], "country": ["fr"]})
    forms = [
        pd.DataFrame({"age": [52], "amount": [3], "country": ["fr"]}),
        {"age": [52], "amount": [3], "country": ["fr"]},
        {"age": 52, "amount": 3, "country": "fr"},
        [{"age": 52, "amount": 3, "country": "fr"}],
        np.array([[52, 3, "fr"]], dtype=object),
    ]
    for data in forms:
        out = sig.validate(data)
        assert list(out.columns) == ["age", "amount", "country"]
        assert out["age"].dtype == np.int64 and out["amount"].dtype == np.float64
        pd.testing.assert_frame_equal(out.reset_index(drop=True), expected, check_dtype=False)


def test_validate_safe_casts(sig: Signature) -> None:
    out = sig.validate({"age": [52.0], "amount": [True], "country": ["fr"]})
    assert out["age"].tolist() == [52] and out["age"].dtype == np.int64
    assert out["amount"].tolist() == [1.0]


def test_validate_orders_columns(sig: Signature) -> None:
    out = sig.validate({"country": ["fr"], "amount": [1.0], "age": [3]})
    assert list(out.columns) == ["age", "amount", "country"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"age": [1], "amount": ["abc"], "country": ["fr"]},
            r"column 'amount': expected float64, got string values \('abc'\)",
        ),
        (
            {"age": ["12"], "amount": [1.0], "country": ["fr"]},
            r"column 'age': expected int64, got string values \('12'\)",
        ),
        (
            {"age": [1.5], "amount": [1.0], "country": ["fr"]},
            r"column 'age': expected int64, got float values with a fraction \(1.5\)",
        ),
        (
            {"age": [1], "amount": [1.0], "country": [3]},
            r"column 'country': expected string, got int values \(3\)",
        ),
        ({"age": [1], "amount": [1.0]}, "missing column 'country'"),
        ({"amount": [1.0]}, "missing columns 'age', 'country'"),
        (
            {"age": [1], "amount": [1.0], "country": ["fr"], "agee": [2]},
            r"unexpected column\(s\) 'agee'",
        ),
        (
            {"age": [1, None], "amount": [1.0, 2.0], "country": ["fr", "de"]},
            r"column 'age': NaN not allowed \(row 1\); the column is int64",
        ),
        (
            [{"age": 1, "amount": 1.0, "country": "fr"}, {"amount": 1.0, "country": "de"}],
            "column 'age': NaN not allowed",
        ),
        ({"age": [1, 2], "amount": [1.0], "country": ["fr"]}, "different lengths"),
        (np.zeros((2, 2)), r"input shape \(2, 2\) does not match the 3 columns"),
        ("age=1", "cannot read input of type str"),
        (
            pd.DataFrame([[1, 2.0, "fr"]], columns=["age", "age", "country"]),
            "duplicate input columns 'age'",
        ),
    ],
)
def test_validate_errors_name_the_problem(sig: Signature, data: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sig.validate(data)


def test_nan_allowed_in_float_columns(sig: Signature) -> None:
    out = sig.validate({"age": [1], "amount": [None], "country": ["fr"]})
    assert np.isnan(out["amount"].iloc[0])


def test_optional_column_may_be_absent() -> None:
    s = Signature(inputs=(ColumnSpec("a", "int64"), ColumnSpec("b", "float64", optional=True)))
    assert list(s.validate({"a": [1]}).columns) == ["a"]


def test_int_range_and_bool_columns() -> None:
    s = Signature(inputs=(ColumnSpec("small", "int8"), ColumnSpec("ok", "bool")))
    assert s.validate({"small": [5], "ok": [True]})["small"].dtype == np.int8
    with pytest.raises(InvalidArgument, match="column 'small': value 300 is out of range for int8"):
        s.validate({"small": [300], "ok": [True]})
    with pytest.raises(InvalidArgument, match="column 'ok': expected bool, got int64 values"):
        s.validate({"small": [1], "ok": [1]})


def test_datetime_column_accepts_iso_text() -> None:
    s = Signature(inputs=(ColumnSpec("when", "datetime"),))
    out = s.validate({"when": ["2024-01-02T03:04:05"]})
    assert out["when"].iloc[0] == pd.Timestamp("2024-01-02T03:04:05")
    with pytest.raises(InvalidArgument, match="column 'when': expected datetime"):
        s.validate({"when": ["yesterday"]})


def test_tensor_validation() -> None:
    s = infer_signature(np.zeros((2, 4), dtype="float32"))
    out = s.validate([[1, 2, 3, 4]])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (1, 4)
    with pytest.raises(InvalidArgument, match=r"input shape \(3, 5\) does not match \(-1, 4\)"):
        s.validate(np.zeros((3, 5)))
    with pytest.raises(InvalidArgument, match=r"input shape \(4,\) does not match \(-1, 4\)"):
        s.validate(np.zeros(4))
    with pytest.raises(InvalidArgument, match=r"input: expected float32, got string values"):
        s.validate(np.array([["a", "b", "c", "d"]]))
    with pytest.raises(InvalidArgument, match="rows of different lengths"):
        s.validate([[1, 2, 3, 4], [1]])
    with pytest.raises(InvalidArgument, match="not named columns"):
        s.validate({"a": [1]})


def test_tensor_int_refuses_nan_and_fractions() -> None:
    s = Signature(inputs=(ColumnSpec(None, "int64", shape=(-1, 2)),), kind="tensor")
    assert s.validate(np.array([[1.0, 2.0]])).dtype == np.int64
    with pytest.raises(InvalidArgument, match="NaN not allowed"):
        s.validate(np.array([[1.0, np.nan]]))
    with pytest.raises(InvalidArgument, match="fraction"):
        s.validate(np.array([[1.0, 2.5]]))


def test_float_overflow_refused() -> None:
    s = Signature(inputs=(ColumnSpec("x", "float16"),))
    with pytest.raises(InvalidArgument, match="column 'x': value 1e\\+300 does not fit in float16"):
        s.validate({"x": [1e300]})


def test_doctests() -> None:
    assert doctest.testmod(signature_module).failed == 0


def test_all_float_signature_takes_numeric_array_columns_as_one_block() -> None:
    """OIP tensors arrive as one numpy array per column: same answers as lists, one block."""
    sig = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))
    arrays = sig.validate({"b": np.array([3, 4], dtype="int64"), "a": np.array([0.5, np.nan])})
    lists = sig.validate({"b": [3, 4], "a": [0.5, float("nan")]})
    pd.testing.assert_frame_equal(arrays, lists)
    assert list(arrays.columns) == ["a", "b"] and (arrays.dtypes == np.float64).all()
    with pytest.raises(InvalidArgument, match="different lengths"):
        sig.validate({"a": np.array([1.0, 2.0]), "b": np.array([1.0])})
    with pytest.raises(InvalidArgument, match="'b'"):
        sig.validate({"a": np.array([1.0]), "b": np.array(["x"], dtype=object)})
    narrow = Signature(inputs=(ColumnSpec("a", "float32"),))
    with pytest.raises(InvalidArgument, match="'a'"):  # float64 beyond float32: careful path
        narrow.validate({"a": np.array([1e300])})

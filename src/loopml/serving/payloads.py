"""The plain JSON routes' request formats: ``/predict`` and MLflow's ``/invocations``.

``/predict`` takes records (``[{...}, ...]`` or ``{"records": [...]}``), columns
(``{"columns": {"a": [...]}}``) or rows of a tensor (``{"instances": [...]}``).
``/invocations`` takes what MLflow's scoring server takes, so existing clients keep working:
``dataframe_split`` (``{columns, data, index?}``), ``dataframe_records``, ``instances``, ``inputs``
(a dict of columns or a tensor), or a ``text/csv`` body with a header row. Both answer
``{"predictions": [...]}``, a DataFrame output as one record per row, as MLflow 2 and 3 do.

>>> decode_invocations({"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}).data
{'a': [1, 3], 'b': [2, 4]}
>>> decode_predict([{"a": 1}]).data
[{'a': 1}]
"""

from __future__ import annotations

import io
from typing import Any

from loopml.errors import InvalidArgument
from loopml.serving.protocol import Decoded

_PREDICT_KEYS = ("records", "columns", "instances")
_MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


def decode_predict(payload: Any) -> Decoded:
    """A ``/predict`` body as model input (records, columns or tensor rows)."""
    if isinstance(payload, list):
        return Decoded(_rows(payload, "the request"))
    if not isinstance(payload, dict):
        raise InvalidArgument(
            "send a list of records, or an object with 'records', 'columns' or 'instances'"
        )
    key = _only_key(payload, _PREDICT_KEYS, ())
    value = payload[key]
    if key == "columns":
        if not isinstance(value, dict) or not value:
            raise InvalidArgument("'columns' must be an object of column name -> list of values")
        return Decoded(value)
    return Decoded(_rows(value, repr(key)))


def decode_invocations(payload: Any) -> Decoded:
    """An MLflow scoring request (JSON) as model input."""
    if not isinstance(payload, dict):
        raise InvalidArgument(
            "send an object with one of 'dataframe_split', 'dataframe_records', 'instances' "
            "or 'inputs' (the MLflow scoring format)"
        )
    key = _only_key(payload, _MLFLOW_KEYS, ("params",))
    params = payload.get("params")
    if params:
        raise InvalidArgument("this model takes no inference 'params'")
    value = payload[key]
    if key == "dataframe_split":
        return Decoded(_split_frame(value))
    if key == "inputs" and isinstance(value, dict):
        if not value:
            raise InvalidArgument("'inputs' holds no columns")
        return Decoded(value)
    return Decoded(_rows(value, repr(key)))


def decode_csv(body: bytes) -> Decoded:
    """A ``text/csv`` body with a header row, as a DataFrame (MLflow reads CSV with pandas too)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(body), encoding="utf-8")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as e:
        raise InvalidArgument(f"unreadable CSV: {str(e)[:200]}") from e
    if frame.empty:
        raise InvalidArgument("the CSV holds no rows")
    return Decoded(frame)


def predictions(output: Any) -> Any:
    """Model output as the ``predictions`` value: arrays stay arrays (orjson writes them)."""
    if hasattr(output, "columns"):  # a DataFrame: one record per row
        return output.to_dict(orient="records")
    if hasattr(output, "to_numpy"):  # a Series
        return output.to_numpy()
    if isinstance(output, dict):
        return {str(k): predictions(v) for k, v in output.items()}
    return output


def _only_key(payload: dict[str, Any], keys: tuple[str, ...], extra: tuple[str, ...]) -> str:
    present = [k for k in keys if k in payload]
    unknown = sorted(set(payload) - set(keys) - set(extra))
    if unknown or len(present) != 1:
        raise InvalidArgument(
            f"give exactly one of {', '.join(repr(k) for k in keys)}"
            + (f"; unknown fields {unknown}" if unknown else "")
        )
    return present[0]


def _rows(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidArgument(f"{what} must be a list of rows")
    if not value:
        raise InvalidArgument(f"{what} holds no rows")
    return value


def _split_frame(value: Any) -> dict[str, list[Any]] | list[Any]:
    if not isinstance(value, dict) or "data" not in value:
        raise InvalidArgument("'dataframe_split' must be an object with 'columns' and 'data'")
    unknown = set(value) - {"columns", "data", "index"}
    if unknown:
        raise InvalidArgument(f"'dataframe_split' has unknown fields {sorted(unknown)}")
    columns, data = value.get("columns"), _rows(value["data"], "'dataframe_split.data'")
    if columns is None:  # no names: rows of a tensor, or of the columns in signature order
        return data
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidArgument("'dataframe_split.columns' must be a list of names")
    if len(set(columns)) != len(columns):
        raise InvalidArgument("'dataframe_split.columns' names a column twice")
    width = len(columns)
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            raise InvalidArgument(
                f"'dataframe_split.data' row {i} must be a list of {width} values"
            )
    return {c: [row[j] for row in data] for j, c in enumerate(columns)}

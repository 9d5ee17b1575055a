"""The Open Inference Protocol V2 codec, and the events the inference server reports.

An OIP request names typed tensors (``{"name", "shape", "datatype", "data"}``, ``data`` flat or
nested in row-major order). :func:`decode_infer` checks each tensor (a known datatype, values of
that type, as many values as the shape holds) and turns it into what the model's signature takes:
for a *columns* signature each tensor is one column (shape ``[n]`` or ``[n, 1]``), for a *tensor*
signature the one tensor is the array. :func:`encode_outputs` writes predictions back as tensors,
and :func:`model_metadata` describes a model from its signature. Tensors sent with the binary
tensor data extension arrive here already decoded (:mod:`loopml.serving.oip_binary`), and
:class:`BinaryOutputs` says which outputs go back that way.

>>> from loopml.models.signature import ColumnSpec, Signature
>>> sig = Signature(inputs=(ColumnSpec("age", "int64"), ColumnSpec("city", "string")))
>>> d = decode_infer({"id": "r1", "inputs": [
...     {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 41]},
...     {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [["Lyon"], ["Oslo"]]}]}, sig)
>>> d.request_id, d.data["age"].tolist(), d.data["city"].tolist()
('r1', [30, 41], ['Lyon', 'Oslo'])
>>> encode_outputs(np.array([0.5, 1.0], dtype="float32"), ())[0]["datatype"]
'FP32'
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np

from loopml.errors import InvalidArgument

if TYPE_CHECKING:
    from loopml.models.signature import ColumnSpec, Signature

OIP_DTYPES: dict[str, str] = {
    "BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
    "FP32": "float32", "FP64": "float64", "BYTES": "object",
}  # fmt: skip
"""OIP datatype -> numpy dtype of the decoded tensor (BYTES become Python strings)."""

_TO_OIP = {v: k for k, v in OIP_DTYPES.items() if k != "BYTES"}
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_TENSOR_KEYS = frozenset({"name", "shape", "datatype", "data", "parameters"})
_MAX_DIMS = 32


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    """One answered inference request (or a shadow model's answer to it), for the prediction log.

    ``inputs`` is the request's data as sent (records, columns or nested lists; the raw payload for
    a request that was refused), ``outputs`` its predictions (``None`` on failure), both JSON-able.
    """

    request_id: str
    model: str
    version: str
    route: str
    inputs: Any
    outputs: Any
    latency_ms: float
    timestamp_ms: int
    status: int
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """The ground truth of an earlier request, sent later by the caller (``POST /feedback``)."""

    request_id: str
    ground_truth: Any
    deployment: str | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class BinaryOutputs:
    """Which outputs an OIP answer sends as binary data (:mod:`loopml.serving.oip_binary`): all
    when ``default`` (the request's ``binary_data_output``) unless an output's own
    ``binary_data`` in ``overrides`` says otherwise."""

    default: bool
    overrides: Mapping[str, bool]

    def __contains__(self, name: object) -> bool:
        return self.overrides.get(name, self.default) if isinstance(name, str) else False


@dataclass(frozen=True, slots=True)
class Decoded:
    """A request turned into model input: ``data`` is what ``Signature.validate`` takes;
    ``binary`` (OIP only) the outputs to answer as binary data, ``None`` for none."""

    data: Any
    request_id: str | None = None
    outputs: tuple[str, ...] | None = None
    binary: BinaryOutputs | None = None


def clean_request_id(value: str | None) -> str:
    """``value`` if it is a sane request id (letters, digits, ``._:-``, <= 128), else a new one."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    return _new_ids.next()


class _RandomIds:
    """New request ids: 32 hex digits of ``os.urandom``, read 4 KiB at a time (one system call
    per 256 ids instead of one per request). A forked child starts with fresh bytes."""

    _BATCH = 256 * 16

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._bytes, self._at = b"", 0

    def next(self) -> str:
        with self._lock:
            if self._at >= len(self._bytes):
                self._bytes, self._at = os.urandom(self._BATCH), 0
            at = self._at
            self._at = at + 16
            return self._bytes[at : at + 16].hex()


_new_ids = _RandomIds()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_ids._reset)


# -- requests ----------------------------------------------------------------------------------


def decode_infer(payload: Any, signature: Signature | None) -> Decoded:
    """Check an OIP inference request and turn its tensors into model input."""
    if not isinstance(payload, dict):
        raise InvalidArgument("an inference request must be a JSON object with 'inputs'")
    unknown = set(payload) - {"id", "parameters", "inputs", "outputs"}
    if unknown:
        raise InvalidArgument(f"unknown fields in the inference request: {sorted(unknown)}")
    rid = payload.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidArgument("'id' must be a string")
    params = payload.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidArgument("'parameters' must be an object")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("'inputs' must be a non-empty list of tensors")
    tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
    names = [n for n, _ in tensors]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"input names must be unique, got {names}")
    outputs, binary = _requested_outputs(payload.get("outputs"), params)
    if (signature is not None and signature.kind == "tensor") or (
        signature is None and len(tensors) == 1
    ):
        if len(tensors) != 1:
            raise InvalidArgument(f"the model takes one input tensor, got {len(tensors)}")
        return Decoded(tensors[0][1], rid, outputs, binary)
    specs = {c.name: c for c in signature.inputs} if signature is not None else {}
    columns = {name: _column(name, arr, specs.get(name)) for name, arr in tensors}
    return Decoded(columns, rid, outputs, binary)


def valid_shape(shape: Any) -> TypeGuard[list[int]]:
    """Is ``shape`` a list of 1 to 32 non-negative integers?"""
    return (
        isinstance(shape, list) and 0 < len(shape) <= _MAX_DIMS
        and not any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape)
    )  # fmt: skip


def unknown_datatype(where: str, datatype: Any) -> InvalidArgument:
    return InvalidArgument(
        f"{where}: unknown datatype {datatype!r:.40}; use one of {', '.join(OIP_DTYPES)}"
    )


def _tensor(t: Any, i: int) -> tuple[str, np.ndarray]:
    if not isinstance(t, dict):
        raise InvalidArgument(f"inputs[{i}] must be an object with name, shape, datatype and data")
    unknown = set(t) - _TENSOR_KEYS
    if unknown:
        raise InvalidArgument(f"inputs[{i}]: unknown fields {sorted(unknown)}")
    name, shape, datatype = t.get("name"), t.get("shape"), t.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"inputs[{i}]: 'name' must be a non-empty string")
    where = f"input {name!r}"
    if datatype not in OIP_DTYPES:
        raise unknown_datatype(where, datatype)
    if not valid_shape(shape):
        raise InvalidArgument(f"{where}: 'shape' must be a list of 1 to 32 non-negative integers")
    data = t.get("data")
    if isinstance(data, np.ndarray):  # binary data, decoded by oip_binary.read_request
        arr = data
    elif isinstance(data, list):
        arr = _array(where, datatype, data)
    elif isinstance(t.get("parameters"), dict) and "binary_data_size" in t["parameters"]:
        raise InvalidArgument(
            f"{where}: binary_data_size is set but the request has no "
            "Inference-Header-Content-Length header, so its body is all JSON"
        )
    else:
        raise InvalidArgument(f"{where}: 'data' must be a list (flat or nested, row-major)")
    if arr.size != math.prod(shape):
        raise InvalidArgument(
            f"{where}: shape {shape} holds {math.prod(shape)} values but data has {arr.size}"
        )
    return name, arr.reshape(shape)


def _array(where: str, datatype: str, data: list[Any]) -> np.ndarray:
    try:
        if datatype == "BYTES":
            arr = np.array(data, dtype=object)
            if any(not isinstance(v, str) for v in arr.ravel().tolist()):
                raise InvalidArgument(f"{where}: BYTES data must hold strings")
            return arr
        arr = np.asarray(data)
        target = np.dtype(OIP_DTYPES[datatype])
        if arr.dtype.kind == "O" and target.kind == "f":  # null: a missing value
            arr = np.array(data, dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{where}: data is not a rectangular array of values ({e})") from e
    kind = arr.dtype.kind
    if target.kind == "b" or kind == "b":
        if target.kind != kind:
            raise InvalidArgument(f"{where}: {datatype} data must hold {_what(target)}")
        return arr
    if kind not in "iuf":
        raise InvalidArgument(f"{where}: {datatype} data must hold {_what(target)}")
    if target.kind in "iu":
        return _integers(where, datatype, target, arr, data)
    with np.errstate(over="ignore"):
        cast = arr.astype(target)
    if kind == "f" and (np.isfinite(arr) & ~np.isfinite(cast)).any():
        raise InvalidArgument(f"{where}: a value does not fit in {datatype}")
    return cast


def _integers(
    where: str, datatype: str, target: np.dtype, arr: np.ndarray, data: list[Any]
) -> np.ndarray:
    info = np.iinfo(target)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.floor(arr)).any():
            raise InvalidArgument(f"{where}: {datatype} data must hold whole numbers")
        if arr.size and np.abs(arr).max() >= 2.0**53:  # big ints that numpy turned to floats
            exact = np.array(data, dtype=object)
            if all(type(v) is int for v in exact.ravel().tolist()):
                arr = exact
        if arr.dtype.kind == "f":  # float bounds, exact as powers of two
            low, high = float(info.min), 2.0**info.bits / (2 if info.min else 1)
            if arr.size and (arr.min() < low or arr.max() >= high):
                raise InvalidArgument(f"{where}: a value is out of range for {datatype}")
            return arr.astype(target)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise InvalidArgument(f"{where}: a value is out of range for {datatype}")
    return arr.astype(target)


def _what(target: np.dtype) -> str:
    return {"b": "true/false values", "f": "numbers"}.get(target.kind, "integers")


def _column(name: str, arr: np.ndarray, spec: ColumnSpec | None) -> Any:
    if spec is not None and spec.shape is not None:  # array-valued cells: one array per row
        return list(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim != 1:
        raise InvalidArgument(
            f"input {name!r}: a column takes shape [n] or [n, 1], got {list(arr.shape)}"
        )
    return arr


def _requested_outputs(
    outputs: Any, params: dict[str, Any] | None
) -> tuple[tuple[str, ...] | None, BinaryOutputs | None]:
    """The outputs asked for (``None``: all), and which of them go back as binary data."""
    default = params.get("binary_data_output", False) if params else False
    if not isinstance(default, bool):
        raise InvalidArgument("parameters.binary_data_output must be true or false")
    if outputs is None:
        return None, BinaryOutputs(True, {}) if default else None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidArgument("'outputs' must be a list of objects with a 'name'")
    overrides: dict[str, bool] = {}
    for o in outputs:
        p = o.get("parameters")
        if p is None:
            continue
        if not isinstance(p, dict):
            raise InvalidArgument(f"output {o['name']!r:.80}: 'parameters' must be an object")
        flag = p.get("binary_data")
        if flag is not None:
            if not isinstance(flag, bool):
                raise InvalidArgument(
                    f"output {o['name']!r:.80}: parameters.binary_data must be true or false"
                )
            overrides[o["name"]] = flag
    binary = BinaryOutputs(default, overrides) if default or any(overrides.values()) else None
    return tuple(o["name"] for o in outputs), binary


# -- responses ---------------------------------------------------------------------------------


def encode_outputs(
    output: Any, specs: Sequence[ColumnSpec], requested: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Predictions as OIP output tensors (one per DataFrame column, else one)."""
    if hasattr(output, "columns"):  # a DataFrame
        named = [(str(c), output[c].to_numpy()) for c in output.columns]
    elif isinstance(output, dict):
        named = [(str(k), np.asarray(v)) for k, v in output.items()]
    else:
        name = specs[0].name if len(specs) == 1 and specs[0].name else "predict"
        named = [(name, np.asarray(output))]
    if requested is not None:
        known = {n for n, _ in named}
        missing = [r for r in requested if r not in known]
        if missing:
            raise InvalidArgument(f"unknown outputs {missing}; the model has {sorted(known)}")
        named = [(n, a) for n, a in named if n in requested]
    return [_output(name, arr) for name, arr in named]


def _output(name: str, arr: np.ndarray) -> dict[str, Any]:
    kind = arr.dtype.kind
    datatype = _TO_OIP.get(arr.dtype.name)
    flat: Any = arr.ravel()
    if datatype is None:
        datatype = "BYTES"
        if kind == "M":
            flat = np.datetime_as_string(flat).tolist()
        else:
            flat = [v if isinstance(v, str) else str(v) for v in flat.tolist()]
    return {"name": name, "shape": list(arr.shape), "datatype": datatype, "data": flat}


def model_metadata(
    name: str, versions: Sequence[str], flavor: str, signature: Signature | None
) -> dict[str, Any]:
    """The OIP model metadata document (``GET /v2/models/{name}``)."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    if signature is not None:
        tensor = signature.kind == "tensor"
        for i, c in enumerate(signature.inputs):
            shape = list(c.shape or ()) if tensor else [-1, *(c.shape or ())]
            inputs.append(_meta(c.name or f"input-{i}", c.dtype, shape))
        single = len(signature.outputs) == 1
        for i, c in enumerate(signature.outputs):
            label = c.name or ("predict" if single else f"output-{i}")
            outputs.append(_meta(label, c.dtype, list(c.shape or (-1,))))
    return {
        "name": name,
        "versions": list(versions),
        "platform": f"loopml-{flavor}",
        "inputs": inputs,
        "outputs": outputs,
    }


def _meta(name: str, dtype: str, shape: list[int]) -> dict[str, Any]:
    # string, bytes and datetime values travel as text
    return {"name": name, "datatype": _TO_OIP.get(dtype, "BYTES"), "shape": shape}

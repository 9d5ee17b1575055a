"""ONNX flavor: the model's bytes (``model.onnx``), run by onnxruntime on the CPU.

Models that keep tensors in external data files are refused: their paths would let a package
read files outside itself. A scikit-learn model can be converted with skl2onnx first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.errors import IntegrityError, InvalidArgument
from loopml.models.flavors import SavedModel, distribution_version, need, pinned

if TYPE_CHECKING:
    from loopml.models.package import Manifest

MODEL_FILE = "model.onnx"
PROBA_OUTPUTS = ("probabilities", "output_probability")
_NUMPY_OF = {
    "tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
    "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int16)": "int16",
    "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(bool)": "bool",
    "tensor(string)": "object",
}  # fmt: skip


def save(model: Any, directory: Path) -> SavedModel:
    """Write the serialized model (an ``onnx.ModelProto`` or its bytes)."""
    if isinstance(model, bytes | bytearray | memoryview):
        data = bytes(model)
    elif callable(getattr(model, "SerializeToString", None)):
        data = model.SerializeToString()
    else:
        raise InvalidArgument(
            f"the onnx flavor saves a ModelProto or bytes, not a {type(model).__name__}"
        )
    _check_self_contained(data)
    (directory / MODEL_FILE).write_bytes(data)
    version = distribution_version("onnx")[1]
    reqs = (pinned("onnxruntime"),)
    return SavedModel("onnx", version, (MODEL_FILE,), {}, reqs)


def load(directory: Path, manifest: Manifest, *, trust: bool, recorded_digest: str | None) -> Any:
    """An onnxruntime ``InferenceSession`` on the CPU, built from the verified bytes."""
    data = (directory / MODEL_FILE).read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest.files.get(MODEL_FILE):
        raise IntegrityError(f"model package file '{MODEL_FILE}' was changed after it was logged")
    _check_self_contained(data)
    return _session(data)


def predict(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """The model's first output."""
    session = _as_session(model)
    return session.run([session.get_outputs()[0].name], _feeds(session, data))[0]


def predict_proba(model: Any, data: Any, metadata: Mapping[str, Any]) -> Any:
    """The probabilities output (``probabilities`` or ``output_probability``) as an array."""
    import numpy as np

    session = _as_session(model)
    names = [o.name for o in session.get_outputs()]
    name = next((n for n in PROBA_OUTPUTS if n in names), None)
    if name is None:
        raise InvalidArgument(f"the ONNX model has no probabilities output (outputs: {names})")
    out = session.run([name], _feeds(session, data))[0]
    if isinstance(out, list):  # ZipMap: one {class: probability} dict per row
        return np.array([[row[k] for k in sorted(row)] for row in out])
    return np.asarray(out)


def _session(data: bytes) -> Any:
    ort = need("onnxruntime", "loopml[onnx]")
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _as_session(model: Any) -> Any:
    if callable(getattr(model, "get_inputs", None)):
        return model
    if isinstance(model, bytes | bytearray | memoryview):
        return _session(bytes(model))
    return _session(model.SerializeToString())


def _feeds(session: Any, data: Any) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    inputs = session.get_inputs()
    if len(inputs) == 1:
        values = data.to_numpy() if isinstance(data, pd.DataFrame) else np.asarray(data)
        return {inputs[0].name: values.astype(_NUMPY_OF.get(inputs[0].type, values.dtype))}
    if not isinstance(data, pd.DataFrame):
        names = [i.name for i in inputs]
        raise InvalidArgument(f"the ONNX model takes several inputs {names}; give named columns")
    feeds = {}
    for spec in inputs:
        if spec.name not in data.columns:
            raise InvalidArgument(f"the ONNX model needs input column {spec.name!r}")
        column = data[spec.name].to_numpy().reshape(-1, 1)
        feeds[spec.name] = column.astype(_NUMPY_OF.get(spec.type, column.dtype))
    return feeds


def _check_self_contained(data: bytes) -> None:
    onnx = need("onnx", "loopml[onnx]")
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as e:
        raise InvalidArgument(f"'{MODEL_FILE}' is not a valid ONNX model: {e}") from e
    external = onnx.TensorProto.EXTERNAL
    graphs = [proto.graph]
    nodes = [node for function in proto.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            nodes.extend(graph.node)
            tensors = [*graph.initializer]
            tensors += [
                t for sparse in graph.sparse_initializer for t in (sparse.values, sparse.indices)
            ]
        else:
            tensors = []
            for attr in nodes.pop().attribute:
                tensors += [attr.t, *attr.tensors]
                tensors += [
                    t
                    for sp in (attr.sparse_tensor, *attr.sparse_tensors)
                    for t in (sp.values, sp.indices)
                ]
                graphs += [attr.g, *attr.graphs] if attr.HasField("g") else [*attr.graphs]
        for tensor in tensors:
            if tensor.data_location == external:
                raise InvalidArgument(
                    f"ONNX tensor {tensor.name!r} keeps its data in an external file; loopml "
                    "packages hold self-contained models only"
                )

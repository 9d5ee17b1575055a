"""The Open Inference Protocol's binary tensor data extension (HTTP/REST), both ways.

A request with binary tensors is a JSON header of ``Inference-Header-Content-Length`` bytes, then
the raw data of every input whose ``parameters.binary_data_size`` is set, in the order of
``inputs``: little-endian, row-major, no padding; BOOL one byte (0 or 1) per element; BYTES
elements each a 4-byte little-endian length and that many bytes (UTF-8 text here).
:func:`read_request` checks the framing and puts each binary tensor, decoded, where its JSON
``data`` would be, so :func:`~loopml.serving.protocol.decode_infer` checks it like any tensor.
:func:`binary_outputs` moves the outputs a caller asked for as binary (``binary_data`` on an
output, ``binary_data_output`` for all) out of the JSON answer into raw blobs.

Every framing mistake is an :class:`~loopml.errors.InvalidArgument` (a 400), never a crash: a
header longer than the body, sizes that do not add up to the body, negative or non-integer
sizes, BYTES prefixes that run past their tensor, element counts that disagree with the shape.
Nothing is read beyond the body, so the request body limit bounds what is decoded.

>>> import numpy as np
>>> head = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",'
>>> head += b' "parameters": {"binary_data_size": 8}}]}'
>>> body = head + np.array([1.5, -2.0], dtype="<f4").tobytes()
>>> read_request(body, str(len(head)))["inputs"][0]["data"].tolist()
[1.5, -2.0]
>>> outputs = [{"name": "y", "shape": [2], "datatype": "INT64", "data": np.array([1, 0])}]
>>> blobs = binary_outputs(outputs, BinaryOutputs(True, {}))
>>> outputs[0]["parameters"], len(blobs[0])
({'binary_data_size': 16}, 16)
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import orjson

from loopml.errors import InvalidArgument
from loopml.serving.protocol import OIP_DTYPES, BinaryOutputs, unknown_datatype, valid_shape

__all__ = ["HEADER", "BinaryOutputs", "binary_outputs", "decode_tensor", "encode_tensor",
           "read_request"]  # fmt: skip

HEADER = "inference-header-content-length"
"""The request and response header that gives the length of the JSON part of the body."""

_LENGTH = re.compile(r"[0-9]{1,18}")
_PREFIX = 4  # bytes of a BYTES element's length


def read_request(body: bytes, header_length: str) -> Any:
    """The JSON header of ``body`` with each binary input's ``data`` decoded into an array."""
    if not _LENGTH.fullmatch(header_length.strip()):
        raise InvalidArgument(
            f"Inference-Header-Content-Length must be a non-negative integer, got "
            f"{header_length[:40]!r}"
        )
    size = int(header_length)
    if size > len(body):
        raise InvalidArgument(
            f"Inference-Header-Content-Length is {size} but the body has only {len(body)} bytes"
        )
    view = memoryview(body)
    try:
        payload = orjson.loads(view[:size])
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"malformed JSON header: {e}") from None
    _attach(payload, view[size:])
    return payload


def _attach(payload: Any, binary: memoryview) -> None:
    inputs = payload.get("inputs") if isinstance(payload, dict) else None
    at = 0
    for i, t in enumerate(inputs if isinstance(inputs, list) else ()):
        params = t.get("parameters") if isinstance(t, dict) else None
        if params is None:
            continue  # a JSON tensor, or not a tensor at all: decode_infer says what is wrong
        where = f"input {t.get('name')!r:.80}"
        if not isinstance(params, dict):
            raise InvalidArgument(f"inputs[{i}]: 'parameters' must be an object")
        if "binary_data_size" not in params:
            continue
        size = params["binary_data_size"]
        if type(size) is not int or size < 0:
            raise InvalidArgument(
                f"{where}: binary_data_size must be a non-negative integer, got {size!r:.40}"
            )
        if "data" in t:
            raise InvalidArgument(f"{where}: has both 'data' and binary_data_size; send one")
        left = len(binary) - at
        if size > left:
            raise InvalidArgument(
                f"{where}: binary_data_size is {size} but only {left} bytes of binary data are left"
            )
        t["data"] = decode_tensor(where, t.get("datatype"), t.get("shape"), binary[at : at + size])
        at += size
    if at != len(binary):
        raise InvalidArgument(
            f"the body holds {len(binary)} bytes after the JSON header but the inputs' "
            f"binary_data_size add up to {at}"
        )


def decode_tensor(where: str, datatype: Any, shape: Any, raw: memoryview) -> np.ndarray:
    """One tensor's binary data as a flat, writable array (BYTES: Python strings)."""
    if datatype not in OIP_DTYPES:
        raise unknown_datatype(where, datatype)
    if not valid_shape(shape):
        raise InvalidArgument(f"{where}: 'shape' must be a list of 1 to 32 non-negative integers")
    count = math.prod(shape)
    if datatype == "BYTES":
        return _strings(where, shape, count, raw)
    dtype = np.dtype(OIP_DTYPES[datatype]).newbyteorder("<")
    if count * dtype.itemsize != len(raw):
        raise InvalidArgument(
            f"{where}: shape {shape} of {datatype} takes {count * dtype.itemsize} bytes but "
            f"binary_data_size is {len(raw)}"
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, np.uint8)
        if octets.size and octets.max() > 1:
            raise InvalidArgument(f"{where}: BOOL data must be bytes of 0 or 1")
        return octets.astype(bool)
    return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="))  # a copy, native order


def _strings(where: str, shape: list[int], count: int, raw: memoryview) -> np.ndarray:
    values: list[str] = []
    at, end = 0, len(raw)
    while at < end:
        if len(values) == count:
            raise InvalidArgument(
                f"{where}: shape {shape} holds {count} values but the BYTES data has more"
            )
        if end - at < _PREFIX:
            raise InvalidArgument(f"{where}: a BYTES length prefix is cut off at byte {at}")
        n = int.from_bytes(raw[at : at + _PREFIX], "little")
        at += _PREFIX
        if n > end - at:
            raise InvalidArgument(
                f"{where}: BYTES element {len(values)} has length {n} but only {end - at} bytes "
                "are left"
            )
        try:
            values.append(str(raw[at : at + n], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidArgument(f"{where}: BYTES element {len(values)} is not UTF-8") from None
        at += n
    if len(values) != count:
        raise InvalidArgument(
            f"{where}: shape {shape} holds {count} values but the BYTES data has {len(values)}"
        )
    arr = np.empty(count, dtype=object)
    arr[:] = values
    return arr


def encode_tensor(datatype: str, data: Any) -> bytes:
    """A tensor's flat ``data`` (array or list) as binary data of ``datatype``."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for v in data:
            raw = (v if isinstance(v, str) else str(v)).encode("utf-8")
            parts += (len(raw).to_bytes(_PREFIX, "little"), raw)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.asarray(data, dtype=bool).astype(np.uint8).tobytes()
    dtype = np.dtype(OIP_DTYPES[datatype]).newbyteorder("<")
    return np.ascontiguousarray(data, dtype=dtype).tobytes()


def binary_outputs(outputs: list[dict[str, Any]], binary: BinaryOutputs) -> list[bytes]:
    """Move the data of the outputs ``binary`` names into blobs (in order), leaving
    ``parameters.binary_data_size`` in their place; the others stay JSON."""
    blobs: list[bytes] = []
    for out in outputs:
        if out["name"] in binary:
            raw = encode_tensor(out["datatype"], out.pop("data"))
            out["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
    return blobs

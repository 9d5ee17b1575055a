"""Model signatures: what a model takes and returns, and the check every prediction goes through.

A :class:`Signature` is either *columns* (named, typed columns of a table) or *tensor* (one typed
array whose shape may have variable dimensions, written ``-1``). :meth:`Signature.validate` turns
what a caller sent (a DataFrame, a dict of columns, a list of records, a numpy array) into the
input the model expects, or raises :class:`~loopml.errors.InvalidArgument` naming the column and
the problem. Safe casts happen (int to float, float64 to float32, a float column whose values are
all whole to int); lossy ones are refused (a fraction to int, text to a number).

>>> import pandas as pd
>>> sig = infer_signature(pd.DataFrame({"age": [30, 41], "amount": [9.5, 12.0]}))
>>> [(c.name, c.dtype) for c in sig.inputs]
[('age', 'int64'), ('amount', 'float64')]
>>> sig.validate({"age": [52], "amount": [3]}).dtypes.tolist()
[dtype('int64'), dtype('float64')]
>>> sig.validate({"age": [52], "amount": ["abc"]})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
loopml.errors.InvalidArgument: column 'amount': expected float64, got string values ('abc')
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from loopml.errors import InvalidArgument

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")
DTYPES = ("bool", *INT_DTYPES, *FLOAT_DTYPES, "string", "bytes", "datetime")
"""The column types a signature can name."""

Kind = Literal["columns", "tensor"]


@dataclass(frozen=True)
class ColumnSpec:
    """One input or output: a named column, or a (possibly unnamed) tensor with a shape."""

    name: str | None
    dtype: str
    shape: tuple[int, ...] | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise InvalidArgument(f"column name must be a non-empty string, got {self.name!r}")
        if self.dtype not in DTYPES:
            raise InvalidArgument(
                f"column {self.name!r}: unknown dtype {self.dtype!r}; "
                f"use one of {', '.join(DTYPES)}"
            )
        if self.shape is not None:
            shape = tuple(self.shape)
            if any(isinstance(d, bool) or not isinstance(d, int) or d < -1 for d in shape):
                raise InvalidArgument(
                    f"column {self.name!r}: shape must hold integers >= -1, got {self.shape!r}"
                )
            object.__setattr__(self, "shape", shape)

    def to_dict(self) -> dict[str, Any]:
        """This spec as plain data (for YAML and JSON)."""
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.shape is not None:
            d["shape"] = list(self.shape)
        if self.optional:
            d["optional"] = True
        return d

    @classmethod
    def from_dict(cls, d: Any) -> ColumnSpec:
        """Read a spec written by :meth:`to_dict`."""
        if not isinstance(d, Mapping) or "dtype" not in d:
            raise InvalidArgument(f"a column spec must be a mapping with a dtype, got {d!r:.80}")
        unknown = set(d) - {"name", "dtype", "shape", "optional"}
        if unknown:
            raise InvalidArgument(f"column spec has unknown keys {sorted(unknown)}")
        shape = d.get("shape")
        if shape is not None and not isinstance(shape, list | tuple):
            raise InvalidArgument(f"column {d.get('name')!r}: shape must be a list, got {shape!r}")
        return cls(
            name=d.get("name"),
            dtype=d["dtype"],
            shape=tuple(shape) if shape is not None else None,
            optional=bool(d.get("optional", False)),
        )


@dataclass(frozen=True)
class Signature:
    """The inputs (and outputs, and inference params) of a model; see the module docstring.

    Validation of *columns* inputs **refuses extra columns** (MLflow drops them silently): a
    column the model never sees is usually a caller's mistake (a typo, a renamed feature), so it
    is named in the error instead. Optional columns may be absent; missing values are allowed
    only in float columns.
    """

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    kind: Kind = "columns"

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "params", dict(self.params))
        if self.kind not in ("columns", "tensor"):
            raise InvalidArgument(
                f"signature kind must be 'columns' or 'tensor', not {self.kind!r}"
            )
        if not self.inputs:
            raise InvalidArgument("a signature needs at least one input")
        if self.kind == "tensor":
            if len(self.inputs) != 1 or self.inputs[0].shape is None:
                raise InvalidArgument("a tensor signature has exactly one input, with a shape")
        else:
            names = [c.name for c in self.inputs]
            if any(n is None for n in names):
                raise InvalidArgument("every input of a columns signature needs a name")
            dupes = sorted({n for n in names if names.count(n) > 1 and n is not None})
            if dupes:
                raise InvalidArgument(f"duplicate input columns {dupes}")
        _check_params(self.params)

    def to_dict(self) -> dict[str, Any]:
        """This signature as plain data (for the manifest)."""
        return {
            "kind": self.kind,
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
            "params": dict(self.params),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Signature:
        """Read a signature written by :meth:`to_dict`."""
        if not isinstance(d, Mapping):
            raise InvalidArgument(f"a signature must be a mapping, got {type(d).__name__}")
        unknown = set(d) - {"kind", "inputs", "outputs", "params"}
        if unknown:
            raise InvalidArgument(f"signature has unknown keys {sorted(unknown)}")
        inputs, outputs = d.get("inputs") or [], d.get("outputs") or []
        params = d.get("params") or {}
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise InvalidArgument("signature inputs and outputs must be lists")
        if not isinstance(params, Mapping):
            raise InvalidArgument("signature params must be a mapping")
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in inputs),
            outputs=tuple(ColumnSpec.from_dict(c) for c in outputs),
            params=dict(params),
            kind=d.get("kind", "columns"),
        )

    def validate(self, data: Any) -> pd.DataFrame | np.ndarray:
        """Check ``data`` against the inputs and return what the model should be given.

        Columns signatures accept a DataFrame, a dict of columns (lists, arrays or scalars), a
        list of record dicts, or a 2-D array with one column per input (in signature order), and
        return a DataFrame with the signature's columns in order. Tensor signatures accept an
        array-like (or a DataFrame) and return a numpy array of the declared dtype.
        """
        if self.kind == "tensor":
            return _validate_tensor(self.inputs[0], data)
        return _validate_columns(self.inputs, data)


def infer_signature(
    model_input: Any, model_output: Any = None, params: dict[str, Any] | None = None
) -> Signature:
    """Describe ``model_input`` (and ``model_output``) as a signature.

    A DataFrame, a dict of columns or a list of records gives a *columns* signature; a numpy array
    (or a list of lists) gives a *tensor* signature whose first dimension is variable.

    >>> import numpy as np
    >>> infer_signature(np.zeros((3, 4), dtype="float32")).inputs
    (ColumnSpec(name=None, dtype='float32', shape=(-1, 4), optional=False),)
    """
    kind, inputs = _describe(model_input, what="model_input")
    outputs: tuple[ColumnSpec, ...] = ()
    if model_output is not None:
        _, outputs = _describe(model_output, what="model_output")
    return Signature(inputs=inputs, outputs=outputs, params=dict(params or {}), kind=kind)


def _check_params(params: Mapping[str, Any]) -> None:
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"signature param names must be non-empty strings, got {key!r}")
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if item is not None and not isinstance(item, str | bool | numbers.Real):
                raise InvalidArgument(
                    f"signature param {key!r}: values must be strings, numbers, booleans or "
                    f"lists of them, got {type(item).__name__}"
                )


# -- inference ---------------------------------------------------------------------------------


def _describe(obj: Any, *, what: str) -> tuple[Kind, tuple[ColumnSpec, ...]]:
    import numpy as np
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        cols = tuple(ColumnSpec(str(c), _series_dtype(obj[c], str(c))) for c in obj.columns)
        return "columns", cols
    if isinstance(obj, pd.Series):
        if obj.name is None:
            return "tensor", (ColumnSpec(None, _series_dtype(obj, what), shape=(-1,)),)
        return "columns", (ColumnSpec(str(obj.name), _series_dtype(obj, str(obj.name))),)
    if isinstance(obj, Mapping) or _is_records(obj):
        return _describe(_to_frame(obj), what=what)
    if isinstance(obj, np.ndarray | list | tuple):
        arr = _as_array(obj, what)
        if arr.ndim == 0:
            raise InvalidArgument(f"{what} must hold rows, got a single value")
        return "tensor", (ColumnSpec(None, _array_dtype(arr, what), shape=(-1, *arr.shape[1:])),)
    raise InvalidArgument(
        f"cannot describe {what} of type {type(obj).__name__}: give a DataFrame, a dict of "
        "columns, a list of records or a numpy array"
    )


def _series_dtype(s: pd.Series, name: str) -> str:
    import numpy as np
    import pandas as pd

    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        return _series_dtype(pd.Series(dt.categories), name)
    if pd.api.types.is_bool_dtype(dt):
        return "bool"
    if pd.api.types.is_datetime64_any_dtype(dt):
        return "datetime"
    if pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt):
        return _known(np.dtype(getattr(dt, "numpy_dtype", dt)).name, name)
    if pd.api.types.is_string_dtype(dt) and not pd.api.types.is_object_dtype(dt):
        return "string"
    return _values_dtype(s.dropna().tolist(), name)


def _array_dtype(arr: np.ndarray, what: str) -> str:
    kind = arr.dtype.kind
    if kind == "b":
        return "bool"
    if kind in "iuf":
        return _known(arr.dtype.name, what)
    if kind == "U":
        return "string"
    if kind == "S":
        return "bytes"
    if kind == "M":
        return "datetime"
    if kind == "O":
        return _values_dtype([v for v in arr.ravel().tolist() if v is not None], what)
    raise InvalidArgument(f"{what}: unsupported dtype {arr.dtype.name}")


def _values_dtype(values: list[Any], name: str) -> str:
    import datetime as dt

    kinds: set[str] = set()
    for v in values:
        if isinstance(v, str):
            kinds.add("string")
        elif isinstance(v, bytes | bytearray):
            kinds.add("bytes")
        elif isinstance(v, bool) or type(v).__name__ == "bool_":
            kinds.add("bool")
        elif isinstance(v, numbers.Integral):
            kinds.add("int64")
        elif isinstance(v, numbers.Real):
            kinds.add("float64")
        elif isinstance(v, dt.date) or type(v).__name__ == "datetime64":
            kinds.add("datetime")
        else:
            raise InvalidArgument(f"column {name!r}: cannot type values of {type(v).__name__}")
    if kinds == {"int64", "float64"}:
        return "float64"
    if len(kinds) > 1:
        raise InvalidArgument(f"column {name!r}: mixed values ({', '.join(sorted(kinds))})")
    return kinds.pop() if kinds else "float64"  # all missing: pandas reads it as NaN floats


def _known(dtype: str, name: str) -> str:
    if dtype not in DTYPES:
        raise InvalidArgument(f"column {name!r}: unsupported dtype {dtype}")
    return dtype


# -- validation --------------------------------------------------------------------------------


def _is_records(obj: Any) -> bool:
    return isinstance(obj, list) and bool(obj) and all(isinstance(r, Mapping) for r in obj)


def _as_array(obj: Any, what: str) -> np.ndarray:
    import numpy as np

    try:
        return np.asarray(obj)
    except ValueError as e:  # ragged nested lists
        raise InvalidArgument(f"{what}: rows of different lengths ({e})") from e


def _to_frame(data: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if _is_records(data):
        return pd.DataFrame.from_records(data)
    if isinstance(data, Mapping):
        cols: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"column names must be strings, got {key!r}")
            if isinstance(value, np.ndarray) and value.ndim > 1:
                raise InvalidArgument(
                    f"column {key!r}: expected one value per row, got an array of shape "
                    f"{value.shape}"
                )
            is_seq = isinstance(value, list | tuple | np.ndarray | pd.Series)
            cols[key] = value if is_seq else [value]
        lengths = {k: len(v) for k, v in cols.items()}
        if len(set(lengths.values())) > 1:
            sizes = ", ".join(f"{k}={n}" for k, n in lengths.items())
            raise InvalidArgument(f"columns have different lengths: {sizes}")
        return pd.DataFrame(cols)
    if isinstance(data, list) and not data:
        raise InvalidArgument("the input holds no rows")
    raise InvalidArgument(
        f"cannot read input of type {type(data).__name__}: give a DataFrame, a dict of columns, "
        "a list of records or a numpy array"
    )


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _validate_columns(specs: tuple[ColumnSpec, ...], data: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    names = [str(s.name) for s in specs]
    quick = _numeric_json_fast_path(specs, data, names)
    if quick is not None:
        return quick
    if isinstance(data, np.ndarray) or (isinstance(data, list) and data and not _is_records(data)):
        arr = _as_array(data, "input")
        if arr.ndim == 1 and len(specs) == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != len(specs):
            raise InvalidArgument(
                f"input shape {arr.shape} does not match the {len(specs)} columns of the "
                f"signature ({_quoted(names)})"
            )
        frame = pd.DataFrame({n: arr[:, i] for i, n in enumerate(names)})
    else:
        frame = _to_frame(data)
    by_name = {str(c): c for c in frame.columns}
    if len(by_name) != len(frame.columns):
        dupes = sorted(
            {str(c) for c in frame.columns if list(map(str, frame.columns)).count(str(c)) > 1}
        )
        raise InvalidArgument(f"duplicate input columns {_quoted(dupes)}")
    missing = [s.name for s in specs if s.name not in by_name and not s.optional]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise InvalidArgument(f"missing {noun} {_quoted([str(m) for m in missing])}")
    extra = [c for c in by_name if c not in names]
    if extra:
        raise InvalidArgument(
            f"unexpected column(s) {_quoted(extra)}: not in the model's signature "
            f"(expected {_quoted(names)}); remove them"
        )
    fast = _numeric_fast_path(specs, frame, names)
    if fast is not None:
        return fast
    out = {
        s.name: _coerce_series(s, frame[by_name[str(s.name)]]) for s in specs if s.name in by_name
    }
    return pd.DataFrame(out, index=frame.index)


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    import pandas as pd

    return pd.Index(names, dtype=object)


def _numeric_json_fast_path(
    specs: tuple[ColumnSpec, ...], data: Any, names: list[str]
) -> pd.DataFrame | None:
    """A request's columns (lists of plain JSON numbers, or one-dimensional numeric arrays such
    as OIP tensors) or records for an all-float signature: one numpy array, one DataFrame block,
    instead of checking column by column (which dominated a
    one-row request's time in profiles of the inference server);
    anything unusual (ints, text, missing or extra columns) goes the careful way."""
    import numpy as np
    import pandas as pd

    if not all(s.dtype in FLOAT_DTYPES and s.shape is None for s in specs):
        return None
    try:
        if isinstance(data, Mapping) and len(data) == len(names):
            columns = [data[n] for n in names]
            if not all(
                isinstance(c, list) or (isinstance(c, np.ndarray) and c.ndim == 1)
                for c in columns
            ):  # fmt: skip
                return None
            arr = np.array(columns).T
        elif _is_records(data) and all(len(r) == len(names) for r in data):
            arr = np.array([[r[n] for n in names] for r in data])
        else:
            return None
    except (KeyError, ValueError, TypeError):
        return None
    if arr.ndim != 2 or arr.dtype.kind not in "fiu" or arr.shape[0] == 0:
        return None
    dtypes = {s.dtype for s in specs}
    target = np.dtype(dtypes.pop()) if len(dtypes) == 1 else None
    if target is None or not np.can_cast(arr.dtype, target, casting="safe"):
        return None  # mixed widths, or a narrowing cast that must be checked for overflow
    return pd.DataFrame(arr.astype(target, copy=False), columns=_column_index(tuple(names)))


def _numeric_fast_path(
    specs: tuple[ColumnSpec, ...], frame: pd.DataFrame, names: list[str]
) -> pd.DataFrame | None:
    """All-numeric signatures fed plain numpy columns (what JSON numbers become): reorder and
    cast the whole frame at once instead of column by column.
    Anything else (text, missing values in int columns, floats for ints) takes the careful path,
    which also words the errors; None means "take it"."""
    import numpy as np

    if len(frame.columns) != len(specs) or any(s.shape is not None for s in specs):
        return None
    casts: dict[str, str] = {}
    for spec in specs:
        dtype = frame[spec.name].dtype if spec.name in frame.columns else None
        if not isinstance(dtype, np.dtype):
            return None
        kinds = "fiu" if spec.dtype in FLOAT_DTYPES else "iu" if spec.dtype in INT_DTYPES else ""
        if dtype.kind not in kinds or not kinds:
            return None
        if dtype != np.dtype(spec.dtype):
            if not np.can_cast(dtype, np.dtype(spec.dtype), casting="safe"):
                return None  # overflow and range checks belong to the careful path
            casts[str(spec.name)] = spec.dtype
    out = frame[names]
    return out.astype(casts) if casts else out


def _coerce_series(spec: ColumnSpec, s: pd.Series) -> pd.Series:
    import numpy as np
    import pandas as pd

    where, target = f"column {spec.name!r}", spec.dtype
    if spec.shape is not None:  # array-valued cells: the shape is recorded, not checked
        return s
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    missing = s.isna().to_numpy()
    if target not in FLOAT_DTYPES and missing.any():
        row = s.index[int(np.argmax(missing))]
        raise InvalidArgument(
            f"{where}: NaN not allowed (row {row!r}); the column is {target} and only float "
            "columns may hold missing values"
        )
    if target in ("string", "bytes"):
        want: tuple[type, ...] = (str,) if target == "string" else (bytes, bytearray)
        bad = next((v for v in s.tolist() if not isinstance(v, want)), None)
        if bad is not None:
            raise _mismatch(where, target, bad)
        return s
    if target == "datetime":
        return _to_datetime(where, s)
    if pd.api.types.is_extension_array_dtype(s.dtype) and not pd.api.types.is_string_dtype(s.dtype):
        fill = np.nan if pd.api.types.is_float_dtype(s.dtype) or missing.any() else None
        dtype = "float64" if fill is not None else getattr(s.dtype, "numpy_dtype", None)
        values = s.to_numpy(dtype=dtype, na_value=fill) if fill is not None else s.to_numpy(dtype)
    else:
        values = s.to_numpy()
    return pd.Series(_to_numeric(where, target, values), index=s.index, name=s.name)


def _to_datetime(where: str, s: pd.Series) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s
    for v in s.tolist():
        try:
            if isinstance(v, bool | numbers.Number):
                raise TypeError
            pd.Timestamp(v)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(
                f"{where}: expected datetime, got {_kind_of(v)} values ({v!r}); send ISO 8601 text"
            ) from e
    return pd.to_datetime(s, format="ISO8601")


def _validate_tensor(spec: ColumnSpec, data: Any) -> np.ndarray:
    import pandas as pd

    where = f"input {spec.name!r}" if spec.name else "input"
    if isinstance(data, Mapping) or _is_records(data):
        raise InvalidArgument(f"{where}: the model takes one array, not named columns")
    arr = data.to_numpy() if isinstance(data, pd.DataFrame) else _as_array(data, where)
    expected = spec.shape or ()
    if arr.ndim != len(expected) or any(
        e not in (-1, a) for e, a in zip(expected, arr.shape, strict=True)
    ):
        raise InvalidArgument(f"{where} shape {arr.shape} does not match {expected}")
    target = spec.dtype
    if target in ("string", "bytes"):
        want: tuple[type, ...] = (str,) if target == "string" else (bytes, bytearray)
        bad = next((v for v in arr.ravel().tolist() if not isinstance(v, want)), None)
        if bad is not None:
            raise _mismatch(where, target, bad)
        return arr
    if target == "datetime":
        if arr.dtype.kind != "M":
            raise InvalidArgument(f"{where}: expected datetime, got {arr.dtype.name} values")
        return arr
    return _to_numeric(where, target, arr)


def _to_numeric(where: str, target: str, arr: np.ndarray) -> np.ndarray:
    import numpy as np

    if arr.dtype.kind == "O":
        arr = _objects_to_numeric(where, target, arr)
    kind = arr.dtype.kind
    if kind not in "biuf":
        first = arr.ravel()[0].item() if arr.size else None
        raise _mismatch(where, target, first, None if kind in "US" else arr.dtype.name)
    tdt = np.dtype(target)
    if tdt.kind == "b" or kind == "b":
        if tdt.kind != "b" or kind != "b":
            if kind == "b":  # bool to a number is safe
                return arr.astype(tdt)
            raise _mismatch(where, target, arr.ravel()[0], arr.dtype.name)
        return arr.astype(bool)
    if tdt.kind == "f":
        with np.errstate(over="ignore"):
            cast = arr.astype(tdt)
        over = np.isfinite(arr) & ~np.isfinite(cast) if kind == "f" else np.zeros(1, dtype=bool)
        if over.any():
            raise InvalidArgument(
                f"{where}: value {arr[over][0].item()!r} does not fit in {target}"
            )
        return cast
    if kind == "f":
        if np.isnan(arr).any():
            raise InvalidArgument(f"{where}: NaN not allowed in {target} values")
        fraction = np.isfinite(arr) & (arr != np.floor(arr))
        if fraction.any():
            raise InvalidArgument(
                f"{where}: expected {target}, got float values with a fraction "
                f"({arr[fraction][0].item()!r}); refusing to round"
            )
    info = np.iinfo(tdt)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        bad = arr.min() if arr.min() < info.min else arr.max()
        raise InvalidArgument(f"{where}: value {bad.item()!r} is out of range for {target}")
    return arr.astype(tdt)


def _objects_to_numeric(where: str, target: str, arr: np.ndarray) -> np.ndarray:
    import numpy as np

    values = arr.ravel().tolist()
    for v in values:
        if v is None or isinstance(v, numbers.Real):  # bool is Integral, so a Real
            continue
        raise _mismatch(where, target, v)
    if values and all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool).reshape(arr.shape)
    if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        try:
            return np.array(values, dtype=np.int64).reshape(arr.shape)
        except OverflowError as e:
            raise InvalidArgument(f"{where}: a value is out of range for {target}") from e
    floats = [np.nan if v is None else float(v) for v in values]
    return np.array(floats, dtype=np.float64).reshape(arr.shape)


def _kind_of(value: Any) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes | bytearray):
        return "bytes"
    return type(value).__name__


def _mismatch(where: str, target: str, value: Any, kind: str | None = None) -> InvalidArgument:
    return InvalidArgument(
        f"{where}: expected {target}, got {kind or _kind_of(value)} values ({value!r})"
    )

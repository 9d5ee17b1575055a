"""Batch scoring: a Parquet or CSV file in, the same rows with predictions out.

The input is read in chunks (``ParquetFile.iter_batches``, ``read_csv(chunksize=…)``) and fed to
an :class:`~loopml.execution.executor.Executor`, which pulls chunks lazily and keeps at most
``executor.max_in_flight`` of them in flight; each result is appended to a temporary file as soon
as it arrives, in input order. Memory stays near ``(max_in_flight + 1) * chunk_rows`` rows
whatever the file's size. The temporary file is renamed onto the output only when every chunk
succeeded, so the output path holds a complete file or nothing new.

Each chunk is scored by ``predictor_factory()`` — called inside the task, so a Ray worker loads
the model itself; :class:`PackagePredictor` loads a verified package folder once per process.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from loopml.errors import InvalidArgument, LoopmlError, NotFound
from loopml.execution.executor import Executor, TaskFailed

if TYPE_CHECKING:
    import pandas as pd

FORMATS = {".parquet": "parquet", ".csv": "csv"}


class Model(Protocol):
    """What scoring needs of a model: ``predict`` (a :class:`~loopml.models.predictor.Predictor`
    also has a ``signature``, whose input columns are the default features)."""

    def predict(self, data: Any) -> Any: ...


class ChunkFailed(LoopmlError):
    """Scoring one chunk failed; nothing was written to the output path."""

    code = "chunk_failed"


@dataclass(frozen=True, slots=True)
class BatchResult:
    rows: int
    chunks: int
    seconds: float


@dataclass(frozen=True, slots=True)
class PackagePredictor:
    """A picklable predictor factory: the verified package at ``folder`` (a local model cache),
    loaded at most once per process and per (folder, digest, trust)."""

    folder: str
    digest: str
    trust: bool = False

    def __call__(self) -> Model:
        return _load_package(self.folder, self.digest, self.trust)


@lru_cache(maxsize=4)  # a worker scores many chunks with the same model: load it once
def _load_package(folder: str, digest: str, trust: bool) -> Model:
    from loopml.models.package import load_package

    if not Path(folder).is_dir():
        raise NotFound(f"model package folder {folder!r} does not exist on this worker")
    return load_package(Path(folder), trust=trust, recorded_digest=digest)


def file_format(path: Path) -> str:
    """``parquet`` or ``csv``, from the file's extension."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidArgument(
            f"cannot tell the format of {str(path)!r} from its extension "
            f"{path.suffix or '(none)'!r}; use .parquet or .csv"
        )
    return kind


def count_rows(path: Path) -> int | None:
    """The rows in a Parquet file (from its footer); ``None`` for CSV (unknown until read)."""
    if file_format(path) != "parquet":
        return None
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's rows as DataFrames of at most ``chunk_rows`` rows, read lazily."""
    kind = file_format(path)
    if not path.is_file():
        raise NotFound(f"input file {str(path)!r} does not exist")
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            with pq.ParquetFile(path) as pf:
                for batch in pf.iter_batches(batch_size=chunk_rows):
                    yield batch.to_pandas()
        else:
            import pandas as pd

            with pd.read_csv(path, chunksize=chunk_rows) as reader:
                yield from reader
    except (OSError, ValueError) as e:  # pyarrow's and pandas' parse errors are ValueErrors
        raise InvalidArgument(f"cannot read {str(path)!r} as {kind}: {e}") from e


@dataclass(frozen=True)
class ChunkScorer:
    """The task run for each chunk: pick the features, predict, append prediction columns."""

    predictor_factory: Callable[[], Model]
    columns: tuple[str, ...] | None = None
    output_column: str = "prediction"

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        model = self.predictor_factory()
        predictions = model.predict(self.features(model, frame))
        added = dict(prediction_columns(predictions, len(frame), self.output_column))
        clash = [name for name in added if name in frame.columns]
        if clash:
            raise InvalidArgument(f"the input already has the column(s) {clash}; "
                                  "choose another output column name")  # fmt: skip
        return frame.assign(**added)  # a new frame: the input may be read-only (Ray)

    def features(self, model: Model, frame: pd.DataFrame) -> pd.DataFrame:
        if self.columns is not None:
            missing = [c for c in self.columns if c not in frame.columns]
            if missing:
                raise InvalidArgument(f"columns {missing} are not in the input")
            return frame[list(self.columns)]
        signature = getattr(model, "signature", None)
        if signature is not None and signature.kind == "columns":
            names = [c.name for c in signature.inputs]
            return frame[[n for n in names if n in frame.columns]]  # the signature names gaps
        return frame


def prediction_columns(predictions: Any, rows: int, name: str) -> list[tuple[str, Any]]:
    """One column per model output: a vector is ``name``; a matrix ``name_0``, ``name_1``…;
    a DataFrame or a mapping of outputs ``name_<output>`` (one output: just ``name``)."""
    import numpy as np

    if isinstance(predictions, dict):
        items = [(str(k), np.asarray(v)) for k, v in predictions.items()]
    elif hasattr(predictions, "columns") and hasattr(predictions, "to_numpy"):
        items = [(str(c), predictions[c].to_numpy()) for c in predictions.columns]
    else:
        arr = np.asarray(predictions)
        if arr.ndim == 2 and arr.shape[1] != 1:
            items = [(str(j), arr[:, j]) for j in range(arr.shape[1])]
        else:
            items = [("", arr.reshape(len(arr), *arr.shape[2:]) if arr.ndim == 2 else arr)]
    if len(items) == 1:
        items = [("", items[0][1])]
    out = []
    for suffix, values in items:
        if values.ndim == 0 or len(values) != rows:
            got = "a scalar" if values.ndim == 0 else f"{len(values)} values"
            raise InvalidArgument(f"the model returned {got} for {rows} rows")
        out.append((f"{name}_{suffix}" if suffix else name, values))
    return out


class _AtomicWriter:
    """Appends chunks to a hidden temporary file beside ``target``; ``commit`` renames it."""

    def __init__(self, target: Path) -> None:
        if not target.parent.is_dir():
            raise NotFound(f"output folder {str(target.parent)!r} does not exist")
        self.target, self.kind = target, file_format(target)
        self.temp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        self._parquet: Any = None
        self._csv: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "csv":
            if self._csv is None:
                self._csv = open(self.temp, "w", newline="", encoding="utf-8")  # noqa: SIM115
                frame.to_csv(self._csv, index=False)
            else:
                frame.to_csv(self._csv, index=False, header=False)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.temp, table.schema)
        elif not table.schema.equals(self._parquet.schema):
            try:  # CSV input guesses types per chunk: hold to the first chunk's
                table = table.cast(self._parquet.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise InvalidArgument(
                    f"a chunk's columns do not match the first chunk's: {e}"
                ) from e
        self._parquet.write_table(table)

    def _close(self) -> None:
        for handle in (self._parquet, self._csv):
            if handle is not None:
                handle.close()
        self._parquet = self._csv = None

    def commit(self, empty: Callable[[], pd.DataFrame]) -> None:
        if self._parquet is None and self._csv is None:
            self.write(empty())  # no rows: still a valid file with the columns
        self._close()
        os.replace(self.temp, self.target)

    def abort(self) -> None:
        self._close()
        self.temp.unlink(missing_ok=True)


def score_file(
    predictor_factory: Callable[[], Model], input_path: str | Path, output_path: str | Path, *,
    chunk_rows: int = 50_000, executor: Executor, columns: Sequence[str] | None = None,
    output_column: str = "prediction", progress: Callable[[int], None] | None = None,
) -> BatchResult:  # fmt: skip
    """Score every row of ``input_path`` into ``output_path`` (Parquet or CSV by extension).

    ``progress`` is called with the rows of each chunk written. A failing chunk raises
    :class:`ChunkFailed` naming the chunk and its rows, and leaves no output file behind.
    """
    if chunk_rows < 1:
        raise InvalidArgument(f"chunk_rows must be at least 1, got {chunk_rows}")
    source, target = Path(input_path), Path(output_path)
    file_format(source)
    if source.resolve() == target.resolve():
        raise InvalidArgument("the output would overwrite the input; choose another path")
    scorer = ChunkScorer(predictor_factory, tuple(columns) if columns else None, output_column)
    spans: list[tuple[int, int]] = []  # each chunk's first row and row count, for errors

    def chunks() -> Iterator[pd.DataFrame]:
        first = 0
        for frame in read_chunks(source, chunk_rows):
            spans.append((first, len(frame)))
            first += len(frame)
            yield frame

    started = time.perf_counter()
    writer = _AtomicWriter(target)
    rows = 0
    results = executor.map(scorer, chunks())
    try:
        for scored in results:
            writer.write(scored)
            rows += len(scored)
            if progress is not None:
                progress(len(scored))
        writer.commit(lambda: _empty_output(source, output_column))
    except TaskFailed as e:
        writer.abort()
        first, count = spans[e.index]
        cause = e.cause
        reason = getattr(cause, "message", None) or str(cause)
        raise ChunkFailed(
            f"chunk {e.index} (rows {first}-{first + count - 1}) of {source.name} failed: "
            f"{type(cause).__name__}: {reason}; nothing was written to {target.name}",
            details={"chunk": e.index, "first_row": first, "rows": count},
        ) from e
    except BaseException:
        writer.abort()
        raise
    finally:
        stop = getattr(results, "close", None)  # a generator left early cancels its work
        if stop is not None:
            stop()
    return BatchResult(rows=rows, chunks=len(spans), seconds=time.perf_counter() - started)


def _empty_output(source: Path, output_column: str) -> pd.DataFrame:
    import pandas as pd

    if file_format(source) == "parquet":
        import pyarrow.parquet as pq

        frame = pq.read_schema(source).empty_table().to_pandas()
    else:
        frame = pd.read_csv(source, nrows=0)
    frame[output_column] = pd.Series(dtype="float64")
    return frame

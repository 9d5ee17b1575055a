"""The prediction log: every answered request (and its later ground truth) as Parquet segments.

A :class:`PredictionLogger` takes :class:`PredictionRecord` objects on the request path in O(1)
(a sampling decision and an append to a bounded in-memory queue) and a background daemon thread
writes them every ``flush_interval_s`` seconds as append-only Parquet *segments*::

    {prefix}/{deployment}/date=YYYY-MM-DD/hour=HH/{kind}-{first_ts}-{uuid4hex}.parquet

``kind`` is ``predictions`` or ``feedback``; a segment holds the records of one UTC hour (a flush
whose records span hours writes one segment per hour, and at most ``max_rows_per_segment`` rows
each). Every segment is a new object published through the artifact store's atomic put; an existing
segment is never rewritten, so a crash leaves whole segments or none. **A kill of the server loses
at most the records queued since the last flush (``flush_interval_s``).**
:func:`loopml.serving.predlog_reader.read_predictions` reads them back with DuckDB.

``inputs``, ``outputs`` and ``ground_truth`` are stored as JSON text (orjson; numpy values are
accepted). Before that, ``redact`` applies to the *inputs*: ``{"card_number": "drop", "email":
"hash"}`` removes ``card_number`` and replaces each ``email`` value by the sha256 hex digest of the
value's JSON. This works for a dict of columns (every value of the column), a single record (a dict
of scalars) and a list of records; plain tensors (nested lists) carry no names, so nothing in them
is redacted. Hashing is *pseudonymisation*, not anonymisation: a low-entropy value (a card number,
an email from a known list) can be found again by hashing candidates. A field whose JSON is larger
than :data:`MAX_FIELD_BYTES` is stored as ``{"truncated": true, "bytes": N}``.

>>> from loopml.artifacts.factory import artifact_store_from_uri
>>> store = artifact_store_from_uri("memory://predlog-doctest")
>>> log = PredictionLogger(store, flush_interval_s=60)
>>> log.record(PredictionRecord("r1", "fraud", "fraud-model", "3", 1_700_000_000_000, "/predict",
...                             {"amount": [12.5]}, [0.1], latency_ms=1.2))
>>> log.close()
>>> log.written, [i.path.split("/")[2:4] for i in store.list("predictions", recursive=True)]
(1, [['date=2023-11-14', 'hour=22']])
"""

from __future__ import annotations

import atexit
import hashlib
import io
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from loopml.artifacts.paths import clean_relpath
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument
from loopml.serving.predlog_records import HOUR_MS, check_deployment_name

log = logging.getLogger(__name__)

MAX_FIELD_BYTES = 1 << 20
"""inputs/outputs/ground_truth JSON larger than this is replaced by a truncation marker."""
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_TS = pa.timestamp("ms", tz="UTC")
PREDICTION_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("deployment", pa.string()), ("model", pa.string()),
     ("version", pa.string()), ("timestamp", _TS), ("route", pa.string()),
     ("inputs", pa.string()), ("outputs", pa.string()), ("latency_ms", pa.float64()),
     ("status", pa.int32()), ("shadow", pa.bool_())]
)  # fmt: skip
FEEDBACK_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("deployment", pa.string()), ("timestamp", _TS),
     ("ground_truth", pa.string())]
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One answered request. ``inputs``/``outputs`` must not be mutated after :meth:`record`."""

    request_id: str
    deployment: str
    model: str
    version: str
    timestamp_ms: int
    route: str
    inputs: Any  # JSON-able: dict of columns, list of records or nested lists
    outputs: Any  # JSON-able
    latency_ms: float
    status: int = 200
    shadow: bool = False


@dataclass(frozen=True, slots=True)
class _Feedback:
    request_id: str
    deployment: str
    ground_truth: Any
    timestamp_ms: int


_Item = PredictionRecord | _Feedback


def segment_folder(prefix: str, deployment: str, hour_ms: int) -> str:
    """The folder of the segments of ``deployment`` for the UTC hour starting at ``hour_ms``."""
    at = datetime.fromtimestamp(hour_ms / 1000, UTC)
    return f"{prefix}/{deployment}/date={at:%Y-%m-%d}/hour={at:%H}"


class PredictionLogger:
    """Queue prediction and feedback records; write them as Parquet segments in the background.

    ``sample_rate`` keeps that share of requests, decided by a hash of the request id, so a
    request's primary and shadow records (and its feedback) are kept or dropped together, in every
    process and after restarts. ``rng``, when given, salts that hash (a different sample per salt).
    ``max_queue`` caps the records waiting in memory: beyond it :meth:`record` drops and counts
    (``dropped``) instead of blocking. ``clock`` gives the default feedback time (seconds).
    """

    def __init__(
        self,
        artifacts: ArtifactStore,
        *,
        prefix: str = "predictions",
        flush_interval_s: float = 5.0,
        max_rows_per_segment: int = 50_000,
        sample_rate: float = 1.0,
        redact: Mapping[str, Literal["drop", "hash"]] | None = None,
        max_queue: int = 100_000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise InvalidArgument(f"sample_rate must be within [0, 1], got {sample_rate!r}")
        if not 0 < flush_interval_s < 10**6:
            raise InvalidArgument(f"flush_interval_s must be in (0, 1e6), got {flush_interval_s}")
        if max_rows_per_segment < 1 or max_queue < 1:
            raise InvalidArgument("max_rows_per_segment and max_queue must be at least 1")
        self._redact = dict(redact or {})
        if bad := {k: v for k, v in self._redact.items() if v not in ("drop", "hash")}:
            raise InvalidArgument(f"redact actions must be 'drop' or 'hash', got {bad!r}")
        self._store, self._prefix = artifacts, clean_relpath(prefix)
        self._interval, self._max_rows = flush_interval_s, max_rows_per_segment
        self._max_queue = max_queue
        self._rate, self._clock = sample_rate, clock
        self._salt = rng.getrandbits(64).to_bytes(8, "big") if rng is not None else b""
        self._queue: list[_Item] = []
        self._queue_lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._closed = False
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="loopml-predlog", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- request path -------------------------------------------------------------------------

    def record(self, rec: PredictionRecord) -> None:
        """Queue ``rec`` (if sampled). Never blocks; raises only for a bad deployment name."""
        check_deployment_name(getattr(rec, "deployment", None))
        self._offer(rec)

    def record_feedback(
        self, request_id: str, deployment: str, ground_truth: Any, timestamp_ms: int | None = None
    ) -> None:
        """Queue the ground truth of ``request_id`` (sampled like its prediction)."""
        check_deployment_name(deployment)
        if not isinstance(request_id, str) or not request_id:
            raise InvalidArgument("request_id must be a non-empty string")
        ts = int(self._clock() * 1000) if timestamp_ms is None else timestamp_ms
        self._offer(_Feedback(request_id, deployment, ground_truth, ts))

    def _offer(self, item: _Item) -> None:
        try:
            if not self._sampled(item.request_id):
                return
            with self._queue_lock:
                if self._closed or len(self._queue) >= self._max_queue:
                    self.dropped += 1
                    return
                self._queue.append(item)
                full = len(self._queue) >= self._max_rows
            if full:
                self._wake.set()
        except Exception:  # the request path must not fail because of its log
            log.exception("prediction log: record refused")
            self._count_dropped(1)

    def _count_dropped(self, n: int) -> None:
        with self._queue_lock:
            self.dropped += n

    def _sampled(self, request_id: str) -> bool:
        if self._rate >= 1.0:
            return True
        digest = hashlib.blake2b(self._salt + request_id.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._rate * 2**64

    # -- writing -------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything queued now as new segments, before returning (thread-safe).

        If the store fails, the unwritten records go back to the queue (within ``max_queue``)
        and the store's error is raised.
        """
        with self._flush_lock:
            with self._queue_lock:
                items, self._queue = self._queue, []
            groups: dict[tuple[str, str, int], list[tuple[_Item, tuple[Any, ...]]]] = {}
            for item in items:
                try:
                    kind, ts, row = _row(item, self._redact)
                except Exception:
                    log.exception("prediction log: unstorable record dropped")
                    self._count_dropped(1)
                    continue
                key = (kind, item.deployment, ts // HOUR_MS * HOUR_MS)
                groups.setdefault(key, []).append((item, row))
            failed: list[_Item] = []
            error: Exception | None = None
            for key, pairs in groups.items():
                for start in range(0, len(pairs), self._max_rows):
                    chunk = pairs[start : start + self._max_rows]
                    try:
                        self._write_segment(*key, [row for _, row in chunk])
                        self.written += len(chunk)
                    except Exception as e:  # the others may still succeed; retry these later
                        error = error or e
                        failed.extend(item for item, _ in chunk)
            if failed:
                self._requeue(failed)
            if error is not None:
                raise error

    def _write_segment(self, kind: str, deployment: str, hour_ms: int, rows: list[Any]) -> None:
        schema = PREDICTION_SCHEMA if kind == "predictions" else FEEDBACK_SCHEMA
        table = pa.Table.from_arrays(
            [
                pa.array(column, type=field.type)
                for column, field in zip(zip(*rows, strict=True), schema, strict=True)
            ],
            schema=schema,
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        first_ts = min(r[schema.get_field_index("timestamp")] for r in rows)
        name = f"{kind}-{first_ts}-{uuid.uuid4().hex}.parquet"
        self._store.put_bytes(
            buffer.getvalue(), f"{segment_folder(self._prefix, deployment, hour_ms)}/{name}"
        )

    def _requeue(self, failed: list[_Item]) -> None:
        with self._queue_lock:
            room = max(0, self._max_queue - len(self._queue))
            self.dropped += max(0, len(failed) - room)
            self._queue[:0] = failed[:room]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:
                log.exception("prediction log: flush failed; retrying at the next interval")

    def close(self) -> None:
        """Stop the background thread and write what is queued. Idempotent."""
        with self._queue_lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row(item: _Item, redact: Mapping[str, str]) -> tuple[str, int, tuple[Any, ...]]:
    """Kind, time and Parquet row of ``item`` (JSON fields as text); raises if unusable."""
    ts = int(item.timestamp_ms)
    datetime.fromtimestamp(ts / 1000, UTC)  # refuses timestamps no calendar can hold
    if isinstance(item, _Feedback):
        return "feedback", ts, (item.request_id, item.deployment, ts, _json(item.ground_truth))
    inputs = _redacted(item.inputs, redact) if redact else item.inputs
    return "predictions", ts, (
        str(item.request_id), item.deployment, str(item.model), str(item.version), ts,
        str(item.route), _json(inputs), _json(item.outputs), float(item.latency_ms),
        int(item.status), bool(item.shadow),
    )  # fmt: skip


def _json(value: Any) -> str:
    try:
        data = orjson.dumps(value, option=_JSON_OPTS, default=str)
    except TypeError:
        data = orjson.dumps({"unserializable": type(value).__name__})
    if len(data) > MAX_FIELD_BYTES:
        data = orjson.dumps({"truncated": True, "bytes": len(data)})
    return data.decode()


def _hash(value: Any) -> str:
    data = orjson.dumps(value, option=_JSON_OPTS | orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(data).hexdigest()


def _redacted(inputs: Any, redact: Mapping[str, str]) -> Any:
    if isinstance(inputs, Mapping):
        out = {}
        for key, value in inputs.items():
            action = redact.get(key)
            if action == "drop":
                continue
            if action == "hash":  # a column hashes value by value, a single record its value
                column = isinstance(value, list | tuple) or getattr(value, "ndim", 0) >= 1
                value = [_hash(v) for v in value] if column else _hash(value)
            out[key] = value
        return out
    if isinstance(inputs, list) and inputs and any(isinstance(r, Mapping) for r in inputs):
        return [_redacted(r, redact) if isinstance(r, Mapping) else r for r in inputs]
    return inputs  # a tensor (nested lists): no names to redact by

"""The prediction log: segments, sampling, redaction, feedback, concurrency, bounds, crashes."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from loopml.artifacts.factory import artifact_store_from_uri
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument, Unavailable
from loopml.serving.predlog import (
    HOUR_MS,
    MAX_FIELD_BYTES,
    PredictionLogger,
    PredictionRecord,
)
from loopml.serving.predlog_reader import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, read_predictions

T0 = 472_223 * HOUR_MS  # 2023-11-14 23:00 UTC: the next hour is on the next date
SEGMENT = re.compile(
    r"predictions/(?P<dep>[^/]+)/date=(?P<date>\d{4}-\d\d-\d\d)/hour=(?P<hour>\d\d)/"
    r"(?P<kind>predictions|feedback)-(?P<first>\d+)-[0-9a-f]{32}\.parquet"
)


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "file":
        yield artifact_store_from_uri((tmp_path / "a").as_uri())
        return
    memory = artifact_store_from_uri(f"memory://predlog-{uuid.uuid4().hex}")
    yield memory
    if memory.exists("predictions"):
        memory.delete("predictions")


def rec(i: int, ts: int, **kw: Any) -> PredictionRecord:
    fields: dict[str, Any] = {
        "request_id": f"r{i}",
        "deployment": "fraud",
        "model": "fraud-model",
        "version": "3",
        "timestamp_ms": ts,
        "route": "/predict",
        "inputs": {"amount": [float(i)], "country": ["FR"]},
        "outputs": [i % 2],
        "latency_ms": 0.5 + i,
    }
    return PredictionRecord(**{**fields, **kw})


def segments(store: ArtifactStore) -> dict[str, str]:
    """Every segment's path → sha256 of its bytes (each path must match the naming scheme)."""
    out = {}
    for info in store.list("predictions", recursive=True):
        assert SEGMENT.fullmatch(info.path), info.path
        out[info.path] = hashlib.sha256(store.get_bytes(info.path)).hexdigest()
    return out


def table(store: ArtifactStore, path: str) -> Any:
    return pq.read_table(io.BytesIO(store.get_bytes(path)))


def test_round_trip_over_two_hours_in_hour_partitions_never_rewritten(
    store: ArtifactStore, tmp_path: Path
) -> None:
    n, step = 5_000, 2 * HOUR_MS // 5_000
    log = PredictionLogger(store, flush_interval_s=3600, max_rows_per_segment=1_000)
    for i in range(n // 2):
        log.record(rec(i, T0 + i * step))
    log.flush()
    before = segments(store)
    stats = {p: os.stat(tmp_path / "a" / p) for p in before} if "file" in store.root_uri else {}
    for i in range(n // 2, n):
        log.record(rec(i, T0 + i * step))
    log.close()
    log.close()  # idempotent
    after = segments(store)
    assert {p: after[p] for p in before} == before  # nothing rewritten
    for path, st in stats.items():
        now = os.stat(tmp_path / "a" / path)
        assert (now.st_mtime_ns, now.st_size, now.st_ino) == (st.st_mtime_ns, st.st_size, st.st_ino)
    assert log.written == n and log.dropped == 0
    hours = set()
    for path in after:
        m = SEGMENT.fullmatch(path)
        assert m and m["dep"] == "fraud" and m["kind"] == "predictions"
        stamps = table(store, path).column("timestamp").cast("int64").to_pylist()
        assert len(stamps) <= 1_000 and min(stamps) == int(m["first"])
        hour_start = min(stamps) // HOUR_MS * HOUR_MS
        assert max(stamps) < hour_start + HOUR_MS  # one UTC hour per segment
        hours.add((m["date"], m["hour"]))
    assert hours == {("2023-11-14", "23"), ("2023-11-15", "00")}

    frame = read_predictions(store, "fraud", T0, T0 + 2 * HOUR_MS)
    assert list(frame.columns) == PREDICTION_COLUMNS + FEEDBACK_COLUMNS
    assert len(frame) == n and frame["request_id"].tolist() == [f"r{i}" for i in range(n)]
    row = frame.iloc[1234]
    assert row["timestamp"].value // 1_000_000 == T0 + 1234 * step
    assert orjson.loads(row["inputs"]) == {"amount": [1234.0], "country": ["FR"]}
    assert orjson.loads(row["outputs"]) == [0]
    assert (row["model"], row["version"], row["route"]) == ("fraud-model", "3", "/predict")
    assert (row["latency_ms"], row["status"], row["shadow"]) == (1234.5, 200, False)
    assert row["ground_truth"] is None

    part = read_predictions(store, "fraud", T0 + HOUR_MS // 2, T0 + 3 * HOUR_MS // 2)
    expected = [f"r{i}" for i in range(n) if T0 + HOUR_MS // 2 <= T0 + i * step < T0 + 90 * 60_000]
    assert part["request_id"].tolist() == expected


def test_an_empty_window_gives_empty_typed_frames(store: ArtifactStore) -> None:
    with PredictionLogger(store) as log:
        log.record(rec(1, T0))
    full = read_predictions(store, "fraud", T0, T0 + 1)
    for empty in (
        read_predictions(store, "fraud", T0 - HOUR_MS, T0),
        read_predictions(store, "fraud", T0 + 5, T0 + 5),
        read_predictions(store, "other", T0, T0 + HOUR_MS),
    ):
        assert empty.empty and list(empty.columns) == list(full.columns)
        assert empty.dtypes.equals(full.dtypes)
    bare = read_predictions(store, "fraud", T0, T0 + 1, with_feedback=False)
    assert list(bare.columns) == PREDICTION_COLUMNS and len(bare) == 1


def test_sampling_keeps_about_the_rate_and_keeps_primary_shadow_and_feedback_together(
    store: ArtifactStore,
) -> None:
    n, rate = 20_000, 0.1
    with PredictionLogger(store, sample_rate=rate, flush_interval_s=3600) as log:
        for i in range(n):
            log.record(rec(i, T0 + i))
            log.record(rec(i, T0 + i, shadow=True, version="4"))
            log.record_feedback(f"r{i}", "fraud", [1], timestamp_ms=T0 + HOUR_MS)
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    primary = set(frame.loc[~frame["shadow"], "request_id"])
    shadow = set(frame.loc[frame["shadow"], "request_id"])
    assert primary == shadow
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(len(primary) - n * rate) < 6 * sigma
    assert frame["ground_truth"].notna().all()  # the feedback of every kept request was kept
    assert log.written == 3 * len(primary)


def test_redaction_drops_and_hashes_input_names(store: ArtifactStore) -> None:
    card, email = "4111111111111111", "alice@example.com"
    hashed = hashlib.sha256(orjson.dumps(email)).hexdigest()
    shapes = [
        {"card_number": [card], "email": [email], "amount": [9.5]},  # columns
        [{"card_number": card, "email": email, "amount": 9.5}],  # records
        {"card_number": card, "email": email, "amount": 9.5},  # one record
        [[1.0, 2.0]],  # a tensor: nothing to redact by name
    ]
    with PredictionLogger(store, redact={"card_number": "drop", "email": "hash"}) as log:
        for i, inputs in enumerate(shapes):
            log.record(rec(i, T0 + i, inputs=inputs))
    got = [orjson.loads(s) for s in read_predictions(store, "fraud", T0, T0 + 9)["inputs"]]
    assert got == [
        {"email": [hashed], "amount": [9.5]},
        [{"email": hashed, "amount": 9.5}],
        {"email": hashed, "amount": 9.5},
        [[1.0, 2.0]],
    ]
    for path in segments(store):
        raw = store.get_bytes(path)
        text = str(pq.read_table(io.BytesIO(raw)).to_pylist())
        for secret in (card, email):
            assert secret.encode() not in raw and secret not in text


def test_feedback_joins_by_request_id_also_from_later_hours(store: ArtifactStore) -> None:
    with PredictionLogger(store) as log:
        for i in range(10):
            log.record(rec(i, T0 + 600_000 + i))
        for i in range(0, 10, 2):  # evens get feedback; some within the hour, some hours later
            at = T0 + 900_000 if i < 5 else T0 + 3 * HOUR_MS + i
            log.record_feedback(f"r{i}", "fraud", {"label": i}, timestamp_ms=at)
        log.record_feedback("r0", "fraud", {"label": 100}, timestamp_ms=T0 + 2 * HOUR_MS)
        log.record_feedback("unknown", "fraud", {"label": -1}, timestamp_ms=T0 + 900_000)
    kinds = {SEGMENT.fullmatch(p)["kind"] for p in segments(store)}  # type: ignore[index]
    assert kinds == {"predictions", "feedback"}
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(10)]
    truths = [None if g is None else orjson.loads(g)["label"] for g in frame["ground_truth"]]
    assert truths == [100, None, 2, None, 4, None, 6, None, 8, None]  # the latest feedback wins
    stamps = frame["feedback_timestamp"]
    assert stamps.iloc[0].value // 1_000_000 == T0 + 2 * HOUR_MS
    assert stamps.iloc[8].value // 1_000_000 == T0 + 3 * HOUR_MS + 8
    assert stamps.iloc[1::2].isna().all()


def test_concurrent_records_with_a_running_flush_loop_are_stored_exactly_once(
    store: ArtifactStore,
) -> None:
    threads, per_thread = 8, 2_000
    log = PredictionLogger(store, flush_interval_s=0.005, max_rows_per_segment=500)
    done = threading.Event()

    def produce(t: int) -> None:
        for j in range(per_thread):
            i = t * per_thread + j
            log.record(rec(i, T0 + i))

    def flush_loop() -> None:
        while not done.is_set():
            log.flush()

    flusher = threading.Thread(target=flush_loop)
    flusher.start()
    producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    done.set()
    flusher.join()
    log.close()
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS, with_feedback=False)
    ids = frame["request_id"].tolist()
    assert len(ids) == len(set(ids)) == threads * per_thread
    assert set(ids) == {f"r{i}" for i in range(threads * per_thread)}
    assert log.written == threads * per_thread and log.dropped == 0


def test_a_full_queue_drops_and_counts_and_oversized_fields_are_truncated(
    store: ArtifactStore,
) -> None:
    log = PredictionLogger(store, flush_interval_s=3600, max_queue=10)
    big = {"text": ["x" * (MAX_FIELD_BYTES + 10)]}
    log.record(rec(0, T0, inputs=big))
    for i in range(1, 25):
        log.record(rec(i, T0 + i))  # returns at once even though nothing drains the queue
    assert log.dropped == 15
    log.close()
    log.record(rec(99, T0))  # after close: dropped, not raised
    assert (log.written, log.dropped) == (10, 16)
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(10)]
    marker = orjson.loads(frame["inputs"].iloc[0])
    assert marker == {"truncated": True, "bytes": len(orjson.dumps(big))}
    assert orjson.loads(frame["outputs"].iloc[0]) == [0]


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "", ".", "..", ".loopml-tmp-x", "a\\b", "a b", "x" * 129, None]
)
def test_bad_deployment_names_are_refused_and_nothing_is_written(
    store: ArtifactStore, tmp_path: Path, name: Any
) -> None:
    with PredictionLogger(store) as log:
        with pytest.raises(InvalidArgument):
            log.record(rec(1, T0, deployment=name))
        with pytest.raises(InvalidArgument):
            log.record_feedback("r1", name, 1)
    with pytest.raises(InvalidArgument):
        read_predictions(store, name, T0, T0 + 1)
    assert store.list("", recursive=True) == []
    assert [p.name for p in tmp_path.iterdir()] in ([], ["a"])  # nothing outside the store
    with pytest.raises(InvalidArgument):
        PredictionLogger(store, prefix="../outside")


def test_a_failed_write_is_retried_without_loss_or_duplicates(store: ArtifactStore) -> None:
    class Flaky:
        def __init__(self) -> None:
            self.fail = True

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        def put_bytes(self, data: bytes, path: str) -> Any:
            if self.fail:
                raise Unavailable("store down")
            return store.put_bytes(data, path)

    flaky = Flaky()
    log = PredictionLogger(flaky, flush_interval_s=3600)  # type: ignore[arg-type]
    for i in range(5):
        log.record(rec(i, T0 + i))
    with pytest.raises(Unavailable):
        log.flush()
    assert log.written == 0 and store.list("", recursive=True) == []
    flaky.fail = False
    log.close()
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(5)]


KILLED_SERVER = textwrap.dedent(
    """
    import os, signal, sys
    from loopml.artifacts.factory import artifact_store_from_uri
    from loopml.serving.predlog import PredictionLogger, PredictionRecord

    store = artifact_store_from_uri(sys.argv[1])
    log = PredictionLogger(store, flush_interval_s=3600)
    def rec(i):
        return PredictionRecord(f"r{i}", "fraud", "m", "1", int(sys.argv[2]) + i, "/predict",
                                {"amount": [i]}, [0], latency_ms=1.0)
    for i in range(100):
        log.record(rec(i))
    log.flush()
    for i in range(100, 150):
        log.record(rec(i))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_kill_loses_at_most_what_was_queued_since_the_last_flush(tmp_path: Path) -> None:
    root = tmp_path / "a"
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SERVER, root.as_uri(), str(T0)],
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    store = artifact_store_from_uri(root.as_uri())
    frame = read_predictions(store, "fraud", T0, T0 + HOUR_MS)
    assert frame["request_id"].tolist() == [f"r{i}" for i in range(100)]
    files = [Path(d, f).relative_to(root).as_posix() for d, _, fs in os.walk(root) for f in fs]
    assert files and all(SEGMENT.fullmatch(f) for f in files)  # no temp or partial file
    for f in files:
        pq.read_table(root / f)  # every segment is whole

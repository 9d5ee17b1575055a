"""Compaction of the prediction log: an hour's small segments become one Parquet file.

The logger writes a segment per flush (every few seconds), so a busy hour holds hundreds of small
files; a reader of a week opens tens of thousands. :func:`compact_hour` folds an hour folder's
visible files of each kind (``predictions``, ``feedback``) into one
``{kind}-compacted-{hour}-{digest}.parquet`` and then removes what it replaces:

1. list the folder; the new file's *manifest* is every file of the kind listed (its name is
   derived from the manifest, so two compactions of the same files publish the same file);
2. stream the visible files' rows, one file at a time (bounded memory), into a temporary file
   whose Parquet metadata carries the manifest, and publish it atomically through the artifact
   store;
3. delete the replaced files one by one, in an order that never changes what a reader sees
   (:func:`deletion_order`).

A reader (:mod:`loopml.serving.predlog_segments`) takes the new file and ignores what its
manifest names, so at every moment, and after a crash between any two steps, each row is read
exactly once; the next compaction finishes what a crashed one left. The hour still being written
is never compacted: only hours that ended :data:`GRACE_MS` ago or more. Feedback that arrives
later for a compacted hour lands in a new segment beside the compacted file and is folded in by a
later compaction.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from loopml.artifacts.store import ArtifactStore
from loopml.errors import NotFound
from loopml.serving.predlog_records import HOUR_MS, HourCompaction
from loopml.serving.predlog_segments import (
    KINDS,
    MANIFEST_KEY,
    HourFolder,
    LocalSegments,
    hour_files,
    is_compacted,
    is_segment,
    local_segments,
    read_manifest,
    visible,
)

GRACE_MS = 10 * 60_000
"""An hour is compacted at the earliest this long after it ended (the logger's late flushes)."""

Checkpoint = Callable[[str], None]
"""Called after each step (``published``, ``deleted NAME``); tests raise from it."""


def _manifests(
    local: LocalSegments, folder: str, names: list[str], kind: str
) -> dict[str, frozenset[str]]:
    return {n: read_manifest(local.path(f"{folder}/{n}")) for n in names if is_compacted(n, kind)}


def deletion_order(names: list[str], manifests: dict[str, frozenset[str]]) -> list[str]:
    """The files not visible among ``names``, in an order whose every prefix, deleted, leaves
    the visible set as it is (a file goes before the compacted files that hide it)."""
    target = visible(names, manifests)
    remaining = list(names)
    order: list[str] = []
    while True:
        for name in remaining:
            if name in target:
                continue
            rest = [n for n in remaining if n != name]
            if visible(rest, {k: v for k, v in manifests.items() if k != name}) == target:
                order.append(name)
                remaining = rest
                break
        else:
            return order


def compactable_hours(
    artifacts: ArtifactStore, base: str, *, now_ms: int, grace_ms: int = GRACE_MS
) -> list[int]:
    """Starts of the hours under ``base`` that ended ``grace_ms`` ago and hold several files of
    a kind (cheap: names only, no file is opened)."""
    found = []
    last = (now_ms - grace_ms) // HOUR_MS * HOUR_MS - HOUR_MS
    for hour, files in hour_files(artifacts, base, None, last).items():
        names = [f.rpartition("/")[2] for f in files]
        if any(sum(is_segment(n, kind) for n in names) > 1 for kind in KINDS):
            found.append(hour.start_ms)
    return found


def compact_hour(
    artifacts: ArtifactStore, base: str, hour_ms: int, *, now_ms: int,
    grace_ms: int = GRACE_MS, checkpoint: Checkpoint | None = None,
) -> list[HourCompaction]:  # fmt: skip
    """Compact the hour starting at ``hour_ms`` (each kind); a no-op for an hour that is too
    recent or already one file."""
    if hour_ms % HOUR_MS or hour_ms + HOUR_MS + grace_ms > now_ms:
        return []
    folders = hour_files(artifacts, base, hour_ms, hour_ms)
    done: list[HourCompaction] = []
    for hour, files in folders.items():
        for kind in KINDS:
            names = [f.rpartition("/")[2] for f in files if is_segment(f.rpartition("/")[2], kind)]
            if len(names) > 1:
                done.append(_compact(artifacts, hour, kind, names, checkpoint))
    return done


def _compact(
    artifacts: ArtifactStore, hour: HourFolder, kind: str, names: list[str],
    checkpoint: Checkpoint | None,
) -> HourCompaction:  # fmt: skip
    step = checkpoint or (lambda _step: None)
    with local_segments(artifacts) as local, tempfile.TemporaryDirectory() as tmp:
        manifests = _manifests(local, hour.folder, names, kind)
        shown = visible(names, manifests)
        rows, new_name = 0, None
        if len(shown) > 1:
            digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:32]
            new_name = f"{kind}-compacted-{hour.start_ms}-{digest}.parquet"
            target = Path(tmp, new_name)
            paths = [local.path(f"{hour.folder}/{n}") for n in shown]
            rows = _write_compacted(paths, names, target)
            artifacts.put_file(target, f"{hour.folder}/{new_name}")
            step("published")
            names = [*names, new_name]
            manifests[new_name] = frozenset(names[:-1])
        removed = 0
        for name in deletion_order(names, manifests):
            try:
                artifacts.delete(f"{hour.folder}/{name}")
                removed += 1
            except NotFound:  # another compaction of the same hour removed it
                pass
            step(f"deleted {name}")
    return HourCompaction(hour.start_ms, kind, len(names) - (new_name is not None), removed, rows,
                          new_name)  # fmt: skip


def _write_compacted(paths: list[str], manifest: list[str], target: Path) -> int:
    """Stream the rows of ``paths`` into one Parquet file at ``target``; the row count."""
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in paths])
    schema = schema.with_metadata({MANIFEST_KEY: "\n".join(sorted(manifest)).encode()})
    rows = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        for path in paths:  # a batch at a time: an earlier compacted file may be large
            for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
                columns = [
                    batch.column(f.name).cast(f.type) if f.name in batch.schema.names
                    else pa.nulls(batch.num_rows, f.type)
                    for f in schema
                ]  # fmt: skip
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                rows += batch.num_rows
    return rows

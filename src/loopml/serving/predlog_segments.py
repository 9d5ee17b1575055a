"""Which Parquet files of the prediction log hold its rows: hour folders, compacted files and
what they replace.

An hour folder (``{prefix}/{deployment}/date=YYYY-MM-DD/hour=HH``) holds the segments the
logger wrote (``{kind}-{first_ts}-{uuid}.parquet``) and, once compacted
(:mod:`loopml.serving.predlog_compaction`), a ``{kind}-compacted-{digest}.parquet`` whose Parquet
metadata names every file of its kind that was in the folder when it was made (its
*manifest*). A reader lists the folder and reads only the *visible* files: a file named in the
manifest of a compacted file still present is replaced by it, and of two compacted files the one
whose manifest names the other (or only a subset of the other's files) gives way. So each row is
read exactly once whether the parts it replaced are still there or gone, and a compaction
interrupted at any step leaves a folder every reader reads correctly.

A file may vanish between the listing and the read (a compaction removed it), and a listing is
not a snapshot (a folder listed while a compaction publishes and deletes can miss both the new
file and a removed one): readers call :func:`read_with_retries`, which lists again when a file is
gone, and after a read lists once more and starts over if anything changed meanwhile.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from loopml.artifacts.paths import resolve_local
from loopml.artifacts.store import ArtifactStore
from loopml.errors import NotFound, Unavailable
from loopml.serving.predlog_records import DAY_MS, HOUR_MS

KINDS = ("predictions", "feedback")
MANIFEST_KEY = b"loopml.replaces"
"""Parquet key-value metadata of a compacted file: the names it replaces, one per line."""
READ_ATTEMPTS = 5

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HourFolder:
    """One hour of one deployment's log: its start (ms) and folder (relative to the store)."""

    start_ms: int
    folder: str


def partition_ms(segment: str, key: str, fmt: str) -> int | None:
    """``date=2024-01-31`` → its midnight in ms, ``hour=07`` → 7 h in ms; None if malformed."""
    if not segment.startswith(key):
        return None
    try:
        parsed = datetime.strptime(segment.removeprefix(key), fmt).replace(tzinfo=UTC)
    except ValueError:
        return None
    if fmt == "%H":
        return parsed.hour * HOUR_MS
    return int(parsed.timestamp()) * 1000


def is_segment(name: str, kind: str) -> bool:
    return name.startswith(f"{kind}-") and name.endswith(".parquet")


def is_compacted(name: str, kind: str) -> bool:
    return name.startswith(f"{kind}-compacted-") and name.endswith(".parquet")


def hour_files(
    artifacts: ArtifactStore, base: str, first_hour: int | None, last_hour: int | None
) -> dict[HourFolder, list[str]]:
    """The files (relative paths, sorted) of every hour folder under ``base`` with its start in
    [first_hour, last_hour] (None: open ended), one listing per day."""
    found: dict[HourFolder, list[str]] = {}
    for day in artifacts.list(base):
        day_ms = partition_ms(day.path.rpartition("/")[2], "date=", "%Y-%m-%d")
        if not day.is_dir or day_ms is None:
            continue
        if first_hour is not None and day_ms + DAY_MS <= first_hour:
            continue
        if last_hour is not None and day_ms > last_hour:
            continue
        for info in artifacts.list(day.path, recursive=True):
            hour, _, name = info.path.removeprefix(day.path + "/").partition("/")
            offset = partition_ms(hour, "hour=", "%H")
            if offset is None or "/" in name or not name.endswith(".parquet"):
                continue
            start = day_ms + offset
            if (first_hour is None or first_hour <= start) and (
                last_hour is None or start <= last_hour
            ):
                found.setdefault(HourFolder(start, f"{day.path}/{hour}"), []).append(info.path)
    return {h: sorted(files) for h, files in sorted(found.items(), key=lambda i: i[0].start_ms)}


def read_manifest(local_path: str | Path) -> frozenset[str]:
    """The names a compacted file replaces (empty for a segment the logger wrote)."""
    import pyarrow.parquet as pq  # only when an hour was compacted: servers start without it

    metadata = pq.read_metadata(local_path).metadata or {}
    raw = metadata.get(MANIFEST_KEY, b"")
    return frozenset(n for n in raw.decode().split("\n") if n)


def visible(names: list[str], manifests: Mapping[str, frozenset[str]]) -> list[str]:
    """The names whose rows a reader takes, given the manifests of the compacted ones."""
    present = set(names)
    replaced: set[str] = set()
    for name, manifest in manifests.items():
        replaced |= manifest & present
        for other, bigger in manifests.items():  # a compaction raced by a later, wider one
            if other != name and manifest < bigger:
                replaced.add(name)
    return [n for n in names if n not in replaced]


class LocalSegments:
    """Listings of the log and local paths of its files: in place for ``file://`` stores, else
    fetched to a temporary folder (each at most once). Remembers its listings, so a reader can
    check the log did not change while it read (:meth:`unchanged`)."""

    def __init__(self, artifacts: ArtifactStore, tmp: str | None) -> None:
        self._store, self._tmp = artifacts, tmp
        root = artifacts.root_uri
        self._root = Path(root.removeprefix("file://")) if root.startswith("file://") else None
        self._fetched: dict[str, str] = {}
        self._listings: list[tuple[tuple[str, int | None, int | None], list[str]]] = []

    def files(self, base: str, first_hour: int | None, last_hour: int | None) -> list[str]:
        """Every file under ``base`` whose hour is in [first_hour, last_hour] (None: open)."""
        found = [f for fs in hour_files(self._store, base, first_hour, last_hour).values()
                 for f in fs]  # fmt: skip
        self._listings.append(((base, first_hour, last_hour), found))
        return found

    def unchanged(self) -> bool:
        """Whether listing again finds the very files the listings so far found."""
        return all(
            [f for fs in hour_files(self._store, *query).values() for f in fs] == found
            for query, found in self._listings
        )

    def path(self, rel: str) -> str:
        if self._root is not None:
            local = resolve_local(self._root, rel)
            if not local.is_file():
                raise NotFound(f"segment {rel} is gone")
            return str(local)
        if rel not in self._fetched:
            assert self._tmp is not None
            target = Path(self._tmp, f"{len(self._fetched)}.parquet")
            self._fetched[rel] = str(self._store.get_file(rel, target))
        return self._fetched[rel]

    def visible_paths(self, rels: list[str], kind: str) -> list[str]:
        """Local paths of the visible files of ``kind`` among ``rels`` (one hour folder's or
        several: names are compared within their folder)."""
        by_folder: dict[str, list[str]] = {}
        for rel in rels:
            folder, _, name = rel.rpartition("/")
            if is_segment(name, kind):
                by_folder.setdefault(folder, []).append(name)
        out: list[str] = []
        for folder, names in by_folder.items():
            manifests = {
                n: read_manifest(self.path(f"{folder}/{n}")) for n in names if is_compacted(n, kind)
            }
            out += [self.path(f"{folder}/{n}") for n in visible(names, manifests)]
        return out


@contextmanager
def local_segments(artifacts: ArtifactStore) -> Iterator[LocalSegments]:
    if artifacts.root_uri.startswith("file://"):
        yield LocalSegments(artifacts, None)
        return
    with tempfile.TemporaryDirectory(prefix="loopml-predlog-") as tmp:
        yield LocalSegments(artifacts, tmp)


def read_with_retries(attempt: Callable[[LocalSegments], T], artifacts: ArtifactStore) -> T:
    """``attempt`` over fresh listings (``local.files``) until no file it chose vanished and
    listing again finds the same files (a compaction or prune changed nothing meanwhile);
    Unavailable after :data:`READ_ATTEMPTS` tries."""
    import duckdb  # lazily: only readers of the log pay for it

    last: Exception | None = None
    for _ in range(READ_ATTEMPTS):
        with local_segments(artifacts) as local:
            try:
                found = attempt(local)
            except (NotFound, FileNotFoundError, duckdb.IOException) as e:
                last = e
                continue
            if local.unchanged():
                return found
    raise Unavailable(f"the prediction log kept changing while being read: {last}") from last

"""Run artifacts: files published under a run's folder in the artifact store, with digests.

The artifact store computes each file's sha256 while it uploads; the digest is recorded in the
metadata store and verified again on every download.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from loopml.artifacts.paths import clean_relpath, join_relpath
from loopml.artifacts.store import ArtifactStore
from loopml.errors import InvalidArgument, NotFound
from loopml.tracking.entities import ArtifactRecord, Run
from loopml.tracking.store import TrackingStore

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    path: str  # relative to the run's artifact root
    is_dir: bool
    size: int | None
    sha256: str | None


class RunArtifacts:
    def __init__(self, tracking: TrackingStore, store: ArtifactStore) -> None:
        self._tracking = tracking
        self._store = store

    def log_file(
        self, run: Run, local_path: str | Path, artifact_path: str = "",
        progress: Progress | None = None,
    ) -> ArtifactRecord:  # fmt: skip
        local = Path(local_path)
        if not local.is_file():
            raise InvalidArgument(f"{local} is not a file")
        rel = join_relpath(artifact_path, local.name)
        info = self._store.put_file(local, join_relpath(run.artifact_path, rel), progress=progress)
        record = ArtifactRecord(rel, info.size or 0, info.sha256 or "")
        self._tracking.record_artifacts(run.run_id, [record])
        return record

    def log_dir(self, run: Run, local_dir: str | Path, artifact_path: str = "") -> None:
        root = Path(local_dir)
        if not root.is_dir():
            raise InvalidArgument(f"{root} is not a directory")
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
        rels = [join_relpath(artifact_path, f.relative_to(root).as_posix()) for f in files]
        records = []  # every path was checked above: a refused one stores nothing
        for file, rel in zip(files, rels, strict=True):
            info = self._store.put_file(file, join_relpath(run.artifact_path, rel))
            records.append(ArtifactRecord(rel, info.size or 0, info.sha256 or ""))
        self._tracking.record_artifacts(run.run_id, records)

    def log_bytes(self, run: Run, data: bytes, artifact_file: str) -> ArtifactRecord:
        rel = clean_relpath(artifact_file)
        info = self._store.put_bytes(data, join_relpath(run.artifact_path, rel))
        record = ArtifactRecord(rel, info.size or len(data), info.sha256 or "")
        self._tracking.record_artifacts(run.run_id, [record])
        return record

    def list(self, run: Run, path: str = "", *, recursive: bool = False) -> list[ArtifactEntry]:
        rel = clean_relpath(path) if path else ""
        digests = {r.path: r for r in self._tracking.list_artifact_records(run.run_id)}
        prefix = join_relpath(run.artifact_path, rel)
        try:
            infos = self._store.list(prefix, recursive=recursive)
        except NotFound:
            return []
        out = []
        for info in infos:
            inner = PurePosixPath(info.path).relative_to(run.artifact_path).as_posix()
            rec = digests.get(inner)
            size = info.size if info.size is not None else (rec.size if rec else None)
            out.append(ArtifactEntry(inner, info.is_dir, size, rec.sha256 if rec else None))
        return out

    def read_bytes(self, run: Run, path: str) -> bytes:
        rel = clean_relpath(path)
        expected = self._expected_digest(run, rel)
        return self._store.get_bytes(join_relpath(run.artifact_path, rel), expected_sha256=expected)

    def download(
        self, run: Run, path: str, dst_dir: str | Path, progress: Progress | None = None
    ) -> Path:
        """Download a file or a folder into ``dst_dir``, verifying each recorded digest."""
        rel = clean_relpath(path) if path else ""
        dst = Path(dst_dir)
        records = {r.path: r for r in self._tracking.list_artifact_records(run.run_id)}
        if rel in records:
            files = [rel]
        else:
            files = [e.path for e in self.list(run, rel, recursive=True) if not e.is_dir]
            if not files:
                raise NotFound(f"run {run.run_id} has no artifact {path!r}")
        base = PurePosixPath(rel).parent  # "tree" lands as dst/tree/…, like MLflow
        for f in files:
            rec = records.get(f)
            self._store.get_file(
                join_relpath(run.artifact_path, f), dst / PurePosixPath(f).relative_to(base),
                expected_sha256=rec.sha256 if rec else None, progress=progress,
            )  # fmt: skip
        return dst / PurePosixPath(rel).name if rel else dst

    def _expected_digest(self, run: Run, rel: str) -> str | None:
        for r in self._tracking.list_artifact_records(run.run_id):
            if r.path == rel:
                return r.sha256
        return None


def serialise_dict(dictionary: Any, artifact_file: str) -> bytes:
    """JSON, or YAML when the file name ends in .yaml/.yml."""
    if artifact_file.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_dump(dictionary, sort_keys=False).encode()
    return json.dumps(dictionary, indent=2, default=str).encode()


def render_figure(figure: Any, artifact_file: str) -> bytes:
    """Bytes of a matplotlib figure (png, svg, pdf …) or a plotly figure (html, json)."""
    import io

    suffix = PurePosixPath(artifact_file).suffix.lower().lstrip(".")
    if hasattr(figure, "savefig"):
        buf = io.BytesIO()
        figure.savefig(buf, format=suffix or "png")
        return buf.getvalue()
    if hasattr(figure, "to_html") and suffix in ("html", "htm"):
        return str(figure.to_html(include_plotlyjs=False)).encode()
    if hasattr(figure, "to_json") and suffix == "json":
        return str(figure.to_json()).encode()
    raise InvalidArgument(
        f"cannot save a {type(figure).__name__} as {artifact_file!r}: give a matplotlib figure "
        "(.png/.svg/.pdf) or a plotly figure (.html/.json)"
    )

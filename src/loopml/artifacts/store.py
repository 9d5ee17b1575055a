"""The artifact store protocol: what every backend (file, memory, s3) must do.

Paths given to a store are *relative* artifact paths (``run-id/artifacts/model/model.skops``). Every
path passes through :func:`loopml.artifacts.paths.clean_relpath`, the one choke point that rejects
traversal, before it reaches a filesystem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes moved since the last call."""


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    path: str  # relative to the store root, '/'-separated
    is_dir: bool
    size: int | None = None
    sha256: str | None = None  # set by put/put_bytes; listings leave it None


@runtime_checkable
class ArtifactStore(Protocol):
    """Stores bytes under a root. Writes are atomic and return a sha256 digest."""

    @property
    def root_uri(self) -> str: ...

    def put_file(
        self, local_path: str | Path, path: str, *, progress: ProgressCallback | None = None
    ) -> ArtifactInfo:
        """Publish a local file at ``path`` atomically; return its size and sha256."""
        ...

    def put_bytes(self, data: bytes, path: str) -> ArtifactInfo: ...

    def put_stream(self, stream: BinaryIO, path: str) -> ArtifactInfo: ...

    def get_bytes(self, path: str, *, expected_sha256: str | None = None) -> bytes:
        """Read ``path``; raise IntegrityError if ``expected_sha256`` is given and differs."""
        ...

    def get_file(
        self,
        path: str,
        local_path: str | Path,
        *,
        expected_sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download ``path`` to ``local_path`` atomically, verifying the digest when given."""
        ...

    def open_read(self, path: str) -> Iterator[bytes]:
        """Stream the file in chunks."""
        ...

    def list(self, prefix: str = "", *, recursive: bool = False) -> list[ArtifactInfo]:
        """Entries directly under ``prefix`` (or all files below it with ``recursive``)."""
        ...

    def exists(self, path: str) -> bool: ...

    def delete(self, path: str) -> None:
        """Delete a file or a whole folder below the root. Missing paths raise NotFound."""
        ...

"""The artifact store protocol: what every backend (file, memory, s3) must do.

Paths given to a store are *relative* artifact paths (``run-id/artifacts/model/model.skops``). Every
path passes through :func:`loopml.artifacts.paths.clean_relpath`, the one choke point that rejects
traversal, before it reaches a filesystem; every method raises InvalidArgument for a refused path
and touches nothing. :class:`loopml.testing.artifact_contract.ArtifactStoreContract` is the suite
every implementation must pass.
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
        """Publish a local file at ``path`` atomically; return its size and sha256.

        Every ``put_*`` replaces an existing file at ``path`` and raises Conflict if ``path`` is a
        folder. ``progress`` gets byte counts that sum to the size.
        """
        ...

    def put_bytes(self, data: bytes, path: str) -> ArtifactInfo: ...

    def put_stream(self, stream: BinaryIO, path: str) -> ArtifactInfo:
        """Publish what ``stream`` yields; if reading it fails, nothing appears at ``path``."""
        ...

    def get_bytes(self, path: str, *, expected_sha256: str | None = None) -> bytes:
        """Read ``path``; raise IntegrityError if ``expected_sha256`` is given and differs.

        A missing path (or a folder) raises NotFound; a malformed digest raises InvalidArgument.
        """
        ...

    def get_file(
        self,
        path: str,
        local_path: str | Path,
        *,
        expected_sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download ``path`` to ``local_path`` atomically, verifying the digest when given.

        On any failure (including IntegrityError) ``local_path`` is left as it was: no partial or
        unverified file. Missing parent folders of ``local_path`` are created.
        """
        ...

    def open_read(self, path: str) -> Iterator[bytes]:
        """Stream the file in chunks. Bad paths and NotFound raise at the call, not on iteration."""
        ...

    def list(self, prefix: str = "", *, recursive: bool = False) -> list[ArtifactInfo]:
        """Entries directly under ``prefix`` (or all files below it with ``recursive``).

        Paths are relative to the root and sorted; ``""`` is the root. A missing prefix, or one
        naming a file, gives ``[]``. Recursive listings hold files only.
        """
        ...

    def exists(self, path: str) -> bool:
        """Whether a file or folder is at ``path`` (no prefix matching: ``a/b`` is not ``a/bc``)."""
        ...

    def delete(self, path: str) -> None:
        """Delete a file or a whole folder below the root. Missing paths raise NotFound.

        The root itself (``""``) cannot be deleted: InvalidArgument.
        """
        ...

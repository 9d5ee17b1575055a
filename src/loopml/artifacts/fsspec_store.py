"""The ArtifactStore on fsspec: local files (``file://`` or a plain path), ``memory://``, ``s3://``.

Every path passes :func:`~loopml.artifacts.paths.clean_relpath`; local ones also
:func:`~loopml.artifacts.paths.resolve_local` and local I/O uses the resolved real path. Writes are
atomic: local files go to a temp file beside the target, fsynced, renamed over it; memory objects
are built whole, then set; S3 objects are staged on disk, then uploaded with one put (multipart,
committed at the end, for very large files). sha256 is computed while streaming 1 MiB chunks.

>>> store = FsspecArtifactStore("memory://doctest-store")
>>> store.put_bytes(b"hello", "run-1/greeting.txt").sha256[:12]
'2cf24dba5fb0'
>>> store.get_bytes("run-1/greeting.txt")
b'hello'
>>> store.delete("run-1")
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import fsspec
from fsspec.callbacks import Callback
from fsspec.core import split_protocol, url_to_fs

from loopml import errors
from loopml.artifacts.paths import clean_relpath, resolve_local
from loopml.artifacts.store import ArtifactInfo, ProgressCallback

CHUNK_SIZE = 1 << 20
TMP_PREFIX = ".loopml-tmp-"
"""Names starting with this are in-flight temp files: never listed, never writable."""

_KINDS = {"file": "file", "local": "file", "memory": "memory", "s3": "s3", "s3a": "s3"}
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class FsspecArtifactStore:
    """An :class:`~loopml.artifacts.store.ArtifactStore` below ``root_uri``.

    ``root_uri`` is ``file:///abs/dir`` or a plain local path, ``memory://prefix`` or
    ``s3://bucket/prefix`` (needs ``loopml[s3]``; e.g. ``storage_options={"client_kwargs":
    {"endpoint_url": ...}}``). S3 listings are never cached and each store gets its own s3fs
    instance, unless ``storage_options`` says otherwise.
    """

    def __init__(self, root_uri: str, *, storage_options: dict[str, Any] | None = None) -> None:
        protocol, path = split_protocol(root_uri)
        self._kind = kind = _KINDS.get(protocol or "file", "")
        if not kind:
            raise errors.InvalidArgument(
                f"unsupported artifact root {root_uri!r}: use file, memory or s3"
            )
        self._local_root = Path(os.path.abspath(os.path.expanduser(path)))  # used for kind "file"
        if kind == "file":
            self._fs: Any = fsspec.filesystem("file")
            self._root = self._local_root.as_posix()
            self._root_uri = f"file://{self._root}"
            return
        options = dict(storage_options or {})
        if kind == "s3":
            errors.require("s3fs", "s3")
            options = {"skip_instance_cache": True, "use_listings_cache": False, **options}
        self._fs, root = url_to_fs(root_uri, **options)
        self._root, bare = root.rstrip("/"), root.strip("/")
        if clean_relpath(bare, allow_empty=kind == "memory") != bare:
            raise errors.InvalidArgument(f"artifact root {root_uri!r} is not a normalised path")
        self._root_uri = f"{kind}://{bare}"

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self._root_uri!r})"

    @property
    def root_uri(self) -> str:
        return self._root_uri

    # -- writes ---------------------------------------------------------------------------------

    def put_file(
        self, local_path: str | Path, path: str, *, progress: ProgressCallback | None = None
    ) -> ArtifactInfo:
        """Publish a local file at ``path`` atomically; return its size and sha256."""
        rel = _write_rel(path)
        with _translated(f"local file {str(local_path)!r}"):
            source = open(local_path, "rb")  # noqa: SIM115 - closed by the with below
        with source:
            return self._publish(rel, _chunks(source), progress)

    def put_bytes(self, data: bytes, path: str) -> ArtifactInfo:
        """Publish ``data`` at ``path`` atomically, replacing any file there."""
        return self._publish(_write_rel(path), [bytes(data)], None)

    def put_stream(self, stream: BinaryIO, path: str) -> ArtifactInfo:
        """Publish everything read from ``stream``; if reading fails nothing appears at ``path``."""
        return self._publish(_write_rel(path), _chunks(stream), None)

    def _publish(
        self, rel: str, chunks: Iterable[bytes], progress: ProgressCallback | None
    ) -> ArtifactInfo:
        with _translated(f"artifact {rel!r}"):
            target = self._target(rel)
            if self._fs.isdir(target):
                raise errors.Conflict(
                    f"artifact path {rel!r} is a folder; delete it before writing"
                )
            if self._kind == "file":
                digest, size = _atomic_write(Path(target), chunks, progress)
            elif self._kind == "memory":
                data = bytearray()
                digest, size = _copy(chunks, data.extend, progress)
                self._fs.pipe_file(target, bytes(data))
            else:  # s3: stage first, so a failing source never starts an upload
                fd, staged = tempfile.mkstemp(
                    prefix=TMP_PREFIX, suffix=PurePosixPath(rel).suffix[:16]
                )
                try:
                    with os.fdopen(fd, "wb") as f:
                        digest, size = _copy(chunks, f.write, None)
                    self._fs.put_file(staged, target, callback=_UploadProgress(progress))
                finally:
                    os.unlink(staged)
        return ArtifactInfo(path=rel, is_dir=False, size=size, sha256=digest)

    # -- reads ----------------------------------------------------------------------------------

    def get_bytes(self, path: str, *, expected_sha256: str | None = None) -> bytes:
        """Read ``path``; raise IntegrityError if ``expected_sha256`` is given and differs."""
        expected = _expected_digest(expected_sha256)
        data = bytearray()
        _verify(path, expected, _copy(self.open_read(path), data.extend, None)[0])
        return bytes(data)

    def get_file(
        self,
        path: str,
        local_path: str | Path,
        *,
        expected_sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download ``path`` to ``local_path`` atomically, verifying the digest when given.

        The bytes go to a temp file beside ``local_path``, renamed over it only once the digest
        matched: on any failure ``local_path`` is left as it was.
        """
        expected = _expected_digest(expected_sha256)
        chunks = self.open_read(path)
        target = Path(local_path)
        with _translated(f"local file {str(target)!r}"):
            if target.is_dir():
                raise errors.InvalidArgument(f"local path {str(target)!r} is a folder, not a file")
            _atomic_write(target, chunks, progress, lambda digest: _verify(path, expected, digest))
        return target

    def open_read(self, path: str) -> Iterator[bytes]:
        """Stream the file in 1 MiB chunks; bad paths and NotFound raise at the call."""
        rel = clean_relpath(path)
        target = self._target(rel)
        with _translated(f"artifact {rel!r}"):
            if self._fs.info(target)["type"] != "file":
                raise errors.NotFound(f"artifact {rel!r} is a folder, not a file")
        return self._read_chunks(rel, target)

    def _read_chunks(self, rel: str, target: str) -> Iterator[bytes]:
        with _translated(f"artifact {rel!r}"), self._fs.open(target, "rb") as f:
            while chunk := f.read(CHUNK_SIZE):
                yield chunk

    # -- listing, exists, delete ----------------------------------------------------------------

    def list(self, prefix: str = "", *, recursive: bool = False) -> builtins.list[ArtifactInfo]:
        """Entries directly under ``prefix`` (or all files below it with ``recursive``).

        Paths are relative to the root, sorted. A missing prefix, or one naming a file, lists as
        ``[]``. Local symlinks are listed only if they resolve inside the root, never descended.
        """
        rel = clean_relpath(prefix, allow_empty=True)
        with _translated(f"artifact folder {rel!r}"):
            base = Path(self._target(rel))
            if self._kind == "file":
                found = list(self._scan_local(base, rel, recursive)) if base.is_dir() else []
            else:
                found = self._scan_remote(rel, recursive)
        return sorted(found, key=lambda info: info.path)

    def _scan_local(self, base: Path, rel: str, recursive: bool) -> Iterator[ArtifactInfo]:
        with os.scandir(base) as entries:
            children = [(e.name, e.is_symlink(), e.is_dir(follow_symlinks=False)) for e in entries]
        for name, is_link, is_dir in children:
            child, real = f"{rel}/{name}" if rel else name, base / name
            if name.startswith(TMP_PREFIX) or not _is_clean(child):
                continue
            if is_link:
                try:
                    real = resolve_local(self._local_root, child)
                except errors.InvalidArgument:
                    continue  # points outside the root: neither listed nor followed
                if (is_dir := real.is_dir()) and recursive:
                    continue
            if is_dir and recursive:
                yield from self._scan_local(real, child, recursive)
            elif is_dir:
                yield ArtifactInfo(path=child, is_dir=True)
            elif real.is_file():
                yield ArtifactInfo(path=child, is_dir=False, size=real.stat().st_size)

    def _scan_remote(self, rel: str, recursive: bool) -> builtins.list[ArtifactInfo]:
        full = self._target(rel)
        try:
            found = (self._fs.find if recursive else self._fs.ls)(full, detail=True)
        except FileNotFoundError:
            return []
        out = []
        for item in found.values() if isinstance(found, dict) else found:
            child = item["name"].rstrip("/").removeprefix(f"{self._root}/")
            if (rel and not child.startswith(f"{rel}/")) or not _is_clean(child):
                continue  # the prefix itself (a file or folder marker) or a foreign key
            is_dir = item["type"] == "directory"
            if not (recursive and is_dir):
                out.append(ArtifactInfo(child, is_dir, None if is_dir else item["size"]))
        return out

    def exists(self, path: str) -> bool:
        """Whether a file or folder exists at ``path``."""
        rel = clean_relpath(path)
        target = self._target(rel)
        with _translated(f"artifact {rel!r}"):
            try:
                self._fs.info(target)
            except FileNotFoundError:
                return False
        return True

    def delete(self, path: str) -> None:
        """Delete a file or a whole folder below the root. Missing paths raise NotFound.

        A local symlink (inside the root) is removed itself, not what it points to.
        """
        rel = clean_relpath(path)
        with _translated(f"artifact {rel!r}"):
            target = self._target(rel)  # refuses local links that lead out of the root
            if self._kind != "file":
                self._fs.info(target)
                self._fs.rm(target, recursive=True)
                return
            parent, _, name = rel.rpartition("/")
            victim = resolve_local(self._local_root, parent) / name
            if victim.is_dir() and not victim.is_symlink():
                shutil.rmtree(victim)
            else:
                os.unlink(victim)

    def _target(self, rel: str) -> str:
        """The backend path of ``rel``; for local files the resolved real path inside the root."""
        if self._kind == "file":
            return resolve_local(self._local_root, rel).as_posix()
        return f"{self._root}/{rel}" if rel else self._root


class _UploadProgress(Callback):
    """Forwards fsspec's byte increments to a loopml progress callback."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        super().__init__()
        self._progress = progress

    def relative_update(self, inc: int = 1) -> None:
        if self._progress is not None and inc:
            self._progress(inc)


def _write_rel(path: str) -> str:
    rel = clean_relpath(path)
    if any(segment.startswith(TMP_PREFIX) for segment in rel.split("/")):
        raise errors.InvalidArgument(
            f"artifact path {path!r} uses the reserved prefix {TMP_PREFIX!r}"
        )
    return rel


def _is_clean(rel: str) -> bool:
    try:
        return clean_relpath(rel) == rel
    except errors.InvalidArgument:
        return False


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK_SIZE):
        yield chunk


def _copy(
    chunks: Iterable[bytes], write: Callable[[bytes], object], progress: ProgressCallback | None
) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        write(chunk)
        size += len(chunk)
        if progress is not None and chunk:
            progress(len(chunk))
    return digest.hexdigest(), size


def _atomic_write(
    target: Path,
    chunks: Iterable[bytes],
    progress: ProgressCallback | None,
    check: Callable[[str], None] | None = None,
) -> tuple[str, int]:
    """Write a temp file beside ``target``, fsync, ``check`` the digest, then rename over it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            digest, size = _copy(chunks, f.write, progress)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(digest)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide artifacts from the rest of the team
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return digest, size


def _expected_digest(expected: str | None) -> str | None:
    if expected is not None and not (isinstance(expected, str) and _SHA256.match(expected)):
        raise errors.InvalidArgument(f"expected_sha256 must be 64 hex digits, got {expected!r}")
    return expected.lower() if expected is not None else None


def _verify(path: str, expected: str | None, actual: str) -> None:
    if expected is not None and actual != expected:
        raise errors.IntegrityError(
            f"artifact {path!r} has sha256 {actual}, expected {expected}",
            details={"path": path, "expected": expected, "actual": actual},
        )


@contextlib.contextmanager
def _translated(subject: str) -> Iterator[None]:
    """Turn OS, fsspec and botocore errors into loopml errors (``raise ... from e``)."""
    try:
        yield
    except errors.LoopmlError:
        raise
    except FileNotFoundError as e:
        raise errors.NotFound(f"{subject} not found") from e
    except (IsADirectoryError, NotADirectoryError, FileExistsError) as e:
        raise errors.Conflict(f"{subject}: a file and a folder collide ({e})") from e
    except PermissionError as e:
        raise errors.PermissionDenied(f"{subject}: permission denied ({e})") from e
    except OSError as e:
        raise errors.Unavailable(f"{subject}: storage error ({e})") from e
    except Exception as e:
        if type(e).__module__.split(".")[0] in ("botocore", "aiobotocore", "s3fs"):
            raise errors.Unavailable(f"{subject}: S3 error ({e})") from e
        raise

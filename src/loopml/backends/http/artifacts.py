"""HttpArtifactStore: the ArtifactStore protocol through the server (``/api/v1/artifacts``).

Uploads stream from disk with ``X-Content-SHA256`` (the server refuses a body that arrives
different); the server's own digest must match ours too. Downloads resume with ``Range`` after a
dropped connection and are verified against the expected digest before they become visible.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import httpx

from loopml.artifacts.paths import clean_relpath
from loopml.artifacts.store import ArtifactInfo, ProgressCallback
from loopml.backends.http.transport import HttpTransport
from loopml.errors import IntegrityError, Unavailable

_CHUNK = 1 << 20


def _url(rel: str) -> str:
    return "/api/v1/artifacts/" + quote(rel, safe="/")


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class HttpArtifactStore:
    """Files above ``multipart_threshold`` go up in parts of ``part_size`` (each retried alone)."""

    def __init__(
        self,
        transport: HttpTransport,
        *,
        multipart_threshold: int = 64 * 2**20,
        part_size: int = 16 * 2**20,
    ) -> None:
        self._http = transport
        self._threshold = multipart_threshold
        self._part_size = part_size

    @property
    def root_uri(self) -> str:
        return f"{self._http.base_url}/api/v1/artifacts"

    def put_file(
        self, local_path: str | Path, path: str, *, progress: ProgressCallback | None = None
    ) -> ArtifactInfo:
        rel = clean_relpath(path)
        local = Path(local_path)
        digest = _file_digest(local)
        if local.stat().st_size > self._threshold:
            info = self._put_multipart(local, rel, digest, progress)
            if info.sha256 != digest:
                raise IntegrityError(f"server stored {rel} with another digest than was sent")
            return info

        def body() -> Iterator[bytes]:
            with local.open("rb") as f:
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    if progress:
                        progress(len(chunk))
                    yield chunk

        headers = {"X-Content-SHA256": digest, "Content-Length": str(local.stat().st_size)}
        data = self._http.request("PUT", _url(rel), content=body(), headers=headers)
        info = ArtifactInfo(**data)
        if info.sha256 != digest:
            raise IntegrityError(f"server stored {rel} with another digest than was sent")
        return info

    def _put_multipart(
        self, local: Path, rel: str, digest: str, progress: ProgressCallback | None
    ) -> ArtifactInfo:
        base = "/api/v1/artifact-uploads"
        upload = self._http.request("POST", base, json={"path": rel})["upload_id"]
        numbers = []
        with local.open("rb") as f:
            for number in itertools.count(1):
                chunk = f.read(self._part_size)
                if not chunk:
                    break
                headers = {"X-Content-SHA256": hashlib.sha256(chunk).hexdigest()}
                # PUT of a part is repeatable: the transport retries it alone on a dropped line.
                self._http.request("PUT", f"{base}/{upload}/parts/{number}", content=chunk,
                                   headers=headers)  # fmt: skip
                numbers.append(number)
                if progress:
                    progress(len(chunk))
        body = {"parts": numbers, "sha256": digest}
        return ArtifactInfo(**self._http.request("POST", f"{base}/{upload}/complete", json=body))

    def put_bytes(self, data: bytes, path: str) -> ArtifactInfo:
        return self.put_stream(io.BytesIO(data), path)

    def put_stream(self, stream: BinaryIO, path: str) -> ArtifactInfo:
        clean_relpath(path)
        fd, tmp = tempfile.mkstemp(prefix="loopml-put-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: stream.read(_CHUNK), b""):
                    out.write(chunk)
            return self.put_file(tmp, path)
        finally:
            os.unlink(tmp)

    def get_bytes(self, path: str, *, expected_sha256: str | None = None) -> bytes:
        data = b"".join(self.open_read(path))
        if expected_sha256 and hashlib.sha256(data).hexdigest() != expected_sha256.lower():
            raise IntegrityError(f"artifact {path} does not match its recorded sha256")
        return data

    def get_file(
        self, path: str, local_path: str | Path, *, expected_sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:  # fmt: skip
        rel = clean_relpath(path)
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".loopml-dl-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                self._download(rel, out, progress)
            if expected_sha256 and _file_digest(Path(tmp)) != expected_sha256.lower():
                raise IntegrityError(f"artifact {path} does not match its recorded sha256")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _download(self, rel: str, out: BinaryIO, progress: ProgressCallback | None) -> None:
        """Stream into ``out``; after a dropped connection, resume where it broke off."""
        written = 0
        for _attempt in range(5):
            headers = {"Range": f"bytes={written}-"} if written else {}
            try:
                with self._http.stream("GET", _url(rel), headers=headers) as response:
                    for chunk in response.iter_bytes():  # as received: a cut loses nothing
                        out.write(chunk)
                        written += len(chunk)
                        if progress:
                            progress(len(chunk))
                return
            except (httpx.TransportError, httpx.StreamError):
                continue
        raise Unavailable(f"download of {rel} kept failing")

    def open_read(self, path: str) -> Iterator[bytes]:
        rel = clean_relpath(path)
        buf = io.BytesIO()
        self._download(rel, buf, None)
        return iter([buf.getvalue()]) if buf.getvalue() else iter([])

    def list(self, prefix: str = "", *, recursive: bool = False) -> builtins.list[ArtifactInfo]:
        rel = clean_relpath(prefix, allow_empty=True)
        params = {"prefix": rel, "recursive": str(recursive).lower()}
        return [ArtifactInfo(**d) for d in self._http.request("GET", "/api/v1/artifact-list",
                                                              params=params)]  # fmt: skip

    def exists(self, path: str) -> bool:
        rel = clean_relpath(path)
        return bool(self._http.request("GET", "/api/v1/artifact-exists", params={"path": rel}))

    def delete(self, path: str) -> None:
        self._http.request("DELETE", _url(clean_relpath(path)))

"""Multipart artifact uploads for large files: parts go up one by one (each checked against its
sha256, each retryable), then ``complete`` joins them, checks the whole file's sha256 and
publishes it through the artifact store in one atomic step. An interrupted upload resumes by
asking which parts arrived.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from loopml.artifacts.store import ArtifactInfo
from loopml.errors import Conflict, IntegrityError, InvalidArgument, NotFound
from loopml.server.access import caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.routes.artifacts import scoped_path
from loopml.server.schemas import ERROR_RESPONSES, In, Out
from loopml.server.scopes import stack_of

router = APIRouter(
    prefix="/api/v1/artifact-uploads",
    tags=["artifacts"],
    responses=ERROR_RESPONSES,
    route_class=OrjsonRoute,
)
MAX_PARTS = 10_000
STALE_SECONDS = 24 * 3600
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
PartNumber = Annotated[int, Field(ge=1, le=MAX_PARTS)]


class UploadStart(In):
    path: Annotated[str, Field(min_length=1, max_length=1024)]


class UploadState(Out):
    upload_id: str
    path: str
    parts: dict[int, str]  # part number -> sha256 of the part received


class UploadComplete(In):
    parts: Annotated[list[PartNumber], Field(min_length=1, max_length=MAX_PARTS)]
    sha256: Sha256


def _root(request: Request) -> Path:
    stack = stack_of(request)
    return stack.settings.home / "uploads"


def _upload_dir(request: Request, upload_id: str) -> tuple[Path, dict[str, str]]:
    """The upload's folder and metadata; NotFound unless it exists and the caller owns it."""
    if not _UPLOAD_ID.match(upload_id):
        raise NotFound(f"upload {upload_id!r:.40} not found")
    folder = _root(request) / upload_id
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        raise NotFound(f"upload {upload_id} not found") from None
    if meta["owner"] != caller_of(request).name:
        raise NotFound(f"upload {upload_id} not found")
    return folder, meta


def _parts(folder: Path) -> dict[int, str]:
    found = {}
    for part in folder.glob("part-*.sha256"):
        found[int(part.name[5:10])] = part.read_text()
    return dict(sorted(found.items()))


def prune_stale_uploads(root: Path) -> None:
    """Forget uploads nobody completed within a day."""
    now = time.time()
    for folder in root.glob("*"):
        if folder.is_dir() and now - folder.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)


@router.post("", status_code=201, **protected("artifact.write"))
def start(request: Request, body: UploadStart) -> UploadState:
    rel = scoped_path(request, body.path, "artifact.write")
    root = _root(request)
    root.mkdir(parents=True, exist_ok=True)
    prune_stale_uploads(root)
    upload_id = secrets.token_hex(16)
    folder = root / upload_id
    folder.mkdir(mode=0o700)
    meta = {"path": rel, "owner": caller_of(request).name, "created": time.time()}
    (folder / "meta.json").write_text(json.dumps(meta))
    return UploadState(upload_id=upload_id, path=rel, parts={})


@router.get("/{upload_id}", **protected("artifact.write"))
def state(request: Request, upload_id: str) -> UploadState:
    folder, meta = _upload_dir(request, upload_id)
    return UploadState(upload_id=upload_id, path=meta["path"], parts=_parts(folder))


@router.put("/{upload_id}/parts/{number}", **protected("artifact.write"))
async def put_part(
    request: Request,
    upload_id: str,
    number: int,
    content_sha256: Annotated[str, Header(alias="X-Content-SHA256", pattern=r"^[0-9a-fA-F]{64}$")],
) -> dict[str, int | str]:
    """Store one part (1..10,000); sending a part again replaces it."""
    if not 1 <= number <= MAX_PARTS:
        raise InvalidArgument(f"part numbers go from 1 to {MAX_PARTS}")
    folder, _ = _upload_dir(request, upload_id)
    digest, size = hashlib.sha256(), 0
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        if digest.hexdigest() != content_sha256.lower():
            raise IntegrityError(f"part {number} arrived corrupted (sha256 differs)")
        os.replace(tmp, folder / f"part-{number:05d}")
        (folder / f"part-{number:05d}.sha256").write_text(digest.hexdigest())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"number": number, "size": size, "sha256": digest.hexdigest()}


@router.post("/{upload_id}/complete", **protected("artifact.write"))
async def complete(request: Request, upload_id: str, body: UploadComplete) -> ArtifactInfo:
    """Join the listed parts in order; publish only if the whole file has the given sha256."""
    folder, meta = _upload_dir(request, upload_id)
    received = _parts(folder)
    missing = [n for n in body.parts if n not in received]
    if missing:
        raise Conflict(f"parts not received yet: {missing[:10]}", details={"missing": missing})
    joined = folder / "joined"
    digest = hashlib.sha256()
    with joined.open("wb") as out:
        for number in body.parts:
            with (folder / f"part-{number:05d}").open("rb") as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != body.sha256.lower():
        joined.unlink()
        raise IntegrityError("the joined parts do not have the file's sha256; nothing published")
    stack = stack_of(request)
    info = await run_in_threadpool(stack.artifacts.put_file, joined, meta["path"])
    shutil.rmtree(folder, ignore_errors=True)
    return info


@router.delete("/{upload_id}", **protected("artifact.write"))
def abort(request: Request, upload_id: str) -> dict[str, bool]:
    folder, _ = _upload_dir(request, upload_id)
    shutil.rmtree(folder, ignore_errors=True)
    return {"ok": True}

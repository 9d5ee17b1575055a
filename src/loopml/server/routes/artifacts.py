"""Artifact bytes through the server, for remote clients: streamed up and down, digests checked.

Paths are relative to the artifact root and start with the experiment id (``<exp>/<run>/…``), which
scopes the permission check; the store's choke point refuses traversal in every encoding.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from loopml.artifacts.paths import canonical_relpath
from loopml.artifacts.store import ArtifactInfo
from loopml.errors import IntegrityError, InvalidArgument
from loopml.server.access import caller_of, protected
from loopml.server.fastjson import OrjsonRoute
from loopml.server.schemas import ERROR_RESPONSES
from loopml.server.scopes import index_of, stack_of

router = APIRouter(
    prefix="/api/v1", tags=["artifacts"], responses=ERROR_RESPONSES, route_class=OrjsonRoute
)
_CHUNK = 1 << 20


def scoped_path(request: Request, path: str, action: str) -> str:
    """Check the path (whole, in normal form), and ``action`` on its experiment's project."""
    rel = canonical_relpath(path, allow_empty=True)
    head = rel.split("/", 1)[0]
    if not (head.isascii() and head.isdigit()):
        raise InvalidArgument("artifact paths start with an experiment id: <experiment>/<run>/…")
    index = index_of(request)
    caller_of(request).require(action, index.of_experiment(head))
    return rel


@router.put("/artifacts/{path:path}", **protected("artifact.write"))
async def upload(
    request: Request,
    path: str,
    content_sha256: Annotated[str | None, Header(alias="X-Content-SHA256", max_length=64)] = None,
) -> ArtifactInfo:
    """Stream the body to a temp file, check it against ``X-Content-SHA256``, then publish."""
    rel = scoped_path(request, path, "artifact.write")
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix="loopml-upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                digest.update(chunk)
                out.write(chunk)
        if content_sha256 is not None and digest.hexdigest() != content_sha256.lower():
            raise IntegrityError(
                "upload corrupted in transit: body sha256 does not match X-Content-SHA256",
                details={"received": digest.hexdigest()},
            )
        store = stack_of(request).artifacts
        return await run_in_threadpool(store.put_file, tmp, rel)
    finally:
        os.unlink(tmp)


@router.get(
    "/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the bytes"},
               206: {"content": {"application/octet-stream": {}}, "description": "from N"}},
    **protected("artifact.read"),
)  # fmt: skip
def download(
    request: Request,
    path: str,
    range_header: Annotated[str | None, Header(alias="Range", max_length=100)] = None,
) -> StreamingResponse:
    """Stream a file; ``Range: bytes=N-`` resumes an interrupted download at byte N."""
    rel = scoped_path(request, path, "artifact.read")
    store = stack_of(request).artifacts
    chunks = store.open_read(rel)  # raises NotFound / InvalidArgument before streaming
    offset = _range_start(range_header)
    headers = {"Accept-Ranges": "bytes"}
    status = 206 if offset else 200
    if offset:
        headers["Content-Range"] = f"bytes {offset}-*/*"
    return StreamingResponse(
        _skip(chunks, offset), status_code=status, media_type="application/octet-stream",
        headers=headers,
    )  # fmt: skip


def _range_start(header: str | None) -> int:
    if not header:
        return 0
    unit, _, spec = header.partition("=")
    start, dash, end = spec.partition("-")
    if unit.strip() != "bytes" or not dash or end.strip() or not start.strip().isdigit():
        raise InvalidArgument("only 'Range: bytes=N-' is supported")
    return int(start)


def _skip(chunks: Iterator[bytes], offset: int) -> Iterator[bytes]:
    for chunk in chunks:
        if offset >= len(chunk):
            offset -= len(chunk)
            continue
        yield chunk[offset:]
        offset = 0


@router.get("/artifact-list", **protected("artifact.read"))
def list_artifacts(
    request: Request,
    prefix: Annotated[str, Query(min_length=1, max_length=1024)],
    recursive: bool = False,
) -> list[ArtifactInfo]:
    rel = scoped_path(request, prefix, "artifact.read")
    return stack_of(request).artifacts.list(rel, recursive=recursive)


@router.get("/artifact-exists", **protected("artifact.read"))
def exists(request: Request, path: Annotated[str, Query(min_length=1, max_length=1024)]) -> bool:
    return stack_of(request).artifacts.exists(scoped_path(request, path, "artifact.read"))


@router.delete("/artifacts/{path:path}", **protected("artifact.write"))
def delete(request: Request, path: str) -> dict[str, bool]:
    stack_of(request).artifacts.delete(scoped_path(request, path, "artifact.write"))
    return {"ok": True}

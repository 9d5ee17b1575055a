"""Bounded request bodies: a declared or streamed body over the limit gets 413, nothing else."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect

from loopml.errors import TooLarge
from loopml.server import asgi_headers
from loopml.server.errors import error_body

Scope = MutableMapping[str, Any]
Message = dict[str, Any]


class BodyLimit:
    """ASGI middleware. Artifact uploads (``/api/v1/artifacts``) get their own, larger limit."""

    def __init__(self, app: Any, *, max_bytes: int, max_artifact_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_artifact_bytes = max_artifact_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        large = path.startswith(("/api/v1/artifacts/", "/api/v1/artifact-uploads/"))
        limit = self.max_artifact_bytes if large else self.max_bytes
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await _reject(send, limit)
            return
        seen = 0
        state = {"started": False, "rejected": False}

        async def limited_receive() -> Message:
            nonlocal seen
            if state["rejected"]:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer 413 ourselves, and tell the app the client went away.
                    state["rejected"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _reject(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["rejected"]:
                return  # we already answered
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["rejected"]:
                raise


async def read_body(scope: Scope, receive: Any, limit: int) -> bytes:
    """The whole request body, for a handler that answers past :class:`BodyLimit`: the same
    limit, declared or streamed (:class:`TooLarge`; stop reading, answer 413 and close).
    ``ClientDisconnect`` if the caller goes away first."""
    declared = content_length(scope)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"request body exceeds the limit of {limit} bytes", details={"limit": limit})


def content_length(scope: Scope) -> int | None:
    """The declared ``Content-Length``, or None (chunked, or not a number)."""
    value = asgi_headers.header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def _reject(send: Any, limit: int) -> None:
    err = _too_large(limit)
    body = json.dumps(error_body(err.code, err.message, err.details)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})

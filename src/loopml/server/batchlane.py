"""``POST /api/v1/runs/{run_id}/batch`` past FastAPI's routing, body decoding and dependency hop.

Batch logging is the hottest write: a 1,000-value batch spends more time in the web stack than in
SQLite. This ASGI layer (inside the CSRF guard, body limit and metrics) answers that one route
with exactly the route's rules: the same caller and ``run.write`` check on the run's project, the
same ``BatchIn`` schema (validated by pydantic's Rust JSON parser instead of ``json.loads`` plus
model validation), the same errors, and a single worker-thread hop for check and write together.
The FastAPI route stays declared, so the OpenAPI spec and the route table are unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from loopml import errors
from loopml.server.access import caller_of
from loopml.server.errors import error_response, status_of, validation_response
from loopml.server.metrics import RouteLabel
from loopml.server.routes.tracking import write_batch
from loopml.server.schemas import BatchIn
from loopml.server.scopes import run_scope

_BATCH = re.compile(r"^/api/v1/runs/([^/]+)/batch$")
_OK = orjson.dumps({"ok": True})


_ROUTE = RouteLabel("/api/v1/runs/{run_id}/batch")


class BatchLane:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = _BATCH.match(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = _ROUTE
        scope["path_params"] = {"run_id": match[1]}
        response = await self._answer(Request(scope, receive), match[1])
        await response(scope, receive, send)

    async def _answer(self, request: Request, run_id: str) -> Response:
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > 128:
            too_long = "String should have at most 128 characters"
            return validation_response([{"loc": ("header", "Idempotency-Key"), "msg": too_long}])
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        if kind != "application/json" and not kind.endswith("+json") and kind:
            not_json = f"send a JSON object (Content-Type: application/json), not {kind!r}"
            return validation_response([{"loc": ("body",), "msg": not_json}])
        try:
            raw = await request.body()
        except ClientDisconnect:  # gone, or cut off by the body limit (already answered)
            return Response(status_code=499)
        try:
            body = BatchIn.model_validate_json(raw)
        except ValidationError as e:
            return validation_response([{**err, "loc": ("body", *err["loc"])}
                                        for err in e.errors(include_url=False)])  # fmt: skip
        try:
            await run_in_threadpool(_authorized_write, request, run_id, body, key)
        except errors.LoopmlError as e:
            return error_response(status_of(e), e.code, e.message, e.details)
        return Response(_OK, media_type="application/json")


def _authorized_write(request: Request, run_id: str, body: BatchIn, key: str | None) -> None:
    caller_of(request).require("run.write", run_scope(request))
    write_batch(request, run_id, body, key)

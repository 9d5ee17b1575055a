"""Errors become JSON ``{"error": {"code", "message", "details"}}``; HTTP codes live only here."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from loopml import errors

log = logging.getLogger("loopml.server")

STATUS: dict[type[errors.LoopmlError], int] = {
    errors.InvalidArgument: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.IntegrityError: 409,
    errors.TooLarge: 413,
    errors.TooManyAttempts: 429,
    errors.ValidationFailed: 422,
    errors.MissingDependency: 501,
    errors.Unavailable: 503,
}
_CODES = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
          404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 422: "validation_failed", 429: "too_many_requests",
          503: "unavailable", 504: "timeout"}  # fmt: skip


def status_of(err: errors.LoopmlError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    if status == 429 and isinstance(details, dict) and "retry_after_seconds" in details:
        headers = {"Retry-After": str(details["retry_after_seconds"])}
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def validation_response(errors_: Any) -> JSONResponse:
    """A request that does not match its schema: 400, naming each field and the problem."""
    problems = [
        {"where": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")}
        for e in errors_
    ]
    first = problems[0] if problems else {"where": "body", "problem": "invalid"}
    message = f"invalid request: {first['where']}: {first['problem']}"
    return error_response(400, "invalid_argument", message, {"problems": problems[:20]})


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.LoopmlError)
    async def _loopml(_: Request, exc: errors.LoopmlError) -> JSONResponse:
        return error_response(status_of(exc), exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "internal server error")

"""The platform server: ``create_app(stack)`` wires routers, errors, limits, metrics, security.

>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> from loopml.settings import Settings
>>> from loopml.stack import Stack
>>> app = create_app(Stack.from_settings(Settings(home=tempfile.mkdtemp())))
>>> TestClient(app, base_url="http://localhost").get("/healthz").json()["status"]
'ok'
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from loopml import __version__
from loopml.server import errors, sessions
from loopml.server.access import (
    Authenticator,
    authenticated,
    caller_of,
    local_authenticator,
    public,
)
from loopml.server.batchlane import BatchLane
from loopml.server.hosts import AllowedHosts, HostGuard
from loopml.server.identity import login_throttle
from loopml.server.jobs import JobRunner
from loopml.server.limits import BodyLimit
from loopml.server.metrics import HttpMetrics, MetricsMiddleware
from loopml.server.routes import (
    api_docs,
    artifacts,
    audit,
    deployments,
    projects,
    registry,
    tokens,
    tracking,
    ui,
    ui_deployments,
    ui_models,
    uploads,
)
from loopml.server.scopes import ProjectIndex
from loopml.stack import Stack

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


class SecurityHeaders:
    """Adds the security headers to every response (pages, API, errors)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    stack: Stack,
    *,
    authenticate: Authenticator | None = None,
    jobs: JobRunner | None = None,
    allowed_hosts: Iterable[str] | None = None,
) -> FastAPI:
    """The ASGI app over ``stack``. Without ``authenticate`` every caller is the local user.

    Requests must name the server in their ``Host``: loopback names, ``settings.host`` and
    ``allowed_hosts`` (default: the ``allowed_hosts`` setting); see :mod:`loopml.server.hosts`.
    """
    settings = stack.settings
    hosts = AllowedHosts.of(
        settings.host, settings.allowed_hosts if allowed_hosts is None else allowed_hosts
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            if jobs is not None:
                jobs.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="loopml",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # served by routes/api_docs.py, without a CDN
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.stack = stack
    app.state.projects_index = ProjectIndex(stack)
    app.state.authenticate = authenticate or local_authenticator(settings.resolved_user())
    app.state.auth_enabled = authenticate is not None
    app.state.login_throttle = login_throttle(stack)
    errors.install(app)
    for router in (
        projects.router, tracking.router, artifacts.router, uploads.router, audit.router,
        tokens.router, registry.router, deployments.router, api_docs.router,
    ):  # fmt: skip
        app.include_router(router)
    app.include_router(ui.router)  # the web UI, its /static files served by declared routes
    app.include_router(ui_models.router)  # the model registry's pages
    app.include_router(ui_deployments.router)  # the deployments' pages

    metrics = HttpMetrics()

    @app.get("/healthz", **public())
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        **public(),
    )
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/api/v1/whoami", **authenticated())
    def whoami(request: Request) -> dict[str, Any]:
        caller = caller_of(request)
        return {"name": caller.name, "is_admin": caller.is_admin}

    # Outermost last: headers on everything, then the body limit, then metrics, then CSRF; the
    # batch lane innermost, so every one of them applies to it too.
    app.add_middleware(BatchLane)
    sessions.install(app, login_enabled=authenticate is not None, backend=stack.sessions)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes,
        max_artifact_bytes=settings.max_artifact_bytes,
    )  # fmt: skip
    app.add_middleware(HostGuard, hosts=hosts)  # before anything else runs (DNS rebinding)
    app.add_middleware(SecurityHeaders)
    return app

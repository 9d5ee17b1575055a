"""Entry points that build the app from the settings (what uvicorn workers import)."""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import socket
from typing import Any

from fastapi import FastAPI

from loopml.errors import InvalidArgument
from loopml.server.app import create_app
from loopml.server.jobs import JobRunner
from loopml.server.routes.uploads import prune_stale_uploads
from loopml.settings import Settings
from loopml.stack import Stack


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: bool) -> None:
    """No open door: binding beyond loopback requires authentication."""
    if not auth and not is_loopback(host):
        raise InvalidArgument(
            f"refusing to serve on {host} without authentication: use --auth (after "
            "`loopml admin init`), or bind to 127.0.0.1"
        )


def _with_nodelay(base: type) -> type:
    """A uvicorn HTTP protocol that sets TCP_NODELAY on every connection it serves.

    With several workers uvicorn binds its shared socket as ``socket.socket(family)``
    (protocol 0), and asyncio only sets TCP_NODELAY on IPPROTO_TCP sockets: every response on a
    kept-alive connection then waits for the peer's delayed ACK, 44 ms here (measured in
    benchmarks/RESULTS.md). Setting the option ourselves keeps one and many workers alike.
    """

    class NoDelay(base):
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    NoDelay.__name__ = NoDelay.__qualname__ = f"NoDelay{base.__name__}"
    return NoDelay


def _http_protocol() -> type:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:  # httptools is optional; h11 is pure Python
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


NoDelayHttpProtocol = _with_nodelay(_http_protocol())
NoDelayHttpProtocol.__module__ = __name__
NoDelayHttpProtocol.__qualname__ = NoDelayHttpProtocol.__name__ = "NoDelayHttpProtocol"


def app_from_settings(settings: Settings | None = None) -> FastAPI:
    """The platform app for ``settings`` (default: the environment). uvicorn's factory."""
    settings = settings or Settings()
    if settings.resolved_uri().startswith(("http://", "https://")):
        raise InvalidArgument("the server needs a database URI (sqlite or postgresql), not http")
    check_bind(settings.host, settings.auth)
    stack = Stack.from_settings(settings)
    authenticate = None
    if settings.auth:
        from loopml.server.identity import token_authenticator

        authenticate = token_authenticator(stack)
    app = create_app(stack, authenticate=authenticate, jobs=background_jobs(stack))
    # What exists now (routes, schemas, the stack) lives as long as the server process: keep it
    # out of the collector's full passes, which would otherwise walk it during requests.
    gc.collect()
    gc.freeze()
    return app


def background_jobs(stack: Stack) -> JobRunner | None:
    """The periodic work `loopml up` runs beside the server; later stages add their monitors."""
    if not stack.settings.background_jobs:
        return None
    runner = JobRunner()
    uploads = stack.settings.home / "uploads"
    runner.add("prune stale uploads", 3600, lambda: prune_stale_uploads(uploads))
    return runner

"""``loopml server``: the platform server (REST API, metrics, health) on uvicorn."""

from __future__ import annotations

import os

import typer

from loopml.cli.output import command, console


@command
def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address (beyond loopback needs --auth)."),
    port: int = typer.Option(5100, help="Port."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes."),
    auth: bool = typer.Option(False, "--auth/--no-auth", help="Require API tokens."),
) -> None:
    """Serve the REST API under /api/v1 (OpenAPI at /api/v1/openapi.json), /healthz, /metrics."""
    import uvicorn

    from loopml.server.http_protocol import HttpProtocol
    from loopml.server.main import check_bind

    check_bind(host, auth)
    # Workers build their app from the environment: pass the choices down that way.
    os.environ.update(
        {"LOOPML_HOST": host, "LOOPML_PORT": str(port), "LOOPML_AUTH": "1" if auth else "0"}
    )
    console.print(f"loopml server on http://{host}:{port}  (auth {'on' if auth else 'off'})")
    uvicorn.run(
        "loopml.server.main:app_from_settings", factory=True, host=host, port=port,
        workers=workers, log_level="warning", http=HttpProtocol,
    )  # fmt: skip

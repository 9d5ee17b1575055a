"""``loopml up``: the whole platform on one machine — server, (soon) UI and background jobs —
with the demo project loaded into an empty store."""

from __future__ import annotations

import typer

from loopml.cli.output import command, console


def _store_is_empty() -> bool:
    from loopml.cli.context import get_client

    client = get_client()
    return len(client.list_projects()) <= 1 and len(client.list_experiments()) <= 1


@command
def up(
    host: str = typer.Option("127.0.0.1", help="Bind address (beyond loopback needs --auth)."),
    port: int = typer.Option(5100, help="Port."),
    demo: bool = typer.Option(True, "--demo/--no-demo", help="Load the demo into an empty store."),
    auth: bool = typer.Option(False, "--auth/--no-auth", help="Require API tokens."),
) -> None:
    """Start loopml: load the demo on first start, then serve on http://HOST:PORT."""
    from loopml.server.main import check_bind

    check_bind(host, auth)
    if demo and _store_is_empty():
        from loopml.cli.context import get_client
        from loopml.demo import describe, load_demo

        console.print("loading the demo project (fraud detection, about 15 s) …")
        summary = load_demo(get_client())
        console.print(describe(get_client(), summary))
    import os

    from loopml.cli.server import serve

    os.environ["LOOPML_BACKGROUND_JOBS"] = "1"  # the slot for monitors and pipelines
    serve(host=host, port=port, workers=1, auth=auth)

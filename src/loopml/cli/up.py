"""``loopml up``: the whole platform on one machine — server, (soon) UI and background jobs —
with the demo project loaded into an empty store."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator

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
    serve_port: int = typer.Option(5101, help="Port of the demo deployment's inference server."),
    traffic: bool = typer.Option(
        True, "--traffic/--no-traffic", help="Send the demo deployment a gentle request stream."
    ),
) -> None:
    """Start loopml: load the demo on first start, then serve on http://HOST:PORT; when the demo
    deployment exists, also serve it on 127.0.0.1:SERVE_PORT and send it generated traffic."""
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
    with _demo_deployment(serve_port, traffic):
        serve(host=host, port=port, workers=1, auth=auth)


@contextlib.contextmanager
def _demo_deployment(port: int, traffic: bool) -> Iterator[None]:
    """``loopml serve --deployment fraud-scoring`` beside the platform (its own process, which
    dies with this one), and a job feeding it generated payments."""
    from loopml.cli.context import get_client
    from loopml.demo.deployments import DEPLOYMENT
    from loopml.errors import NotFound

    deployments = get_client().stack.deployments
    try:
        if deployments is None:
            raise NotFound("no deployments")
        deployments.get_deployment(DEPLOYMENT)
    except NotFound:
        yield
        return
    command = [sys.executable, "-m", "loopml.cli.main", "serve", "--deployment", DEPLOYMENT,
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, preexec_fn=_die_with_parent)
    console.print(f"demo deployment {DEPLOYMENT!r}: http://127.0.0.1:{port}/v2  (90 % production, "
                  "10 % canary)")  # fmt: skip
    runner, generator = None, None
    if traffic:
        from loopml.demo.traffic import demo_traffic_job
        from loopml.server.jobs import JobRunner

        generator = demo_traffic_job(f"http://127.0.0.1:{port}", get_client())
        if generator is not None:
            runner = JobRunner()
            runner.add("demo traffic", 2.0, generator.tick)
            runner.start()
    try:
        yield
    finally:
        if runner is not None:
            runner.stop()
        if generator is not None:
            generator.close()
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _die_with_parent() -> None:
    """In the child: SIGTERM when `loopml up` dies, even by SIGKILL (Linux)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

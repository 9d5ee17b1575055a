"""``loopml artifacts``: list and download a run's artifacts (digests verified)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from loopml.cli.context import get_client, resolve_run_id
from loopml.cli.output import command, print_json, print_table

app = typer.Typer(help="Artifacts of runs.", no_args_is_help=True)


@app.command("ls")
@command
def ls(
    run_id: str,
    path: str = typer.Argument("", help="Folder inside the run's artifacts."),
    recursive: bool = typer.Option(False, "--recursive", "-r"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List a run's artifacts."""
    client = get_client()
    entries = client.artifacts.list(
        client.get_run(resolve_run_id(run_id)), path, recursive=recursive
    )
    if as_json:
        print_json(entries)
        return
    rows = [[e.path + ("/" if e.is_dir else ""), e.size, (e.sha256 or "")[:16]] for e in entries]
    print_table(f"Artifacts of {run_id}", ["path", "size", "sha256"], rows)


@app.command()
@command
def get(
    run_id: str,
    path: str = typer.Argument("", help="File or folder to download (default: everything)."),
    output: Path = typer.Option(Path("."), "--output", "-o", help="Destination folder."),
) -> None:
    """Download a file or folder; every recorded sha256 is verified."""
    client = get_client()
    run = client.get_run(resolve_run_id(run_id))
    entries = [e for e in client.artifacts.list(run, path, recursive=True) if not e.is_dir]
    total = sum(e.size or 0 for e in entries) or None
    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task(f"downloading {path or 'artifacts'}", total=total)
        target = client.artifacts.download(
            run, path, output, progress=lambda n: progress.advance(task, n)
        )
    typer.echo(f"downloaded to {target}")

"""``loopml audit``: read and verify the hash-chained audit log."""

from __future__ import annotations

from datetime import datetime

import typer

from loopml.cli.context import get_client
from loopml.cli.output import command, console, err_console, fmt_time, print_json, print_table
from loopml.errors import InvalidArgument

app = typer.Typer(help="The audit log of every change.", no_args_is_help=True)


def _ms(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        raise InvalidArgument(
            f"--{name} must be an ISO date or time, e.g. 2026-11-27T10:00"
        ) from None


@app.command("ls")
@command
def ls(
    object_type: str | None = typer.Option(None, "--type", help="run, experiment, project …"),
    object_id: str | None = typer.Option(None, "--object", help="Id of the object."),
    actor: str | None = typer.Option(None),
    since: str | None = typer.Option(None, help="ISO time, inclusive."),
    until: str | None = typer.Option(None, help="ISO time, inclusive."),
    limit: int = typer.Option(100, "--limit", "-n"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List audit events, oldest first."""
    events = get_client().audit_events(
        object_type=object_type, object_id=object_id, actor=actor,
        since=_ms(since, "since"), until=_ms(until, "until"), limit=limit,
    )  # fmt: skip
    if as_json:
        print_json(events)
        return
    rows = [[e.seq, fmt_time(e.ts), e.actor, e.action, f"{e.object_type}:{e.object_id}",
             e.hash[:12]] for e in events]  # fmt: skip
    print_table("Audit events", ["seq", "time (UTC)", "actor", "action", "object", "hash"], rows)


@app.command()
@command
def verify() -> None:
    """Check the whole chain; exit 1 if any event was edited, removed or reordered."""
    report = get_client().verify_audit()
    if report.ok:
        console.print(f"[green]audit chain intact[/green]: {report.events_checked} events verified")
        return
    for problem in report.problems:
        err_console.print(f"[red]broken:[/red] {problem}", highlight=False)
    raise typer.Exit(1)

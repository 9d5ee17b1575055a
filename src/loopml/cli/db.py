"""``loopml db``: schema migrations of the metadata store."""

from __future__ import annotations

import typer

from loopml.cli.output import command

app = typer.Typer(help="Metadata database schema.", no_args_is_help=True)


def _engine():  # type: ignore[no-untyped-def]
    from loopml.backends.sql.engine import make_engine
    from loopml.settings import Settings

    return make_engine(Settings().resolved_uri())


@app.command()
@command
def current() -> None:
    """Print the schema revision of the database and the one this loopml expects."""
    from loopml.backends.sql.migrate import HEAD_REVISION, current_revision

    rev = current_revision(_engine())
    state = "up to date" if rev == HEAD_REVISION else "needs `loopml db upgrade`"
    typer.echo(f"database: {rev or 'empty'}  loopml head: {HEAD_REVISION}  ({state})")


@app.command()
@command
def upgrade(revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Apply pending migrations (safe to run from several processes at once)."""
    from loopml.backends.sql.migrate import upgrade as do_upgrade

    rev = do_upgrade(_engine(), revision)
    typer.echo(f"database at revision {rev}")

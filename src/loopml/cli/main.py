"""The ``loopml`` command."""

from __future__ import annotations

import typer

from loopml.cli import (
    admin,
    artifacts,
    audit,
    db,
    deploy,
    experiments,
    loadtest,
    models,
    predict,
    projects,
    runs,
    serve,
    server,
    up,
)
from loopml.cli.output import console

app = typer.Typer(
    name="loopml",
    help="loopml: from a business KPI to a model in production, and back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(projects.app, name="projects")
app.add_typer(experiments.app, name="experiments")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(deploy.app, name="deploy")
app.add_typer(artifacts.app, name="artifacts")
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(admin.app, name="admin")
app.command("server")(server.serve)
app.command("serve")(serve.serve_model)
app.command("up")(up.up)
app.command("loadtest")(loadtest.loadtest)
app.command("predict")(predict.predict)


@app.command()
def version() -> None:
    """Print the loopml version."""
    from loopml import __version__

    console.print(f"loopml {__version__}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""``loopml experiments``: list, create, show, rename, delete, restore."""

from __future__ import annotations

import typer

from loopml.cli.context import get_client
from loopml.cli.output import command, fmt_time, print_json, print_mapping, print_table
from loopml.tracking.entities import Experiment, ViewType

app = typer.Typer(help="Experiments: groups of runs inside a project.", no_args_is_help=True)


def _rows(items: list[Experiment]) -> list[list[object]]:
    return [
        [e.experiment_id, e.name, e.project_id, e.lifecycle_stage.value, fmt_time(e.creation_time)]
        for e in items
    ]


@app.command("ls")
@command
def ls(
    deleted: bool = typer.Option(False, "--deleted", help="Show deleted experiments only."),
    all_: bool = typer.Option(False, "--all", help="Show active and deleted experiments."),
    project: str | None = typer.Option(None, help="Only experiments of this project."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List experiments."""
    view = ViewType.ALL if all_ else ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    items = get_client().list_experiments(view=view, project=project)
    if as_json:
        print_json(items)
    else:
        print_table("Experiments", ["id", "name", "project", "stage", "created"], _rows(items))


@app.command()
@command
def create(
    name: str,
    project: str | None = typer.Option(None, help="Project name or id (default: 'default')."),
    description: str = typer.Option("", help="What the experiment is about."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an experiment."""
    exp = get_client().create_experiment(name, project=project, description=description)
    print_json(exp) if as_json else print_table(
        "Created", ["id", "name"], [[exp.experiment_id, exp.name]]
    )


@app.command()
@command
def show(experiment: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show an experiment by id or name."""
    exp = _resolve(experiment)
    if as_json:
        print_json(exp)
        return
    print_mapping(
        f"Experiment {exp.experiment_id}",
        {"name": exp.name, "project": exp.project_id, "stage": exp.lifecycle_stage.value,
         "description": exp.description, "created": fmt_time(exp.creation_time),
         **{f"tag:{k}": v for k, v in exp.tags.items()}},
    )  # fmt: skip


@app.command()
@command
def rename(experiment: str, new_name: str) -> None:
    """Rename an experiment."""
    exp = _resolve(experiment)
    get_client().update_experiment(exp.experiment_id, name=new_name)
    typer.echo(f"experiment {exp.experiment_id} renamed to {new_name!r}")


@app.command()
@command
def delete(experiment: str) -> None:
    """Soft-delete an experiment (restore brings it back)."""
    exp = _resolve(experiment)
    get_client().delete_experiment(exp.experiment_id)
    typer.echo(f"experiment {exp.experiment_id} deleted")


@app.command()
@command
def restore(experiment: str) -> None:
    """Restore a deleted experiment."""
    exp = _resolve(experiment)
    get_client().restore_experiment(exp.experiment_id)
    typer.echo(f"experiment {exp.experiment_id} restored")


def _resolve(ref: str) -> Experiment:
    client = get_client()
    if ref.isdigit():
        return client.get_experiment(ref)
    exp = client.get_experiment_by_name(ref)
    if exp is None:
        from loopml.errors import NotFound

        raise NotFound(f"experiment {ref!r} not found")
    return exp

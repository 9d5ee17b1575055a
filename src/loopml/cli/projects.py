"""``loopml projects``: business goal, OKRs and KPIs."""

from __future__ import annotations

import typer

from loopml.cli.context import get_client
from loopml.cli.output import command, fmt_time, print_json, print_mapping, print_table
from loopml.projects.entities import Project

app = typer.Typer(help="Projects: business goal, OKRs and KPIs.", no_args_is_help=True)


@app.command("ls")
@command
def ls(as_json: bool = typer.Option(False, "--json")) -> None:
    """List projects."""
    items = get_client().list_projects()
    if as_json:
        print_json(items)
        return
    rows = [[p.project_id, p.name, p.business_goal, p.owner, len(p.kpis)] for p in items]
    print_table("Projects", ["id", "name", "business goal", "owner", "KPIs"], rows)


@app.command()
@command
def create(
    name: str,
    goal: str = typer.Option("", "--goal", help="The business goal, in a sentence."),
    description: str = typer.Option(""),
    owner: str = typer.Option("", help="Who answers for the project."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a project."""
    p = get_client().create_project(name, business_goal=goal, description=description, owner=owner)
    _show(p, as_json)


@app.command()
@command
def show(project: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """A project with its OKRs and KPIs."""
    _show(get_client().get_project(project), as_json)


@app.command()
@command
def update(
    project: str,
    goal: str | None = typer.Option(None, "--goal"),
    description: str | None = typer.Option(None),
    owner: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Change a project's goal, description or owner."""
    p = get_client().update_project(
        project, business_goal=goal, description=description, owner=owner
    )
    _show(p, as_json)


@app.command("add-okr")
@command
def add_okr(
    project: str,
    objective: str,
    key_result: list[str] | None = typer.Option(None, "--key-result", "-k", help="Repeatable."),
    owner: str = typer.Option(""),
) -> None:
    """Add an objective with its key results."""
    okr = get_client().add_okr(project, objective, key_result or [], owner=owner)
    typer.echo(f"OKR {okr.okr_id} added to {project}")


@app.command("add-kpi")
@command
def add_kpi(
    project: str,
    name: str,
    metric: str = typer.Option(..., help="The metric the KPI reads, e.g. recall."),
    target: float = typer.Option(..., help="The value to reach."),
    direction: str = typer.Option("maximize", help="maximize or minimize."),
    judged_at: str = typer.Option("validation", help="validation or production."),
    description: str = typer.Option(""),
    owner: str = typer.Option(""),
) -> None:
    """Add a KPI to a project."""
    kpi = get_client().add_kpi(
        project, name, metric=metric, target=target, direction=direction, judged_at=judged_at,
        description=description, owner=owner,
    )  # fmt: skip
    typer.echo(f"KPI {kpi.name!r} added: {kpi.metric} {kpi.direction.value} to {kpi.target:g}")


@app.command("update-kpi")
@command
def update_kpi(
    project: str,
    name: str,
    metric: str | None = typer.Option(None),
    target: float | None = typer.Option(None),
    direction: str | None = typer.Option(None),
    judged_at: str | None = typer.Option(None),
    description: str | None = typer.Option(None),
    owner: str | None = typer.Option(None),
) -> None:
    """Change a KPI."""
    kpi = get_client().update_kpi(
        project, name, metric=metric, target=target, direction=direction, judged_at=judged_at,
        description=description, owner=owner,
    )  # fmt: skip
    typer.echo(f"KPI {kpi.name!r}: {kpi.metric} {kpi.direction.value} to {kpi.target:g}")


def _show(p: Project, as_json: bool) -> None:
    if as_json:
        print_json(p)
        return
    print_mapping(
        f"Project {p.name}",
        {"id": p.project_id, "business goal": p.business_goal, "description": p.description,
         "owner": p.owner, "created": fmt_time(p.creation_time)},
    )  # fmt: skip
    if p.okrs:
        print_table("OKRs", ["objective", "key results", "owner"],
                    [[o.objective, "; ".join(o.key_results), o.owner] for o in p.okrs])  # fmt: skip
    if p.kpis:
        print_table(
            "KPIs", ["name", "metric", "target", "direction", "judged at", "owner"],
            [[k.name, k.metric, k.target, k.direction.value, k.judged_at.value, k.owner]
             for k in p.kpis],
        )  # fmt: skip

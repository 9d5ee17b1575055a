"""``loopml runs``: ls, search, show, compare, delete, restore."""

from __future__ import annotations

import typer

from loopml.cli.context import get_client, resolve_run_id
from loopml.cli.output import command, console, fmt_time, print_json, print_mapping, print_table
from loopml.errors import InvalidArgument
from loopml.tracking.entities import Page, Run, ViewType

app = typer.Typer(help="Runs: search, inspect, compare, delete and restore.", no_args_is_help=True)

ExperimentOpt = typer.Option(
    None, "--experiment", "-e", help="Experiment id or name (repeatable; default: all active)."
)


def _experiment_ids(refs: list[str] | None) -> list[str]:
    from loopml.cli.experiments import _resolve

    if refs:
        return [_resolve(r).experiment_id for r in refs]
    return [e.experiment_id for e in get_client().list_experiments()]


def _print_page(page: Page[Run], as_json: bool, order_by: list[str] | None = None) -> None:
    if as_json:
        print_json({"runs": page.items, "next_page_token": page.next_page_token})
        return
    # The metric the user sorts by first, then others, as many as fit a terminal.
    first = [
        o.split()[0].removeprefix("metrics.") for o in order_by or [] if o.startswith("metrics.")
    ]
    others = sorted({k for r in page.items for k in r.metrics} - set(first))
    metric_keys = (first + others)[:4]
    rows = [
        [r.run_id[:8], r.run_name, r.status.value, fmt_time(r.start_time)[5:16],
         *[r.metrics.get(k) for k in metric_keys]]
        for r in page.items
    ]  # fmt: skip
    caption = f"next page: --page-token {page.next_page_token}" if page.next_page_token else ""
    print_table("Runs", ["run", "name", "status", "started", *metric_keys], rows, caption=caption)


def _search(
    experiments: list[str] | None,
    filter_string: str | None,
    order_by: list[str] | None,
    max_results: int,
    page_token: str | None,
    deleted: bool,
    as_json: bool,
) -> None:
    page = get_client().search_runs(
        _experiment_ids(experiments), filter_string, order_by=order_by, max_results=max_results,
        page_token=page_token, view=ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY,
    )  # fmt: skip
    _print_page(page, as_json, order_by)


@app.command("ls")
@command
def ls(
    experiment: list[str] | None = ExperimentOpt,
    order_by: list[str] | None = typer.Option(None, "--order-by", help="e.g. 'metrics.acc DESC'"),
    max_results: int = typer.Option(50, "--max-results", "-n"),
    page_token: str | None = typer.Option(None, "--page-token"),
    deleted: bool = typer.Option(False, "--deleted", help="Show deleted runs."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List runs, newest first."""
    _search(experiment, None, order_by, max_results, page_token, deleted, as_json)


@app.command()
@command
def search(
    filter_string: str = typer.Argument(
        ..., help="e.g. \"metrics.acc > 0.9 and params.model = 'rf'\""
    ),
    experiment: list[str] | None = ExperimentOpt,
    order_by: list[str] | None = typer.Option(None, "--order-by"),
    max_results: int = typer.Option(50, "--max-results", "-n"),
    page_token: str | None = typer.Option(None, "--page-token"),
    deleted: bool = typer.Option(False, "--deleted"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search runs with the filter language."""
    _search(experiment, filter_string, order_by, max_results, page_token, deleted, as_json)


@app.command()
@command
def show(run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything about one run (a unique id prefix is enough)."""
    client = get_client()
    run = client.get_run(resolve_run_id(run_id))
    artifacts = client.artifacts.list(run, recursive=True)
    if as_json:
        print_json({"run": run, "artifacts": artifacts})
        return
    print_mapping(
        f"Run {run.run_id}",
        {"name": run.run_name, "status": run.status.value, "experiment": run.experiment_id,
         "user": run.user, "started": fmt_time(run.start_time), "ended": fmt_time(run.end_time),
         "wall seconds": run.wall_seconds, "cpu seconds": run.cpu_seconds,
         "peak memory (MiB)": None if run.peak_memory_bytes is None
         else round(run.peak_memory_bytes / 2**20, 1),
         "parent": run.parent_run_id, "source": run.source, "git commit": run.git_commit,
         "git dirty": run.git_dirty, "stage": run.lifecycle_stage.value},
    )  # fmt: skip
    for title, mapping in (("Params", run.params), ("Metrics", run.metrics), ("Tags", run.tags)):
        if mapping:
            print_mapping(title, mapping)
    if run.inputs:
        print_table("Inputs", ["name", "role", "digest"],
                    [[i.name, i.role, i.digest[:16]] for i in run.inputs])  # fmt: skip
    if artifacts:
        files = [[a.path, a.size, (a.sha256 or "")[:16]] for a in artifacts if not a.is_dir]
        print_table("Artifacts", ["path", "size", "sha256"], files)


@app.command()
@command
def compare(run_ids: list[str], as_json: bool = typer.Option(False, "--json")) -> None:
    """Params and metrics of 2-10 runs side by side; differing rows are highlighted."""
    if not 2 <= len(run_ids) <= 10:
        raise InvalidArgument("compare takes 2 to 10 run ids")
    client = get_client()
    runs = [client.get_run(resolve_run_id(r)) for r in run_ids]
    if as_json:
        print_json({r.run_id: {"params": r.params, "metrics": r.metrics} for r in runs})
        return
    from rich.table import Table

    table = Table(title="Compare runs")
    table.add_column("")
    for r in runs:
        table.add_column(f"{r.run_name}\n{r.run_id[:8]}")
    for kind, attr in (("param", "params"), ("metric", "metrics")):
        for key in sorted({k for r in runs for k in getattr(r, attr)}):
            values = [getattr(r, attr).get(key) for r in runs]
            style = "bold yellow" if len({repr(v) for v in values}) > 1 else None
            cells = [
                "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in values
            ]
            table.add_row(f"{kind}s.{key}", *cells, style=style)
    console.print(table)


@app.command()
@command
def delete(run_id: str) -> None:
    """Soft-delete a run."""
    run_id = resolve_run_id(run_id)
    get_client().delete_run(run_id)
    typer.echo(f"run {run_id} deleted")


@app.command()
@command
def restore(run_id: str) -> None:
    """Restore a deleted run."""
    run_id = resolve_run_id(run_id)
    get_client().restore_run(run_id)
    typer.echo(f"run {run_id} restored")

"""``loopml predict``: batch-score a Parquet or CSV file with a logged or registered model."""

from __future__ import annotations

from pathlib import Path

import typer

from loopml.cli.context import get_client
from loopml.cli.output import command, console, err_console
from loopml.errors import InvalidArgument, NotFound
from loopml.serving.batch import BatchResult, Model, file_format


@command
def predict(
    model_ref: str = typer.Argument(
        ...,
        metavar="MODEL_REF",
        help="runs:/<run>/<path>, models:/<name>/<version> or models:/<name>@<alias>.",
    ),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="A .parquet or .csv file."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write (.parquet or .csv)."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", min=1, help="Rows per chunk."),
    executor: str = typer.Option("local", "--executor", help="local or ray."),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="A Ray cluster (default with --executor ray: start a local one).",
    ),
    trust: bool = typer.Option(
        False, "--trust", help="Allow a pickle-based package recorded by this platform."
    ),
    columns: str | None = typer.Option(
        None, "--columns", help="Feature columns a,b,… (default: the signature's inputs)."
    ),
    output_column: str = typer.Option("prediction", "--output-column", help="Prediction column."),
) -> None:
    """Score INPUT chunk by chunk and write it with predictions appended to OUTPUT (complete or
    not at all)."""
    file_format(input_path)
    file_format(output)
    if not input_path.is_file():
        raise NotFound(f"input file {str(input_path)!r} does not exist")
    if executor not in ("local", "ray"):
        raise InvalidArgument(f"unknown executor {executor!r}; choose 'local' or 'ray'")
    if ray_address and executor != "ray":
        raise InvalidArgument("--ray-address needs --executor ray")
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = _score(model_ref, input_path, output, chunk_rows=chunk_rows, executor=executor,
                    ray_address=ray_address, trust=trust, columns=wanted,
                    output_column=output_column)  # fmt: skip
    console.print(
        f"scored {result.rows:,} rows in {result.chunks} chunks in {result.seconds:.2f} s "
        f"→ {output}", highlight=False,
    )  # fmt: skip


def _score(
    model_ref: str, input_path: Path, output: Path, *, chunk_rows: int, executor: str,
    ray_address: str | None, trust: bool, columns: list[str] | None, output_column: str,
) -> BatchResult:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from loopml.execution import Executor, LocalExecutor
    from loopml.serving.batch import PackagePredictor, count_rows, score_file

    client = get_client()
    allowed = True if trust else None  # None: the settings decide
    predictor = client.load_model(model_ref, trust=allowed)  # verifies and caches the package
    ex: Executor
    factory: PackagePredictor | _Loaded
    if executor == "ray":
        from loopml.execution.ray_executor import RayExecutor

        _, _, digest = client.models.resolve(model_ref)
        folder = client.settings.home / "model-cache" / digest
        # Ray workers on this machine load the verified cache folder themselves, once each.
        factory = PackagePredictor(
            str(folder), digest, trust or client.settings.trust_pickled_models
        )
        ex = RayExecutor(address=ray_address)
    else:
        factory = _Loaded(predictor)
        ex = LocalExecutor()
    columns_shown = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(),
                     TextColumn("rows"), TimeElapsedColumn()]  # fmt: skip
    with (
        ex,
        Progress(
            *columns_shown, console=err_console, transient=True, disable=not err_console.is_terminal
        ) as progress,
    ):
        task = progress.add_task("rows", total=count_rows(input_path))
        return score_file(factory, input_path, output, chunk_rows=chunk_rows, executor=ex,
                          columns=columns, output_column=output_column,
                          progress=lambda n: progress.advance(task, n))  # fmt: skip


class _Loaded:
    """The model already loaded in this process (the local executor needs no second load)."""

    def __init__(self, model: Model) -> None:
        self.model = model

    def __call__(self) -> Model:
        return self.model

"""``loopml deploy``: deployments — which model versions get live traffic, canaries, shadows,
history and rollback.

Targets are written ``MODEL:VERSION`` or ``MODEL@ALIAS`` (a bare ``MODEL`` means its latest
version), with ``=WEIGHT`` for a share of live traffic: ``--model fraud:3=0.9 --model
fraud@challenger=0.1``.

``loopml deploy log show|policy|compact|prune NAME`` looks after a deployment's prediction log:
its retention and legal hold, compaction of finished hours and pruning past retention.
"""

from __future__ import annotations

import math

import typer

from loopml.cli.context import get_client
from loopml.cli.output import (
    command,
    err_console,
    fmt_time,
    print_json,
    print_mapping,
    print_table,
)
from loopml.errors import InvalidArgument, Unavailable
from loopml.serving.deployment_store import DeploymentRegistry
from loopml.serving.deployments import (
    REDACT_MODES,
    Deployment,
    DeploymentSpec,
    Target,
    parse_ref,
)
from loopml.serving.predlog_records import HourCompaction, LogStatus, hour_label

app = typer.Typer(
    help="Deployments: live traffic, canaries and shadows across model versions; rollback.",
    no_args_is_help=True,
)
log_app = typer.Typer(
    help="A deployment's prediction log: retention, legal hold, compaction and pruning.",
    no_args_is_help=True,
)
app.add_typer(log_app, name="log")


def _deployments() -> DeploymentRegistry:
    found = get_client().stack.deployments
    if found is None:
        raise Unavailable("this store has no deployments")
    return found


def _weight(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"{what}: weight {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"{what}: weight {text!r} must be a finite number ≥ 0")
    return value


def _target(ref: str, *, weight: float = 0.0, shadow: bool = False) -> Target:
    """``MODEL:VERSION``, ``MODEL@ALIAS`` or a bare ``MODEL`` (its latest version)."""
    ref = ref.strip()
    if ":" in ref or "@" in ref:
        return parse_ref(ref, weight=weight, shadow=shadow)
    model = get_client().registry.get_registered_model(ref)
    if not model.latest_version:
        raise InvalidArgument(f"model {ref!r} has no versions yet: register one first")
    return Target(ref, version=model.latest_version, weight=weight, shadow=shadow)


def parse_weighted(texts: list[str], *, option: str, need_weights: bool) -> list[Target]:
    """``REF=WEIGHT`` items; without any ``=WEIGHT`` (and unless ``need_weights``) the traffic
    is split evenly."""
    split = [(text, *text.rpartition("=")) for text in texts]
    weighted = [bool(sep) for _, _, sep, _ in split]
    if need_weights and not all(weighted):
        bad = next(text for text, _, sep, _ in split if not sep)
        raise InvalidArgument(f"{option} {bad!r}: give REF=WEIGHT, e.g. fraud:3=0.9")
    if any(weighted) and not all(weighted):
        raise InvalidArgument(f"give a weight to every {option} or to none (an even split)")
    return [
        _target(ref, weight=_weight(w, f"{option} {text!r}")) if sep else _target(text, weight=1.0)
        for text, ref, sep, w in split
    ]


def parse_redact(texts: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in texts:
        column, sep, mode = text.rpartition("=")
        if not sep or not column.strip() or mode.strip() not in REDACT_MODES:
            raise InvalidArgument(f"bad --redact {text!r}: use COLUMN=drop or COLUMN=hash")
        out[column.strip()] = mode.strip()
    return out


def _live(d: Deployment) -> str:
    return ", ".join(f"{t.ref} {t.weight * 100:.4g}%" for t in d.spec.live)


def _shadows(d: Deployment) -> str:
    if not d.spec.shadows:
        return "-"
    share = f" ({d.spec.shadow_share * 100:.4g}% mirrored)"
    return ", ".join(t.ref for t in d.spec.shadows) + share


@app.command("list")
@command
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List deployments."""
    found = _deployments().list_deployments()
    if as_json:
        print_json(found)
        return
    projects = {p.project_id: p.name for p in get_client().list_projects()}
    rows = [[d.name, projects.get(d.project_id, d.project_id), d.revision, _live(d), _shadows(d),
             d.updated_by, fmt_time(d.updated_time)] for d in found]  # fmt: skip
    columns = ["name", "project", "revision", "live traffic", "shadows", "updated by",
               "updated (UTC)"]  # fmt: skip
    print_table("Deployments", columns, rows)


@app.command()
@command
def create(
    name: str,
    model: list[str] = typer.Option(
        ..., "--model", "-m", help="MODEL[:VERSION|@ALIAS][=WEIGHT]; repeat for A/B or canary."
    ),
    shadow: list[str] = typer.Option(
        [], "--shadow", help="MODEL:VERSION or MODEL@ALIAS mirrored (answers logged only)."
    ),
    shadow_share: float = typer.Option(1.0, help="Share of requests mirrored to the shadows."),
    sticky_key: str | None = typer.Option(
        None, help="Header (X-…) or input field whose value pins a caller to one target."
    ),
    sample_rate: float = typer.Option(1.0, help="Share of predictions logged."),
    redact: list[str] = typer.Option(
        [], "--redact", help="COLUMN=drop or COLUMN=hash in the prediction log; repeatable."
    ),
    max_batch_size: int | None = typer.Option(None, help="Batch size cap (server default)."),
    max_wait_ms: float | None = typer.Option(None, help="Batch wait cap (server default)."),
    project: str | None = typer.Option(None, help="Project (default: the first model's)."),
    description: str = typer.Option("", help="What the deployment serves."),
) -> None:
    """Create a deployment: live targets with weights, shadows and serving knobs."""
    client = get_client()
    targets = parse_weighted(model, option="--model", need_weights=False)
    targets += [_target(s, shadow=True) for s in shadow]
    spec = DeploymentSpec(
        tuple(targets), shadow_share=shadow_share, sticky_key=sticky_key,
        max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, sample_rate=sample_rate,
        redact=parse_redact(redact),
    )  # fmt: skip
    made = _deployments().create_deployment(
        name, spec, actor=client.actor, project=project, description=description
    )
    typer.echo(f"created deployment {made.name} (revision {made.revision}): {_live(made)}")


@app.command()
@command
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A deployment: its targets, shadows and serving knobs."""
    found = _deployments().get_deployment(name)
    if as_json:
        print_json(found)
        return
    spec = found.spec
    projects = {p.project_id: p.name for p in get_client().list_projects()}
    print_mapping(
        f"Deployment {found.name}",
        {"project": projects.get(found.project_id, found.project_id), "revision": found.revision,
         "description": found.description, "shadow share": spec.shadow_share,
         "sticky key": spec.sticky_key, "sample rate": spec.sample_rate,
         "max batch size": spec.max_batch_size, "max wait (ms)": spec.max_wait_ms,
         "created": f"{fmt_time(found.created_time)} by {found.created_by}",
         "updated": f"{fmt_time(found.updated_time)} by {found.updated_by}",
         **{f"redact:{c}": m for c, m in spec.redact.items()}},
    )  # fmt: skip
    rows = [[t.ref, "shadow" if t.shadow else f"{t.weight * 100:.4g}%"] for t in spec.targets]
    print_table("Targets", ["target", "traffic"], rows)


@app.command()
@command
def traffic(
    name: str,
    weights: list[str] = typer.Argument(..., help="MODEL:VERSION=WEIGHT or MODEL@ALIAS=WEIGHT"),
) -> None:
    """Split live traffic, e.g. `loopml deploy traffic fraud-api fraud:3=0.9 fraud:4=0.1`."""
    client = get_client()
    targets = parse_weighted(weights, option="weight", need_weights=True)
    mapping: dict[str, float] = {}
    for t in targets:
        if t.ref in mapping:
            raise InvalidArgument(f"target {t.ref} is given twice")
        mapping[t.ref] = t.weight
    moved = _deployments().set_traffic(name, mapping, actor=client.actor)
    typer.echo(f"deployment {moved.name} revision {moved.revision}: {_live(moved)}")


@app.command()
@command
def rollback(
    name: str,
    to: int | None = typer.Option(None, "--to", help="Revision to restore (default: previous)."),
) -> None:
    """Restore an earlier revision's spec as a new revision."""
    client = get_client()
    moved = _deployments().rollback(name, actor=client.actor, to_revision=to)
    typer.echo(f"deployment {moved.name} revision {moved.revision}: {_live(moved)}")


@app.command()
@command
def history(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Every revision of a deployment: who changed what, and why."""
    found = _deployments().history(name)
    if as_json:
        print_json(found)
        return
    rows = [[r.revision, r.reason, r.actor, fmt_time(r.time),
             ", ".join(f"{t.ref} {t.weight * 100:.4g}%" for t in r.spec.live),
             ", ".join(t.ref for t in r.spec.shadows) or "-"] for r in found]  # fmt: skip
    print_table(f"History of {name}", ["revision", "reason", "by", "time (UTC)", "live",
                                        "shadows"], rows)  # fmt: skip


@app.command()
@command
def delete(name: str) -> None:
    """Delete a deployment (its history stays in the audit log)."""
    client = get_client()
    _deployments().delete_deployment(name, actor=client.actor)
    typer.echo(f"deployment {name} deleted")


# the prediction log ------------------------------------------------------------------------------
def _print_status(status: LogStatus) -> None:
    own = status.retention_days
    print_mapping(
        f"Prediction log of {status.deployment}",
        {"retention (days)": status.effective_retention_days,
         "retention set on the deployment": own if own is not None else "no (server default)",
         "server default (days)": status.default_retention_days,
         "server floor (days)": status.floor_days,
         "legal hold": "yes: nothing is pruned" if status.legal_hold else "no",
         "hours": status.hours, "files": status.files, "bytes": status.bytes,
         "oldest hour (UTC)": status.oldest_hour, "newest hour (UTC)": status.newest_hour,
         "hours to compact": len(status.compactable_hours)},
    )  # fmt: skip


@log_app.command("show")
@command
def log_show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The log's retention, legal hold and size."""
    status = _deployments().log_status(name)
    if as_json:
        print_json(status)
        return
    _print_status(status)


@log_app.command("policy")
@command
def log_policy(
    name: str,
    retention_days: int | None = typer.Option(
        None, "--retention-days", help="Keep the log this many days (not below the floor)."
    ),
    default_retention: bool = typer.Option(
        False, "--default-retention", help="Back to the server's default retention."
    ),
    legal_hold: bool | None = typer.Option(
        None, "--legal-hold/--no-legal-hold",
        help="Stop pruning altogether, or lift the hold (an admin, on a server with auth).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:  # fmt: skip
    """Set the log's retention or legal hold (audited)."""
    if retention_days is None and not default_retention and legal_hold is None:
        raise InvalidArgument(
            "give --retention-days N, --default-retention, --legal-hold or --no-legal-hold"
        )
    status = _deployments().set_log_policy(
        name, actor=get_client().actor, retention_days=retention_days,
        default_retention=default_retention, legal_hold=legal_hold,
    )  # fmt: skip
    if as_json:
        print_json(status)
        return
    _print_status(status)


@log_app.command("compact")
@command
def log_compact(
    name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Fold each finished hour's small segments into one file (no row changes)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deployments, actor = _deployments(), get_client().actor
    hours = deployments.log_status(name).compactable_hours
    done: list[HourCompaction] = []
    columns = [TextColumn("compacting {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("hours"), TimeElapsedColumn()]  # fmt: skip
    quiet = as_json or not err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task(name, total=len(hours))
        for hour in hours:  # an hour per call: progress, and a remote server answers quickly
            progress.update(task, description=f"{name} {hour_label(hour)}")
            done += deployments.compact_log(name, actor=actor, hour_ms=hour)
            progress.advance(task)
    if as_json:
        print_json([c.to_dict() for c in done])
        return
    rows = [[hour_label(c.hour_ms), c.kind, c.files_before, c.files_removed, c.rows]
            for c in done]  # fmt: skip
    print_table(f"Compacted {name}", ["hour (UTC)", "kind", "files before", "removed", "rows"],
                rows, caption=f"{len({c.hour_ms for c in done})} hours")  # fmt: skip


@log_app.command("prune")
@command
def log_prune(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Remove whole hours older than the retention (nothing on legal hold); audited."""
    results = _deployments().prune_log(name, actor=get_client().actor)
    if as_json:
        print_json(results)
        return
    if results and results[0].legal_hold:
        typer.echo(f"deployment {name} is on legal hold: nothing pruned")
        return
    hours = [h for r in results for h in r.hours]
    rows = {k: sum(r.rows.get(k, 0) for r in results) for k in ("predictions", "feedback")}
    files = sum(r.files for r in results)
    typer.echo(
        f"pruned {len(hours)} hours of {name} ({files} files, {rows['predictions']} "
        f"predictions, {rows['feedback']} feedback rows)"
        + (f": {hours[0]} to {hours[-1]}" if hours else "")
    )

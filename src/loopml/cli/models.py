"""``loopml models``: registered models, their versions, aliases and promotion policy.

Gates, promotion, approvals and webhooks are in :mod:`loopml.cli.models_governance` and are
registered on the same command group here.
"""

from __future__ import annotations

import math
import re

import typer

from loopml.cli import models_governance as governance
from loopml.cli.context import get_client
from loopml.cli.models_governance import parse_version
from loopml.cli.output import command, fmt_time, print_json, print_mapping, print_table
from loopml.errors import InvalidArgument
from loopml.registry.entities import (
    ChampionGate,
    MetricGate,
    ModelVersion,
    PromotionPolicy,
    RegisteredModel,
)

app = typer.Typer(
    help="Registered models: versions, aliases, promotion gates and approvals.",
    no_args_is_help=True,
)


def _project_names() -> dict[str, str]:
    return {p.project_id: p.name for p in get_client().list_projects()}


def _aliases(model: RegisteredModel) -> str:
    return ", ".join(f"{a}→v{v}" for a, v in sorted(model.aliases.items())) or "-"


@app.command("list")
@command
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models."""
    models = get_client().registry.list_registered_models()
    if as_json:
        print_json(models)
        return
    projects = _project_names()
    rows = [[m.name, projects.get(m.project_id, m.project_id), m.risk_tier.value,
             m.latest_version or "-", _aliases(m)] for m in models]  # fmt: skip
    print_table("Registered models", ["name", "project", "risk tier", "latest", "aliases"], rows)


@app.command()
@command
def create(
    name: str,
    project: str | None = typer.Option(None, help="Project name or id (default: 'default')."),
    description: str = typer.Option("", help="What the model does."),
    owner: str = typer.Option("", help="Who answers for the model (default: you)."),
    risk_tier: str = typer.Option("medium", help="low, medium, high or critical."),
    intended_use: str = typer.Option("", help="What the model may be used for."),
) -> None:
    """Register a model name (its versions come with `loopml models register`)."""
    client = get_client()
    model = client.registry.create_registered_model(
        name, actor=client.actor, project=project, description=description, owner=owner,
        risk_tier=risk_tier, intended_use=intended_use,
    )  # fmt: skip
    typer.echo(f"created model {model.name} (risk tier {model.risk_tier.value})")


@app.command()
@command
def show(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """A model with its versions, aliases and promotion policy."""
    registry = get_client().registry
    model = registry.get_registered_model(name)
    versions = registry.list_model_versions(name)
    policy = registry.get_policy(name)
    if as_json:
        print_json({"model": model, "versions": versions, "policy": policy.to_dict()})
        return
    project = _project_names().get(model.project_id, model.project_id)
    print_mapping(
        f"Model {model.name}",
        {"project": project, "description": model.description, "owner": model.owner,
         "risk tier": model.risk_tier.value, "intended use": model.intended_use,
         "latest version": model.latest_version, "created": fmt_time(model.created_time),
         "updated": fmt_time(model.updated_time),
         **{f"tag:{k}": v for k, v in model.tags.items()}},
    )  # fmt: skip
    _versions_table(versions)
    if model.aliases:
        print_table("Aliases", ["alias", "version"], sorted(model.aliases.items()))
    _policy_table(policy)


def _versions_table(versions: list[ModelVersion]) -> None:
    rows = [[v.version, v.stage.value, v.source, v.digest[:12], v.flavor or "-", v.created_by,
             fmt_time(v.created_time)] for v in versions]  # fmt: skip
    columns = ["version", "stage", "source", "digest", "flavor", "created by", "created (UTC)"]
    print_table("Versions", columns, rows)


@app.command()
@command
def register(
    source: str = typer.Argument(..., help="The logged model package: runs:/<run_id>/<path>."),
    name: str = typer.Argument(..., help="The registered model (created if new)."),
    description: str = typer.Option("", help="What is new in this version."),
) -> None:
    """Register a model logged in a run as the next version of NAME."""
    version = get_client().register_model(source, name, description=description)
    typer.echo(f"registered {version.name} version {version.version}")


@app.command()
@command
def versions(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the versions of a model."""
    found = get_client().registry.list_model_versions(name)
    if as_json:
        print_json(found)
    else:
        _versions_table(found)


@app.command()
@command
def alias(
    name: str,
    alias: str,
    version: str | None = typer.Argument(None, metavar="[VERSION]"),
    delete: bool = typer.Option(False, "--delete", help="Remove the alias."),
) -> None:
    """Point ALIAS of a model at VERSION, or remove it with --delete."""
    client = get_client()
    if delete:
        if version is not None:
            raise InvalidArgument("give either a VERSION or --delete, not both")
        client.registry.delete_alias(name, alias, actor=client.actor)
        typer.echo(f"alias {name}@{alias} deleted")
        return
    if version is None:
        raise InvalidArgument("give the VERSION the alias points at, or --delete")
    number = parse_version(version)
    client.registry.set_alias(name, alias, number, actor=client.actor)
    typer.echo(f"alias {name}@{alias} → version {number}")


# promotion policy ----------------------------------------------------------------------------
_METRIC_GATE = re.compile(r"^(?P<metric>[^<>=]+?)\s*(?P<op><=|>=)\s*(?P<value>\S+)$")


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{what}: {text!r} is not a finite number")
    return value


def parse_metric_gate(text: str) -> MetricGate:
    """``roc_auc>=0.9`` (maximize) or ``log_loss<=0.3`` (minimize)."""
    from loopml.tracking.validation import validate_key

    usage = f"bad --metric-gate {text!r}: use METRIC>=VALUE or METRIC<=VALUE, e.g. roc_auc>=0.9"
    match = _METRIC_GATE.match(text.strip())
    if match is None:
        raise InvalidArgument(usage)
    metric = validate_key(match["metric"].strip())
    threshold = _number(match["value"], f"--metric-gate {text!r}")
    return MetricGate(metric, threshold, "minimize" if match["op"] == "<=" else "maximize")


def parse_champion_gate(text: str) -> ChampionGate:
    """``roc_auc:0.01`` (higher by 0.01), ``-log_loss:0.01`` (lower by 0.01); ``:X`` optional."""
    from loopml.tracking.validation import validate_key

    spec = text.strip()
    direction = "maximize"
    if spec.startswith("-"):
        direction, spec = "minimize", spec[1:].strip()
    metric, colon, margin = spec.rpartition(":") if ":" in spec else (spec, "", "0")
    what = f"--champion-gate {text!r}"
    if not metric.strip() or (colon and not margin.strip()):
        raise InvalidArgument(
            f"bad {what}: use METRIC:MIN_IMPROVEMENT, with '-' before METRIC to minimize, "
            "e.g. roc_auc:0.01 or -log_loss:0.01"
        )
    improvement = _number(margin.strip(), what)
    if improvement < 0:
        raise InvalidArgument(f"{what}: the minimum improvement cannot be negative")
    return ChampionGate(validate_key(metric.strip()), direction, improvement)


@app.command()
@command
def policy(
    name: str,
    metric_gate: list[str] | None = typer.Option(
        None, "--metric-gate", help="METRIC>=X (maximize) or METRIC<=X (minimize). Repeatable."
    ),
    champion_gate: list[str] | None = typer.Option(
        None,
        "--champion-gate",
        help="METRIC:MIN_IMPROVEMENT over the champion; '-METRIC:X' to minimize. Repeatable.",
    ),
    require_kpis: bool | None = typer.Option(
        None,
        "--require-kpis/--no-require-kpis",
        help="Every validation KPI of the project must be met.",
    ),
    require_artifact: list[str] | None = typer.Option(
        None, "--require-artifact", help="An artifact path the run must have. Repeatable."
    ),
    approver: list[str] | None = typer.Option(
        None, "--approver", help="A role that must approve production. Repeatable."
    ),
    reset: bool = typer.Option(False, "--reset", help="Start from the default policy."),
    show_only: bool = typer.Option(False, "--show", help="Only print the current policy."),
    as_json: bool = typer.Option(False, "--json", help="Print the policy as JSON."),
) -> None:
    """Set a model's promotion policy; options not given keep their current value.

    Without options (or with --show) print the policy.
    """
    client = get_client()
    changes = (metric_gate, champion_gate, require_kpis, require_artifact, approver)
    changing = reset or any(c is not None for c in changes)
    if show_only and changing:
        raise InvalidArgument("--show only prints the policy: drop it to change the policy")
    current = client.registry.get_policy(name)
    if changing:
        current = _changed(PromotionPolicy() if reset else current, metric_gate, champion_gate,
                           require_kpis, require_artifact, approver)  # fmt: skip
        client.registry.set_policy(name, current, actor=client.actor)
        if not as_json:
            typer.echo(f"policy of {name} updated")
    if as_json:
        print_json(current.to_dict())
    else:
        _policy_table(current)


def _changed(
    base: PromotionPolicy, metric_gate: list[str] | None, champion_gate: list[str] | None,
    require_kpis: bool | None, require_artifact: list[str] | None, approver: list[str] | None,
) -> PromotionPolicy:  # fmt: skip
    from dataclasses import replace

    from loopml.artifacts.paths import clean_relpath
    from loopml.governance.roles import parse_role

    changes: dict[str, object] = {}
    if metric_gate is not None:
        changes["metric_gates"] = tuple(parse_metric_gate(g) for g in metric_gate)
    if champion_gate is not None:
        changes["champion_gates"] = tuple(parse_champion_gate(g) for g in champion_gate)
    if require_kpis is not None:
        changes["require_kpis"] = require_kpis
    if require_artifact is not None:
        changes["required_artifacts"] = tuple(clean_relpath(p) for p in require_artifact)
    if approver is not None:
        roles = (parse_role(r).value for r in approver)
        changes["production_approvers"] = tuple(dict.fromkeys(roles))
    return replace(base, **changes)  # type: ignore[arg-type]


def _policy_table(p: PromotionPolicy) -> None:
    rows: list[list[object]] = []
    for g in p.metric_gates:
        rows.append(["metric gate", f"{g.metric} {'<=' if g.direction == 'minimize' else '>='} "
                                    f"{g.threshold:g}"])  # fmt: skip
    for c in p.champion_gates:
        word = "lower" if c.direction == "minimize" else "higher"
        rows.append(["champion gate", f"{c.metric} {word} by at least {c.min_improvement:g}"])
    rows.append(["require KPIs", "yes" if p.require_kpis else "no"])
    rows.extend(["required artifact", a] for a in p.required_artifacts)
    rows.append(["production approvers", ", ".join(p.production_approvers) or "-"])
    rows.append(["champion alias", p.champion_alias])
    print_table("Promotion policy", ["rule", "value"], rows)


# gates, promotion, approvals, webhooks: models_governance.py ---------------------------------
app.command("gates")(governance.gates)
app.command("promote")(governance.promote)
app.command("override", help=governance.OVERRIDE_HELP)(governance.override)
app.command("request-approval")(governance.request_approval)
app.command("approvals")(governance.approvals)
app.command("approve", help=governance.APPROVE_HELP)(governance.approve)
app.command("reject", help=governance.REJECT_HELP)(governance.reject)
app.add_typer(governance.webhooks_app, name="webhooks")

"""The web UI of deployments: the list, and one deployment's routing, traffic and history.

Same rules as the model pages (``loopml.server.routes.ui_models``): the list shows only the
deployments whose project the caller may ``model.read``, the detail page declares that access on
the deployment's project, and everything renders through the autoescaping templates. The traffic
section summarises the prediction log for the last hour (``?hours=N``, up to a week) per served
version (model, version, shadow): requests, errors (status ≥ 400) and latency percentiles, plus
two charts handed to the page as JSON (drawn by ``loopml.js`` with the local Plotly bundle, no
inline script). DuckDB aggregates the window over the Parquet files
(:func:`loopml.serving.predlog_stats.traffic_stats`): the page never loads the window's rows, so
a week of ten million predictions renders in bounded memory.
"""

from __future__ import annotations

import math
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from loopml.errors import NotFound, Unavailable
from loopml.registry.api import ModelRegistry
from loopml.server.access import Caller, authenticated, caller_of, protected
from loopml.server.routes.ui import _page
from loopml.server.scopes import deployment_scope, registry_of, stack_of
from loopml.serving.deployment_service import resolve_target
from loopml.serving.deployment_store import DeploymentRegistry
from loopml.serving.deployments import Deployment, DeploymentRevision, DeploymentSpec
from loopml.serving.predlog_records import HOUR_MS
from loopml.serving.predlog_stats import TrafficStats, traffic_stats
from loopml.stack import Stack

router = APIRouter(include_in_schema=False)
MAX_HOURS = 168
WINDOWS = ((1, "1 h"), (6, "6 h"), (24, "24 h"), (72, "3 d"), (168, "7 d"))
MINUTE_MS = 60_000
QUANTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))
Hours = Annotated[int, Query(ge=1, le=MAX_HOURS)]


def _deployment_url(name: str) -> str:
    return f"/deployments/{quote(name, safe='')}"


def _deployments(stack: Stack) -> DeploymentRegistry:
    if stack.deployments is None:
        raise Unavailable("this server has no deployments (they need the metadata database)")
    return stack.deployments


# formatting ----------------------------------------------------------------------------------
def percent(share: float) -> str:
    """A share in [0, 1] as a percentage: one decimal at most, small shares kept visible.

    >>> percent(0.9), percent(0.1), percent(1 / 3), percent(1.0), percent(0.0), percent(0.0004)
    ('90 %', '10 %', '33.3 %', '100 %', '0 %', '0.04 %')
    """
    value = share * 100
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    if text == "0" and value > 0:
        text = f"{value:.1g}"
    return f"{text} %"


def window_label(hours: int) -> str:
    """How the page names the window.

    >>> window_label(1), window_label(6), window_label(48)
    ('the last hour', 'the last 6 hours', 'the last 48 hours')
    """
    return "the last hour" if hours == 1 else f"the last {hours} hours"


def bucket_minutes(hours: int) -> int:
    """Chart resolution: minutes per point, so a window draws at most ~430 points per version.

    >>> [bucket_minutes(h) for h in (1, 6, 7, 24, 72, 168)]
    [1, 1, 5, 5, 10, 30]
    """
    return 1 if hours <= 6 else 5 if hours <= 24 else 10 if hours <= 72 else 30


def targets_summary(spec: DeploymentSpec) -> dict[str, list[str]]:
    """The live targets with their weights and the shadows, as short labels.

    >>> from loopml.serving.deployments import Target
    >>> spec = DeploymentSpec((Target("fraud", version=1, weight=9),
    ...                        Target("fraud", version=2, weight=1),
    ...                        Target("fraud", alias="challenger", shadow=True)))
    >>> targets_summary(spec)
    {'live': ['fraud:1 90 %', 'fraud:2 10 %'], 'shadows': ['fraud@challenger']}
    """
    return {
        "live": [f"{t.ref} {percent(t.weight)}" for t in spec.live],
        "shadows": [t.ref for t in spec.shadows],
    }


# the list ------------------------------------------------------------------------------------
@router.get("/deployments", **authenticated())
def deployments_page(request: Request) -> HTMLResponse:
    """Every deployment the caller may read (``model.read`` on its project)."""
    caller, stack = caller_of(request), stack_of(request)
    available = stack.deployments is not None
    found = stack.deployments.list_deployments() if stack.deployments is not None else []
    shown = sorted(
        (d for d in found if caller.may("model.read", d.project_id)),
        key=lambda d: d.name.lower(),
    )
    projects = {p.project_id: p.name for p in stack.projects.list_projects()}
    return _page(
        request,
        "deployments.html",
        caller=caller,
        title="Deployments",
        nav="deployments",
        available=available,
        deployments=[{"d": d, **targets_summary(d.spec)} for d in shown],
        projects=projects,
    )


# one deployment ------------------------------------------------------------------------------
@router.get("/deployments/{name}", **protected("model.read", deployment_scope))
def deployment_page(request: Request, name: str, hours: Hours = 1) -> HTMLResponse:
    caller, stack = caller_of(request), stack_of(request)
    deployments = _deployments(stack)
    deployment = deployments.get_deployment(name)
    project = stack.projects.get_project(deployment.project_id)
    registry = registry_of(stack)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - hours * HOUR_MS
    width_ms = bucket_minutes(hours) * MINUTE_MS
    stats = traffic_stats(stack.artifacts, deployment.name, start_ms, end_ms, width_ms)
    history = sorted(deployments.history(deployment.name), key=lambda r: -r.revision)
    return _page(
        request,
        "deployment.html",
        caller=caller,
        title=deployment.name,
        nav="deployments",
        deployment=deployment,
        project=project,
        routing=routing_view(caller, registry, deployment),
        spec=deployment.spec,
        shadow_share=percent(deployment.spec.shadow_share),
        sample_rate=percent(deployment.spec.sample_rate),
        traffic=traffic_rows(stats),
        charts={"charts": traffic_charts(stats), "legend": True},
        bucket=bucket_minutes(hours),
        hours=hours,
        window=window_label(hours),
        windows=WINDOWS,
        history=[_revision_view(r, deployment) for r in history],
        deployment_url=_deployment_url(deployment.name),
    )


def routing_view(
    caller: Caller, registry: ModelRegistry, deployment: Deployment
) -> list[dict[str, Any]]:
    """Each target now: its model (linked when the caller may read it), what it names, the
    version it resolves to (``None`` when it does not resolve, or the caller may not read it)."""
    rows: list[dict[str, Any]] = []
    readable: dict[str, bool] = {}
    for target in deployment.spec.targets:
        if target.model not in readable:
            try:
                project_id = registry.get_registered_model(target.model).project_id
                readable[target.model] = caller.may("model.read", project_id)
            except NotFound:
                readable[target.model] = False
        resolved, missing = None, False
        if readable[target.model]:
            try:
                resolved = resolve_target(registry, target)
            except NotFound:
                missing = True
        rows.append(
            {
                "target": target,
                "readable": readable[target.model],
                "model_url": f"/models/{quote(target.model, safe='')}",
                "resolved": resolved,
                "missing": missing,
                "weight": None if target.shadow else percent(target.weight),
            }
        )
    return rows


def _revision_view(revision: DeploymentRevision, current: Deployment) -> dict[str, Any]:
    return {
        "r": revision,
        "current": revision.revision == current.revision,
        **targets_summary(revision.spec),
    }


# traffic -------------------------------------------------------------------------------------
def _series_key(model: str, version: str, shadow: bool) -> tuple[bool, str, int, str]:
    """Live before shadow, then by model, then by version number."""
    number = int(version) if version.isascii() and version.isdigit() else 2**63
    return (shadow, model, number, version)


def _label(model: str, version: str, shadow: bool) -> str:
    return f"{model}:{version}" + (" (shadow)" if shadow else "")


def _finite(value: float) -> float | None:
    return round(float(value), 3) if math.isfinite(value) else None


def traffic_rows(stats: TrafficStats) -> list[dict[str, Any]]:
    """Per served version (model, version, shadow): requests, errors, latency percentiles and
    its share of the live requests."""
    live_total = sum(s.requests for s in stats.series if not s.shadow)
    rows = []
    for s in stats.series:
        row: dict[str, Any] = {
            "model": s.model,
            "version": s.version,
            "shadow": s.shadow,
            "label": _label(s.model, s.version, s.shadow),
            "requests": s.requests,
            "errors": s.errors,
            "error_rate": percent(s.errors / s.requests),
            "share": None if s.shadow or not live_total else percent(s.requests / live_total),
            "version_url": (
                f"/models/{quote(s.model, safe='')}/versions/{s.version}"
                if s.version.isascii() and s.version.isdigit()
                else None
            ),
        }
        for (_, name), value in zip(QUANTILES, (s.p50, s.p90, s.p99), strict=True):
            row[name] = None if value is None else _finite(value)
        rows.append(row)
    return sorted(rows, key=lambda r: _series_key(r["model"], r["version"], r["shadow"]))


def traffic_charts(stats: TrafficStats) -> list[dict[str, Any]]:
    """Requests per minute and median latency per bucket, one trace per served version; in the
    shape ``loopml.js`` draws (``step`` is minutes into the window)."""
    if not stats.series:
        return []
    count, width_ms = stats.buckets_in_window, stats.width_ms
    minutes = width_ms / MINUTE_MS
    times = [stats.first_ms + i * width_ms for i in range(count)]
    steps = [round(i * minutes) for i in range(count)]
    per = "minute" if width_ms == MINUTE_MS else f"{minutes:g} minutes"
    per_series: dict[tuple[str, str, bool], dict[int, tuple[int, float | None]]] = {}
    for b in stats.buckets:
        per_series.setdefault((b.model, b.version, b.shadow), {})[b.bucket] = (b.requests, b.median)
    requests: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    for key in sorted(per_series, key=lambda k: _series_key(*k)):
        name, found = _label(*key), per_series[key]
        sizes = [found[i][0] if i in found else 0 for i in range(count)]
        medians = [found[i][1] if i in found else None for i in range(count)]
        requests.append(
            {
                "name": name,
                "step": steps,
                "time": times,
                "value": [round(n / minutes, 3) for n in sizes],
            }
        )
        latency.append(
            {
                "name": name,
                "step": steps,
                "time": times,
                "value": [None if m is None else _finite(m) for m in medians],
            }
        )
    return [
        {"id": "requests", "title": "Requests per minute", "traces": requests},
        {"id": "latency", "title": f"p50 latency (ms) per {per}", "traces": latency},
    ]

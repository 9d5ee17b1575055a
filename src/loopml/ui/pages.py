"""What the pages read from the stores, beyond one record: KPI bests, metric curves, artifacts.

Everything here takes the store protocols, so it works over any backend; the routes in
``loopml.server.routes.ui`` check permissions before calling it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from loopml.artifacts.paths import clean_relpath
from loopml.artifacts.store import ArtifactStore
from loopml.errors import NotFound
from loopml.projects.entities import Direction, Project
from loopml.tracking.artifacts import RunArtifacts
from loopml.tracking.entities import Experiment, Run
from loopml.tracking.store import TrackingStore
from loopml.ui import views

MAX_SCANNED_KEYS = 40  # metric histories read per page to find the ones with a curve


def kpi_best(
    tracking: TrackingStore, project: Project, experiments: list[Experiment]
) -> dict[str, tuple[float, Run]]:
    """The best value each KPI's metric reached in the project's runs: one search each, which
    walks the metric's index and stops at the first row."""
    if not experiments:
        return {}
    ids = [e.experiment_id for e in experiments]
    best: dict[str, tuple[float, Run]] = {}
    for kpi in project.kpis:
        item = views.sort_item("metric", kpi.metric)
        if item is None:
            continue
        order = "DESC" if kpi.direction is Direction.MAXIMIZE else "ASC"
        page = tracking.search_runs(
            ids, filter_string=f"{item} IS NOT NULL", order_by=[f"{item} {order}"], max_results=1
        )
        if page.items and kpi.metric in page.items[0].metrics:
            best[kpi.name] = (page.items[0].metrics[kpi.metric], page.items[0])
    return best


def curves(
    tracking: TrackingStore,
    runs: list[Run],
    preferred: Iterable[str],
    *,
    limit: int,
    label: Callable[[Run], str],
    points: int = views.MAX_CHART_POINTS,
) -> list[dict[str, Any]]:
    """Charts of the metrics that have a curve (more than one value) in some of ``runs``: KPI
    metrics first, at most ``limit`` charts, one trace per run, each thinned to ``points``."""
    keys = views.chart_keys({k for r in runs for k in r.metrics}, preferred, MAX_SCANNED_KEYS)
    charts: list[dict[str, Any]] = []
    for key in keys:
        histories = [
            (r, tracking.get_metric_history(r.run_id, key)) for r in runs if key in r.metrics
        ]
        if not any(len(history) > 1 for _, history in histories):
            continue  # a single value is a number in the table, not a chart
        traces = [{"name": label(r), **views.series(h, points)} for r, h in histories]
        charts.append({"id": f"c{len(charts)}", "title": key, "traces": traces})
        if len(charts) >= limit:
            break
    return charts


def artifact_browser(
    tracking: TrackingStore, artifacts: ArtifactStore, run: Run, path: str, artifact: str
) -> dict[str, Any]:
    """The folder ``path`` of the run's artifacts, and a preview of the file ``artifact``.

    Both go through the artifact path choke point; text is read only up to the preview size.
    """
    folder = clean_relpath(path, allow_empty=True) if path else ""
    entries = RunArtifacts(tracking, artifacts).list(run, folder)
    preview, selected = None, None
    if artifact:
        selected = clean_relpath(artifact)
        kind = views.preview_kind(selected)
        if kind in ("text", "json"):
            try:
                head, more = read_head(artifacts, f"{run.artifact_path}/{selected}")
                preview = views.text_preview(kind, head, more)
            except NotFound:
                preview = views.Preview("missing")
        else:
            preview = views.Preview(kind)
    return {
        "folder": folder,
        "crumbs": views.breadcrumbs(folder),
        "entries": entries,
        "selected": selected,
        "preview": preview,
    }


def read_head(
    artifacts: ArtifactStore, rel: str, limit: int = views.PREVIEW_BYTES
) -> tuple[bytes, bool]:
    """The first ``limit`` bytes of an artifact, and whether there is more."""
    chunks, size = [], 0
    for chunk in artifacts.open_read(rel):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    data = b"".join(chunks)
    return data[:limit], len(data) > limit

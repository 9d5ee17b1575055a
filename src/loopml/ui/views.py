"""Pure functions that shape store records into what the pages show (no I/O, no web framework).

>>> sort_item("metric", "val loss")
'metrics.`val loss`'
>>> compare_ids(["a,b", "b", "c"])
['a', 'b', 'c']
>>> safe_next("//evil.example/x"), safe_next("/runs/abc?x=1")
('/', '/runs/abc?x=1')
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from loopml.errors import InvalidArgument
from loopml.tracking.entities import Metric, Run
from loopml.tracking.search import parse_order_by

MAX_METRIC_COLUMNS = 8
MAX_PARAM_COLUMNS = 4
MAX_CHART_POINTS = 2000
MAX_CHARTS = 12
MIN_COMPARE, MAX_COMPARE = 2, 10
PREVIEW_BYTES = 256 * 1024
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
JSON_SUFFIXES = frozenset({".json", ".jsonl", ".ipynb"})
TEXT_SUFFIXES = frozenset(
    {
        ".txt",
        ".log",
        ".md",
        ".rst",
        ".csv",
        ".tsv",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".py",
        ".sql",
        ".sh",
        ".xml",
        ".html",
        ".htm",
        ".svg",
        ".js",
        ".css",
        ".r",
        ".mlmodel",
        ".properties",
        ".conf",
        ".env",
        ".dockerfile",
        "",
    }
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_.\-/:]+$")
_ENTITY_PREFIX = {"metric": "metrics", "param": "params", "tag": "tags", "attribute": "attributes"}
_DESC_FIRST = frozenset({"metric", "start_time", "end_time", "cpu_seconds", "peak_memory_bytes"})


# runs table ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Columns:
    params: list[str]
    metrics: list[str]


def choose_columns(
    runs: Sequence[Run], *, preferred_metrics: Iterable[str] = (), pinned: tuple[str, str] | None
) -> Columns:
    """Up to 8 metric and 4 param columns from the page's runs: the KPI metrics and the sort
    key first, then the keys most runs on the page have."""

    def pick(counts: Counter[str], first: list[str], limit: int) -> list[str]:
        chosen = [k for k in dict.fromkeys(first) if k in counts][:limit]
        for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(chosen) >= limit:
                break
            if key not in chosen:
                chosen.append(key)
        return chosen

    metric_counts = Counter(k for r in runs for k in r.metrics)
    param_counts = Counter(k for r in runs for k in r.params)
    first_metrics = [pinned[1]] if pinned and pinned[0] == "metric" else []
    first_params = [pinned[1]] if pinned and pinned[0] == "param" else []
    return Columns(
        params=pick(param_counts, first_params, MAX_PARAM_COLUMNS),
        metrics=pick(metric_counts, first_metrics + list(preferred_metrics), MAX_METRIC_COLUMNS),
    )


def sort_item(entity: str, key: str) -> str | None:
    """The ``order_by`` text for a column (backticks around keys that need them), or None."""
    prefix = _ENTITY_PREFIX[entity]
    if _BARE_KEY.match(key):
        return f"{prefix}.{key}"
    if "`" in key:
        return None
    return f"{prefix}.`{key}`"


def current_order(order_by: str | None) -> tuple[str, str, bool] | None:
    """``(entity, key, ascending)`` of the page's sort, or None (the default: newest first)."""
    if not order_by:
        return None
    try:
        keys = parse_order_by([order_by])
    except InvalidArgument:
        return None
    return (keys[0].entity, keys[0].key, keys[0].ascending) if keys else None


@dataclass(frozen=True, slots=True)
class SortLink:
    order_by: str | None  # what clicking the header sorts by (None: not sortable)
    arrow: str  # "▲", "▼" or ""


def sort_link(entity: str, key: str, current: tuple[str, str, bool] | None) -> SortLink:
    item = sort_item(entity, key)
    if item is None:
        return SortLink(None, "")
    if current is not None and (current[0], current[1]) == (entity, key):
        ascending = current[2]
        return SortLink(f"{item} {'DESC' if ascending else 'ASC'}", "▲" if ascending else "▼")
    desc_first = entity == "metric" or (entity == "attribute" and key in _DESC_FIRST)
    return SortLink(f"{item} {'DESC' if desc_first else 'ASC'}", "")


def pinned_column(current: tuple[str, str, bool] | None) -> tuple[str, str] | None:
    return (current[0], current[1]) if current else None


# comparing runs --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DiffRow:
    key: str
    values: list[Any]  # one per run; None where the run lacks the key
    differs: bool


def diff_rows(runs: Sequence[Run], values_of: Callable[[Run], dict[str, Any]]) -> list[DiffRow]:
    """One row per key any run has; ``differs`` when the runs disagree (or some lack it)."""
    keys = sorted({k for r in runs for k in values_of(r)})
    rows = []
    for key in keys:
        values = [values_of(r).get(key) for r in runs]
        distinct = {_comparable(v) for v in values}
        rows.append(DiffRow(key, values, len(distinct) > 1))
    return rows


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def compare_ids(values: Iterable[str]) -> list[str]:
    """Run ids from ``?runs=a,b`` or ``?runs=a&runs=b``: 2-10 distinct ids, in order."""
    ids = list(dict.fromkeys(v.strip() for raw in values for v in raw.split(",") if v.strip()))
    if not MIN_COMPARE <= len(ids) <= MAX_COMPARE:
        raise InvalidArgument(
            f"compare takes {MIN_COMPARE} to {MAX_COMPARE} runs, got {len(ids)}: "
            "tick them in a runs table, or use /compare?runs=<id>,<id>"
        )
    for run_id in ids:
        if len(run_id) > 64 or not run_id.isalnum():
            raise InvalidArgument(f"invalid run id {run_id[:64]!r}")
    return ids


# charts ----------------------------------------------------------------------------------------
def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: the charts get ``null`` there (a gap in the line)."""
    return value if math.isfinite(value) else None


def series(history: Sequence[Metric], max_points: int = MAX_CHART_POINTS) -> dict[str, list[Any]]:
    """A metric's history as ``{"step", "time", "value"}`` lists, evenly thinned to
    ``max_points`` (the first and last points are always kept)."""
    items = list(history)
    if len(items) > max_points:
        last = len(items) - 1
        picks = sorted({round(i * last / (max_points - 1)) for i in range(max_points)})
        items = [items[i] for i in picks]
    return {
        "step": [m.step for m in items],
        "time": [m.timestamp for m in items],
        "value": [finite_or_none(m.value) for m in items],
    }


def chart_keys(
    keys: Iterable[str], preferred: Iterable[str] = (), limit: int = MAX_CHARTS
) -> list[str]:
    available = set(keys)
    ordered = [k for k in dict.fromkeys(preferred) if k in available]
    ordered += sorted(available - set(ordered))
    return ordered[:limit]


# artifacts -------------------------------------------------------------------------------------
def preview_kind(path: str) -> str:
    """``image``, ``json``, ``text`` or ``binary``, from the file's name."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix in JSON_SUFFIXES:
        return "json"
    if suffix in TEXT_SUFFIXES or PurePosixPath(path).name.lower() in {"mlmodel", "license"}:
        return "text"
    return "binary"


def image_media_type(path: str) -> str | None:
    """The media type an artifact may be served inline as: raster images only (never SVG)."""
    return IMAGE_TYPES.get(PurePosixPath(path).suffix.lower())


@dataclass(frozen=True, slots=True)
class Preview:
    kind: str  # "text", "json", "image", "binary", "missing"
    text: str = ""
    truncated: bool = False


def text_preview(kind: str, head: bytes, truncated: bool) -> Preview:
    """Decoded (and for whole JSON files pretty-printed) text; binary when it is not text."""
    if b"\x00" in head[:8192]:
        return Preview("binary")
    text = head.decode("utf-8", errors="replace")
    if kind == "json" and not truncated:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            kind = "text"
    return Preview(kind, text, truncated)


def breadcrumbs(path: str) -> list[tuple[str, str]]:
    """``("name", "path/to/name")`` for each folder of ``path``."""
    parts = [p for p in path.split("/") if p]
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


# misc ------------------------------------------------------------------------------------------
def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path on this site only (never ``//host`` or a URL)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 32 or c == "\\" for c in value)
        or len(value) > 2000
    ):
        return "/"
    return value


def compact_json(value: Any, limit: int = 400) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Plotly figures of an evaluation, as JSON-safe dicts (``fig.to_plotly_json()`` without NaN).

Callers pass arrays already checked by :mod:`loopml.models.evaluation`. plotly, numpy and
scikit-learn are imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

MAX_POINTS = 5_000
CALIBRATION_BINS = 10
_SEED = 0  # the residual sample is the same on every run of the same data


def classification_figures(
    labels: list[str],
    confusion: list[list[int]],
    is_positive: np.ndarray | None,
    p_positive: np.ndarray | None,
) -> dict[str, dict[str, Any]]:
    """The confusion matrix; with a positive-class probability also ROC curve and calibration.

    ``is_positive`` and ``p_positive`` are given for binary tasks with probabilities only.
    """
    figures = {"confusion_matrix": _confusion_figure(labels, confusion)}
    if is_positive is not None and p_positive is not None:
        if 0 < int(is_positive.sum()) < len(is_positive):  # ROC needs both classes
            figures["roc_curve"] = _roc_figure(is_positive, p_positive)
        figures["calibration"] = _calibration_figure(is_positive, p_positive)
    return figures


def regression_figures(truth: np.ndarray, prediction: np.ndarray) -> dict[str, dict[str, Any]]:
    """Residual (truth - prediction) against prediction, a seeded sample of ≤ 5,000 points."""
    import numpy as np
    import plotly.graph_objects as go

    n = len(truth)
    rows = np.arange(n)
    if n > MAX_POINTS:
        rows = np.sort(np.random.default_rng(_SEED).choice(n, MAX_POINTS, replace=False))
    x = prediction[rows].astype(float)
    residual = (truth[rows] - prediction[rows]).astype(float)
    title = "Residuals" if n <= MAX_POINTS else f"Residuals ({MAX_POINTS:,} of {n:,} points)"
    fig = go.Figure(
        go.Scatter(x=x.tolist(), y=residual.tolist(), mode="markers", name="residual"),
        layout={
            "title": {"text": title},
            "xaxis": {"title": {"text": "prediction"}},
            "yaxis": {"title": {"text": "truth - prediction"}},
            "shapes": [_zero_line()],
        },
    )
    return figure_json(fig)


def figure_json(fig: Any) -> dict[str, Any]:
    """``fig.to_plotly_json()`` made JSON-safe: plain lists and numbers, NaN/±inf as ``None``.

    The template is dropped: it is the same 6 kB in every figure, and every renderer has its own.
    """
    data = fig.to_plotly_json()
    data.get("layout", {}).pop("template", None)
    safe = json_safe(data)
    assert isinstance(safe, dict)
    return safe


def json_safe(value: Any) -> Any:
    """Nested dicts/lists/tuples/numpy values as plain Python; non-finite floats become ``None``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _confusion_figure(labels: list[str], confusion: list[list[int]]) -> dict[str, Any]:
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Heatmap(
            z=confusion,
            x=labels,
            y=labels,
            text=confusion,
            texttemplate="%{text}",
            colorscale="Blues",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z} examples<extra></extra>",
        ),
        layout={
            "title": {"text": "Confusion matrix"},
            # labels such as "0" and "1" would otherwise become a numeric axis
            "xaxis": {"title": {"text": "predicted"}, "type": "category"},
            "yaxis": {"title": {"text": "true"}, "type": "category", "autorange": "reversed"},
        },
    )
    return figure_json(fig)


def _roc_figure(is_positive: np.ndarray, p_positive: np.ndarray) -> dict[str, Any]:
    import plotly.graph_objects as go
    from sklearn.metrics import auc, roc_curve

    fpr, tpr, _ = roc_curve(is_positive, p_positive)
    keep = _thin(len(fpr))
    area = float(auc(fpr, tpr))  # the ROC AUC, without sorting the scores again
    fig = go.Figure(
        [
            go.Scatter(x=fpr[keep].tolist(), y=tpr[keep].tolist(), mode="lines", name="model"),
            _diagonal("chance"),
        ],
        layout={
            "title": {"text": f"ROC curve (AUC = {area:.3f})"},
            "xaxis": {"title": {"text": "false positive rate"}, "range": [0, 1]},
            "yaxis": {"title": {"text": "true positive rate"}, "range": [0, 1]},
        },
    )
    return figure_json(fig)


def _calibration_figure(is_positive: np.ndarray, p_positive: np.ndarray) -> dict[str, Any]:
    """Mean predicted probability against the observed positive rate, in 10 equal-count bins."""
    import numpy as np
    import plotly.graph_objects as go

    order = np.argsort(p_positive, kind="stable")
    bins = [b for b in np.array_split(order, min(CALIBRATION_BINS, len(order))) if len(b)]
    predicted = [float(p_positive[b].mean()) for b in bins]
    observed = [float(is_positive[b].mean()) for b in bins]
    counts = [len(b) for b in bins]
    fig = go.Figure(
        [
            go.Scatter(
                x=predicted,
                y=observed,
                customdata=counts,
                mode="lines+markers",
                name="model",
                hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>"
                "%{customdata} examples<extra></extra>",
            ),
            _diagonal("perfectly calibrated"),
        ],
        layout={
            "title": {"text": "Calibration (quantile bins)"},
            "xaxis": {"title": {"text": "mean predicted probability"}, "range": [0, 1]},
            "yaxis": {"title": {"text": "fraction of positives"}, "range": [0, 1]},
        },
    )
    return figure_json(fig)


def _thin(n: int) -> np.ndarray:
    """At most MAX_POINTS evenly spaced indices of 0..n-1, both ends included."""
    import numpy as np

    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))


def _diagonal(name: str) -> Any:
    import plotly.graph_objects as go

    return go.Scatter(
        x=[0, 1], y=[0, 1], mode="lines", name=name, line={"dash": "dash", "color": "gray"}
    )


def _zero_line() -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": 0,
        "y1": 0,
        "line": {"dash": "dash", "color": "gray"},
    }

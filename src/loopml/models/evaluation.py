"""Evaluation of predictions: metrics overall and per slice, figures, and KPI checks.

Pure computation, arrays in and frozen records out; ``loopml.evaluate`` runs the model and logs what
this returns. numpy, pandas, scikit-learn and plotly are imported inside the functions, so
``import loopml`` stays fast.

A metric that is undefined on some data (ROC AUC with one class, precision with no positive
prediction, R² of a constant truth) is left out of that data's metrics rather than reported as NaN.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopml.errors import InvalidArgument
from loopml.models.evaluation_plots import classification_figures, json_safe, regression_figures

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from loopml.projects.entities import Kpi

__all__ = [
    "EvaluationResult",
    "KpiCheck",
    "SliceResult",
    "Task",
    "check_kpis",
    "evaluate_predictions",
]

Task = Literal["classification", "regression"]
TASKS: tuple[str, ...] = ("classification", "regression")
JUDGED_AT: tuple[str, ...] = ("validation", "production")
MISSING_VALUE = "(missing)"
OTHER_VALUES = "(other)"
QUANTILE_BINS = 10
# The alphabet of tracking keys without '/': a slash would start a new key segment ('..' included).
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :]")
_COLUMN_KEY_CHARS = 60
_VALUE_KEY_CHARS = 100


@dataclass(frozen=True)
class SliceResult:
    """Metrics of the examples whose ``column`` holds ``value`` (for binned numbers a range)."""

    column: str
    value: str
    count: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class KpiCheck:
    """Whether one KPI's target is met by the evaluated metrics, and why, in one sentence."""

    kpi: str
    metric: str
    target: float
    direction: str
    value: float | None
    met: bool
    reason: str


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics overall and per slice, the confusion matrix (rows: truth) and plotly figures."""

    task: Task
    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    labels: list[str] | None
    slices: tuple[SliceResult, ...]
    figures: dict[str, dict[str, Any]]

    def slice_metrics_flat(self) -> dict[str, float]:
        """Slice metrics under valid tracking keys, ``slice.<column>:<value>.<metric>``.

        Characters a key cannot hold (and ``/``) become ``_``; a long column or value is cut and
        tagged with a short digest, as is a name that would collide with another slice's.

        >>> r = evaluate_predictions([1, 2], [1, 3], task="regression",
        ...                          slices_frame={"city": ["Köln", "a/b"]}, slices=["city"])
        >>> sorted(r.slice_metrics_flat())[:2]
        ['slice.city:K_ln.example_count', 'slice.city:K_ln.mae']
        """
        flat: dict[str, float] = {}
        taken: dict[str, tuple[str, str]] = {}
        for s in self.slices:
            name = (
                f"{_key_part(s.column, _COLUMN_KEY_CHARS)}:{_key_part(s.value, _VALUE_KEY_CHARS)}"
            )
            if taken.setdefault(name, (s.column, s.value)) != (s.column, s.value):
                name = f"{name}_{_digest(s.column + chr(0) + s.value)}"
            for metric, value in s.metrics.items():
                flat[f"slice.{name}.{metric}"] = value
        return flat

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (NaN and ±inf as ``None``)."""
        data = json_safe(
            {
                "task": self.task,
                "metrics": self.metrics,
                "confusion_matrix": self.confusion_matrix,
                "labels": self.labels,
                "slices": [
                    {"column": s.column, "value": s.value, "count": s.count, "metrics": s.metrics}
                    for s in self.slices
                ],
                "figures": self.figures,
            }
        )
        assert isinstance(data, dict)
        return data


def evaluate_predictions(
    y_true: Any,
    y_pred: Any,
    *,
    task: Task,
    y_proba: Any = None,
    labels: Sequence[Any] | None = None,
    slices_frame: Any = None,
    slices: Sequence[str] = (),
    positive_label: Any = None,
    max_slice_values: int = 50,
) -> EvaluationResult:
    """Metrics, confusion matrix, per-slice metrics and figures of predictions against the truth.

    Classification: accuracy, precision, recall, f1 (binary: of the positive class, by default
    the last label in sorted order; multiclass: macro averages over the classes where each is
    defined), and with ``y_proba`` roc_auc (multiclass: one-vs-rest, macro) and log_loss.
    ``y_proba`` is ``(n,)`` for the positive class or ``(n, n_classes)`` in ``labels`` order.
    Regression: mae, rmse, r2. Always ``example_count``.

    >>> r = evaluate_predictions([0, 1, 1, 0], [0, 1, 0, 0], task="classification")
    >>> r.metrics["accuracy"], r.metrics["recall"], r.confusion_matrix
    (0.75, 0.5, [[2, 0], [1, 1]])
    """
    if task not in TASKS:
        raise InvalidArgument(f"unknown task {task!r}: use 'classification' or 'regression'")
    truth, pred = _column(y_true, "y_true"), _column(y_pred, "y_pred")
    if len(truth) != len(pred):
        raise InvalidArgument(
            f"y_true has {len(truth)} values but y_pred has {len(pred)}: they must be equally long"
        )
    if len(truth) == 0:
        raise InvalidArgument("y_true and y_pred are empty: evaluation needs at least one example")
    if (
        isinstance(max_slice_values, bool)
        or not isinstance(max_slice_values, int)
        or max_slice_values < 1
    ):
        raise InvalidArgument(
            f"max_slice_values must be a positive integer, got {max_slice_values!r}"
        )
    groups = _slice_groups(slices_frame, slices, len(truth), max_slice_values)
    if task == "classification":
        return _evaluate_classification(truth, pred, y_proba, labels, positive_label, groups)
    for name, given in (
        ("y_proba", y_proba),
        ("labels", labels),
        ("positive_label", positive_label),
    ):
        if given is not None:
            raise InvalidArgument(f"{name} is for classification; this task is 'regression'")
    return _evaluate_regression(truth, pred, groups)


def check_kpis(
    kpis: Sequence[Kpi], metrics: Mapping[str, float], *, judged_at: str = "validation"
) -> list[KpiCheck]:
    """Check each KPI judged at ``judged_at`` against ``metrics[kpi.metric]``.

    >>> from loopml.projects.entities import Direction, JudgedAt, Kpi
    >>> k = Kpi("1", "1", "recall", "recall", 0.9, Direction.MAXIMIZE, JudgedAt.VALIDATION)
    >>> check_kpis([k], {"recall": 0.93})[0].reason
    'recall 0.93 ≥ target 0.9'
    """
    stage = str(judged_at).lower()
    if stage not in JUDGED_AT:
        raise InvalidArgument(f"unknown KPI stage {judged_at!r}: use 'validation' or 'production'")
    return [_check_kpi(kpi, metrics) for kpi in kpis if str(kpi.judged_at) == stage]


# inputs ------------------------------------------------------------------------------------------


def _column(values: Any, name: str) -> np.ndarray:
    import numpy as np

    if values is None:
        raise InvalidArgument(f"{name} is required")
    if isinstance(values, str | bytes):
        raise InvalidArgument(f"{name} must be an array of values, not a string")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as e:
        raise InvalidArgument(f"{name} must be a one-dimensional array: {e}") from None
    if array.ndim == 2 and array.shape[1] == 1:  # a one-column frame
        array = array[:, 0]
    if array.ndim != 1:
        raise InvalidArgument(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _require_present(values: np.ndarray, name: str) -> None:
    import numpy as np
    import pandas as pd

    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.any():
        raise InvalidArgument(
            f"{name} has {int(missing.sum())} missing values (first at row "
            f"{int(np.argmax(missing))})"
        )


def _numbers(values: np.ndarray, name: str) -> np.ndarray:
    import numpy as np

    _require_present(values, name)
    try:
        numbers = values.astype(float)
    except (TypeError, ValueError):
        row = next(i for i, v in enumerate(values.tolist()) if not _is_number(v))
        raise InvalidArgument(
            f"{name} must hold numbers for regression; row {row} is {_plain(values[row])!r:.50}"
        ) from None
    bad = ~np.isfinite(numbers)
    if bad.any():
        row = int(np.argmax(bad))
        raise InvalidArgument(f"{name} holds {numbers[row]} at row {row}: use finite numbers")
    return numbers


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _plain(value: Any) -> Any:
    """numpy scalars as Python values, so labels compare, hash and print as users wrote them."""
    return value.item() if type(value).__module__ == "numpy" and hasattr(value, "item") else value


# classification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Classes:
    labels: list[Any]  # the label values, in confusion-matrix order
    truth: np.ndarray  # codes 0..k-1
    pred: np.ndarray
    positive: int | None  # code of the positive class (binary tasks only)
    proba: np.ndarray | None  # (n,) of the positive class (binary) or (n, k)


def _evaluate_classification(
    truth: np.ndarray,
    pred: np.ndarray,
    y_proba: Any,
    labels: Sequence[Any] | None,
    positive_label: Any,
    groups: list[tuple[str, str, np.ndarray]],
) -> EvaluationResult:
    import numpy as np

    c = _encode(truth, pred, labels, positive_label, y_proba)
    k = len(c.labels)
    names = [str(label) for label in c.labels]
    cm = np.bincount(c.truth * k + c.pred, minlength=k * k).reshape(k, k).tolist()
    binary_proba = c.positive is not None and c.proba is not None
    figures = classification_figures(
        names,
        cm,
        c.truth == c.positive if binary_proba else None,
        c.proba if binary_proba else None,
    )
    return EvaluationResult(
        task="classification",
        metrics=_classification_metrics(c, None),
        confusion_matrix=cm,
        labels=names,
        slices=tuple(
            SliceResult(column, value, len(rows), _classification_metrics(c, rows))
            for column, value, rows in groups
        ),
        figures=figures,
    )


def _encode(
    truth: np.ndarray,
    pred: np.ndarray,
    labels: Sequence[Any] | None,
    positive_label: Any,
    y_proba: Any,
) -> _Classes:
    import pandas as pd

    _require_present(truth, "y_true")
    _require_present(pred, "y_pred")
    if labels is None:
        found = {_plain(v) for v in pd.unique(truth)} | {_plain(v) for v in pd.unique(pred)}
        if positive_label is not None and len(found) < 2:  # e.g. no positive example at all
            found.add(_plain(positive_label))
        try:
            label_list = sorted(found)
        except TypeError:
            kinds = sorted({type(v).__name__ for v in found})
            raise InvalidArgument(
                f"class labels of different types ({', '.join(kinds)}) cannot be ordered: "
                "pass labels= in the order you want"
            ) from None
    else:
        label_list = [_plain(v) for v in labels]
        if not label_list:
            raise InvalidArgument("labels is empty: give at least one class label")
        if len(set(label_list)) != len(label_list):
            raise InvalidArgument(f"labels has duplicates: {label_list}")
    positive = None
    if positive_label is not None:
        if _plain(positive_label) not in label_list:
            raise InvalidArgument(f"positive_label {positive_label!r} is not one of {label_list}")
        if len(label_list) > 2:
            raise InvalidArgument(
                f"positive_label is for binary classification; there are {len(label_list)} "
                "classes, which are averaged (macro)"
            )
        positive = label_list.index(_plain(positive_label))
    elif len(label_list) <= 2:
        positive = len(label_list) - 1
    codes_true, codes_pred = _codes(truth, label_list, "y_true"), _codes(pred, label_list, "y_pred")
    proba = _probabilities(y_proba, len(truth), label_list, positive)
    return _Classes(label_list, codes_true, codes_pred, positive, proba)


def _codes(values: np.ndarray, label_list: list[Any], name: str) -> np.ndarray:
    import numpy as np
    import pandas as pd

    codes = np.asarray(pd.Index(label_list, dtype=object).get_indexer(values), dtype=np.intp)
    unknown = codes < 0
    if unknown.any():
        row = int(np.argmax(unknown))
        raise InvalidArgument(
            f"{name} holds {_plain(values[row])!r} (row {row}), which is not one of the labels "
            f"{label_list}"
        )
    return codes


def _probabilities(
    y_proba: Any, n: int, label_list: list[Any], positive: int | None
) -> np.ndarray | None:
    import numpy as np

    if y_proba is None:
        return None
    k = len(label_list)
    try:
        proba = np.asarray(y_proba, dtype=float)
    except (TypeError, ValueError):
        raise InvalidArgument("y_proba must hold numbers (probabilities)") from None
    if proba.ndim not in (1, 2) or proba.shape[0] != n:
        raise InvalidArgument(
            f"y_proba has shape {proba.shape}; expected ({n},) or ({n}, {k}) for {n} examples "
            f"and {k} classes"
        )
    if proba.ndim == 1 and positive is None:
        raise InvalidArgument(
            f"y_proba is one-dimensional but there are {k} classes: pass an ({n}, {k}) array, "
            f"one column per label of {label_list}"
        )
    if proba.ndim == 2 and proba.shape[1] != k:
        raise InvalidArgument(
            f"y_proba has {proba.shape[1]} columns but there are {k} classes {label_list}: "
            "pass labels= in the order of y_proba's columns"
        )
    bad = ~np.isfinite(proba) | (proba < 0) | (proba > 1)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InvalidArgument(
            f"y_proba must hold probabilities in [0, 1]; row {row} has {proba[row]}"
        )
    if proba.ndim == 2:
        sums = proba.sum(axis=1)
        off = ~np.isclose(1.0, sums)
        if off.any():
            row = int(np.argmax(off))
            raise InvalidArgument(
                f"rows of y_proba must sum to 1; row {row} sums to {sums[row]:.6g}"
            )
        if positive is not None:
            proba = proba[:, positive]
    return proba


def _classification_metrics(c: _Classes, rows: np.ndarray | None) -> dict[str, float]:
    import numpy as np

    truth = c.truth if rows is None else c.truth[rows]
    pred = c.pred if rows is None else c.pred[rows]
    k, n = len(c.labels), len(truth)
    cm = np.bincount(truth * k + pred, minlength=k * k).reshape(k, k)
    hits = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    metrics = {"example_count": float(n), "accuracy": float(hits.sum() / n)}
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 is an undefined class: NaN
        per_class = {
            "precision": hits / predicted,
            "recall": hits / actual,
            "f1": 2 * hits / (predicted + actual),
        }
    for name, values in per_class.items():
        if c.positive is not None:
            value = float(values[c.positive])
        else:  # macro average over the classes where the metric is defined
            defined = values[~np.isnan(values)]
            value = float(defined.mean()) if len(defined) else math.nan
        if math.isfinite(value):
            metrics[name] = value
    if c.proba is not None:
        proba = c.proba if rows is None else c.proba[rows]
        metrics.update(_probability_metrics(truth, proba, c.positive, k))
    return metrics


def _probability_metrics(
    truth: np.ndarray, proba: np.ndarray, positive: int | None, k: int
) -> dict[str, float]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    metrics: dict[str, float] = {}
    if positive is not None:
        is_positive = truth == positive
        p_truth = np.where(is_positive, proba, 1.0 - proba)
        if 0 < int(is_positive.sum()) < len(truth):
            metrics["roc_auc"] = float(roc_auc_score(is_positive, proba))
    else:
        p_truth = proba[np.arange(len(truth)), truth]
        if len(np.unique(truth)) == k:  # one-vs-rest needs every class in the truth
            metrics["roc_auc"] = float(
                roc_auc_score(truth, proba, multi_class="ovr", average="macro", labels=range(k))
            )
    eps = np.finfo(float).eps  # the clipping scikit-learn's log_loss uses
    metrics["log_loss"] = float(-np.mean(np.log(np.clip(p_truth, eps, 1 - eps))))
    return metrics


# regression --------------------------------------------------------------------------------------


def _evaluate_regression(
    truth: np.ndarray, pred: np.ndarray, groups: list[tuple[str, str, np.ndarray]]
) -> EvaluationResult:
    y_true, y_pred = _numbers(truth, "y_true"), _numbers(pred, "y_pred")
    return EvaluationResult(
        task="regression",
        metrics=_regression_metrics(y_true, y_pred),
        confusion_matrix=None,
        labels=None,
        slices=tuple(
            SliceResult(column, value, len(rows), _regression_metrics(y_true[rows], y_pred[rows]))
            for column, value, rows in groups
        ),
        figures={"residuals": regression_figures(y_true, y_pred)},
    )


def _regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    import numpy as np

    error = truth - pred
    squared = float(np.sum(error**2))
    metrics = {
        "example_count": float(len(truth)),
        "mae": float(np.mean(np.abs(error))),
        "rmse": math.sqrt(squared / len(truth)),
    }
    spread = float(np.sum((truth - truth.mean()) ** 2))
    if spread > 0:  # R² of a constant truth is undefined
        metrics["r2"] = 1.0 - squared / spread
    return metrics


# slices ------------------------------------------------------------------------------------------


def _slice_groups(
    frame: Any, columns: Sequence[str], n: int, max_values: int
) -> list[tuple[str, str, np.ndarray]]:
    """(column, value, row indices) of every slice with at least one example."""
    import pandas as pd

    names = [columns] if isinstance(columns, str) else list(columns)
    if not names:
        return []
    if frame is None:
        raise InvalidArgument(
            f"slices {names} need slices_frame, a DataFrame holding those columns"
        )
    if not isinstance(frame, pd.DataFrame):
        try:
            frame = pd.DataFrame(frame)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"slices_frame must be a DataFrame: {e}") from None
    if len(frame) != n:
        raise InvalidArgument(f"slices_frame has {len(frame)} rows but there are {n} predictions")
    groups: list[tuple[str, str, np.ndarray]] = []
    for name in dict.fromkeys(names):
        if name not in frame.columns:
            shown = ", ".join(repr(str(c)) for c in frame.columns[:20])
            more = ", …" if len(frame.columns) > 20 else ""
            raise InvalidArgument(
                f"slice column {name!r} is not in slices_frame (its columns: {shown}{more})"
            )
        column = frame[name]
        if isinstance(column, pd.DataFrame):
            raise InvalidArgument(f"slice column {name!r} appears {column.shape[1]} times")
        for value, rows in _column_groups(column.reset_index(drop=True), max_values):
            groups.append((str(name), value, rows))
    return groups


def _column_groups(series: pd.Series, max_values: int) -> list[tuple[str, np.ndarray]]:
    import numpy as np
    import pandas as pd

    missing = np.asarray(series.isna(), dtype=bool)
    rows = np.flatnonzero(~missing)
    present = series[~missing]
    groups: list[tuple[str, np.ndarray]]
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    if numeric and present.nunique() > max_values:
        values = present.to_numpy(dtype=float)
        finite = np.isfinite(values)
        groups = _quantile_groups(values[finite], rows[finite], max_values)
        groups += _value_groups(values[~finite], rows[~finite], max_values)  # ±inf
    else:
        groups = _value_groups(present.to_numpy(), rows, max_values)
    if missing.any():
        groups.append((MISSING_VALUE, np.flatnonzero(missing)))
    return groups


def _quantile_groups(
    values: np.ndarray, rows: np.ndarray, max_values: int
) -> list[tuple[str, np.ndarray]]:
    """Equal-count ranges ``[lo, hi)`` (the last one closed); ties can leave a range empty."""
    import numpy as np

    edges = np.unique(np.quantile(values, np.linspace(0, 1, min(QUANTILE_BINS, max_values) + 1)))
    if len(edges) < 2:
        return _value_groups(values, rows, max_values)
    bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    names = _range_names(edges.tolist())
    return [(names[b], rows[bins == b]) for b in range(len(edges) - 1) if (bins == b).any()]


def _range_names(edges: list[float]) -> list[str]:
    """``[0.0, 12.5)`` … ``[87.5, 100.0]``, with just enough digits to tell the edges apart."""
    for digits in range(6, 18):
        text = [repr(float(f"{e:.{digits}g}")) for e in edges]
        if len(set(text)) == len(text):
            break
    last = len(edges) - 2
    return [f"[{text[i]}, {text[i + 1]}{']' if i == last else ')'}" for i in range(last + 1)]


def _value_groups(
    values: np.ndarray, rows: np.ndarray, max_values: int
) -> list[tuple[str, np.ndarray]]:
    """One group per value, the ``max_values`` most frequent kept and the rest as ``(other)``."""
    import numpy as np
    import pandas as pd

    if not len(values):
        return []
    codes, uniques = pd.factorize(values)
    counts = np.bincount(codes, minlength=len(uniques))
    kept = np.argsort(-counts, kind="stable")[:max_values].tolist()
    try:
        kept.sort(key=lambda code: uniques[code])
    except TypeError:
        kept.sort(key=lambda code: str(uniques[code]))
    by_name: dict[str, list[np.ndarray]] = {}
    for code in kept:  # two values may print alike (1 and "1"): one slice
        by_name.setdefault(str(_plain(uniques[code])), []).append(rows[codes == code])
    groups = [(name, np.sort(np.concatenate(parts))) for name, parts in by_name.items()]
    if len(uniques) > max_values:
        groups.append((OTHER_VALUES, rows[~np.isin(codes, kept)]))
    return groups


def _key_part(text: str, limit: int) -> str:
    safe = _KEY_UNSAFE.sub("_", text)
    if len(safe) > limit:
        safe = f"{safe[: limit - 9]}_{_digest(text)}"
    return safe


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


# KPIs --------------------------------------------------------------------------------------------


def _check_kpi(kpi: Kpi, metrics: Mapping[str, float]) -> KpiCheck:
    direction, target = str(kpi.direction), float(kpi.target)
    if direction not in ("maximize", "minimize"):
        raise InvalidArgument(f"KPI {kpi.name!r} has unknown direction {direction!r}")

    def check(value: float | None, met: bool, reason: str) -> KpiCheck:
        return KpiCheck(kpi.name, kpi.metric, target, direction, value, met, reason)

    raw = metrics.get(kpi.metric)
    if raw is None:
        return check(None, False, f"metric {kpi.metric!r} was not computed")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidArgument(f"metric {kpi.metric!r} is not a number: {raw!r:.50}") from None
    if math.isnan(value):
        return check(None, False, f"metric {kpi.metric!r} is NaN, so it cannot meet its target")
    if direction == "maximize":
        met, sign = value >= target, ("≥" if value >= target else "<")
    else:
        met, sign = value <= target, ("≤" if value <= target else ">")
    shown_value, shown_target = _distinct_numbers(value, target)
    return check(value, met, f"{kpi.metric} {shown_value} {sign} target {shown_target}")


def _distinct_numbers(a: float, b: float) -> tuple[str, str]:
    """Both numbers short, but never printed alike when they differ (0.8999 vs 0.9)."""
    for digits in range(4, 18):
        shown = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if shown[0] != shown[1] or a == b:
            return shown
    return repr(a), repr(b)

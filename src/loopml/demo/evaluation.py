"""How the demo judges a fraud model: metrics at an operating point, curves, importances."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from loopml.demo.data import _Data
from loopml.demo.projects import MAX_FALSE_ALARM_RATE


def recall_at_fpr(y: np.ndarray, proba: np.ndarray, max_fpr: float = MAX_FALSE_ALARM_RATE) -> float:
    """Share of fraud caught at the best threshold whose false-alarm rate is ``<= max_fpr``."""
    fpr, tpr, _ = roc_curve(y, proba, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def operating_threshold(
    y: np.ndarray, proba: np.ndarray, max_fpr: float = MAX_FALSE_ALARM_RATE
) -> float:
    """The lowest threshold (so the most fraud caught) with a false-alarm rate ``<= max_fpr``."""
    fpr, _, thresholds = roc_curve(y, proba, drop_intermediate=False)
    return float(thresholds[fpr <= max_fpr].min())


def evaluate(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Validation metrics; the thresholded ones flag a payment when ``proba >= threshold``."""
    pred = (proba >= threshold).astype(np.int8)
    negatives = max(1, int((y == 0).sum()))
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, proba)),
        "log_loss": _log_loss(y, proba),
        "false_alarm_rate": int(((pred == 1) & (y == 0)).sum()) / negatives,
        "recall_at_1pct_fpr": recall_at_fpr(y, proba),
    }


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1]))


def _confusion(y: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = proba >= threshold
    tn, fp = int((~pred & (y == 0)).sum()), int((pred & (y == 0)).sum())
    fn, tp = int((~pred & (y == 1)).sum()), int((pred & (y == 1)).sum())
    return {
        "threshold": threshold,
        "labels": ["legit", "fraud"],
        "rows": "actual",
        "columns": "predicted",
        "matrix": [[tn, fp], [fn, tp]],
    }


def _stages(model: Any, x: np.ndarray) -> Iterator[np.ndarray] | None:
    """Fraud probabilities after each boosting round or each added tree; None if not iterative."""
    if hasattr(model, "staged_predict_proba"):
        return (p[:, 1] for p in model.staged_predict_proba(x))
    if isinstance(model, RandomForestClassifier):
        return _forest_stages(model, x)
    return None


def _forest_stages(model: RandomForestClassifier, x: np.ndarray) -> Iterator[np.ndarray]:
    total = np.zeros(len(x))
    x32 = x.astype(np.float32)
    for n, tree in enumerate(model.estimators_, start=1):
        total += tree.predict_proba(x32)[:, 1]
        yield total / n


def _importances(model: Any, data: _Data) -> dict[str, Any]:
    """What the model leans on, per input column (one-hot columns summed back to theirs)."""
    if isinstance(model, Pipeline):
        encoded, method = np.abs(model[-1].coef_[0]), "absolute standardised coefficient"
    elif hasattr(model, "feature_importances_"):
        encoded, method = model.feature_importances_, "mean decrease in impurity"
    else:
        return {"method": "permutation (drop in ROC AUC)", "importances": _permutation(model, data)}
    summed: dict[str, float] = {}
    for column, value in zip(data.features, encoded, strict=True):
        source = _source_column(column)
        summed[source] = summed.get(source, 0.0) + float(value)
    return {"method": method, "importances": _ranked(summed)}


def _permutation(model: Any, data: _Data, rows: int = 2000, repeats: int = 2) -> dict[str, float]:
    """Drop in validation ROC AUC when one input column (all its one-hot columns) is shuffled."""
    rng = np.random.default_rng(0)
    x, y = data.x_val[:rows], data.y_val[:rows]
    base = roc_auc_score(y, model.predict_proba(x)[:, 1])
    sources = [_source_column(c) for c in data.features]
    drops: dict[str, float] = {}
    for source in dict.fromkeys(sources):
        columns = [i for i, s in enumerate(sources) if s == source]
        losses = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, columns] = x[rng.permutation(len(x))][:, columns]
            losses.append(base - roc_auc_score(y, model.predict_proba(shuffled)[:, 1]))
        drops[source] = float(np.mean(losses))
    return _ranked(drops)


def _source_column(feature: str) -> str:
    return "merchant_category" if feature.startswith("merchant_category_") else feature


def _ranked(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(values.items(), key=lambda kv: -kv[1])}

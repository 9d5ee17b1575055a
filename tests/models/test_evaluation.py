"""Evaluation of predictions: metrics checked against sklearn and numpy, slices, figures, KPIs."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn import metrics as skm

from loopml.errors import InvalidArgument
from loopml.models.evaluation import (
    EvaluationResult,
    KpiCheck,
    SliceResult,
    check_kpis,
    evaluate_predictions,
)
from loopml.projects.entities import Direction, JudgedAt, Kpi
from loopml.tracking.validation import validate_key

# 8 examples: TP = 3 (rows 2, 3, 6), FN = 1 (row 4), FP = 1 (row 1), TN = 3 (rows 0, 5, 7)
Y_TRUE = [0, 0, 1, 1, 1, 0, 1, 0]
Y_PRED = [0, 1, 1, 1, 0, 0, 1, 0]
P_POS = [0.1, 0.6, 0.8, 0.7, 0.4, 0.3, 0.9, 0.2]


def binary() -> EvaluationResult:
    return evaluate_predictions(Y_TRUE, Y_PRED, task="classification", y_proba=P_POS)


# binary classification ---------------------------------------------------------------------------


def test_binary_metrics_by_hand() -> None:
    m = binary().metrics
    assert m["example_count"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    # 16 (positive, negative) pairs; only (row 4: 0.4, row 1: 0.6) is ordered wrongly
    assert m["roc_auc"] == pytest.approx(15 / 16)
    p_truth = [0.9, 0.4, 0.8, 0.7, 0.4, 0.7, 0.9, 0.8]
    assert m["log_loss"] == pytest.approx(-sum(math.log(p) for p in p_truth) / 8)


def test_binary_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 500)
    p = np.clip(0.35 * y + 0.65 * rng.random(500), 0.001, 0.999)
    pred = (p > 0.45).astype(int)
    r = evaluate_predictions(y, pred, task="classification", y_proba=p)
    assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r.metrics["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert r.metrics["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert r.metrics["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert r.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert r.labels == ["0", "1"]


def test_confusion_matrix_rows_are_truth_columns_are_predictions() -> None:
    r = binary()
    assert r.confusion_matrix == [[3, 1], [1, 3]]
    assert all(isinstance(v, int) for row in r.confusion_matrix or [] for v in row)


def test_positive_label_defaults_to_the_last_label_and_can_be_chosen() -> None:
    truth = ["no", "no", "yes", "yes", "yes"]
    pred = ["no", "yes", "yes", "yes", "no"]
    default = evaluate_predictions(truth, pred, task="classification")
    assert default.labels == ["no", "yes"]
    assert default.metrics["precision"] == pytest.approx(2 / 3)  # of "yes"
    chosen = evaluate_predictions(truth, pred, task="classification", positive_label="no")
    assert chosen.metrics["precision"] == pytest.approx(1 / 2)  # of "no"
    assert chosen.metrics["recall"] == pytest.approx(skm.recall_score(truth, pred, pos_label="no"))


def test_two_column_probabilities_equal_the_positive_column() -> None:
    two = np.column_stack([1 - np.array(P_POS), P_POS])
    r = evaluate_predictions(Y_TRUE, Y_PRED, task="classification", y_proba=two)
    assert r.metrics == binary().metrics


def test_labels_fix_the_order_of_classes_and_probability_columns() -> None:
    two = np.column_stack([P_POS, 1 - np.array(P_POS)])  # column 0 is class 1
    r = evaluate_predictions(Y_TRUE, Y_PRED, task="classification", y_proba=two, labels=[1, 0])
    assert r.labels == ["1", "0"]
    assert r.confusion_matrix == [[3, 1], [1, 3]]
    # with labels [1, 0] the positive class is 0: its probability is column 1
    assert r.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_TRUE, P_POS))


def test_precision_left_out_when_nothing_is_predicted_positive() -> None:
    r = evaluate_predictions([0, 1, 1], [0, 0, 0], task="classification", labels=[0, 1])
    assert "precision" not in r.metrics
    assert r.metrics["recall"] == 0.0
    assert r.metrics["f1"] == 0.0


# multiclass --------------------------------------------------------------------------------------


def test_multiclass_macro_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.choice(["cat", "dog", "fox"], 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    proba[np.arange(300), np.searchsorted(["cat", "dog", "fox"], y)] += 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    pred = np.array(["cat", "dog", "fox"])[proba.argmax(axis=1)]
    r = evaluate_predictions(y, pred, task="classification", y_proba=proba)
    assert r.labels == ["cat", "dog", "fox"]
    p, rec, f1, _ = skm.precision_recall_fscore_support(y, pred, average="macro")
    assert r.metrics["precision"] == pytest.approx(p)
    assert r.metrics["recall"] == pytest.approx(rec)
    assert r.metrics["f1"] == pytest.approx(f1)
    assert r.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r.metrics["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert r.metrics["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert r.confusion_matrix == skm.confusion_matrix(y, pred).tolist()
    assert set(r.figures) == {"confusion_matrix"}


def test_multiclass_macro_averages_over_defined_classes() -> None:
    truth = [0, 1, 2, 2, 1]
    pred = [0, 0, 2, 2, 0]  # class 1 is never predicted: its precision is undefined
    r = evaluate_predictions(truth, pred, task="classification")
    p, rec, f1, _ = skm.precision_recall_fscore_support(
        truth, pred, average="macro", zero_division=np.nan
    )
    assert r.metrics["precision"] == pytest.approx(p)
    assert r.metrics["recall"] == pytest.approx(rec)
    assert r.metrics["f1"] == pytest.approx(f1)


# regression --------------------------------------------------------------------------------------


def test_regression_metrics_match_numpy_formulas() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(10, 3, 400)
    pred = y + rng.normal(0, 1, 400)
    r = evaluate_predictions(pd.Series(y), pred.tolist(), task="regression")
    assert r.task == "regression"
    assert r.metrics["example_count"] == 400
    assert r.metrics["mae"] == pytest.approx(np.mean(np.abs(y - pred)))
    assert r.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y - pred) ** 2)))
    r2 = 1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r.metrics["r2"] == pytest.approx(r2)
    assert r.metrics["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert r.confusion_matrix is None and r.labels is None


def test_r2_left_out_for_a_constant_truth() -> None:
    r = evaluate_predictions([2.0, 2.0, 2.0], [1.0, 2.0, 3.0], task="regression")
    assert "r2" not in r.metrics
    assert r.metrics["mae"] == pytest.approx(2 / 3)


def test_residual_figure_is_downsampled() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(12_000)
    r = evaluate_predictions(y, y + 0.1, task="regression")
    trace = r.figures["residuals"]["data"][0]
    assert len(trace["x"]) == len(trace["y"]) == 5_000
    assert trace["y"][0] == pytest.approx(-0.1)
    orjson.dumps(r.figures)
    small = evaluate_predictions([1.0, 2.0], [1.5, 2.5], task="regression")
    assert small.figures["residuals"]["data"][0]["y"] == [-0.5, -0.5]


# slices ------------------------------------------------------------------------------------------


def slice_data(n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0.01, 0.99)
    pred = (p > 0.5).astype(int)
    frame = pd.DataFrame(
        {"country": rng.choice(["DE", "FR", "IT"], n), "income": rng.uniform(0, 100, n)}
    )
    return y, pred, p, frame


def test_slices_on_categorical_and_binned_numeric_columns() -> None:
    y, pred, p, frame = slice_data()
    r = evaluate_predictions(
        y,
        pred,
        task="classification",
        y_proba=p,
        slices_frame=frame,
        slices=["country", "income"],
    )
    country = [s for s in r.slices if s.column == "country"]
    income = [s for s in r.slices if s.column == "income"]
    assert [s.value for s in country] == ["DE", "FR", "IT"]
    assert sum(s.count for s in country) == len(y)
    assert sum(s.count for s in income) == len(y)
    assert len(income) == 10  # quantile bins of a column with 600 distinct values
    assert income[0].value.startswith("[") and income[0].value.endswith(")")
    assert income[-1].value.endswith("]")
    assert all(abs(s.count - 60) <= 1 for s in income)
    for s in country:
        rows = frame["country"].to_numpy() == s.value
        assert s.count == rows.sum() == s.metrics["example_count"]
        assert s.metrics["accuracy"] == pytest.approx(skm.accuracy_score(y[rows], pred[rows]))
        assert s.metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y[rows], p[rows]))
        assert set(s.metrics) == set(r.metrics)


def test_quantile_range_names_are_readable() -> None:
    values = np.arange(80, dtype=float) * 1.25  # 0.0 … 98.75
    r = evaluate_predictions(
        values, values, task="regression", slices_frame={"x": values}, slices=["x"]
    )
    assert r.slices[0].value == "[0.0, 9.875)"
    assert r.slices[-1].value == "[88.875, 98.75]"


def test_numeric_column_with_few_values_is_not_binned() -> None:
    y, pred, _, _ = slice_data(90)
    frame = pd.DataFrame({"tier": [1, 2, 10] * 30})
    r = evaluate_predictions(y, pred, task="classification", slices_frame=frame, slices=["tier"])
    assert [(s.value, s.count) for s in r.slices] == [("1", 30), ("2", 30), ("10", 30)]


def test_binning_threshold_is_max_slice_values() -> None:
    frame = pd.DataFrame({"k": list(range(5)) * 4})
    y = np.arange(20, dtype=float)
    kept = evaluate_predictions(y, y, task="regression", slices_frame=frame, slices=["k"])
    assert len(kept.slices) == 5
    binned = evaluate_predictions(
        y, y, task="regression", slices_frame=frame, slices=["k"], max_slice_values=3
    )
    assert len(binned.slices) == 3
    assert sum(s.count for s in binned.slices) == 20


def test_missing_and_rare_slice_values() -> None:
    frame = pd.DataFrame({"city": ["a", "a", "a", "b", "b", "c", "d", None]})
    y = np.arange(8, dtype=float)
    r = evaluate_predictions(
        y, y, task="regression", slices_frame=frame, slices=["city"], max_slice_values=2
    )
    assert [(s.value, s.count) for s in r.slices] == [
        ("a", 3),
        ("b", 2),
        ("(other)", 2),
        ("(missing)", 1),
    ]


def test_metric_undefined_on_a_slice_is_left_out() -> None:
    y = np.array([0, 1, 0, 1, 1, 1])
    p = np.array([0.2, 0.7, 0.4, 0.9, 0.6, 0.8])
    pred = (p > 0.5).astype(int)
    frame = pd.DataFrame({"group": ["mixed", "mixed", "mixed", "ones", "ones", "ones"]})
    r = evaluate_predictions(
        y, pred, task="classification", y_proba=p, slices_frame=frame, slices=["group"]
    )
    mixed, ones = r.slices
    assert "roc_auc" in mixed.metrics
    assert "roc_auc" not in ones.metrics
    assert ones.metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.8])))
    assert all(not math.isnan(v) for s in r.slices for v in s.metrics.values())
    assert "slice.group:ones.roc_auc" not in r.slice_metrics_flat()


def test_multiclass_roc_auc_left_out_when_a_class_is_absent_from_a_slice() -> None:
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]])
    truth = [0, 1, 2, 0]
    frame = {"part": ["all", "all", "all", "zero"]}
    r = evaluate_predictions(
        truth, truth, task="classification", y_proba=proba, slices_frame=frame, slices="part"
    )
    assert "roc_auc" in r.metrics
    assert "roc_auc" in r.slices[0].metrics
    assert "roc_auc" not in r.slices[1].metrics


# figures and serialisation -----------------------------------------------------------------------


def test_binary_figures_are_plotly_json() -> None:
    r = binary()
    assert set(r.figures) == {"roc_curve", "calibration", "confusion_matrix"}
    for figure in r.figures.values():
        assert set(figure) >= {"data", "layout"}
        assert orjson.loads(orjson.dumps(figure)) == figure
    assert r.figures["confusion_matrix"]["data"][0]["z"] == [[3, 1], [1, 3]]
    roc = r.figures["roc_curve"]["data"][0]
    assert roc["x"][0] == 0.0 and roc["x"][-1] == 1.0 and roc["y"][-1] == 1.0


def test_calibration_uses_ten_quantile_bins() -> None:
    y, pred, p, _ = slice_data(1000)
    r = evaluate_predictions(y, pred, task="classification", y_proba=p)
    curve = r.figures["calibration"]["data"][0]
    assert len(curve["x"]) == 10
    assert curve["customdata"] == [100] * 10
    assert curve["x"] == sorted(curve["x"])


def test_without_probabilities_only_the_confusion_matrix() -> None:
    r = evaluate_predictions(Y_TRUE, Y_PRED, task="classification")
    assert set(r.figures) == {"confusion_matrix"}
    assert "roc_auc" not in r.metrics and "log_loss" not in r.metrics


def test_to_dict_is_json_safe() -> None:
    y, pred, p, frame = slice_data()
    r = evaluate_predictions(
        y, pred, task="classification", y_proba=p, slices_frame=frame, slices=["country"]
    )
    data = orjson.loads(orjson.dumps(r.to_dict()))
    assert data["task"] == "classification"
    assert data["labels"] == ["0", "1"]
    assert data["slices"][0]["column"] == "country"
    nan = EvaluationResult(
        "regression",
        {"r2": math.nan},
        None,
        None,
        (SliceResult("c", "v", 1, {"mae": math.inf}),),
        {},
    )
    safe = nan.to_dict()
    assert safe["metrics"] == {"r2": None}
    assert safe["slices"][0]["metrics"] == {"mae": None}
    orjson.dumps(safe)


def test_flat_slice_keys_are_valid_metric_keys() -> None:
    values = [
        "DE",
        "a/../b",
        "a_.._b",
        "x\ty",
        "ü",
        "../etc",
        "/root",
        "",
        "v" * 300,
        "v" * 299 + "w",
    ]
    frame = pd.DataFrame({"weird col/=": values, "n": range(len(values))})
    y = np.arange(len(values), dtype=float)
    r = evaluate_predictions(
        y, y, task="regression", slices_frame=frame, slices=["weird col/=", "n"]
    )
    flat = r.slice_metrics_flat()
    for key in flat:
        assert validate_key(key) == key
    # one key per (slice, metric): sanitising never merges two slices
    assert len(flat) == sum(len(s.metrics) for s in r.slices)
    assert "slice.n:3.mae" in flat


def test_flat_slice_keys_for_plain_values() -> None:
    y, pred, _, frame = slice_data()
    r = evaluate_predictions(y, pred, task="classification", slices_frame=frame, slices=["country"])
    flat = r.slice_metrics_flat()
    de = next(s for s in r.slices if s.value == "DE")
    assert flat["slice.country:DE.accuracy"] == de.metrics["accuracy"]
    assert flat["slice.country:DE.example_count"] == de.count


# KPIs --------------------------------------------------------------------------------------------


def kpi(metric: str, target: float, direction: str = "maximize", stage: str = "validation") -> Kpi:
    return Kpi("k1", "p1", f"{metric} goal", metric, target, Direction(direction), JudgedAt(stage))


def test_kpi_maximize() -> None:
    met, missed = check_kpis([kpi("recall", 0.9), kpi("f1", 0.95)], {"recall": 0.93, "f1": 0.9})
    assert met == KpiCheck("recall goal", "recall", 0.9, "maximize", 0.93, True, met.reason)
    assert met.reason == "recall 0.93 ≥ target 0.9"
    assert not missed.met
    assert missed.reason == "f1 0.9 < target 0.95"


def test_kpi_minimize() -> None:
    low, high = check_kpis(
        [kpi("log_loss", 0.35, "minimize"), kpi("rmse", 2.0, "minimize")],
        {"log_loss": 0.3, "rmse": 2.5},
    )
    assert low.met and low.reason == "log_loss 0.3 ≤ target 0.35"
    assert not high.met and high.reason == "rmse 2.5 > target 2"
    assert high.direction == "minimize"


def test_kpi_reason_never_prints_different_numbers_alike() -> None:
    (check,) = check_kpis([kpi("recall", 0.9)], {"recall": 0.8999999})
    assert not check.met
    assert check.reason == "recall 0.8999999 < target 0.9"


def test_kpi_exactly_on_target_is_met() -> None:
    checks = check_kpis(
        [kpi("recall", 0.9), kpi("mae", 0.9, "minimize")], {"recall": 0.9, "mae": 0.9}
    )
    assert all(c.met for c in checks)


def test_kpi_missing_or_nan_metric_is_not_met() -> None:
    missing, nan = check_kpis([kpi("recall", 0.9), kpi("auc", 0.8)], {"auc": math.nan})
    assert missing.value is None and not missing.met
    assert missing.reason == "metric 'recall' was not computed"
    assert nan.value is None and not nan.met and "NaN" in nan.reason


def test_kpis_filtered_by_stage() -> None:
    kpis = [kpi("recall", 0.9), kpi("latency_p99", 50, "minimize", "production")]
    metrics = {"recall": 0.95, "latency_p99": 40.0}
    assert [c.metric for c in check_kpis(kpis, metrics)] == ["recall"]
    assert [c.metric for c in check_kpis(kpis, metrics, judged_at="production")] == ["latency_p99"]
    with pytest.raises(InvalidArgument, match="unknown KPI stage 'staging'"):
        check_kpis(kpis, metrics, judged_at="staging")


def test_kpis_with_evaluation_metrics() -> None:
    (check,) = check_kpis([kpi("roc_auc", 0.9)], binary().metrics)
    assert check.met and check.value == pytest.approx(15 / 16)


# bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_true": [0, 1, 1], "y_pred": [0, 1]}, "y_true has 3 values but y_pred has 2"),
        ({"y_true": [], "y_pred": []}, "empty"),
        ({"task": "ranking"}, "unknown task 'ranking'"),
        ({"slices": ["region"]}, "slices \\['region'\\] need slices_frame"),
        (
            {"slices": ["region"], "slices_frame": {"country": ["DE"] * 4}},
            "slice column 'region' is not in slices_frame \\(its columns: 'country'\\)",
        ),
        (
            {"slices": ["country"], "slices_frame": {"country": ["DE"] * 3}},
            "slices_frame has 3 rows but there are 4 predictions",
        ),
        ({"y_proba": [0.1, 0.2, 0.3]}, "y_proba has shape \\(3,\\)"),
        ({"y_proba": [0.1, 1.2, 0.3, 0.4]}, "probabilities in \\[0, 1\\]; row 1 has 1.2"),
        ({"y_proba": [[0.5, 0.4]] * 4}, "rows of y_proba must sum to 1; row 0 sums to 0.9"),
        ({"y_proba": [[0.2, 0.3, 0.5]] * 4}, "y_proba has 3 columns but there are 2 classes"),
        ({"labels": [0, 2]}, "y_true holds 1 \\(row 1\\), which is not one of the labels"),
        ({"labels": [0, 1, 1]}, "labels has duplicates"),
        ({"positive_label": 5}, "positive_label 5 is not one of \\[0, 1\\]"),
        ({"y_true": [0, None, 1, 1]}, "y_true has 1 missing values \\(first at row 1\\)"),
        ({"y_pred": [[0, 1], [1, 0], [0, 0], [1, 1]]}, "y_pred must be one-dimensional"),
        ({"y_pred": ["0", "1", "1", "0"]}, "labels of different types \\(int, str\\)"),
        ({"max_slice_values": 0}, "max_slice_values must be a positive integer"),
    ],
)
def test_bad_classification_input(kwargs: dict, message: str) -> None:
    args = {"y_true": [0, 1, 1, 0], "y_pred": [0, 1, 0, 0], "task": "classification"}
    args.update(kwargs)
    with pytest.raises(InvalidArgument, match=message):
        evaluate_predictions(**args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y_pred": [1.0, "x", 3.0]}, "y_pred must hold numbers for regression; row 1 is 'x'"),
        ({"y_true": [1.0, math.inf, 3.0]}, "y_true holds inf at row 1"),
        ({"y_true": [1.0, math.nan, 3.0]}, "y_true has 1 missing values"),
        ({"y_proba": [0.1, 0.2, 0.3]}, "y_proba is for classification"),
        ({"labels": [1, 2]}, "labels is for classification"),
    ],
)
def test_bad_regression_input(kwargs: dict, message: str) -> None:
    args = {"y_true": [1.0, 2.0, 3.0], "y_pred": [1.0, 2.5, 3.0], "task": "regression"}
    args.update(kwargs)
    with pytest.raises(InvalidArgument, match=message):
        evaluate_predictions(**args)


def test_importing_evaluation_loads_nothing_heavy() -> None:
    code = (
        "import sys, loopml.models.evaluation\n"
        "heavy = ['numpy', 'pandas', 'sklearn', 'plotly', 'sqlalchemy', 'fastapi', 'httpx',"
        " 'loopml.settings']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"

"""Quickstart: a fraud-detection project, its KPIs, and a few tracked scikit-learn runs.

Run it with ``make run`` (or ``.venv/bin/python examples/quickstart.py``); then look around with
``loopml runs ls``, ``loopml runs show <id>``, ``loopml projects show fraud-detection``.
Everything is stored under ``LOOPML_HOME`` (default ``./.loopml``). The data is generated here,
nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split

import loopml

PROJECT = "fraud-quickstart"  # `loopml up` loads the full demo as "fraud-detection"


def make_transactions(n: int = 6000, seed: int = 7) -> pd.DataFrame:
    """Synthetic card transactions: about 5 % fraud."""
    x, y = make_classification(
        n_samples=n,
        n_features=12,
        n_informative=6,
        weights=[0.95],
        flip_y=0.01,
        class_sep=2.0,
        random_state=seed,
    )
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    frame["is_fraud"] = y
    return frame


def ensure_project(client: loopml.Client) -> None:
    if any(p.name == PROJECT for p in client.list_projects()):
        return
    client.create_project(
        PROJECT,
        business_goal="Catch card fraud before money leaves the bank, without annoying customers.",
        owner="fraud-ops",
    )
    client.add_okr(
        PROJECT,
        "Cut fraud losses this quarter",
        ["Fraud losses down 20 %", "False alarms below 1 % of transactions"],
        owner="head-of-fraud",
    )
    client.add_kpi(PROJECT, "fraud caught", metric="recall", target=0.6, owner="fraud-ops")
    client.add_kpi(
        PROJECT, "ranking quality", metric="roc_auc", target=0.9, description="Offline AUC gate"
    )
    client.add_kpi(
        PROJECT, "false alarms", metric="false_alarm_rate", target=0.01, direction="minimize",
        judged_at="production",
    )  # fmt: skip


def evaluate(model, x_test, y_test) -> dict[str, float]:  # type: ignore[no-untyped-def]
    proba = model.predict_proba(x_test)[:, 1]
    pred = (proba >= 0.5).astype(int)
    tn, fp, _fn, _tp = confusion_matrix(y_test, pred).ravel()
    return {
        "accuracy": accuracy_score(y_test, pred),
        "precision": precision_score(y_test, pred, zero_division=0),
        "recall": recall_score(y_test, pred),
        "f1": f1_score(y_test, pred),
        "roc_auc": roc_auc_score(y_test, proba),
        "false_alarm_rate": fp / max(1, tn + fp),
    }


def main() -> None:
    client = loopml.get_client()
    ensure_project(client)
    loopml.set_experiment("quickstart", project=PROJECT)

    data = make_transactions()
    x, y = data.drop(columns="is_fraud"), data["is_fraud"]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=0)

    candidates = [
        ("logreg", LogisticRegression(C=1.0, max_iter=500)),
        ("rf-100", RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)),
        ("rf-200", RandomForestClassifier(n_estimators=200, max_depth=None, random_state=0)),
        ("gbm", GradientBoostingClassifier(n_estimators=60, learning_rate=0.1, random_state=0)),
    ]
    for name, model in candidates:
        with loopml.start_run(run_name=name):
            loopml.set_tags({"model_family": type(model).__name__, "stage": "quickstart"})
            loopml.log_params({k: v for k, v in model.get_params().items() if v is not None})
            loopml.log_input(x_train, name="transactions-train", role="train")
            loopml.log_input(x_test, name="transactions-test", role="test")
            model.fit(x_train, y_train)
            if hasattr(model, "staged_predict_proba"):  # a learning curve, one value per stage
                for step, proba in enumerate(model.staged_predict_proba(x_test)):
                    loopml.log_metric("test_auc", roc_auc_score(y_test, proba[:, 1]), step=step)
            metrics = evaluate(model, x_test, y_test)
            loopml.log_metrics(metrics)
            loopml.log_dict(
                {"features": list(x.columns), "rows": len(x_train), "fraud_rate": float(y.mean())},
                "data/summary.json",
            )
            cm = confusion_matrix(y_test, model.predict(x_test))
            loopml.log_text(np.array2string(cm), "eval/confusion_matrix.txt")
        print(f"{name:8s} roc_auc={metrics['roc_auc']:.3f} recall={metrics['recall']:.3f}")

    loopml.flush()
    project = client.get_project(PROJECT)
    best = client.search_runs(
        loopml.set_experiment("quickstart", project=PROJECT).experiment_id,
        order_by=["metrics.roc_auc DESC"],
        max_results=1,
    ).items[0]
    print(f"\nbest run: {best.run_name} ({best.run_id})")
    for kpi in project.kpis:
        value = best.metrics.get(kpi.metric)
        verdict = "n/a" if value is None else "met" if kpi.is_met(value) else "missed"
        print(f"  KPI {kpi.name!r}: {kpi.metric}={value} target {kpi.target} -> {verdict}")


if __name__ == "__main__":
    main()

"""The demo ``loopml up`` loads into an empty store: a fraud-detection project, end to end.

It generates card transactions (nothing is downloaded), creates the project ``fraud-detection``
with its business goal, an OKR and KPIs, and tracks an experiment ``fraud-models`` of scikit-learn
runs: params, inputs with digests, metric curves, final metrics and artifacts, one run that fails
on a bad configuration and one nested threshold-tuning run under the best model. Later stages
extend the demo, so a fresh store always shows the whole platform at work::

    python -m loopml.demo --home ./.loopml

>>> frame = generate_transactions(2_000, seed=1)
>>> list(frame.columns)[-1], bool(0.01 < frame["is_fraud"].mean() < 0.04)
('is_fraud', True)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from loopml.client import Client
from loopml.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from loopml.fluent import dataset_digest
from loopml.settings import Settings
from loopml.tracking.entities import Experiment, Run, RunInput, RunStatus
from loopml.tracking.runinfo import UsageMeter

PROJECT = "fraud-detection"
EXPERIMENT = "fraud-models"
TARGET = "is_fraud"
MAX_FALSE_ALARM_RATE = 0.01  # the operating constraint the KPIs are written against
SEED = 7

# --------------------------------------------------------------------------------------------
# Data: synthetic card transactions
# --------------------------------------------------------------------------------------------

# merchant category: (median amount in EUR, share of payments made with the card present)
CATEGORIES: dict[str, tuple[float, float]] = {
    "grocery": (35.0, 0.97),
    "restaurant": (28.0, 0.95),
    "fuel": (55.0, 0.97),
    "retail": (60.0, 0.85),
    "online_retail": (70.0, 0.0),
    "travel": (420.0, 0.35),
    "electronics": (300.0, 0.6),
    "digital_goods": (12.0, 0.0),
    "jewelry": (450.0, 0.8),
    "atm": (100.0, 1.0),
}
_EVERYDAY = {
    "grocery": 25, "restaurant": 15, "fuel": 10, "retail": 15, "online_retail": 12, "travel": 4,
    "electronics": 5, "digital_goods": 6, "jewelry": 2, "atm": 6,
}  # fmt: skip

Hours = Literal["day", "waking", "late", "night", "any"]


@dataclass(frozen=True, slots=True)
class _Profile:
    """A kind of transaction: how its features are drawn. Fraud and legit each mix several."""

    name: str
    share: float  # of its class (legit or fraud)
    categories: Mapping[str, float]  # relative weights
    hours: Hours = "day"
    amount_factor: float = 1.0  # times the category's median
    tiny_amounts: bool = False  # 0.50-3 EUR, as card testers probe a card
    card_present: float | None = None  # None: the category's usual share
    abroad: float = 0.02  # probability the country differs from the card's
    far_km: float | None = None  # median distance from home when not abroad; None: near home
    tx_24h: float = 1.5  # mean of other transactions on the card in the last 24 h
    new_account: bool = False  # opened in the last 60 days


_LEGIT = (
    _Profile("everyday", 0.70, _EVERYDAY),
    _Profile(
        "traveller", 0.09, {"travel": 3, "restaurant": 3, "retail": 2, "atm": 1, "fuel": 1},
        hours="waking", card_present=0.9, abroad=0.9,
    ),
    _Profile(
        "night-owl", 0.07,
        {"restaurant": 3, "fuel": 2, "online_retail": 2, "digital_goods": 2, "grocery": 1},
        hours="late",
    ),
    _Profile(
        "commuter", 0.05, {"fuel": 3, "grocery": 3, "restaurant": 2, "retail": 1},
        card_present=0.98, tx_24h=7.0,
    ),
    _Profile("newcomer", 0.05, _EVERYDAY, new_account=True),
    _Profile("big-spender", 0.04, {"electronics": 3, "jewelry": 2, "travel": 3}, amount_factor=2),
)  # fmt: skip
_FRAUD = (
    _Profile(
        "card-testing", 0.28, {"digital_goods": 3, "online_retail": 1}, hours="any",
        tiny_amounts=True, card_present=0.0, abroad=0.4, tx_24h=12.0,
    ),
    _Profile(
        "stolen-card-online", 0.32,
        {"electronics": 3, "online_retail": 3, "jewelry": 1, "digital_goods": 1},
        hours="night", amount_factor=3.0, card_present=0.0, abroad=0.2, far_km=250.0, tx_24h=3.5,
    ),
    _Profile(
        "skimmed-card-abroad", 0.20, {"atm": 3, "jewelry": 2, "electronics": 2}, hours="night",
        amount_factor=3.0, card_present=0.95, abroad=0.9, tx_24h=4.0,
    ),
    _Profile(
        "bust-out", 0.17, {"electronics": 3, "jewelry": 2, "online_retail": 1},
        amount_factor=3.0, card_present=0.5, tx_24h=5.0, new_account=True,
    ),
    _Profile("looks-legit", 0.03, _EVERYDAY),  # no model catches these
)  # fmt: skip


def generate_transactions(n: int = 20_000, seed: int = SEED) -> pd.DataFrame:
    """``n`` synthetic card transactions, about 2.5 % of them fraud (``is_fraud`` = 1).

    Legit and fraudulent payments are each a mix of profiles (card testing, stolen cards used
    online, skimmed cards abroad, bust-out on new accounts; travellers, night owls, commuters …).
    Fraud shows in combinations of features more than in any one of them, so tree ensembles
    learn it far better than a linear model. The same ``seed`` gives the same frame.
    """
    if n < 100:
        raise InvalidArgument(f"generate_transactions needs n >= 100, got {n}")
    rng = np.random.default_rng(seed)
    n_fraud = int(rng.binomial(n, 0.025))
    parts = []
    for profiles, total, label in ((_LEGIT, n - n_fraud, 0), (_FRAUD, n_fraud, 1)):
        counts = rng.multinomial(total, [p.share for p in profiles])
        for profile, count in zip(profiles, counts, strict=True):
            part = _draw(rng, profile, int(count))
            part[TARGET] = np.int8(label)
            parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)
    frame["merchant_category"] = pd.Categorical(frame["merchant_category"], categories=CATEGORIES)
    return frame


def _draw(rng: np.random.Generator, p: _Profile, n: int) -> pd.DataFrame:
    names = list(p.categories)
    weights = np.array([p.categories[c] for c in names], dtype=float)
    category = rng.choice(names, size=n, p=weights / weights.sum())
    median = np.array([CATEGORIES[c][0] for c in category])
    usual_present = np.array([CATEGORIES[c][1] for c in category])

    amount = median * p.amount_factor * rng.lognormal(0.0, 0.7, n)
    if p.tiny_amounts:
        amount = rng.uniform(0.5, 3.0, n)
    present = rng.random(n) < (usual_present if p.card_present is None else p.card_present)
    abroad = rng.random(n) < p.abroad
    local = rng.lognormal(np.log(p.far_km or 6.0), 0.9, n)
    distance = np.where(abroad, rng.lognormal(np.log(900.0), 0.8, n), local)
    age = rng.uniform(1, 60, n) if p.new_account else 60 + rng.gamma(2.0, 650.0, n)
    return pd.DataFrame(
        {
            "amount": np.round(amount, 2),
            "merchant_category": category,
            "hour": _hours(rng, p.hours, n).astype(np.int64) % 24,
            "card_present": present.astype(np.int8),
            "country_mismatch": abroad.astype(np.int8),
            "distance_from_home_km": np.round(distance, 1),
            "transactions_last_24h": rng.poisson(p.tx_24h, n) + 1,
            "account_age_days": np.ceil(age).astype(np.int64),
        }
    )


def _hours(rng: np.random.Generator, kind: Hours, n: int) -> np.ndarray:
    if kind == "day":
        return np.clip(rng.normal(14.0, 3.5, n), 6, 22.99)
    if kind == "waking":
        return rng.uniform(6, 24, n)
    if kind == "late":
        return rng.normal(23.5, 1.3, n) % 24
    if kind == "night":
        night = rng.normal(3.5, 1.2, n) % 24
        return np.where(rng.random(n) < 0.8, night, rng.uniform(0, 24, n))
    return rng.uniform(0, 24, n)


@dataclass(frozen=True)
class _Data:
    """The train and validation splits, as frames (for digests) and arrays (for scikit-learn)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    features: list[str]
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    inputs: tuple[RunInput, ...]

    @classmethod
    def prepare(cls, n: int, seed: int) -> _Data:
        frame = generate_transactions(n, seed)
        train, val = train_test_split(
            frame, test_size=0.3, random_state=seed, stratify=frame[TARGET]
        )
        source = f"loopml.demo.generate_transactions(n={n}, seed={seed})"
        inputs = (
            RunInput("transactions-train", dataset_digest(train), "train", source),
            RunInput("transactions-validation", dataset_digest(val), "validation", source),
        )
        x_train, x_val = transaction_features(train), transaction_features(val)
        return cls(
            train=train,
            validation=val,
            features=list(x_train.columns),
            x_train=x_train.to_numpy(),
            y_train=train[TARGET].to_numpy(),
            x_val=x_val.to_numpy(),
            y_val=val[TARGET].to_numpy(),
            inputs=inputs,
        )


def transaction_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric model inputs: the merchant category one-hot encoded."""
    x = frame.drop(columns=TARGET)
    return pd.get_dummies(x, columns=["merchant_category"], dtype=float).astype(float)


# --------------------------------------------------------------------------------------------
# Models and their evaluation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One run of the sweep: a scikit-learn estimator and its hyperparameters."""

    name: str
    estimator: type[ClassifierMixin]
    params: Mapping[str, Any]
    author: str
    core: bool = False  # kept when the demo is asked for fewer runs

    @property
    def family(self) -> str:
        return self.estimator.__name__


_LR, _RF = LogisticRegression, RandomForestClassifier
_GBM, _HGB = GradientBoostingClassifier, HistGradientBoostingClassifier
CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("logreg-baseline", _LR, {"C": 1.0}, "alice", core=True),
    ModelSpec("logreg-balanced", _LR, {"C": 0.1, "class_weight": "balanced"}, "alice"),
    ModelSpec("rf-100-depth6", _RF, {"n_estimators": 100, "max_depth": 6}, "bob"),
    ModelSpec("rf-100-depth12", _RF, {"n_estimators": 100, "max_depth": 12}, "bob"),
    ModelSpec("rf-150-leaf2", _RF, {"n_estimators": 150, "min_samples_leaf": 2}, "bob"),
    ModelSpec(
        "gbm-100-lr0.1", _GBM,
        {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3, "subsample": 0.8}, "carol",
    ),
    ModelSpec("hgb-lr0.03", _HGB, {"learning_rate": 0.03, "max_iter": 300}, "carol"),
    ModelSpec("hgb-lr0.1", _HGB, {"learning_rate": 0.1, "max_iter": 150}, "carol", core=True),
    ModelSpec("hgb-lr0.3", _HGB, {"learning_rate": 0.3, "max_iter": 80}, "carol"),
    ModelSpec("hgb-depth3", _HGB, {"learning_rate": 0.1, "max_iter": 200, "max_depth": 3}, "carol"),
    ModelSpec(
        "hgb-l2", _HGB,
        {"learning_rate": 0.1, "max_iter": 150, "l2_regularization": 1.0, "min_samples_leaf": 40},
        "carol",
    ),
    # A loss scikit-learn does not have: fit() raises, so this run ends FAILED.
    ModelSpec(
        "hgb-focal-loss", _HGB, {"loss": "focal_loss", "learning_rate": 0.1, "max_iter": 150},
        "carol", core=True,
    ),
)  # fmt: skip


def _select(runs: int) -> list[ModelSpec]:
    """``runs`` specs from the catalogue: the core ones, then the rest in order."""
    core = [s for s in CATALOGUE if s.core]
    if not len(core) <= runs <= len(CATALOGUE):
        raise InvalidArgument(f"the demo has {len(core)} to {len(CATALOGUE)} runs, not {runs}")
    extra = [s for s in CATALOGUE if not s.core][: runs - len(core)]
    chosen = {s.name for s in core + extra}
    return [s for s in CATALOGUE if s.name in chosen]


def _build(spec: ModelSpec) -> Any:
    params: dict[str, Any] = {"random_state": 0, **spec.params}
    if spec.estimator is LogisticRegression:
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, **params))
    if spec.estimator is RandomForestClassifier:
        params["n_jobs"] = 1
    if spec.estimator is HistGradientBoostingClassifier:
        params["early_stopping"] = False  # every run trains max_iter rounds: full curves
    return spec.estimator(**params)


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


# --------------------------------------------------------------------------------------------
# The project, its KPIs, and the tracked runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo holds: the project, the experiment, its runs and the best model run."""

    project: str
    experiment_id: str
    run_ids: tuple[str, ...]  # every run, in start order
    best_run_id: str
    failed_run_id: str | None
    tuning_run_id: str | None  # the threshold-tuning run, a child of the best run
    created: bool  # False when the demo was already there


def load_demo(client: Client, *, runs: int = 12, n: int = 20_000) -> DemoSummary:
    """Load the demo through ``client``, unless it is already there; return what it holds.

    ``runs`` model runs (3 to 12, one of them FAILED) train on ``n`` generated transactions;
    a nested threshold-tuning run follows under the best one, so the experiment holds
    ``runs + 1`` runs. An existing project or experiment is left as it is.
    """
    specs = _select(runs)
    if not any(p.name == PROJECT for p in client.list_projects()):
        _create_project(client)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return _summary(client, experiment, created=False)
    try:
        experiment = client.create_experiment(
            EXPERIMENT, project=PROJECT, description="Which model catches the most fraud at "
            "<= 1 % false alarms? Generated card transactions, scikit-learn models.",
            tags={"demo": "true"},
        )  # fmt: skip
    except AlreadyExists:  # another process is loading it right now
        found = client.get_experiment_by_name(EXPERIMENT)
        assert found is not None
        return _summary(client, found, created=False)
    with threadpool_limits(limits=1):  # one core per model: faster than contended threads
        _train_all(client, experiment.experiment_id, specs, _Data.prepare(n, SEED))
    return _summary(client, experiment, created=True)


def _create_project(client: Client) -> None:
    try:
        client.create_project(
            PROJECT,
            business_goal="Stop card fraud before the money leaves the bank, while keeping false "
            "alarms so rare that honest customers barely notice them.",
            description="Scores every card payment for fraud in real time (loopml demo).",
            owner="fraud-ops",
        )
    except AlreadyExists:
        return
    client.add_okr(
        PROJECT,
        "Halve card-fraud losses this year without annoying customers",
        [
            "Catch at least 90 % of fraudulent payments before they settle",
            "Keep false alarms at or below 1 in 100 legitimate payments",
            "Bring daily fraud losses under 5,000 EUR by Q4",
        ],
        owner="head-of-fraud",
    )
    for kpi in _KPIS:
        client.add_kpi(PROJECT, **kpi)


_KPIS: tuple[dict[str, Any], ...] = (
    {
        "name": "fraud caught", "metric": "recall_at_1pct_fpr", "target": 0.9,
        "direction": "maximize", "judged_at": "validation", "owner": "fraud-ops",
        "description": "Share of fraud flagged when at most 1 % of legit payments are flagged",
    },
    {
        "name": "false alarms", "metric": "false_alarm_rate", "target": MAX_FALSE_ALARM_RATE,
        "direction": "minimize", "judged_at": "validation", "owner": "customer-care",
        "description": "Share of legitimate payments the model flags at its decision threshold",
    },
    {
        "name": "ranking quality", "metric": "roc_auc", "target": 0.95, "direction": "maximize",
        "judged_at": "validation", "owner": "data-science", "description": "Offline ROC AUC gate",
    },
    {
        "name": "daily fraud losses", "metric": "fraud_loss_eur", "target": 5000.0,
        "direction": "minimize", "judged_at": "production", "owner": "head-of-fraud",
        "description": "Fraud that got through, in EUR per day, measured on live traffic",
    },
)  # fmt: skip


def _train_all(client: Client, experiment_id: str, specs: Sequence[ModelSpec], data: _Data) -> None:
    scores: dict[str, tuple[np.ndarray, Any]] = {}
    for spec in specs:
        try:
            run_id, proba, model = _train_run(client, experiment_id, spec, data)
        except ValueError:  # a bad configuration fails its run, not the sweep
            continue
        scores[run_id] = (proba, model)
    runs = client.search_runs(experiment_id, max_results=1000).items
    best = _best(runs)
    proba, model = scores[best.run_id]
    _tune_threshold(client, experiment_id, best, proba, data)
    from loopml.demo_registry import deploy_with_canary, release_best

    features = pd.DataFrame(data.x_val, columns=data.features)
    release_best(client, PROJECT, best.run_id, model, features, data.y_val,
                 data.validation[["merchant_category"]])  # fmt: skip
    runner_up = _best([r for r in runs if r.run_id != best.run_id and r.run_id in scores])
    deploy_with_canary(client, runner_up.run_id, scores[runner_up.run_id][1], features)


@contextmanager
def _tracked_run(
    client: Client,
    experiment_id: str,
    name: str,
    tags: Mapping[str, str],
    parent_run_id: str | None = None,
) -> Iterator[str]:
    """A run that ends FINISHED, or FAILED with ``error.txt`` when the block raises."""
    run = client.create_run(experiment_id, run_name=name, tags=tags, parent_run_id=parent_run_id)
    meter = UsageMeter()
    try:
        yield run.run_id
    except KeyboardInterrupt:
        client.set_terminated(run.run_id, RunStatus.KILLED, usage=meter.read())
        raise
    except Exception as exc:
        client.set_tag(run.run_id, "error", type(exc).__name__)
        client.log_text(run.run_id, f"{type(exc).__name__}: {exc}\n", "error.txt")
        client.set_terminated(run.run_id, RunStatus.FAILED, usage=meter.read())
        raise
    client.set_terminated(run.run_id, RunStatus.FINISHED, usage=meter.read())


def _train_run(
    client: Client, experiment_id: str, spec: ModelSpec, data: _Data
) -> tuple[str, np.ndarray, Any]:
    """Fit one model and log everything about it; return the run id, validation scores and
    the fitted model."""
    tags = {"model_family": spec.family, "author": spec.author}
    with _tracked_run(client, experiment_id, spec.name, tags) as run_id:
        client.log_inputs(run_id, data.inputs)
        client.log_params(
            run_id,
            {"model": spec.family, **spec.params, "decision_threshold": 0.5,
             "train_rows": len(data.train), "features": len(data.features)},
        )  # fmt: skip
        model = _build(spec)
        started = time.perf_counter()
        model.fit(data.x_train, data.y_train)
        fit_seconds = time.perf_counter() - started
        _log_curves(client, run_id, model, data)
        proba = model.predict_proba(data.x_val)[:, 1]
        metrics = evaluate(data.y_val, proba)
        client.log_metrics(run_id, {**metrics, "fit_seconds": round(fit_seconds, 3)})
        _log_evaluation(client, run_id, spec, model, data, proba, metrics)
    return run_id, proba, model


def _log_curves(client: Client, run_id: str, model: Any, data: _Data, points: int = 25) -> None:
    """Training loss, validation loss and validation AUC as trees or boosting rounds are added."""
    sample = slice(0, 3000)
    val_stages = _stages(model, data.x_val)
    train_stages = _stages(model, data.x_train[sample])
    if val_stages is None or train_stages is None:
        return
    total = _n_stages(model)
    checkpoints = set(np.unique(np.linspace(1, total, min(points, total)).round().astype(int)))
    for stage, (p_val, p_train) in enumerate(zip(val_stages, train_stages, strict=True), start=1):
        if stage in checkpoints:
            client.log_metric(run_id, "train_loss", _log_loss(data.y_train[sample], p_train), stage)
            client.log_metric(run_id, "val_loss", _log_loss(data.y_val, p_val), stage)
            client.log_metric(run_id, "val_auc", float(roc_auc_score(data.y_val, p_val)), stage)


def _n_stages(model: Any) -> int:
    if isinstance(model, HistGradientBoostingClassifier):
        return int(model.n_iter_)
    if isinstance(model, GradientBoostingClassifier):
        return int(model.n_estimators_)
    return len(model.estimators_)


def _log_evaluation(
    client: Client,
    run_id: str,
    spec: ModelSpec,
    model: Any,
    data: _Data,
    proba: np.ndarray,
    metrics: Mapping[str, float],
) -> None:
    importances = _importances(model, data)
    client.log_dict(run_id, _confusion(data.y_val, proba, 0.5), "eval/confusion_matrix.json")
    client.log_dict(run_id, importances, "eval/feature_importances.json")
    _log_roc(client, run_id, spec.name, data.y_val, proba)
    top = ", ".join(list(importances["importances"])[:4])
    client.log_text(run_id, _summary_text(spec, model, data, metrics, top), "model_summary.txt")


def _summary_text(
    spec: ModelSpec, model: Any, data: _Data, metrics: Mapping[str, float], top: str
) -> str:
    fraud = float(data.train[TARGET].mean())
    lines = [
        f"{spec.name}: {model!r}",
        f"trained on {len(data.train):,} transactions ({fraud:.1%} fraud), "
        f"validated on {len(data.validation):,}",
        "",
        "validation (threshold 0.5 unless said otherwise):",
        *(f"  {k:<20} {v:.4f}" for k, v in metrics.items()),
        "",
        f"top features: {top}",
    ]
    return "\n".join(lines) + "\n"


def _log_roc(client: Client, run_id: str, name: str, y: np.ndarray, proba: np.ndarray) -> None:
    """The ROC curve as a PNG (matplotlib, Agg), or its points as JSON without matplotlib."""
    fpr, tpr, _ = roc_curve(y, proba)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        points = {"false_alarm_rate": fpr.round(6).tolist(), "recall": tpr.round(6).tolist()}
        client.log_dict(run_id, points, "plots/roc.json")
        return
    fig = Figure(figsize=(5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(fpr, tpr, label=f"ROC (AUC {roc_auc_score(y, proba):.3f})")
    ax.axvline(MAX_FALSE_ALARM_RATE, color="grey", linestyle="--", label="1 % false alarms")
    caught = recall_at_fpr(y, proba)
    ax.axhline(caught, color="tab:red", linestyle=":", label=f"{caught:.1%} caught at 1 %")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-alarm rate", ylabel="fraud caught")
    ax.set_title(name)
    ax.legend(loc="lower right")
    client.log_figure(run_id, fig, "plots/roc.png")


def _best(runs: Sequence[Run]) -> Run:
    """The finished top-level run that catches the most fraud at 1 % false alarms (then AUC)."""
    candidates = [
        r
        for r in runs
        if r.parent_run_id is None
        and r.status is RunStatus.FINISHED
        and "recall_at_1pct_fpr" in r.metrics
    ]
    if not candidates:
        raise Conflict(
            f"experiment {EXPERIMENT!r} holds no finished model run yet: it is still loading, or "
            "loading was interrupted (delete the experiment to load the demo again)"
        )
    return max(candidates, key=lambda r: (r.metrics["recall_at_1pct_fpr"], r.metrics["roc_auc"]))


def _tune_threshold(
    client: Client, experiment_id: str, parent: Run, proba: np.ndarray, data: _Data
) -> None:
    """A child of the best run: pick the threshold that keeps false alarms at 1 % or below."""
    tags = {"model_family": parent.tags.get("model_family", ""), "author": "dave"}
    with _tracked_run(client, experiment_id, "threshold-tuning", tags, parent.run_id) as run_id:
        client.log_inputs(run_id, [i for i in data.inputs if i.role == "validation"])
        client.log_params(
            run_id,
            {
                "objective": "most fraud caught with false_alarm_rate <= 0.01",
                "max_false_alarm_rate": MAX_FALSE_ALARM_RATE,
                "tuned_model": parent.run_name,
            },
        )
        for step, threshold in enumerate(np.geomspace(0.002, 0.9, 40)):
            swept = evaluate(data.y_val, proba, float(threshold))
            client.log_metric(run_id, "sweep_threshold", float(threshold), step)
            for key in ("recall", "precision", "false_alarm_rate"):
                client.log_metric(run_id, f"sweep_{key}", swept[key], step)
        threshold = operating_threshold(data.y_val, proba)
        chosen = evaluate(data.y_val, proba, threshold)
        client.log_metrics(run_id, {**chosen, "threshold": threshold})
        client.log_dict(
            run_id, {**_confusion(data.y_val, proba, threshold), "metrics": chosen},
            "eval/operating_point.json",
        )  # fmt: skip


def _summary(client: Client, experiment: Experiment, *, created: bool) -> DemoSummary:
    runs = sorted(
        client.search_runs(experiment.experiment_id, max_results=1000).items,
        key=lambda r: r.start_time,
    )
    failed = [r.run_id for r in runs if r.status is RunStatus.FAILED]
    children = [r.run_id for r in runs if r.parent_run_id is not None]
    return DemoSummary(
        project=PROJECT,
        experiment_id=experiment.experiment_id,
        run_ids=tuple(r.run_id for r in runs),
        best_run_id=_best(runs).run_id,
        failed_run_id=failed[0] if failed else None,
        tuning_run_id=children[0] if children else None,
        created=created,
    )


def describe(client: Client, summary: DemoSummary) -> str:
    """A few lines on the demo: its runs, the best one and how it does against the KPIs."""
    best = client.get_run(summary.best_run_id)
    project = client.get_project(summary.project)
    verb = "loaded" if summary.created else "already there"
    lines = [
        f"demo {verb}: project {project.name!r}, experiment {EXPERIMENT!r} "
        f"({summary.experiment_id}) with {len(summary.run_ids)} runs",
        f"best run: {best.run_name} ({best.run_id})",
    ]
    for kpi in project.kpis:
        value = best.metrics.get(kpi.metric)
        if value is None:
            lines.append(f"  KPI {kpi.name!r}: {kpi.metric} is judged in {kpi.judged_at.value}")
            continue
        verdict = "met" if kpi.is_met(value) else "missed"
        lines.append(
            f"  KPI {kpi.name!r}: {kpi.metric} = {value:.4f}, target {kpi.target} -> {verdict}"
        )
    from loopml.demo_registry import MODEL

    try:
        production = client.registry.get_version_by_alias(MODEL, "production")
        lines.append(f"model {MODEL!r} version {production.version} is in production "
                     f"(models:/{MODEL}@production)")  # fmt: skip
    except NotFound:
        pass
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m loopml.demo [--home DIR] [--runs N]``: load the demo into a store."""
    parser = argparse.ArgumentParser(
        prog="python -m loopml.demo", description="Load the loopml demo into a store."
    )
    parser.add_argument(
        "--home", type=Path, help="store folder (default: LOOPML_HOME or ./.loopml)"
    )
    parser.add_argument("--runs", type=int, default=12, help="model runs, 3 to 12 (default 12)")
    args = parser.parse_args(argv)
    settings = Settings(home=args.home) if args.home is not None else Settings()
    with Client(settings) as client:
        summary = load_demo(client, runs=args.runs)
        print(describe(client, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

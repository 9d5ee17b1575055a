"""The demo's data: synthetic card transactions (nothing is downloaded) and their splits.

>>> frame = generate_transactions(2_000, seed=1)
>>> list(frame.columns)[-1], bool(0.01 < frame["is_fraud"].mean() < 0.04)
('is_fraud', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from loopml.errors import InvalidArgument
from loopml.fluent import dataset_digest
from loopml.tracking.entities import RunInput

TARGET = "is_fraud"
SEED = 7

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

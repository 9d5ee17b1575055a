"""The demo's project: a business goal, an OKR and the KPIs every model is judged by."""

from __future__ import annotations

from typing import Any

from loopml.client import Client
from loopml.errors import AlreadyExists

PROJECT = "fraud-detection"
MAX_FALSE_ALARM_RATE = 0.01  # the operating constraint the KPIs are written against


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

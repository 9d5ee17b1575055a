"""A gentle stream of generated card payments into the demo's deployment (``loopml up``).

Every few seconds a handful of transactions are scored through ``/predict`` of the inference
server; for about half of them the "true" label comes back later through ``/feedback``, as it
would once a chargeback or a customer's call settles it. The UI's deployment page then shows
live traffic, latency per version and a filling prediction log.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import numpy as np

from loopml.demo.data import TARGET, generate_transactions, transaction_features
from loopml.demo.registry import MODEL


class DemoTraffic:
    def __init__(self, url: str, feature_names: list[str], *, per_tick: int = 4,
                 seed: int = 11, http: httpx.Client | None = None) -> None:  # fmt: skip
        self._http = http or httpx.Client(base_url=url.rstrip("/"), timeout=5.0)
        self._features = feature_names
        self._per_tick = per_tick
        self._seeds = itertools.count(seed)
        self._rng = np.random.default_rng(seed)
        self._pending: list[tuple[str, int]] = []  # (request id, label) awaiting feedback

    def tick(self) -> int:
        """Score ``per_tick`` fresh transactions and send feedback for earlier ones; returns
        how many were scored (none while the inference server is still starting)."""
        try:
            return self._send()
        except httpx.TransportError:
            return 0

    def _send(self) -> int:
        frame = generate_transactions(100, next(self._seeds)).sample(
            self._per_tick, random_state=int(self._rng.integers(1 << 31))
        )
        x = transaction_features(frame).reindex(columns=self._features, fill_value=0.0)
        sent = 0
        for row, label in zip(x.to_numpy().tolist(), frame[TARGET].tolist(), strict=True):
            answer = self._http.post(
                "/predict", json={"instances": [row]},
                headers={"X-Routing-Key": f"card-{int(self._rng.integers(5000))}"},
            )  # fmt: skip
            if answer.status_code == 200:
                sent += 1
                if self._rng.random() < 0.5:
                    self._pending.append((answer.headers["x-request-id"], int(label)))
        for request_id, label in self._pending[: self._per_tick]:  # labels arrive later
            self._http.post("/feedback", json={"request_id": request_id, "ground_truth": label})
        del self._pending[: self._per_tick]
        return sent

    def close(self) -> None:
        self._http.close()


def demo_traffic_job(url: str, client: Any, http: httpx.Client | None = None) -> DemoTraffic | None:
    """The traffic generator for the demo deployment, or None when there is no demo model."""
    from loopml.errors import NotFound

    try:
        version = client.registry.get_version_by_alias(MODEL, "production")
    except NotFound:
        return None
    names = version.tags.get("feature_names", "")
    return DemoTraffic(url, names.split(","), http=http) if names else None

"""Registry events to webhooks: the ``publish`` hook the registry service calls.

Nothing starts until an event has a subscriber: a laptop with no webhooks never runs the
delivery thread. Deliveries are logged; the dispatcher retries with backoff on its own thread,
so a slow receiver never delays the registry call that raised the event.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from loopml.backends.outbound import AddressPolicy, GuardedHttp
from loopml.backends.webhooks import Delivery, WebhookDispatcher, WebhookTarget, check_target_url
from loopml.registry.store import RegistryStore

log = logging.getLogger("loopml.webhooks")


def _logged(delivery: Delivery) -> None:
    level = logging.INFO if delivery.status == "delivered" else logging.WARNING
    log.log(level, "webhook %s %s: %s after %d attempt(s) %s", delivery.target_id,
            delivery.event, delivery.status, delivery.attempts, delivery.error)  # fmt: skip


class WebhookPublisher:
    def __init__(self, store: RegistryStore, policy: AddressPolicy, timeout: float) -> None:
        self._store = store
        self.policy = policy
        self._timeout = timeout
        self._lock = threading.Lock()
        self._dispatcher: WebhookDispatcher | None = None
        self._http: GuardedHttp | None = None

    def check_url(self, url: str) -> str:
        """Refuse a target now (clear error at registration); delivery checks it again."""
        return check_target_url(url, self.policy)

    def __call__(self, event: str, model: str, payload: dict[str, Any]) -> None:
        targets = [
            WebhookTarget(w.webhook_id, w.url, self._store.webhook_secret(w.webhook_id),
                          frozenset(w.events))
            for w in self._store.list_webhooks()
            if (w.model is None or w.model == model) and (not w.events or event in w.events)
        ]  # fmt: skip
        if targets:
            self._started().publish(targets, event, payload)

    def _started(self) -> WebhookDispatcher:
        with self._lock:
            if self._dispatcher is None:
                self._http = http = GuardedHttp(self.policy, self._timeout)
                self._dispatcher = WebhookDispatcher(http, on_result=_logged)
                self._dispatcher.start()
            return self._dispatcher

    def flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            dispatcher = self._dispatcher
        return dispatcher is None or dispatcher.flush(timeout)

    def close(self) -> None:
        with self._lock:
            dispatcher, self._dispatcher = self._dispatcher, None
            http, self._http = self._http, None
        if dispatcher is not None:
            dispatcher.stop(timeout=5.0)
        if http is not None:  # its pooled keep-alive connections
            http.close()

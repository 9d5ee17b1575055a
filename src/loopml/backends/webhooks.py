"""Webhooks: signed JSON events, delivered in the background with retries.

Each delivery is a POST of ``{"event", "delivery_id", "timestamp", "data"}`` with headers
``X-Loopml-Event``, ``X-Loopml-Delivery`` (stable across retries, for de-duplication) and
``X-Loopml-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>." + body>``. Receivers check it
with :func:`verify`. Requests go through :class:`~loopml.backends.outbound.GuardedHttp`, so a
target is re-checked against the address policy on every attempt and after every redirect.

The queue is bounded: a full queue reports the delivery as failed instead of blocking the caller.
One daemon thread delivers, in order, retrying 5xx/408/429/connection errors with exponential
backoff and jitter.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from loopml.backends.outbound import AddressPolicy, GuardedHttp, check_url
from loopml.errors import InvalidArgument, LoopmlError, PermissionDenied, Unavailable
from loopml.registry.entities import EVENTS  # noqa: F401 - re-exported for receivers

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Loopml-Signature"
EVENT_HEADER = "X-Loopml-Event"
DELIVERY_HEADER = "X-Loopml-Delivery"
_RETRY_STATUSES = frozenset({408, 429})
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: int, tolerance_s: int = 300) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``.

    Accepts several ``v1=`` entries (secret rotation); compares in constant time.

    >>> verify("s", b"{}", sign("s", b"{}", 1000), now=1010)
    True
    >>> verify("s", b"{}", sign("s", b"{}", 1000), now=2000)
    False
    """
    timestamp: int | None = None
    candidates: list[bytes] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.encode("utf-8", "replace"))
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2].encode()
    return any([hmac.compare_digest(expected, c) for c in candidates])  # no short-circuit


@dataclass(frozen=True)
class WebhookTarget:
    """Where events go; ``events`` empty means every event type."""

    id: str
    url: str
    secret: str
    events: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.id or not self.secret:
            raise InvalidArgument("a webhook target needs an id and a secret")

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery: ``refused`` means the address policy said no."""

    target_id: str
    event: str
    delivery_id: str
    status: Literal["delivered", "failed", "refused"]
    attempts: int
    last_status: int | None
    error: str


@dataclass(frozen=True)
class _Job:
    target: WebhookTarget
    event: str
    delivery_id: str
    body: bytes

    def result(self, status: Literal["delivered", "failed", "refused"], **kw: Any) -> Delivery:
        return Delivery(self.target.id, self.event, self.delivery_id, status, **kw)


def check_target_url(url: str, policy: AddressPolicy) -> str:
    """Check a target URL at registration: InvalidArgument or PermissionDenied, else the URL.

    Returns the normalised URL (scheme, IDNA host, path and query; no fragment). Deliveries
    check again, at connect time.
    """
    try:
        return check_url(url, policy).url
    except Unavailable as e:
        raise InvalidArgument(e.message) from e


class WebhookDispatcher:
    """Delivers published events to webhook targets on one background thread."""

    def __init__(
        self,
        http: GuardedHttp,
        *,
        max_queue: int = 1000,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_result: Callable[[Delivery], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_queue < 1 or max_attempts < 1 or backoff < 0 or max_backoff < 0:
            raise InvalidArgument("max_queue and max_attempts must be >= 1, backoffs >= 0")
        self._http = http
        self._max_queue = max_queue
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._on_result = on_result
        self._sleep = sleep
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stopping = False
        self._closed = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not security

    def publish(
        self, targets: Iterable[WebhookTarget], event: str, payload: dict[str, Any]
    ) -> None:
        """Queue one delivery per target that wants ``event``; never blocks.

        A full (or stopped) queue reports the delivery as failed through ``on_result``.
        Raises InvalidArgument only when ``payload`` is not JSON-serialisable.
        """
        timestamp = int(time.time())
        try:
            orjson.dumps(payload)
        except TypeError as e:
            raise InvalidArgument(f"webhook payload is not JSON-serialisable: {e}") from e
        for target in targets:
            if not target.wants(event):
                continue
            delivery_id = uuid.uuid4().hex
            body = orjson.dumps(
                {
                    "event": event,
                    "delivery_id": delivery_id,
                    "timestamp": timestamp,
                    "data": payload,
                }
            )
            job = _Job(target, event, delivery_id, body)
            with self._cond:
                refused = "dispatcher stopped" if self._closed or self._stopping else None
                if refused is None and len(self._jobs) >= self._max_queue:
                    refused = "queue full"
                if refused is None:
                    self._jobs.append(job)
                    self._cond.notify_all()
            if refused is not None:
                self._report(job.result("failed", attempts=0, last_status=None, error=refused))

    def start(self) -> None:
        """Start the delivery thread (idempotent)."""
        with self._cond:
            if self._closed:
                raise InvalidArgument("a stopped dispatcher cannot be started again")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="loopml-webhooks", daemon=True
                )
                self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until every queued delivery has finished; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout``, then stop.

        Deliveries still queued afterwards are reported as failed ("dispatcher stopped").
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self._abort.set()  # a delivery still running ends after its current attempt
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for job in left:
            self._report(
                job.result("failed", attempts=0, last_status=None, error="dispatcher stopped")
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopping:
                    self._cond.wait()
                if not self._jobs or self._abort.is_set():
                    return
                job = self._jobs.popleft()
                self._busy += 1
            try:
                self._report(self._deliver(job))
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _deliver(self, job: _Job) -> Delivery:
        attempts, last_status, error = 0, None, ""
        while True:
            attempts += 1
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "loopml-webhooks",
                EVENT_HEADER: job.event,
                DELIVERY_HEADER: job.delivery_id,
                SIGNATURE_HEADER: sign(job.target.secret, job.body, int(time.time())),
            }
            try:
                status = self._http.post(job.target.url, job.body, headers)
            except PermissionDenied as e:
                return job.result(
                    "refused", attempts=attempts, last_status=last_status, error=e.message
                )
            except Unavailable as e:
                error = e.message
            except LoopmlError as e:
                return job.result(
                    "failed", attempts=attempts, last_status=last_status, error=e.message
                )
            except Exception as e:  # never let one delivery kill the thread
                log.exception("webhook delivery %s crashed", job.delivery_id)
                error = f"{type(e).__name__}: {e}"
                return job.result("failed", attempts=attempts, last_status=last_status, error=error)
            else:
                last_status = status
                if 200 <= status < 300:
                    return job.result("delivered", attempts=attempts, last_status=status, error="")
                error = f"HTTP {status}"
                if status < 500 and status not in _RETRY_STATUSES:
                    return job.result("failed", attempts=attempts, last_status=status, error=error)
            if attempts >= self._max_attempts or self._abort.is_set():
                return job.result("failed", attempts=attempts, last_status=last_status, error=error)
            self._pause(self._delay(attempts))

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: between half and all of ``backoff * 2**(n-1)``."""
        base = min(self._max_backoff, self._backoff * 2 ** (attempt - 1))
        return base / 2 + self._rng.uniform(0, base / 2)

    def _pause(self, seconds: float) -> None:
        if self._sleep is time.sleep:
            self._abort.wait(seconds)  # stop() cuts a real backoff short
        else:
            self._sleep(seconds)

    def _report(self, delivery: Delivery) -> None:
        if delivery.status != "delivered":
            log.warning(
                "webhook %s to %s %s: %s",
                delivery.event,
                delivery.target_id,
                delivery.status,
                delivery.error,
            )
        if self._on_result is not None:
            try:
                self._on_result(delivery)
            except Exception:
                log.exception("webhook on_result callback failed")

"""Prometheus metrics: requests and latency by route template (never by raw path)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The request counters of one app (its own registry, so apps in one process don't collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loopml_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "loopml_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip

        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency. Methods outside the standard ones are
        counted as ``OTHER``: a client must not be able to invent label values without end."""
        if method not in METHODS:
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # bounded: methods x route templates x statuses
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))  # fmt: skip
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RouteLabel:
    """Set as ``scope["route"]`` by handlers that answer past the router (the batch and inference
    fast lanes), so their requests are labelled by route template like every other."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class MetricsMiddleware:
    """ASGI middleware counting requests and latency by route template."""

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(scope.get("method", ""), template, status["code"],
                                 time.perf_counter() - start)  # fmt: skip

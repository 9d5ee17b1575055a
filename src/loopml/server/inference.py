"""The inference server: ``create_inference_app(models)`` serves a :class:`ModelSet` over HTTP.

Routes: Open Inference Protocol V2 REST (``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}[/versions/{v}]``, ``…/ready``, ``…/infer``), ``/predict`` (records or
columns), ``/invocations`` (MLflow's scoring format), ``/feedback``, ``/metrics`` and ``/ping``.
The routes are in :mod:`loopml.server.inference_routes`, the request path in
:mod:`loopml.server.inference_runtime`; batching and admission in
:mod:`loopml.serving`. ``loopml serve`` builds the app in each worker from an
:class:`InferenceServerSpec` (picklable, so uvicorn's worker processes can receive it).

>>> from fastapi.testclient import TestClient
>>> from loopml.serving.modelset import SingleModel
>>> class Twice:
...     flavor, signature = "python", None
...     def prepare(self, data): return data
...     def predict(self, data): return data * 2
>>> app = create_inference_app(SingleModel("twice", "1", Twice()))
>>> client = TestClient(app, base_url="http://localhost")  # its Host must name this server
>>> client.post("/predict", json={"instances": [1.5, 2]}).json()
{'predictions': [3.0, 4.0], 'model': 'twice', 'version': '1'}
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import Receive, Scope, Send

from loopml import __version__
from loopml.errors import InvalidArgument
from loopml.server import errors
from loopml.server.hosts import AllowedHosts, host_header, refusal_message, refuse
from loopml.server.inference_auth import AuthGuard, InferenceAuth, store_lookup
from loopml.server.inference_routes import (
    SECURITY_HEADERS,
    FastLane,
    OipErrorShape,
    inference_router,
)
from loopml.server.inference_runtime import Runtime, request_id_of
from loopml.server.limits import BodyLimit
from loopml.server.metrics import HttpMetrics, MetricsMiddleware
from loopml.serving.admission import Admission, MemoryBudget
from loopml.serving.batching import PredictPool
from loopml.serving.modelset import ModelSet, SingleModel
from loopml.serving.protocol import FeedbackEvent, PredictionEvent

if TYPE_CHECKING:
    from loopml.client import Client


class InferenceMetrics(HttpMetrics):
    """Requests by route and status and their latency (HttpMetrics), plus the serving gauges."""

    def __init__(
        self, admission: Admission, pool: PredictPool, max_batch_size: int, memory: MemoryBudget
    ) -> None:
        super().__init__()
        r = self.registry
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, max_batch_size})
        self.batch_rows = Histogram(
            "loopml_serving_batch_rows", "Rows per predict call", registry=r,
            buckets=[b for b in buckets if b <= max_batch_size],
        )  # fmt: skip
        self.rejected = Counter(
            "loopml_serving_rejected_total", "Requests refused (503) or timed out (504)",
            ["reason"], registry=r,
        )  # fmt: skip
        self.shadow_dropped = Counter(
            "loopml_serving_shadow_dropped_total", "Shadow predictions skipped under load",
            registry=r,
        )  # fmt: skip
        Gauge("loopml_serving_queue_depth", "Requests waiting for a slot", registry=r
              ).set_function(lambda: admission.waiting)  # fmt: skip
        Gauge("loopml_serving_in_flight", "Requests holding a slot", registry=r
              ).set_function(lambda: admission.in_flight)  # fmt: skip
        Gauge("loopml_serving_memory_reserved_bytes", "Estimated memory of the requests being "
              "read and decoded (the memory budget's use)", registry=r
              ).set_function(lambda: memory.reserved)  # fmt: skip
        Gauge("loopml_serving_stuck_predictions", "Predictions running past their deadline",
              registry=r).set_function(lambda: pool.stuck)  # fmt: skip


class InferenceApp(FastAPI):
    """The inference app: its :class:`FastLane` answers inference requests before the
    middleware; everything else is an ordinary FastAPI app."""

    lane: FastLane
    hosts: AllowedHosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.hosts.allows(host_header(scope)):
            await refuse_host(scope, send)  # DNS rebinding: before the lane and every route
            return
        route = self.lane.match(scope)
        if route is not None:
            await self.lane.answer(route, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


async def refuse_host(scope: Scope, send: Send) -> None:
    """421 for a Host this server does not answer to, in the error shape of the route asked."""
    message = refusal_message(host_header(scope))
    path = str(scope.get("path", ""))
    oip = path == "/v2" or path.startswith("/v2/")
    body = {"error": message} if oip else errors.error_body("misdirected_request", message)
    await refuse(send, body, SECURITY_HEADERS)


class RequestIdMiddleware:
    """Gives every request an id (the caller's sane ``X-Request-ID``, else a new one) and puts
    it on the response, so a caller can send ``/feedback`` for it later; with the security
    headers the fast lane's answers carry too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = (b"x-request-id", request_id_of(scope).encode())

        async def with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_id)


def create_inference_app(
    models: ModelSet, *, max_batch_size: int = 1024, max_wait_ms: float = 2.0,
    max_concurrency: int = 64, max_queue: int = 256, timeout_s: float = 10.0,
    max_request_bytes: int = 8 * 2**20, memory_budget_bytes: int = 256 * 2**20,
    on_prediction: Callable[[PredictionEvent], None] | None = None,
    on_feedback: Callable[[FeedbackEvent], None] | None = None,
    predict_threads: int | None = None,
    on_shutdown: Callable[[], None] | None = None,
    auth: InferenceAuth | None = None,
    allowed_hosts: Iterable[str] = (),
) -> FastAPI:  # fmt: skip
    """The inference app over ``models`` (defaults are the ``serve_*`` settings' defaults).

    ``on_prediction`` gets a :class:`PredictionEvent` per answered request (and per shadow
    prediction) after the answer is sent; ``on_feedback`` gets each ``/feedback``. Both are called
    on the event loop: they must only hand the event over (a queue append), never block.
    ``memory_budget_bytes`` bounds the estimated memory of the inference requests being read
    and decoded at once (:class:`~loopml.serving.admission.MemoryBudget`).
    With ``auth`` every route but the health probes needs a token allowing ``deployment.invoke``
    (:mod:`loopml.server.inference_auth`); without it nothing is checked.
    A request's ``Host`` must be a loopback name or one of ``allowed_hosts``, else 421
    (:mod:`loopml.server.hosts`).
    """
    if max_batch_size < 1 or max_wait_ms < 0 or timeout_s <= 0:
        raise InvalidArgument("need max_batch_size >= 1, max_wait_ms >= 0 and timeout_s > 0")
    pool = PredictPool(predict_threads)
    admission = Admission(max_concurrency, max_queue)
    memory = MemoryBudget(memory_budget_bytes, max_queue)
    metrics = InferenceMetrics(admission, pool, max_batch_size, memory)
    rt = Runtime(models, admission, pool, max_batch_size, max_wait_ms, timeout_s, metrics,
                 on_prediction, on_feedback)  # fmt: skip

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await rt.drain()
            pool.close()
            if on_shutdown is not None:  # e.g. flush the prediction log: a clean stop loses none
                on_shutdown()

    app = InferenceApp(title="loopml inference", version=__version__, lifespan=lifespan,
                       openapi_url=None, docs_url=None, redoc_url=None)  # fmt: skip
    app.lane = FastLane(rt, max_request_bytes, auth, memory)
    app.hosts = AllowedHosts.of(None, allowed_hosts)
    app.state.inference = rt
    errors.install(app)
    app.include_router(inference_router(rt, memory, max_request_bytes))
    if auth is not None:
        app.add_middleware(AuthGuard, auth=auth)
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes, max_artifact_bytes=max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(OipErrorShape)  # outermost: every /v2 error in the protocol's shape
    return app


# -- building the server from a model reference (what `loopml serve` runs) ----------------------

ModelSetBuilder = Callable[["Client", "InferenceServerSpec"], ModelSet]


def model_set_from_ref(client: Client, ref: str, *, trust: bool | None = None) -> SingleModel:
    """One model from ``runs:/…`` (named ``model``), ``models:/name/3`` or ``models:/name@alias``
    (named ``name``; an alias is resolved to its version once, at load)."""
    from loopml.models.refs import AliasRef, RunRef, parse_model_ref

    parsed = parse_model_ref(ref)
    if isinstance(parsed, RunRef):
        name, version = "model", parsed.run_id
    elif isinstance(parsed, AliasRef):
        name = parsed.name
        version = str(client.registry.get_version_by_alias(parsed.name, parsed.alias).version)
        ref = f"models:/{name}/{version}"  # the alias may move; serve what we resolved
    else:
        name, version = parsed.name, str(parsed.version)
    return SingleModel(name, version, client.load_model(ref, trust=trust))


def build_single_model(client: Client, spec: InferenceServerSpec) -> ModelSet:
    """The default :data:`ModelSetBuilder`: ``spec.source`` is a model reference."""
    return model_set_from_ref(client, spec.source, trust=spec.trust)


def build_deployment(client: Client, spec: InferenceServerSpec) -> ModelSet:
    """A :data:`ModelSetBuilder` for ``loopml serve --deployment NAME``: ``spec.source`` is the
    deployment's name; the set follows its routing and aliases while it serves."""
    from loopml.serving.deployed import DeploymentModelSet
    from loopml.serving.deployment_service import resolve_target

    deployments, registry = client.stack.deployments, client.registry
    if deployments is None:
        raise InvalidArgument("this store has no deployments")
    models = DeploymentModelSet(
        lambda: deployments.get_deployment(spec.source),
        lambda target: resolve_target(registry, target).version,
        lambda model, version: client.load_model(f"models:/{model}/{version}", trust=spec.trust),
        poll_s=spec.poll_s,
    )  # fmt: skip
    models.start()
    return models


@dataclass(frozen=True)
class InferenceServerSpec:
    """What a worker process serves and how; calling it builds the app (uvicorn's factory).

    ``build`` turns ``source`` into a :class:`ModelSet` (default: a model reference into a
    :class:`SingleModel`; :func:`build_deployment` for a deployment). It must be a
    module-level function, so the spec pickles into worker processes. With ``log_predictions``
    every answer goes to the prediction log (see :mod:`loopml.serving.predlog`), under the
    deployment's name (or the model's, for a single model). With ``auth`` callers need an API
    token allowing ``deployment.invoke`` on the served project (see :func:`inference_auth`),
    remembered for ``auth_cache_s`` seconds.
    """

    source: str
    trust: bool | None = None
    max_batch_size: int = 1024
    max_wait_ms: float = 2.0
    max_concurrency: int = 64
    max_queue: int = 256
    timeout_s: float = 10.0
    max_request_bytes: int = 8 * 2**20
    memory_budget_mb: int = 256
    build: ModelSetBuilder = build_single_model
    log_predictions: bool = False
    poll_s: float = 1.0
    cpus_per_worker: int = 0
    auth: bool = False
    auth_cache_s: float = 5.0
    allowed_hosts: tuple[str, ...] = ()  # besides loopback: the bind address, configured names

    def __call__(self) -> FastAPI:
        from loopml.client import Client
        from loopml.serving.placement import claim_cpus

        # First, before this process starts threads: they inherit the binding.
        placement = claim_cpus(self.cpus_per_worker)
        client = Client()
        models = self.build(client, self)
        auth = inference_auth(client, self, models) if self.auth else None
        hooks = _PredictionHooks(client, self, models) if self.log_predictions else None

        def shutdown() -> None:
            stop = getattr(models, "stop", None)
            if stop is not None:
                stop()
            if hooks is not None:
                hooks.close()
            client.close()
            placement.release()

        app = create_inference_app(
            models, max_batch_size=self.max_batch_size, max_wait_ms=self.max_wait_ms,
            max_concurrency=self.max_concurrency, max_queue=self.max_queue,
            timeout_s=self.timeout_s, max_request_bytes=self.max_request_bytes,
            memory_budget_bytes=self.memory_budget_mb * 2**20,
            on_prediction=hooks.on_prediction if hooks else None,
            on_feedback=hooks.on_feedback if hooks else None, on_shutdown=shutdown, auth=auth,
            allowed_hosts=self.allowed_hosts,
        )  # fmt: skip
        app.state.placement = placement
        # The model and the app live as long as the process: keep them out of the collector's
        # full passes, which would otherwise walk them during requests.
        gc.collect()
        gc.freeze()
        return app


class _PredictionHooks:
    """Hands each answer and each feedback to the prediction log (a queue append, no I/O)."""

    def __init__(self, client: Client, spec: InferenceServerSpec, models: ModelSet) -> None:
        from loopml.serving.predlog import PredictionLogger, PredictionRecord

        self._record = PredictionRecord
        deployment = getattr(models, "deployment", None)
        self.name = deployment.name if deployment is not None else models.names()[0]
        sample, redact = client.settings.prediction_log_sample_rate, None
        if deployment is not None:
            sample, redact = deployment.spec.sample_rate, deployment.spec.redact or None
        self.log = PredictionLogger(
            client.stack.artifacts, flush_interval_s=client.settings.prediction_log_flush_s,
            sample_rate=sample, redact=redact,
        )  # fmt: skip

    def on_prediction(self, event: PredictionEvent) -> None:  # per answer: no import here
        self.log.record(self._record(
            request_id=event.request_id, deployment=self.name, model=event.model,
            version=event.version, timestamp_ms=event.timestamp_ms, route=event.route,
            inputs=event.inputs, outputs=event.outputs, latency_ms=event.latency_ms,
            status=event.status, shadow=event.shadow,
        ))  # fmt: skip

    def on_feedback(self, event: FeedbackEvent) -> None:
        self.log.record_feedback(event.request_id, event.deployment or self.name,
                                 event.ground_truth, event.timestamp_ms)  # fmt: skip

    def close(self) -> None:
        self.log.close()


def inference_auth(client: Client, spec: InferenceServerSpec, models: ModelSet) -> InferenceAuth:
    """The token check for ``loopml serve --auth``: tokens are looked up in ``client``'s
    identity store (the metadata database) and must allow ``deployment.invoke`` on the served
    project."""
    identity = client.stack.identity
    if identity is None:
        raise InvalidArgument(
            "--auth needs the metadata database (users and tokens live there): set LOOPML_URI "
            "to the platform's sqlite or postgresql URI, not its http address"
        )
    project = served_project(client, spec, models)
    return InferenceAuth(store_lookup(identity), project, cache_s=spec.auth_cache_s)


def served_project(client: Client, spec: InferenceServerSpec, models: ModelSet) -> str:
    """The project whose permissions decide who may call ``models``: the deployment's, the
    registered model's, or the project of the run that logged the model."""
    from loopml.models.refs import RunRef, parse_model_ref

    deployment = getattr(models, "deployment", None)
    if deployment is not None:
        return str(deployment.project_id)
    parsed = parse_model_ref(spec.source)
    if isinstance(parsed, RunRef):
        tracking = client.stack.tracking
        run = tracking.get_run(parsed.run_id)
        return str(tracking.get_experiment(run.experiment_id).project_id)
    if client.stack.registry is None:
        raise InvalidArgument("this store has no model registry")
    return str(client.stack.registry.get_registered_model(parsed.name).project_id)

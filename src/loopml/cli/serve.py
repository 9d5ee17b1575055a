"""``loopml serve MODEL_REF``: the inference server (OIP V2, /predict, /invocations) on uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import typer

from loopml.cli.output import command, console

if TYPE_CHECKING:
    from loopml.serving.modelset import ModelSet

_AUTH_HELP = (
    "Require the platform's API tokens (Authorization: Bearer lml_…) allowing deployment.invoke "
    "on the served project; health probes stay public. Needed for a --host beyond loopback."
)


@command
def serve_model(
    model_ref: str | None = typer.Argument(
        None, help="runs:/<run>/<path>, models:/<name>/<v> or models:/<name>@<alias>"
    ),
    deployment: str | None = typer.Option(
        None,
        "--deployment",
        "-d",
        help="Serve a deployment: its weighted targets and shadows, "
        "following changes of its routing and aliases without a restart.",
    ),
    log_predictions: bool = typer.Option(
        True,
        "--log-predictions/--no-log-predictions",
        help="Write every answer to the prediction log (Parquet in the artifact store).",
    ),
    host: str = typer.Option("127.0.0.1", help="Bind address (beyond loopback needs --auth)."),
    port: int | None = typer.Option(None, help="Port (default: the serve_port setting, 5101)."),
    workers: int = typer.Option(1, min=1, max=64, help="Worker processes (each loads the model)."),
    max_batch_size: int | None = typer.Option(None, min=1, help="Rows per predict call."),
    max_wait_ms: float | None = typer.Option(None, min=0, help="Wait for a batch to fill (ms)."),
    max_concurrency: int | None = typer.Option(None, min=1, help="Requests in flight."),
    max_queue: int | None = typer.Option(None, min=0, help="Requests waiting (then 503)."),
    timeout: float | None = typer.Option(None, min=0.001, help="Seconds per request (then 504)."),
    memory_limit_mb: int | None = typer.Option(None, min=64, help="Memory cap per process."),
    cpu_limit_s: int | None = typer.Option(None, min=1, help="CPU-seconds cap per process."),
    cpus_per_worker: int | None = typer.Option(
        None,
        min=0,
        help="CPUs each worker binds its threads to, none shared with another "
        "loopml worker (default 1; 0: unbound, for models that parallelise inside a call).",
    ),
    trust: bool | None = typer.Option(
        None, "--trust/--no-trust", help="Load pickle-based packages this platform recorded."
    ),
    auth: bool = typer.Option(False, "--auth/--no-auth", help=_AUTH_HELP),
) -> None:
    """Serve a model: Open Inference Protocol V2 under /v2, /predict, /invocations (MLflow's
    format), /feedback and /metrics. Settings: LOOPML_SERVE_* (flags override them)."""
    import uvicorn

    from loopml.errors import InvalidArgument
    from loopml.models.refs import parse_model_ref
    from loopml.server.http_protocol import HttpProtocol
    from loopml.server.inference import InferenceServerSpec, build_deployment, build_single_model
    from loopml.server.main import check_bind
    from loopml.serving.limits import apply_limits
    from loopml.settings import Settings

    check_bind(host, auth)
    if (model_ref is None) == (deployment is None):
        raise InvalidArgument("give a MODEL_REF or --deployment NAME (one of them)")
    if model_ref is not None:
        parse_model_ref(model_ref)  # a typo fails here, not in every worker
    s = Settings()
    spec = InferenceServerSpec(
        source=model_ref or deployment or "", trust=trust, log_predictions=log_predictions,
        build=build_deployment if deployment is not None else build_single_model,
        max_batch_size=_pick(max_batch_size, s.serve_max_batch_size),
        max_wait_ms=_pick(max_wait_ms, s.serve_max_wait_ms),
        max_concurrency=_pick(max_concurrency, s.serve_max_concurrency),
        max_queue=_pick(max_queue, s.serve_max_queue),
        timeout_s=_pick(timeout, s.serve_timeout_s),
        max_request_bytes=s.serve_max_request_bytes, memory_budget_mb=s.serve_memory_budget_mb,
        cpus_per_worker=_pick(cpus_per_worker, s.serve_cpus_per_worker),
        auth=auth, auth_cache_s=s.serve_auth_cache_s, allowed_hosts=(host, *s.allowed_hosts),
    )  # fmt: skip
    bind_port = _pick(port, s.serve_port)
    # rlimits are inherited by the worker processes: each gets its own cap
    limits = apply_limits(
        _pick(memory_limit_mb, s.serve_memory_limit_mb),
        _pick(cpu_limit_s, s.serve_cpu_limit_s),
        processes=workers,
    )
    options = {"host": host, "port": bind_port, "log_level": "warning",
               "http": HttpProtocol}  # fmt: skip
    if workers == 1:
        app = spec()  # load now: a bad reference is one clean error line
        console.print(
            f"loopml serve {spec.source} on http://{host}:{bind_port}  (auth "
            f"{'on' if auth else 'off'}; limits: {limits}; {app.state.placement.describe()})"
        )
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    # Several workers: each process unpickles the spec and builds its own app (uvicorn.run only
    # takes import strings for that, and the reference travels in the spec, not the environment).
    # Load once here first: a bad reference is one error line, not a crash loop of workers, and
    # the workers find the package in the model cache.
    from uvicorn.supervisors import Multiprocess

    from loopml.cli.context import get_client, reset_client
    from loopml.server.inference import inference_auth, model_set_from_ref

    client = get_client()
    if model_ref is not None:
        models: ModelSet = model_set_from_ref(client, model_ref, trust=trust)
    else:
        models = build_deployment(client, spec)
    try:
        if auth:  # no identity store, an unknown project: one error line here too
            inference_auth(client, spec, models)
    finally:
        stop = getattr(models, "stop", None)
        if stop is not None:
            stop()
    reset_client()

    config = uvicorn.Config(spec, factory=True, workers=workers, **options)  # type: ignore[arg-type]
    console.print(
        f"loopml serve {spec.source} on http://{host}:{bind_port}, {workers} workers  "
        f"(auth {'on' if auth else 'off'}; limits: {limits}; "
        f"{spec.cpus_per_worker or 'unbound'} CPUs per worker)"
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


T = TypeVar("T")


def _pick(value: T | None, default: T) -> T:
    return default if value is None else value

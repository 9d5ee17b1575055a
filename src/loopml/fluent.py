"""The fluent tracking API MLflow users know: ``loopml.start_run()``, ``loopml.log_metric()`` …

The active run lives in a :mod:`contextvars` variable, so each thread and each asyncio task has its
own; the client behind these functions is built once from the settings on first use (or by
:func:`set_tracking_uri`) — the one edge where the fluent API meets configuration.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopml.errors import InvalidArgument
from loopml.tracking.entities import Experiment, Lifecycle, Run, RunInput, RunStatus, ViewType
from loopml.tracking.runinfo import UsageMeter

if TYPE_CHECKING:
    import pandas as pd

    from loopml.client import Client
    from loopml.client.models import ModelInfo
    from loopml.models.evaluation import EvaluationResult, KpiCheck
    from loopml.models.predictor import Predictor
    from loopml.registry.entities import ModelVersion
    from loopml.settings import Settings


class ActiveRun:
    """A started run; as a context manager it ends the run (FAILED on an exception)."""

    def __init__(self, run: Run, meter: UsageMeter) -> None:
        self.run = run
        self._meter = meter

    @property
    def info(self) -> Run:
        return self.run

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = RunStatus.FINISHED
        elif issubclass(exc_type, KeyboardInterrupt):
            status = RunStatus.KILLED
        else:
            status = RunStatus.FAILED
        _end(self, status)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.run.run_id} {self.run.run_name!r}>"


_active: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "loopml_active_runs", default=()
)


class _Session:
    """The fluent API's client and current experiment (process-wide, like MLflow's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Client | None = None
        self.settings: Settings | None = None
        self.experiment_id: str | None = None
        self.last_run_id: str | None = None

    def get_client(self) -> Client:
        client = self.client
        if client is None:
            with self.lock:
                if self.client is None:
                    from loopml.client import Client
                    from loopml.settings import Settings

                    self.client = Client(self.settings or Settings())
                client = self.client
        return client


_session = _Session()


def get_client() -> Client:
    """The client the fluent functions use."""
    return _session.get_client()


def configure(settings: Settings | None = None, **overrides: Any) -> None:
    """Point the fluent API at another store: ``configure(uri=..., artifacts=..., home=...)``."""
    from loopml.settings import Settings

    if _active.get():
        raise InvalidArgument("end the active run before changing where runs are stored")
    old = _session.client
    with _session.lock:
        _session.settings = settings or Settings(**overrides)
        _session.client = None
        _session.experiment_id = None
    if old is not None:
        old.close()


def set_tracking_uri(uri: str) -> None:
    """MLflow-compatible spelling of ``configure(uri=uri)``."""
    configure(uri=uri)


def get_tracking_uri() -> str:
    return get_client().settings.resolved_uri()


def set_experiment(
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    *,
    project: str | None = None,
) -> Experiment:
    """Make an experiment current, creating it (in ``project``) if the name is new."""
    c = get_client()
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidArgument("give exactly one of experiment_name or experiment_id")
    if experiment_id is not None:
        exp = c.get_experiment(str(experiment_id))
    else:
        assert experiment_name is not None
        found = c.get_experiment_by_name(experiment_name)
        exp = found or c.create_experiment(experiment_name, project=project)
    if exp.lifecycle_stage is Lifecycle.DELETED:
        raise InvalidArgument(
            f"experiment {exp.name!r} is deleted; restore it with "
            f"`loopml experiments restore {exp.experiment_id}` or pick another name"
        )
    _session.experiment_id = exp.experiment_id
    return exp


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, str] | None = None,
) -> ActiveRun:
    """Start (or resume, with ``run_id``) a run and make it active; use it as ``with``."""
    stack = _active.get()
    if stack and not nested:
        raise InvalidArgument(
            f"run {stack[-1].run_id} is already active: end it first, or pass nested=True"
        )
    c = get_client()
    if run_id is not None:
        run = c.resume_run(run_id)
    else:
        exp_id = experiment_id or _session.experiment_id or "0"
        parent = stack[-1].run_id if stack else None
        run = c.create_run(exp_id, run_name=run_name, tags=tags, parent_run_id=parent)
    active = ActiveRun(run, UsageMeter())
    _active.set((*stack, active))
    return active


def _end(active: ActiveRun, status: RunStatus) -> None:
    stack = _active.get()
    if active in stack:
        _active.set(tuple(r for r in stack if r is not active))
    _session.last_run_id = active.run_id
    get_client().set_terminated(active.run_id, status, usage=active._meter.read())


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the innermost active run (no-op when none is active)."""
    stack = _active.get()
    if stack:
        _end(stack[-1], RunStatus(status.upper() if isinstance(status, str) else status))


def active_run() -> ActiveRun | None:
    stack = _active.get()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    run = active_run()
    if run is not None:
        return get_client().get_run(run.run_id)
    return get_client().get_run(_session.last_run_id) if _session.last_run_id else None


def _run_id() -> str:
    stack = _active.get()
    if stack:
        return stack[-1].run_id
    return start_run().run_id  # MLflow starts a run implicitly on the first log call


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    get_client().log_metric(_run_id(), key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    get_client().log_metrics(_run_id(), metrics, step)


def log_param(key: str, value: Any) -> Any:
    get_client().log_param(_run_id(), key, value)
    return value


def log_params(params: Mapping[str, Any]) -> None:
    get_client().log_params(_run_id(), params)


def set_tag(key: str, value: Any) -> None:
    get_client().set_tag(_run_id(), key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    get_client().set_tags(_run_id(), tags)


def delete_tag(key: str) -> None:
    get_client().delete_tag(_run_id(), key)


def log_artifact(local_path: str | Path, artifact_path: str = "") -> None:
    get_client().log_artifact(_run_id(), local_path, artifact_path)


def log_artifacts(local_dir: str | Path, artifact_path: str = "") -> None:
    get_client().log_artifacts(_run_id(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    get_client().log_text(_run_id(), text, artifact_file)


def log_dict(dictionary: Mapping[str, Any], artifact_file: str) -> None:
    get_client().log_dict(_run_id(), dictionary, artifact_file)


def log_figure(figure: Any, artifact_file: str) -> None:
    get_client().log_figure(_run_id(), figure, artifact_file)


def log_input(
    dataset: Any = None,
    *,
    name: str | None = None,
    digest: str | None = None,
    role: str = "train",
    source: str = "",
) -> RunInput:
    """Record a dataset the run used. Give a name and digest, or a DataFrame/array to hash."""
    if digest is None:
        if dataset is None:
            raise InvalidArgument("log_input needs a dataset to hash or an explicit digest")
        digest = dataset_digest(dataset)
    if not name:
        raise InvalidArgument("log_input needs a dataset name")
    item = RunInput(name=name, digest=digest, role=role, source=source)
    get_client().log_inputs(_run_id(), [item])
    return item


def dataset_digest(dataset: Any) -> str:
    """sha256 of a DataFrame's rows and columns, an array's bytes, or a file's contents."""
    h = hashlib.sha256()
    if isinstance(dataset, str | Path) and Path(dataset).is_file():
        with Path(dataset).open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    elif hasattr(dataset, "columns") and hasattr(dataset, "dtypes"):
        import pandas as pd

        h.update(repr(list(dataset.columns)).encode())
        h.update(pd.util.hash_pandas_object(dataset, index=True).values.tobytes())
    elif hasattr(dataset, "tobytes") and hasattr(dataset, "shape"):
        h.update(repr((dataset.shape, str(dataset.dtype))).encode())
        h.update(dataset.tobytes())
    elif isinstance(dataset, bytes):
        h.update(dataset)
    else:
        raise InvalidArgument(
            f"cannot hash a {type(dataset).__name__}; pass a DataFrame, an array, bytes, a file "
            "path, or give digest="
        )
    return h.hexdigest()


def flush() -> None:
    """Write all buffered metrics now."""
    if _session.client is not None:
        _session.client.flush()


def get_run(run_id: str) -> Run:
    return get_client().get_run(run_id)


_VIEWS = {1: ViewType.ACTIVE_ONLY, 2: ViewType.DELETED_ONLY, 3: ViewType.ALL}  # MLflow's numbers
_PAGE = 1000


def search_runs(
    experiment_ids: Sequence[str] | str | None = None,
    filter_string: str | None = None,
    run_view_type: ViewType | str | int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: Sequence[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> pd.DataFrame | list[Run]:
    """Runs of the current experiment (or ``experiment_ids``, ``experiment_names``, or every
    experiment with ``search_all_experiments``) as MLflow returns them: a DataFrame with
    ``run_id``, ``status``, ``start_time``, ``metrics.<k>``, ``params.<k>``, ``tags.<k>`` …
    (:mod:`loopml.tracking.runframe`), or the runs with ``output_format="list"``.

    >>> # loopml.search_runs(filter_string="metrics.acc > 0.9", order_by=["metrics.acc DESC"])
    """
    if output_format not in ("pandas", "list"):
        raise InvalidArgument(f"output_format is 'pandas' or 'list', got {output_format!r}")
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidArgument(f"max_results must be a positive integer, got {max_results!r}")
    view = _VIEWS.get(run_view_type) if isinstance(run_view_type, int) else run_view_type
    if view is None:
        raise InvalidArgument(f"run_view_type is 1, 2 or 3 (or a ViewType), got {run_view_type!r}")
    view = ViewType(view)
    client = get_client()
    ids = _experiment_ids(client, experiment_ids, experiment_names, search_all_experiments, view)
    runs: list[Run] = []
    token: str | None = None
    while ids and len(runs) < max_results:
        page = client.search_runs(
            ids, filter_string, order_by=order_by, max_results=min(_PAGE, max_results - len(runs)),
            page_token=token, view=view,
        )  # fmt: skip
        runs += page
        token = page.next_page_token
        if token is None:
            break
    if output_format == "list":
        return runs
    from loopml.tracking.runframe import runs_frame

    return runs_frame(runs, client.stack.artifacts.root_uri)


def _experiment_ids(
    client: Client, ids: Sequence[str] | str | None, names: Sequence[str] | None,
    search_all: bool, view: ViewType,
) -> list[str]:  # fmt: skip
    if ids and names:
        raise InvalidArgument("give experiment_ids or experiment_names, not both")
    if isinstance(names, str):
        raise InvalidArgument("experiment_names must be a list of names, not a single string")
    if ids:  # as MLflow, an empty list means the same as None
        return [str(ids)] if isinstance(ids, str | int) else [str(i) for i in ids]
    if names:  # as MLflow: names that do not exist match nothing
        found = (client.get_experiment_by_name(n) for n in names)
        return [e.experiment_id for e in found if e is not None]
    if search_all:
        return [e.experiment_id for e in client.list_experiments(view=view)]
    return [_session.experiment_id or "0"]


# models --------------------------------------------------------------------------------------
def log_model(
    model: Any, name: str = "model", *, signature: Any = None, input_example: Any = None,
    registered_model_name: str | None = None, **options: Any,
) -> ModelInfo:  # fmt: skip
    """Save ``model`` as a safe package in the active run (one is started if none is).

    >>> # loopml.log_model(clf, "model", input_example=X_test[:5], registered_model_name="fraud")
    """
    return get_client().log_model(
        _run_id(), model, name, signature=signature, input_example=input_example,
        registered_model_name=registered_model_name, **options,
    )  # fmt: skip


def register_model(model_uri: str, name: str, **options: Any) -> ModelVersion:
    """Register the package at ``runs:/<run_id>/<path>`` as the next version of ``name``."""
    return get_client().register_model(model_uri, name, **options)


def load_model(model_uri: str, *, trust: bool | None = None) -> Predictor:
    """``runs:/…``, ``models:/name/3`` or ``models:/name@alias`` → a predictor whose
    ``predict`` checks its input against the signature."""
    return get_client().load_model(model_uri, trust=trust)


def evaluate(
    model_uri: str, data: Any, *, target: str, task: str = "classification",
    slices: Sequence[str] = (), run_id: str | None = None,
    feature_names: Sequence[str] | None = None,
) -> tuple[EvaluationResult, list[KpiCheck]]:  # fmt: skip
    """Standard metrics (overall and per slice), plots, a report and a model card draft, logged
    to the model's run; the project's validation KPIs checked against them."""
    return get_client().evaluate(model_uri, data, target=target, task=task, slices=slices,
                                 run_id=run_id, feature_names=feature_names)  # fmt: skip

"""loopml: carry a model from a business KPI through data, experiments and serving, and back.

The fluent API MLflow users know, over an explicit :class:`loopml.Client`::

    import loopml

    loopml.set_experiment("fraud")
    with loopml.start_run(run_name="rf"):
        loopml.log_param("n_estimators", 100)
        for step in range(10):
            loopml.log_metric("loss", 1 / (step + 1), step=step)

Everything is imported lazily, so ``import loopml`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_FLUENT = (
    "ActiveRun", "active_run", "configure", "dataset_digest", "delete_tag", "end_run", "flush",
    "get_client", "get_run", "get_tracking_uri", "last_active_run", "log_artifact", "log_artifacts",
    "log_dict", "log_figure", "log_input", "log_metric", "log_metrics", "log_param", "log_params",
    "log_text", "search_runs", "set_experiment", "set_tag", "set_tags", "set_tracking_uri",
    "start_run", "log_model", "register_model", "load_model", "evaluate",
)  # fmt: skip
_LAZY: dict[str, str] = {name: "loopml.fluent" for name in _FLUENT}
_LAZY.update(
    {
        "Client": "loopml.client",
        "Settings": "loopml.settings",
        "Stack": "loopml.stack",
        "Metric": "loopml.tracking.entities",
        "Param": "loopml.tracking.entities",
        "RunTag": "loopml.tracking.entities",
        "RunInput": "loopml.tracking.entities",
        "RunStatus": "loopml.tracking.entities",
        "ViewType": "loopml.tracking.entities",
        "LoopmlError": "loopml.errors",
        "NotFound": "loopml.errors",
        "AlreadyExists": "loopml.errors",
        "InvalidArgument": "loopml.errors",
        "Conflict": "loopml.errors",
    }
)

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from loopml.client import Client
    from loopml.errors import AlreadyExists, Conflict, InvalidArgument, LoopmlError, NotFound
    from loopml.fluent import (
        ActiveRun,
        active_run,
        configure,
        dataset_digest,
        delete_tag,
        end_run,
        evaluate,
        flush,
        get_client,
        get_run,
        get_tracking_uri,
        last_active_run,
        load_model,
        log_artifact,
        log_artifacts,
        log_dict,
        log_figure,
        log_input,
        log_metric,
        log_metrics,
        log_model,
        log_param,
        log_params,
        log_text,
        register_model,
        search_runs,
        set_experiment,
        set_tag,
        set_tags,
        set_tracking_uri,
        start_run,
    )  # fmt: skip
    from loopml.settings import Settings
    from loopml.stack import Stack
    from loopml.tracking.entities import Metric, Param, RunInput, RunStatus, RunTag, ViewType

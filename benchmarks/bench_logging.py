"""(a) single ``log_metric`` calls and (b) ``log_batch`` of 1,000 values, loopml vs MLflow.

(a) times the first call through the moment every value is in the database: ``loopml.flush()``
for loopml, nothing for MLflow's synchronous mode, ``mlflow.flush_async_logging()`` for its
asynchronous mode. (b) times only the ``log_batch`` calls; the Metric records are built first.
Both read the values back afterwards (untimed) to prove they were all written.
"""

from __future__ import annotations

import time
from typing import Any

from common import (
    Stopwatch,
    loopml_fluent_client,
    loopml_uri,
    mlflow_artifacts,
    mlflow_single_calls,
    mlflow_uri,
    worker_args,
    write_result,
)


def _args(p: Any) -> None:
    p.add_argument("--case", choices=["single", "batch"], required=True)
    p.add_argument("--mode", choices=["sync", "async"], default="sync", help="MLflow only")
    p.add_argument("--n", type=int, required=True, help="metric values to log")
    p.add_argument("--batch-size", type=int, default=1000)


# loopml ------------------------------------------------------------------------------------
def loopml_single(args: Any) -> dict[str, Any]:
    import loopml

    loopml.configure(**loopml_uri(args.dir))
    loopml.set_experiment("bench")
    with loopml.start_run(run_name="single") as run:
        loopml.log_metric("warmup", 0.0)  # starts the writer thread outside the timing
        loopml.flush()
        with Stopwatch() as total:
            with Stopwatch() as calls:
                for i in range(args.n):
                    loopml.log_metric("m", 0.5, step=i)
            loopml.flush()
    written = len(loopml_fluent_client().get_metric_history(run.run_id, "m"))
    result = _rates(args.n, total.seconds, calls.seconds, written)
    if args.profile:
        from common import profile_top

        with loopml.start_run(run_name="profiled"):

            def work() -> None:
                for i in range(args.n):
                    loopml.log_metric("m", 0.5, step=i)
                loopml.flush()

            result["profile"] = profile_top(work)
    return result


def loopml_batch(args: Any) -> dict[str, Any]:
    import loopml
    from loopml import Metric

    loopml.configure(**loopml_uri(args.dir))
    loopml.set_experiment("bench")
    client = loopml_fluent_client()
    with loopml.start_run(run_name="batch") as run:
        batches = _batches(Metric, args.n, args.batch_size)
        with Stopwatch() as total:
            for batch in batches:
                client.log_batch(run.run_id, metrics=batch)
        written = len(client.get_metric_history(run.run_id, "m"))
        result = _rates(args.n, total.seconds, total.seconds, written)
        result["batch_size"] = args.batch_size
        if args.profile:
            from common import profile_top

            again = _batches(Metric, args.n, args.batch_size, key="p")

            def work() -> None:
                for batch in again:
                    client.log_batch(run.run_id, metrics=batch)

            result["profile"] = profile_top(work)
    return result


# MLflow ------------------------------------------------------------------------------------
def mlflow_single(args: Any) -> dict[str, Any]:
    import mlflow

    asynchronous = args.mode == "async"
    mlflow.set_tracking_uri(mlflow_uri(args.dir))
    mlflow.create_experiment("bench", artifact_location=mlflow_artifacts(args.dir))
    mlflow.set_experiment("bench")
    run_id, total, calls = mlflow_single_calls(mlflow, args.n, asynchronous=asynchronous)
    client = mlflow.MlflowClient()
    written = len(client.get_metric_history(run_id, "m"))
    return _rates(args.n, total.seconds, calls.seconds, written)


def mlflow_batch(args: Any) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(mlflow_uri(args.dir))
    mlflow.create_experiment("bench", artifact_location=mlflow_artifacts(args.dir))
    mlflow.set_experiment("bench")
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name="batch") as run:
        batches = _batches(Metric, args.n, args.batch_size)
        with Stopwatch() as total:
            for batch in batches:
                client.log_batch(run.info.run_id, metrics=batch)
    written = len(client.get_metric_history(run.info.run_id, "m"))
    result = _rates(args.n, total.seconds, total.seconds, written)
    result["batch_size"] = args.batch_size
    return result


# shared ------------------------------------------------------------------------------------
def _batches(metric_cls: Any, n: int, size: int, key: str = "m") -> list[list[Any]]:
    now = int(time.time() * 1000)
    return [
        [metric_cls(key, 0.5, now, step) for step in range(start, min(start + size, n))]
        for start in range(0, n, size)
    ]


def _rates(n: int, total_s: float, calls_s: float, written: int) -> dict[str, Any]:
    return {
        "n": n,
        "seconds": total_s,
        "per_second": n / total_s,
        "calls_only_seconds": calls_s,
        "written": written,
        "complete": written == n,
    }


def main() -> None:
    args = worker_args(__doc__.splitlines()[0], _args)
    runner = {
        ("loopml", "single"): loopml_single,
        ("loopml", "batch"): loopml_batch,
        ("mlflow", "single"): mlflow_single,
        ("mlflow", "batch"): mlflow_batch,
    }[(args.tool, args.case)]
    result = runner(args)
    result.update(tool=args.tool, case=args.case, mode=args.mode if args.tool == "mlflow" else "")
    write_result(args.out, result)


if __name__ == "__main__":
    main()

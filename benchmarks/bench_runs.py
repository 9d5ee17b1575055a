"""(c) creating runs through the fluent API: 5 params, 5 metrics and 2 tags each.

Each run is ``start_run`` → ``log_params`` → ``log_metrics`` → ``set_tags`` → end of the
``with`` block; the timing ends after loopml's final ``flush()`` so buffered metrics count.
"""

from __future__ import annotations

from typing import Any

from common import (
    Stopwatch,
    loopml_fluent_client,
    loopml_uri,
    mlflow_artifacts,
    mlflow_uri,
    worker_args,
    write_result,
)


def _args(p: Any) -> None:
    p.add_argument("--n", type=int, required=True, help="runs to create")


def _payload(i: int) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    params = {f"p{k}": f"value-{i % (k + 3)}" for k in range(5)}
    metrics = {f"m{k}": ((i * 7919 + k * 104729) % 1000) / 1000 for k in range(5)}
    tags = {"team": "bench", "kind": f"k{i % 4}"}
    return params, metrics, tags


def loopml_runs(args: Any) -> dict[str, Any]:
    import loopml

    loopml.configure(**loopml_uri(args.dir))
    exp = loopml.set_experiment("bench")
    payloads = [_payload(i) for i in range(args.n)]

    def create(prefix: str) -> None:
        for i, (params, metrics, tags) in enumerate(payloads):
            with loopml.start_run(run_name=f"{prefix}{i}"):
                loopml.log_params(params)
                loopml.log_metrics(metrics)
                loopml.set_tags(tags)
        loopml.flush()

    with Stopwatch() as sw:
        create("r")
    page = loopml_fluent_client().search_runs(
        [exp.experiment_id], "params.p0 != ''", max_results=50_000
    )
    result = _rates(args.n, sw.seconds, len(page.items))
    first = loopml_fluent_client().get_run(page.items[0].run_id)
    result["sample_run_counts"] = _counts(first.params, first.metrics, first.tags)
    if args.profile:
        from common import profile_top

        payloads = payloads[: max(1, args.n // 4)]
        result["profile_runs"] = len(payloads)
        result["profile"] = profile_top(lambda: create("p"))
    return result


def mlflow_runs(args: Any) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(mlflow_uri(args.dir))
    exp_id = mlflow.create_experiment("bench", artifact_location=mlflow_artifacts(args.dir))
    mlflow.set_experiment("bench")
    payloads = [_payload(i) for i in range(args.n)]
    with Stopwatch() as sw:
        for i, (params, metrics, tags) in enumerate(payloads):
            with mlflow.start_run(run_name=f"r{i}"):
                mlflow.log_params(params)
                mlflow.log_metrics(metrics)
                mlflow.set_tags(tags)
    client = mlflow.MlflowClient()
    found = client.search_runs([exp_id], "params.p0 != ''", max_results=50_000)
    result = _rates(args.n, sw.seconds, len(found))
    data = client.get_run(found[0].info.run_id).data
    user_tags = {k: v for k, v in data.tags.items() if not k.startswith("mlflow.")}
    result["sample_run_counts"] = _counts(data.params, data.metrics, user_tags)
    return result


def _counts(params: Any, metrics: Any, tags: Any) -> dict[str, int]:
    return {"params": len(params), "metrics": len(metrics), "tags": len(tags)}


def _rates(n: int, seconds: float, found: int) -> dict[str, Any]:
    return {
        "n": n,
        "seconds": seconds,
        "per_second": n / seconds,
        "ms_per_run": seconds / n * 1000,
        "found": found,
        "complete": found == n,
    }


def main() -> None:
    args = worker_args(__doc__.splitlines()[0], _args)
    result = (loopml_runs if args.tool == "loopml" else mlflow_runs)(args)
    result["tool"] = args.tool
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""(f)-(j) the tracking servers over HTTP on loopback: ``loopml server`` vs ``mlflow server``.

Every case starts its own server (its own process group, SQLite store in ``--dir``) and stops it
in a ``finally``. Clients keep their connection alive (httpx for loopml, requests for MLflow).

(f) ``single``: single ``log_metric`` calls through the fluent API, timed from the first call
    until the client's flush returns (loopml buffers; MLflow sends one request per call, or
    queues them with ``--mode async``). Then every value is counted through the server's API,
    the server is SIGKILLed, started again on the same store and the values counted once more:
    what a flush acknowledged must survive.
(g) ``batch``: ``log_batch`` of ``--batch-size`` values; records built first, only the calls
    timed; the same counts afterwards.
(h) ``search``: ``populate.py`` fills the store before the server starts; then the search of
    benchmark (d) through the server, one warm-up and the median of ``--repeats``.
(i) ``start``: spawn to the first 200 from the health endpoint (loopml ``/healthz``, MLflow
    ``/health``), ``--starts`` times on a new store and as often again on the store just made.
(j) ``memory``: summed VmRSS (and Pss) of the server's process tree after it is healthy and has
    idled ``--idle`` seconds.

(f) and (g) also time single requests on one kept-alive connection first: 100 GETs of the health
endpoint (httpx for both tools) and 50 one-value ``log_batch`` calls through the tool's client.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import Stopwatch, mlflow_single_calls, summary, worker_args, write_result
from server_proc import HEALTH, QUIET_MLFLOW, Server, log_tail, stopped_on_signals

os.environ.update(QUIET_MLFLOW)  # before MLflow is imported anywhere


def _args(p: Any) -> None:
    p.add_argument("--case", choices=["single", "batch", "search", "start", "memory"])
    p.add_argument("--workers", type=int, default=0, help="server workers; 0: the tool's default")
    p.add_argument("--mode", choices=["sync", "async"], default="sync", help="MLflow, (f) only")
    p.add_argument("--n", type=int, default=1000, help="(f), (g): metric values to log")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--runs", type=int, default=20_000, help="(h): runs in the store")
    p.add_argument("--repeats", type=int, default=20, help="(h): timed searches")
    p.add_argument("--starts", type=int, default=3, help="(i): starts per store kind")
    p.add_argument("--idle", type=float, default=5.0, help="(j): seconds idle before measuring")


# clients ---------------------------------------------------------------------------------------
class Tool:
    """The few client operations the cases need, for one tool against one server URL."""

    def __init__(self, name: str) -> None:
        self.name = name

    def client(self, url: str) -> Any:
        if self.name == "loopml":
            import loopml

            return loopml.Client(loopml.Settings(uri=url))
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=url)

    def new_run(self, client: Any, name: str) -> tuple[str, str]:
        if self.name == "loopml":
            eid = client.create_experiment(f"bench-{name}").experiment_id
            return eid, client.create_run(eid, run_name=name).run_id
        eid = client.create_experiment(f"bench-{name}")
        return eid, client.create_run(eid, run_name=name).info.run_id

    def metric_cls(self) -> Any:
        if self.name == "loopml":
            from loopml import Metric
        else:
            from mlflow.entities import Metric
        return Metric

    def history(self, url: str, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of every stored value, read by a new client on a new connection."""
        client = self.client(url)
        try:
            return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        finally:
            if self.name == "loopml":
                client.close()


def health_latency(url: str, path: str, n: int = 100) -> dict[str, float]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(5):
            http.get(path).raise_for_status()
        samples = []
        for _ in range(n):
            with Stopwatch() as sw:
                http.get(path)
            samples.append(sw.seconds)
    return summary(samples)


def write_latency(tool: Tool, url: str, n: int = 50) -> dict[str, float]:
    """One-value ``log_batch`` calls, each a synchronous request on the client's connection."""
    client = tool.client(url)
    _, run_id = tool.new_run(client, "probe")
    metric = tool.metric_cls()
    now = int(time.time() * 1000)
    for i in range(3):
        client.log_batch(run_id, metrics=[metric("warm", 0.5, now, i)])
    samples = []
    for i in range(n):
        with Stopwatch() as sw:
            client.log_batch(run_id, metrics=[metric("probe", 0.5, now, i)])
        samples.append(sw.seconds)
    return summary(samples)


def probes(srv: Server, tool: Tool) -> dict[str, Any]:
    return {
        "health_get": health_latency(srv.url, HEALTH[tool.name]),
        "one_value_write": write_latency(tool, srv.url),
    }


# (f) -------------------------------------------------------------------------------------------
def log_single(tool: Tool, url: str, args: Any) -> tuple[str, Stopwatch, Stopwatch]:
    if tool.name == "loopml":
        import loopml

        loopml.configure(uri=url)
        loopml.set_experiment("bench")
        with loopml.start_run(run_name="single") as run:
            loopml.log_metric("warmup", 0.0)
            loopml.flush()
            with Stopwatch() as total:
                with Stopwatch() as calls:
                    for i in range(args.n):
                        loopml.log_metric("m", 0.5, step=i)
                loopml.flush()
        return run.run_id, total, calls

    import mlflow

    asynchronous = args.mode == "async"
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench")
    return mlflow_single_calls(mlflow, args.n, asynchronous=asynchronous)


def log_batches(tool: Tool, url: str, args: Any) -> tuple[str, Stopwatch, Stopwatch]:
    client = tool.client(url)
    _, run_id = tool.new_run(client, "batch")
    metric = tool.metric_cls()
    now = int(time.time() * 1000)
    batches = [
        [metric("m", 0.5, now, step) for step in range(start, min(start + args.batch_size, args.n))]
        for start in range(0, args.n, args.batch_size)
    ]
    with Stopwatch() as total:
        for batch in batches:
            client.log_batch(run_id, metrics=batch)
    return run_id, total, total


def logging_case(args: Any, tool: Tool, log: Callable[..., tuple[str, Stopwatch, Stopwatch]]):
    srv = Server(tool.name, args.dir, args.workers, log=args.dir.parent / "server.log")
    result: dict[str, Any] = {"n": args.n, "workers": args.workers or "default"}
    try:
        result["start_s"] = srv.start()
        result["server_command"] = _shown(srv.command(), args.dir)
        result["latency"] = probes(srv, tool)
        run_id, total, calls = log(tool, srv.url, args)
        want = [(i, 0.5) for i in range(args.n)]
        stored = tool.history(srv.url, run_id, "m")
        result["server_memory_after"] = _mem_summary(srv.memory())
        # SIGKILL the whole server, start it again on the same store, count once more.
        srv.stop(hard=True)
        result["restart_s"] = srv.start()
        after_kill = tool.history(srv.url, run_id, "m")
    finally:
        srv.stop()
    result.update(
        seconds=total.seconds,
        per_second=args.n / total.seconds,
        calls_only_seconds=calls.seconds,
        written=len(stored),
        written_after_kill=len(after_kill),
        complete=stored == want and after_kill == want,
    )
    if args.batch_size and log is log_batches:
        result["batch_size"] = args.batch_size
    return result


# (h) -------------------------------------------------------------------------------------------
def search_case(args: Any, tool: Tool) -> dict[str, Any]:
    from bench_search import FILTER, MAX_RESULTS, ORDER_BY, expected_ids
    from populate import generate, populate_loopml, populate_mlflow

    runs = generate(args.runs)
    expected = expected_ids(runs)
    fill = populate_loopml if tool.name == "loopml" else populate_mlflow
    experiment_id, populate_s = fill(args.dir, runs)
    srv = Server(tool.name, args.dir, args.workers, log=args.dir.parent / "server.log")
    try:
        start_s = srv.start()
        client = tool.client(srv.url)

        def search() -> list[str]:
            if tool.name == "loopml":
                page = client.search_runs(
                    [experiment_id], FILTER, order_by=ORDER_BY, max_results=MAX_RESULTS
                )
                return [r.run_id for r in page.items]
            found = client.search_runs(
                [experiment_id], FILTER, order_by=ORDER_BY, max_results=MAX_RESULTS
            )
            return [r.info.run_id for r in found]

        first = search()
        samples = []
        for _ in range(args.repeats):
            with Stopwatch() as sw:
                search()
            samples.append(sw.seconds)
        memory = _mem_summary(srv.memory())
        command = _shown(srv.command(), args.dir)
    finally:
        srv.stop()
    return {
        "runs": args.runs,
        **summary(samples),
        "results": len(first),
        "matches_expected": first == expected,
        "populate_seconds": populate_s,
        "start_s": start_s,
        "server_memory_after": memory,
        "server_command": command,
        "workers": args.workers or "default",
        "db_mib": round((args.dir / f"{tool.name}.db").stat().st_size / 2**20, 1),
    }


# (i) -------------------------------------------------------------------------------------------
def start_case(args: Any, tool: Tool) -> dict[str, Any]:
    fresh, existing = [], []
    log = args.dir.parent / "server.log"
    for k in range(args.starts):
        store = args.dir / f"start{k}"
        for kind in (fresh, existing):  # a new store, then the one that start just created
            srv = Server(tool.name, store, args.workers, log=log)
            try:
                kind.append(srv.start())
            finally:
                srv.stop()
    return {
        "starts": args.starts,
        "new_store": _seconds(fresh),
        "existing_store": _seconds(existing),
        "median_s": statistics.median(fresh),
        "server_command": _shown(Server(tool.name, args.dir / "start0").command(), args.dir),
        "workers": args.workers or "default",
    }


# (j) -------------------------------------------------------------------------------------------
def memory_case(args: Any, tool: Tool) -> dict[str, Any]:
    srv = Server(tool.name, args.dir, args.workers, log=args.dir.parent / "server.log")
    try:
        start_s = srv.start()
        time.sleep(args.idle)
        memory = srv.memory()
        command = _shown(srv.command(), args.dir)
    finally:
        srv.stop()
    for proc in memory["per_process"]:
        proc["cmd"] = _hide(proc["cmd"], args.dir)
    return {
        "start_s": start_s,
        "idle_s": args.idle,
        **memory,
        "server_command": command,
        "workers": args.workers or "default",
    }


# shared ----------------------------------------------------------------------------------------
def _seconds(xs: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(xs), "all_s": [round(x, 3) for x in xs]}


def _mem_summary(mem: dict[str, Any]) -> dict[str, Any]:
    return {k: mem[k] for k in ("rss_mib", "pss_mib", "processes")}


def _shown(cmd: list[str], folder: Path) -> str:
    return _hide(
        " ".join(Path(c).name if c.startswith("/") and "bin/" in c else c for c in cmd), folder
    )


def _hide(text: str, folder: Path) -> str:
    """The command line without this run's folder and port."""
    return re.sub(r"--port \d+", "--port $PORT", text.replace(str(folder), "$STORE"))


def main() -> None:
    args = worker_args(__doc__.splitlines()[0], _args)
    tool = Tool(args.tool)
    with stopped_on_signals():
        try:
            if args.case == "single":
                result = logging_case(args, tool, log_single)
            elif args.case == "batch":
                result = logging_case(args, tool, log_batches)
            elif args.case == "search":
                result = search_case(args, tool)
            elif args.case == "start":
                result = start_case(args, tool)
            else:
                result = memory_case(args, tool)
        except BaseException:
            for line in log_tail(args.dir.parent / "server.log"):
                print("server.log:", line)
            raise
    result.update(tool=args.tool, case=args.case, mode=args.mode if args.tool == "mlflow" else "")
    write_result(args.out, result)


if __name__ == "__main__":
    main()

"""What every benchmark worker shares: the command line, timing, memory, and the result file.

A worker is one process for one (tool, benchmark). It runs in a fresh temporary folder (its
working directory, given as ``--dir``), measures with :func:`time.perf_counter`, and writes one
JSON object to ``--out``. The orchestrator (``run_all.py``) reads it; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TOOLS = ("loopml", "mlflow")


def worker_args(description: str, extra: Callable[[argparse.ArgumentParser], None]) -> Any:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tool", choices=TOOLS, required=True)
    parser.add_argument("--dir", type=Path, required=True, help="fresh folder for this run's store")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--profile", action="store_true", help="also profile one extra pass")
    extra(parser)
    args = parser.parse_args()
    args.dir = args.dir.resolve()
    args.dir.mkdir(parents=True, exist_ok=True)
    return args


def write_result(path: Path, result: dict[str, Any]) -> None:
    result.setdefault("memory", memory())
    path.write_text(json.dumps(result, indent=2, default=str))


def memory() -> dict[str, float]:
    """Resident memory of this process now and at its peak, in MiB."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    now_kib = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            now_kib = int(line.split()[1])
    return {"rss_mib": round(now_kib / 1024, 1), "peak_rss_mib": round(peak_kib / 1024, 1)}


def loopml_uri(folder: Path) -> dict[str, str]:
    return {"uri": f"sqlite:///{folder}/loopml.db", "artifacts": (folder / "artifacts").as_uri()}


def loopml_fluent_client() -> Any:
    """The client behind loopml's fluent functions.

    Named ``loopml.get_client()`` now; it was ``loopml.client()``, which the ``loopml.client``
    submodule shadowed once imported. Accept either while the API settles.
    """
    from loopml import fluent

    getter = getattr(fluent, "get_client", None) or fluent.client  # type: ignore[attr-defined]
    return getter()


def mlflow_uri(folder: Path) -> str:
    return f"sqlite:///{folder}/mlflow.db"


def mlflow_artifacts(folder: Path) -> str:
    return (folder / "mlartifacts").as_uri()


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.seconds = 0.0
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def mlflow_single_calls(mlflow: Any, n: int, *, asynchronous: bool) -> tuple[str, Any, Any]:
    """MLflow's side of benchmarks (a) and (f): ``n`` single ``log_metric`` calls in one run,
    timed with and without the final flush of its async queue. Returns (run id, total, calls)."""
    if asynchronous:
        mlflow.config.enable_async_logging(True)
    with mlflow.start_run(run_name="single") as run:
        mlflow.log_metric("warmup", 0.0, synchronous=not asynchronous)
        if asynchronous:
            mlflow.flush_async_logging()
        with Stopwatch() as total:
            with Stopwatch() as calls:
                for i in range(n):
                    mlflow.log_metric("m", 0.5, step=i, synchronous=not asynchronous)
            if asynchronous:
                mlflow.flush_async_logging()
    return run.info.run_id, total, calls


def summary(samples: Sequence[float]) -> dict[str, float]:
    """Median and spread of timings in seconds, reported in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "min_ms": ordered[0] * 1000,
        "p90_ms": p90 * 1000,
        "max_ms": ordered[-1] * 1000,
        "samples": len(ordered),
    }


def profile_top(work: Callable[[], Any], limit: int = 18) -> list[dict[str, Any]]:
    """Run ``work`` under cProfile; the functions with the most cumulative time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.runcall(work)
    stats = pstats.Stats(prof)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{_short(file)}:{line}({func})",
                "calls": ncalls,
                "tottime_s": round(tottime, 4),
                "cumtime_s": round(cumtime, 4),
            }
        )
    by_self = sorted(rows, key=lambda r: r["tottime_s"], reverse=True)[:limit]
    return [{"total_s": round(total, 4)}, *by_self]


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file

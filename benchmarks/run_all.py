"""Run every benchmark, one subprocess per (tool, benchmark), and write results.json + RESULTS.md.

    python benchmarks/run_all.py            # the full suite (about 10-15 minutes on 2 cores)
    python benchmarks/run_all.py --quick    # tiny sizes, a smoke run of every code path
    python benchmarks/run_all.py --only a,d # a subset: a b c d e (in process) f g h i j (servers)
                                            #   k (model serving) l (prediction log page)

Sizes come from environment variables (see ``Sizes``); each job gets a fresh temporary folder as
its working directory and store, an environment without LOOPML_*/MLFLOW_* settings from outside,
and a time limit. A job that fails is recorded with the end of its log; the others still run.
Servers a job started and left behind (it crashed, or ran out of time) are stopped after it.

With ``--only``, the benchmarks not rerun are kept from the existing results.json, each with the
command, start time and versions of the run that measured it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from server_proc import PIDFILE_ENV, stop_listed  # noqa: E402


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = os.environ.get(name)
    return tuple(int(x) for x in raw.split(",") if x.strip()) if raw else default


@dataclass(frozen=True)
class Sizes:
    log_n: int = 10_000  # (a) loopml
    log_n_mlflow_sync: int = 10_000  # (a) MLflow synchronous (about 35 s at 10,000)
    log_n_mlflow_async: int = 10_000  # (a) MLflow async modes (about 50 s unbuffered)
    batch_n: int = 10_000  # (b)
    batch_size: int = 1_000
    runs_n: int = 2_000  # (c) loopml
    runs_n_mlflow: int = 2_000  # (c) MLflow (about 45 runs/s here)
    search_sizes: tuple[int, ...] = (2_000, 20_000)  # (d) both tools
    search_loopml_sizes: tuple[int, ...] = (100_000, 1_000_000)  # (d) loopml alone
    search_repeats: int = 20
    import_repeats: int = 10
    # (f)-(j): the servers over HTTP
    server_log_n: int = 100_000  # (f) loopml
    server_log_n_mlflow: int = 500  # (f) MLflow, default workers (about 18 calls/s here)
    server_log_n_mlflow_w1: int = 2_000  # (f) MLflow --workers 1 (about 70 calls/s)
    server_log_n_mlflow_async: int = 10_000  # (f) MLflow async, buffered
    server_batch_n: int = 50_000  # (g)
    server_search_sizes: tuple[int, ...] = (20_000,)  # (h)
    server_starts: int = 3  # (i) starts per store kind
    server_idle_s: int = 5  # (j)
    # (k): model serving, seconds per load case and in-process predict calls
    serving_duration_s: int = 15
    serving_warmup_s: int = 2
    serving_raw_repeats: int = 200
    # (l): the deployment page over a 7-day prediction log; the old pandas page at a smaller size
    predlog_rows: int = 10_000_000
    predlog_pandas_rows: int = 2_000_000

    @classmethod
    def from_env(cls, quick: bool) -> Sizes:
        base = cls.quick() if quick else cls()
        return cls(
            log_n=_env_int("BENCH_LOG_N", base.log_n),
            log_n_mlflow_sync=_env_int("BENCH_LOG_N_MLFLOW_SYNC", base.log_n_mlflow_sync),
            log_n_mlflow_async=_env_int("BENCH_LOG_N_MLFLOW_ASYNC", base.log_n_mlflow_async),
            batch_n=_env_int("BENCH_BATCH_N", base.batch_n),
            batch_size=_env_int("BENCH_BATCH_SIZE", base.batch_size),
            runs_n=_env_int("BENCH_RUNS_N", base.runs_n),
            runs_n_mlflow=_env_int("BENCH_RUNS_N_MLFLOW", base.runs_n_mlflow),
            search_sizes=_env_ints("BENCH_SEARCH_SIZES", base.search_sizes),
            search_loopml_sizes=_env_ints("BENCH_SEARCH_LOOPML_SIZES", base.search_loopml_sizes),
            search_repeats=_env_int("BENCH_SEARCH_REPEATS", base.search_repeats),
            import_repeats=_env_int("BENCH_IMPORT_REPEATS", base.import_repeats),
            server_log_n=_env_int("BENCH_SERVER_LOG_N", base.server_log_n),
            server_log_n_mlflow=_env_int("BENCH_SERVER_LOG_N_MLFLOW", base.server_log_n_mlflow),
            server_log_n_mlflow_w1=_env_int(
                "BENCH_SERVER_LOG_N_MLFLOW_W1", base.server_log_n_mlflow_w1
            ),
            server_log_n_mlflow_async=_env_int(
                "BENCH_SERVER_LOG_N_MLFLOW_ASYNC", base.server_log_n_mlflow_async
            ),
            server_batch_n=_env_int("BENCH_SERVER_BATCH_N", base.server_batch_n),
            server_search_sizes=_env_ints("BENCH_SERVER_SEARCH_SIZES", base.server_search_sizes),
            server_starts=_env_int("BENCH_SERVER_STARTS", base.server_starts),
            server_idle_s=_env_int("BENCH_SERVER_IDLE_S", base.server_idle_s),
            serving_duration_s=_env_int("BENCH_SERVING_DURATION_S", base.serving_duration_s),
            serving_warmup_s=_env_int("BENCH_SERVING_WARMUP_S", base.serving_warmup_s),
            serving_raw_repeats=_env_int("BENCH_SERVING_RAW_REPEATS", base.serving_raw_repeats),
            predlog_rows=_env_int("BENCH_PREDLOG_ROWS", base.predlog_rows),
            predlog_pandas_rows=_env_int("BENCH_PREDLOG_PANDAS_ROWS", base.predlog_pandas_rows),
        )

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            log_n=2_000,
            log_n_mlflow_sync=50,
            log_n_mlflow_async=100,
            batch_n=2_000,
            batch_size=1_000,
            runs_n=20,
            runs_n_mlflow=10,
            search_sizes=(500,),
            search_loopml_sizes=(2_000,),
            search_repeats=3,
            import_repeats=2,
            server_log_n=5_000,
            server_log_n_mlflow=30,
            server_log_n_mlflow_w1=60,
            server_log_n_mlflow_async=200,
            server_batch_n=5_000,
            server_search_sizes=(500,),
            server_starts=1,
            server_idle_s=1,
            serving_duration_s=4,
            serving_warmup_s=1,
            serving_raw_repeats=50,
            predlog_rows=200_000,
            predlog_pandas_rows=100_000,
        )


@dataclass
class Job:
    bench: str
    label: str  # the column in the report: loopml, mlflow, mlflow_async …
    script: str
    args: list[str]
    tool: str | None = None  # None: the script takes no --tool (the import benchmark)
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 900.0


def plan(sizes: Sizes, only: set[str], profile: bool) -> list[Job]:
    jobs: list[Job] = []
    prof = ["--profile"] if profile else []
    if "a" in only:
        single = ["--case", "single"]
        jobs += [
            Job(
                "a",
                "loopml",
                "bench_logging.py",
                [*single, "--n", str(sizes.log_n), *prof],
                "loopml",
            ),
            Job(
                "a",
                "mlflow",
                "bench_logging.py",
                [*single, "--mode", "sync", "--n", str(sizes.log_n_mlflow_sync)],
                "mlflow",
            ),
            Job(
                "a",
                "mlflow_async",
                "bench_logging.py",
                [*single, "--mode", "async", "--n", str(sizes.log_n_mlflow_async)],
                "mlflow",
            ),
            # The same documented async mode, with MLflow's own batching of queued values.
            Job(
                "a",
                "mlflow_async_buffered",
                "bench_logging.py",
                [*single, "--mode", "async", "--n", str(sizes.log_n_mlflow_async)],
                "mlflow",
                env={"MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1"},
            ),
        ]
    if "b" in only:
        batch = [
            "--case",
            "batch",
            "--n",
            str(sizes.batch_n),
            "--batch-size",
            str(sizes.batch_size),
        ]
        jobs += [
            Job("b", "loopml", "bench_logging.py", [*batch, *prof], "loopml"),
            Job("b", "mlflow", "bench_logging.py", batch, "mlflow"),
        ]
    if "c" in only:
        jobs += [
            Job("c", "loopml", "bench_runs.py", ["--n", str(sizes.runs_n), *prof], "loopml"),
            Job("c", "mlflow", "bench_runs.py", ["--n", str(sizes.runs_n_mlflow)], "mlflow"),
        ]
    if "d" in only:
        repeats = ["--repeats", str(sizes.search_repeats)]
        for n in sizes.search_sizes:
            for tool in ("loopml", "mlflow"):
                extra = prof if tool == "loopml" else []
                jobs.append(
                    Job(
                        "d",
                        f"{tool}@{n}",
                        "bench_search.py",
                        ["--runs", str(n), *repeats, *extra],
                        tool,
                    )
                )
        for n in sizes.search_loopml_sizes:
            jobs.append(
                Job(
                    "d",
                    f"loopml@{n}",
                    "bench_search.py",
                    ["--runs", str(n), *repeats, *prof],
                    "loopml",
                    timeout=1800,
                )
            )
    if "e" in only:
        jobs.append(Job("e", "import", "bench_import.py", ["--repeats", str(sizes.import_repeats)]))
    jobs += server_plan(sizes, only)
    jobs += serving_plan(sizes, only)
    jobs += predlog_plan(sizes, only)
    return jobs


def server_plan(sizes: Sizes, only: set[str]) -> list[Job]:
    """(f)-(j): each job starts (and stops) its own server; loopml's default is 1 worker,
    MLflow's 4. ``_w1``/``_w2`` variants pass ``--workers``."""
    jobs: list[Job] = []

    def job(bench: str, label: str, tool: str, *args: str, env: dict[str, str] | None = None):
        jobs.append(Job(bench, label, "bench_server.py", list(args), tool, env or {}))

    if "f" in only:
        single = ("--case", "single")
        job("f", "loopml", "loopml", *single, "--n", str(sizes.server_log_n))
        job("f", "loopml_w2", "loopml", *single, "--n", str(sizes.server_log_n), "--workers", "2")
        job("f", "mlflow", "mlflow", *single, "--n", str(sizes.server_log_n_mlflow))
        n_w1 = str(sizes.server_log_n_mlflow_w1)
        job("f", "mlflow_w1", "mlflow", *single, "--n", n_w1, "--workers", "1")
        n_async = str(sizes.server_log_n_mlflow_async)
        buffered = {"MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "1"}
        job("f", "mlflow_async_buffered", "mlflow", *single, "--mode", "async", "--n", n_async,
            env=buffered)  # fmt: skip
    if "g" in only:
        batch = ("--case", "batch", "--n", str(sizes.server_batch_n))
        batch += ("--batch-size", str(sizes.batch_size))
        job("g", "loopml", "loopml", *batch)
        job("g", "loopml_w2", "loopml", *batch, "--workers", "2")
        job("g", "mlflow", "mlflow", *batch)
        job("g", "mlflow_w1", "mlflow", *batch, "--workers", "1")
    if "h" in only:
        for n in sizes.server_search_sizes:
            for tool in ("loopml", "mlflow"):
                job("h", f"{tool}@{n}", tool, "--case", "search", "--runs", str(n),
                    "--repeats", str(sizes.search_repeats))  # fmt: skip
    if "i" in only:
        for tool in ("loopml", "mlflow"):
            job("i", tool, tool, "--case", "start", "--starts", str(sizes.server_starts))
    if "j" in only:
        for tool in ("loopml", "mlflow"):
            job("j", tool, tool, "--case", "memory", "--idle", str(sizes.server_idle_s))
    return jobs


def serving_plan(sizes: Sizes, only: set[str]) -> list[Job]:
    """(k): each job trains the model, starts (and stops) one model server and loads it with
    ``loopml loadtest`` in a separate process. loopml serves with 1 worker by default,
    ``mlflow models serve`` with 1; MLServer runs from its own venv (run.sh) when it installed."""
    if "k" not in only:
        return []
    timing = ["--duration", str(sizes.serving_duration_s), "--warmup", str(sizes.serving_warmup_s)]
    timing += ["--raw-repeats", str(sizes.serving_raw_repeats)]
    return [
        Job("k", "loopml", "bench_serving.py", [*timing, "--oip"], "loopml"),
        Job("k", "loopml_w2", "bench_serving.py", [*timing, "--workers", "2"], "loopml"),
        Job("k", "mlflow", "bench_serving.py", timing, "mlflow"),
        Job("k", "mlserver", "bench_serving.py", timing, "mlserver"),
    ]


def predlog_plan(sizes: Sizes, only: set[str]) -> list[Job]:
    """(l): the deployment page's traffic summary over 7 days of the prediction log; DuckDB at
    the full size and at the size the old pandas page is run at (it holds whole rows)."""
    if "l" not in only:
        return []
    full, small = sizes.predlog_rows, sizes.predlog_pandas_rows
    return [
        Job("l", f"duckdb@{full}", "bench_predlog.py",
            ["--approach", "duckdb", "--rows", str(full)]),
        Job("l", f"duckdb@{small}", "bench_predlog.py",
            ["--approach", "duckdb", "--rows", str(small)]),
        Job("l", f"pandas@{small}", "bench_predlog.py",
            ["--approach", "pandas", "--rows", str(small)]),
    ]  # fmt: skip


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(HERE)
    env.update(extra)
    return env


def wait_for_quiet(max_seconds: float, threshold: float) -> float:
    """Wait (at most ``max_seconds``) until the 1-minute load average drops below ``threshold``:
    the machine is shared, and other work on its 2 cores skews every timing."""
    t0 = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - t0 < max_seconds:
        time.sleep(5)
    return time.monotonic() - t0


def run_job(job: Job, tmp_root: Path | None, keep: bool) -> dict[str, Any]:
    # Only [A-Za-z0-9_-] in the folder name: loopml (migrate.py) percent-encodes "@" in paths.
    safe = re.sub(r"[^A-Za-z0-9_-]", "-", f"bench-{job.bench}-{job.label}-")
    folder = Path(tempfile.mkdtemp(prefix=safe, dir=tmp_root))
    out = folder / "result.json"
    cmd = [sys.executable, str(HERE / job.script)]
    if job.tool:
        cmd += ["--tool", job.tool]
    cmd += ["--dir", str(folder / "store"), "--out", str(out), *job.args]
    log = folder / "log.txt"
    pidfile = folder / "servers.pids"
    env = _clean_env(job.env) | {PIDFILE_ENV: str(pidfile)}
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    left_behind = 0
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            code: int | str = proc.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            code = f"timeout after {job.timeout:.0f} s"
        finally:
            if proc.poll() is None:  # a timeout or Ctrl-C: SIGTERM lets it stop its servers
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            left_behind = stop_listed(pidfile)
    elapsed = time.perf_counter() - t0
    if code == 0 and out.exists():
        result = json.loads(out.read_text())
    else:
        lines = log.read_text(errors="replace").splitlines()
        tail = [line for line in lines if line.strip().strip("^~")][-30:]
        result = {"error": f"exit {code}", "log_tail": tail}
    result["job_seconds"] = round(elapsed, 2)
    # Other work on this machine skews timings: keep the 1-minute load average around each job.
    result["load_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    result["command"] = shlex.join(cmd[1:]).replace(str(folder), "$TMP")
    if left_behind:
        result["server_processes_killed_after"] = left_behind
    if job.env:
        result["env"] = job.env
    if keep:
        result["folder"] = str(folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def machine_facts() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpu_model": cpu,
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    git = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "loopml": ver("loopml") + (f" (git {git})" if git else ""),
        "mlflow": ver("mlflow"),
        "sqlalchemy": ver("sqlalchemy"),
        "sqlite": sqlite3.sqlite_version,
        "alembic": ver("alembic"),
        "pandas": ver("pandas"),
        "numpy": ver("numpy"),
        "scikit-learn": ver("scikit-learn"),
        "mlserver": _mlserver_version(),
    }


def _mlserver_version() -> str:
    """MLServer's version in its own venv inside .venv-bench (benchmark (k); run.sh makes it)."""
    venv = Path(sys.executable).parent.parent / "mlserver"
    if not (venv / ".installed").exists():
        return "not installed"
    found = sorted(venv.glob("lib/python*/site-packages/mlserver-*.dist-info"))
    return found[0].name.removeprefix("mlserver-").removesuffix(".dist-info") if found else "?"


ALL = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l")


def keep_earlier(results: dict[str, Any], path: Path, ran: set[str]) -> None:
    """Carry the benchmarks this run skipped over from the results.json at ``path``, with the
    command, start time, versions and sizes of the run that measured each."""
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return
    if old.get("quick") != results["quick"]:
        return  # never mix a smoke run with real numbers
    earlier = old.get("earlier", {})
    for bench, data in old.get("benchmarks", {}).items():
        if bench in ran or bench in results["benchmarks"]:
            continue
        results["benchmarks"][bench] = data
        results.setdefault("earlier", {})[bench] = earlier.get(bench) or {
            k: old.get(k) for k in ("command", "started", "duration_s", "versions", "sizes")
        }


def _command() -> str:
    """The command as typed, with the BENCH_* settings that shaped this run in front."""
    command = os.environ.get("BENCH_COMMAND") or shlex.join([Path(sys.executable).name, *sys.argv])
    settings = sorted(
        f"{k}={shlex.quote(v)}"
        for k, v in os.environ.items()
        if k.startswith("BENCH_") and k != "BENCH_COMMAND"
    )
    return " ".join([*settings, command])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: a smoke run (a-e < 1 min, f-j about 5)"
    )
    parser.add_argument(
        "--only", default=",".join(ALL), help="benchmarks to run, e.g. a,d or f,g,h,i,j"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the loopml profiles")
    parser.add_argument("--keep", action="store_true", help="keep each job's temporary folder")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    parser.add_argument("--report", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()

    sizes = Sizes.from_env(args.quick)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; choose from {','.join(ALL)}")
    tmp_root = Path(os.environ["BENCH_TMPDIR"]) if os.environ.get("BENCH_TMPDIR") else None
    jobs = plan(sizes, only, profile=not (args.no_profile or args.quick))
    started = time.time()
    results: dict[str, Any] = {
        "command": _command(),
        "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "machine": machine_facts(),
        "versions": versions(),
        "sizes": asdict(sizes),
        "benchmarks": {},
    }
    wait_max = float(os.environ.get("BENCH_WAIT_IDLE", 0))
    idle_load = float(os.environ.get("BENCH_IDLE_LOAD", 1.0))
    for i, job in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] ({job.bench}) {job.label} …", end=" ", flush=True)
        waited = wait_for_quiet(wait_max, idle_load) if wait_max > 0 else 0.0
        result = run_job(job, tmp_root, args.keep)
        if waited >= 1:
            result["waited_for_quiet_s"] = round(waited)
        results["benchmarks"].setdefault(job.bench, {})[job.label] = result
        print(result.get("error") or f"{result['job_seconds']:.1f} s", flush=True)
    results["duration_s"] = round(time.time() - started, 1)
    keep_earlier(results, args.out, only)
    results["benchmarks"] = dict(sorted(results["benchmarks"].items()))

    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    from report import write_report

    write_report(results, args.report)
    print(f"wrote {args.out} and {args.report} in {results['duration_s']:.0f} s")


if __name__ == "__main__":
    main()

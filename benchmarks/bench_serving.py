"""(k) model serving over HTTP on loopback: ``loopml serve`` vs ``mlflow models serve`` (and
MLServer when its venv is installed).

One job per server setup. Each trains the same model (``RandomForestClassifier(n_estimators=100,
random_state=0)`` fitted on ``make_classification(n_samples=10_000, n_features=20,
random_state=0)`` as a DataFrame with columns f0..f19), times the raw in-process ``predict`` of one
row, stores the model the tool's own way, starts the tool's server (its own process group, see
``server_proc.py``), checks one answer against the model's own predictions, and then loads it with
``loopml loadtest`` run as a separate process:

* ``c1``: single-row requests from 1 worker,
* ``c16``: single-row requests from 16 workers,
* ``c16_rows100``: 100-row requests from 16 workers,

each a closed loop of ``--duration`` seconds after ``--warmup`` seconds that are not counted.
loopml and MLflow get the same ``POST /invocations`` body (``dataframe_split``); ``--oip`` adds
the same three cases on loopml's Open Inference Protocol route (one FP64 tensor per column), and
the two at concurrency 16 with binary tensors (``oip_bin_``: the same tensors as raw bytes after
the JSON, binary outputs asked for, as ``tritonclient`` sends by default).
MLServer (``mlserver start``, sklearn runtime, the same model as a joblib file) is called on its
OIP route with one ``[rows, 20]`` FP64 tensor.

MLServer lives in its own venv inside ``.venv-bench`` (``run.sh`` creates it): its pins (FastAPI
0.115, Starlette 0.46, uvloop) would otherwise change the servers loopml and MLflow run on. When
it is missing, the job records why and measures nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Stopwatch, write_result
from server_proc import (
    HOST,
    QUIET_MLFLOW,
    Server,
    free_port,
    log_tail,
    stopped_on_signals,
)

os.environ.update(QUIET_MLFLOW)  # before MLflow is imported anywhere

BIN = Path(sys.executable).parent  # .venv-bench/bin (not resolved: the venv's own scripts)
MLSERVER_VENV = BIN.parent / "mlserver"  # created by run.sh
MLSERVER_STAMP = MLSERVER_VENV / ".installed"
MLSERVER_FAILED = BIN.parent / "mlserver.failed"  # why run.sh could not install it
N_FEATURES = 20
COLUMNS = [f"f{i}" for i in range(N_FEATURES)]
# (case, concurrency, rows per request)
CASES = (("c1", 1, 1), ("c16", 16, 1), ("c16_rows100", 16, 100))
BINARY_CASES = CASES[1:]  # OIP with binary tensors: 1 and 100 rows at concurrency 16
JSON_HEADERS = {"Content-Type": "application/json"}
BINARY_HEADER = "Inference-Header-Content-Length"
HEALTH = {"loopml": "/v2/health/ready", "mlflow": "/ping", "mlserver": "/v2/health/ready"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tool", choices=["loopml", "mlflow", "mlserver"], required=True)
    p.add_argument("--dir", type=Path, required=True, help="fresh folder for this job's store")
    p.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    p.add_argument("--workers", type=int, default=0, help="server workers; 0: the tool's default")
    p.add_argument("--duration", type=float, default=15.0, help="seconds measured per case")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent first, not counted")
    p.add_argument("--raw-repeats", type=int, default=200, help="in-process predict calls timed")
    p.add_argument("--oip", action="store_true", help="loopml: also its OIP /v2/…/infer route")
    args = p.parse_args()
    args.dir = args.dir.resolve()
    args.dir.mkdir(parents=True, exist_ok=True)
    return args


# the model -------------------------------------------------------------------------------------
def train() -> tuple[Any, Any, Any, float]:
    """(model, features as a DataFrame, labels, seconds): the issue's model, deterministic."""
    import pandas as pd
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    x, y = make_classification(n_samples=10_000, n_features=N_FEATURES, random_state=0)
    frame = pd.DataFrame(x, columns=COLUMNS)
    with Stopwatch() as sw:
        model = RandomForestClassifier(n_estimators=100, random_state=0).fit(frame, y)
    return model, frame, y, sw.seconds


def _median_ms(call: Any, repeats: int, warm: int = 10) -> dict[str, float]:
    for _ in range(warm):
        call()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered) * 1000,
        "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))] * 1000,
        "min_ms": ordered[0] * 1000,
        "calls": repeats,
    }


def raw_predict(model: Any, frame: Any, repeats: int) -> dict[str, Any]:
    """The in-process ``predict`` the servers are compared with: one row as a DataFrame (what
    ``/invocations`` hands the model), one row as a NumPy array, and 100 rows."""
    one, hundred = frame.iloc[[0]], frame.iloc[:100]
    one_np = frame.to_numpy()[:1]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NumPy input to a model fitted with feature names
        numpy_one = _median_ms(lambda: model.predict(one_np), max(20, repeats // 4))
    return {
        "one_row": _median_ms(lambda: model.predict(one), repeats),
        "one_row_numpy": numpy_one,
        "rows100": _median_ms(lambda: model.predict(hundred), max(20, repeats // 4)),
    }


# payloads ------------------------------------------------------------------------------------
Bodies = dict[int, tuple[bytes, dict[str, str]]]  # rows -> (request body, its headers)


def payloads(frame: Any, kind: str) -> Bodies:
    """The request body for 1 and 100 rows (the first rows of the training data)."""
    if kind == "oip_binary":
        return binary_payloads(frame)
    out = {}
    for rows in sorted({r for _, _, r in CASES}):
        data = frame.iloc[:rows].to_numpy().tolist()
        if kind == "invocations":  # MLflow's scoring format, as both loopml and MLflow take it
            doc: dict[str, Any] = {"dataframe_split": {"columns": COLUMNS, "data": data}}
        elif kind == "oip_columns":  # loopml's OIP with a column signature: a tensor per column
            doc = {
                "inputs": [
                    {"name": c, "shape": [rows], "datatype": "FP64", "data": [r[i] for r in data]}
                    for i, c in enumerate(COLUMNS)
                ]
            }
        else:  # MLServer's sklearn runtime: one [rows, 20] tensor
            doc = {
                "inputs": [
                    {"name": "input-0", "shape": [rows, N_FEATURES], "datatype": "FP64",
                     "data": data}
                ]
            }  # fmt: skip
        out[rows] = (json.dumps(doc).encode(), JSON_HEADERS)
    return out


def binary_payloads(frame: Any) -> Bodies:
    """OIP with the binary tensor data extension: one FP64 tensor per column, its raw
    little-endian bytes after the JSON in column order, every output asked for as binary."""
    import numpy as np

    out: Bodies = {}
    for rows in sorted({r for _, _, r in BINARY_CASES}):
        columns = [np.ascontiguousarray(frame[c].to_numpy()[:rows], dtype="<f8") for c in COLUMNS]
        doc = {
            "inputs": [
                {"name": c, "shape": [rows], "datatype": "FP64",
                 "parameters": {"binary_data_size": col.nbytes}}
                for c, col in zip(COLUMNS, columns, strict=True)
            ],
            "parameters": {"binary_data_output": True},
        }  # fmt: skip
        head = json.dumps(doc).encode()
        headers = {"Content-Type": "application/octet-stream", BINARY_HEADER: str(len(head))}
        out[rows] = (head + b"".join(c.tobytes() for c in columns), headers)
    return out


def answer_labels(body: bytes, headers: dict[str, str]) -> list[int]:
    length = headers.get(BINARY_HEADER.lower())
    doc = json.loads(body if length is None else body[: int(length)])
    if "predictions" in doc:
        return [int(v) for v in doc["predictions"]]
    out = doc["outputs"][0]
    if "data" not in out:  # binary: the first output's bytes follow the JSON
        import numpy as np

        size = out["parameters"]["binary_data_size"]
        start = int(length or 0)
        dtype = {"INT64": "<i8", "INT32": "<i4", "FP64": "<f8", "FP32": "<f4"}[out["datatype"]]
        return [int(v) for v in np.frombuffer(body[start : start + size], dtype)]
    return [int(v[0] if isinstance(v, list) else v) for v in out["data"]]


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, response.read(), answer_headers
    finally:
        conn.close()


# servers ---------------------------------------------------------------------------------------
@dataclass
class ModelServer(Server):
    """A model server: ``argv`` without the port (added per tool), its own health path."""

    argv: list[str] = field(default_factory=list)
    health: str = "/ping"
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        if self.tool == "mlserver":  # its ports come from the environment
            return list(self.argv)
        return [*self.argv, "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ) | QUIET_MLFLOW | self.extra_env
        # `mlflow models serve` runs `exec uvicorn …` through bash: the venv's bin comes first,
        # as if it were activated.
        env["PATH"] = f"{self.argv[0].rsplit('/', 1)[0]}{os.pathsep}{env.get('PATH', '')}"
        if self.tool == "mlserver":
            env |= {
                "MLSERVER_HOST": HOST,
                "MLSERVER_HTTP_PORT": str(self.port),
                "MLSERVER_GRPC_PORT": str(free_port()),
                "MLSERVER_METRICS_PORT": str(free_port()),
            }
        return env

    def health_path(self) -> str:
        return self.health


def setup_loopml(args: Any, model: Any, frame: Any) -> tuple[ModelServer, dict[str, Any]]:
    import loopml

    home = args.dir / "home"
    client = loopml.Client(loopml.Settings(home=home))
    try:
        with Stopwatch() as sw:
            eid = client.create_experiment("serving").experiment_id
            run = client.create_run(eid, run_name="rf")
            info = client.log_model(run.run_id, model, "model", input_example=frame.head(5))
    finally:
        client.close()
    files = sorted(p.name for p in home.rglob("*") if p.parent.name == "model" and p.is_file())
    argv = [str(BIN / "loopml"), "serve", info.source, "--host", HOST]
    argv += ["--workers", str(args.workers)] if args.workers else []
    srv = ModelServer("loopml", args.dir, log=args.dir.parent / "server.log", argv=argv,
                      health=HEALTH["loopml"], extra_env={"LOOPML_HOME": str(home)})  # fmt: skip
    facts = {"model_log_s": sw.seconds, "model_ref": info.source, "flavor": info.flavor,
             "package_files": files}  # fmt: skip
    return srv, facts


def setup_mlflow(args: Any, model: Any, frame: Any) -> tuple[ModelServer, dict[str, Any]]:
    import mlflow
    import mlflow.sklearn

    store = args.dir / "mlflow"
    store.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with Stopwatch() as sw:
        eid = mlflow.create_experiment("serving", artifact_location=(store / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=eid):
            # MLflow 3 writes sklearn models with skops and refuses to log one whose types it
            # does not trust; the tree storage of a random forest is one of those.
            info = mlflow.sklearn.log_model(
                model, name="model", input_example=frame.head(5),
                skops_trusted_types=["sklearn.tree._tree.Tree"],
            )  # fmt: skip
    argv = [str(BIN / "mlflow"), "models", "serve", "-m", info.model_uri, "--env-manager", "local",
            "--host", HOST]  # fmt: skip
    argv += ["--workers", str(args.workers)] if args.workers else []
    srv = ModelServer("mlflow", args.dir, log=args.dir.parent / "server.log", argv=argv,
                      health=HEALTH["mlflow"], extra_env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    return srv, {"model_log_s": sw.seconds, "model_ref": info.model_uri}


def mlserver_missing() -> str | None:
    """Why MLServer cannot run here, or None."""
    if os.environ.get("BENCH_MLSERVER") == "0":
        return "disabled with BENCH_MLSERVER=0"
    if MLSERVER_STAMP.exists() and (MLSERVER_VENV / "bin" / "mlserver").exists():
        return None
    if MLSERVER_FAILED.exists():
        lines = [ln.strip() for ln in MLSERVER_FAILED.read_text(errors="replace").splitlines()]
        return " / ".join(ln for ln in lines if ln)[-600:]
    return f"no MLServer venv at {MLSERVER_VENV} (benchmarks/run.sh creates it)"


def mlserver_version() -> str:
    out = subprocess.run(
        [str(MLSERVER_VENV / "bin" / "python"), "-c",
         "from importlib.metadata import version as v; "
         "print(v('mlserver'), v('mlserver-sklearn'), v('scikit-learn'), v('uvloop'))"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    parts = out.stdout.split()
    if len(parts) != 4:
        return "unknown"
    return f"mlserver {parts[0]}, mlserver-sklearn {parts[1]}, scikit-learn {parts[2]}, " + (
        f"uvloop {parts[3]}"
    )


def setup_mlserver(args: Any, model: Any, frame: Any) -> tuple[ModelServer, dict[str, Any]]:
    import joblib

    folder = args.dir / "mlserver" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    with Stopwatch() as sw:
        joblib.dump(model, folder / "model.joblib")
        settings = {"name": "model", "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib"}}  # fmt: skip
        (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    env = {"MLSERVER_PARALLEL_WORKERS": str(args.workers)} if args.workers else {}
    argv = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder.parent)]
    srv = ModelServer("mlserver", args.dir, log=args.dir.parent / "server.log", argv=argv,
                      health=HEALTH["mlserver"], extra_env=env)  # fmt: skip
    return srv, {"model_log_s": sw.seconds, "model_ref": "model.joblib (joblib.dump)",
                 "mlserver_versions": mlserver_version()}  # fmt: skip


# load ------------------------------------------------------------------------------------------
def loadtest(
    args: Any, url: str, body: bytes, headers: dict[str, str], concurrency: int, name: str
) -> dict[str, Any]:
    """``loopml loadtest`` in its own process; its JSON, trimmed, plus the command."""
    binary = BINARY_HEADER in headers
    payload = args.dir / f"payload-{name}.{'oip' if binary else 'json'}"
    payload.write_bytes(body)
    out = args.dir / f"loadtest-{name}.json"
    cmd = [str(BIN / "loopml"), "loadtest", url, "--concurrency", str(concurrency),
           "--duration", f"{args.duration:g}", "--payload", str(payload), "--method", "POST",
           *[a for k, v in headers.items() for a in ("--header", f"{k}:{v}")],
           "--json-out", str(out), "--warmup", f"{args.warmup:g}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    env["LOOPML_HOME"] = str(args.dir / "loadtest-home")
    shown = _hide(" ".join([Path(cmd[0]).name, *cmd[1:]]), args.dir)
    budget = args.warmup + args.duration + 120
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=budget,
                              check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": f"loadtest did not finish in {budget:.0f} s", "command": shown}
    if proc.returncode != 0 or not out.exists():
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()][-8:]
        return {"error": f"loadtest exit {proc.returncode}", "log_tail": tail, "command": shown}
    r = json.loads(out.read_text())
    lat = r["latency"]
    return {
        "endpoint": "/" + url.split("/", 3)[3],
        "concurrency": r["concurrency"],
        "rows_per_request": r["rows_per_request"],
        "duration_s": r["duration_s"],
        "sent": r["sent"],
        "ok": r["ok"],
        "errors": r["errors"],
        "error_count": r["error_count"],
        "requests_per_s": r["requests_per_s"],
        "ok_per_s": r["ok"] / r["duration_s"] if r["duration_s"] > 0 else 0.0,
        "rows_per_s": r["rows_per_s"],
        **{k: lat[k] for k in ("mean_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")},
        "payload_bytes": len(body),
        "command": shown,
    }


def run_cases(
    args: Any, srv: ModelServer, route: str, bodies: Bodies, prefix: str, expected: Any,
    which: tuple[tuple[str, int, int], ...] = CASES,
) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Check one answer per body against the model, then the load cases (``which``)."""
    correct = True
    for rows, (body, headers) in bodies.items():
        status, answer, answer_headers = post(srv.port, route, body, headers)
        if status != 200 or answer_labels(answer, answer_headers) != expected[:rows]:
            print(f"{route} with {rows} rows: HTTP {status}: {answer[:300]!r}")
            correct = False
    cases = {}
    for name, concurrency, rows in which:
        key = f"{prefix}{name}"
        print(f"{key}: {concurrency} workers, {rows} rows per request …", flush=True)
        body, headers = bodies[rows]
        cases[key] = loadtest(args, srv.url + route, body, headers, concurrency, key)
    return cases, correct


def main() -> None:
    args = parse_args()
    result: dict[str, Any] = {"tool": args.tool, "workers": args.workers or "default"}
    if args.tool == "mlserver":
        missing = mlserver_missing()
        if missing:
            result["skipped"] = f"not installed: {missing}"
            write_result(args.out, result)
            return
    from importlib.metadata import version

    model, frame, _y, train_s = train()
    expected = model.predict(frame.iloc[:100]).tolist()
    result |= {"train_s": train_s, "scikit_learn": version("scikit-learn"),
               "raw_predict": raw_predict(model, frame, args.raw_repeats),
               "duration_s": args.duration, "warmup_s": args.warmup}  # fmt: skip
    setup = {"loopml": setup_loopml, "mlflow": setup_mlflow, "mlserver": setup_mlserver}
    srv, facts = setup[args.tool](args, model, frame)
    result |= facts
    with stopped_on_signals():
        try:
            result["start_s"] = srv.start()
            result["server_command"] = _shown(srv.command(), args.dir)
            if args.tool == "mlserver":
                route, kind = "/v2/models/model/infer", "oip_tensor"
            else:
                route, kind = "/invocations", "invocations"
            cases, correct = run_cases(args, srv, route, payloads(frame, kind), "", expected)
            if args.oip and args.tool == "loopml":
                more, ok = run_cases(args, srv, "/v2/models/model/infer",
                                     payloads(frame, "oip_columns"), "oip_", expected)  # fmt: skip
                binary, binary_ok = run_cases(
                    args, srv, "/v2/models/model/infer", payloads(frame, "oip_binary"),
                    "oip_bin_", expected, BINARY_CASES,
                )  # fmt: skip
                cases |= more | binary
                correct = correct and ok and binary_ok
            mem = srv.memory()
            result["server_memory_after"] = {k: mem[k] for k in ("rss_mib", "pss_mib", "processes")}
        except BaseException:
            for line in log_tail(args.dir.parent / "server.log", 25):
                print("server.log:", line)
            raise
        finally:
            srv.stop()
    result["cases"] = cases
    result["matches_expected"] = correct
    failed = {k: c["error"] for k, c in cases.items() if "error" in c}
    if failed:
        result["case_errors"] = failed
    write_result(args.out, result)


def _shown(cmd: list[str], folder: Path) -> str:
    return _hide(
        " ".join(Path(c).name if c.startswith("/") and "bin/" in c else c for c in cmd), folder
    )


def _hide(text: str, folder: Path) -> str:
    """The command line without this run's folder and port."""
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", text.replace(str(folder), "$STORE"))
    return re.sub(r"--port \d+", "--port $PORT", text)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Side-by-side benchmarks of loopml and MLflow on SQLite: `make bench`, or
#   bash benchmarks/run.sh [--quick] [--only a,b,c,d,e] [--keep] [--no-profile]
# Creates .venv-bench at the repo root (never touches .venv), installs loopml and MLflow into it,
# runs every benchmark and writes benchmarks/results.json and benchmarks/RESULTS.md.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv-bench
BIN="$VENV/bin"

# MLflow 3.18.0's mlflow-skinny is not published on the index this machine reaches, so pin the
# newest complete 3.x release explicitly; pandas 3 and SQLAlchemy 2.1 import fine with it.
MLFLOW_PINS=(
  "mlflow==3.17.2"
  "mlflow-skinny==3.17.2"
  "mlflow-tracing==3.17.2"
)
STAMP="$VENV/.installed-bench"
WANT="$(cat pyproject.toml; printf '%s\n' "${MLFLOW_PINS[@]}")"

if [ ! -x "$BIN/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$BIN/python" -m pip install -q --upgrade pip
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  "$BIN/python" -m pip install -q -e . "${MLFLOW_PINS[@]}"
  printf '%s' "$WANT" > "$STAMP"
fi

# Fail early, with a clear message, if either tool does not import.
"$BIN/python" -c "import loopml, mlflow" || {
  echo "loopml or mlflow does not import in $VENV" >&2
  exit 1
}

# Benchmark (k) also serves the model with MLServer, in a venv of its own inside .venv-bench: its
# pins (FastAPI 0.115, Starlette 0.46, uvloop) would otherwise change the servers loopml and MLflow
# run on. uvloop < 0.22: MLServer 1.7.1's inference workers call asyncio.get_event_loop(), which
# newer uvloop refuses. scikit-learn and NumPy match .venv-bench, so the joblib file loads as is.
# A failed install only skips MLServer: the reason goes to $VENV/mlserver.failed and the report.
# BENCH_MLSERVER=0 skips it without trying.
ONLY=""
PREV=""
for ARG in "$@"; do
  case "$ARG" in --only=*) ONLY="${ARG#--only=}" ;; esac
  if [ "$PREV" = "--only" ]; then ONLY="$ARG"; fi
  PREV="$ARG"
done
ONLY="${ONLY// /}"
MLS_VENV="$VENV/mlserver"
MLS_FAILED="$VENV/mlserver.failed"
if [ "${BENCH_MLSERVER:-1}" != "0" ] && { [ -z "$ONLY" ] || [[ ",$ONLY," == *",k,"* ]]; }; then
  SAME="$("$BIN/python" -c 'from importlib.metadata import version as v
print("scikit-learn==" + v("scikit-learn"), "numpy==" + v("numpy"))')" || SAME=""
  # shellcheck disable=SC2206
  MLS_PINS=("mlserver==1.7.1" "mlserver-sklearn==1.7.1" "uvloop<0.22" $SAME)
  MLS_WANT="$(printf '%s\n' "${MLS_PINS[@]}")"
  if [ ! -f "$MLS_VENV/.installed" ] || [ "$(cat "$MLS_VENV/.installed")" != "$MLS_WANT" ]; then
    rm -f "$MLS_VENV/.installed" "$MLS_FAILED"
    MLS_LOG="$VENV/mlserver-install.log"
    echo "installing MLServer for benchmark (k) into $MLS_VENV …" >&2
    if { [ -x "$MLS_VENV/bin/python" ] || "$PYTHON" -m venv "$MLS_VENV"; } >"$MLS_LOG" 2>&1 &&
      "$MLS_VENV/bin/python" -m pip install -q "${MLS_PINS[@]}" >>"$MLS_LOG" 2>&1 &&
      "$MLS_VENV/bin/python" -c "import mlserver, mlserver_sklearn" >>"$MLS_LOG" 2>&1; then
      printf '%s' "$MLS_WANT" >"$MLS_VENV/.installed"
    else
      {
        echo "pip install ${MLS_PINS[*]} failed:"
        grep -v -e "is ignored" -e "^\s*$" "$MLS_LOG" | tail -n 4 || true
      } >"$MLS_FAILED"
      echo "MLServer not installed, benchmark (k) skips it: $(tr '\n' ' ' <"$MLS_FAILED")" >&2
    fi
  fi
fi

if [ -n "${MAKELEVEL:-}" ]; then
  DEFAULT_COMMAND="make bench"
else
  DEFAULT_COMMAND="bash benchmarks/run.sh${*:+ $*}"
fi
export BENCH_COMMAND="${BENCH_COMMAND:-$DEFAULT_COMMAND}"
exec "$BIN/python" benchmarks/run_all.py "$@"

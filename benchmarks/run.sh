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

if [ -n "${MAKELEVEL:-}" ]; then
  DEFAULT_COMMAND="make bench"
else
  DEFAULT_COMMAND="bash benchmarks/run.sh${*:+ $*}"
fi
export BENCH_COMMAND="${BENCH_COMMAND:-$DEFAULT_COMMAND}"
exec "$BIN/python" benchmarks/run_all.py "$@"

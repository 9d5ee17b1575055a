"""(e) ``import loopml`` vs ``import mlflow`` in a fresh interpreter.

Each sample is the wall time of a whole ``python -c "import X"`` subprocess; the result is the
median over ``--repeats`` runs minus the median of ``python -c "pass"`` (interpreter start-up).
The three commands are interleaved so drift in the machine's load hits them alike. One extra,
untimed ``python -X importtime -c "import X"`` lists the slowest modules each import pulls in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

STATEMENTS = {
    "baseline": "pass",
    "loopml": "import loopml",
    "mlflow": "import mlflow",
    # loopml imports lazily; this is what a first start_run() pulls in before touching the store.
    "loopml_api": "import loopml; loopml.Client; loopml.start_run",
}


def _wall(code: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t0


def _importtime(code: str, cwd: Path, limit: int = 12) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in out.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative_us, raw_name = line[12:].split("|")
        rows.append((int(cumulative_us), raw_name[1:].rstrip()))  # nested names are indented
    # Modules imported directly by a top-level import: indented by exactly two spaces.
    children = [
        (us, name.strip())
        for us, name in rows
        if name.startswith("  ") and not name.startswith("   ")
    ]
    top_level = [(us, name) for us, name in rows if not name.startswith(" ")]
    return {
        "modules": len(rows),
        "top_level_ms": {name: us / 1000 for us, name in top_level if us >= 5000},
        "slowest_direct_imports": [
            {"module": name, "cumulative_ms": us / 1000}
            for us, name in sorted(children, reverse=True)[:limit]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tools", default="loopml,mlflow,loopml_api")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    names = ["baseline", *args.tools.split(",")]

    for name in names:  # one untimed pass each: warm the OS page cache and .pyc files
        _wall(STATEMENTS[name], args.dir)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:
            samples[name].append(_wall(STATEMENTS[name], args.dir))

    baseline = statistics.median(samples["baseline"])
    result: dict[str, Any] = {"repeats": args.repeats, "baseline_ms": baseline * 1000}
    for name in names[1:]:
        median = statistics.median(samples[name])
        result[name] = {
            "import_ms": (median - baseline) * 1000,
            "process_median_ms": median * 1000,
            "process_min_ms": min(samples[name]) * 1000,
            "importtime": _importtime(STATEMENTS[name], args.dir),
        }
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

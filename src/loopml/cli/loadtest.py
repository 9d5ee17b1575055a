"""``loopml loadtest``: load-test an endpoint and gate on its p99 latency and error rate.

Exit codes: 0 when every gate passes, 2 when a gate fails (usable as a promotion gate and in
CI), 1 for bad arguments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from loopml.cli.output import command, console, err_console, print_table
from loopml.errors import InvalidArgument


def _headers(values: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise InvalidArgument(f"--header wants NAME:VALUE, got {value!r}")
        headers[name.strip()] = content.strip()
    return headers


def _payload(path: Path | None, headers: dict[str, str]) -> bytes | None:
    """The payload file; JSON, or with ``Inference-Header-Content-Length: N`` an OIP body with
    binary tensors whose first N bytes are JSON."""
    from loopml.backends.http.loadgen import json_length

    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read the payload {str(path)!r}: {e.strerror}") from e
    length = json_length(data, headers)
    try:
        json.loads(data if length is None else data[:length])
    except ValueError as e:
        raise InvalidArgument(f"the payload {str(path)!r} is not JSON: {e}") from e
    return data


@command
def loadtest(
    url: str = typer.Argument(..., help="The endpoint, e.g. http://127.0.0.1:5101/predict."),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Workers."),
    duration: float = typer.Option(10.0, "--duration", "-d", min=0.001, help="Seconds measured."),
    rate: float | None = typer.Option(
        None, "--rate", help="Open loop: requests per second in total (default: closed loop)."
    ),
    payload: Path | None = typer.Option(
        None,
        "--payload",
        help="A JSON file to send (an OIP body with binary tensors when "
        "-H Inference-Header-Content-Length:N gives the length of its JSON part).",
    ),
    method: str | None = typer.Option(
        None, "--method", help="HTTP method (default: POST with a payload, GET without)."
    ),
    header: list[str] = typer.Option([], "--header", "-H", help="A header, NAME:VALUE."),
    json_out: Path | None = typer.Option(None, "--json-out", help="Write the result as JSON."),
    max_p99_ms: float | None = typer.Option(None, "--max-p99-ms", help="Gate: p99 latency."),
    max_error_rate: float | None = typer.Option(
        None, "--max-error-rate", help="Gate: errors / requests, e.g. 0.01."
    ),
    warmup: float = typer.Option(0.0, "--warmup", min=0.0, help="Seconds sent, not counted."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.001, help="Seconds per request."),
) -> None:
    """Send requests from CONCURRENCY workers for DURATION seconds; print throughput, latency
    percentiles and errors; exit 2 when a gate fails."""
    from loopml.backends.http.loadgen import run_http_load
    from loopml.serving.loadtest import check_gates

    if rate is not None and rate <= 0:
        raise InvalidArgument(f"--rate must be positive, got {rate:g}")
    if max_error_rate is not None and not 0 <= max_error_rate <= 1:
        raise InvalidArgument(f"--max-error-rate is a fraction in [0, 1], got {max_error_rate:g}")
    headers = _headers(header)
    body = _payload(payload, headers)
    result = run_http_load(url, concurrency=concurrency, duration_s=duration, rate=rate,
                           payload=body, method=method, headers=headers,
                           warmup_s=warmup, timeout_s=timeout)  # fmt: skip
    failures = check_gates(result, max_p99_ms=max_p99_ms, max_error_rate=max_error_rate)
    report = {**result.to_dict(), "gates": {"max_p99_ms": max_p99_ms,
              "max_error_rate": max_error_rate, "failures": failures}}  # fmt: skip
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _print(report)
    for failure in failures:
        err_console.print(f"[red]gate failed:[/red] {failure}", highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(2)


def _print(report: dict[str, Any]) -> None:
    lat = report["latency"]
    mode = "closed loop" if report["mode"] == "closed" else f"open loop at {report['rate']:g}/s"
    rows: list[list[Any]] = [
        ["requests", report["sent"]],
        ["ok", report["ok"]],
        ["errors", report["error_count"]],
        ["error rate", f"{report['error_rate']:.2%}"],
        ["requests/s", f"{report['requests_per_s']:.1f}"],
        ["rows/s", f"{report['rows_per_s']:.1f} ({report['rows_per_request']} per request)"],
        *([["late starts", report["late_starts"]]] if report["mode"] == "open" else []),
        *[[f"{p} (ms)", f"{lat[f'{p}_ms']:.2f}"] for p in ("p50", "p90", "p99", "max")],
    ]
    rows += [[f"  {kind}", count] for kind, count in report["errors"].items()]
    caption = f"{report['concurrency']} workers, {mode}, {report['duration_s']:.2f} s measured"
    print_table(f"Load test: {report['target']}", ["measure", "value"], rows, caption=caption)
    if report["mode"] == "open" and report["late_starts"]:
        console.print(f"{report['late_starts']} requests started late: raise --concurrency to "
                      "hold the rate", highlight=False)  # fmt: skip

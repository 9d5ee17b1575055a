"""Load tests against a tiny threaded HTTP server: counts add up, percentiles are ordered, the
open loop sends what it schedules, the gates exit 2, rows/s comes from the payload."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from loopml.backends.http.loadgen import http_sender_factory, run_http_load
from loopml.cli.main import app
from loopml.errors import InvalidArgument
from loopml.serving.loadtest import (
    LatencySummary,
    LoadResult,
    check_gates,
    percentile,
    rows_in_payload,
    run_load,
)

OIP_PAYLOAD = {
    "inputs": [{"name": "x", "shape": [32, 2], "datatype": "FP64", "data": [0.5] * 64}],
}


@contextmanager
def toy_server(*, error_every: int = 0, delay_s: float = 0.0) -> Iterator[str]:
    """200 after ``delay_s``; every ``error_every``-th request (counting from 1) is a 500."""
    count = 0
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive

        def setup(self) -> None:
            super().setup()  # headers and body go out in two writes: do not let Nagle hold one
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _answer(self) -> None:
            nonlocal count
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                count += 1
                n = count
            if delay_s:
                time.sleep(delay_s)
            status = 500 if error_every and n % error_every == 0 else 200
            body = b'{"ok": true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address) -> None:
            pass  # a client that gave up (timeout test) is not a server failure

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _ordered(latency: LatencySummary) -> bool:
    return latency.min_ms <= latency.p50_ms <= latency.p90_ms <= latency.p99_ms <= latency.max_ms


def test_closed_loop_counts_add_up_and_percentiles_are_ordered():
    with toy_server(error_every=5, delay_s=0.002) as url:
        result = run_http_load(url, concurrency=4, duration_s=0.6, warmup_s=0.1)
    assert result.mode == "closed" and result.sent > 20
    assert result.ok + result.error_count == result.sent
    assert set(result.errors) == {"http_5xx"}
    assert 0.1 < result.error_rate < 0.3  # every fifth request, warmup aside
    assert result.latency.count == result.sent  # a 500 is an answer: its latency counts
    assert _ordered(result.latency)
    assert result.requests_per_s > 0 and result.rows_per_request == 1


def test_open_loop_sends_the_scheduled_count():
    with toy_server() as url:
        result = run_http_load(url, concurrency=4, duration_s=2.0, rate=50)
    assert result.mode == "open"
    assert 95 <= result.sent <= 105  # 50/s for 2 s: the schedule has 100 slots
    assert result.ok == result.sent and result.errors == {}


def test_refused_connections_and_timeouts_are_errors_without_latency():
    from server_fixtures import free_port

    refused = run_http_load(f"http://127.0.0.1:{free_port()}/", concurrency=2, duration_s=0.2)
    assert refused.sent > 0 and refused.ok == 0
    assert refused.errors == {"connection": refused.sent} and refused.latency.count == 0
    with toy_server(delay_s=0.5) as url:
        slow = run_http_load(url, concurrency=2, duration_s=0.2, timeout_s=0.05)
    assert slow.sent > 0 and slow.errors == {"timeout": slow.sent}
    assert check_gates(slow, max_p99_ms=100) == [
        "no request was answered, so p99 cannot be within 100 ms"
    ]


def test_rows_per_second_comes_from_the_payload():
    payload = json.dumps(OIP_PAYLOAD).encode()
    with toy_server() as url:
        result = run_http_load(url, concurrency=2, duration_s=0.3, payload=payload)
    assert result.target.startswith("POST ") and result.rows_per_request == 32
    assert result.rows_per_s == pytest.approx(result.ok * 32 / result.duration_s)


@pytest.mark.parametrize(
    ("payload", "rows"),
    [
        (OIP_PAYLOAD, 32),
        ({"dataframe_split": {"columns": ["a"], "data": [[1], [2], [3]]}}, 3),
        ({"dataframe_records": [{"a": 1}, {"a": 2}]}, 2),
        ([{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}], 4),
        ({"instances": [[1, 2]] * 5}, 5),
        ({"inputs": {"a": [1, 2], "b": [3, 4]}}, 2),
        ({"a": [1, 2, 3], "b": [4, 5, 6]}, 3),
        ({"a": 1}, 1),
        ("not json at all", 1),
        (None, 1),
    ],
)
def test_rows_in_payload(payload, rows):
    if payload is None:
        raw = None
    elif isinstance(payload, str):
        raw = payload.encode()
    else:
        raw = json.dumps(payload).encode()
    assert rows_in_payload(raw) == rows


def _binary_oip(rows: int) -> tuple[bytes, int]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [rows, 2],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": rows * 16},
                }
            ]
        }
    ).encode()
    return head + b"\0" * (rows * 16), len(head)  # fmt: skip


def test_a_binary_oip_payload_counts_rows_from_its_json_part(tmp_path):
    body, length = _binary_oip(100)
    assert rows_in_payload(body) == 1 and rows_in_payload(body, length) == 100
    header = {"Inference-Header-Content-Length": str(length)}
    with toy_server() as url:
        result = run_http_load(url, concurrency=1, duration_s=0.2, payload=body, headers=header)
        assert result.rows_per_request == 100 and result.ok == result.sent > 0
        payload, out = tmp_path / "binary.oip", tmp_path / "load.json"
        payload.write_bytes(body)
        res = runner.invoke(app, ["loadtest", url, "-c", "1", "-d", "0.2", "--payload",
                                  str(payload), "-H", f"Inference-Header-Content-Length:{length}",
                                  "--json-out", str(out)])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert json.loads(out.read_text())["rows_per_request"] == 100
        for bad in ("x", str(len(body) + 1), "-3"):  # not a count within the payload
            res = runner.invoke(app, ["loadtest", url, "-d", "0.1", "--payload", str(payload),
                                      "-H", f"Inference-Header-Content-Length:{bad}"])  # fmt: skip
            assert res.exit_code == 1 and "Inference-Header-Content-Length" in res.output
        res = runner.invoke(app, ["loadtest", url, "-d", "0.1", "--payload", str(payload)])
        assert res.exit_code == 1 and "not JSON" in res.output  # without the header: all JSON


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert [percentile(values, p) for p in (50, 90, 99, 100)] == [50.0, 90.0, 99.0, 100.0]
    one = LatencySummary.of([0.004])
    assert one.p50_ms == one.p99_ms == one.max_ms == pytest.approx(4.0)


def test_gates():
    result = LoadResult(target="x", mode="closed", concurrency=1, duration_s=1.0, rate=None,
                        sent=100, ok=97, errors={"http_5xx": 3},
                        latency=LatencySummary.of([0.010] * 98 + [0.050] * 2))  # fmt: skip
    assert check_gates(result) == []
    assert check_gates(result, max_p99_ms=60, max_error_rate=0.05) == []
    failures = check_gates(result, max_p99_ms=20, max_error_rate=0.01)
    assert failures == [
        "error rate 3.00% (3 of 100) exceeds --max-error-rate 0.01",
        "p99 latency 50.0 ms exceeds --max-p99-ms 20",
    ]


def test_a_broken_sender_counts_as_an_error_and_the_run_goes_on():
    class Broken:
        async def __call__(self) -> str:
            raise RuntimeError("bug")

        async def close(self) -> None:
            pass

    async def connect() -> Broken:
        return Broken()

    result = run_load(connect, concurrency=2, duration_s=0.05)
    assert result.sent > 0 and result.errors == {"other": result.sent}


runner = CliRunner()


def test_cli_prints_writes_json_and_passes_gates(tmp_path):
    out = tmp_path / "load.json"
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(OIP_PAYLOAD))
    with toy_server() as url:
        res = runner.invoke(app, ["loadtest", url, "--concurrency", "2", "--duration", "0.5",
                                  "--payload", str(payload), "--header", "X-Test: 1",
                                  "--json-out", str(out), "--max-error-rate", "0.01"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "p99 (ms)" in res.output and "rows/s" in res.output
    report = json.loads(out.read_text())
    assert report["ok"] + report["error_count"] == report["sent"] > 0
    assert report["rows_per_request"] == 32 and report["gates"]["failures"] == []
    lat = report["latency"]
    assert lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]


def test_cli_error_rate_gate_exits_2():
    with toy_server(error_every=5) as url:
        res = runner.invoke(app, ["loadtest", url, "-c", "2", "-d", "0.5",
                                  "--max-error-rate", "0.01"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "gate failed" in res.output and "--max-error-rate 0.01" in res.output


def test_cli_p99_gate_exits_2_against_a_slow_server():
    with toy_server(delay_s=0.02) as url:
        res = runner.invoke(app, ["loadtest", url, "-c", "2", "-d", "0.5", "--max-p99-ms", "1"])
        assert res.exit_code == 2, res.output
        assert "--max-p99-ms 1" in res.output
        res = runner.invoke(app, ["loadtest", url, "-c", "2", "--rate", "20", "-d", "0.5"])
        assert res.exit_code == 0, res.output  # no gate asked: exit 0


def test_cli_bad_arguments_are_one_line_errors(tmp_path):
    bad_json = tmp_path / "p.json"
    bad_json.write_text("{nope")
    for args in (["ftp://x"], ["http://127.0.0.1:9/", "--payload", str(tmp_path / "missing")],
                 ["http://127.0.0.1:9/", "--payload", str(bad_json)],
                 ["http://127.0.0.1:9/", "--header", "no-colon"],
                 ["http://127.0.0.1:9/", "--max-error-rate", "5"]):  # fmt: skip
        res = runner.invoke(app, ["loadtest", *args, "-d", "0.1"])
        assert res.exit_code == 1, (args, res.output)
        assert res.output.startswith("error:") and "Traceback" not in res.output


@contextmanager
def scripted_server(answer: bytes, *, close_after: bool = False) -> Iterator[str]:
    """Answers every request (headers up to the blank line, then Content-Length bytes) with
    ``answer`` verbatim; closes the connection after each one if ``close_after``."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            data = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                               if ln.lower().startswith(b"content-length")), 0)  # fmt: skip
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                conn.sendall(answer)
                if close_after:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/x"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize(
    ("answer", "close_after"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n",
            False,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\n\r\nbody until the connection ends", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    ],
    ids=["chunked-with-trailers", "interim-100", "connection-close", "read-to-close", "204"],
)
def test_every_way_an_answer_can_end_is_read_whole(answer, close_after):
    with scripted_server(answer, close_after=close_after) as url:
        result = run_http_load(url, concurrency=2, duration_s=0.3, payload=b"{}")
    assert result.sent > 4 and result.ok == result.sent and result.errors == {}


def test_an_answer_that_is_not_http_is_a_connection_error():
    with scripted_server(b"SSH-2.0-OpenSSH\r\n\r\n") as url:
        result = run_http_load(url, concurrency=1, duration_s=0.2)
    assert result.sent > 0 and result.errors == {"connection": result.sent}


@pytest.mark.parametrize("headers", [{"X-A": "1\r\nX-Injected: 1"}, {"Bad:Name": "1"}, {" ": "1"}])
def test_headers_that_would_split_the_request_are_refused(headers):
    with pytest.raises(InvalidArgument, match="bad header"):
        http_sender_factory("http://127.0.0.1:1/x", headers=headers)

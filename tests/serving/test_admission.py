"""Admission and deadlines: a bounded queue, prompt 503s under overload, 504 for a hanging model
(its slot freed), and per-process resource caps (in subprocesses, never in the test process)."""

from __future__ import annotations

import asyncio
import doctest
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from loopml.server.inference import create_inference_app
from loopml.serving import admission as admission_module
from loopml.serving.admission import Admission, DeadlineExceeded, MemoryBudget, Overloaded
from loopml.serving.modelset import SingleModel
from server_fixtures import uvicorn_server

from .inference_fakes import HANG, FakePredictor, Hanger, Sleeper


def _wait_for(condition, what: str, seconds: float = 30) -> None:
    """Poll until ``condition()`` holds (a bound on waiting, not a timed assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


# -- the gate itself ---------------------------------------------------------------------------


def test_slots_queue_in_order_and_a_full_queue_refuses_at_once():
    async def main() -> None:
        gate = Admission(max_concurrency=2, max_queue=2)
        loop = asyncio.get_running_loop()
        far = loop.time() + 60
        await gate.acquire(far)
        await gate.acquire(far)
        order: list[int] = []

        async def waiter(i: int) -> None:
            await gate.acquire(far)
            order.append(i)

        tasks = [asyncio.create_task(waiter(i)) for i in (1, 2)]
        await asyncio.sleep(0)
        assert (gate.in_flight, gate.waiting) == (2, 2)
        with pytest.raises(Overloaded, match="at capacity"):
            await gate.acquire(far)
        assert gate.rejected == 1
        gate.release()
        gate.release()
        await asyncio.gather(*tasks)
        assert order == [1, 2] and (gate.in_flight, gate.waiting) == (2, 0)
        gate.release()
        gate.release()
        assert gate.in_flight == 0

    asyncio.run(main())


def test_a_deadline_ends_the_wait_and_leaves_no_trace():
    async def main() -> None:
        gate = Admission(max_concurrency=1, max_queue=5)
        loop = asyncio.get_running_loop()
        await gate.acquire(loop.time() + 60)
        with pytest.raises(DeadlineExceeded):
            await gate.acquire(loop.time() + 0.01)
        assert (gate.in_flight, gate.waiting, gate.timed_out) == (1, 0, 1)
        cancelled = asyncio.create_task(gate.acquire(loop.time() + 60))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert gate.waiting == 0
        gate.release()
        async with gate.slot(loop.time() + 1):
            assert gate.in_flight == 1
        assert gate.in_flight == 0

    asyncio.run(main())
    assert doctest.testmod(admission_module).failed == 0


# -- over HTTP ---------------------------------------------------------------------------------


async def _burst(url: str, count: int, x: float = 1.0) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        calls = [client.post("/predict", json={"columns": {"x": [x]}}) for _ in range(count)]
        return await asyncio.gather(*calls)


def _check_503(response: httpx.Response) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "unavailable"


def test_overload_gets_503_with_retry_after_while_admitted_requests_complete():
    app = create_inference_app(
        SingleModel("slow", "1", FakePredictor(Sleeper(0.3))), max_concurrency=2, max_queue=2,
        max_batch_size=1, timeout_s=60,
    )  # fmt: skip
    with uvicorn_server(app) as url:
        responses = asyncio.run(_burst(url, 20))  # 10x the concurrency cap, all at once
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}
        assert statuses.count(200) >= 4 and statuses.count(503) >= 1
        for r in responses:
            if r.status_code == 200:
                assert r.json()["predictions"] == [2.0]
            else:
                _check_503(r)
        after = httpx.post(f"{url}/predict", json={"columns": {"x": [4.0]}}, timeout=60)
        assert after.status_code == 200 and after.json()["predictions"] == [8.0]
        metrics = httpx.get(f"{url}/metrics").text
        assert 'loopml_serving_rejected_total{reason="overloaded"}' in metrics


@pytest.fixture
def hanger() -> Iterator[Hanger]:
    model = Hanger()
    yield model
    model.release.set()  # let the stuck thread end before the test process does


def test_refusals_are_prompt_while_the_model_is_busy(hanger):
    """With every slot taken and the queue full, extra requests are answered (503) while the
    admitted ones are still inside the model: nobody waits for a slot that cannot come."""
    app = create_inference_app(
        SingleModel("busy", "1", FakePredictor(hanger)), max_concurrency=2, max_queue=3,
        max_batch_size=1, timeout_s=60,
    )  # fmt: skip
    gate = app.state.inference.admission
    results: dict[str, list[httpx.Response]] = {}
    with uvicorn_server(app) as url:
        admitted = threading.Thread(
            target=lambda: results.update(admitted=asyncio.run(_burst(url, 5, HANG)))
        )
        admitted.start()
        _wait_for(lambda: (gate.in_flight, gate.waiting) == (2, 3), "two in flight, three queued")
        refused = asyncio.run(_burst(url, 50))
        for r in refused:
            _check_503(r)
        assert not hanger.finished.is_set()  # answered while the model still held everybody
        hanger.release.set()
        admitted.join(60)
    assert [r.status_code for r in results["admitted"]] == [200] * 5


def test_a_hanging_model_gets_504_at_the_deadline_and_frees_its_slot(hanger):
    app = create_inference_app(
        SingleModel("hangs", "1", FakePredictor(hanger)), max_concurrency=1, max_queue=1,
        timeout_s=0.5, predict_threads=1,
    )  # fmt: skip
    rt = app.state.inference
    with uvicorn_server(app) as url:
        stuck = httpx.post(f"{url}/predict", json={"columns": {"x": [HANG]}}, timeout=60)
        assert stuck.status_code == 504
        assert stuck.json()["error"]["code"] == "timeout"
        assert rt.admission.in_flight == 0  # released before the answer went out
        _wait_for(lambda: rt.pool.stuck == 1, "the abandoned batch was written off")
        fine = httpx.post(f"{url}/predict", json={"columns": {"x": [2.0]}}, timeout=60)
        assert fine.status_code == 200 and fine.json()["predictions"] == [4.0]
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert "loopml_serving_stuck_predictions 1.0" in metrics
        assert 'loopml_serving_rejected_total{reason="timeout"} 1.0' in metrics
        hanger.release.set()
        _wait_for(lambda: rt.pool.stuck == 0, "the abandoned thread ended")
        again = httpx.post(f"{url}/predict", json={"columns": {"x": [3.0]}}, timeout=60)
        assert again.status_code == 200


# -- per-process caps (each in its own interpreter) --------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS semantics are Linux's")
def test_a_memory_cap_turns_a_huge_allocation_into_memory_error():
    done = _run(
        """
        from loopml.serving.limits import apply_limits
        print(apply_limits(512, 3600, use_cgroup=False))
        try:
            hog = bytearray(4 * 2**30)
        except MemoryError:
            print("MemoryError")
        else:
            print("allocated", len(hog))
        """
    )
    assert done.returncode == 0, done.stderr
    described, outcome = done.stdout.splitlines()
    assert "memory 512 MiB (RLIMIT_AS)" in described and "CPU 3600 s (RLIMIT_CPU)" in described
    assert outcome == "MemoryError"


def test_a_writable_cgroup_v2_gets_the_cap_for_all_workers(tmp_path: Path):
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "memory.max").write_text("max\n")
    (tmp_path / "cgroup").write_text("0::/svc\n")
    done = _run(
        f"""
        from pathlib import Path
        from loopml.serving.limits import apply_limits
        print(apply_limits(100, None, processes=3, cgroup_root=Path({str(tmp_path)!r}),
                           proc_cgroup=Path({str(tmp_path / "cgroup")!r})))
        """
    )
    assert done.returncode == 0, done.stderr
    assert "memory 300 MiB (cgroup v2" in done.stdout
    assert (tmp_path / "svc" / "memory.max").read_text() == str(300 * 2**20)
    nothing = _run(
        "from loopml.serving.limits import apply_limits; print(apply_limits(None, None))"
    )
    assert nothing.stdout.strip() == "no limits"


# -- the memory budget -------------------------------------------------------------------------


def test_memory_is_granted_in_order_and_a_lone_request_always_fits():
    async def main() -> None:
        budget = MemoryBudget(100, max_queue=3)
        loop = asyncio.get_running_loop()
        far = loop.time() + 60
        await budget.acquire(60, far)
        order: list[int] = []

        async def waiter(i: int, cost: int) -> None:
            await budget.acquire(cost, far)
            order.append(i)

        big = asyncio.create_task(waiter(1, 90))  # does not fit beside the 60
        await asyncio.sleep(0)
        small = asyncio.create_task(waiter(2, 10))  # would fit, but waits its turn
        await asyncio.sleep(0)
        assert (budget.reserved, budget.waiting, order) == (60, 2, [])
        budget.release(60)
        await asyncio.gather(big, small)
        assert order == [1, 2] and (budget.reserved, budget.holders) == (100, 2)
        budget.release(90)
        budget.release(10)
        await budget.acquire(10_000, far)  # over the budget, but alone: let in
        assert budget.reserved == 10_000
        budget.release(10_000)
        assert (budget.reserved, budget.holders, budget.waiting) == (0, 0, 0)

    asyncio.run(main())


def test_memory_waits_are_bounded_and_leave_no_trace():
    async def main() -> None:
        budget = MemoryBudget(100, max_queue=1)
        loop = asyncio.get_running_loop()
        await budget.acquire(80, loop.time() + 60)
        with pytest.raises(DeadlineExceeded, match="memory"):
            await budget.acquire(50, loop.time() + 0.01)
        blocker = asyncio.create_task(budget.acquire(50, loop.time() + 60))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="memory budget"):
            await budget.acquire(1, loop.time() + 60)  # the queue (one place) is full
        assert (budget.timed_out, budget.rejected, budget.waiting) == (1, 1, 1)
        blocker.cancel()  # the head of the queue gives up: nobody stays blocked behind it
        with pytest.raises(asyncio.CancelledError):
            await blocker
        await budget.acquire(20, loop.time() + 60)
        assert (budget.reserved, budget.waiting) == (100, 0)

    asyncio.run(main())


def test_requests_over_the_memory_budget_wait_then_get_503_and_504(hanger):
    """A request that holds the budget (its model hangs) makes the next ones wait unread in a
    bounded queue: past it 503 with Retry-After at once, past the deadline 504; once the budget
    is free the queued ones are answered."""
    app = create_inference_app(
        SingleModel("big", "1", FakePredictor(hanger)), max_concurrency=64, max_queue=2,
        timeout_s=60, memory_budget_bytes=100, max_batch_size=1,
    )  # fmt: skip
    budget = app.lane.memory
    results: dict[str, list[httpx.Response]] = {}
    with uvicorn_server(app) as url:
        holder = threading.Thread(
            target=lambda: results.update(held=asyncio.run(_burst(url, 1, HANG)))
        )
        holder.start()
        _wait_for(lambda: budget.holders == 1, "one request holds the budget")
        queued = threading.Thread(target=lambda: results.update(queued=asyncio.run(_burst(url, 2))))
        queued.start()
        _wait_for(lambda: budget.waiting == 2, "two requests wait for memory")
        assert app.state.inference.admission.in_flight == 1  # the waiting ones hold no slot
        for r in asyncio.run(_burst(url, 10)):
            _check_503(r)
            assert "memory budget" in r.json()["error"]["message"]
        hanger.release.set()
        holder.join(60)
        queued.join(60)
        assert budget.reserved == 0
        metrics = httpx.get(f"{url}/metrics").text
        assert "loopml_serving_memory_reserved_bytes 0.0" in metrics
    assert [r.status_code for r in results["held"] + results["queued"]] == [200] * 3


def test_a_memory_wait_past_the_deadline_is_504_on_inference_and_feedback():
    from fastapi.testclient import TestClient

    app = create_inference_app(
        SingleModel("big", "1", FakePredictor(lambda f: f["x"].to_numpy())), timeout_s=0.2,
        memory_budget_bytes=100,
    )  # fmt: skip
    budget = app.lane.memory
    budget.reserved, budget.holders = 100, 1  # as if a request held all of it
    with TestClient(app, base_url="http://localhost") as http:
        late = http.post("/predict", json={"columns": {"x": [1.0]}})
        assert late.status_code == 504 and "memory" in late.json()["error"]["message"]
        assert late.headers["connection"] == "close"  # its body was never read
        feedback = http.post("/feedback", json={"request_id": "r1", "ground_truth": 1})
        assert feedback.status_code == 504 and "memory" in feedback.json()["error"]["message"]
        budget.reserved, budget.holders = 0, 0
        assert http.post("/feedback", json={"request_id": "r1", "ground_truth": 1}).is_success
        assert http.post("/predict", json={"columns": {"x": [1.0]}}).status_code == 200
    assert (budget.reserved, budget.holders, budget.timed_out) == (0, 0, 2)


def test_a_body_that_does_not_arrive_in_time_is_504_and_frees_its_memory():
    import socket

    app = create_inference_app(
        SingleModel("m", "1", FakePredictor(lambda f: f["x"].to_numpy())), timeout_s=0.5
    )
    budget = app.lane.memory
    with uvicorn_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
            slow.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n"
                         + b"[" + b" " * 1000)  # then nothing more  # fmt: skip
            answer = slow.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 504"), answer
        assert "did not arrive" in answer and "connection: close" in answer.lower()
        assert (budget.reserved, budget.holders) == (0, 0)
        fine = httpx.post(f"{url}/predict", json={"columns": {"x": [1.0]}}, timeout=60)
        assert fine.status_code == 200


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (the kernel's high-water mark), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sixteen_7_mib_bodies_at_once_stay_within_the_memory_bound(tmp_path):
    """The attack: 16 concurrent 7 MiB JSON bodies (each under the 8 MiB limit). Unbounded, a
    worker went from ~310 MB to 1.1 GB with these records (1.9 GB with nested rows): each body
    becomes 6-19x its size as Python objects and frames, all at once. With the default memory
    budget (256 MiB, estimated at 16x the body) two or three are read and decoded at a time; the
    peak stays under 800 MB (idle ~310 MB + the budget + slack), and every request is answered."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    import loopml
    from loopml.settings import Settings
    from server_fixtures import free_port

    home = tmp_path / "home"
    with loopml.Client(Settings(home=home)) as client:
        rng = np.random.default_rng(0)
        frame = pd.DataFrame({"amount": rng.random(200) * 100, "age": rng.integers(18, 90, 200)})
        model = LogisticRegression().fit(frame, (frame["amount"] > 50).astype(int))
        run = client.create_run(client.create_experiment("memory").experiment_id)
        info = client.log_model(run.run_id, model, "model", input_example=frame.head())
        client.register_model(info.source, "big")
    n = 195_000
    rows = [{"amount": float(a), "age": int(b)}
            for a, b in zip(rng.random(n) * 100, rng.integers(18, 90, n), strict=True)]  # fmt: skip
    body = orjson.dumps({"instances": rows})
    assert 7 * 2**20 <= len(body) < 8 * 2**20
    port = free_port()
    env = {**os.environ, "LOOPML_HOME": str(home), "LOOPML_SERVE_TIMEOUT_S": "120",
           "LOOPML_SERVE_CPUS_PER_WORKER": "0"}  # fmt: skip
    for name in ("LOOPML_URI", "LOOPML_ARTIFACTS", "LOOPML_SERVE_MEMORY_BUDGET_MB"):
        env.pop(name, None)
    serve = [sys.executable, "-c", "from loopml.cli.main import main; main()", "serve",
             "models:/big/1", "--port", str(port)]  # fmt: skip
    with subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL) as proc:
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(lambda: _ready(url) or proc.poll() is not None, "loopml serve started", 60)
            assert proc.poll() is None, "loopml serve exited"
            idle = _peak_rss_mb(proc.pid)

            async def attack() -> list[httpx.Response]:
                limits = httpx.Limits(max_connections=20)
                headers = {"Content-Type": "application/json"}
                async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as c:
                    calls = [c.post("/predict", content=body, headers=headers) for _ in range(16)]
                    return await asyncio.gather(*calls)

            responses = asyncio.run(attack())
            peak = _peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    assert [r.status_code for r in responses] == [200] * 16
    assert all(len(r.json()["predictions"]) == n for r in responses)
    assert peak < 800, f"peak RSS {peak:.0f} MB (idle {idle:.0f} MB)"


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False

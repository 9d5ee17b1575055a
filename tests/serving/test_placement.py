"""CPU placement: each worker binds its threads to CPUs no other loopml worker holds.

Binding changes the process that asks, so every claim here runs in a child process (the test
process keeps all its CPUs). Each test uses its own claim namespace, so servers running on the
machine do not interfere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from loopml.errors import InvalidArgument
from loopml.serving.batching import PredictPool, usable_cpus
from loopml.serving.placement import claim_cpus

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU binding needs Linux (sched_setaffinity)"
)

CHILD = textwrap.dedent(
    """
    import json, os, sys, threading
    from loopml.serving.placement import claim_cpus
    before = threading.Thread(target=lambda: None)  # a thread that exists before the claim
    placement = claim_cpus(int(sys.argv[1]), namespace=sys.argv[2])
    seen = []
    after = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
    after.start(); after.join()
    print(json.dumps({"cpus": list(placement.cpus), "why": placement.describe(),
                      "process": sorted(os.sched_getaffinity(0)), "new_thread": seen[0]}),
          flush=True)
    sys.stdin.read()  # hold the claim until the test closes our stdin
    """
)


def _worker(per_worker: int, namespace: str) -> tuple[subprocess.Popen[str], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(per_worker), namespace],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.communicate(timeout=30)  # closes its stdin: it lets go, and its pipes are closed


@pytest.fixture
def namespace() -> str:
    return f"loopml-test-{uuid.uuid4().hex[:12]}-"


@pytest.mark.skipif(usable_cpus() < 2, reason="needs at least 2 CPUs to bind one of them")
def test_workers_take_different_cpus_and_a_dead_workers_cpu_is_free_again(namespace):
    cpus = usable_cpus()
    procs = []
    try:
        claims = []
        for _ in range(cpus):
            proc, seen = _worker(1, namespace)
            procs.append(proc)
            claims.append(seen)
        held = [c["cpus"] for c in claims]
        assert all(len(c) == 1 for c in held)
        assert len({c[0] for c in held}) == cpus  # nobody shares a CPU
        for c in claims:  # the process and the threads it starts later are bound
            assert c["process"] == c["cpus"] == c["new_thread"]
        extra, seen = _worker(1, namespace)  # every CPU is held now
        procs.append(extra)
        assert seen["cpus"] == [] and "held by another loopml worker" in seen["why"]
        assert len(seen["process"]) == cpus  # unbound: every CPU
        _stop(procs.pop(0))  # a worker ends (a crash is the same: the kernel drops its claim)
        again, seen = _worker(1, namespace)
        procs.append(again)
        assert seen["cpus"] == held[0]
    finally:
        for proc in procs:
            _stop(proc)


def test_zero_or_all_cpus_per_worker_binds_nothing(namespace):
    for per_worker in (0, usable_cpus()):
        proc, seen = _worker(per_worker, namespace)
        _stop(proc)
        assert seen["cpus"] == [] and len(seen["process"]) == usable_cpus()
        assert "unbound" in seen["why"]


def test_a_negative_count_is_refused():
    with pytest.raises(InvalidArgument, match="CPUs per worker"):
        claim_cpus(-1)


def test_the_prediction_pool_has_a_thread_per_usable_cpu_at_most_four():
    pool = PredictPool()
    try:
        assert pool.threads == min(4, usable_cpus())
    finally:
        pool.close()


def _other_claims() -> bool:
    """Does some loopml worker on this machine hold a CPU (a server outside this test)?"""
    try:
        with open("/proc/net/unix", encoding="utf-8") as table:
            return "@loopml-cpu-" in table.read()
    except OSError:
        return True


def _workers(pid: int) -> list[int]:
    """The uvicorn worker processes of the server ``pid`` (not multiprocessing's helpers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="utf-8") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    workers = []
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    workers.append(child)
        except OSError:
            pass
    return workers


def _allowed(pid: int) -> str:
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        return next(ln.split(":")[1].strip() for ln in f if ln.startswith("Cpus_allowed_list"))


@pytest.mark.skipif(usable_cpus() < 2, reason="needs at least 2 CPUs for two bound workers")
def test_loopml_serve_with_two_workers_binds_each_to_its_own_cpu_and_answers(tmp_path):
    import time

    import httpx
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import loopml
    from loopml.settings import Settings
    from server_fixtures import free_port

    if _other_claims():
        pytest.skip("another loopml server on this machine holds CPUs; the test needs them free")
    home = tmp_path / "home"
    x = np.random.default_rng(0).random((40, 2))
    model = LogisticRegression().fit(x, (x[:, 0] > 0.5).astype(int))
    with loopml.Client(Settings(home=home)) as client:
        run = client.create_run(client.create_experiment("placement").experiment_id)
        ref = client.log_model(run.run_id, model, "model", input_example=x[:3]).source
    port = free_port()
    loopml_bin = os.path.join(os.path.dirname(sys.executable), "loopml")
    env = {**os.environ, "LOOPML_HOME": str(home)}
    server = subprocess.Popen(
        [loopml_bin, "serve", ref, "--port", str(port), "--workers", "2", "--no-log-predictions"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while time.monotonic() < deadline:
            workers = _workers(server.pid)
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1)
                if ready.status_code == 200 and len(workers) >= 2:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, "loopml serve exited"
            time.sleep(0.2)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(20):
                answer = http.post("/predict", json={"instances": x[:2].tolist()})
                assert answer.status_code == 200
                assert answer.json()["predictions"] == model.predict(x[:2]).tolist()
        bound = sorted(_allowed(pid) for pid in _workers(server.pid))
        assert len(bound) == 2 and all(b.isdigit() for b in bound) and bound[0] != bound[1]
        assert _allowed(server.pid) != bound[0]  # the supervisor itself is not bound
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "1 CPUs per worker" in output

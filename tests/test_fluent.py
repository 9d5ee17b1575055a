"""The fluent API and the Client on a real embedded stack (SQLite + local artifacts)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import loopml
from loopml.errors import Conflict, IntegrityError, InvalidArgument, NotFound
from loopml.tracking.entities import Lifecycle, Metric, RunStatus


@pytest.fixture
def lm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loopml.configure(home=tmp_path / "home")
    yield loopml
    while loopml.active_run():
        loopml.end_run()
    loopml.configure(home=tmp_path / "unused")


def test_run_lifecycle_records_status_times_and_usage(lm):
    lm.set_experiment("exp")
    with lm.start_run(run_name="r1") as active:
        lm.log_param("alpha", 0.5)
        sum(i * i for i in range(200_000))  # burn a little CPU
        run_id = active.run_id
    run = lm.get_run(run_id)
    assert run.status is RunStatus.FINISHED and run.run_name == "r1"
    assert run.end_time is not None and run.end_time >= run.start_time
    assert run.cpu_seconds is not None and run.cpu_seconds > 0
    assert run.peak_memory_bytes is not None and run.peak_memory_bytes > 10 * 2**20
    assert run.params == {"alpha": "0.5"}
    assert lm.active_run() is None


def test_exception_marks_run_failed_and_interrupt_killed(lm):
    with pytest.raises(ZeroDivisionError), lm.start_run() as active:
        _ = 1 / 0
    assert lm.get_run(active.run_id).status is RunStatus.FAILED
    with pytest.raises(KeyboardInterrupt), lm.start_run() as active2:
        raise KeyboardInterrupt
    assert lm.get_run(active2.run_id).status is RunStatus.KILLED


def test_nested_runs(lm):
    with lm.start_run() as parent:
        with pytest.raises(InvalidArgument, match="nested=True"):
            lm.start_run()
        with lm.start_run(nested=True) as child:
            assert lm.active_run() is child
        assert lm.active_run() is parent
    assert lm.get_run(child.run_id).parent_run_id == parent.run_id


def test_params_are_immutable(lm):
    with lm.start_run() as run:
        lm.log_params({"lr": 0.1, "depth": 3})
        lm.log_param("lr", 0.1)
        with pytest.raises(Conflict, match="immutable"):
            lm.log_param("lr", 0.2)
    assert lm.get_run(run.run_id).params == {"lr": "0.1", "depth": "3"}


def test_metrics_are_buffered_then_flushed(lm):
    with lm.start_run() as run:
        for i in range(1000):
            lm.log_metric("loss", 1.0 / (i + 1), step=i)
        lm.log_metrics({"acc": 0.9, "f1": 0.8}, step=3)
        lm.flush()
        history = lm.get_client().get_metric_history(run.run_id, "loss")
        assert [m.step for m in history] == list(range(1000))
    got = lm.get_run(run.run_id)
    assert got.metrics == {"loss": 0.001, "acc": 0.9, "f1": 0.8}


@pytest.mark.parametrize(
    ("key", "value", "step"),
    [("", 1.0, 0), ("a" * 300, 1.0, 0), ("bad\tkey", 1.0, 0), ("ok", "high", 0),
     ("ok", True, 0), ("ok", None, 0), ("ok", 1.0, 1.5), ("ok", 1.0, "3")],
)  # fmt: skip
def test_bad_metrics_are_refused_at_the_call(lm, key, value, step):
    with lm.start_run() as run, pytest.raises(InvalidArgument):
        lm.log_metric(key, value, step=step)
    assert lm.get_run(run.run_id).metrics == {}


def test_logging_without_a_run_starts_one(lm):
    lm.log_metric("m", 1.0)
    active = lm.active_run()
    assert active is not None
    lm.end_run()
    assert lm.get_run(active.run_id).metrics == {"m": 1.0}


def test_threads_have_their_own_active_run(lm):
    lm.set_experiment("threads")
    results: dict[int, str] = {}
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        with lm.start_run(run_name=f"t{i}") as run:
            barrier.wait(timeout=10)
            for step in range(100):
                lm.log_metric("who", float(i), step=step)
            results[i] = run.run_id

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results.values())) == 4
    for i, run_id in results.items():
        history = lm.get_client().get_metric_history(run_id, "who")
        assert len(history) == 100 and {m.value for m in history} == {float(i)}


def test_async_tasks_have_their_own_active_run(lm):
    async def task(i: int) -> str:
        with lm.start_run(run_name=f"a{i}") as run:
            await asyncio.sleep(0.01)
            assert lm.active_run() is run
            lm.set_tag("task", str(i))
            await asyncio.sleep(0.01)
            return run.run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(task(i) for i in range(5)))

    run_ids = asyncio.run(main())
    assert [lm.get_run(r).tags["task"] for r in run_ids] == [str(i) for i in range(5)]


def test_artifacts_round_trip_with_digests(lm, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)))
    with lm.start_run() as active:
        lm.log_artifact(src / "a.txt")
        lm.log_artifacts(src, "tree")
        lm.log_text("hello", "notes/hello.txt")
        lm.log_dict({"a": 1}, "cfg/config.json")
        lm.log_dict({"b": [1, 2]}, "cfg/config.yaml")
    client = lm.get_client()
    run = client.get_run(active.run_id)
    listing = {e.path: e for e in client.artifacts.list(run, recursive=True)}
    assert set(listing) >= {"a.txt", "tree/a.txt", "tree/sub/b.bin", "notes/hello.txt",
                            "cfg/config.json", "cfg/config.yaml"}  # fmt: skip
    assert all(len(listing[p].sha256 or "") == 64 for p in listing if not listing[p].is_dir)
    assert json.loads(client.artifacts.read_bytes(run, "cfg/config.json")) == {"a": 1}
    assert client.artifacts.read_bytes(run, "cfg/config.yaml").decode().startswith("b:")
    out = client.artifacts.download(run, "tree", tmp_path / "out")
    assert (out / "sub" / "b.bin").read_bytes() == bytes(range(256))


def test_tampered_artifact_fails_its_digest(lm, tmp_path):
    with lm.start_run() as active:
        lm.log_text("original", "model.txt")
    client = lm.get_client()
    run = client.get_run(active.run_id)
    stored = Path(client.settings.resolved_artifacts().removeprefix("file://")) / run.artifact_path
    (stored / "model.txt").write_text("evil!!!!")
    with pytest.raises(IntegrityError):
        client.artifacts.read_bytes(run, "model.txt")
    with pytest.raises(IntegrityError):
        client.artifacts.download(run, "model.txt", tmp_path / "dl")
    assert not (tmp_path / "dl" / "model.txt").exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "a/../../x.txt", "%2e%2e/x.txt", "/etc/x"])
def test_artifact_names_cannot_escape(lm, evil):
    with lm.start_run(), pytest.raises(InvalidArgument):
        lm.log_text("x", evil)


def test_log_figure(lm):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with lm.start_run() as active:
        lm.log_figure(fig, "plots/curve.png")
        with pytest.raises(InvalidArgument):
            lm.log_figure(object(), "plots/x.png")
    plt.close(fig)
    run = lm.get_client().get_run(active.run_id)
    assert lm.get_client().artifacts.read_bytes(run, "plots/curve.png")[:4] == b"\x89PNG"


def test_log_input_hashes_frames(lm):
    import pandas as pd

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    with lm.start_run() as active:
        first = lm.log_input(frame, name="train", role="train")
        again = lm.log_input(frame.copy(), name="train", role="train")
        other = lm.log_input(frame.iloc[:2], name="test", role="test")
    assert first.digest == again.digest != other.digest
    assert {i.name for i in lm.get_run(active.run_id).inputs} == {"train", "test"}


def test_soft_delete_and_restore(lm):
    exp = lm.set_experiment("to-delete")
    with lm.start_run() as active:
        pass
    client = lm.get_client()
    client.delete_run(active.run_id)
    assert client.get_run(active.run_id).lifecycle_stage is Lifecycle.DELETED
    client.restore_run(active.run_id)
    client.delete_experiment(exp.experiment_id)
    with pytest.raises(InvalidArgument, match="deleted"):
        lm.set_experiment("to-delete")
    client.restore_experiment(exp.experiment_id)
    assert lm.set_experiment("to-delete").experiment_id == exp.experiment_id


def test_values_for_a_deleted_run_are_reported_not_lost_silently(lm):
    client = lm.get_client()
    doomed = client.create_run("0")
    kept = client.create_run("0")
    client.log_metric(doomed.run_id, "m", 1.0)
    client.log_metric(kept.run_id, "m", 2.0)
    client.delete_run(doomed.run_id)
    with pytest.raises(Conflict, match="1 buffered metric values"):
        client.flush()
    assert client.get_run(kept.run_id).metrics == {"m": 2.0}
    client.flush()  # reported once


def test_values_are_flushed_at_interpreter_exit(tmp_path):
    script = (
        "import loopml\n"
        f"loopml.configure(home={str(tmp_path)!r})\n"
        "run = loopml.start_run()\n"
        "print(run.run_id, flush=True)\n"
        "for i in range(5000): loopml.log_metric('m', float(i), step=i)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    run_id = out.stdout.strip()
    client = loopml.Client(loopml.Settings(home=tmp_path))
    assert len(client.get_metric_history(run_id, "m")) == 5000


def test_missing_run_is_not_found(lm):
    with pytest.raises(NotFound):
        lm.get_run("nope")


def test_source_and_git_state_are_recorded(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.email=a@b", "-c", "user.name=a"]
    subprocess.run([*git, "init", "-q"], check=True)
    script = repo / "train.py"
    script.write_text(
        "import loopml, sys\n"
        f"loopml.configure(home={str(tmp_path / 'home')!r})\n"
        "with loopml.start_run() as r: print(r.run_id)\n"
    )
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    run_id = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    ).stdout.strip()
    script.write_text(script.read_text() + "# edited\n")
    dirty_id = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, check=True
    ).stdout.strip()
    client = loopml.Client(loopml.Settings(home=tmp_path / "home"))
    clean, dirty = client.get_run(run_id), client.get_run(dirty_id)
    assert clean.source == str(script) and clean.git_commit == commit and clean.git_dirty is False
    assert dirty.git_commit == commit and dirty.git_dirty is True


def test_flush_interval_bounds_latency(lm):
    with lm.start_run() as active:
        lm.log_metric("m", 1.0)
        deadline = time.time() + 5
        while (
            time.time() < deadline and not lm.get_client()._tracking.get_run(active.run_id).metrics
        ):
            time.sleep(0.05)
        assert lm.get_client()._tracking.get_run(active.run_id).metrics == {"m": 1.0}


@pytest.mark.parametrize("bad", [2**63, -(2**63) - 1, 10**30])
def test_out_of_range_steps_and_timestamps_are_refused(lm, bad):
    with lm.start_run() as run:
        with pytest.raises(InvalidArgument, match=r"64-bit"):
            lm.log_metric("m", 1.0, step=bad)
        with pytest.raises(InvalidArgument, match="milliseconds"):
            lm.log_metric("m", 1.0, timestamp=bad)
    assert lm.get_run(run.run_id).metrics == {}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Metric("ok", "high", 1, 0), "must be a number"),  # type: ignore[arg-type]
        (Metric("ok", True, 1, 0), "must be a number"),
        (Metric("bad\tkey", 1.0, 1, 0), "invalid metric key"),
        (Metric("ok", 1.0, 1, 2**63), "64-bit"),
        (Metric("ok", 1.0, 1.5, 0), "milliseconds"),  # type: ignore[arg-type]
        (("ok", 1.0, 1, 0), "Metric records"),
    ],
)
def test_log_batch_checks_every_record_and_writes_nothing_on_a_bad_one(lm, bad, message):
    good = [Metric("ok", float(i), 1, i) for i in range(999)]
    with lm.start_run() as run, pytest.raises(InvalidArgument, match=message):
        lm.get_client().log_batch(run.run_id, metrics=[*good[:500], bad, *good[500:]])
    assert lm.get_run(run.run_id).metrics == {}

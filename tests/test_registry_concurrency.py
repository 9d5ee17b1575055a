"""The registry under concurrency, on SQLite and PostgreSQL: 100 registrations from threads and
from processes number the versions 1..100 exactly once; alias moves and promotions race safely;
the audit chain verifies afterwards and no "database is locked" escapes."""

from __future__ import annotations

import multiprocessing as mp
import threading
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from loopml.errors import Conflict
from loopml.registry.entities import Stage
from loopml.settings import Settings
from loopml.stack import Stack
from loopml.testing.registry_contract import log_fake_package

REGISTRATIONS = 100
THREADS = 16
PROCESSES = 8
ACTOR = "racer"
MODEL = "fraud-detector"


def _settings(uri: str, tmp: Path) -> Settings:
    return Settings(home=tmp / "home", uri=uri, artifacts=(tmp / "artifacts").as_uri())


@pytest.fixture
def world(metadata_url: str, tmp_path: Path) -> Iterator[tuple[Stack, Settings, str]]:
    """A stack on a fresh store with one registered model and a logged package; its source."""
    settings = _settings(metadata_url, tmp_path)
    stack = Stack.from_settings(settings)
    assert stack.registry is not None
    stack.registry.create_registered_model(MODEL, actor=ACTOR)
    source = log_fake_package(stack, {"auc": 0.9})
    yield stack, settings, source
    stack.close()


@dataclass
class Raced:
    results: list[Any]
    errors: list[BaseException]

    def tracebacks(self) -> list[str]:
        return ["".join(traceback.format_exception(e)) for e in self.errors]


def _race(workers: int, jobs: list[Callable[[], Any]]) -> Raced:
    """Run ``jobs`` on ``workers`` threads released together by a barrier."""
    todo = deque(jobs)
    raced = Raced([], [])
    lock = threading.Lock()
    start = threading.Barrier(workers)

    def worker() -> None:
        start.wait(timeout=60)
        while True:
            with lock:
                if not todo:
                    return
                job = todo.popleft()
            try:
                result = job()
            except Exception as e:
                with lock:
                    raced.errors.append(e)
            else:
                with lock:
                    raced.results.append(result)

    threads = [threading.Thread(target=worker, name=f"racer-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(raced.results) + len(raced.errors) == len(jobs)
    return raced


def _assert_numbered_once(stack: Stack, versions: list[int]) -> None:
    assert sorted(versions) == list(range(1, REGISTRATIONS + 1))
    assert stack.registry is not None
    listed = stack.registry.list_model_versions(MODEL)
    assert [v.version for v in listed] == list(range(1, REGISTRATIONS + 1))
    assert all(v.stage is Stage.CANDIDATE for v in listed)
    assert stack.registry.get_registered_model(MODEL).latest_version == REGISTRATIONS
    created = Counter(
        e.object_id
        for e in stack.audit.list_events(object_type="model", limit=10_000)
        if e.action == "model_version.create"
    )
    assert created == Counter({f"{MODEL}/{v}": 1 for v in range(1, REGISTRATIONS + 1)})
    report = stack.audit.verify()
    assert report.ok, report


# -- registrations -----------------------------------------------------------------------------


def test_threads_sharing_a_stack_number_versions_exactly_once(world):
    stack, _settings, source = world
    registry = stack.registry
    assert registry is not None

    def register() -> int:
        return registry.create_model_version(MODEL, source, actor=ACTOR).version

    raced = _race(THREADS, [register] * REGISTRATIONS)
    assert raced.tracebacks() == []
    _assert_numbered_once(stack, raced.results)


def _register_in_process(
    uri: str, tmp: str, source: str, count: int, index: int, start: Any, queue: Any
) -> None:
    try:
        stack = Stack.from_settings(_settings(uri, Path(tmp)))
        try:
            assert stack.registry is not None
            start.wait(timeout=120)
            versions = [
                stack.registry.create_model_version(MODEL, source, actor=f"proc-{index}").version
                for _ in range(count)
            ]
        finally:
            stack.close()
        queue.put((index, versions, None))
    except BaseException:  # report every failure to the parent
        queue.put((index, [], traceback.format_exc()))


@pytest.mark.slow
def test_processes_each_with_a_stack_number_versions_exactly_once(world, tmp_path):
    stack, settings, source = world
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = ctx.Barrier(PROCESSES)
    counts = [
        REGISTRATIONS // PROCESSES + (i < REGISTRATIONS % PROCESSES) for i in range(PROCESSES)
    ]
    assert sum(counts) == REGISTRATIONS
    uri = settings.resolved_uri()
    procs = [
        ctx.Process(
            target=_register_in_process,
            args=(uri, str(tmp_path), source, counts[i], i, start, queue),
        )
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    errors = [r[2] for r in results if r[2] is not None]
    assert errors == []
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    for index, versions, _err in results:
        assert len(versions) == counts[index]
        assert versions == sorted(versions)  # one writer's versions only go up
    _assert_numbered_once(stack, [v for r in results for v in r[1]])


# -- aliases -----------------------------------------------------------------------------------


def _alias_history(stack: Stack, alias: str) -> list[tuple[Any, Any]]:
    events = sorted(
        (e for e in stack.audit.list_events(object_type="model", object_id=MODEL, limit=10_000)
         if e.action == "model.alias" and e.change["alias"] == alias),
        key=lambda e: e.seq,
    )  # fmt: skip
    return [(e.change["from"], e.change["to"]) for e in events]


def test_concurrent_alias_moves_leave_one_consistent_pointer(world):
    stack, _settings, source = world
    registry = stack.registry
    assert registry is not None
    for _ in range(8):
        registry.create_model_version(MODEL, source, actor=ACTOR)

    def mover(version: int) -> Callable[[], int]:
        def move() -> int:
            registry.set_alias(MODEL, "staging", version, actor=f"mover-{version}")
            return version

        return move

    # The alias does not exist yet: the first moves race to create it.
    jobs = [mover(i % 8 + 1) for i in range(THREADS * 4)]
    raced = _race(THREADS, jobs)
    assert raced.tracebacks() == []

    final = registry.get_version_by_alias(MODEL, "staging").version
    assert final in range(1, 9)
    assert registry.get_registered_model(MODEL).aliases == {"staging": final}
    # The audit trail of the alias is one unbroken story: each move starts where the last ended.
    history = _alias_history(stack, "staging")
    assert history, "no alias move was audited"
    assert history[0][0] is None
    for (_before, after), (next_before, _next_after) in pairwise(history):
        assert next_before == after, history
    assert history[-1][1] == final
    assert all(before != after for before, after in history)  # no-op moves are not events
    report = stack.audit.verify()
    assert report.ok, report


# -- promotions --------------------------------------------------------------------------------


def _transitions(stack: Stack, version: int) -> list[dict[str, Any]]:
    return [
        e.change
        for e in stack.audit.list_events(object_type="model", object_id=f"{MODEL}/{version}")
        if e.action == "model_version.transition"
    ]


def test_concurrent_promotions_of_one_version_have_one_winner(world):
    stack, _settings, source = world
    registry = stack.registry
    assert registry is not None
    version = registry.create_model_version(MODEL, source, actor=ACTOR).version

    for target in (Stage.VALIDATED, Stage.PRODUCTION):

        def promote(target: Stage = target) -> Stage:
            return registry.promote(MODEL, version, to=target, actor=ACTOR).stage

        raced = _race(THREADS, [promote] * THREADS)
        assert raced.results == [target], raced.tracebacks()
        losers = [e for e in raced.errors if isinstance(e, Conflict)]
        assert len(losers) == len(raced.errors) == THREADS - 1, raced.tracebacks()
        assert registry.get_model_version(MODEL, version).stage is target
    assert [(t["from"], t["to"]) for t in _transitions(stack, version)] == [
        ("candidate", "validated"),
        ("validated", "production"),
    ]
    assert registry.get_registered_model(MODEL).aliases == {
        "champion": version,
        "production": version,
    }
    report = stack.audit.verify()
    assert report.ok, report


def test_concurrent_promotions_of_different_versions_leave_one_in_production(world):
    stack, _settings, source = world
    registry = stack.registry
    assert registry is not None
    versions = [registry.create_model_version(MODEL, source, actor=ACTOR).version
                for _ in range(THREADS)]  # fmt: skip
    for v in versions:
        registry.promote(MODEL, v, to="validated", actor=ACTOR)

    def promoter(version: int) -> Callable[[], int]:
        return lambda: registry.promote(MODEL, version, to="production", actor=ACTOR).version

    raced = _race(THREADS, [promoter(v) for v in versions])
    # Each promotion is legal on its own; they queue, and each one retires the one before.
    assert raced.tracebacks() == []
    assert sorted(raced.results) == versions
    stages = {v.version: v.stage for v in registry.list_model_versions(MODEL)}
    in_production = [v for v, s in stages.items() if s is Stage.PRODUCTION]
    assert len(in_production) == 1, stages
    [winner] = in_production
    assert all(s is Stage.ARCHIVED for v, s in stages.items() if v != winner), stages
    assert registry.get_registered_model(MODEL).aliases == {
        "champion": winner,
        "production": winner,
    }
    archived = [a for v in versions for t in _transitions(stack, v) for a in t["archived"]]
    assert sorted(archived) == sorted(v for v in versions if v != winner)
    report = stack.audit.verify()
    assert report.ok, report

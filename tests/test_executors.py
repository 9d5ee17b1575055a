"""Executors: the contract on the local executor (inline and threads) and on a local Ray."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from loopml.errors import InvalidArgument, MissingDependency
from loopml.execution import LocalExecutor, TaskFailed, make_executor
from loopml.testing.executor_contract import ExecutorContract, square

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY, reason="'ray' is not installed (pip install 'loopml[ray]'); Ray tests skipped"
)


class TestInlineExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self):
        with LocalExecutor() as ex:
            yield ex


class TestThreadExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self):
        with LocalExecutor(workers=2, max_in_flight=3) as ex:
            yield ex


@pytest.fixture(scope="module")
def ray_executor():
    from loopml.execution.ray_executor import RayExecutor

    ex = RayExecutor(num_cpus=2, max_in_flight=3)
    yield ex
    ex.close()


@needs_ray
class TestRayExecutor(ExecutorContract):
    @pytest.fixture
    def executor(self, ray_executor):
        return ray_executor


@needs_ray
def test_ray_close_shuts_down_only_a_cluster_it_started(ray_executor):
    import ray

    assert list(ray_executor.map(square, [3])) == [9]  # the module's executor started Ray
    from loopml.execution.ray_executor import RayExecutor

    guest = RayExecutor()  # joins the running cluster instead of starting one
    assert list(guest.map(square, [4])) == [16]
    guest.close()
    assert ray.is_initialized()
    assert list(ray_executor.map(square, [5])) == [25]


def test_missing_ray_is_an_install_hint(monkeypatch):
    from loopml.execution.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # makes ``import ray`` fail
    with pytest.raises(MissingDependency, match=r"loopml\[ray\]"):
        list(RayExecutor().map(square, [1]))


def test_bad_arguments_are_refused():
    from loopml.execution.ray_executor import RayExecutor

    for bad in (lambda: LocalExecutor(workers=-1), lambda: LocalExecutor(2, max_in_flight=0),
                lambda: RayExecutor(num_cpus=0), lambda: RayExecutor("auto", num_cpus=2),
                lambda: make_executor("dask")):  # fmt: skip
        with pytest.raises(InvalidArgument):
            bad()


def test_local_close_is_idempotent_and_reopens():
    ex = LocalExecutor(workers=2)
    assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
    ex.close()
    ex.close()
    assert list(ex.map(square, range(2))) == [0, 1]
    ex.close()


def test_task_failed_survives_pickling():
    import pickle

    failure = TaskFailed(4, ValueError("bad row"))
    copy = pickle.loads(pickle.dumps(failure))
    assert copy.index == 4 and copy.message == "item 4 failed: ValueError: bad row"

"""The metric buffer: bounded, ordered, nothing dropped, failures reported."""

from __future__ import annotations

import threading
import time

import pytest

from loopml.errors import Conflict, Unavailable
from loopml.tracking.buffer import MetricBuffer
from loopml.tracking.entities import Metric


def test_full_buffer_blocks_the_logger_instead_of_dropping():
    written: list[Metric] = []
    gate = threading.Event()

    def slow_write(batches):
        gate.wait(5)
        for items in batches.values():
            written.extend(items)

    buf = MetricBuffer(slow_write, max_items=100, flush_interval=0.01, batch_size=50)
    done = threading.Event()

    def producer():
        for i in range(1000):
            buf.add("run", Metric("m", float(i), 0, i))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.3)
    assert not done.is_set(), "the producer should wait while the writer is stuck"
    assert buf.pending() <= 100 + 50
    gate.set()
    t.join(10)
    buf.flush()
    assert [m.step for m in written] == list(range(1000))
    buf.close()


def test_transient_failures_are_retried():
    calls = {"n": 0}
    written = []

    def flaky(batches):
        calls["n"] += 1
        if calls["n"] < 3:
            raise Unavailable("busy")
        written.extend(batches["r"])

    buf = MetricBuffer(flaky, flush_interval=60)
    buf.add("r", Metric("m", 1.0, 0, 0))
    buf.flush()
    assert len(written) == 1 and calls["n"] == 3
    buf.close()


def test_refused_run_is_isolated_and_reported():
    written = {}

    def write(batches):
        if "bad" in batches:
            raise Conflict("run bad is deleted")
        written.update(batches)

    buf = MetricBuffer(write, flush_interval=60)
    buf.add("bad", Metric("m", 1.0, 0, 0))
    buf.add("good", Metric("m", 2.0, 0, 0))
    with pytest.raises(Conflict, match="1 buffered metric values of run bad"):
        buf.flush()
    assert list(written) == ["good"]
    buf.flush()  # reported once
    buf.close()


def test_drain_run_puts_values_back_on_failure():
    buf = MetricBuffer(lambda b: None, flush_interval=60)
    buf.add("r", Metric("m", 1.0, 0, 0))

    def fail(items):
        raise Unavailable("down")

    with pytest.raises(Unavailable):
        buf.drain_run("r", fail)
    assert buf.pending() == 1
    seen = []
    buf.drain_run("r", seen.extend)
    assert len(seen) == 1 and buf.pending() == 0
    buf.close()

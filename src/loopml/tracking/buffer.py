"""Buffered metric logging: ``log_metric`` appends to memory; a background thread writes batches.

Guarantees:
- bounded: when ``max_items`` values wait, ``add`` blocks until the writer drains them
  (back-pressure, never dropping a value);
- ordered: one writer at a time, batches leave in the order they were logged;
- flushed at ``flush()``, at the end of every run, and at interpreter exit;
- failures are never silent: values a store refuses for good (a deleted run) are kept aside and the
  error is raised by the next ``flush()``; transient failures (a busy store) are retried.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence

from loopml.errors import LoopmlError, Unavailable
from loopml.tracking.entities import Metric

log = logging.getLogger(__name__)
Writer = Callable[[Mapping[str, Sequence[Metric]]], None]
_BUFFERS: weakref.WeakSet[MetricBuffer] = weakref.WeakSet()


class MetricBuffer:
    def __init__(
        self,
        write: Writer,
        *,
        max_items: int = 100_000,
        flush_interval: float = 0.5,
        batch_size: int = 20_000,
    ) -> None:
        self._write = write
        self._max_items = max_items
        self._interval = flush_interval
        self._batch_size = min(batch_size, max_items)
        self._init_state()
        _BUFFERS.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: dict[str, list[Metric]] = {}
        self._count = 0
        self._failed: list[tuple[str, int, LoopmlError]] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    # hot path ----------------------------------------------------------------------------
    def add(self, run_id: str, metric: Metric) -> None:
        with self._lock:
            items = self._pending.get(run_id)
            if items is None:
                items = self._pending[run_id] = []
            items.append(metric)
            self._count += 1
            count = self._count
        self._after_add(count)

    def add_many(self, run_id: str, metrics: Sequence[Metric]) -> None:
        with self._lock:
            self._pending.setdefault(run_id, []).extend(metrics)
            self._count += len(metrics)
            count = self._count
        self._after_add(count)

    def _after_add(self, count: int) -> None:
        if self._thread is None:
            self._start()
        if count >= self._batch_size:
            self._wake.set()
            if count >= self._max_items:
                self._wait_for_room()

    def _wait_for_room(self) -> None:
        with self._drained:
            while self._count >= self._max_items and not self._closed:
                self._wake.set()
                self._drained.wait(timeout=1.0)

    # flushing ----------------------------------------------------------------------------
    def flush(self, run_id: str | None = None) -> None:
        """Write everything pending (or only ``run_id``'s values); raise what failed before."""
        self._drain(run_id, retry_transient=True)
        self._raise_failures(run_id)

    def drain_run(self, run_id: str, write: Callable[[list[Metric]], None]) -> None:
        """Hand ``run_id``'s pending values to ``write`` (e.g. with the run's final status).

        Holds the writer lock, so no background batch of this run is still in flight when
        ``write`` commits; on failure the values go back to the buffer.
        """
        self._raise_failures(run_id)
        with self._write_lock:
            items = self._take(run_id).get(run_id, [])
            try:
                write(items)
            except BaseException:
                if items:
                    self._put_back({run_id: items})
                raise

    def pending(self) -> int:
        return self._count

    def _take(self, run_id: str | None) -> dict[str, list[Metric]]:
        with self._lock:
            if run_id is None:
                batch, self._pending, self._count = self._pending, {}, 0
            else:
                items = self._pending.pop(run_id, [])
                batch = {run_id: items} if items else {}
                self._count -= len(items)
            self._drained.notify_all()
            return batch

    def _put_back(self, batch: dict[str, list[Metric]]) -> None:
        with self._lock:
            for run_id, items in batch.items():
                self._pending[run_id] = items + self._pending.get(run_id, [])
                self._count += len(items)

    def _drain(self, run_id: str | None, *, retry_transient: bool) -> None:
        with self._write_lock:
            batch = self._take(run_id)
            if not batch:
                return
            delay = 0.05
            for attempt in range(8):
                try:
                    self._write(batch)
                    return
                except Unavailable as e:
                    if not retry_transient or attempt == 7:
                        self._put_back(batch)
                        raise
                    log.warning("metric flush retrying after: %s", e)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
                except LoopmlError:
                    self._write_runs_one_by_one(batch)
                    return

    def _write_runs_one_by_one(self, batch: dict[str, list[Metric]]) -> None:
        """Isolate the run a store refuses, so other runs' values still land."""
        for run_id, items in batch.items():
            try:
                self._write({run_id: items})
            except LoopmlError as e:
                log.error("%d metric values of run %s were refused: %s", len(items), run_id, e)
                with self._lock:
                    self._failed.append((run_id, len(items), e))

    def _raise_failures(self, run_id: str | None) -> None:
        with self._lock:
            mine = [f for f in self._failed if run_id is None or f[0] == run_id]
            self._failed = [f for f in self._failed if f not in mine]
        if mine:
            run, n, err = mine[0]
            raise type(err)(
                f"{n} buffered metric values of run {run} could not be written: {err.message}",
                details={"run_id": run, "values": n},
            ) from err

    # background thread -------------------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._loop, name="loopml-metric-flusher", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._drain(None, retry_transient=True)
            except Exception as e:  # keep the thread alive; flush() reports what stays unwritten
                log.warning("background metric flush failed, will retry: %s", e)
                time.sleep(self._interval)

    def close(self) -> None:
        """Flush what is pending and stop the background thread."""
        try:
            self._drain(None, retry_transient=True)
        finally:
            self._closed = True
            self._wake.set()


def _flush_all_at_exit() -> None:
    for buf in list(_BUFFERS):
        try:
            buf.close()
        except Exception as e:  # at exit there is no caller left to raise to
            log.error("metric values could not be written at exit: %s", e)


def _reset_in_child() -> None:
    # The parent owns what was pending at fork time; the child starts empty with its own thread.
    for buf in list(_BUFFERS):
        buf._init_state()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)

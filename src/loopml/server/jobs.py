"""Background jobs of `loopml up`: periodic work beside the server (monitors and pipelines plug in
here in later stages). One daemon thread; a failing job is logged and tried again next time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("loopml.jobs")


@dataclass
class Job:
    name: str
    every_seconds: float
    run: Callable[[], object]
    next_at: float = 0.0
    runs: int = 0
    failures: int = 0
    last_error: str | None = field(default=None)


class JobRunner:
    def __init__(self, *, tick: float = 0.5) -> None:
        self._jobs: list[Job] = []
        self._tick = tick
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, every_seconds: float, run: Callable[[], object]) -> Job:
        if every_seconds <= 0:
            raise ValueError("a job's period must be positive")
        job = Job(name, every_seconds, run, next_at=time.monotonic())
        self._jobs.append(job)
        return job

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="loopml-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self._jobs:
                if now >= job.next_at and not self._stop.is_set():
                    self._run(job)
                    job.next_at = now + job.every_seconds
            self._stop.wait(self._tick)

    @staticmethod
    def _run(job: Job) -> None:
        try:
            job.run()
            job.runs += 1
        except Exception as e:  # one bad job must not stop the others
            job.failures += 1
            job.last_error = f"{type(e).__name__}: {e}"
            log.exception("background job %s failed", job.name)

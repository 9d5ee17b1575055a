"""Load tests: drive an endpoint from N workers, summarise latencies and errors, check gates.

The engine knows nothing about HTTP: each worker gets a :class:`Sender` from a factory (the
HTTP one is :mod:`loopml.backends.http.loadgen`) and awaits it once per request; the time
around that call is the request's latency. The workers are coroutines on one event loop in one
thread: a load generator must cost far less than the server it measures, and a thread per
worker would make every answer wait for the GIL before its time is taken. Two ways to generate
load:

* closed loop (``rate=None``): every worker sends its next request as soon as the previous one
  is answered, for ``duration_s``;
* open loop (``rate=R``): requests are scheduled at ``R`` per second in total, request ``k`` at
  ``k / R`` seconds, whatever the answers take. A request that starts more than two
  milliseconds after its slot (all workers were busy) is counted as a *late start*: many late
  starts mean the offered rate was not reached and the concurrency is too low for it.

Requests started during the first ``warmup_s`` seconds are sent but not counted.
Latencies are kept for every request that got an HTTP answer (any status); timeouts and
connection errors are counted as errors only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from loopml.errors import InvalidArgument

OK = "ok"
ANSWERED = frozenset({OK, "http_1xx", "http_3xx", "http_4xx", "http_5xx"})
"""Outcomes that are an HTTP answer: their latency counts. Other kinds (``timeout``,
``connection``, ``other``) are failures without an answer."""

LATE_TOLERANCE_S = 0.002  # the event loop's timers wake up to a millisecond late


class Sender(Protocol):
    """One worker's connection: send the request once, say how it went."""

    async def __call__(self) -> str:
        """``"ok"`` or the error kind (``http_4xx``, ``http_5xx``, ``timeout``, ``connection``…)."""
        ...

    async def close(self) -> None: ...


SenderFactory = Callable[[], Awaitable[Sender]]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Latency percentiles in milliseconds (nearest rank, so each one is a measured value)."""

    count: int = 0
    mean_ms: float = 0.0
    min_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        if not seconds:
            return cls()
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(count=len(ms), mean_ms=sum(ms) / len(ms), min_ms=ms[0],
                   p50_ms=percentile(ms, 50), p90_ms=percentile(ms, 90),
                   p99_ms=percentile(ms, 99), max_ms=ms[-1])  # fmt: skip


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of already sorted values."""
    if not sorted_values:
        raise InvalidArgument("no values to take a percentile of")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a load test measured."""

    target: str
    mode: str  # "closed" or "open"
    concurrency: int
    duration_s: float  # the measured window, from its start to the last answer
    rate: float | None
    sent: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    late_starts: int = 0
    rows_per_request: int = 1
    latency: LatencySummary = field(default_factory=LatencySummary)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.error_count / self.sent if self.sent else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.sent / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def rows_per_s(self) -> float:
        """Rows scored per second: successful requests times the payload's rows."""
        return self.ok * self.rows_per_request / self.duration_s if self.duration_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(error_count=self.error_count, error_rate=self.error_rate,
                 requests_per_s=self.requests_per_s, rows_per_s=self.rows_per_s)  # fmt: skip
        return d


def check_gates(
    result: LoadResult, max_p99_ms: float | None = None, max_error_rate: float | None = None
) -> list[str]:
    """The gates ``result`` fails, one sentence each (an empty list: it passes)."""
    failures: list[str] = []
    if result.sent == 0 and (max_p99_ms is not None or max_error_rate is not None):
        return ["no requests were sent"]
    if max_error_rate is not None and result.error_rate > max_error_rate:
        failures.append(
            f"error rate {result.error_rate:.2%} ({result.error_count} of {result.sent}) "
            f"exceeds --max-error-rate {max_error_rate:g}"
        )
    if max_p99_ms is not None:
        if result.latency.count == 0:
            failures.append(f"no request was answered, so p99 cannot be within {max_p99_ms:g} ms")
        elif result.latency.p99_ms > max_p99_ms:
            failures.append(
                f"p99 latency {result.latency.p99_ms:.1f} ms exceeds --max-p99-ms {max_p99_ms:g}"
            )
    return failures


def rows_in_payload(payload: bytes | None, json_length: int | None = None) -> int:
    """How many rows one request scores: OIP ``inputs[0].shape[0]``, ``dataframe_split.data``,
    ``dataframe_records``/``instances``/``records`` or a top-level list of records, equal-length
    columns; 1 when the payload says nothing (or is not JSON). ``json_length``: the payload is
    OIP with binary tensors, whose JSON is its first ``json_length`` bytes."""
    if not payload:
        return 1
    try:
        doc = json.loads(payload if json_length is None else payload[:json_length])
    except (ValueError, UnicodeDecodeError):
        return 1
    return max(1, _rows(doc))


def _rows(doc: Any) -> int:
    if isinstance(doc, list):
        return len(doc)
    if not isinstance(doc, Mapping):
        return 1
    inputs = doc.get("inputs")
    if isinstance(inputs, list) and inputs:
        first = inputs[0]
        if isinstance(first, Mapping):  # OIP tensors
            shape = first.get("shape")
            if isinstance(shape, list) and shape and isinstance(shape[0], int):
                return shape[0]
            return 1
        return len(inputs)  # MLflow's {"inputs": [[...], ...]}
    split = doc.get("dataframe_split")
    if isinstance(split, Mapping) and isinstance(split.get("data"), list):
        return len(split["data"])
    for key in ("dataframe_records", "instances", "records"):
        if isinstance(doc.get(key), list):
            return len(doc[key])
    columns = inputs if isinstance(inputs, Mapping) else doc
    lengths = {len(v) for v in columns.values() if isinstance(v, list)}
    if len(lengths) == 1 and all(isinstance(v, list) for v in columns.values()):
        return lengths.pop()
    return 1


@dataclass(slots=True)
class _Worker:
    """One worker's samples, kept apart from the others' (no lock on the hot path)."""

    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    late: int = 0


class _Schedule:
    """Open-loop slots: ``next()`` hands out slot times ``start + k / rate`` until ``end``."""

    def __init__(self, start: float, end: float, rate: float) -> None:
        self.start, self.end, self.rate = start, end, rate
        self._k = 0

    def next(self) -> float | None:
        at = self.start + self._k / self.rate
        if at >= self.end:
            return None
        self._k += 1
        return at


def run_load(
    connect: SenderFactory, *, concurrency: int, duration_s: float, rate: float | None = None,
    warmup_s: float = 0.0, rows_per_request: int = 1, target: str = "",
    clock: Callable[[], float] = time.perf_counter,
) -> LoadResult:  # fmt: skip
    """Drive ``concurrency`` workers (coroutines, each with its own sender from ``connect``) for
    ``warmup_s + duration_s`` seconds and summarise the measured part."""
    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be at least 1, got {concurrency}")
    if duration_s <= 0 or warmup_s < 0:
        raise InvalidArgument("duration must be positive and warmup not negative")
    if rate is not None and rate <= 0:
        raise InvalidArgument(f"rate must be positive, got {rate}")
    return _run_sync(_load(connect, concurrency, duration_s, rate, warmup_s, rows_per_request,
                           target, clock))  # fmt: skip


def _run_sync(coro: Coroutine[Any, Any, LoadResult]) -> LoadResult:
    """Run ``coro`` on a new event loop: here, or in a thread if this one already runs one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _load(
    connect: SenderFactory, concurrency: int, duration_s: float, rate: float | None,
    warmup_s: float, rows_per_request: int, target: str, clock: Callable[[], float],
) -> LoadResult:  # fmt: skip
    senders = [await connect() for _ in range(concurrency)]  # setup is not measured
    begin = clock()
    measure_from = begin + warmup_s
    end = measure_from + duration_s
    schedule = _Schedule(begin, end, rate) if rate is not None else None
    workers = [_Worker() for _ in senders]
    last_answer = [measure_from] * concurrency

    async def work(i: int) -> None:
        sender, mine = senders[i], workers[i]
        while True:
            if schedule is None:
                started = clock()
                if started >= end:
                    return
                late = False
            else:
                slot = schedule.next()
                if slot is None:
                    return
                wait = slot - clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                started = clock()
                late = started - slot > LATE_TOLERANCE_S
            try:
                outcome = await sender()
            except Exception:  # a sender must not kill its worker; count it and go on
                outcome = "other"
                await asyncio.sleep(0)  # and must not starve the other workers
            finished = clock()
            if started < measure_from:
                continue
            mine.outcomes[outcome] += 1
            mine.late += late
            if outcome in ANSWERED:
                mine.latencies.append(finished - started)
            last_answer[i] = max(last_answer[i], finished)

    try:
        await asyncio.gather(*(work(i) for i in range(concurrency)))
    finally:
        for s in senders:
            await s.close()
    return _summarise(workers, target=target, rate=rate, concurrency=concurrency,
                      window=max(max(last_answer), end) - measure_from,
                      rows_per_request=rows_per_request)  # fmt: skip


def _summarise(
    workers: Sequence[_Worker], *, target: str, rate: float | None, concurrency: int,
    window: float, rows_per_request: int,
) -> LoadResult:  # fmt: skip
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    for w in workers:
        outcomes.update(w.outcomes)
        latencies.extend(w.latencies)
    ok = outcomes.pop(OK, 0)
    return LoadResult(
        target=target, mode="closed" if rate is None else "open", concurrency=concurrency,
        duration_s=window, rate=rate, sent=ok + sum(outcomes.values()), ok=ok,
        errors=dict(sorted(outcomes.items())), late_starts=sum(w.late for w in workers),
        rows_per_request=rows_per_request, latency=LatencySummary.of(latencies),
    )  # fmt: skip

"""CPU placement: each inference worker process keeps its threads on CPUs of its own.

An inference worker is an event loop plus the threads its models predict in, all behind one
GIL. Left to the scheduler, a prediction thread is woken on whichever CPU is idle, usually
not the one whose caches hold the model, and a one-row prediction then takes longer than the
same call made in a loop (the serving benchmark in ``benchmarks/RESULTS.md`` shows both). So
each worker claims ``per_worker`` CPUs that no other loopml worker on the machine holds, and
binds every thread of its process to them: threads started later (prediction pools, the
prediction log, a library's OpenMP pool) inherit the binding.

* A claim is an abstract Unix socket named after the CPU, bound by the worker: the kernel
  releases it when the process ends, however it ends, so a crashed worker's CPUs are free for
  its replacement and no file is ever left behind. Another server on the machine (in the same
  network namespace) sees the claim and takes other CPUs.
* When fewer than ``per_worker`` CPUs are free, or the platform cannot bind threads (not Linux),
  the worker runs unbound and :func:`claim_cpus` says why.
* A model that parallelises inside one call (XGBoost, LightGBM, ONNX Runtime) gets only its
  worker's CPUs: give it more with ``--cpus-per-worker``, or ``0`` to switch binding off.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field

from loopml.errors import InvalidArgument

CLAIM_PREFIX = "loopml-cpu-"


@dataclass
class Placement:
    """What :func:`claim_cpus` did: the CPUs bound (empty: unbound) and why, for the log line."""

    cpus: tuple[int, ...] = ()
    reason: str = ""
    _claims: list[socket.socket] = field(default_factory=list, repr=False)

    def describe(self) -> str:
        if self.cpus:
            return "CPU " + ",".join(str(c) for c in self.cpus)
        return f"CPUs unbound ({self.reason})"

    def release(self) -> None:
        """Give the CPUs back (the process ending does the same)."""
        for claim in self._claims:
            claim.close()
        self._claims.clear()


def claim_cpus(per_worker: int, *, namespace: str = CLAIM_PREFIX) -> Placement:
    """Claim ``per_worker`` free CPUs of those this process may use and bind it to them.

    ``0`` binds nothing. Keep the returned :class:`Placement` alive as long as the process
    serves: its sockets are the claims.
    """
    if per_worker < 0:
        raise InvalidArgument(f"CPUs per worker must be 0 (unbound) or more, got {per_worker}")
    if per_worker == 0:
        return Placement(reason="binding switched off")
    if not hasattr(os, "sched_setaffinity") or not hasattr(socket, "AF_UNIX"):
        return Placement(reason="this platform cannot bind threads to CPUs")
    allowed = sorted(os.sched_getaffinity(0))
    if per_worker >= len(allowed):
        return Placement(reason=f"{per_worker} per worker, {len(allowed)} available")
    claims: list[tuple[int, socket.socket]] = []
    # From the highest CPU down: CPU 0 tends to take the machine's interrupts and housekeeping.
    for cpu in reversed(allowed):
        claim = _claim(namespace, cpu)
        if claim is not None:
            claims.append((cpu, claim))
            if len(claims) == per_worker:
                break
    if len(claims) < per_worker:
        for _, claim in claims:
            claim.close()
        return Placement(reason="every CPU is held by another loopml worker")
    cpus = tuple(sorted(cpu for cpu, _ in claims))
    placement = Placement(cpus=cpus, _claims=[claim for _, claim in claims])
    try:
        bind_process(set(cpus))
    except OSError as e:
        placement.release()
        return Placement(reason=f"binding refused: {e}")
    return placement


def _claim(namespace: str, cpu: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0{namespace}{cpu}")  # abstract: no file, gone with the process
    except OSError:
        sock.close()
        return None
    os.set_inheritable(sock.fileno(), False)
    return sock


def bind_process(cpus: set[int]) -> None:
    """Bind every thread of this process (and so the threads they start) to ``cpus``."""
    os.sched_setaffinity(0, cpus)  # the calling thread first: it must not fail half-way
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError):  # a thread may just have ended
                os.sched_setaffinity(int(tid), cpus)

"""Per-process resource caps for the inference server, applied once at startup.

A model that allocates without bound, or spins, should fail on its own, not take the machine.
:func:`apply_limits` caps memory and CPU time:

* memory: through cgroups v2 when the process's own cgroup lets us write ``memory.max`` (a
  container or a systemd unit with delegation; the cap then covers the whole cgroup, so it is
  multiplied by ``processes``); otherwise with ``RLIMIT_AS``, which makes an allocation beyond the
  cap fail with ``MemoryError`` in this process (and its children). ``RLIMIT_AS`` counts address
  space, not resident memory: leave room for thread stacks and the libraries' reservations.
* CPU: ``RLIMIT_CPU`` (total CPU seconds; the kernel sends SIGXCPU, which ends the process, once
  they are used up). cgroups only know CPU *rates*, not totals.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from loopml.errors import InvalidArgument

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def apply_limits(
    memory_mb: int | None, cpu_seconds: int | None, *, processes: int = 1,
    use_cgroup: bool = True, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP,
) -> str:  # fmt: skip
    """Cap this process's memory (MiB) and CPU time (seconds); say what was applied."""
    if (memory_mb is not None and memory_mb < 1) or (cpu_seconds is not None and cpu_seconds < 1):
        raise InvalidArgument("memory and CPU limits must be positive")
    done: list[str] = []
    if memory_mb is not None:
        limit = memory_mb * 2**20
        cgroup = own_cgroup_v2(cgroup_root, proc_cgroup) if use_cgroup else None
        if cgroup is not None and _write(cgroup / "memory.max", str(limit * max(1, processes))):
            done.append(f"memory {memory_mb * max(1, processes)} MiB (cgroup v2 {cgroup})")
        else:
            done.append(_rlimit("RLIMIT_AS", limit, f"memory {memory_mb} MiB"))
    if cpu_seconds is not None:
        done.append(_rlimit("RLIMIT_CPU", cpu_seconds, f"CPU {cpu_seconds} s"))
    return "; ".join(done) if done else "no limits"


def own_cgroup_v2(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> Path | None:
    """This process's cgroup v2 folder, if there is one whose ``memory.max`` we may write."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "" and path not in ("", "/"):
            folder = cgroup_root / path.lstrip("/")
            limit = folder / "memory.max"
            if limit.is_file() and _writable(limit):
                return folder
    return None


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK)


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
    except OSError:
        return False
    return True


def _rlimit(name: str, value: int, what: str) -> str:
    try:
        import resource
    except ImportError:  # not on this platform (Windows)
        return f"{what} not applied (no resource limits on this platform)"
    which = getattr(resource, name)
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, hard))
        return f"{what} ({name})"
    return f"{what} not applied ({name} refused)"

"""What a run records about where it ran: source file, git commit and dirty flag, resource use."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceInfo:
    source: str
    git_commit: str | None
    git_dirty: bool | None


@dataclass(frozen=True, slots=True)
class RunUsage:
    cpu_seconds: float
    peak_memory_bytes: int


def source_info() -> SourceInfo:
    """The entry script and, when it lives in a git work tree, its commit and dirty flag.

    Worked out once per process and script: a run must not pay a subprocess (or a stat) to
    start, so the dirty flag is the one seen when the process first started a run.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    return _source_info(path, os.getcwd())


@lru_cache(maxsize=64)
def _source_info(path: str, cwd: str) -> SourceInfo:
    exists = bool(path) and Path(path).exists()
    source = str(Path(path).resolve()) if exists else (path or "<interactive>")
    commit, dirty = _git_state(str(Path(source).parent) if exists else cwd)
    return SourceInfo(source, commit, dirty)


def _git_state(folder: str) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        status = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None, None
    return (commit or None), bool(status.strip())


class UsageMeter:
    """CPU seconds of this process since the meter started, and the process's peak memory."""

    def __init__(self) -> None:
        self._cpu0 = time.process_time()

    def read(self) -> RunUsage:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        factor = 1 if sys.platform == "darwin" else 1024
        return RunUsage(round(time.process_time() - self._cpu0, 6), int(peak_kib * factor))

"""Start, watch and always stop a tracking server (``loopml server`` or ``mlflow server``).

Each server is its own process group (its uvicorn workers and MLflow's job runners inherit it),
dies with a SIGTERM if the benchmark process dies first (``PR_SET_PDEATHSIG``), and is named in
the file ``$BENCH_SERVER_PIDFILE`` so ``run_all.py`` can stop whatever a crashed or timed-out
worker left behind. Only processes of that group started no earlier than its leader are ever
signalled, each by its id. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
HEALTH = {"loopml": "/healthz", "mlflow": "/health"}  # MLflow has no /healthz
# MLflow 3 sends usage telemetry to the internet unless told not to; keep every byte on loopback.
QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
PIDFILE_ENV = "BENCH_SERVER_PIDFILE"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


# /proc ---------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgrp, start time in clock ticks) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw.rsplit(")", 1)[1].split()  # after "pid (comm)"; comm may hold spaces
    if fields[0] == "Z":  # a zombie holds no memory and needs no signal
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def _all_stats() -> dict[int, tuple[int, int, int]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                out[int(entry)] = st
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root] if root in stats else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def group_members(pgid: int, not_before: int) -> list[int]:
    """Live processes of group ``pgid`` that started no earlier than ``not_before`` (ticks)."""
    return [
        pid
        for pid, (_, pgrp, start) in _all_stats().items()
        if pgrp == pgid and start >= not_before and pid != os.getpid()
    ]


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _cmd(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    words = [p.decode(errors="replace") for p in parts if p]
    words = [Path(w).name if w.startswith("/") else w for w in words]
    return " ".join(words)[:400]


def tree_memory(root: int) -> dict[str, Any]:
    """Summed VmRSS (the issue's measure; shared pages count once per process) and Pss (shared
    pages split between the processes sharing them) over ``root`` and its descendants."""
    procs = []
    for pid in process_tree(root):
        procs.append(
            {"pid": pid, "rss_kib": _status_kib(pid, "VmRSS"), "pss_kib": _pss_kib(pid)}
            | {"cmd": _cmd(pid)}
        )
    return {
        "rss_mib": round(sum(p["rss_kib"] for p in procs) / 1024, 1),
        "pss_mib": round(sum(p["pss_kib"] for p in procs) / 1024, 1),
        "processes": len(procs),
        "per_process": sorted(procs, key=lambda p: -p["rss_kib"]),
    }


# stopping ------------------------------------------------------------------------------------
def _signal_each(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def stop_group(pgid: int, not_before: int, grace: float = 15.0) -> int:
    """SIGTERM every member of the group, SIGKILL whatever is left after ``grace`` seconds.
    Returns how many processes had to be killed."""
    members = group_members(pgid, not_before)
    _signal_each(members, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while members and time.monotonic() < deadline:
        time.sleep(0.05)
        members = group_members(pgid, not_before)
    _signal_each(members, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while group_members(pgid, not_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(members)


def stop_listed(pidfile: Path) -> int:
    """Stop every group named in ``pidfile`` (lines "pgid start_ticks"); for run_all.py."""
    if not pidfile.exists():
        return 0
    killed = 0
    for line in pidfile.read_text().splitlines():
        if line.strip():
            pgid, start = (int(x) for x in line.split())
            killed += stop_group(pgid, start, grace=5.0)
    return killed


try:  # looked up here, so the child only makes one foreign call between fork and exec
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


# one server ----------------------------------------------------------------------------------
class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    """``with Server(tool, store) as srv: srv.url``; ``workers=0`` keeps the tool's default."""

    tool: str
    store: Path
    workers: int = 0
    log: Path | None = None
    timeout: float = 180.0
    port: int = 0  # a free one is picked at each start

    def command(self) -> list[str]:
        bindir = Path(sys.executable).parent
        if self.tool == "loopml":
            cmd = [str(bindir / "loopml"), "server", "--host", HOST, "--port", str(self.port)]
        else:
            uri = f"sqlite:///{self.store / 'mlflow.db'}"
            cmd = [str(bindir / "mlflow"), "server", "--backend-store-uri", uri]
            cmd += ["--host", HOST, "--port", str(self.port)]
        return cmd + (["--workers", str(self.workers)] if self.workers else [])

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.tool == "loopml":
            env["LOOPML_HOME"] = str(self.store)
        env.update(QUIET_MLFLOW)
        return env

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> float:
        """Spawn, then poll the health endpoint every 10 ms; seconds from spawn to the first 200."""
        self.store.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        if _port_open(self.port):
            raise ServerError(f"port {self.port} is taken")
        log = (self.log or self.store / f"{self.tool}-server.log").open("ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.store,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
            preexec_fn=_die_with_parent,  # one prctl call, looked up before the fork
        )
        log.close()
        st = None
        while st is None and self.proc.poll() is None:
            st = _stat(self.proc.pid)
        self.pgid, self.started_ticks = self.proc.pid, st[2] if st else 0
        pidfile = os.environ.get(PIDFILE_ENV)
        if pidfile:
            with open(pidfile, "a") as f:
                f.write(f"{self.pgid} {self.started_ticks}\n")
        try:
            return self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise

    def health_path(self) -> str:
        return HEALTH[self.tool]

    def _wait_healthy(self, t0: float) -> float:
        path = self.health_path()
        while time.perf_counter() - t0 < self.timeout:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.tool} server exited with {self.proc.returncode}")
            conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return time.perf_counter() - t0
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.01)
        raise ServerError(f"{self.tool} server not healthy after {self.timeout:.0f} s")

    def memory(self) -> dict[str, Any]:
        return tree_memory(self.proc.pid)

    def stop(self, hard: bool = False) -> int:
        """SIGTERM the group (``hard``: SIGKILL at once); returns processes that needed SIGKILL."""
        if getattr(self, "proc", None) is None:
            return 0
        if hard:
            _signal_each(group_members(self.pgid, self.started_ticks), signal.SIGKILL)
        killed = stop_group(self.pgid, self.started_ticks)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None  # type: ignore[assignment]
        return killed

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def stopped_on_signals() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit so every ``finally`` (and so every stop) runs."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    old = {s: signal.signal(s, _exit) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def log_tail(path: Path, lines: int = 15) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text(errors="replace").splitlines()
    return [line for line in text if line.strip()][-lines:]

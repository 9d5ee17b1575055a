"""Engines and transactions: SQLite tuned for many writers, PostgreSQL through psycopg 3.

SQLite runs in WAL mode with a busy timeout; write transactions start with ``BEGIN IMMEDIATE`` so a
writer waits for the lock up front instead of failing to upgrade a read lock later, and a bounded
retry loop absorbs what the busy timeout does not. PostgreSQL transactions are retried on
serialization failures, deadlocks and dropped connections.
"""

from __future__ import annotations

import os
import random
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from loopml.backends.sql.fastpath import DbapiTx, run_dbapi
from loopml.errors import InvalidArgument, Unavailable

T = TypeVar("T")
_RETRYABLE_PG_STATES = {"40001", "40P01", "55P03"}
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def normalise_uri(uri: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    if uri.startswith(("sqlite:///", "postgresql+psycopg://")):
        return uri
    raise InvalidArgument(
        f"unsupported metadata URI {uri.split('://')[0]!r}://…: use sqlite:///path or "
        "postgresql+psycopg://user@host/db"
    )


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    raw = uri[len("sqlite:///") :].split("?")[0]
    return Path(raw) if raw and raw != ":memory:" else None


def make_engine(uri: str) -> Engine:
    uri = normalise_uri(uri)
    path = sqlite_path(uri)
    if uri.startswith("sqlite"):
        if path is None:
            raise InvalidArgument("an in-memory SQLite store is not supported; give a file path")
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            uri, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=8
        )
        _tune_sqlite(engine)
    else:
        from loopml.errors import require

        require("psycopg", "postgres")
        engine = sa.create_engine(uri, pool_pre_ping=True, pool_size=8, max_overflow=8)
    _ENGINES.add(engine)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA case_sensitive_like = ON")
        # Fewer, larger checkpoints (a page written many times is copied back once) and a cache
        # that holds the search indexes of a large store: measured +10 % fluent runs/s.
        cur.execute("PRAGMA wal_autocheckpoint = 10000")
        cur.execute("PRAGMA cache_size = -65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("loopml_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _retryable(err: DBAPIError) -> bool:
    if err.connection_invalidated:
        return True
    orig = err.orig
    state = getattr(orig, "sqlstate", None)
    if state in _RETRYABLE_PG_STATES:
        return True
    text = str(orig).lower()
    return isinstance(err, OperationalError) and (
        "database is locked" in text
        or "database is busy" in text
        or "closed the connection" in text
    )


class Database:
    """An engine plus the one way to run a transaction against it (with bounded retries)."""

    def __init__(self, engine: Engine, *, max_attempts: int = 12) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer = engine.execution_options(loopml_write=True)
        self._max_attempts = max_attempts

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction; retried whole on lock contention."""
        return self._run(self._writer, work)

    def write_fast(self, work: Callable[[DbapiTx], T]) -> T:
        """A write transaction on the driver connection (see ``fastpath``): for the hot path."""
        return run_dbapi(self.engine, work, max_attempts=self._max_attempts)

    def read(self, work: Callable[[Connection], T]) -> T:
        return self._run(self.engine, work)

    def _run(self, engine: Engine, work: Callable[[Connection], T]) -> T:
        delay = 0.005
        for attempt in range(1, self._max_attempts + 1):
            try:
                with engine.begin() as conn:
                    return work(conn)
            except DBAPIError as e:
                if not _retryable(e) or attempt == self._max_attempts:
                    if _retryable(e):
                        raise Unavailable(
                            f"metadata store busy after {attempt} attempts: {e.orig}"
                        ) from e
                    raise
                time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()


def _dispose_in_child() -> None:
    # A forked child must not reuse the parent's pooled connections.
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_dispose_in_child)

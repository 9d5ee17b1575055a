"""Schema migrations: applied automatically on first use, one migrator at a time.

The fast path compares the stored revision with :data:`HEAD_REVISION` without importing Alembic.
When an upgrade is due, SQLite takes an exclusive file lock next to the database and PostgreSQL an
advisory lock, then re-checks the revision, so processes starting together migrate exactly once.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from loopml.errors import Conflict

HEAD_REVISION = "0005"
_PG_LOCK_KEY = 0x6C6F6F70  # "loop"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


def ensure_schema(engine: Engine) -> None:
    """Bring the database to HEAD_REVISION unless it is there already."""
    if current_revision(engine) == HEAD_REVISION:
        return
    upgrade(engine)


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    with _migration_lock(engine) as conn:
        found = _revision(conn)
        if found is not None and not _known(found):
            raise Conflict(
                f"the database schema is at revision {found!r}, newer than this loopml knows "
                f"(head {HEAD_REVISION!r}); upgrade loopml"
            )
        if found != HEAD_REVISION or revision != "head":
            from alembic import command

            command.upgrade(_alembic_config(conn), revision)
        conn.commit()
        return _revision(conn)


def _known(revision: str) -> bool:
    return any(
        p.name.startswith(f"{revision}_") for p in (MIGRATIONS_DIR / "versions").glob("*.py")
    )


def _alembic_config(conn: Connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    # The URL's own database field: rendering the URL would percent-encode characters like '@'.
    path = (
        Path(engine.url.database)
        if engine.dialect.name == "sqlite" and engine.url.database
        else None
    )
    if path is not None:
        lock_path = path.with_name(path.name + ".migrate.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with engine.connect() as conn:
                yield conn
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()

"""Shared fixtures: fresh SQLite and PostgreSQL metadata stores for every test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from loopml.backends.sql.audit import SqlAuditStore
from loopml.backends.sql.engine import Database, make_engine
from loopml.backends.sql.identity import SqlIdentityStore
from loopml.backends.sql.migrate import ensure_schema
from loopml.backends.sql.projects import SqlProjectStore
from loopml.backends.sql.tracking import SqlTrackingStore
from loopml.governance.passwords import Passwords

PG_ENV = "LOOPML_TEST_POSTGRES_URL"

# starlette's TestClient sends ``Host: testserver``: the platform apps of the tests answer to
# that name too (production code allows only loopback names, the bind address and this setting).
# Set before any test module builds its Settings; tests of the Host check pass their own names.
os.environ["LOOPML_ALLOWED_HOSTS"] = "testserver"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_ENV)


def _with_database(url: str, name: str) -> str:
    return (
        sa.make_url(url)
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


@contextmanager
def _database(prefix: str, template: str | None = None) -> Iterator[str]:
    """Create a PostgreSQL database for a test (skipping when none is configured), then drop it."""
    url = _pg_admin_url()
    if not url:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (set by .ci/run); it is not set here")
    admin_db = sa.make_url(url).database or "postgres"
    admin = sa.create_engine(_with_database(url, admin_db), isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"{clone}'))
    try:
        yield _with_database(url, name)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database to clone per test (CREATE DATABASE … TEMPLATE is fast)."""
    with _database("loopml_tpl") as url:
        engine = make_engine(url)
        ensure_schema(engine)
        engine.dispose()
        yield sa.make_url(url).database or ""


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database."""
    with _database("loopml_t", template=pg_template) as url:
        yield url


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (no schema yet)."""
    with _database("loopml_e") as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'loopml.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def metadata_url(request) -> str:
    """A fresh, empty metadata store of each backend."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def database(metadata_url) -> Iterator[Database]:
    engine = make_engine(metadata_url)
    ensure_schema(engine)
    db = Database(engine)
    yield db
    db.dispose()


@pytest.fixture
def tracking_store(database):
    return SqlTrackingStore(database)


@pytest.fixture
def project_store(database):
    return SqlProjectStore(database)


@pytest.fixture
def audit_store(database):
    return SqlAuditStore(database)


# Argon2 at its real cost takes ~0.1 s a hash; the identity tests hash hundreds of passwords.
# tests/test_identity.py checks the production parameters separately.
FAST_PASSWORDS = Passwords(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def identity_store(database):
    return SqlIdentityStore(database, passwords=FAST_PASSWORDS)
